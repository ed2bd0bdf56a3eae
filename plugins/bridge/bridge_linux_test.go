package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

func conformanceOptions(newDriver func(t *testing.T) driver.Driver) drivertest.Options {
	return drivertest.Options{
		New:        newDriver,
		SandboxKey: func(t *testing.T) string { return newNetns(t) },
	}
}

func TestConformanceInProcess(t *testing.T) {
	requireRoot(t)
	drivertest.Run(t, conformanceOptions(func(t *testing.T) driver.Driver {
		c, stop, err := driver.InProcess(info, newDriver())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		if err := c.Configure(ctx, nil); err != nil {
			t.Fatal(err)
		}
		return c
	}))
	assertNoLeftovers(t)
}

func TestConformancePlugin(t *testing.T) {
	requireRoot(t)
	bin := plugintest.Build(t, "github.com/sandnet/sandnet/plugins/bridge")
	drivertest.Run(t, conformanceOptions(func(t *testing.T) driver.Driver {
		return plugintest.LaunchDriver(t, bin, []byte(`{"mtu":1400}`))
	}))
	assertNoLeftovers(t)
}

// assertNoLeftovers checks that the host namespace holds no link, bridge,
// rule or table of the driver's: with its last network gone, the driver
// removes its nftables table.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	if links := driverLinks(t); len(links) > 0 {
		t.Errorf("links left behind: %v", links)
	}
	if rules := sandnetRules(t); len(rules) > 0 {
		t.Errorf("table %s left behind with no network: %v", tableName, rules)
	}
}

// TestErrorsCrossTheWire checks that invalid requests fail with the sdk
// sentinels the host branches on, through the gRPC adapters.
func TestErrorsCrossTheWire(t *testing.T) {
	requireRoot(t)
	c, stop, err := driver.InProcess(info, newDriver())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := c.Configure(ctx, []byte(`{"mtu":10}`)); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("Configure(mtu 10) = %v, want ErrInvalid", err)
	}
	n := testNet(41, map[string]string{"com.sandnet.bridge.enable_icc": "nope"})
	if err := c.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("CreateNetwork(bad option) = %v, want ErrInvalid", err)
	}
	n = testNet(41, nil)
	if err := c.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	defer c.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n})
	other := testNet(42, map[string]string{optBridgeName: bridgeName(n.Id)})
	if err := c.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: other}); !errors.Is(err, sdk.ErrConflict) {
		t.Errorf("CreateNetwork(another network's bridge) = %v, want ErrConflict", err)
	}
	ep := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.99.0.2/24"}}
	if _, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("CreateEndpoint(address outside the pool) = %v, want ErrInvalid", err)
	}
	ep.Interface.Address = "10.41.0.2/24"
	if _, err := c.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	defer c.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep})
	if _, err := c.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: "/nonexistent/sandbox"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Join(missing sandbox) = %v, want ErrNotFound", err)
	}
	notNS := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(notNS, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: notNS}); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("Join(key that is no namespace) = %v, want ErrInvalid", err)
	}
	ep.PortBindings = []*pb.PortBinding{{Proto: "sctp", ContainerPort: 1}}
	if _, err := c.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: ep}); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("ProgramExternalConnectivity(sctp) = %v, want ErrInvalid", err)
	}
}

// TestBridgeOptions checks the bridge a network gets: name, MTU, MAC,
// gateway address, and the default bridge.
func TestBridgeOptions(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, `{"default_bridge":"sntest0","mtu":1450}`)
	n := testNet(43, map[string]string{optDefault: "true"})
	createNetwork(t, d, n)
	br, err := netlink.LinkByName("sntest0")
	if err != nil {
		t.Fatalf("default bridge: %v", err)
	}
	if br.Attrs().MTU != 1450 || br.Attrs().Flags&1 == 0 || br.Attrs().HardwareAddr.String() != bridgeMAC(n.Id).String() {
		t.Errorf("bridge %s: mtu %d, flags %v, mac %s; want 1450, up, %s", br.Attrs().Name, br.Attrs().MTU, br.Attrs().Flags, br.Attrs().HardwareAddr, bridgeMAC(n.Id))
	}
	addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.43.0.1/24" {
		t.Errorf("bridge addresses = %v, want 10.43.0.1/24", addrs)
	}

	// Multicast snooping: off unless the network asks for it.
	if b, ok := br.(*netlink.Bridge); !ok || b.MulticastSnooping == nil || *b.MulticastSnooping {
		t.Errorf("default bridge: multicast snooping not off (%#v)", br)
	}

	n2 := testNet(44, map[string]string{optBridgeName: "br-named", optMTU: "1300", optMcastSnoop: "true"})
	createNetwork(t, d, n2)
	br2, err := netlink.LinkByName("br-named")
	if err != nil {
		t.Fatal(err)
	}
	if br2.Attrs().MTU != 1300 {
		t.Errorf("br-named MTU = %d, want 1300", br2.Attrs().MTU)
	}
	if b, ok := br2.(*netlink.Bridge); !ok || b.MulticastSnooping == nil || !*b.MulticastSnooping {
		t.Errorf("br-named: multicast snooping not on as asked (%#v)", br2)
	}
	c := attach(t, d, n2, 2)
	nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if l.Attrs().MTU != 1300 || l.Attrs().HardwareAddr.String() != "02:42:0a:2c:00:02" {
			t.Errorf("sandbox eth0: MTU %d, MAC %s; want 1300, 02:42:0a:2c:00:02", l.Attrs().MTU, l.Attrs().HardwareAddr)
		}
		if a := l.Attrs(); a.NumTxQueues != vethQueues || a.NumRxQueues != vethQueues {
			t.Errorf("sandbox eth0: %d tx and %d rx queues, want %d", a.NumTxQueues, a.NumRxQueues, vethQueues)
		}
		return nil
	})
	host, err := netlink.LinkByName(hostIfName(c.ep.Id))
	if err != nil {
		t.Fatal(err)
	}
	if a := host.Attrs(); a.MasterIndex != br2.Attrs().Index || a.MTU != 1300 || a.NumTxQueues != vethQueues || a.NumRxQueues != vethQueues {
		t.Errorf("host end: master %d, MTU %d, %d/%d queues; want %d, 1300, %d", a.MasterIndex, a.MTU, a.NumTxQueues, a.NumRxQueues, br2.Attrs().Index, vethQueues)
	}
}

// TestBorrowedBridge: a network named after a bridge that already exists
// uses it, and deleting the network leaves the bridge and its own
// addresses.
func TestBorrowedBridge(t *testing.T) {
	requireRoot(t)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br-borrowed", TxQLen: -1}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	own := mustAddr(t, "192.0.2.1/24")
	if err := netlink.AddrAdd(br, own); err != nil {
		t.Fatal(err)
	}
	d := newDriverT(t, "")
	n := testNet(45, map[string]string{optBridgeName: "br-borrowed"})
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	link, err := netlink.LinkByName("br-borrowed")
	if err != nil {
		t.Fatalf("the borrowed bridge is gone: %v", err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != own.IPNet.String() {
		t.Fatalf("addresses of the borrowed bridge = %v, want only its own %s", addrs, own.IPNet)
	}
	assertNoLeftovers(t)
}

// TestNotABridge: a network named after an existing interface that is
// not a bridge is a conflict naming the option and the interface, and
// leaves the interface as it was.
func TestNotABridge(t *testing.T) {
	requireRoot(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nb-veth"}, PeerName: "nb-peer"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	d := newDriverT(t, "")
	n := testNet(46, map[string]string{optBridgeName: "nb-veth"})
	err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n})
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "option "+optBridgeName+": nb-veth exists and is a veth, not a bridge") {
		t.Fatalf("network on a veth's name = %v, want a conflict naming the option and the veth", err)
	}
	link, err := netlink.LinkByName("nb-veth")
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4); len(addrs) != 0 || link.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("the veth was changed: addresses %v, flags %v", addrs, link.Attrs().Flags)
	}
	assertNoLeftovers(t)
}

// networkT makes a driver with the default configuration and its network
// 10.<octet>.0.0/24, and returns them with the network's bridge.
func networkT(t *testing.T, octet int) (*bridge, *pb.Network, netlink.Link) {
	t.Helper()
	requireRoot(t)
	d := newDriverT(t, `{}`)
	n := testNet(octet, nil)
	createNetwork(t, d, n)
	br, err := netlink.LinkByName(bridgeName(n.Id))
	if err != nil {
		t.Fatal(err)
	}
	return d, n, br
}

// TestFullBridge: a Join onto a bridge that has the kernel's maximum of
// ports is a conflict that says so, and leaves no veth pair behind.
func TestFullBridge(t *testing.T) {
	d, n, br := networkT(t, 45)
	// Veth pairs fill the bridge, their other ends in a namespace whose
	// removal at the end takes them all down at once.
	far := newNetns(t)
	fd, err := unix.Open(far, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for i := range maxBridgePorts {
		l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("snfull%d", i), MasterIndex: br.Attrs().Index},
			PeerName: fmt.Sprintf("p%d", i), PeerNamespace: netlink.NsFd(fd)}
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatalf("port %d: %v", i, err)
		}
	}
	ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.45.0.2/24"}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	_, err = d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: newNetns(t)})
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "is full") {
		t.Fatalf("Join onto a full bridge: %v, want a conflict saying the network is full", err)
	}
	if _, err := netlink.LinkByName(hostIfName(ep.Id)); err == nil {
		t.Fatal("the veth pair of the failed join is left")
	}
}

// TestJoinTakesTheHostsName: the sandbox end is created with the name the
// host asks for, so the host renames nothing; a name the sandbox already
// has, or an invalid one, gets one of the driver's own names instead.
func TestJoinTakesTheHostsName(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, `{}`)
	n := testNet(46, nil)
	createNetwork(t, d, n)
	key := newNetns(t)
	join := func(host int, ifname string) string {
		t.Helper()
		ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: fmt.Sprintf("10.46.0.%d/24", host)}}
		if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Fatal(err)
		}
		resp, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: ifname})
		if err != nil {
			t.Fatalf("Join asking for %q: %v", ifname, err)
		}
		t.Cleanup(func() {
			_ = d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key})
			_ = d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep})
		})
		return resp.GetSrcName()
	}
	if got := join(2, "eth0"); got != "eth0" {
		t.Fatalf("asked for eth0, got %q", got)
	}
	if got := join(3, "eth0"); got == "eth0" || !strings.HasPrefix(got, peerIfPrefix) {
		t.Fatalf("asked for eth0 again, got %q; want one of the driver's names", got)
	}
	if got := join(4, "bad/name"); !strings.HasPrefix(got, peerIfPrefix) {
		t.Fatalf("asked for an invalid name, got %q", got)
	}
	names := nstest.LinkNames(t, key)
	if len(names) != 4 || names[0] != "eth0" || names[1] != "lo" {
		t.Fatalf("interfaces in the sandbox: %v; want eth0, lo and two of the driver's", names)
	}
}

// A pair whose making failed because a name existed is made when that
// name was the host end of a left pair that the reaper deleted since (a
// driver's reaper deletes its doomed links in one batch, whenever it
// runs); only a name the sandbox holds is taken.
func TestRejoinAfterTheNameWentAway(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, `{}`)
	n := testNet(47, nil)
	createNetwork(t, d, n)
	s, err := d.sys()
	if err != nil {
		t.Fatal(err)
	}
	_, brIdx, err := d.network(n)
	if err != nil {
		t.Fatal(err)
	}
	key := newNetns(t)
	fd, err := openSandbox("test", key)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, tc := range []struct {
		ifname string
		taken  bool // the sandbox has an interface of that name
	}{{"eth0", false}, {"eth1", true}} {
		id := newID()
		spec := vethSpec{host: hostIfName(id), peer: tc.ifname, mtu: 1500, master: brIdx, peerNS: fd}
		if tc.taken {
			nstest.WithHandle(t, key, func(h *netlink.Handle) error {
				return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: tc.ifname}, PeerName: "other"})
			})
		}
		src, err := s.rejoin(spec) // as after EEXIST, the host end gone meanwhile
		if tc.taken {
			if !errors.Is(err, errNameTaken) {
				t.Fatalf("rejoin with %s taken in the sandbox: %q, %v; want errNameTaken", tc.ifname, src, err)
			}
			continue
		}
		if err != nil || src != tc.ifname {
			t.Fatalf("rejoin with the host end gone: %q, %v; want the pair made as %s", src, err, tc.ifname)
		}
		host, err := netlink.LinkByName(spec.host)
		if err != nil || host.Attrs().MasterIndex != spec.master {
			t.Fatalf("host end %s after the rejoin: %v (master %d); want on bridge %d", spec.host, err, host.Attrs().MasterIndex, spec.master)
		}
		if err := s.rt.delLink(spec.host); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPrepare(t *testing.T) {
	d, n, br := networkT(t, 47)
	attach := func(ep *pb.Endpoint, key string, prepared bool) *pb.JoinResponse {
		t.Helper()
		if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Fatal(err)
		}
		resp, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: "eth0", Prepared: prepared})
		if err != nil {
			t.Fatalf("Join (prepared %v): %v", prepared, err)
		}
		t.Cleanup(func() {
			_ = d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key})
			_ = d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep})
		})
		return resp
	}
	sandboxEnd := func(key string) netlink.Link {
		t.Helper()
		var l netlink.Link
		nstest.WithHandle(t, key, func(h *netlink.Handle) (err error) {
			l, err = h.LinkByName("eth0")
			return err
		})
		return l
	}

	// Prepared: the pair is there, the host end up on the bridge, the
	// sandbox end down; the join answers with it.
	key := newNetns(t)
	ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.47.0.2/24"}}
	resp, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: ep.Id, SandboxKey: key, Ifname: "eth0"})
	if err != nil || resp.GetSrcName() != "eth0" || !resp.GetUp() {
		t.Fatalf("Prepare = %v, %v; want src_name eth0, up", resp, err)
	}
	host, err := netlink.LinkByName(hostIfName(ep.Id))
	if err != nil {
		t.Fatalf("prepared host end: %v", err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("prepared host end: master %d (bridge %d), flags %v; want on the bridge, up", host.Attrs().MasterIndex, br.Attrs().Index, host.Attrs().Flags)
	}
	peer := sandboxEnd(key)
	if peer.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("prepared sandbox end is up")
	}
	if j := attach(ep, key, true); j.GetSrcName() != "eth0" || !j.GetInSandbox() {
		t.Fatalf("prepared join answered %v", j)
	}
	host2, err := netlink.LinkByName(hostIfName(ep.Id))
	if err != nil {
		t.Fatal(err)
	}
	if host2.Attrs().Index != host.Attrs().Index || host2.Attrs().Flags&net.FlagUp == 0 || host2.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("after the prepared join the host end is index %d (prepared %d), flags %v, master %d; want the prepared one, up, on the bridge",
			host2.Attrs().Index, host.Attrs().Index, host2.Attrs().Flags, host2.Attrs().MasterIndex)
	}
	if sandboxEnd(key).Attrs().Index != peer.Attrs().Index {
		t.Fatal("the prepared join made a new sandbox end")
	}

	// Told it was prepared when nothing was (or it is gone): the join
	// makes the pair itself.
	key2 := newNetns(t)
	ep2 := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.47.0.3/24"}}
	if j := attach(ep2, key2, true); j.GetSrcName() != "eth0" {
		t.Fatalf("join of an unprepared endpoint told prepared answered %v", j)
	}
	if l, err := netlink.LinkByName(hostIfName(ep2.Id)); err != nil || l.Attrs().Flags&net.FlagUp == 0 || l.Attrs().MasterIndex != br.Attrs().Index {
		t.Fatalf("host end of the unprepared join: %v, %v; want up on the bridge", l, err)
	}

	// A port prepared on a bridge that was deleted since (by hand): the
	// join puts the pair on the network's bridge, made anew.
	key4 := newNetns(t)
	ep4 := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.47.0.4/24"}}
	if resp, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: ep4.Id, SandboxKey: key4, Ifname: "eth0"}); err != nil || resp.GetSrcName() != "eth0" {
		t.Fatalf("Prepare = %v, %v", resp, err)
	}
	if err := netlink.LinkDel(br); err != nil {
		t.Fatal(err)
	}
	attach(ep4, key4, true)
	br2, err := netlink.LinkByName(br.Attrs().Name)
	if err != nil {
		t.Fatalf("the network's bridge after the join: %v", err)
	}
	if l, err := netlink.LinkByName(hostIfName(ep4.Id)); err != nil || l.Attrs().MasterIndex != br2.Attrs().Index || l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("host end prepared on a deleted bridge, after the join: %v, %v; want up on the new bridge %d", l, err, br2.Attrs().Index)
	}

	// Neither port has IPv6, even once its sandbox end is up: no
	// multicast route of its own in the host's table.
	for _, c := range []struct {
		key, id string
	}{{key, ep.Id}, {key2, ep2.Id}} {
		nstest.WithHandle(t, c.key, func(h *netlink.Handle) error { return h.LinkSetUp(sandboxEnd(c.key)) })
		portWithoutIPv6(t, hostIfName(c.id))
	}

	// A name the sandbox cannot take prepares nothing.
	key3 := newNetns(t)
	id3 := newID()
	if resp, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: id3, SandboxKey: key3, Ifname: "bad/name"}); err != nil || resp.GetSrcName() != "" {
		t.Fatalf("Prepare with a bad name = %v, %v; want nothing prepared", resp, err)
	}
	if _, err := netlink.LinkByName(hostIfName(id3)); err == nil {
		t.Fatal("Prepare with a bad name made a pair")
	}
	// No endpoint ID, or no namespace at the key: an error.
	if _, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, SandboxKey: key3, Ifname: "eth0"}); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("Prepare without an endpoint ID: %v; want ErrInvalid", err)
	}
	if _, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: id3, SandboxKey: key3 + "-missing", Ifname: "eth0"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Prepare at a missing key: %v; want ErrNotFound", err)
	}
}

// portWithoutIPv6 checks that the bridge port name has IPv6 off, and,
// once its link is up, no route of its own in the host's IPv6 tables
// (with IPv6 on, the kernel would add ff00::/8 for it).
func portWithoutIPv6(t *testing.T, name string) {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("bridge port %s: disable_ipv6 = %s; want 1", name, b)
	}
	var l netlink.Link
	polltest.UntilEmpty(t, 15*time.Second, "bridge port "+name+" up", func() string {
		var err error
		if l, err = netlink.LinkByName(name); err != nil {
			t.Fatal(err)
		}
		if st := l.Attrs().OperState; st != netlink.OperUp {
			return st.String()
		}
		return ""
	})
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) != 0 {
		t.Fatalf("bridge port %s has IPv6 routes: %v", name, routes)
	}
}

// EndpointOperInfo names the interfaces as the kernel has them: the host
// end on the bridge, and the sandbox end under the name the host gave it,
// with its MAC, even after the host renamed it.
func TestEndpointOperInfoMatchesTheLinks(t *testing.T) {
	nstest.RequireRoot(t)
	d := newDriverT(t, "")
	n := testNet(21, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	// sandboxLink is the sandbox end as the kernel has it.
	sandboxLink := func() (name, mac string) {
		host, err := netlink.LinkByName(hostIfName(c.ep.Id))
		if err != nil {
			t.Fatalf("host end: %v", err)
		}
		peer, err := netlink.VethPeerIndex(host.(*netlink.Veth))
		if err != nil {
			t.Fatal(err)
		}
		nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
			l, err := h.LinkByIndex(peer)
			if err == nil {
				name, mac = l.Attrs().Name, l.Attrs().HardwareAddr.String()
			}
			return err
		})
		return name, mac
	}
	info := func() map[string]string {
		resp, err := d.EndpointOperInfo(ctx, &pb.EndpointRequest{Network: n, Endpoint: c.ep})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetInfo()
	}
	check := func(when string) {
		t.Helper()
		name, mac := sandboxLink()
		got := info()
		if got["sandbox_interface"] != name || got["mac"] != mac {
			t.Errorf("%s: EndpointOperInfo sandbox_interface %q, mac %q; the sandbox's link is %s, %s", when, got["sandbox_interface"], got["mac"], name, mac)
		}
		host, err := netlink.LinkByName(got["host_interface"])
		if err != nil || host.Attrs().MasterIndex == 0 {
			t.Errorf("%s: EndpointOperInfo host_interface %q is no bridge port: %v", when, got["host_interface"], err)
		} else if br, err := netlink.LinkByIndex(host.Attrs().MasterIndex); err != nil || br.Attrs().Name != got["bridge"] {
			t.Errorf("%s: EndpointOperInfo bridge %q; the host end's master is %v (%v)", when, got["bridge"], br, err)
		}
	}
	check("after the join")
	nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := h.LinkSetDown(l); err != nil {
			return err
		}
		return h.LinkSetName(l, "eth7")
	})
	check("after the host renamed it")
}
