package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// TestContainersTalk: two containers on one network reach each other over
// TCP and UDP, reach the gateway (the host), and the host reaches them.
func TestContainersTalk(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(10, nil)
	createNetwork(t, d, n)
	a, b := attach(t, d, n, 2), attach(t, d, n, 3)
	if a.join.GetGateway() != "10.10.0.1" {
		t.Fatalf("Join gateway = %q, want 10.10.0.1", a.join.GetGateway())
	}
	serveTCP(t, b.key, ":7000")
	serveUDP(t, b.key, ":7001")
	serveTCP(t, "", "10.10.0.1:7002")

	mustReach(t, "container to container", a.key, b.ip+":7000", a.ip)
	got, err := askUDP(a.key, b.ip+":7001", okTimeout)
	if err != nil || hostOf(got) != a.ip {
		t.Fatalf("UDP container to container: %q, %v; want an answer seeing %s", got, err, a.ip)
	}
	mustReach(t, "container to gateway", b.key, "10.10.0.1:7002", b.ip)
	mustReach(t, "host to container", "", b.ip+":7000", "10.10.0.1")
}

// TestMasquerade: a container reaches a server outside the host, which
// sees the host's address; with masquerade off it sees the container's.
func TestMasquerade(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	serveUDP(t, outside, ":8001")
	d := newDriverT(t, "")

	n := testNet(11, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	mustReach(t, "container to outside", c.key, outsideIP+":8000", hostOutsideIP)
	got, err := askUDP(c.key, outsideIP+":8001", okTimeout)
	if err != nil || hostOf(got) != hostOutsideIP {
		t.Fatalf("UDP container to outside: %q, %v; want the server to see %s", got, err, hostOutsideIP)
	}
	if v, _ := readSysctl("ipv4/ip_forward"); v != "1" {
		t.Errorf("net.ipv4.ip_forward = %q, want 1", v)
	}

	// Without masquerade the outside needs a route back, and sees the
	// container itself.
	plain := testNet(12, map[string]string{optEnableMasq: "false"})
	createNetwork(t, d, plain)
	p := attach(t, d, plain, 2)
	nstest.WithHandle(t, outside, func(h *netlink.Handle) error {
		_, dst, _ := net.ParseCIDR("10.12.0.0/24")
		return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(hostOutsideIP)})
	})
	mustReach(t, "unmasqueraded container to outside", p.key, outsideIP+":8000", p.ip)
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile("/proc/sys/net/" + path)
	return strings.TrimSpace(string(b)), err
}

// TestInternal: containers of an internal network reach each other and
// the gateway, nothing outside, and nothing outside reaches them.
func TestInternal(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	n := testNet(13, nil)
	n.Internal = true
	createNetwork(t, d, n)
	a, b := attach(t, d, n, 2), attach(t, d, n, 3)
	if a.join.GetGateway() != "" {
		t.Fatalf("Join on an internal network returned gateway %q, want none", a.join.GetGateway())
	}
	serveTCP(t, b.key, ":7000")
	serveTCP(t, "", "10.13.0.1:7002")
	mustReach(t, "internal container to container", a.key, b.ip+":7000", a.ip)
	mustReach(t, "internal container to gateway", a.key, "10.13.0.1:7002", a.ip)

	// A non-internal network next to it reaches the outside (and turns
	// forwarding on): what follows is blocked by the internal network's
	// rules, not by a host that forwards nothing.
	open := testNet(24, nil)
	createNetwork(t, d, open)
	mustReach(t, "non-internal container to outside", attach(t, d, open, 2).key, outsideIP+":8000", hostOutsideIP)

	// No default route: the outside is unreachable at once.
	mustNotReach(t, "internal container (no route) to outside", a.key, outsideIP+":8000")
	// Even with routes everywhere (a container with NET_ADMIN can add
	// one), nothing is forwarded in or out.
	for _, c := range []*container{a, b} {
		nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
			return h.RouteAdd(&netlink.Route{Gw: net.ParseIP("10.13.0.1")})
		})
	}
	nstest.WithHandle(t, outside, func(h *netlink.Handle) error {
		_, dst, _ := net.ParseCIDR("10.13.0.0/24")
		return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(hostOutsideIP)})
	})
	mustNotReach(t, "internal container (route added) to outside", a.key, outsideIP+":8000")
	mustNotReach(t, "outside to internal container", outside, b.ip+":7000")

	// Ports are not published on internal networks.
	a.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 7000, HostPort: 17000}}
	resp, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: a.ep})
	if err != nil || len(resp.GetPortBindings()) != 0 {
		t.Fatalf("ProgramExternalConnectivity on an internal network = %v, %v; want no bindings", resp, err)
	}
}

// TestNetworksIsolated: containers of two bridge networks cannot reach
// each other, while each reaches its gateway and the outside.
func TestNetworksIsolated(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	n1, n2 := testNet(14, nil), testNet(15, nil)
	createNetwork(t, d, n1)
	createNetwork(t, d, n2)
	a, b := attach(t, d, n1, 2), attach(t, d, n2, 2)
	serveTCP(t, a.key, ":7000")
	serveTCP(t, b.key, ":7000")
	mustReach(t, "network 1 to outside", a.key, outsideIP+":8000", hostOutsideIP)
	mustReach(t, "network 2 to outside", b.key, outsideIP+":8000", hostOutsideIP)
	mustReach(t, "host to network 1", "", a.ip+":7000", "")
	mustNotReach(t, "network 1 to network 2", a.key, b.ip+":7000")
	mustNotReach(t, "network 2 to network 1", b.key, a.ip+":7000")
	// Nor does the outside get in, even with a route.
	nstest.WithHandle(t, outside, func(h *netlink.Handle) error {
		_, dst, _ := net.ParseCIDR("10.14.0.0/24")
		return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP(hostOutsideIP)})
	})
	mustNotReach(t, "outside to network 1", outside, a.ip+":7000")
}

// TestICCDisabled: with enable_icc=false containers of the network cannot
// reach each other, but reach the gateway and the outside.
func TestICCDisabled(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	n := testNet(16, map[string]string{optEnableICC: "false"})
	createNetwork(t, d, n)
	// b's pair was prepared ahead of its join, as in a host's prepared
	// spare: its port is isolated all the same.
	a, b := attach(t, d, n, 2), attachWith(t, d, n, 3, true)
	serveTCP(t, b.key, ":7000")
	serveTCP(t, "", "10.16.0.1:7002")
	mustReach(t, "container to gateway", a.key, "10.16.0.1:7002", a.ip)
	mustReach(t, "container to outside", a.key, outsideIP+":8000", hostOutsideIP)
	mustReach(t, "host to container", "", b.ip+":7000", "")
	mustNotReach(t, "container to container", a.key, b.ip+":7000")

	for _, c := range []*container{a, b} {
		port, err := netlink.LinkByName(hostIfName(c.ep.Id))
		if err != nil {
			t.Fatal(err)
		}
		if pi, err := netlink.LinkGetProtinfo(port); err != nil || !pi.Isolated {
			t.Errorf("bridge port %s: protinfo %+v, %v; want isolated", port.Attrs().Name, pi, err)
		}
	}
}

// TestPublishedPorts: published TCP and UDP ports answer on the host's
// address from the host and from outside, on 127.0.0.1, and from another
// container of the network (hairpin). Revoking closes them and removes
// their conntrack entries.
func TestPublishedPorts(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	d := newDriverT(t, "")
	n := testNet(17, nil)
	createNetwork(t, d, n)
	// The server's pair was prepared ahead of its join (a host's prepared
	// spare): hairpin and DNAT work for it all the same.
	srv, client := attachWith(t, d, n, 2, true), attach(t, d, n, 3)
	serveTCP(t, srv.key, ":80")
	serveUDP(t, srv.key, ":53")

	srv.ep.PortBindings = []*pb.PortBinding{
		{Proto: "tcp", ContainerPort: 80},                  // any free host port
		{Proto: "udp", ContainerPort: 53, HostPort: 15353}, // a fixed one
	}
	req := &pb.ExternalConnectivityRequest{Network: n, Endpoint: srv.ep}
	resp, err := d.ProgramExternalConnectivity(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetPortBindings()) != 2 {
		t.Fatalf("bindings = %v", resp.GetPortBindings())
	}
	tcpPort := resp.GetPortBindings()[0].GetHostPort()
	lo, hi, _ := localPortRange()
	if tcpPort < uint32(lo) || tcpPort > uint32(hi) || resp.GetPortBindings()[1].GetHostPort() != 15353 {
		t.Fatalf("bindings = %v, want a TCP port in %d-%d and UDP 15353", resp.GetPortBindings(), lo, hi)
	}
	info, err := d.EndpointOperInfo(ctx, &pb.EndpointRequest{Network: n, Endpoint: srv.ep})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := info.GetInfo()["ports"], fmt.Sprintf("*:%d/tcp->%s:80,*:15353/udp->%s:53", tcpPort, srv.ip, srv.ip); got != want {
		t.Errorf("EndpointOperInfo ports = %q, want %q", got, want)
	}
	if got := info.GetInfo()["host_interface"]; got != hostIfName(srv.ep.Id) {
		t.Errorf("EndpointOperInfo host_interface = %q, want %q", got, hostIfName(srv.ep.Id))
	}
	tcpAddr := func(host string) string { return net.JoinHostPort(host, strconv.Itoa(int(tcpPort))) }
	udpAddr := func(host string) string { return net.JoinHostPort(host, "15353") }

	mustReach(t, "host address, from the host", "", tcpAddr(hostOutsideIP), hostOutsideIP)
	mustReach(t, "loopback, from the host", "", tcpAddr("127.0.0.1"), "10.17.0.1")
	mustReach(t, "host address, from outside", outside, tcpAddr(hostOutsideIP), outsideIP)
	mustReach(t, "hairpin, from another container", client.key, tcpAddr(hostOutsideIP), "10.17.0.1")
	mustReach(t, "hairpin, from the container itself", srv.key, tcpAddr("10.17.0.1"), "10.17.0.1")
	for _, c := range []struct{ what, key, addr string }{
		{"UDP host address, from the host", "", udpAddr(hostOutsideIP)},
		{"UDP loopback, from the host", "", udpAddr("127.0.0.1")},
		{"UDP host address, from outside", outside, udpAddr(hostOutsideIP)},
		{"UDP hairpin", client.key, udpAddr(hostOutsideIP)},
	} {
		if got, err := askUDP(c.key, c.addr, okTimeout); err != nil {
			t.Fatalf("%s: %q, %v", c.what, got, err)
		}
	}

	// Replaying keeps the port, and the rules.
	before := sandnetRules(t)
	again, err := d.ProgramExternalConnectivity(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetPortBindings()[0].GetHostPort() != tcpPort {
		t.Fatalf("replayed ProgramExternalConnectivity chose port %d, first %d", again.GetPortBindings()[0].GetHostPort(), tcpPort)
	}
	if after := sandnetRules(t); countRules(after) != countRules(before) {
		t.Fatalf("replay changed the rule count from %d to %d", countRules(before), countRules(after))
	}

	mapping := func(f *netlink.ConntrackFlow) bool {
		return addrOf(f.Reverse.SrcIP) == netip.MustParseAddr(srv.ip) &&
			(uint32(f.Forward.DstPort) == tcpPort || f.Forward.DstPort == 15353)
	}
	if n := conntrackCount(t, mapping); n == 0 {
		t.Fatal("no conntrack entries for the mappings before revoking: the check below would prove nothing")
	}
	if err := d.RevokeExternalConnectivity(ctx, req); err != nil {
		t.Fatal(err)
	}
	// The reaper deletes them once the driver is idle.
	polltest.Until(t, 5*time.Second, "the conntrack entries of the mappings are gone after the revoke", func() bool {
		return conntrackCount(t, mapping) == 0
	})
	mustNotReach(t, "revoked port, loopback", "", tcpAddr("127.0.0.1"))
	mustNotReach(t, "revoked port, from outside", outside, tcpAddr(hostOutsideIP))
	if got, err := askUDP("", udpAddr("127.0.0.1"), blockedTimeout); err == nil {
		t.Errorf("revoked UDP port answered: %q", got)
	}
	if rules := sandnetRules(t); len(rules["published"]) != 0 {
		t.Errorf("published chain after revoke: %v", rules["published"])
	}
	if err := d.RevokeExternalConnectivity(ctx, req); err != nil {
		t.Errorf("second revoke: %v", err)
	}
}

// TestPortConflict: a host port published by one endpoint cannot be
// published by another.
func TestPortConflict(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(18, nil)
	createNetwork(t, d, n)
	a, b := attach(t, d, n, 2), attach(t, d, n, 3)
	a.ep.Name = "web"
	a.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 18080}}
	if _, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: a.ep}); err != nil {
		t.Fatal(err)
	}
	b.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 18080, HostIp: "127.0.0.1"}}
	_, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: b.ep})
	if err == nil {
		t.Fatal("two endpoints published 127.0.0.1:18080/tcp")
	}
	// The message names the port and the endpoint that has it.
	want := "host port 127.0.0.1:18080/tcp is already published by endpoint web (" + a.ep.Id[:min(12, len(a.ep.Id))] + ") as *:18080/tcp"
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second publish: %v, want a conflict saying %q", err, want)
	}
	b.ep.PortBindings[0].Proto = "udp"
	if _, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: b.ep}); err != nil {
		t.Fatalf("UDP on a port published for TCP: %v", err)
	}
}

// TestNoLeftovers: after Revoke, Leave, DeleteEndpoint and DeleteNetwork
// no link, address, rule or conntrack entry of the network remains.
func TestNoLeftovers(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	n := testNet(19, map[string]string{optEnableICC: "false"})
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	key := newNetns(t)
	ep := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.19.0.2/24"},
		PortBindings: []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80}}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	join, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key})
	if err != nil {
		t.Fatal(err)
	}
	configureSandbox(t, key, join, "10.19.0.2/24")
	serveTCP(t, key, ":80")
	xreq := &pb.ExternalConnectivityRequest{Network: n, Endpoint: ep}
	resp, err := d.ProgramExternalConnectivity(ctx, xreq)
	if err != nil {
		t.Fatal(err)
	}
	mustReach(t, "container to outside", key, outsideIP+":8000", hostOutsideIP)
	mustReach(t, "published port", outside, net.JoinHostPort(hostOutsideIP, strconv.Itoa(int(resp.GetPortBindings()[0].GetHostPort()))), "")

	pool := netip.MustParsePrefix("10.19.0.0/24")
	ofPool := func(f *netlink.ConntrackFlow) bool {
		return pool.Contains(addrOf(f.Forward.SrcIP)) || pool.Contains(addrOf(f.Reverse.SrcIP))
	}
	if conntrackCount(t, ofPool) == 0 {
		t.Fatal("no conntrack entries of the network before tearing down: the checks below would prove nothing")
	}
	if len(driverLinks(t)) == 0 || countRules(sandnetRules(t)) <= 2 {
		t.Fatal("nothing programmed before tearing down")
	}

	for i := range 2 { // everything twice: replays must succeed too
		if err := d.RevokeExternalConnectivity(ctx, xreq); err != nil {
			t.Fatalf("Revoke #%d: %v", i+1, err)
		}
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			t.Fatalf("Leave #%d: %v", i+1, err)
		}
		// Cut off at once, deleted by the reaper soon after.
		if l, err := netlink.LinkByName(hostIfName(ep.Id)); err == nil && l.Attrs().Flags&net.FlagUp != 0 {
			t.Fatalf("host end after Leave #%d: flags %v; want down", i+1, l.Attrs().Flags)
		}
		polltest.Until(t, 5*time.Second, fmt.Sprintf("only the bridge is left after Leave #%d", i+1), func() bool {
			return len(driverLinks(t)) == 1
		})
		nstest.WithHandle(t, key, func(h *netlink.Handle) error {
			if _, err := h.LinkByName("eth0"); err == nil {
				t.Errorf("the sandbox still has eth0 after Leave #%d", i+1)
			}
			return nil
		})
		if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Fatalf("DeleteEndpoint #%d: %v", i+1, err)
		}
	}
	for i := range 2 {
		if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
			t.Fatalf("DeleteNetwork #%d: %v", i+1, err)
		}
	}
	polltest.Until(t, 5*time.Second, "no driver link is left", func() bool { return len(driverLinks(t)) == 0 })
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if pool.Contains(addrOf(a.IP)) {
			t.Errorf("address %s left on link %d", a.IPNet, a.LinkIndex)
		}
	}
	assertNoLeftovers(t)
	if n := conntrackCount(t, ofPool); n != 0 {
		t.Errorf("%d conntrack entries of the network left", n)
	}
}

// TestLeaveAfterSandboxRemoved: when the host removes the sandbox before
// Leave, Leave is quick and the kernel removes the pair.
func TestLeaveAfterSandboxRemoved(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(20, nil)
	createNetwork(t, d, n)
	key := newNetns(t)
	ep := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.20.0.2/24"}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
		t.Fatal(err)
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		t.Fatal(err)
	}
	nstest.Remove(key)
	start := time.Now()
	if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
		t.Fatal(err)
	}
	t.Logf("Leave after the sandbox was removed took %v", time.Since(start))
	if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	host := hostIfName(ep.Id)
	timeout := time.After(10 * time.Second)
	for {
		if _, err := netlink.LinkByName(host); err != nil {
			break
		}
		select {
		case <-updates:
		case <-timeout:
			t.Fatalf("%s still exists 10s after its sandbox was removed", host)
		}
	}
}

// TestJoinReplay: joining again creates nothing, and returns the
// interface's current name once the host has renamed it.
func TestJoinReplay(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(21, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2) // renamed to eth0 by the test, as the host does
	req := &pb.JoinRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key}
	links := driverLinks(t)
	for i := range 2 {
		resp, err := d.Join(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetSrcName() != "eth0" || !resp.GetInSandbox() {
			t.Fatalf("replayed Join #%d = %v, want src_name eth0 in the sandbox", i+1, resp)
		}
	}
	// A fresh driver (a restarted plugin) finds it too.
	resp, err := newDriverT(t, "").Join(ctx, req)
	if err != nil || resp.GetSrcName() != "eth0" {
		t.Fatalf("Join after a driver restart = %v, %v", resp, err)
	}
	if got := driverLinks(t); strings.Join(got, ",") != strings.Join(links, ",") {
		t.Fatalf("links after replays = %v, before %v", got, links)
	}

	// The same endpoint joined to a new sandbox (the old one gone without
	// a Leave) gets a fresh pair there.
	key2 := newNetns(t)
	resp, err = d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: c.ep, SandboxKey: key2})
	if err != nil || resp.GetSrcName() != peerIfName(c.ep.Id) {
		t.Fatalf("Join into a new sandbox = %v, %v", resp, err)
	}
	nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
		if _, err := h.LinkByName("eth0"); err == nil {
			t.Error("the old sandbox still holds the endpoint's interface")
		}
		return nil
	})
	if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: c.ep, SandboxKey: key2}); err != nil {
		t.Fatal(err)
	}
}

// TestFirewallRestored: a flushed or deleted sandnet table is rebuilt on
// the driver's next call, without duplicates, and works again.
func TestFirewallRestored(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(22, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	serveTCP(t, c.key, ":80")
	c.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 18022}}
	xreq := &pb.ExternalConnectivityRequest{Network: n, Endpoint: c.ep}
	if _, err := d.ProgramExternalConnectivity(ctx, xreq); err != nil {
		t.Fatal(err)
	}
	other := attach(t, d, n, 3)
	want := sandnetRules(t)
	mustReach(t, "published port", "", "127.0.0.1:18022", "")

	conn, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
	for _, damage := range []struct {
		name string
		do   func()
		call func() error
	}{
		{"flushed, then CreateNetwork", func() { conn.FlushTable(table) },
			func() error { return d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}) }},
		{"deleted, then ProgramExternalConnectivity", func() { conn.DelTable(table) },
			func() error { _, err := d.ProgramExternalConnectivity(ctx, xreq); return err }},
		{"flushed, then Join of another endpoint", func() { conn.FlushTable(table) },
			func() error {
				_, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: other.ep, SandboxKey: other.key})
				return err
			}},
		{"deleted, then Leave of another endpoint", func() { conn.DelTable(table) },
			func() error {
				return d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: other.ep, SandboxKey: other.key})
			}},
		{"deleted, then a revoke of another endpoint", func() { conn.DelTable(table) },
			func() error {
				return d.RevokeExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: &pb.Endpoint{Id: newID()}})
			}},
	} {
		damage.do()
		if err := conn.Flush(); err != nil {
			t.Fatal(err)
		}
		mustNotReach(t, damage.name+": published port without the table", "", "127.0.0.1:18022")
		for i := range 2 {
			if err := damage.call(); err != nil {
				t.Fatalf("%s: call #%d: %v", damage.name, i+1, err)
			}
			if got := sandnetRules(t); !sameRules(got, want) {
				t.Fatalf("%s: after call #%d the table holds\n%v\nwant\n%v", damage.name, i+1, got, want)
			}
		}
		mustReach(t, damage.name+": published port", "", "127.0.0.1:18022", "")
	}
}

// sameRules compares two tables' rules by chain, ignoring order.
func sameRules(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for chain, ra := range a {
		rb, ok := b[chain]
		if !ok || len(ra) != len(rb) {
			return false
		}
		count := map[string]int{}
		for _, r := range ra {
			count[r]++
		}
		for _, r := range rb {
			count[r]--
		}
		for _, v := range count {
			if v != 0 {
				return false
			}
		}
	}
	return true
}

// TestReplayAfterRestart: a restarted driver replaying CreateNetwork,
// CreateEndpoint, Join and ProgramExternalConnectivity (twice) changes no
// rule and keeps the automatically chosen host port.
func TestReplayAfterRestart(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(23, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	c.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80}, {Proto: "udp", ContainerPort: 53}}
	xreq := &pb.ExternalConnectivityRequest{Network: n, Endpoint: c.ep}
	first, err := d.ProgramExternalConnectivity(ctx, xreq)
	if err != nil {
		t.Fatal(err)
	}
	rules, links := sandnetRules(t), driverLinks(t)

	restarted := newDriverT(t, "")
	for i := range 2 {
		if err := restarted.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
			t.Fatal(err)
		}
		if _, err := restarted.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: c.ep}); err != nil {
			t.Fatal(err)
		}
		if _, err := restarted.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
			t.Fatal(err)
		}
		again, err := restarted.ProgramExternalConnectivity(ctx, xreq)
		if err != nil {
			t.Fatal(err)
		}
		for j, b := range again.GetPortBindings() {
			if b.GetHostPort() != first.GetPortBindings()[j].GetHostPort() {
				t.Errorf("replay #%d: binding %d got host port %d, first %d", i+1, j, b.GetHostPort(), first.GetPortBindings()[j].GetHostPort())
			}
		}
		if got := sandnetRules(t); !sameRules(got, rules) {
			t.Fatalf("replay #%d: rules\n%v\nwant\n%v", i+1, got, rules)
		}
		if got := driverLinks(t); strings.Join(got, ",") != strings.Join(links, ",") {
			t.Fatalf("replay #%d: links %v, want %v", i+1, got, links)
		}
	}
	// Another endpoint's request for the same port conflicts in the
	// restarted driver too: it learnt the allocations from the table.
	other := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.23.0.3/24"},
		PortBindings: []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: first.GetPortBindings()[0].GetHostPort()}}}
	if _, err := newDriverT(t, "").ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: other}); err == nil {
		t.Fatal("a restarted driver published a host port another endpoint holds")
	}
}

// TestIPv6: on a dual-stack network containers talk over IPv6, reach the
// outside masqueraded behind the host's IPv6 address, and publish ports on
// the host's IPv6 addresses.
func TestIPv6(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	n := testNet(25, nil)
	n.EnableIpv6 = true
	n.Ipv6 = []*pb.IPAMData{{Pool: "fd00:25::/64", Gateway: "fd00:25::1/64"}}
	createNetwork(t, d, n)
	a, b := attach(t, d, n, 2), attach(t, d, n, 3)
	if a.join.GetGatewayV6() != "fd00:25::1" {
		t.Fatalf("Join gateway_v6 = %q, want fd00:25::1", a.join.GetGatewayV6())
	}
	if v, _ := readSysctl("ipv6/conf/all/forwarding"); v != "1" {
		t.Errorf("net.ipv6.conf.all.forwarding = %q, want 1", v)
	}
	serveTCP(t, b.key, ":80")
	mustReach(t, "container to container over IPv6", a.key, "[fd00:25::3]:80", "fd00:25::2")
	mustReach(t, "container to outside over IPv6", a.key, net.JoinHostPort(outsideIP6, "8000"), hostOutsideIP6)

	b.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 18025}}
	if _, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: b.ep}); err != nil {
		t.Fatal(err)
	}
	mustReach(t, "IPv6 published port from outside", outside, net.JoinHostPort(hostOutsideIP6, "18025"), outsideIP6)
	mustReach(t, "IPv6 published port from the host", "", net.JoinHostPort(hostOutsideIP6, "18025"), "")
	mustReach(t, "IPv4 published port from outside", outside, net.JoinHostPort(hostOutsideIP, "18025"), outsideIP)
	mustReach(t, "IPv6 hairpin", a.key, net.JoinHostPort(hostOutsideIP6, "18025"), "fd00:25::1")
}

// TestLeaveCutsOffAtOnce: Leave returns before the pair is deleted, but
// the container has no connectivity from then on, and the pairs of
// several Leaves are all gone soon after, in the reaper's pass.
func TestLeaveCutsOffAtOnce(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(26, nil)
	createNetwork(t, d, n)
	var cs []*container
	for i := range 4 {
		c := attach(t, d, n, 2+i)
		serveTCP(t, c.key, ":80")
		cs = append(cs, c)
	}
	mustReach(t, "container to container before Leave", cs[0].key, cs[1].ip+":80", cs[0].ip)
	for _, c := range cs {
		start := time.Now()
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
			t.Fatal(err)
		}
		t.Logf("Leave took %v", time.Since(start))
		l, err := netlink.LinkByName(hostIfName(c.ep.Id))
		if err != nil {
			t.Fatalf("host end right after Leave: %v; want it still there, cut off", err)
		}
		if l.Attrs().Flags&net.FlagUp != 0 || l.Attrs().Group != doomGroup {
			t.Fatalf("host end after Leave: flags %v, group %#x; want down, in doomGroup", l.Attrs().Flags, l.Attrs().Group)
		}
	}
	if got, err := askTCP(cs[0].key, cs[1].ip+":80", blockedTimeout); err == nil {
		t.Fatalf("a container reached another after both left: %q", got)
	}
	polltest.Until(t, 5*time.Second, "every pair is deleted after the Leaves", func() bool { return len(driverLinks(t)) == 1 })
	for _, c := range cs {
		nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
			if _, err := h.LinkByName("eth0"); err == nil {
				t.Errorf("sandbox %s still has eth0", c.key)
			}
			return nil
		})
	}
}

// TestAddressReuseFlushesConntrack: the conntrack entries of a deleted
// endpoint wait for the reaper, but an endpoint given the same address
// never sees them: CreateEndpoint deletes them first.
func TestAddressReuseFlushesConntrack(t *testing.T) {
	requireRoot(t)
	outside := setupOutside(t)
	serveTCP(t, outside, ":8000")
	d := newDriverT(t, "")
	// The reaper never runs by itself here: only the reuse can flush.
	d.reap.quiet, d.reap.maxDelay = time.Hour, time.Hour
	n := testNet(27, nil)
	createNetwork(t, d, n)
	key := newNetns(t)
	ep := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.27.0.2/24"}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	join, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key})
	if err != nil {
		t.Fatal(err)
	}
	configureSandbox(t, key, join, "10.27.0.2/24")
	mustReach(t, "container to outside", key, outsideIP+":8000", hostOutsideIP)
	old := netip.MustParseAddr("10.27.0.2")
	ofAddr := func(f *netlink.ConntrackFlow) bool {
		return addrOf(f.Forward.SrcIP) == old || addrOf(f.Reverse.SrcIP) == old
	}
	if conntrackCount(t, ofAddr) == 0 {
		t.Fatal("no conntrack entry of the address: the test would prove nothing")
	}
	if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatal(err)
	}
	if conntrackCount(t, ofAddr) == 0 {
		t.Fatal("DeleteEndpoint flushed at once: the reaper should have the flush")
	}
	// Another address does not need the flush.
	other := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.27.0.3/24"}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: other}); err != nil {
		t.Fatal(err)
	}
	defer d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: other})
	if conntrackCount(t, ofAddr) == 0 {
		t.Fatal("an unrelated CreateEndpoint flushed")
	}
	again := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.27.0.2/24"}}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: again}); err != nil {
		t.Fatal(err)
	}
	defer d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: again})
	if c := conntrackCount(t, ofAddr); c != 0 {
		t.Fatalf("%d conntrack entries of 10.27.0.2 left when it was given to a new endpoint", c)
	}
}

// TestRejoinAfterLeave: joining an endpoint again after its Leave, before
// the reaper deleted the old pair, gives a fresh pair that works.
func TestRejoinAfterLeave(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	d.reap.quiet, d.reap.maxDelay = time.Hour, time.Hour
	n := testNet(28, nil)
	createNetwork(t, d, n)
	srv, c := attach(t, d, n, 2), attach(t, d, n, 3)
	serveTCP(t, srv.key, ":80")
	if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
		t.Fatal(err)
	}
	join, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key})
	if err != nil {
		t.Fatal(err)
	}
	if join.GetSrcName() != peerIfName(c.ep.Id) {
		t.Fatalf("Join after Leave = %v, want a fresh pair (%s)", join, peerIfName(c.ep.Id))
	}
	l, err := netlink.LinkByName(hostIfName(c.ep.Id))
	if err != nil || l.Attrs().Group == doomGroup || l.Attrs().MasterIndex == 0 {
		t.Fatalf("host end after the new Join: %v, %v; want on the bridge, out of doomGroup", l, err)
	}
	configureSandbox(t, c.key, join, c.ip+"/24")
	mustReach(t, "rejoined container to another", c.key, srv.ip+":80", c.ip)
}

// TestCloseDrainsReaper: when the host stops the driver, what the reaper
// still had to do is done before the process exits.
func TestCloseDrainsReaper(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	d.reap.quiet, d.reap.maxDelay = time.Hour, time.Hour
	n := testNet(29, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: c.ep, SandboxKey: c.key}); err != nil {
		t.Fatal(err)
	}
	if len(driverLinks(t)) != 2 {
		t.Fatalf("links after Leave: %v; want the bridge and the host end", driverLinks(t))
	}
	d.close()
	if links := driverLinks(t); len(links) != 1 {
		t.Fatalf("links after close: %v; want only the bridge", links)
	}
}

// TestTableGoesWithLastNetwork: the nftables table stays while a network
// is left and goes with the last one; a network made afterwards brings it
// back whole. A stop with no network removes a table a previous run left,
// but a driver that has not been told of a network yet (restarted, before
// the host's replay) keeps the table that network's rules are in.
func TestTableGoesWithLastNetwork(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	a, b := testNet(31, nil), testNet(32, nil)
	b.Internal = true // jumps in forward only
	for _, n := range []*pb.Network{a, b} {
		if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: a}); err != nil {
		t.Fatal(err)
	}
	if rules := sandnetRules(t); len(rules["forward"]) == 0 {
		t.Fatalf("with network %s left, the table is %v; want its rules", b.Name, rules)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: b}); err != nil {
		t.Fatal(err)
	}
	if rules := sandnetRules(t); len(rules) > 0 {
		t.Fatalf("after the last network went: table %v; want none", rules)
	}

	createNetwork(t, d, a)
	if rules := sandnetRules(t); len(rules["forward"]) != 2 || len(rules["prerouting"]) != 1 {
		t.Fatalf("a network made after the table went: %v; want its jumps and the base rules", rules)
	}
	fresh := newDriver()
	fresh.close()
	if rules := sandnetRules(t); len(rules["forward"]) != 2 {
		t.Fatalf("a driver that did not know network %s removed its rules at stop: %v", a.Name, rules)
	}

	// A table with only its base rules, as a run stopped before its last
	// network went (or an older driver) leaves it.
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: a}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nft", "add table inet sandnet; add chain inet sandnet forward { type filter hook forward priority filter; }; add chain inet sandnet prerouting { type nat hook prerouting priority dstnat; }").CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	if len(sandnetRules(t)) == 0 {
		t.Fatal("no table to remove: the check below would prove nothing")
	}
	newDriver().close()
	if rules := sandnetRules(t); len(rules) > 0 {
		t.Fatalf("after a stop with no network: table %v; want none", rules)
	}
}

// TestFailedCreateLeavesNoBridge: a CreateNetwork that fails after making
// the bridge (here the kernel refuses the IPv6 gateway: a multicast
// address, which the agent's IPAM would not hand out) deletes the bridge
// it made, and the same network can be created once its request is
// right.
func TestFailedCreateLeavesNoBridge(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(26, nil)
	n.EnableIpv6 = true
	n.Ipv6 = []*pb.IPAMData{{Pool: "ff00::/64", Gateway: "ff00::1/64"}}
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err == nil {
		t.Fatal("a multicast IPv6 gateway was accepted")
	}
	name := bridgeName(n.GetId())
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("bridge %s left behind by the failed create", name)
	}
	n.Ipv6 = []*pb.IPAMData{{Pool: "fd00:26::/64", Gateway: "fd00:26::1/64"}}
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatalf("the corrected create: %v", err)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
}

// TestReplayAppliesNewMTU: the driver restarted with another mtu (a
// reload that changed its block) replays a network that sets none of its
// own: the bridge, the host end and the sandbox end of a running
// container all take the new MTU, not the bridge alone (a container at
// 1500 behind a 1400 bridge).
func TestReplayAppliesNewMTU(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, `{"mtu":1500}`)
	n := testNet(24, nil)
	createNetwork(t, d, n)
	c := attach(t, d, n, 2)
	// A pair the first process prepared (a spare's) and the restarted
	// one is asked to finish.
	spare := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.24.0.3/24"}}
	spareKey := newNetns(t)
	if resp, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: spare.Id, SandboxKey: spareKey, Ifname: "eth0"}); err != nil || resp.GetSrcName() != "eth0" {
		t.Fatalf("Prepare = %v, %v", resp, err)
	}

	restarted := newDriverT(t, `{"mtu":1400}`)
	replayTo(t, restarted, n, c)
	if _, err := restarted.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: spare}); err != nil {
		t.Fatal(err)
	}
	if _, err := restarted.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: spare, SandboxKey: spareKey, Ifname: "eth0", Prepared: true}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = restarted.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: spare, SandboxKey: spareKey})
		_ = restarted.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: spare})
	})
	mtus := map[string]int{}
	for _, name := range []string{bridgeName(n.Id), hostIfName(c.ep.Id), hostIfName(spare.Id)} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		mtus[name] = l.Attrs().MTU
	}
	nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err == nil {
			mtus["eth0 (in the sandbox)"] = l.Attrs().MTU
		}
		return err
	})
	nstest.WithHandle(t, spareKey, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err == nil {
			mtus["eth0 (in the spare)"] = l.Attrs().MTU
		}
		return err
	})
	for _, mtu := range mtus {
		if mtu != 1400 {
			t.Errorf("after the replay with mtu 1400: %v", mtus)
			break
		}
	}
}

// TestManyPublishedPorts: an endpoint publishes the API's most ports,
// 1024, in one call, and the last of them forwards; revoking removes them
// all. The rules go in one nftables batch, whose messages and
// acknowledgements outgrew the netlink socket's default buffers from 256
// ports on (500: "no buffer space available", "message too long").
func TestManyPublishedPorts(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	n := testNet(18, nil)
	createNetwork(t, d, n)
	srv := attach(t, d, n, 2)
	serveTCP(t, srv.key, ":80")
	const ports = 1024
	for i := range ports {
		srv.ep.PortBindings = append(srv.ep.PortBindings, &pb.PortBinding{Proto: "tcp", ContainerPort: 80, HostPort: uint32(40000 + i)})
	}
	req := &pb.ExternalConnectivityRequest{Network: n, Endpoint: srv.ep}
	if _, err := d.ProgramExternalConnectivity(ctx, req); err != nil {
		t.Fatalf("publishing %d ports: %v", ports, err)
	}
	if got := len(sandnetRules(t)["published"]); got != ports {
		t.Fatalf("published chain holds %d rules, want %d", got, ports)
	}
	mustReach(t, "the last of the ports, loopback", "", net.JoinHostPort("127.0.0.1", strconv.Itoa(40000+ports-1)), "10.18.0.1")
	if err := d.RevokeExternalConnectivity(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := len(sandnetRules(t)["published"]); got != 0 {
		t.Fatalf("published chain holds %d rules after the revoke", got)
	}
}
