package osl

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestValidateIfName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"veth1234567890a", true}, // 15 bytes
		{"eth0.100", true},
		{"", false},
		{"veth1234567890ab", false}, // 16 bytes
		{".", false},
		{"..", false},
		{"a/b", false},
		{"a:b", false},
		{"a b", false},
		{"a\tb", false},
	}
	for _, tt := range tests {
		err := validateIfName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("validateIfName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("validateIfName(%q) = %v, want it to wrap ErrInvalid", tt.name, err)
		}
	}
}

func TestNextName(t *testing.T) {
	tests := []struct {
		desc    string
		prefix  string
		used    []string
		want    string
		wantErr bool
	}{
		{desc: "empty namespace", prefix: "eth", used: []string{"lo"}, want: "eth0"},
		{desc: "first taken", prefix: "eth", used: []string{"lo", "eth0"}, want: "eth1"},
		{desc: "gap", prefix: "eth", used: []string{"eth0", "eth2"}, want: "eth1"},
		{desc: "other prefixes ignored", prefix: "eth", used: []string{"ethx", "veth0", "eth", "eth00"}, want: "eth0"},
		{desc: "zero-padded name is not eth0", prefix: "eth", used: []string{"eth00", "eth0"}, want: "eth1"},
		{desc: "vlan suffix not a number", prefix: "eth", used: []string{"eth0.100"}, want: "eth0"},
		{desc: "unordered", prefix: "net", used: []string{"net3", "net1", "net0", "net2"}, want: "net4"},
		{desc: "prefix too long", prefix: "abcdefghijklmno", wantErr: true},
		{desc: "no room left", prefix: "abcdefghijklmn", used: []string{"abcdefghijklmn0", "abcdefghijklmn1", "abcdefghijklmn2", "abcdefghijklmn3", "abcdefghijklmn4", "abcdefghijklmn5", "abcdefghijklmn6", "abcdefghijklmn7", "abcdefghijklmn8", "abcdefghijklmn9"}, wantErr: true},
		{desc: "bad prefix", prefix: "a/b", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			got, err := nextName(tt.prefix, tt.used)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("nextName(%q, %v) = %q, %v; want ErrInvalid", tt.prefix, tt.used, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("nextName(%q, %v) = %q, %v; want %q", tt.prefix, tt.used, got, err, tt.want)
			}
		})
	}
}

func TestSysctlPath(t *testing.T) {
	tests := []struct {
		name    string
		want    string
		wantErr bool
	}{
		{name: "net.ipv4.ip_forward", want: "/proc/sys/net/ipv4/ip_forward"},
		{name: "net.ipv6.conf.all.disable_ipv6", want: "/proc/sys/net/ipv6/conf/all/disable_ipv6"},
		{name: "net/ipv4/conf/eth0.100/forwarding", want: "/proc/sys/net/ipv4/conf/eth0.100/forwarding"},
		{name: "kernel.hostname", wantErr: true},
		{name: "vm/overcommit_memory", wantErr: true},
		{name: "net", wantErr: true},
		{name: "", wantErr: true},
		{name: "net/../kernel/hostname", wantErr: true},
		{name: "net..ipv4", wantErr: true},
		{name: "net/ipv4/", wantErr: true},
	}
	for _, tt := range tests {
		got, err := sysctlPath(tt.name)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("sysctlPath(%q) = %q, %v; want ErrInvalid", tt.name, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("sysctlPath(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestValidateAddresses(t *testing.T) {
	cidr := func(s string) *net.IPNet {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	tests := []struct {
		desc  string
		addrs []*net.IPNet
		want  string // substring of the error; "" means valid
	}{
		{desc: "none", addrs: nil},
		{desc: "v4 and v6", addrs: []*net.IPNet{cidr("10.0.0.2/24"), cidr("fd00::2/64")}},
		{desc: "v4 with 16-byte IP", addrs: []*net.IPNet{{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)}}},
		{desc: "nil entry", addrs: []*net.IPNet{nil}, want: "incomplete"},
		{desc: "nil IP", addrs: []*net.IPNet{{Mask: net.CIDRMask(24, 32)}}, want: "incomplete"},
		{desc: "nil mask", addrs: []*net.IPNet{{IP: net.ParseIP("10.0.0.2")}}, want: "incomplete"},
		{desc: "v4 with v6 mask", addrs: []*net.IPNet{{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(120, 128)}}, want: "address family wants 32"},
		{desc: "v6 with v4 mask", addrs: []*net.IPNet{{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(24, 32)}}, want: "address family wants 128"},
		{desc: "non-canonical mask", addrs: []*net.IPNet{{IP: net.ParseIP("10.0.0.2"), Mask: net.IPv4Mask(255, 0, 255, 0)}}, want: "non-canonical"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := validateAddresses(tt.addrs)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("validateAddresses = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("validateAddresses = %v, want ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}
