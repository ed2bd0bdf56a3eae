package agent

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// ResolveAdvertiseAddr is what the agent makes of advertise_addr s at its
// start (see advertiseAddr), for sandnet doctor.
func ResolveAdvertiseAddr(s string) (netip.Addr, error) { return advertiseAddr(s) }

// advertiseAddr resolves the config's advertise_addr in the agent's
// namespace: an IP address as it is; an interface name to its first
// global unicast IPv4 address, or its first global unicast IPv6 address
// when it has no IPv4 one. "" is no address (the zero Addr).
func advertiseAddr(s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), nil
	}
	link, err := netlink.LinkByName(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("advertise_addr: interface %s: %w", s, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("advertise_addr: listing addresses of %s: %w", s, err)
	}
	var v6 netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || !ip.Unmap().IsGlobalUnicast() {
			continue
		}
		if ip = ip.Unmap(); ip.Is4() {
			return ip, nil
		}
		if !v6.IsValid() {
			v6 = ip
		}
	}
	if !v6.IsValid() {
		return netip.Addr{}, fmt.Errorf("advertise_addr: interface %s has no global unicast address", s)
	}
	return v6, nil
}
