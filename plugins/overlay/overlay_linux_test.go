package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// The tests run in the namespace nstest.Main made. Each "host" is one
// more namespace, its eth0 a port of the underlay bridge the test makes
// in its own, on 192.0.2.0/24 (TEST-NET-1, only ever inside these
// namespaces); each host runs a driver of its own (in process, through
// the SDK's gRPC adapters) and each container is a sandbox namespace.

var ctx = context.Background()

func newID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// host is a "host": its namespace, its underlay address, its driver.
type host struct {
	key  string
	vtep string
	d    *driver.Client
}

// newUnderlay makes the underlay bridge and n hosts on it, 192.0.2.1 on.
func newUnderlay(t *testing.T, n int) []*host {
	t.Helper()
	// Names of the test's own: a namespace the previous test removed may
	// still be on its way out with its links.
	tag := newID()[:6]
	ul := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ul" + tag}}
	if err := netlink.LinkAdd(ul); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(ul) })
	if err := netlink.LinkSetUp(ul); err != nil {
		t.Fatal(err)
	}
	var hosts []*host
	for i := range n {
		h := &host{key: nstest.NewNetns(t), vtep: fmt.Sprintf("192.0.2.%d", i+1)}
		fd, err := unix.Open(h.key, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("ul%s-%d", tag, i+1), MasterIndex: ul.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd)}
		err = netlink.LinkAdd(veth)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(veth); err != nil {
			t.Fatal(err)
		}
		nstest.WithHandle(t, h.key, func(nh *netlink.Handle) error {
			l, err := nh.LinkByName("eth0")
			if err != nil {
				return err
			}
			if err := nh.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(h.vtep), Mask: net.CIDRMask(24, 32)}}); err != nil {
				return err
			}
			return nh.LinkSetUp(l)
		})
		c, stop, err := driver.InProcess(info, newDriverIn(h.key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		if err := c.Configure(ctx, nil); err != nil {
			t.Fatal(err)
		}
		h.d = c
		hosts = append(hosts, h)
	}
	return hosts
}

// on returns network n as host h's agent sends it: with h's advertise
// address.
func (h *host) on(n *pb.Network) *pb.Network {
	n = proto.Clone(n).(*pb.Network)
	n.AdvertiseAddr = h.vtep
	n.Scope = pb.Scope_SCOPE_GLOBAL
	return n
}

func overlayNet(vni uint32, subnet string) *pb.Network {
	return &pb.Network{Id: newID(), Name: fmt.Sprint("ov", vni), Vni: vni, Ipv4: []*pb.IPAMData{{Pool: subnet}}}
}

// container is a sandbox attached to an overlay network on a host.
type container struct {
	h    *host
	n    *pb.Network
	ep   *pb.Endpoint
	key  string
	addr netip.Prefix
}

// attach makes a sandbox on host h and attaches it to n with address
// addr, then does what the agent does with the interface the driver hands
// over: names it, addresses it and brings it up.
func attach(t *testing.T, h *host, n *pb.Network, addr string) *container {
	t.Helper()
	c := &container{h: h, n: h.on(n), key: nstest.NewNetns(t), addr: netip.MustParsePrefix(addr)}
	c.ep = &pb.Endpoint{Id: newID(), NetworkId: n.GetId(), Interface: &pb.EndpointInterface{Address: addr}}
	if c.addr.Addr().Is6() {
		c.ep.Interface = &pb.EndpointInterface{AddressV6: addr}
	}
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: c.n}); err != nil {
		t.Fatalf("CreateNetwork on %s: %v", h.vtep, err)
	}
	resp, err := driver.Attach(ctx, h.d, &pb.AttachRequest{Network: c.n, Endpoint: c.ep, SandboxKey: c.key, Ifname: "eth0"})
	if err != nil {
		t.Fatalf("Attach on %s: %v", h.vtep, err)
	}
	c.ep.Interface.Mac = resp.GetCreate().GetInterface().GetMac()
	if c.ep.Interface.Mac == "" || resp.GetJoin().GetSrcName() != "eth0" || !resp.GetJoin().GetInSandbox() || resp.GetJoin().GetGateway() != "" {
		t.Fatalf("Attach = %v: want a MAC filled in, eth0 made in the sandbox, no gateway", resp)
	}
	nstest.WithHandle(t, c.key, func(nh *netlink.Handle) error {
		l, err := nh.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().HardwareAddr.String() != c.ep.Interface.Mac {
			return fmt.Errorf("eth0 has MAC %s, want %s", l.Attrs().HardwareAddr, c.ep.Interface.Mac)
		}
		if l.Attrs().MTU != 1450 {
			return fmt.Errorf("eth0 has MTU %d, want 1450 (the underlay's 1500 less 50)", l.Attrs().MTU)
		}
		ip, ipn, _ := net.ParseCIDR(addr)
		ipn.IP = ip
		a := &netlink.Addr{IPNet: ipn}
		if ip.To4() == nil {
			a.Flags = unix.IFA_F_NODAD // as the host adds it
		}
		if err := nh.AddrAdd(l, a); err != nil {
			return err
		}
		return nh.LinkSetUp(l)
	})
	return c
}

// peer is c as another host's agent announces it.
func (c *container) peer() *pb.Peer {
	p := &pb.Peer{EndpointId: c.ep.GetId(), Address: c.addr.String(), Mac: c.ep.GetInterface().GetMac(), Vtep: c.h.vtep}
	if c.addr.Addr().Is6() {
		p.Address, p.AddressV6 = "", c.addr.String()
	}
	return p
}

// introduce tells each container's host about the others on other hosts,
// as the agents do from the store.
func introduce(t *testing.T, cs ...*container) {
	t.Helper()
	for _, c := range cs {
		var peers []*pb.Peer
		for _, o := range cs {
			if o != c && o.n.GetId() == c.n.GetId() {
				peers = append(peers, o.peer())
			}
		}
		// Peers of c's own host ride along: the driver skips them.
		if err := c.h.d.PeerAdd(ctx, &pb.PeerRequest{Network: c.n, Peers: peers}); err != nil {
			t.Fatalf("PeerAdd on %s: %v", c.h.vtep, err)
		}
	}
}

// dial connects from c to to's address over TCP and reads what to's
// server writes; to must be serving (serve).
func dial(c, to *container, timeout time.Duration) error {
	return nstest.Do(c.key, func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(to.addr.Addr(), 7777).String(), timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(timeout))
		b, err := io.ReadAll(conn)
		if err != nil {
			return err
		}
		if string(b) != to.ep.GetId() {
			return fmt.Errorf("read %q from %s, want its endpoint ID", b, to.addr.Addr())
		}
		return nil
	})
}

// serve answers every TCP connection to c's port 7777 with c's endpoint
// ID, until the test ends.
func serve(t *testing.T, c *container) {
	t.Helper()
	var l net.Listener
	if err := nstest.Do(c.key, func() (err error) {
		l, err = net.Listen("tcp", netip.AddrPortFrom(c.addr.Addr(), 7777).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte(c.ep.GetId()))
			_ = conn.Close()
		}
	}()
}

// reaches says whether from reaches to: retried for a few seconds, so a
// slow machine does not make it fail.
func reaches(t *testing.T, from, to *container) {
	t.Helper()
	var last error
	polltest.Until(t, 10*time.Second, fmt.Sprintf("%s reaches %s over TCP", from.addr.Addr(), to.addr.Addr()), func() bool {
		last = dial(from, to, time.Second)
		return last == nil
	})
}

// cannotReach says from does not reach to: a connection attempt of two
// seconds fails (a wrong result here can only be a pass, never a spurious
// failure).
func cannotReach(t *testing.T, from, to *container) {
	t.Helper()
	if err := dial(from, to, 2*time.Second); err == nil {
		t.Fatalf("%s reached %s: want the networks isolated", from.addr.Addr(), to.addr.Addr())
	}
}

// leftovers lists what the driver may have left in host h's namespace:
// links other than lo and the underlay, permanent neighbour entries, and
// forwarding entries of the VXLAN devices.
func leftovers(t *testing.T, h *host) []string {
	t.Helper()
	var out []string
	nstest.WithHandle(t, h.key, func(nh *netlink.Handle) error {
		for _, l := range nstest.Links(t, nh) {
			if name := l.Attrs().Name; name != "lo" && name != "eth0" {
				out = append(out, fmt.Sprintf("link %s (%s)", name, l.Type()))
			}
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
			neighs, err := nh.NeighList(0, fam)
			if err != nil {
				return err
			}
			for _, nb := range neighs {
				if nb.State&netlink.NUD_PERMANENT != 0 && strings.HasPrefix(nb.HardwareAddr.String(), "02:42:") {
					out = append(out, fmt.Sprintf("neighbour/fdb entry %s → %s (family %d)", nb.IP, nb.HardwareAddr, fam))
				}
			}
		}
		return nil
	})
	return out
}

// Two hosts, two overlay networks with one subnet between them: a
// container on each host of each network. Containers of one network
// reach each other across the hosts; a frame sent into one network's VNI
// never comes out of the other's, even when a host programs the other
// network's container as a peer; after the endpoints and networks are
// deleted, nothing is left on either host.
func TestTwoHosts(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	a, b := hosts[0], hosts[1]
	blue, red := overlayNet(100, "10.10.0.0/24"), overlayNet(200, "10.10.0.0/24")

	blueA, blueB := attach(t, a, blue, "10.10.0.2/24"), attach(t, b, blue, "10.10.0.3/24")
	redA, redB := attach(t, a, red, "10.10.0.4/24"), attach(t, b, red, "10.10.0.5/24")
	for _, c := range []*container{blueA, blueB, redA, redB} {
		serve(t, c)
	}

	// Before the hosts know of each other's containers, nothing crosses.
	cannotReach(t, blueA, blueB)

	introduce(t, blueA, blueB, redA, redB)
	reaches(t, blueA, blueB)
	reaches(t, blueB, blueA)
	reaches(t, redA, redB)
	reaches(t, redB, redA)

	// Adding the peers again changes nothing.
	introduce(t, blueA, blueB, redA, redB)
	reaches(t, blueA, blueB)

	// Isolation: host A sends blue's frames for redB's address to host
	// B, on blue's VNI; host B's blue bridge has no such container.
	if err := a.d.PeerAdd(ctx, &pb.PeerRequest{Network: blueA.n, Peers: []*pb.Peer{redB.peer()}}); err != nil {
		t.Fatal(err)
	}
	cannotReach(t, blueA, redB)
	cannotReach(t, redA, blueB) // red knows no blue address either

	// Withdrawn, a peer is unreachable again, and deleting it twice is
	// fine.
	for range 2 {
		if err := a.d.PeerDelete(ctx, &pb.PeerRequest{Network: blueA.n, Peers: []*pb.Peer{blueB.peer(), redB.peer()}}); err != nil {
			t.Fatal(err)
		}
	}
	cannotReach(t, blueA, blueB)
	introduce(t, blueA, blueB)
	reaches(t, blueA, blueB)

	// Teardown, as the agents do it: detach, then delete the network on
	// every host; the peers' entries go with the VXLAN devices.
	for _, c := range []*container{blueA, blueB, redA, redB} {
		if err := driver.Detach(ctx, c.h.d, &pb.DetachRequest{Network: c.n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
			t.Fatalf("Detach: %v", err)
		}
	}
	for _, h := range hosts {
		for _, n := range []*pb.Network{blue, red} {
			for range 2 {
				if err := h.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: h.on(n)}); err != nil {
					t.Fatalf("DeleteNetwork: %v", err)
				}
			}
		}
		if left := leftovers(t, h); len(left) > 0 {
			t.Errorf("host %s keeps after every delete: %v", h.vtep, left)
		}
	}
}

// TestTwoHostsIPv6Only: containers of an IPv6-only overlay network
// (no IPv4 pool, as the host makes one for --ipv4=false) on two hosts
// reach each other; their MACs, which no IPv4 address gives, differ.
func TestTwoHostsIPv6Only(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	n := &pb.Network{Id: newID(), Name: "ov300", Vni: 300, EnableIpv6: true, Ipv6: []*pb.IPAMData{{Pool: "fd00:300::/64"}}}
	a, b := attach(t, hosts[0], n, "fd00:300::2/64"), attach(t, hosts[1], n, "fd00:300::3/64")
	if a.ep.GetInterface().GetMac() == b.ep.GetInterface().GetMac() {
		t.Fatalf("both endpoints got MAC %s", a.ep.GetInterface().GetMac())
	}
	serve(t, a)
	serve(t, b)
	introduce(t, a, b)
	reaches(t, a, b)
	reaches(t, b, a)
	for _, c := range []*container{a, b} {
		if err := driver.Detach(ctx, c.h.d, &pb.DetachRequest{Network: c.n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
			t.Fatalf("Detach: %v", err)
		}
		if err := c.h.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: c.n}); err != nil {
			t.Fatalf("DeleteNetwork: %v", err)
		}
		if left := leftovers(t, c.h); len(left) > 0 {
			t.Errorf("host %s keeps after every delete: %v", c.h.vtep, left)
		}
	}
}

// A driver restarted (a new process knows nothing) finds what the first
// made: the host's replay of the network, the endpoint and the peers
// changes nothing, and traffic keeps flowing; peers sent before the
// network exists on a host make it.
func TestReplayAfterRestart(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	a, b := hosts[0], hosts[1]
	n := overlayNet(300, "10.20.0.0/24")
	ca := attach(t, a, n, "10.20.0.2/24")
	// Host B hears of A's container before it has one of its own.
	if err := b.d.PeerAdd(ctx, &pb.PeerRequest{Network: b.on(n), Peers: []*pb.Peer{ca.peer()}}); err != nil {
		t.Fatalf("PeerAdd before the network: %v", err)
	}
	cb := attach(t, b, n, "10.20.0.3/24")
	serve(t, ca)
	serve(t, cb)
	introduce(t, ca, cb)
	reaches(t, cb, ca)

	fresh := replayed(t, ca, false, cb.peer())
	reaches(t, ca, cb)
	reaches(t, cb, ca)

	// A peer that went while nobody told host A (a stale entry) goes with
	// a replacing PeerAdd that lacks it; the peers it names stay.
	gone := &pb.Peer{EndpointId: newID(), Address: "10.20.0.9/24", Mac: "02:42:0a:14:00:09", Vtep: b.vtep}
	if err := fresh.PeerAdd(ctx, &pb.PeerRequest{Network: ca.n, Peers: []*pb.Peer{gone}}); err != nil {
		t.Fatal(err)
	}
	if got := peerEntries(t, a); !strings.Contains(got, "10.20.0.9") {
		t.Fatalf("host A's entries after adding a peer: %s", got)
	}
	if err := fresh.PeerAdd(ctx, &pb.PeerRequest{Network: ca.n, Peers: []*pb.Peer{cb.peer()}, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if got := peerEntries(t, a); strings.Contains(got, "10.20.0.9") || strings.Contains(got, "02:42:0a:14:00:09") {
		t.Fatalf("host A keeps the stale peer after a replacing PeerAdd: %s", got)
	}
	reaches(t, ca, cb)
}

// TestReplayAppliesNewMTU: the driver restarted with another mtu (a
// reload) and replayed the network and its endpoint gives the bridge, the
// VXLAN device and both ends of the endpoint's pair the new MTU, and the
// container still reaches its peer. Before, the pair kept the old one: a
// container's packets larger than the bridge's MTU were dropped.
func TestReplayAppliesNewMTU(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	a, b := hosts[0], hosts[1]
	n := overlayNet(310, "10.21.0.0/24")
	ca := attach(t, a, n, "10.21.0.2/24")
	cb := attach(t, b, n, "10.21.0.3/24")
	serve(t, ca)
	serve(t, cb)
	introduce(t, ca, cb)

	replayedWith(t, ca, `{"mtu":1400}`, false, cb.peer())
	mtus := map[string]int{}
	nstest.WithHandle(t, a.key, func(h *netlink.Handle) error {
		for _, name := range []string{bridgeName(n.GetId()), vxlanName(n.GetId()), hostIfName(ca.ep.GetId())} {
			l, err := h.LinkByName(name)
			if err != nil {
				return err
			}
			mtus[name] = l.Attrs().MTU
		}
		return nil
	})
	nstest.WithHandle(t, ca.key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		mtus["eth0 (in the sandbox)"] = l.Attrs().MTU
		return nil
	})
	for _, mtu := range mtus {
		if mtu != 1400 {
			t.Errorf("after a restart with mtu 1400: MTUs %v, want 1400 for all", mtus)
			break
		}
	}
	reaches(t, ca, cb)
}

// TestCollect: a restarted driver, replayed one network and one of its
// endpoints, is told by Collect that the host holds nothing else. The
// other network's bridge and VXLAN device go (so a network made again
// with its VNI is not refused), and so does the other endpoint's host end
// on the kept network; the kept container still reaches its peer on the
// other host.
func TestCollect(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	a, b := hosts[0], hosts[1]
	kept, gone := overlayNet(310, "10.31.0.0/24"), overlayNet(311, "10.32.0.0/24")
	ca, forgotten, other := attach(t, a, kept, "10.31.0.2/24"), attach(t, a, kept, "10.31.0.4/24"), attach(t, a, gone, "10.32.0.2/24")
	cb := attach(t, b, kept, "10.31.0.3/24")
	serve(t, ca)
	serve(t, cb)
	introduce(t, ca, cb)

	fresh := replayed(t, ca, true, cb.peer())
	if err := driver.Collect(ctx, fresh, &pb.CollectRequest{Networks: []string{kept.GetId()}, Endpoints: []string{ca.ep.GetId()}}); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	nstest.WithHandle(t, a.key, func(nh *netlink.Handle) error {
		for _, l := range nstest.Links(t, nh) {
			names[l.Attrs().Name] = true
		}
		return nil
	})
	for name, want := range map[string]bool{
		bridgeName(kept.GetId()): true, vxlanName(kept.GetId()): true, hostIfName(ca.ep.GetId()): true,
		bridgeName(gone.GetId()): false, vxlanName(gone.GetId()): false, hostIfName(other.ep.GetId()): false,
		hostIfName(forgotten.ep.GetId()): false,
	} {
		if names[name] != want {
			t.Errorf("link %s on host A after Collect: there %v, want %v", name, names[name], want)
		}
	}
	reaches(t, ca, cb)
	reaches(t, cb, ca)
	again := a.on(overlayNet(311, "10.33.0.0/24"))
	if err := fresh.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: again}); err != nil {
		t.Errorf("a network made again with the forgotten network's VNI: %v", err)
	}
	if err := fresh.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: again}); err != nil {
		t.Error(err)
	}
}

// replayed starts a new driver on c's host and replays to it what the
// agent would after a restart of the driver: c's network, c's attach and
// the peers (with replace, as the whole set).
func replayed(t *testing.T, c *container, replace bool, peers ...*pb.Peer) *driver.Client {
	t.Helper()
	return replayedWith(t, c, "", replace, peers...)
}

// replayedWith is replayed with a driver given config (JSON; "" for none).
func replayedWith(t *testing.T, c *container, config string, replace bool, peers ...*pb.Peer) *driver.Client {
	t.Helper()
	d := newDriverIn(c.h.key)
	if config != "" {
		if err := d.Configure(ctx, []byte(config)); err != nil {
			t.Fatal(err)
		}
	}
	fresh, stop, err := driver.InProcess(info, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := fresh.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: c.n}); err != nil {
		t.Fatal(err)
	}
	if _, err := driver.Attach(ctx, fresh, &pb.AttachRequest{Network: c.n, Endpoint: c.ep, SandboxKey: c.key, Ifname: "eth0"}); err != nil {
		t.Fatalf("replayed Attach: %v", err)
	}
	if err := fresh.PeerAdd(ctx, &pb.PeerRequest{Network: c.n, Peers: peers, Replace: replace}); err != nil {
		t.Fatal(err)
	}
	return fresh
}

// peerEntries describes the permanent entries that name a container's
// MAC on host h.
func peerEntries(t *testing.T, h *host) string {
	t.Helper()
	var out []string
	nstest.WithHandle(t, h.key, func(nh *netlink.Handle) error {
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
			neighs, err := nh.NeighList(0, fam)
			if err != nil {
				return err
			}
			for _, nb := range neighs {
				if nb.State&netlink.NUD_PERMANENT != 0 && strings.HasPrefix(nb.HardwareAddr.String(), "02:42:") {
					out = append(out, fmt.Sprintf("%s→%s", nb.IP, nb.HardwareAddr))
				}
			}
		}
		return nil
	})
	return strings.Join(out, " ")
}

// A network on a host without an advertise address, or without a VNI, is
// refused and leaves nothing; two networks of one VNI on a host conflict.
func TestRefused(t *testing.T) {
	nstest.RequireRoot(t)
	h := newUnderlay(t, 1)[0]
	n := h.on(overlayNet(400, "10.30.0.0/24"))
	noAddr := proto.Clone(n).(*pb.Network)
	noAddr.AdvertiseAddr = ""
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: noAddr}); err == nil || !strings.Contains(err.Error(), "advertise_addr") {
		t.Fatalf("CreateNetwork without an advertise address = %v, want an error naming advertise_addr", err)
	}
	elsewhere := proto.Clone(n).(*pb.Network)
	elsewhere.AdvertiseAddr = "198.51.100.1"
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: elsewhere}); err == nil {
		t.Fatal("CreateNetwork with an advertise address on no interface of the host succeeded")
	}
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	same := h.on(overlayNet(400, "10.31.0.0/24"))
	err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: same})
	if err == nil || !strings.Contains(err.Error(), "VNI 400") {
		t.Fatalf("a second network of VNI 400 = %v, want a conflict naming the VNI", err)
	}
	for _, x := range []*pb.Network{same, n} {
		if err := h.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: x}); err != nil {
			t.Fatal(err)
		}
	}
	if left := leftovers(t, h); len(left) > 0 {
		t.Fatalf("left after refused creates: %v", left)
	}
}

// conformance is the SDK's suite on a host of the test's: the suite's
// network, with a VNI and the host's advertise address.
func conformance(t *testing.T, newDriver func(t *testing.T, h *host) driver.Driver) {
	nstest.RequireRoot(t)
	h := newUnderlay(t, 1)[0]
	drivertest.Run(t, drivertest.Options{
		New:        func(t *testing.T) driver.Driver { return newDriver(t, h) },
		SandboxKey: func(t *testing.T) string { return nstest.NewNetns(t) },
		Network: func() *pb.Network {
			return &pb.Network{Id: "drivertest-net", Name: "drivertest", Vni: 4242, AdvertiseAddr: h.vtep, Scope: pb.Scope_SCOPE_GLOBAL,
				Ipv4: []*pb.IPAMData{{Pool: "10.231.0.0/24", Gateway: "10.231.0.1/24"}}}
		},
	})
	if left := leftovers(t, h); len(left) > 0 {
		t.Fatalf("left after the suite: %v", left)
	}
}

func TestConformanceInProcess(t *testing.T) {
	conformance(t, func(t *testing.T, h *host) driver.Driver {
		c, stop, err := driver.InProcess(info, newDriverIn(h.key))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return c
	})
}

// The built plugin, started as the agent starts it, inside the host's
// namespace.
func TestConformancePlugin(t *testing.T) {
	nstest.RequireRoot(t)
	bin := plugintest.Build(t, "github.com/sandnet/sandnet/plugins/overlay")
	conformance(t, func(t *testing.T, h *host) driver.Driver {
		raw, _ := plugintest.Launch(t, "driver", "/usr/bin/nsenter", "--net="+h.key, bin)
		c := raw.(*driver.Client)
		if err := c.Configure(ctx, nil); err != nil {
			t.Fatal(err)
		}
		return c
	})
}

// TestDeletedNetworkStaysDeleted: a Join or a PeerAdd that reaches the
// driver after the network's DeleteNetwork (it raced the delete in the
// host) does not make the bridge and VXLAN device again — nothing would
// delete them, and the host would refuse their VNI to another network. A
// CreateNetwork of it does.
func TestDeletedNetworkStaysDeleted(t *testing.T) {
	nstest.RequireRoot(t)
	h := newUnderlay(t, 1)[0]
	n := h.on(overlayNet(4242, "10.142.0.0/24"))
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	if err := h.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	ep := &pb.Endpoint{Id: newID(), NetworkId: n.GetId(), Interface: &pb.EndpointInterface{Address: "10.142.0.2/24", Mac: "02:42:0a:8e:00:02"}}
	if _, err := h.d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: nstest.NewNetns(t), Ifname: "eth0"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Join after DeleteNetwork: %v; want not found", err)
	}
	peer := &pb.Peer{EndpointId: newID(), Address: "10.142.0.3/24", Mac: "02:42:0a:8e:00:03", Vtep: "192.0.2.9"}
	if err := h.d.PeerAdd(ctx, &pb.PeerRequest{Network: n, Peers: []*pb.Peer{peer}}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("PeerAdd after DeleteNetwork: %v; want not found", err)
	}
	if left := leftovers(t, h); len(left) > 0 {
		t.Fatalf("the deleted network made again: %v", left)
	}
	if err := h.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatalf("CreateNetwork again: %v", err)
	}
	if left := leftovers(t, h); len(left) != 2 {
		t.Fatalf("after CreateNetwork again: %v; want its bridge and VXLAN device", left)
	}
	if err := h.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
}

// TestPeerOfTheOtherFamilySkipped: a peer behind a VTEP of the other IP
// family (a host advertising an IPv6 address to IPv4 ones) is skipped,
// and the request's other peers are programmed. It failed the whole
// request: no peer of the network was programmed on that host, and the
// agent sent the set again every second.
func TestPeerOfTheOtherFamilySkipped(t *testing.T) {
	nstest.RequireRoot(t)
	hosts := newUnderlay(t, 2)
	a, b := hosts[0], hosts[1]
	n := overlayNet(320, "10.22.0.0/24")
	ca, cb := attach(t, a, n, "10.22.0.2/24"), attach(t, b, n, "10.22.0.3/24")
	serve(t, ca)
	serve(t, cb)
	other := &pb.Peer{EndpointId: newID(), Address: "10.22.0.9/24", Mac: "02:42:0a:16:00:09", Vtep: "2001:db8::9"}
	if err := a.d.PeerAdd(ctx, &pb.PeerRequest{Network: ca.n, Peers: []*pb.Peer{other, cb.peer()}}); err != nil {
		t.Fatalf("PeerAdd with a peer of the other family: %v", err)
	}
	if err := b.d.PeerAdd(ctx, &pb.PeerRequest{Network: cb.n, Peers: []*pb.Peer{ca.peer()}}); err != nil {
		t.Fatal(err)
	}
	reaches(t, ca, cb)
	if got := peerEntries(t, a); strings.Contains(got, "10.22.0.9") {
		t.Fatalf("host A programmed the peer it cannot reach: %s", got)
	}
}
