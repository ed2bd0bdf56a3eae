package main

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// TestREADME decodes the README's examples against the schema the plugin
// declares, as the host does, and parses the result.
func TestREADME(t *testing.T) {
	for i, raw := range plugintest.ReadmeConfigs(t, "README.md", "driver", "overlay", sdk.MustSchemaFor(Config{})) {
		if _, err := parse(raw); err != nil {
			t.Fatalf("example %d: parse(%s): %v", i+1, raw, err)
		}
	}
}

func TestSchemaDocumentsEveryAttribute(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	for _, a := range sdk.MustSchemaFor(Config{}).GetAttributes() {
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

func TestParseConfig(t *testing.T) {
	c, err := parse(nil)
	if err != nil || c != defaultConfig() || c.VXLANPort != 4789 {
		t.Fatalf("parse(nil) = %+v, %v; want the defaults (port 4789)", c, err)
	}
	c, err = parse([]byte(`{"vxlan_port":8472,"mtu":null}`))
	if err != nil || c != (Config{VXLANPort: 8472}) {
		t.Fatalf("parse = %+v, %v", c, err)
	}
	for _, bad := range []string{`{"vxlan_port":0}`, `{"vxlan_port":70000}`, `{"mtu":20}`, `{"mtu":70000}`, `{"mtu":"x"}`} {
		if _, err := parse([]byte(bad)); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("parse(%s) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseNetwork(t *testing.T) {
	base := func() *pb.Network {
		return &pb.Network{Id: "0123456789abcdef", AdvertiseAddr: "192.0.2.1", Vni: 42,
			Ipv4: []*pb.IPAMData{{Pool: "10.10.0.0/24", Gateway: "10.10.0.1/24"}}}
	}
	n, err := parseNetwork(defaultConfig(), base())
	if err != nil {
		t.Fatal(err)
	}
	if n.vni != 42 || n.port != 4789 || n.vtep.String() != "192.0.2.1" || n.bridge != "ovbr-01234567" || n.vxlan != "ovvx-01234567" || n.mtu != 0 {
		t.Fatalf("parseNetwork = %+v", n)
	}
	withOpt := base()
	withOpt.Vni = 0
	withOpt.Options = map[string]string{optVNI: "7", optMTU: "1400", "com.example.other": "x"}
	if n, err := parseNetwork(defaultConfig(), withOpt); err != nil || n.vni != 7 || n.mtu != 1400 {
		t.Fatalf("parseNetwork with options = %+v, %v; want VNI 7, MTU 1400", n, err)
	}
	for name, mod := range map[string]func(*pb.Network){
		"no id":                 func(n *pb.Network) { n.Id = "" },
		"no advertise address":  func(n *pb.Network) { n.AdvertiseAddr = "" },
		"bad advertise address": func(n *pb.Network) { n.AdvertiseAddr = "eth0" },
		"no VNI":                func(n *pb.Network) { n.Vni = 0 },
		"VNI too big":           func(n *pb.Network) { n.Vni = 1 << 24 },
		"bad VNI option":        func(n *pb.Network) { n.Vni = 0; n.Options = map[string]string{optVNI: "x"} },
		"VNI option disagrees":  func(n *pb.Network) { n.Options = map[string]string{optVNI: "43"} },
		"unknown option":        func(n *pb.Network) { n.Options = map[string]string{optionPrefix + "vnii": "1"} },
		"bad MTU option":        func(n *pb.Network) { n.Options = map[string]string{optMTU: "10"} },
		"bad pool":              func(n *pb.Network) { n.Ipv4[0].Pool = "fd00::/64" },
	} {
		pn := base()
		mod(pn)
		if _, err := parseNetwork(defaultConfig(), pn); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("%s: parseNetwork = %v, want ErrInvalid", name, err)
		}
	}
}

func TestParsePeer(t *testing.T) {
	n, err := parseNetwork(defaultConfig(), &pb.Network{Id: "n", AdvertiseAddr: "192.0.2.1", Vni: 1,
		Ipv4: []*pb.IPAMData{{Pool: "10.10.0.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	good := func() *pb.Peer {
		return &pb.Peer{EndpointId: "e", Address: "10.10.0.3/24", Mac: "02:42:0a:0a:00:03", Vtep: "192.0.2.2"}
	}
	if p, err := parsePeer(n, good()); err != nil || p.ip4.String() != "10.10.0.3" || p.vtep.String() != "192.0.2.2" {
		t.Fatalf("parsePeer = %+v, %v", p, err)
	}
	for name, mod := range map[string]func(*pb.Peer){
		"no MAC":            func(p *pb.Peer) { p.Mac = "" },
		"multicast MAC":     func(p *pb.Peer) { p.Mac = "01:00:5e:00:00:01" },
		"no VTEP":           func(p *pb.Peer) { p.Vtep = "" },
		"VTEP of IPv6":      func(p *pb.Peer) { p.Vtep = "2001:db8::2" },
		"no address":        func(p *pb.Peer) { p.Address = "" },
		"address elsewhere": func(p *pb.Peer) { p.Address = "10.11.0.3/24" },
	} {
		pp := good()
		mod(pp)
		if _, err := parsePeer(n, pp); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("%s: parsePeer = %v, want ErrInvalid", name, err)
		}
	}
}
