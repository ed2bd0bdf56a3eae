package main

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// resolverAddr is the embedded DNS server's address inside every sandbox,
// given for an endpoint that names none of its own (an agent of before
// 8 Dec).
const resolverAddr = "127.0.0.11"

// result is ADD's answer, made from the agent's answer alone (the plugin
// reads nothing back from the kernel): the host and sandbox interfaces,
// the endpoint's addresses with their gateways, its routes — the default
// routes where this endpoint's gateway is the namespace's, and the
// driver's static routes — and the embedded resolver, at the address the
// endpoint was given, with the search domains and options of the
// sandbox's resolv.conf, so a runtime that writes resolv.conf from the
// result (podman does) points the container at the resolver.
func result(sb *sandbox, ep *endpoint, netns string) *current.Result {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	if ep.HostIfName != "" {
		r.Interfaces = append(r.Interfaces, &current.Interface{Name: ep.HostIfName})
	}
	idx := len(r.Interfaces)
	r.Interfaces = append(r.Interfaces, &current.Interface{Name: ep.IfName, Mac: ep.MAC, Sandbox: netns})
	for _, a := range []struct {
		p  netip.Prefix
		gw netip.Addr
	}{{ep.Address, ep.Gateway}, {ep.AddressV6, ep.GatewayV6}} {
		if !a.p.IsValid() {
			continue
		}
		ipc := &current.IPConfig{Interface: current.Int(idx), Address: ipNet(a.p)}
		if a.gw.IsValid() {
			ipc.Gateway = a.gw.AsSlice()
		}
		r.IPs = append(r.IPs, ipc)
	}
	for _, rt := range append(defaultRoutes(sb, ep), ep.Routes...) {
		route := &types.Route{Dst: ipNet(rt.Dst)}
		if rt.NextHop.IsValid() {
			route.GW = rt.NextHop.AsSlice()
		}
		r.Routes = append(r.Routes, route)
	}
	// The endpoint's own address of the resolver: a runtime takes it out
	// of resolv.conf when the attachment goes, and the container's other
	// attachments keep theirs.
	r.DNS.Nameservers = []string{resolverAddr}
	if ep.Resolver.IsValid() {
		r.DNS.Nameservers = []string{ep.Resolver.String()}
	}
	r.DNS.Search, r.DNS.Options = searchAndOptions(sb.ResolvConf)
	return r
}

// defaultRoutes are the default routes through endpoint ep of sb: one
// per family whose default route the sandbox takes through ep, via ep's
// gateway.
func defaultRoutes(sb *sandbox, ep *endpoint) []route {
	var out []route
	for _, d := range []struct {
		addr       netip.Prefix
		gw         netip.Addr
		holder     string
		everywhere netip.Prefix
	}{
		{ep.Address, ep.Gateway, sb.GatewayEndpoint, netip.PrefixFrom(netip.IPv4Unspecified(), 0)},
		{ep.AddressV6, ep.GatewayV6, sb.GatewayEndpointV6, netip.PrefixFrom(netip.IPv6Unspecified(), 0)},
	} {
		if d.addr.IsValid() && d.gw.IsValid() && d.holder == ep.ID {
			out = append(out, route{Dst: d.everywhere, NextHop: d.gw})
		}
	}
	return out
}

// ipNet is p as a net.IPNet that keeps the host part, as CNI results do.
func ipNet(p netip.Prefix) net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
}

// prefixOf is n as a netip.Prefix that keeps the host part.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// searchAndOptions reads the search domains and options of a resolv.conf.
// A file that cannot be read gives none: the nameserver is what matters.
func searchAndOptions(path string) (search, options []string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "search", "domain":
			search = fields[1:]
		case "options":
			options = append(options, fields[1:]...)
		}
	}
	return search, options
}
