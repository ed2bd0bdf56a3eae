package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestIPv6OnlyNetwork: a network made with --ipv4=false, as Docker's,
// has no IPv4 at all: its containers get IPv6 addresses only, reach each
// other by name over IPv6 (the resolver answers AAAA, and A with no
// address rather than NXDOMAIN), and a published port answers on the
// host's IPv6 addresses; what needs IPv4 is refused, naming why.
func TestIPv6OnlyNetwork(t *testing.T) {
	a := bridgeAgent(t)
	run := func(args ...string) (string, int) {
		return sandnetCmd(t, append([]string{"--socket", a.Socket}, args...)...)
	}
	if out, code := run("network", "create", "--ipv4=false", "--ipv6", "--subnet", "fd00:58::/64", "v6only"); code != 0 {
		t.Fatalf("network create: exit %d\n%s", code, out)
	}
	n, err := a.Client.Network(context.Background(), "v6only")
	if err != nil || len(n.IPv4) != 0 || len(n.IPv6) != 1 || n.IPv6[0].Subnet.String() != "fd00:58::/64" {
		t.Fatalf("network v6only: %+v, %v; want only the IPv6 subnet fd00:58::/64", n, err)
	}
	if out, code := run("network", "inspect", "v6only"); code != 0 || !regexp.MustCompile(`(?m)^IPv4: +false\nIPv6: +true$`).MatchString(out) {
		t.Errorf("network inspect v6only: exit %d, want IPv4 false and IPv6 true\n%s", code, out)
	}
	ctx := context.Background()
	web, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "web", Networks: []controller.SandboxNetwork{
		{Network: "v6only", Connect: controller.Connect{Publish: []string{"8058:7777/tcp"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "cli", Networks: []controller.SandboxNetwork{{Network: "v6only"}}})
	if err != nil {
		t.Fatal(err)
	}
	ep := web.Endpoints[0]
	if ep.Address.IsValid() || !ep.AddressV6.IsValid() || ep.Gateway.IsValid() || ep.GatewayV6.String() != "fd00:58::1" {
		t.Fatalf("web's endpoint: address %v, IPv6 %v, gateways %v %v; want IPv6 only, through fd00:58::1", ep.Address, ep.AddressV6, ep.Gateway, ep.GatewayV6)
	}
	if out, code := run("sandbox", "inspect", "web"); code != 0 || !regexp.MustCompile(`(?m)^v6only +eth0 +\S+ +- +fd00:58::\w+/64 +fd00:58::1 +- +\*:8058->7777/tcp$`).MatchString(out) {
		t.Errorf("sandbox inspect web: exit %d, want its IPv6 address and gateway\n%s", code, out)
	}
	serve(t, web.Key, "web")
	if got := dig(t, cli.Key, "+short", "AAAA", "web"); got != ep.AddressV6.Addr().String() {
		t.Errorf("AAAA web from cli: %q, want %s", got, ep.AddressV6.Addr())
	}
	if got := dig(t, cli.Key, "A", "web"); !strings.Contains(got, "status: NOERROR") || !strings.Contains(got, "ANSWER: 0") {
		t.Errorf("A web from cli: want NOERROR with no answer\n%s", got)
	}
	if got, err := talk(t, cli.Key, "tcp", net.JoinHostPort(ep.AddressV6.Addr().String(), "7777")); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Errorf("cli → web over IPv6: %q, %v", got, err)
	}
	// Every container gets its default route, also those a spare made
	// ahead of time serves (once the pool has refilled): the bridge driver
	// picks an IPv6-only endpoint's MAC, which the spare's preparation did
	// not know, and configuring the interface again took the route the
	// preparation had set.
	spares := func() int {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "/.creating/spare-")
	}
	keys := []string{web.Key, cli.Key}
	for i := range 3 {
		agenttest.Eventually(t, "spare namespaces made", func() bool { return spares() >= 2 })
		sb, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: fmt.Sprintf("more%d", i), Networks: []controller.SandboxNetwork{{Network: "v6only"}}})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, sb.Key)
	}
	for _, key := range keys {
		var routes []netlink.Route
		nstest.WithHandle(t, key, func(h *netlink.Handle) error {
			var err error
			routes, err = h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Dst: nil}, 0)
			return err
		})
		found := false
		for _, r := range routes {
			if (r.Dst == nil || r.Dst.String() == "::/0") && r.Gw.String() == "fd00:58::1" {
				found = true
			}
		}
		if !found {
			t.Errorf("the sandbox at %s has no IPv6 default route through fd00:58::1: %v", key, routes)
		}
	}
	// The published port, from the host, on its address on the network.
	if got, err := talk(t, "", "tcp", "[fd00:58::1]:8058"); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Errorf("the published port from the host at [fd00:58::1]:8058: %q, %v", got, err)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"network", "create", "--ipv4=false", "bad"}, "enable_ipv4: a network without IPv4 needs IPv6"},
		// An explicit "no IPv6" is not overridden by an IPv6 subnet.
		{[]string{"network", "create", "--ipv6=false", "--subnet", "10.87.0.0/24", "--subnet", "fd00:87::/64", "bad"}, "--ipv6=false, but --subnet fd00:87::/64 is IPv6"},
		{[]string{"network", "create", "--ipv4=false", "--ipv6", "--subnet", "10.58.0.0/24", "bad"}, "subnet: 10.58.0.0/24 is IPv4, and the network has no IPv4 (enable_ipv4 false)"},
		{[]string{"sandbox", "create", "--network", "v6only", "--ip", "10.58.0.5", "c3"}, "ip: network v6only has no IPv4 subnet"},
		// An IPv4-mapped address, in either flag, names the flag to use
		// (each sent the user to the other).
		{[]string{"sandbox", "create", "--network", "v6only", "--ip6", "::ffff:10.58.0.5", "c5"}, "ipv6: ::ffff:10.58.0.5 is an IPv4-mapped IPv6 address; give the IPv4 address 10.58.0.5 as ip"},
		{[]string{"sandbox", "create", "--network", "v6only", "--ip", "::ffff:10.58.0.5", "c5"}, "ip: ::ffff:10.58.0.5 is an IPv4-mapped IPv6 address; give the IPv4 address 10.58.0.5 as ip"},
		{[]string{"sandbox", "create", "--network", "v6only", "-p", "127.0.0.1:8059:80", "c4"}, "the endpoint has no IPv4 address"},
	} {
		if out, code := run(tc.args...); code == 0 || !strings.Contains(out, tc.says) {
			t.Errorf("sandnet %s: exit %d, want it to say %q\n%s", strings.Join(tc.args, " "), code, tc.says, out)
		}
	}
}

// TestGatewaysColumn: sandbox inspect's GATEWAY column shows a dual-stack
// endpoint's two gateways, not only its IPv4 one.
func TestGatewaysColumn(t *testing.T) {
	v4, v6 := netip.MustParseAddr("10.1.0.1"), netip.MustParseAddr("fd00::1")
	for _, c := range []struct {
		v4, v6 netip.Addr
		want   string
	}{
		{v4, v6, "10.1.0.1, fd00::1"},
		{v4, netip.Addr{}, "10.1.0.1"},
		{netip.Addr{}, v6, "fd00::1"},
		{netip.Addr{}, netip.Addr{}, "-"},
	} {
		if got := gateways(c.v4, c.v6); got != c.want {
			t.Errorf("gateways(%v, %v) = %q, want %q", c.v4, c.v6, got, c.want)
		}
	}
}
