package main

import (
	"testing"

	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestMain runs the package's tests inside a throwaway network namespace
// (when root), which plays the host: the driver's bridges, rules and
// sysctls are made there and vanish with it.
func TestMain(m *testing.M) { nstest.Main(m) }
