package main

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

func TestParseConfig(t *testing.T) {
	c, err := parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c != defaultConfig() {
		t.Fatalf("parse(nil) = %+v, want the defaults %+v", c, defaultConfig())
	}
	c, err = parse([]byte(`{"default_bridge":"br-x","mtu":9000,"enable_ip_masquerade":false,"enable_ip_forwarding":null}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{DefaultBridge: "br-x", MTU: 9000, EnableIPMasquerade: false, EnableIPForwarding: true}
	if c != want {
		t.Fatalf("parse = %+v, want %+v", c, want)
	}
	for _, bad := range []string{
		`{"mtu":20}`, `{"mtu":70000}`, `{"default_bridge":"a-name-longer-than-15"}`, `{"default_bridge":"a/b"}`, `{"mtu":"x"}`,
	} {
		if _, err := parse([]byte(bad)); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("parse(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSchemaDocumentsEveryAttribute(t *testing.T) {
	s, err := sdk.SchemaFor(Config{})
	if err != nil {
		t.Fatal(err)
	}
	readme := readme(t)
	for _, a := range s.GetAttributes() {
		if a.GetRequired() || a.GetDescription() == "" {
			t.Errorf("attribute %s: required=%v, description %q: want optional and documented", a.GetName(), a.GetRequired(), a.GetDescription())
		}
		if !strings.Contains(readme, "`"+a.GetName()+"`") {
			t.Errorf("README.md does not document config attribute %s", a.GetName())
		}
	}
	for _, o := range knownOptions {
		if !strings.Contains(readme, "`"+o+"`") {
			t.Errorf("README.md does not document network option %s", o)
		}
	}
}

func readme(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestReadmeExample decodes the `config` block of every `driver "bridge"`
// block in the README's hcl examples into Config.
func TestReadmeExample(t *testing.T) {
	blocks := regexp.MustCompile("(?s)```hcl\n(.*?)```").FindAllStringSubmatch(readme(t), -1)
	found := 0
	for i, m := range blocks {
		p := hclparse.NewParser()
		f, diags := p.ParseHCL([]byte(m[1]), "README.md")
		if diags.HasErrors() {
			t.Fatalf("hcl block %d: %v", i, diags)
		}
		content, _, diags := f.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "driver", LabelNames: []string{"name"}}}})
		if diags.HasErrors() {
			t.Fatalf("hcl block %d: %v", i, diags)
		}
		for _, d := range content.Blocks {
			if d.Labels[0] != "bridge" {
				continue
			}
			inner, _, diags := d.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "config"}}})
			if diags.HasErrors() {
				t.Fatalf("hcl block %d: %v", i, diags)
			}
			for _, cb := range inner.Blocks {
				c := defaultConfig()
				if diags := gohcl.DecodeBody(cb.Body, nil, &c); diags.HasErrors() {
					t.Fatalf("hcl block %d: decoding config: %v", i, diags)
				}
				if err := validIfName(c.DefaultBridge); err != nil {
					t.Errorf("hcl block %d: %v", i, err)
				}
				if err := validMTU(c.MTU); err != nil {
					t.Errorf("hcl block %d: %v", i, err)
				}
				found++
			}
		}
	}
	if found == 0 {
		t.Fatal(`README.md has no hcl example with a driver "bridge" config block`)
	}
}

func TestParseNetwork(t *testing.T) {
	cfg := defaultConfig()
	cfg.DefaultBridge = "sandnet0"
	id := strings.Repeat("ab", 32)
	v4 := []*pb.IPAMData{{Pool: "10.1.0.0/24", Gateway: "10.1.0.1/24"}}
	tests := []struct {
		name    string
		net     *pb.Network
		want    func(n *network) string // "" when n is as expected
		wantErr error
	}{
		{
			name: "defaults",
			net:  &pb.Network{Id: id, Ipv4: v4},
			want: func(n *network) string {
				if n.bridge != "snbr-abababab" || n.mtu != 1500 || !n.icc || !n.masq || n.internal || n.snoop || n.gateway(4).String() != "10.1.0.1" {
					return "unexpected defaults"
				}
				return ""
			},
		},
		{
			name: "options",
			net: &pb.Network{Id: id, Ipv4: v4, Internal: true, Options: map[string]string{
				optBridgeName: "br-test", optMTU: "1400", optEnableICC: "false", optEnableMasq: "false", optMcastSnoop: "true", "com.example.other": "x",
			}},
			want: func(n *network) string {
				if n.bridge != "br-test" || n.mtu != 1400 || n.icc || n.masq || !n.internal || !n.snoop {
					return "options not applied"
				}
				return ""
			},
		},
		{
			name: "Docker's option names",
			net: &pb.Network{Id: id, Ipv4: v4, Options: map[string]string{
				"com.docker.network.bridge.name": "br-docker", "com.docker.network.driver.mtu": "1450",
				"com.docker.network.bridge.enable_icc": "false", "com.docker.network.bridge.enable_ip_masquerade": "false",
				optMTU: "1450", // the same value under both names is fine
			}},
			want: func(n *network) string {
				if n.bridge != "br-docker" || n.mtu != 1450 || n.icc || n.masq {
					return "Docker's options not applied"
				}
				return ""
			},
		},
		{
			name: "Docker's default_bridge",
			net:  &pb.Network{Id: id, Ipv4: v4, Options: map[string]string{"com.docker.network.bridge.default_bridge": "true"}},
			want: func(n *network) string {
				if n.bridge != "sandnet0" {
					return "bridge " + n.bridge
				}
				return ""
			},
		},
		{name: "Docker's name and ours disagree", net: &pb.Network{Id: id, Options: map[string]string{"com.docker.network.driver.mtu": "1400", optMTU: "1500"}}, wantErr: sdk.ErrInvalid},
		{name: "Docker's bad value", net: &pb.Network{Id: id, Options: map[string]string{"com.docker.network.bridge.enable_icc": "maybe"}}, wantErr: sdk.ErrInvalid},
		{
			name: "default bridge",
			net:  &pb.Network{Id: id, Ipv4: v4, Options: map[string]string{optDefault: "true"}},
			want: func(n *network) string {
				if n.bridge != "sandnet0" {
					return "bridge " + n.bridge
				}
				return ""
			},
		},
		{
			name: "gateway defaults to first address; ipv6",
			net: &pb.Network{Id: "not hex", Ipv4: []*pb.IPAMData{{Pool: "10.2.0.0/16"}},
				Ipv6: []*pb.IPAMData{{Pool: "fd00:1::/64", Gateway: "fd00:1::1/64"}}},
			want: func(n *network) string {
				if n.gateway(4).String() != "10.2.0.1" || n.gateway(6).String() != "fd00:1::1" || len(n.bridge) != 13 {
					return "gateways " + n.gateway(4).String() + " " + n.gateway(6).String() + " bridge " + n.bridge
				}
				return ""
			},
		},
		{name: "unknown option", net: &pb.Network{Id: id, Options: map[string]string{"com.sandnet.bridge.enable_icc_typo": "1"}}, wantErr: sdk.ErrInvalid},
		{name: "bad bool", net: &pb.Network{Id: id, Options: map[string]string{optEnableICC: "maybe"}}, wantErr: sdk.ErrInvalid},
		{name: "bad mtu", net: &pb.Network{Id: id, Options: map[string]string{optMTU: "12"}}, wantErr: sdk.ErrInvalid},
		{
			name: "host binding",
			net:  &pb.Network{Id: id, Ipv4: v4, Options: map[string]string{"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}},
			want: func(n *network) string {
				if n.hostBind.String() != "127.0.0.1" {
					return "host binding " + n.hostBind.String()
				}
				return ""
			},
		},
		{
			name: "host binding on every address",
			net:  &pb.Network{Id: id, Ipv4: v4, Options: map[string]string{optHostBind: "0.0.0.0"}},
			want: func(n *network) string {
				if n.hostBind.IsValid() {
					return "host binding " + n.hostBind.String()
				}
				return ""
			},
		},
		{name: "host binding IPv6", net: &pb.Network{Id: id, Options: map[string]string{optHostBind: "::1"}}, wantErr: sdk.ErrInvalid},
		{name: "host binding not an address", net: &pb.Network{Id: id, Options: map[string]string{optHostBind: "localhost"}}, wantErr: sdk.ErrInvalid},
		{name: "bad name", net: &pb.Network{Id: id, Options: map[string]string{optBridgeName: "much-too-long-bridge"}}, wantErr: sdk.ErrInvalid},
		{name: "gateway outside pool", net: &pb.Network{Id: id, Ipv4: []*pb.IPAMData{{Pool: "10.1.0.0/24", Gateway: "10.9.0.1/24"}}}, wantErr: sdk.ErrInvalid},
		{name: "v6 pool as v4", net: &pb.Network{Id: id, Ipv4: []*pb.IPAMData{{Pool: "fd00::/64"}}}, wantErr: sdk.ErrInvalid},
		{name: "v6 with small mtu", net: &pb.Network{Id: id, Ipv6: []*pb.IPAMData{{Pool: "fd00::/64"}}, Options: map[string]string{optMTU: "1000"}}, wantErr: sdk.ErrInvalid},
		{name: "no id", net: &pb.Network{}, wantErr: sdk.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parseNetwork(cfg, tt.net)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("parseNetwork = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if msg := tt.want(n); msg != "" {
				t.Fatalf("%s: %+v", msg, n)
			}
			again, _ := parseNetwork(cfg, tt.net)
			if !reflect.DeepEqual(n, again) {
				t.Fatal("parsing the same network twice gave different results")
			}
		})
	}
}

func TestParseEndpoint(t *testing.T) {
	n, err := parseNetwork(defaultConfig(), &pb.Network{Id: "n", Ipv4: []*pb.IPAMData{{Pool: "10.1.0.0/24"}}, Ipv6: []*pb.IPAMData{{Pool: "fd00::/64"}}})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := parseEndpoint(n, &pb.Endpoint{Id: "e", Interface: &pb.EndpointInterface{Address: "10.1.0.7/24", AddressV6: "fd00::7/64"}})
	if err != nil {
		t.Fatal(err)
	}
	if ep.mac.String() != "02:42:0a:01:00:07" || ep.macSet || ep.ip4 != netip.MustParseAddr("10.1.0.7") || ep.ip6 != netip.MustParseAddr("fd00::7") {
		t.Fatalf("endpoint = %+v", ep)
	}
	for _, iface := range []*pb.EndpointInterface{
		{},                       // no IPv4 address on an IPv4 network
		{Address: "10.2.0.7/24"}, // outside the pool
		{Address: "10.1.0.7/24", Mac: "01:00:5e:00:00:01"}, // multicast MAC
		{Address: "fd00::7/64"},                            // v6 as v4
	} {
		if _, err := parseEndpoint(n, &pb.Endpoint{Id: "e", Interface: iface}); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("parseEndpoint(%v) = %v, want ErrInvalid", iface, err)
		}
	}
}

func TestNames(t *testing.T) {
	hexID := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if got := hostIfName(hexID); got != "sn0123456789a" {
		t.Errorf("hostIfName = %q", got)
	}
	if got := peerIfName(hexID); got != "sp0123456789a" {
		t.Errorf("peerIfName = %q", got)
	}
	if got := bridgeName(hexID); got != "snbr-01234567" {
		t.Errorf("bridgeName = %q", got)
	}
	// IDs that are not hex, or share a prefix, still get distinct valid names.
	seen := map[string]string{}
	for _, id := range []string{"endpoint-1", "endpoint-10", "endpoint-100", "with/slash", "x", "ENDPOINT-1"} {
		for _, name := range []string{hostIfName(id), peerIfName(id), bridgeName(id)} {
			if err := validIfName(name); err != nil {
				t.Errorf("id %q: %v", id, err)
			}
			if other, dup := seen[name]; dup {
				t.Errorf("ids %q and %q both give %s", id, other, name)
			}
			seen[name] = id
		}
	}
	if m := bridgeMAC("x"); m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("bridgeMAC = %s, want unicast and locally administered", m)
	}
	if got := tagID(strings.Repeat("z", 100)); len(got) != 64 {
		t.Errorf("tagID of a long id = %q, want a 64-character hash", got)
	}
}

func TestPortComment(t *testing.T) {
	for _, r := range []portRule{
		{binding: binding{proto: "tcp", hostPort: 8080, ctrPort: 80}, ctr: netip.MustParseAddr("10.0.0.2")},
		{binding: binding{proto: "udp", hostIP: netip.MustParseAddr("::1"), hostPort: 53, ctrPort: 5353}, ctr: netip.MustParseAddr("fd00::2")},
	} {
		tag, got, ok := parseComment(r.comment("ep1"))
		if !ok || tag != "ep1" || got != r {
			t.Errorf("parseComment(%q) = %q, %+v, %v", r.comment("ep1"), tag, got, ok)
		}
	}
	for _, c := range []string{"", "sandnet base", "sandnet net=x", "sandnet ep=x sctp * 1 10.0.0.1 2", "sandnet ep=x tcp * 70000 10.0.0.1 2"} {
		if _, _, ok := parseComment(c); ok {
			t.Errorf("parseComment(%q) accepted", c)
		}
	}
}

func TestPortAllocation(t *testing.T) {
	// The holders' names, as publishes since the driver's start gave them
	// (ep2's never did).
	names := &bridge{portNames: map[string]string{"ep1": "web"}}
	any4 := netip.MustParseAddr("0.0.0.0")
	lo := netip.MustParseAddr("127.0.0.1")
	taken := []binding{
		{proto: "tcp", hostPort: 30000, ctrPort: 80},
		{proto: "udp", hostIP: lo, hostPort: 30001, ctrPort: 53},
	}
	req := func(proto string, ip netip.Addr, hp, end, cp uint16) portRequest {
		return portRequest{binding: binding{proto: proto, hostIP: ip, hostPort: hp, ctrPort: cp}, hostPortEnd: end}
	}
	tests := []struct {
		name     string
		reqs     []portRequest
		existing []binding
		probe    func(binding) bool
		want     []uint16
		wantErr  error
		wantMsg  string // what the error says
	}{
		{name: "explicit", reqs: []portRequest{req("tcp", netip.Addr{}, 8080, 0, 80)}, want: []uint16{8080}},
		{name: "explicit conflict", reqs: []portRequest{req("tcp", any4, 30000, 0, 80)}, wantErr: sdk.ErrConflict,
			wantMsg: "host port 0.0.0.0:30000/tcp is already published by endpoint web (ep1) as *:30000/tcp"},
		{name: "other proto is free", reqs: []portRequest{req("udp", netip.Addr{}, 30000, 0, 80)}, want: []uint16{30000}},
		{name: "other address is free", reqs: []portRequest{req("udp", netip.MustParseAddr("127.0.0.2"), 30001, 0, 53)}, want: []uint16{30001}},
		{name: "wildcard overlaps address", reqs: []portRequest{req("udp", netip.Addr{}, 30001, 0, 53)}, wantErr: sdk.ErrConflict,
			wantMsg: "host port *:30001/udp is already published by endpoint ep2 as 127.0.0.1:30001/udp"},
		{name: "same address", reqs: []portRequest{req("udp", lo, 30001, 0, 54)}, wantErr: sdk.ErrConflict,
			wantMsg: "host port 127.0.0.1:30001/udp is already published by endpoint ep2: conflict"},
		{name: "auto skips taken", reqs: []portRequest{req("tcp", netip.Addr{}, 0, 0, 80), req("tcp", netip.Addr{}, 0, 0, 81)}, want: []uint16{30001, 30002}},
		{name: "auto skips probed", reqs: []portRequest{req("tcp", netip.Addr{}, 0, 0, 80)}, probe: func(b binding) bool { return b.hostPort != 30001 }, want: []uint16{30002}},
		{name: "range", reqs: []portRequest{req("tcp", netip.Addr{}, 29999, 30001, 80)}, want: []uint16{29999}},
		{name: "range exhausted", reqs: []portRequest{req("tcp", netip.Addr{}, 30000, 30001, 80), req("tcp", netip.Addr{}, 30000, 30001, 81)}, wantErr: sdk.ErrUnavailable},
		{name: "replay keeps port", reqs: []portRequest{req("tcp", netip.Addr{}, 0, 0, 80)}, existing: []binding{{proto: "tcp", hostPort: 30004, ctrPort: 80}}, want: []uint16{30004}},
		{name: "duplicate request", reqs: []portRequest{req("tcp", netip.Addr{}, 9000, 0, 80), req("tcp", netip.Addr{}, 9000, 0, 81)}, wantErr: sdk.ErrConflict,
			wantMsg: "host port *:9000/tcp is already published by another of this endpoint's bindings"},
		{name: "ipv6 conflict", reqs: []portRequest{req("tcp", netip.MustParseAddr("::1"), 30000, 0, 80)}, wantErr: sdk.ErrConflict,
			wantMsg: "host port [::1]:30000/tcp is already published by endpoint web (ep1) as *:30000/tcp"},
		{name: "full", reqs: []portRequest{req("tcp", netip.Addr{}, 0, 0, 80)}, probe: func(binding) bool { return false }, wantErr: sdk.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := uint16(0)
			a := allocator{taken: taken, holders: []string{"ep1", "ep2"}, describe: names.portHolder, lo: 30000, hi: 30010, next: &next, probe: tt.probe}
			got, err := a.assign(tt.reqs, tt.existing)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("assign = %v, %v, want %v", got, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("assign: %v, want it to say %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ports []uint16
			for _, b := range got {
				ports = append(ports, b.hostPort)
			}
			if !slicesEqual(ports, tt.want) {
				t.Fatalf("ports = %v, want %v", ports, tt.want)
			}
		})
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParsePortRequests(t *testing.T) {
	got, err := parsePortRequests([]*pb.PortBinding{{Proto: "UDP", ContainerPort: 53, HostIp: "::ffff:127.0.0.1", HostPort: 5353, HostPortEnd: 5353}, {ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].proto != "udp" || got[0].hostIP != netip.MustParseAddr("127.0.0.1") || got[0].hostPortEnd != 0 || got[1].proto != "tcp" {
		t.Fatalf("parsePortRequests = %+v", got)
	}
	for _, bad := range []*pb.PortBinding{
		{Proto: "sctp", ContainerPort: 1}, {ContainerPort: 0}, {ContainerPort: 70000}, {ContainerPort: 1, HostIp: "x"},
		{ContainerPort: 1, HostPort: 10, HostPortEnd: 5}, {ContainerPort: 1, HostPortEnd: 5},
	} {
		if _, err := parsePortRequests([]*pb.PortBinding{bad}); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("parsePortRequests(%v) = %v, want ErrInvalid", bad, err)
		}
	}
}
