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

// resolverAddr is the embedded DNS server's address inside every sandbox.
const resolverAddr = "127.0.0.11"

// result is ADD's answer: the host and sandbox interfaces, the endpoint's
// addresses with their gateways, the routes through the interface in
// effect in the namespace, and the embedded resolver with the search
// domains and options of the sandbox's resolv.conf — so a runtime that
// writes resolv.conf from the result (podman does) points the container
// at the resolver.
func result(conf *NetConf, sb *sandbox, ep *endpoint, at *attachment) (types.Result, error) {
	r := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	ns, err := inspect(at.netns, ep.IfName)
	if err != nil {
		return nil, types.NewError(types.ErrInternal, "reading the attached interface back", err.Error())
	}
	if ns.hostName != "" {
		r.Interfaces = append(r.Interfaces, &current.Interface{Name: ns.hostName, Mac: ns.hostMAC})
	}
	idx := len(r.Interfaces)
	mac := ep.MAC
	if mac == "" {
		mac = ns.mac
	}
	r.Interfaces = append(r.Interfaces, &current.Interface{Name: ep.IfName, Mac: mac, Sandbox: at.netns})
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
	for _, rt := range ns.routes {
		if !rt.NextHop.IsValid() && rt.Dst.Bits() != 0 {
			continue // the subnet's own route: the address says it
		}
		route := &types.Route{Dst: ipNet(rt.Dst)}
		if rt.NextHop.IsValid() {
			route.GW = rt.NextHop.AsSlice()
		}
		r.Routes = append(r.Routes, route)
	}
	r.DNS.Nameservers = []string{resolverAddr}
	r.DNS.Search, r.DNS.Options = searchAndOptions(sb.ResolvConf)
	return r, nil
}

// ipNet is p as a net.IPNet that keeps the host part, as CNI results do.
func ipNet(p netip.Prefix) net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}
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
