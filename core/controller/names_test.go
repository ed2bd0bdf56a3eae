package controller

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/resolver"
)

func TestNameIndex(t *testing.T) {
	x := newNameIndex()
	red := &Network{ID: "r", Name: "Red"}
	blue := &Network{ID: "b", Name: "blue", Internal: true}
	x.add(red, &Endpoint{ID: "e1", Name: "Web", Aliases: []string{"www"}, Address: netip.MustParsePrefix("10.0.0.2/24"), AddressV6: netip.MustParsePrefix("fd00::2/64")}, "web")
	x.add(red, &Endpoint{ID: "e2", Name: "web", Address: netip.MustParsePrefix("10.0.0.3/24")}, "")
	x.add(blue, &Endpoint{ID: "e3", Name: "db", Address: netip.MustParsePrefix("10.1.0.2/24")}, "")
	dotted := &Network{ID: "d", Name: "my.net"}
	x.add(dotted, &Endpoint{ID: "e5", Name: "api", Aliases: []string{"Db.Local"}, Address: netip.MustParsePrefix("10.3.0.2/24")}, "api.example.com")
	onRed := view{x: x, nets: func() []string { return []string{"r"} }}
	onBoth := view{x: x, nets: func() []string { return []string{"r", "b"} }}
	onBlue := view{x: x, nets: func() []string { return []string{"b"} }}
	onDotted := view{x: x, nets: func() []string { return []string{"d"} }}
	tests := []struct {
		v     view
		name  string
		want  string
		found bool
	}{
		{onRed, "web", "[10.0.0.2 10.0.0.3] [fd00::2]", true},
		{onRed, "www", "[10.0.0.2] [fd00::2]", true},
		{onRed, "web.red", "[10.0.0.2 10.0.0.3] [fd00::2]", true},
		{onRed, "web.blue", "[] []", false},
		{onRed, "db", "[] []", false}, // not on a shared network
		{onBoth, "db", "[10.1.0.2] []", true},
		{onBoth, "db.blue", "[10.1.0.2] []", true},
		// Names with dots of their own: aliases, hostnames, network names.
		{onDotted, "db.local", "[10.3.0.2] []", true},
		{onDotted, "db.local.my.net", "[10.3.0.2] []", true},
		{onDotted, "api.example.com", "[10.3.0.2] []", true},
		{onDotted, "api.my.net", "[10.3.0.2] []", true},
		{onDotted, "api.net", "[] []", false},
		{onDotted, ".my.net", "[] []", false},
		{onRed, "db.local", "[] []", false},
	}
	for _, tt := range tests {
		v4, v6, found := tt.v.Lookup(tt.name)
		if got := fmt.Sprint(v4, " ", v6); found != tt.found || (found && got != tt.want) {
			t.Errorf("Lookup(%q) = %s, %v; want %s, %v", tt.name, got, found, tt.want, tt.found)
		}
	}
	// A question costs no allocation, found or not, with or without
	// ".network" (the resolver asks on every query).
	ids := []string{"r", "d"}
	both := view{x: x, nets: func() []string { return ids }}
	for _, name := range []string{"web", "web.red", "db.local.my.net", "nosuch", "nosuch.my.net"} {
		if n := testing.AllocsPerRun(100, func() { both.Lookup(name) }); n != 0 {
			t.Errorf("Lookup(%q) allocates %v times", name, n)
		}
	}
	if p, ok := onRed.ReverseLookup(netip.MustParseAddr("10.0.0.2")); !ok || p != "web.red." {
		t.Errorf("PTR 10.0.0.2 = %q, %v", p, ok)
	}
	if _, ok := onRed.ReverseLookup(netip.MustParseAddr("10.1.0.2")); ok {
		t.Error("PTR of an address on a network not shared answered")
	}
	green := &Network{ID: "g", Name: "green", DNSForwardSingleLabel: true}
	x.add(green, &Endpoint{ID: "e4", Name: "cache", Address: netip.MustParsePrefix("10.2.0.2/24")}, "")
	onGreen := view{x: x, nets: func() []string { return []string{"b", "g"} }}
	if onRed.Forward() != resolver.ForwardQualified || onBlue.Forward() != resolver.ForwardNone ||
		onBoth.Forward() != resolver.ForwardQualified || onGreen.Forward() != resolver.ForwardAll {
		t.Errorf("Forward: red %v blue %v both %v green %v; want qualified, none, qualified, all",
			onRed.Forward(), onBlue.Forward(), onBoth.Forward(), onGreen.Forward())
	}
	x.remove("e1")
	if v4, _, _ := onRed.Lookup("web"); fmt.Sprint(v4) != "[10.0.0.3]" {
		t.Errorf("after removing e1, web = %v", v4)
	}
	if _, _, found := onRed.Lookup("www"); found {
		t.Error("alias of a removed endpoint still answers")
	}
	// A second match appends to a copy, never into the index.
	v4, _, _ := onBoth.Lookup("web")
	_ = append(v4, netip.MustParseAddr("9.9.9.9"))
	if again, _, _ := onRed.Lookup("web"); fmt.Sprint(again) != "[10.0.0.3]" {
		t.Errorf("index changed by a caller's append: %v", again)
	}
}

// BenchmarkLookup times the embedded resolver's question to the name
// index with 100 containers on one network: a container's name, the
// same with ".network", and a name that is no container's (an external
// one, asked before it is forwarded).
func BenchmarkLookup(b *testing.B) {
	x := newNameIndex()
	red := &Network{ID: "r", Name: "red"}
	for i := range 100 {
		x.add(red, &Endpoint{ID: fmt.Sprint("e", i), Name: fmt.Sprint("c", i),
			Address: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + i)}), 24)}, "")
	}
	ids := []string{"r"}
	v := view{x: x, nets: func() []string { return ids }}
	for _, q := range []string{"c42", "c42.red", "www.example.com"} {
		b.Run(q, func(b *testing.B) {
			for range b.N {
				v.Lookup(q)
			}
		})
	}
}

// A reverse lookup names the endpoint by its first name DNS can hold: a
// container named by its 64-character ID (a label over 63 bytes) is
// named by its hostname or alias instead.
func TestPTRNameDNSCanHold(t *testing.T) {
	x := newNameIndex()
	red := &Network{ID: "r", Name: "red"}
	id := strings.Repeat("0123456789abcdef", 4)
	x.add(red, &Endpoint{ID: "e1", Name: id, Aliases: []string{"db"}, Address: netip.MustParsePrefix("10.0.0.2/24")}, "")
	x.add(red, &Endpoint{ID: "e2", Name: id[:63] + "x", Address: netip.MustParsePrefix("10.0.0.3/24")}, "")
	v := view{x: x, nets: func() []string { return []string{"r"} }}
	if p, ok := v.ReverseLookup(netip.MustParseAddr("10.0.0.2")); !ok || p != "db.red." {
		t.Errorf("PTR 10.0.0.2 = %q, %v; want db.red.", p, ok)
	}
	// With no such name the address is still known: the resolver
	// answers it with no data rather than forwarding it.
	if _, ok := v.ReverseLookup(netip.MustParseAddr("10.0.0.3")); !ok {
		t.Error("PTR 10.0.0.3 unknown")
	}
}

// The host listener answers name.network as a sandbox's resolver does,
// with dots in the name or the network, and no bare name.
func TestHostViewNamesWithDots(t *testing.T) {
	x := newNameIndex()
	x.add(&Network{ID: "n", Name: "n1"}, &Endpoint{ID: "e1", Name: "web", Aliases: []string{"db.local"}, Address: netip.MustParsePrefix("10.0.0.2/24")}, "host-a.example.com")
	x.add(&Network{ID: "d", Name: "my.net"}, &Endpoint{ID: "e2", Name: "api", Address: netip.MustParsePrefix("10.3.0.2/24")}, "")
	v := hostView{x: x}
	for name, want := range map[string]string{
		"web.n1": "10.0.0.2", "db.local.n1": "10.0.0.2", "host-a.example.com.n1": "10.0.0.2",
		"api.my.net": "10.3.0.2", "web": "", "db.local": "", "api.net": "",
	} {
		v4, _, found := v.Lookup(name)
		if got := fmt.Sprint(v4); found != (want != "") || want != "" && got != "["+want+"]" {
			t.Errorf("host listener: %s = %s (found %v), want %q", name, got, found, want)
		}
	}
}

// A deleted network's entry goes once its last endpoint has: the index
// does not grow with every network ever made.
func TestForgetNetwork(t *testing.T) {
	x := newNameIndex()
	red := &Network{ID: "r", Name: "red"}
	x.add(red, &Endpoint{ID: "e1", Name: "web", Address: netip.MustParsePrefix("10.0.0.2/24")}, "")
	x.forgetNetwork("r")
	if x.nets["r"] == nil {
		t.Fatal("the entry of a network with an endpoint was forgotten")
	}
	x.remove("e1")
	x.forgetNetwork("r")
	if len(x.nets) != 0 {
		t.Fatalf("entries left once the network was deleted: %v", x.nets)
	}
}
