package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsView is what the namespace shows of an attached interface.
type nsView struct {
	mac    string
	up     bool
	addrs  []netip.Prefix
	routes []route // through the interface (a default route's Dst is 0.0.0.0/0 or ::/0)
}

// inspect reads interface ifname in the namespace at path (for CHECK). It
// reads with a netlink socket opened in that
// namespace, without moving the process into it.
//
// Equivalent to: `ip -n NS addr show IFNAME; ip -n NS route show dev IFNAME`.
func inspect(path, ifname string) (*nsView, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s in %s: %w", ifname, path, err)
	}
	v := &nsView{mac: link.Attrs().HardwareAddr.String(), up: link.Attrs().Flags&net.FlagUp != 0}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s in %s: %w", ifname, path, err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
			v.addrs = append(v.addrs, p)
		}
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("routes of %s in %s: %w", ifname, path, err)
	}
	for _, r := range routes {
		var rt route
		if gw, ok := netip.AddrFromSlice(r.Gw); ok {
			rt.NextHop = gw.Unmap()
		}
		dst, ok := prefixOf(r.Dst)
		if !ok { // the default route
			dst = netip.MustParsePrefix("0.0.0.0/0")
			if r.Family == unix.AF_INET6 {
				dst = netip.MustParsePrefix("::/0")
			}
		}
		rt.Dst = dst
		v.routes = append(v.routes, rt)
	}
	return v, nil
}

// checkNamespace compares the namespace with the agent's record of the
// endpoint: the interface is there and up, with MAC mac (the agent's, or
// the chain's result's), every recorded address, and the routes ADD's
// result lists through it (routes: the default routes the endpoint holds
// and its static ones).
func checkNamespace(path string, ep *endpoint, mac string, routes []route) error {
	v, err := inspect(path, ep.IfName)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("CHECK: %v", err), "")
	}
	fail := func(format string, a ...any) error {
		return types.NewError(types.ErrInternal, "CHECK: "+fmt.Sprintf(format, a...), "")
	}
	if !v.up {
		return fail("interface %s is down", ep.IfName)
	}
	if mac != "" && !strings.EqualFold(v.mac, mac) {
		return fail("interface %s has MAC %s, %s", ep.IfName, v.mac, macSource(mac, ep))
	}
	for _, p := range []netip.Prefix{ep.Address, ep.AddressV6} {
		if p.IsValid() && !slices.Contains(v.addrs, p) {
			return fail("interface %s lacks address %s", ep.IfName, p)
		}
	}
	for _, want := range routes {
		if !slices.Contains(v.routes, want) {
			return fail("route to %s via %s is missing on %s", want.Dst, want.NextHop, ep.IfName)
		}
	}
	return nil
}

// macSource says where the MAC CHECK expected came from.
func macSource(mac string, ep *endpoint) string {
	if strings.EqualFold(mac, ep.MAC) {
		return "the agent recorded " + mac
	}
	return "the chain's result gives " + mac
}
