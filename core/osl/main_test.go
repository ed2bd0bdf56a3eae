package osl

import (
	"testing"

	"github.com/sandnet/sandnet/sdk/nstest"
)

// Root tests run in a throwaway network and mount namespace (see nstest);
// the tests in names_test.go run anywhere.
func TestMain(m *testing.M) { nstest.Main(m) }
