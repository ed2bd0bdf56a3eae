package main

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// TestResultFromTheAgentsAnswer: ADD's result is made from the agent's
// records: both interfaces, the addresses with gateways on the sandbox
// interface, a default route only for the endpoint that holds the
// namespace's, the driver's static routes, and the resolver with the
// sandbox's search domains and options.
func TestResultFromTheAgentsAnswer(t *testing.T) {
	rc := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0 edns0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ep := endpoint{
		ID: "e1", IfName: "eth1", HostIfName: "snabc", MAC: "02:00:0a:00:00:02",
		Address: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("10.0.0.1"),
		AddressV6: netip.MustParsePrefix("fd00::2/64"), GatewayV6: netip.MustParseAddr("fd00::1"),
		Routes: []route{{Dst: netip.MustParsePrefix("192.168.5.0/24"), NextHop: netip.MustParseAddr("10.0.0.254")}, {Dst: netip.MustParsePrefix("10.9.0.0/16")}},
	}
	for _, tc := range []struct {
		name       string
		gw4, gw6   string
		wantRoutes string
	}{
		{"holds both defaults", "e1", "e1", `[{"dst":"0.0.0.0/0","gw":"10.0.0.1"},{"dst":"::/0","gw":"fd00::1"},{"dst":"192.168.5.0/24","gw":"10.0.0.254"},{"dst":"10.9.0.0/16"}]`},
		{"holds the IPv6 default only", "e0", "e1", `[{"dst":"::/0","gw":"fd00::1"},{"dst":"192.168.5.0/24","gw":"10.0.0.254"},{"dst":"10.9.0.0/16"}]`},
		{"holds none", "", "e0", `[{"dst":"192.168.5.0/24","gw":"10.0.0.254"},{"dst":"10.9.0.0/16"}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := &sandbox{ResolvConf: rc, GatewayEndpoint: tc.gw4, GatewayEndpointV6: tc.gw6}
			r := result(sb, &ep, "/run/netns/c1")
			got := func(v any) string { b, _ := json.Marshal(v); return string(b) }
			if s := got(r.Interfaces); s != `[{"name":"snabc"},{"name":"eth1","mac":"02:00:0a:00:00:02","sandbox":"/run/netns/c1"}]` {
				t.Errorf("interfaces: %s", s)
			}
			if s := got(r.IPs); s != `[{"interface":1,"address":"10.0.0.2/24","gateway":"10.0.0.1"},{"interface":1,"address":"fd00::2/64","gateway":"fd00::1"}]` {
				t.Errorf("ips: %s", s)
			}
			if s := got(r.Routes); s != tc.wantRoutes {
				t.Errorf("routes: %s, want %s", s, tc.wantRoutes)
			}
			if s := got(r.DNS); s != `{"nameservers":["127.0.0.11"],"search":["corp.example"],"options":["ndots:0","edns0"]}` {
				t.Errorf("dns: %s", s)
			}
		})
	}

	// An endpoint of an IPv6-only network: its IPv6 address and default
	// route only (converted to 0.4.0, as podman asks, too).
	v6only := ep
	v6only.Address, v6only.Gateway, v6only.Routes = netip.Prefix{}, netip.Addr{}, nil
	r6 := result(&sandbox{ResolvConf: rc, GatewayEndpointV6: "e1"}, &v6only, "/run/netns/c1")
	if b, _ := json.Marshal(struct{ IPs, Routes any }{r6.IPs, r6.Routes}); string(b) != `{"IPs":[{"interface":1,"address":"fd00::2/64","gateway":"fd00::1"}],"Routes":[{"dst":"::/0","gw":"fd00::1"}]}` {
		t.Errorf("IPv6-only: %s", b)
	}
	if _, err := r6.GetAsVersion("0.4.0"); err != nil {
		t.Errorf("IPv6-only result as 0.4.0: %v", err)
	}

	// An endpoint given a resolver address of its own: the result names
	// it, so that the runtime takes only it out of resolv.conf when the
	// attachment goes.
	own := ep
	own.Resolver = netip.MustParseAddr("127.0.0.12")
	if ns := result(&sandbox{ResolvConf: rc}, &own, "/run/netns/c1").DNS.Nameservers; !slices.Equal(ns, []string{"127.0.0.12"}) {
		t.Errorf("nameservers of an endpoint given 127.0.0.12: %v", ns)
	}

	// A driver that makes no host end (macvlan): the sandbox interface only.
	noHost := ep
	noHost.HostIfName = ""
	r := result(&sandbox{}, &noHost, "/run/netns/c1")
	if len(r.Interfaces) != 1 || r.Interfaces[0].Name != "eth1" || *r.IPs[0].Interface != 0 {
		t.Fatalf("without a host end: interfaces %+v, ips %+v", r.Interfaces, r.IPs)
	}
}

// TestAfterPassesPrevResultOn: an earlier plugin's interfaces, addresses
// and routes come first, and this plugin's addresses name its own
// interfaces past them.
func TestAfterPassesPrevResultOn(t *testing.T) {
	lo := net.IPNet{IP: net.IPv4(127, 0, 0, 1).To4(), Mask: net.CIDRMask(8, 32)}
	mine := net.IPNet{IP: net.IPv4(10, 1, 0, 2).To4(), Mask: net.CIDRMask(24, 32)}
	prev := &current.Result{CNIVersion: "1.0.0",
		Interfaces: []*current.Interface{{Name: "lo", Sandbox: "/run/netns/x"}},
		IPs:        []*current.IPConfig{{Interface: current.Int(0), Address: lo}},
		DNS:        types.DNS{Nameservers: []string{"192.0.2.53"}},
	}
	r := &current.Result{CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{{Name: "snabc"}, {Name: "eth0", Sandbox: "/run/netns/x"}},
		IPs:        []*current.IPConfig{{Interface: current.Int(1), Address: mine}},
		DNS:        types.DNS{Nameservers: []string{resolverAddr}},
	}
	got := after(prev, r)
	var names []string
	for _, in := range got.Interfaces {
		names = append(names, in.Name)
	}
	if strings.Join(names, " ") != "lo snabc eth0" || len(got.IPs) != 2 || *got.IPs[0].Interface != 0 || *got.IPs[1].Interface != 2 ||
		got.IPs[1].Address.String() != "10.1.0.2/24" || got.DNS.Nameservers[0] != resolverAddr || got.CNIVersion != "1.1.0" {
		t.Fatalf("after = %+v", got)
	}
	if *r.IPs[0].Interface != 1 || len(prev.Interfaces) != 1 {
		t.Fatal("after changed its arguments")
	}
	if after(nil, r) != r {
		t.Fatal("without a prevResult, the result is this plugin's")
	}
}
