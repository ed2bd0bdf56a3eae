package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var info = sdk.Info{Name: "bridge", Version: version, Config: Config{}}

// capabilities are the same on every platform: bridge networks live on
// one host and their endpoints get addresses from the host's IPAM.
func capabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{
		DataScope:         pb.Scope_SCOPE_LOCAL,
		ConnectivityScope: pb.Scope_SCOPE_LOCAL,
		NeedsAddresses:    true,
		NetworkOptions:    knownOptions,
	}, nil
}

// endpoint is an endpoint as the driver programs it.
type endpoint struct {
	id       string
	netID    string
	mac      net.HardwareAddr
	ip4, ip6 netip.Addr
	macSet   bool // the host gave the MAC; false when macFor made it
}

// parseEndpoint checks an endpoint of network n. Its addresses must lie in
// the network's pools, and it needs an IPv4 address when the network has
// IPv4 pools.
func parseEndpoint(n *network, pe *pb.Endpoint) (*endpoint, error) {
	if pe.GetId() == "" {
		return nil, fmt.Errorf("endpoint without an id: %w", sdk.ErrInvalid)
	}
	ep := &endpoint{id: pe.GetId(), netID: n.id}
	iface := pe.GetInterface()
	var err error
	if ep.ip4, err = parseEndpointAddr(n, ep.id, iface.GetAddress(), 4); err != nil {
		return nil, err
	}
	if ep.ip6, err = parseEndpointAddr(n, ep.id, iface.GetAddressV6(), 6); err != nil {
		return nil, err
	}
	if len(n.v4) > 0 && !ep.ip4.IsValid() {
		return nil, fmt.Errorf("endpoint %s: network %s has IPv4 pools but the endpoint no IPv4 address: %w", ep.id, n.id, sdk.ErrInvalid)
	}
	if m := iface.GetMac(); m != "" {
		mac, err := net.ParseMAC(m)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, fmt.Errorf("endpoint %s: MAC %q is not a unicast Ethernet address: %w", ep.id, m, sdk.ErrInvalid)
		}
		ep.mac, ep.macSet = mac, true
	} else {
		ep.mac = macFor(ep.id, ep.ip4.AsSlice())
	}
	return ep, nil
}

func parseEndpointAddr(n *network, epID, s string, fam int) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	p, err := netip.ParsePrefix(s)
	var a netip.Addr
	if err == nil {
		a = p.Addr()
	} else if a, err = netip.ParseAddr(s); err != nil {
		return netip.Addr{}, fmt.Errorf("endpoint %s: address %q: %w", epID, s, sdk.ErrInvalid)
	}
	a = a.Unmap()
	pools := n.v4
	if fam == 6 {
		pools = n.v6
	}
	if family(a) != fam {
		return netip.Addr{}, fmt.Errorf("endpoint %s: address %q is not IPv%d: %w", epID, s, fam, sdk.ErrInvalid)
	}
	for _, sn := range pools {
		if sn.pool.Contains(a.AsSlice()) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("endpoint %s: address %s is in no pool of network %s: %w", epID, a, n.id, sdk.ErrInvalid)
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// joinResponse is what Join returns for an interface named src in the
// sandbox whose pair's host end is host: the host names it eth<N>, and,
// unless the network is internal, routes the sandbox's default traffic
// through the bridge's gateway.
func joinResponse(n *network, src, host string) *pb.JoinResponse {
	r := &pb.JoinResponse{SrcName: src, InSandbox: true, DstPrefix: sandboxIfNames, HostInterface: host}
	if !n.internal {
		if gw := n.gateway(4); gw != nil {
			r.Gateway = gw.String()
		}
		if gw := n.gateway(6); gw != nil {
			r.GatewayV6 = gw.String()
		}
	}
	return r
}
