package main

import (
	"testing"

	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

func TestConformanceInProcess(t *testing.T) {
	drivertest.Run(t, drivertest.Options{New: func(t *testing.T) driver.Driver {
		c, stop, err := driver.InProcess(info, &none{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return c
	}})
}

func TestConformancePlugin(t *testing.T) {
	bin := plugintest.Build(t, "github.com/sandnet/sandnet/plugins/none")
	drivertest.Run(t, drivertest.Options{New: func(t *testing.T) driver.Driver {
		return plugintest.LaunchDriver(t, bin, nil)
	}})
}
