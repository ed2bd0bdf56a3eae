//go:build !linux

package nstest

import (
	"errors"
)

// Namespaces are Linux only: tests run as they are and root tests skip.
func run(m M) int { return m.Run() }

func currentNamespace() (nsID, error) {
	return nsID{}, errors.New("network namespaces are not supported on this platform")
}
