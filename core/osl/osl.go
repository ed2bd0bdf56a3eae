// Package osl is sandnet's OS layer: it creates, opens and removes network
// namespaces bind-mounted at key paths, and configures links, addresses,
// routes and sysctls inside them.
//
// A sandbox's network stack is one network namespace. The namespace lives as
// long as something references it; osl keeps it alive by bind-mounting its
// nsfs file on a regular file, the key (as `ip netns add` does under
// /run/netns), so it survives the process that made it and an agent restart.
//
// Everything is done through a netlink socket opened once inside each
// namespace (Namespace.Handle), so configuring a sandbox does not switch OS
// threads between namespaces. Only what netlink cannot do — creating a
// namespace, writing per-namespace sysctls, opening sockets inside it — runs
// on an OS thread switched into the namespace (Namespace.Do), and that thread
// is thrown away rather than reused if it cannot be switched back.
//
// osl works on Linux only; elsewhere every function returns ErrNotSupported.
package osl

import (
	"errors"
	"net"
)

var (
	// ErrNotSupported is returned on platforms without network namespaces.
	ErrNotSupported = errors.New("osl: not supported on this platform")
	// ErrInvalid is returned, wrapped, for arguments osl rejects before
	// touching the system: a malformed interface name, a nil address, a
	// sysctl outside net.*.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotNamespace is returned, wrapped, when a path exists but is not a
	// network namespace (not an nsfs file, or a namespace of another type).
	ErrNotNamespace = errors.New("not a network namespace")
	// ErrClosed is returned by methods of a Namespace after Close or Destroy.
	ErrClosed = errors.New("namespace closed")
)

// Missing keys are reported with errors wrapping fs.ErrNotExist, keys that
// already hold a namespace with errors wrapping fs.ErrExist.

// InterfaceConfig describes how ConfigureInterface sets up a link that is
// already inside the namespace.
type InterfaceConfig struct {
	// SrcName is the link's current name inside the namespace. Required.
	SrcName string
	// DstName is the name to give it ("eth0"); empty keeps SrcName.
	DstName string
	// MAC is the hardware address to set; nil keeps the current one.
	MAC net.HardwareAddr
	// Addresses are added in order, IPv4 and IPv6 alike. IPv6 addresses
	// are added without duplicate address detection (nodad), so DAD does
	// not hold them back for a second; see WaitInterfaceReady for what
	// still finishes asynchronously.
	Addresses []*net.IPNet
	// MTU to set; 0 keeps the current one.
	MTU int
	// NoIPv6LinkLocal gives the link no IPv6 link-local address
	// (addr_gen_mode none), so it sends no duplicate address probes,
	// multicast listener reports or router solicitations when it comes up:
	// for an interface that carries IPv4 only. Every such packet is
	// flooded to every port of the bridge the interface hangs off.
	NoIPv6LinkLocal bool
}

// LinkStats are a link's counters as the kernel keeps them (received:
// into the namespace the link is in).
type LinkStats struct {
	RxBytes   uint64 `json:"rx_bytes"`
	TxBytes   uint64 `json:"tx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxErrors  uint64 `json:"rx_errors"`
	TxErrors  uint64 `json:"tx_errors"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
}
