//go:build !linux

package nstest

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

// Namespaces are Linux only: tests run as they are and root tests skip.
func run(m M) int { return m.Run() }

func currentNamespace() (nsID, error) {
	return nsID{}, errors.New("network namespaces are not supported on this platform")
}

// WithHandle skips the test: network namespaces are Linux only.
func WithHandle(t testing.TB, key string, fn func(h *netlink.Handle) error) {
	t.Skip("network namespaces are Linux only")
}

// Links skips the test: network namespaces are Linux only.
func Links(t testing.TB, h *netlink.Handle) []netlink.Link {
	t.Skip("network namespaces are Linux only")
	return nil
}

// Addrs skips the test: network namespaces are Linux only.
func Addrs(t testing.TB, h *netlink.Handle, l netlink.Link) []netlink.Addr {
	t.Skip("network namespaces are Linux only")
	return nil
}

// LinkNames skips the test: network namespaces are Linux only.
func LinkNames(t testing.TB, key string) []string {
	t.Skip("network namespaces are Linux only")
	return nil
}

// NewNetns skips the test: network namespaces are Linux only.
func NewNetns(t testing.TB) string {
	t.Skip("network namespaces are Linux only")
	return ""
}

// Do fails: network namespaces are Linux only.
func Do(key string, fn func() error) error {
	if key == "" {
		return fn()
	}
	return errors.New("network namespaces are not supported on this platform")
}

func isolate(m M) (int, error) { return m.Run(), nil }
