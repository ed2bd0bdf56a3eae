package main

import (
	"testing"

	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestMain runs the package's tests inside a throwaway network namespace
// (when root); the "hosts" and sandboxes are namespaces made inside it.
func TestMain(m *testing.M) { nstest.Main(m) }
