package resolver

import (
	"testing"

	"github.com/sandnet/sandnet/sdk/nstest"
)

// As root the whole test binary runs in a throwaway network namespace
// (see nstest): the root tests bind 127.0.0.1:53 and create sandboxes
// there. Everything else runs anywhere, on loopback ports.
func TestMain(m *testing.M) { nstest.Main(m) }
