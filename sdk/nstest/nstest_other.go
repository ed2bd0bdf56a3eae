//go:build !linux

package nstest

import (
	"errors"
	"testing"
)

// Namespaces are Linux only: tests run as they are and root tests skip.
func run(m *testing.M) int { return m.Run() }

func currentNamespace() (nsID, error) {
	return nsID{}, errors.New("network namespaces are not supported on this platform")
}
