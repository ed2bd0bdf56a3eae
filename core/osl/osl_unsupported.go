//go:build !linux

package osl

import (
	"context"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Namespace is a network namespace; on this platform it cannot be created.
type Namespace struct{}

// NewNamespace returns ErrNotSupported.
func NewNamespace(key string) (*Namespace, error) { return nil, ErrNotSupported }

// NewSpareNamespace is not supported off Linux.
func NewSpareNamespace(key string, inside func() error) (*Namespace, error) {
	return nil, ErrNotSupported
}

// OpenNamespace returns ErrNotSupported.
func OpenNamespace(key string) (*Namespace, error) { return nil, ErrNotSupported }

// BindNamespace returns ErrNotSupported.
func BindNamespace(src, key string) (*Namespace, error) { return nil, ErrNotSupported }

// ID is a network namespace's identity.
type ID struct{ Dev, Ino uint64 }

// Identify returns ErrNotSupported.
func Identify(path string) (ID, error) { return ID{}, ErrNotSupported }

// ID returns the zero ID.
func (n *Namespace) ID() ID { return ID{} }

// Exists returns false.
func Exists(key string) bool { return false }

// Check returns ErrNotSupported.
func Check(key string) error { return ErrNotSupported }

// Same returns ErrNotSupported.
func Same(a, b string) (bool, error) { return false, ErrNotSupported }

// Abandoned returns ErrNotSupported.
func Abandoned(path, key string) (bool, error) { return false, ErrNotSupported }

// Remove returns ErrNotSupported.
func Remove(key string) error { return ErrNotSupported }

// Path returns "".
func (n *Namespace) Path() string { return "" }

// Stats returns ErrNotSupported.
func (n *Namespace) Stats() (map[string]LinkStats, error) { return nil, ErrNotSupported }

// EnsureInterface is not supported off Linux.
func (n *Namespace) EnsureInterface(name string, addrs []*net.IPNet) error { return ErrNotSupported }

// HostLinks is not supported off Linux.
func (n *Namespace) HostLinks(host netns.NsHandle) ([]netlink.Link, error) {
	return nil, ErrNotSupported
}

// Move is not supported off Linux.
func (n *Namespace) Move(key string) error { return ErrNotSupported }

// SetLoopbackUp is not supported off Linux.
func (n *Namespace) SetLoopbackUp() error { return ErrNotSupported }

// String returns "".
func (n *Namespace) String() string { return "" }

// Handle returns nil.
func (n *Namespace) Handle() *netlink.Handle { return nil }

// Do returns ErrNotSupported without calling fn.
func (n *Namespace) Do(fn func() error) error { return ErrNotSupported }

// Close returns ErrNotSupported.
func (n *Namespace) Close() error { return ErrNotSupported }

// Destroy returns ErrNotSupported.
func (n *Namespace) Destroy() error { return ErrNotSupported }

// CreateVethPair returns ErrNotSupported.
func (n *Namespace) CreateVethPair(host *netlink.Handle, hostName, peerName string, mtu int, peerMAC net.HardwareAddr) error {
	return ErrNotSupported
}

// MoveLinkIn returns ErrNotSupported.
func (n *Namespace) MoveLinkIn(host *netlink.Handle, name string) error { return ErrNotSupported }

// ConfigureInterface returns ErrNotSupported.
func (n *Namespace) ConfigureInterface(cfg InterfaceConfig) error { return ErrNotSupported }

// WaitLinkUp returns ErrNotSupported.
func (n *Namespace) WaitLinkUp(ctx context.Context, name string) error { return ErrNotSupported }

// WaitInterfaceReady returns ErrNotSupported.
func (n *Namespace) WaitInterfaceReady(ctx context.Context, name string) error {
	return ErrNotSupported
}

// RemoveInterface returns ErrNotSupported.
func (n *Namespace) RemoveInterface(name string) error { return ErrNotSupported }

// RetireInterface returns ErrNotSupported.
func (n *Namespace) RetireInterface(name string, release bool) error { return ErrNotSupported }

// ReleaseName returns ErrNotSupported.
func (n *Namespace) ReleaseName(name string) error { return ErrNotSupported }

// DeleteRetired returns ErrNotSupported.
func (n *Namespace) DeleteRetired() error { return ErrNotSupported }

// Links returns ErrNotSupported.
func (n *Namespace) Links() ([]netlink.Link, error) { return nil, ErrNotSupported }

// NextInterfaceName returns ErrNotSupported.
func (n *Namespace) NextInterfaceName(prefix string) (string, error) { return "", ErrNotSupported }

// AddRoute returns ErrNotSupported.
func (n *Namespace) AddRoute(dst *net.IPNet, gw net.IP, dev string) error { return ErrNotSupported }

// RemoveRoute returns ErrNotSupported.
func (n *Namespace) RemoveRoute(dst *net.IPNet, gw net.IP, dev string) error { return ErrNotSupported }

// SetDefaultGateway returns ErrNotSupported.
func (n *Namespace) SetDefaultGateway(gw net.IP, dev string) error { return ErrNotSupported }

// UnsetDefaultGateway returns ErrNotSupported.
func (n *Namespace) UnsetDefaultGateway(family int) error { return ErrNotSupported }

// SetSysctl returns ErrNotSupported.
func (n *Namespace) SetSysctl(name, value string) error { return ErrNotSupported }

// Sysctl returns ErrNotSupported.
func (n *Namespace) Sysctl(name string) (string, error) { return "", ErrNotSupported }
