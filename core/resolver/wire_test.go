package resolver

import (
	"net/netip"
	"testing"
)

func TestNameKey(t *testing.T) {
	tests := []struct {
		wire  string
		key   string
		plain bool
	}{
		{"\x00", "", true},
		{"\x03web\x00", "web", true},
		{"\x03WeB\x03NET\x00", "web.net", true},
		{"\x05my_db\x05net-1\x00", "my_db.net-1", true},
		{"\x05my_db\x04net-1\x00", "", false},
		{"\x07web.net\x00", "", false},
		{"\x04we b\x00", "", false},
		{"\x04we\\b\x00", "", false},
		{"\x03w\xc3\xa9\x00", "", false},
		{"\x03w\x00b\x00", "", false},
	}
	for _, tt := range tests {
		key, plain := nameKey(nil, []byte(tt.wire))
		if plain != tt.plain || (plain && string(key) != tt.key) {
			t.Errorf("nameKey(%q) = %q, %v; want %q, %v", tt.wire, key, plain, tt.key, tt.plain)
		}
	}
}

func TestReverseAddr(t *testing.T) {
	v6 := "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"
	tests := []struct {
		key  string
		want string // "" means not an address
	}{
		{"2.0.0.10.in-addr.arpa", "10.0.0.2"},
		{"255.255.255.255.in-addr.arpa", "255.255.255.255"},
		{"0.0.0.0.in-addr.arpa", "0.0.0.0"},
		{v6, "fd00::2"},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.ip6.arpa", "4321:0:1:2:3:4:567:89ab"},
		{"10.in-addr.arpa", ""},
		{"0.10.in-addr.arpa", ""},
		{"1.2.0.0.10.in-addr.arpa", ""},
		{"256.0.0.10.in-addr.arpa", ""},
		{"02.0.0.10.in-addr.arpa", ""},
		{"-1.0.0.10.in-addr.arpa", ""},
		{"a.0.0.10.in-addr.arpa", ""},
		{".0.0.10.in-addr.arpa", ""},
		{"in-addr.arpa", ""},
		{"web.net", ""},
		{v6[2:], ""},
		{"g" + v6[1:], ""},
		{"22" + v6[1:], ""},
		{"ip6.arpa", ""},
	}
	for _, tt := range tests {
		ip, ok := reverseAddr([]byte(tt.key))
		var want netip.Addr
		if tt.want != "" {
			want = netip.MustParseAddr(tt.want)
		}
		if ok != (tt.want != "") || ip != want {
			t.Errorf("reverseAddr(%q) = %v, %v; want %v", tt.key, ip, ok, tt.want)
		}
	}
}

func TestAppendName(t *testing.T) {
	tests := []struct {
		name string
		wire string
		ok   bool
	}{
		{"web.net.", "\x03web\x03net\x00", true},
		{"web.net", "\x03web\x03net\x00", true},
		{"", "", false},
		{".", "", false},
		{"web..net.", "", false},
		{string(make([]byte, 64)) + ".net.", "", false},
	}
	for _, tt := range tests {
		got, ok := appendName([]byte("x"), tt.name)
		if ok != tt.ok || (ok && string(got[1:]) != tt.wire) || (!ok && string(got) != "x") {
			t.Errorf("appendName(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.wire, tt.ok)
		}
	}
	long := ""
	for range 5 {
		long += string(make([]byte, 60)) + "."
	}
	if _, ok := appendName(nil, long); ok {
		t.Errorf("appendName of a %d-byte name succeeded", len(long))
	}
}
