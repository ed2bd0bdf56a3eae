package sandbox

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

func TestValidateOptions(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.9")
	good := Options{
		Hostname: "web-1", DomainName: "corp.example.", DNS: []netip.Addr{ip},
		DNSSearch:  []string{"corp.example", "svc.cluster.local.", "my_svc"},
		DNSOptions: []string{"ndots:5", "rotate", "single-request-reopen", "timeout:2"},
		ExtraHosts: []HostEntry{{Name: "db.corp.example", IP: ip}, {Name: "cache_1", IP: ip}, {Name: "host.sandnet.internal", HostGateway: true}},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	tests := []struct {
		name  string
		opts  Options
		field string
	}{
		{"hostname with a newline", Options{Hostname: "a\n6.6.6.6 evil"}, "hostname"},
		{"hostname with a space", Options{Hostname: "a b"}, "hostname"},
		{"hostname label too long", Options{Hostname: strings.Repeat("a", 64)}, "hostname"},
		{"hostname too long", Options{Hostname: strings.Repeat("abcdefgh.", 30) + "a"}, "hostname"},
		{"hostname with a leading dash", Options{Hostname: "-a"}, "hostname"},
		{"domain with a NUL", Options{DomainName: "a\x00b"}, "domain_name"},
		{"search with a newline", Options{DNSSearch: []string{"ok", "a\nnameserver 6.6.6.6"}}, "dns_search[1]"},
		{"empty search", Options{DNSSearch: []string{""}}, "dns_search[0]"},
		{"option with a newline", Options{DNSOptions: []string{"ndots:1\nnameserver 6.6.6.6"}}, "dns_options[0]"},
		{"option with a space", Options{DNSOptions: []string{"ndots: 1"}}, "dns_options[0]"},
		{"extra host name with a newline", Options{ExtraHosts: []HostEntry{{Name: "a\n6.6.6.6 evil", IP: ip}}}, "extra_hosts[0].name"},
		{"extra host without an address", Options{ExtraHosts: []HostEntry{{Name: "a"}}}, "extra_hosts[0].ip"},
		{"extra host with an address and host_gateway", Options{ExtraHosts: []HostEntry{{Name: "a", IP: ip, HostGateway: true}}}, "extra_hosts[0]"},
		{"unset server", Options{DNS: []netip.Addr{ip, {}}}, "dns[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if !errors.Is(err, sdk.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Fatalf("Validate() = %v, want an invalid-argument error naming %s", err, tt.field)
			}
		})
	}
}

// TestWritersRefuseControlCharacters: options that got past validation
// (a record written by an older agent, say) still cannot add a line to
// resolv.conf or hosts.
func TestWritersRefuseControlCharacters(t *testing.T) {
	for _, opts := range []Options{
		{DNSSearch: []string{"a\nnameserver 6.6.6.6"}},
		{DNSOptions: []string{"rotate\nnameserver 6.6.6.6"}},
		{Hostname: "a\n6.6.6.6 evil"},
		{Hostname: "a", DomainName: "b\tc"},
		{ExtraHosts: []HostEntry{{Name: "x\n6.6.6.6 evil", IP: netip.MustParseAddr("192.0.2.1")}}},
	} {
		dir := t.TempDir()
		sb := New("id", "c1", opts, dir, ResolvConf{})
		sb.Restore(Endpoint{ID: "e1", Addr: netip.MustParsePrefix("10.1.0.2/24")})
		if err := sb.WriteFiles(); !errors.Is(err, sdk.ErrInvalid) {
			t.Fatalf("WriteFiles with %+v = %v, want refused", opts, err)
		}
		for _, f := range []string{"resolv.conf", "hosts"} {
			if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
				t.Fatalf("%s written for %+v", f, opts)
			}
		}
	}
}
