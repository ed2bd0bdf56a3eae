package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk/nstest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// The tests run in the namespace nstest.Main made, which plays the host.
// The "outside" is one more namespace, linked to the host by a veth pair on
// 203.0.113.0/24 (TEST-NET-3, only ever inside these namespaces)
const (
	hostOutsideIP = "203.0.113.1"
	outsideIP     = "203.0.113.2"
	outsideLink   = "tout0" // host end; not an sn* name, so leak counts ignore it
	// and 2001:db8::/64 (the IPv6 documentation prefix).
	hostOutsideIP6 = "2001:db8::1"
	outsideIP6     = "2001:db8::2"
)

var ctx = context.Background()

// newID returns a random 64-hex-digit id, as the host makes them.
func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// nsDo runs fn on an OS thread switched into the namespace at key ("" is
// the test's own namespace).
func nsDo(key string, fn func() error) error { return nstest.Do(key, fn) }

// newNetns is nstest.NewNetns: a sandbox namespace for the test.
func newNetns(t testing.TB) string { return nstest.NewNetns(t) }

// setupOutside makes the outside namespace and returns its key.
func setupOutside(t *testing.T) string {
	t.Helper()
	key := newNetns(t)
	ns, err := netns.GetFromPath(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: outsideLink}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	l, err := netlink.LinkByName(outsideLink)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []*netlink.Addr{mustAddr(t, hostOutsideIP+"/24"), mustAddr(t, hostOutsideIP6+"/64")} {
		if a.IP.To4() == nil {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(l, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.AddrAdd(l, mustAddr(t, outsideIP+"/24")); err != nil {
			return err
		}
		a6 := mustAddr(t, outsideIP6+"/64")
		a6.Flags = unix.IFA_F_NODAD
		if err := h.AddrAdd(l, a6); err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		return waitReady(h, l.Attrs().Index, []string{outsideIP6 + "/64"})
	})
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := waitReady(h, l.Attrs().Index, []string{hostOutsideIP6 + "/64"}); err != nil {
		t.Fatal(err)
	}
	return key
}

func mustAddr(t testing.TB, cidr string) *netlink.Addr {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testNet describes a network the tests create: id, pool 10.<n>.0.0/24
// with gateway .1.
func testNet(n int, opts map[string]string) *pb.Network {
	return &pb.Network{
		Id: newID(), Name: fmt.Sprintf("net%d", n), Options: opts,
		Ipv4:  []*pb.IPAMData{{Pool: fmt.Sprintf("10.%d.0.0/24", n), Gateway: fmt.Sprintf("10.%d.0.1/24", n)}},
		Scope: pb.Scope_SCOPE_LOCAL,
	}
}

// container is a sandbox the test attached, playing the host's part:
// after Join it renames the interface, addresses it and routes it, as
// core/osl does.
type container struct {
	key  string
	ip   string // without prefix
	ep   *pb.Endpoint
	join *pb.JoinResponse
}

// newDriverT returns a configured in-process driver value.
func newDriverT(t testing.TB, config string) *bridge {
	t.Helper()
	d := newDriver()
	if err := d.Configure(ctx, []byte(config)); err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: what the test's own cleanups
	// leave to the reaper is done before the test ends.
	t.Cleanup(d.close)
	return d
}

func createNetwork(t testing.TB, d *bridge, n *pb.Network) {
	t.Helper()
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	t.Cleanup(func() {
		if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
			t.Errorf("DeleteNetwork: %v", err)
		}
	})
}

// attach creates an endpoint with address .host (and ::host when the
// network has an IPv6 pool) on network n, joins a new sandbox to it and
// configures the sandbox as the host would.
func attach(t testing.TB, d *bridge, n *pb.Network, host int) *container {
	t.Helper()
	return attachWith(t, d, n, host, false)
}

// attachWith is attach; with prepared, the driver prepares the endpoint's
// pair in the namespace first (Prepare) and the join finishes it, as for a
// host's prepared spare.
func attachWith(t testing.TB, d *bridge, n *pb.Network, host int, prepared bool) *container {
	t.Helper()
	pool, _, _ := strings.Cut(n.Ipv4[0].Pool, "/")
	ip := strings.TrimSuffix(pool, "0") + fmt.Sprint(host)
	ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: ip + "/24"}}
	if len(n.Ipv6) > 0 {
		pool6, _, _ := strings.Cut(n.Ipv6[0].Pool, "/")
		ep.Interface.AddressV6 = fmt.Sprintf("%s%x/64", pool6, host)
	}
	resp, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep})
	if err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	ep.Interface.Mac = resp.GetInterface().GetMac()
	key := newNetns(t)
	if prepared {
		resp, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: ep.Id, SandboxKey: key, Ifname: "eth0"})
		if err != nil || resp.GetSrcName() != "eth0" {
			t.Fatalf("Prepare = %v, %v", resp, err)
		}
	}
	join, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: "eth0", Prepared: prepared})
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	c := &container{key: key, ip: ip, ep: ep, join: join}
	t.Cleanup(func() {
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			t.Errorf("Leave: %v", err)
		}
		if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Errorf("DeleteEndpoint: %v", err)
		}
	})
	configureSandbox(t, key, join, ep.Interface.Address, ep.Interface.AddressV6)
	return c
}

// replayTo does what the host replays to a restarted driver d for
// container c on network n: CreateNetwork, CreateEndpoint and Join.
func replayTo(t testing.TB, d *bridge, n *pb.Network, c *container) {
	t.Helper()
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatalf("replayed CreateNetwork: %v", err)
	}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: c.ep}); err != nil {
		t.Fatalf("replayed CreateEndpoint: %v", err)
	}
	if _, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key, Ifname: "eth0"}); err != nil {
		t.Fatalf("replayed Join: %v", err)
	}
}

// configureSandbox does the host's part of a join inside the sandbox:
// rename, addresses (IPv6 without DAD), up, default routes.
func configureSandbox(t testing.TB, key string, join *pb.JoinResponse, cidrs ...string) {
	t.Helper()
	if !join.GetInSandbox() || join.GetDstPrefix() != "eth" {
		t.Fatalf("Join = %v: want in_sandbox and dst_prefix eth", join)
	}
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		l, err := h.LinkByName(join.GetSrcName())
		if err != nil {
			return fmt.Errorf("finding %s: %w", join.GetSrcName(), err)
		}
		if err := h.LinkSetName(l, "eth0"); err != nil {
			return err
		}
		for _, cidr := range cidrs {
			if cidr == "" {
				continue
			}
			a := mustAddr(t, cidr)
			if a.IP.To4() == nil {
				a.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrAdd(l, a); err != nil {
				return err
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		// As core/osl's WaitInterfaceReady: until the link is
		// operationally up and the kernel has installed the local routes
		// of its IPv6 addresses, packets are lost and the first IPv6
		// exchange stalls for a second.
		if err := waitReady(h, l.Attrs().Index, cidrs); err != nil {
			return err
		}
		for _, gw := range []string{join.GetGateway(), join.GetGatewayV6()} {
			if gw == "" {
				continue
			}
			if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP(gw)}); err != nil {
				return fmt.Errorf("default route via %s: %w", gw, err)
			}
		}
		return nil
	})
}

// waitReady waits until link index is operationally up and the local
// routes of its IPv6 addresses among cidrs exist.
func waitReady(h *netlink.Handle, index int, cidrs []string) error {
	deadline := time.Now().Add(5 * time.Second)
	for !linkReady(h, index, cidrs) {
		if time.Now().After(deadline) {
			return fmt.Errorf("link %d not ready after 5s", index)
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func linkReady(h *netlink.Handle, index int, cidrs []string) bool {
	l, err := h.LinkByIndex(index)
	if err != nil || l.Attrs().OperState != netlink.OperUp {
		return false
	}
	for _, cidr := range cidrs {
		ip, _, err := net.ParseCIDR(cidr)
		if err != nil || ip.To4() != nil {
			continue
		}
		routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
		if err != nil || len(routes) == 0 {
			return false
		}
	}
	return true
}

// serveTCP listens on addr inside the namespace at key ("" for the host)
// and answers every connection with the client address it sees.
func serveTCP(t testing.TB, key, addr string) {
	t.Helper()
	var l net.Listener
	if err := nsDo(key, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, c.RemoteAddr().String())
			_ = c.Close()
		}
	}()
}

// serveUDP answers every datagram on addr with the sender's address.
func serveUDP(t testing.TB, key, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := nsDo(key, func() (err error) {
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// Dial timeouts: reachable paths answer well within ok; for paths that
// must be blocked, blocked is how long the test waits to be sure.
const (
	okTimeout      = 5 * time.Second
	blockedTimeout = 500 * time.Millisecond
)

// askTCP connects from the namespace at key to addr and returns what the
// server said: the client address it saw.
func askTCP(key, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := nsDo(key, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return string(b), err
}

// askUDP sends a datagram from the namespace at key to addr and returns
// the answer: the sender address the server saw.
func askUDP(key, addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	if err := nsDo(key, func() (err error) {
		c, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	// UDP may lose the first datagram while ARP resolves: send a few.
	for time.Now().Before(deadline) {
		if _, err := c.Write([]byte("ping")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(minTime(deadline, time.Now().Add(200*time.Millisecond)))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return "", err
		}
	}
	return "", fmt.Errorf("no UDP answer from %s within %v", addr, timeout)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// mustReach asserts that a TCP connection from key to addr works and the
// server sees the client as wantSrc (any source when wantSrc is "").
func mustReach(t *testing.T, what, key, addr, wantSrc string) {
	t.Helper()
	start := time.Now()
	got, err := askTCP(key, addr, okTimeout)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Logf("%s: TCP to %s took %v", what, addr, d)
	}
	if err != nil {
		t.Fatalf("%s: TCP to %s: %v", what, addr, err)
	}
	if wantSrc != "" && hostOf(got) != wantSrc {
		t.Fatalf("%s: server %s saw the client as %s, want %s", what, addr, got, wantSrc)
	}
}

// mustNotReach asserts that a TCP connection from key to addr fails.
func mustNotReach(t *testing.T, what, key, addr string) {
	t.Helper()
	if got, err := askTCP(key, addr, blockedTimeout); err == nil {
		t.Fatalf("%s: TCP to %s connected (server saw %s), want it blocked", what, addr, got)
	}
}

// sandnetRules returns the rule comments of every rule in the sandnet
// table, by chain.
func sandnetRules(t testing.TB) map[string][]string {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, ch := range chains {
		if ch.Table.Name != tableName {
			continue
		}
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			t.Fatal(err)
		}
		out[ch.Name] = []string{}
		for _, r := range rules {
			out[ch.Name] = append(out[ch.Name], commentOf(r))
		}
	}
	return out
}

func countRules(rules map[string][]string) int {
	n := 0
	for _, rs := range rules {
		n += len(rs)
	}
	return n
}

// conntrackCount counts the conntrack entries (IPv4 and IPv6) match
// selects.
func conntrackCount(t testing.TB, match func(f *netlink.ConntrackFlow) bool) int {
	t.Helper()
	n := 0
	for _, fam := range []netlink.InetFamily{unix.AF_INET, unix.AF_INET6} {
		flows, err := netlink.ConntrackTableList(netlink.ConntrackTable, fam)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range flows {
			if match(f) {
				n++
			}
		}
	}
	return n
}

// driverLinks lists the links in the host namespace whose names the
// driver makes (sn*, sp*).
func driverLinks(t testing.TB) []string {
	t.Helper()
	links := nstest.Links(t, nil)
	var names []string
	for _, l := range links {
		if n := l.Attrs().Name; strings.HasPrefix(n, "sn") || strings.HasPrefix(n, "sp") {
			names = append(names, n)
		}
	}
	return names
}

func requireRoot(t testing.TB) { nstest.RequireRoot(t) }
