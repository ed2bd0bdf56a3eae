package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var info = sdk.Info{Name: "overlay", Version: version, Config: Config{}}

// capabilities are the same on every platform: overlay networks are
// shared by every host of the store and reach across them, their
// endpoints get addresses from the host's (global) IPAM, and the driver
// takes the other hosts' endpoints as peers.
func capabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{
		DataScope:         pb.Scope_SCOPE_GLOBAL,
		ConnectivityScope: pb.Scope_SCOPE_GLOBAL,
		NeedsAddresses:    true,
		Peers:             true,
	}, nil
}

// Kernel object names. All derive from the host's IDs alone, so a
// replayed call after a driver restart finds what the first call made.
const (
	bridgePrefix   = "ovbr-" // a network's bridge
	vxlanPrefix    = "ovvx-" // a network's VXLAN device
	netIDLen       = 8
	hostIfPrefix   = "ov" // host end of an endpoint's veth pair
	peerIfPrefix   = "op" // sandbox end, when the host's name cannot be used
	epIDLen        = 11
	sandboxIfNames = "eth" // dst_prefix returned by Join
)

func bridgeName(netID string) string { return bridgePrefix + shortID(netID, netIDLen) }
func vxlanName(netID string) string  { return vxlanPrefix + shortID(netID, netIDLen) }
func hostIfName(epID string) string  { return hostIfPrefix + shortID(epID, epIDLen) }
func peerIfName(epID string) string  { return peerIfPrefix + shortID(epID, epIDLen) }

// shortID returns the first n characters of id when id is all lower-case
// hex (the host's IDs are), and otherwise the first n hex digits of its
// SHA-256, so names stay valid and distinct for any ID.
func shortID(id string, n int) string {
	if len(id) >= n && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:n]
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:n]
}

// bridgeAlias marks a bridge as the driver's, for network id.
func bridgeAlias(netID string) string { return bridgeAliasPrefix + netID }

// bridgeAliasPrefix starts the alias of every bridge the driver made.
const bridgeAliasPrefix = "sandnet overlay "

// endpoint is an endpoint as the driver programs it.
type endpoint struct {
	id       string
	mac      net.HardwareAddr
	ip4, ip6 netip.Addr
	macSet   bool // the host gave the MAC; false when macFor made it
}

// parseEndpoint checks an endpoint of network n: its addresses must lie in
// the network's pools.
func parseEndpoint(n *network, pe *pb.Endpoint) (*endpoint, error) {
	if pe.GetId() == "" {
		return nil, fmt.Errorf("endpoint without an id: %w", sdk.ErrInvalid)
	}
	ep := &endpoint{id: pe.GetId()}
	iface := pe.GetInterface()
	var err error
	if ep.ip4, err = parseAddr(iface.GetAddress(), n.v4); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	if ep.ip6, err = parseAddr(iface.GetAddressV6(), n.v6); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	if m := iface.GetMac(); m != "" {
		if ep.mac, err = parseMAC(m); err != nil {
			return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
		}
		ep.macSet = true
	} else {
		ep.mac = macFor(ep.id, ep.ip4)
	}
	return ep, nil
}

// parseAddr parses an address given as CIDR or bare, which must lie in one
// of pools (of its family); "" is no address.
func parseAddr(s string, pools []netip.Prefix) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	var a netip.Addr
	if p, err := netip.ParsePrefix(s); err == nil {
		a = p.Addr()
	} else if a, err = netip.ParseAddr(s); err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %w", s, sdk.ErrInvalid)
	}
	a = a.Unmap()
	for _, p := range pools {
		if p.Contains(a) {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("address %s is in none of the network's pools %v: %w", a, pools, sdk.ErrInvalid)
}

func parseMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return nil, fmt.Errorf("MAC %q is not a unicast Ethernet address: %w", s, sdk.ErrInvalid)
	}
	return mac, nil
}

// macFor returns the MAC of an endpoint the host left without one: 02:42
// and its IPv4 address (as Docker does; the host's global IPAM makes the
// address unique in the network across hosts), or, for an IPv6-only
// endpoint, four bytes of the SHA-256 of its ID.
func macFor(epID string, ip4 netip.Addr) net.HardwareAddr {
	mac := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 0}
	if ip4.Is4() {
		b := ip4.As4()
		copy(mac[2:], b[:])
		return mac
	}
	sum := sha256.Sum256([]byte(epID))
	copy(mac[2:], sum[:4])
	return mac
}

// peer is a remote endpoint as the driver programs it: neighbour entries
// for its addresses and a forwarding entry for its MAC, on the network's
// VXLAN device.
type peer struct {
	id       string
	mac      net.HardwareAddr
	ip4, ip6 netip.Addr
	vtep     netip.Addr
}

// parsePeer checks a peer of network n. It needs a MAC, a VTEP and at
// least one address in the network's pools.
func parsePeer(n *network, pp *pb.Peer) (*peer, error) {
	p := &peer{id: pp.GetEndpointId()}
	var err error
	if p.mac, err = parseMAC(pp.GetMac()); err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.id, err)
	}
	if p.vtep, err = netip.ParseAddr(pp.GetVtep()); err != nil {
		return nil, fmt.Errorf("peer %s: VTEP %q is not an IP address: %w", p.id, pp.GetVtep(), sdk.ErrInvalid)
	}
	p.vtep = p.vtep.Unmap()
	if p.vtep.Is4() != n.vtep.Is4() {
		return nil, fmt.Errorf("peer %s: VTEP %s is not of the family of this host's %s: %w", p.id, p.vtep, n.vtep, sdk.ErrInvalid)
	}
	if p.ip4, err = parseAddr(pp.GetAddress(), n.v4); err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.id, err)
	}
	if p.ip6, err = parseAddr(pp.GetAddressV6(), n.v6); err != nil {
		return nil, fmt.Errorf("peer %s: %w", p.id, err)
	}
	if !p.ip4.IsValid() && !p.ip6.IsValid() {
		return nil, fmt.Errorf("peer %s: no address: %w", p.id, sdk.ErrInvalid)
	}
	return p, nil
}

// joinResponse is what Join returns for an interface named src in the
// sandbox whose pair's host end is host: the host names it eth<N>. There
// is no gateway: an overlay network reaches its own containers only.
func joinResponse(src, host string) *pb.JoinResponse {
	return &pb.JoinResponse{SrcName: src, InSandbox: true, DstPrefix: sandboxIfNames, HostInterface: host}
}
