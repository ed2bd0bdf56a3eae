package main

import (
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

func TestConformancePlugin(t *testing.T) {
	bin := plugintest.Build(t, "github.com/sandnet/sandnet/plugins/host")
	drivertest.Run(t, drivertest.Options{New: func(t *testing.T) driver.Driver {
		return plugintest.LaunchDriver(t, bin, nil)
	}})
}

func TestCapabilitiesUseHostNamespace(t *testing.T) {
	c, stop, err := driver.InProcess(info, &host{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	caps, err := c.GetCapabilities(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !caps.GetUsesHostNamespace() || caps.GetNeedsAddresses() {
		t.Fatalf("capabilities = %v: a host network uses the host namespace and no addresses", caps)
	}
}

func TestREADME(t *testing.T) {
	for i, raw := range plugintest.ReadmeConfigs(t, "README.md", "driver", "host", sdk.MustSchemaFor(Config{})) {
		if err := (&host{}).Configure(t.Context(), raw); err != nil {
			t.Fatalf("example %d: %v", i+1, err)
		}
	}
}
