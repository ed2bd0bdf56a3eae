package config

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/sdk"
)

// wantDiag is one expected error: where it starts and a piece of
// "summary; detail".
type wantDiag struct {
	line, col int
	msg       string
}

// requireDiags checks that diags holds exactly the wanted errors, in
// order, each in file.
func requireDiags(t *testing.T, file string, diags hcl.Diagnostics, want ...wantDiag) {
	t.Helper()
	if len(diags) != len(want) {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), len(want), render(diags))
	}
	for i, d := range diags {
		w := want[i]
		if d.Severity != hcl.DiagError {
			t.Errorf("diagnostic %d is not an error: %s", i, render(hcl.Diagnostics{d}))
		}
		if d.Subject == nil {
			t.Errorf("diagnostic %d has no position: %s", i, render(hcl.Diagnostics{d}))
			continue
		}
		got := wantDiag{d.Subject.Start.Line, d.Subject.Start.Column, d.Summary + "; " + d.Detail}
		if d.Subject.Filename != file || got.line != w.line || got.col != w.col || !strings.Contains(got.msg, w.msg) {
			t.Errorf("diagnostic %d:\n got %s:%d:%d: %s\nwant %s:%d:%d: …%s…", i,
				d.Subject.Filename, got.line, got.col, got.msg, file, w.line, w.col, w.msg)
		}
	}
}

func render(diags hcl.Diagnostics) string {
	var b bytes.Buffer
	_ = FormatDiagnostics(&b, nil, diags)
	return b.String()
}

func TestParseFull(t *testing.T) {
	src := `
data_dir   = "state"
plugin_dir = "/opt/sandnet/plugins/"

api {
  socket = "run/api.sock"
}

log {
  level = "DEBUG"
  json  = true
}

store "consul" {
  command  = "bin/store"
  args     = ["-v", "-x"]
  checksum = "SHA256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
  config {
    address = "127.0.0.1:8500"
  }
}

driver "bridge" {
  config {
    mtu = 9000
  }
}
driver "none" {}

resolver {
  upstreams    = ["1.1.1.1", "9.9.9.9:5353", "2606:4700::1111", "[2001:db8::1]:54", "[::1]"]
  timeout      = "1500ms"
  max_inflight = 64
  cache_size   = 100
  cache_max_ttl = "10m"
  cache_max_negative_ttl = "30s"
  host_listen  = "127.0.0.1:5353"
}

ipam {
  default_pools = [
    { base = "10.10.0.0/16", size = 24 },
    { "base" = "fd00::/48", "size" = 64 },
  ]
}
`
	c, diags := Parse([]byte(src), "/etc/sandnet/agent.hcl")
	requireDiags(t, "/etc/sandnet/agent.hcl", diags)

	if c.Filename != "/etc/sandnet/agent.hcl" {
		t.Errorf("Filename = %q", c.Filename)
	}
	if c.DataDir != "/etc/sandnet/state" {
		t.Errorf("DataDir = %q, want it relative to the file", c.DataDir)
	}
	if c.PluginDir != "/opt/sandnet/plugins" {
		t.Errorf("PluginDir = %q", c.PluginDir)
	}
	if c.API.Socket != "/etc/sandnet/run/api.sock" {
		t.Errorf("API.Socket = %q", c.API.Socket)
	}
	if c.Log != (Log{Level: "debug", JSON: true}) {
		t.Errorf("Log = %+v", c.Log)
	}

	st := c.Store
	if st.Kind != "store" || st.Name != "consul" || st.Implicit {
		t.Errorf("Store = %s (implicit %v)", st, st.Implicit)
	}
	if st.Command != "/etc/sandnet/bin/store" || !reflect.DeepEqual(st.Args, []string{"-v", "-x"}) {
		t.Errorf("Store command = %q %q", st.Command, st.Args)
	}
	if st.Checksum != "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" {
		t.Errorf("Store.Checksum = %q, want lowercase hex without prefix", st.Checksum)
	}
	if st.Binary("/unused") != "/etc/sandnet/bin/store" {
		t.Errorf("Store.Binary = %q, want the command", st.Binary("/unused"))
	}
	if st.DeclRange.Start.Line != 14 || st.ConfigRange.Start.Line != 18 || st.ConfigRange.Start.Column != 3 {
		t.Errorf("Store ranges: decl %s, config %s", st.DeclRange, st.ConfigRange)
	}

	if len(c.Drivers) != 2 || c.Drivers[0].Name != "bridge" || c.Drivers[1].Name != "none" {
		t.Fatalf("Drivers = %v", c.Drivers)
	}
	if got := c.Drivers[0].Binary(c.PluginDir); got != "/opt/sandnet/plugins/sandnet-driver-bridge" {
		t.Errorf("bridge Binary = %q", got)
	}
	if none := c.Drivers[1]; none.Config != nil || none.ConfigRange != none.DeclRange {
		t.Errorf("none: Config %v, ConfigRange %s, want nil and the block's range", none.Config, none.ConfigRange)
	}
	if got := c.Plugins(); len(got) != 3 || got[0].Name != "consul" || got[2].Name != "none" {
		t.Errorf("Plugins = %v", got)
	}

	wantUp := []netip.AddrPort{
		netip.MustParseAddrPort("1.1.1.1:53"),
		netip.MustParseAddrPort("9.9.9.9:5353"),
		netip.MustParseAddrPort("[2606:4700::1111]:53"),
		netip.MustParseAddrPort("[2001:db8::1]:54"),
		netip.MustParseAddrPort("[::1]:53"),
	}
	if !reflect.DeepEqual(c.Resolver, Resolver{Upstreams: wantUp, Timeout: 1500 * time.Millisecond, MaxInflight: 64,
		CacheSize: 100, CacheMaxTTL: 10 * time.Minute, CacheMaxNegativeTTL: 30 * time.Second,
		HostListen: netip.MustParseAddrPort("127.0.0.1:5353")}) {
		t.Errorf("Resolver = %+v", c.Resolver)
	}
	wantPools := []Pool{
		{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24},
		{Base: netip.MustParsePrefix("fd00::/48"), Size: 64},
	}
	if !reflect.DeepEqual(c.IPAM.DefaultPools, wantPools) {
		t.Errorf("DefaultPools = %v", c.IPAM.DefaultPools)
	}
}

func TestParseDefaults(t *testing.T) {
	c, diags := Parse(nil, "/etc/sandnet/agent.hcl")
	requireDiags(t, "/etc/sandnet/agent.hcl", diags)
	want := &Config{
		Filename:          "/etc/sandnet/agent.hcl",
		DataDir:           "/var/lib/sandnet",
		PluginDir:         "/usr/lib/sandnet/plugins",
		API:               API{Socket: "/run/sandnet/sandnet.sock"},
		HostTTL:           30 * time.Second,
		PluginRestartWait: 10 * time.Second,
		Log:               Log{Level: "info"},
		Resolver: Resolver{Timeout: 4 * time.Second, MaxInflight: 1024,
			CacheSize: 4096, CacheMaxTTL: time.Hour, CacheMaxNegativeTTL: 5 * time.Minute},
		IPAM:    IPAM{DefaultPools: DefaultPools()},
		Sandbox: Sandbox{NetnsDir: DefaultNetnsDir, FilesDir: DefaultFilesDir, StubGracePeriod: DefaultStubGracePeriod, SpareNamespaces: DefaultSpareNamespaces},
	}
	got := *c
	got.Store, got.files = PluginBlock{}, nil
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", &got, want)
	}
	if s := c.Store; s.Kind != "store" || s.Name != "bolt" || !s.Implicit || s.Binary("/p") != "/p/sandnet-store-bolt" {
		t.Errorf("default store = %s implicit %v binary %s", s, s.Implicit, s.Binary("/p"))
	}

	pools := DefaultPools()
	if len(pools) != 16 || pools[0].Base.String() != "172.17.0.0/16" || pools[0].Size != 16 ||
		pools[14].Base.String() != "172.31.0.0/16" || pools[15] != (Pool{netip.MustParsePrefix("192.168.0.0/16"), 20}) {
		t.Errorf("DefaultPools = %v", pools)
	}
	pools[0].Size = 1
	if DefaultPools()[0].Size != 16 {
		t.Error("DefaultPools shares its slice between calls")
	}
}

// boltConfig stands in for the bolt store's config struct.
type boltConfig struct {
	Path string `hcl:"path" doc:"database file"`
}

func TestDefaultStoreFollowsDataDir(t *testing.T) {
	c, diags := Parse([]byte(`data_dir = "/srv/sandnet"`), "a.hcl")
	requireDiags(t, "a.hcl", diags)
	js, diags := DecodePluginConfig(c.Store, sdk.MustSchemaFor(boltConfig{}))
	requireDiags(t, "a.hcl", diags)
	if string(js) != `{"path":"/srv/sandnet/store.db"}` {
		t.Errorf("default store config = %s", js)
	}

	// A plugin named bolt that wants something else fails at the top of
	// the file, saying where the store came from.
	_, diags = DecodePluginConfig(c.Store, sdk.MustSchemaFor(struct {
		File string `hcl:"file"`
	}{}))
	requireDiags(t, "a.hcl", diags, wantDiag{1, 1, `"path" is not expected here. The store "bolt" plugin accepts: file. (The config has no store block`})
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []wantDiag
	}{
		{"unknown top-level attribute", `plugn_dir = "/x"`,
			[]wantDiag{{1, 1, `An argument named "plugn_dir" is not expected here. Did you mean "plugin_dir"?`}}},
		{"unknown block", "\ndrivr \"none\" {}",
			[]wantDiag{{2, 1, `Blocks of type "drivr" are not expected here. Did you mean "driver"?`}}},
		{"unknown attribute in a block", "api {\n  sockett = \"/x\"\n}",
			[]wantDiag{{2, 3, `Did you mean "socket"?`}}},
		{"unknown attribute in a plugin block", "driver \"none\" {\n  comand = \"/bin/true\"\n}",
			[]wantDiag{{2, 3, `Did you mean "command"?`}}},
		{"unknown block in a plugin block", "driver \"none\" {\n  confg {}\n}",
			[]wantDiag{{2, 3, `Did you mean "config"?`}}},
		{"block written as attribute", `api = "x"`,
			[]wantDiag{{1, 1, `Did you mean to define a block of type "api"?`}}},
		{"string for a list", "resolver {\n  upstreams = \"x\"\n}",
			[]wantDiag{{2, 15, `Inappropriate value for argument "upstreams": list of string required`}}},
		{"string for a number", "resolver {\n  max_inflight = \"many\"\n}",
			[]wantDiag{{2, 18, `Inappropriate value for argument "max_inflight": a number is required`}}},
		{"list for a string", "data_dir = [\"/a\"]",
			[]wantDiag{{1, 12, `string required`}}},
		{"fraction for an integer", "resolver {\n  max_inflight = 1.5\n}",
			[]wantDiag{{2, 18, `must be a whole number`}}},
		{"files_dir is netns_dir", "sandbox {\n  netns_dir = \"/run/x/n\"\n  files_dir = \"/run/x/n/\"\n}",
			[]wantDiag{{3, 15, `files_dir is netns_dir (/run/x/n)`}}},
		{"netns_dir where files_dir defaults to it", "sandbox {\n  netns_dir = \"/run/x/sandboxes\"\n}",
			[]wantDiag{{2, 15, `which is netns_dir itself (/run/x/sandboxes)`}}},
		{"advertise address neither IP nor interface", "\nadvertise_addr = \"10.0.0.1/24\"",
			[]wantDiag{{2, 18, `"10.0.0.1/24" is neither an IP address nor an interface name`}}},
		{"unspecified advertise address", `advertise_addr = "0.0.0.0"`,
			[]wantDiag{{1, 18, `0.0.0.0 cannot be this host's address`}}},
		{"multicast advertise address", `advertise_addr = "ff02::1"`,
			[]wantDiag{{1, 18, `ff02::1 cannot be this host's address`}}},
		{"loopback advertise address", `advertise_addr = "127.0.0.1"`,
			[]wantDiag{{1, 18, `127.0.0.1 cannot be this host's address`}}},
		{"link-local advertise address", `advertise_addr = "169.254.1.1"`,
			[]wantDiag{{1, 18, `169.254.1.1 cannot be this host's address`}}},
		{"broadcast advertise address", `advertise_addr = "255.255.255.255"`,
			[]wantDiag{{1, 18, `255.255.255.255 cannot be this host's address`}}},
		{"advertise address not an IPv4 address", `advertise_addr = "999.1.1.1"`,
			[]wantDiag{{1, 18, `"999.1.1.1" is not an IP address`}}},
		{"advertise address in short form", `advertise_addr = "127.1"`,
			[]wantDiag{{1, 18, `"127.1" is not an IP address`}}},
		{"advertise address in hex", `advertise_addr = "0x7f.1"`,
			[]wantDiag{{1, 18, `"0x7f.1" is not an IP address`}}},
		{"advertise address with a bad zone", `advertise_addr = "10.0.0.1%eth0"`,
			[]wantDiag{{1, 18, `"10.0.0.1%eth0" is not an IP address`}}},
		{"advertise address not a string", `advertise_addr = ["eth0"]`,
			[]wantDiag{{1, 18, `string required`}}},
		{"host_ttl under Consul's least", `host_ttl = "10s"`,
			[]wantDiag{{1, 12, `The host_ttl must be at least 20s`}}},
		{"host_ttl not a duration", `host_ttl = "soon"`,
			[]wantDiag{{1, 12, `"soon" is not a duration`}}},
		{"plugin_restart_wait of zero", `plugin_restart_wait = "0s"`,
			[]wantDiag{{1, 23, `The plugin_restart_wait must be more than 0 and at most 10m0s`}}},
		{"plugin_restart_wait past its bound", `plugin_restart_wait = "1h"`,
			[]wantDiag{{1, 23, `at most 10m0s; got 1h0m0s`}}},
		{"empty path", `plugin_dir = ""`,
			[]wantDiag{{1, 14, `"plugin_dir" must not be empty`}}},
		{"two store blocks", "store \"bolt\" {}\nstore \"consul\" {}",
			[]wantDiag{{2, 1, `the store "bolt" block at test.hcl:1:1 already chooses the store`}}},
		{"duplicate driver", "driver \"none\" {}\ndriver \"host\" {}\ndriver \"none\" {}",
			[]wantDiag{{3, 1, `A driver "none" block was already defined at test.hcl:1:1`}}},
		{"duplicate singleton block", "log {}\n\nlog {\n  level = \"debug\"\n}",
			[]wantDiag{{3, 1, `A log block was already defined at test.hcl:1:1`}}},
		{"duplicate config block", "driver \"x\" {\n  config {}\n  config {}\n}",
			[]wantDiag{{3, 3, `already has a config block at test.hcl:2:3`}}},
		{"missing plugin name", "store {}",
			[]wantDiag{{1, 7, `Missing name for store`}}},
		{"invalid plugin name", `driver "Bad/Name" {}`,
			[]wantDiag{{1, 8, `"Bad/Name" cannot name a plugin binary`}}},
		{"checksum too short", "driver \"none\" {\n  checksum = \"sha256:abc\"\n}",
			[]wantDiag{{2, 14, `"abc" is not 64 hexadecimal digits`}}},
		{"checksum not hex", "driver \"none\" {\n  checksum = \"sha256:" + strings.Repeat("g", 64) + "\"\n}",
			[]wantDiag{{2, 14, `is not 64 hexadecimal digits`}}},
		{"checksum other algorithm", "store \"bolt\" {\n  checksum = \"md5:d41d8cd98f00b204e9800998ecf8427e\"\n}",
			[]wantDiag{{2, 14, `"md5" is not a supported algorithm, only sha256 is`}}},
		{"checksum without algorithm", "store \"bolt\" {\n  checksum = \"" + strings.Repeat("a", 64) + "\"\n}",
			[]wantDiag{{2, 14, `has no algorithm prefix`}}},
		{"bad log level", "log {\n  level = \"inf\"\n}",
			[]wantDiag{{2, 11, `"inf" is not a log level; use one of trace, debug, info, warn, error. Did you mean "info"?`}}},
		{"socket too long", "api {\n  socket = \"/" + strings.Repeat("s", 110) + "\"\n}",
			[]wantDiag{{2, 12, `a unix socket path can be at most 107`}}},
		{"hostname upstream", "resolver {\n  upstreams = [\"1.1.1.1\", \"dns.google\"]\n}",
			[]wantDiag{{2, 27, `"dns.google" is not an IP address`}}},
		{"bad upstream port", "resolver {\n  upstreams = [\"1.1.1.1:dns\"]\n}",
			[]wantDiag{{2, 16, `"dns" is not a port number`}}},
		{"zero upstream port", "resolver {\n  upstreams = [\"1.1.1.1:0\"]\n}",
			[]wantDiag{{2, 16, `port 0 is not a port`}}},
		{"bad duration", "resolver {\n  timeout = \"2\"\n}",
			[]wantDiag{{2, 13, `"2" is not a duration`}}},
		{"duration out of range", "resolver {\n  timeout = \"-1s\"\n}",
			[]wantDiag{{2, 13, `more than 0 and at most 1m0s; got -1s`}}},
		{"max_inflight zero", "resolver {\n  max_inflight = 0\n}",
			[]wantDiag{{2, 18, `at least 1`}}},
		{"negative cache_size", "resolver {\n  cache_size = -1\n}",
			[]wantDiag{{2, 16, `cache_size must be 0 (no cache) or more; got -1`}}},
		{"cache_size not a number", "resolver {\n  cache_size = \"big\"\n}",
			[]wantDiag{{2, 16, `a number is required`}}},
		{"bad cache_max_ttl", "resolver {\n  cache_max_ttl = \"1 hour\"\n}",
			[]wantDiag{{2, 19, `"1 hour" is not a duration`}}},
		{"cache_max_ttl too long", "resolver {\n  cache_max_ttl = \"200h\"\n}",
			[]wantDiag{{2, 19, `The cache_max_ttl must be more than 0 and at most 168h0m0s; got 200h0m0s`}}},
		{"host_listen without a port", "resolver {\n  host_listen = \"127.0.0.1\"\n}",
			[]wantDiag{{2, 17, `"127.0.0.1" is not an address with a port`}}},
		{"host_listen on every address", "resolver {\n  host_listen = \"0.0.0.0:5353\"\n}",
			[]wantDiag{{2, 17, `host_listen needs one address of the host and a port other than 0`}}},
		// IPv4-mapped, it is every address too (it was let through, and the
		// listener gave container names to every network).
		{"host_listen on every address, IPv4-mapped", "resolver {\n  host_listen = \"[::ffff:0.0.0.0]:5353\"\n}",
			[]wantDiag{{2, 17, `host_listen needs one address of the host and a port other than 0`}}},
		{"cache_max_negative_ttl zero", "resolver {\n  cache_max_negative_ttl = \"0s\"\n}",
			[]wantDiag{{2, 28, `more than 0 and at most 168h0m0s; got 0s`}}},
		{"bad pool CIDR", "ipam {\n  default_pools = [\n    { base = \"172.17.0.0/33\", size = 24 },\n  ]\n}",
			[]wantDiag{{3, 14, `"172.17.0.0/33" is not a CIDR prefix`}}},
		{"pool with host bits", "ipam {\n  default_pools = [\n    { base = \"172.17.0.1/16\", size = 24 },\n  ]\n}",
			[]wantDiag{{3, 14, `has host bits set. Did you mean "172.17.0.0/16"?`}}},
		{"IPv4-mapped pool", "ipam {\n  default_pools = [\n    { base = \"::ffff:10.0.0.0/104\", size = 120 },\n  ]\n}",
			[]wantDiag{{3, 14, `is an IPv4-mapped IPv6 prefix`}}},
		{"pool on loopback", "ipam {\n  default_pools = [\n    { base = \"127.0.0.0/8\", size = 24 },\n  ]\n}",
			[]wantDiag{{3, 14, `127.0.0.0/8 overlaps 127.0.0.0/8, loopback`}}},
		{"pool size too large", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\", size = 31 },\n  ]\n}",
			[]wantDiag{{3, 35, `between 8 and 30; got 31`}}},
		{"pool size below base", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\", size = 4 },\n  ]\n}",
			[]wantDiag{{3, 35, `between 8 and 30; got 4`}}},
		{"pool size not a number", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\", size = \"big\" },\n  ]\n}",
			[]wantDiag{{3, 35, `a number is required`}}},
		{"misspelt pool attribute", "ipam {\n  default_pools = [\n    { bsae = \"10.0.0.0/8\", size = 24 },\n  ]\n}",
			[]wantDiag{{3, 7, `An argument named "bsae" is not expected in a pool; a pool has base and size. Did you mean "base"?`}}},
		{"incomplete pool", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\" },\n  ]\n}",
			[]wantDiag{{3, 5, `needs both base and size`}}},
		{"pool not an object", "ipam {\n  default_pools = [\"10.0.0.0/8\"]\n}",
			[]wantDiag{{2, 20, `A pool is an object`}}},
		{"pools not a list", "ipam {\n  default_pools = \"10.0.0.0/8\"\n}",
			[]wantDiag{{2, 19, `must be a list of pools`}}},
		{"empty pools", "ipam {\n  default_pools = []\n}",
			[]wantDiag{{2, 19, `default_pools is empty`}}},
		{"overlapping pools", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\", size = 16 },\n    { base = \"10.1.0.0/16\", size = 24 },\n  ]\n}",
			[]wantDiag{{4, 14, `10.1.0.0/16 overlaps the pool 10.0.0.0/8 at test.hcl:3:14`}}},
		{"variables are not allowed", `data_dir = var.dir`,
			[]wantDiag{{1, 12, `Variables not allowed`}}},
		{"syntax error", "api {\n  socket = \n}",
			[]wantDiag{{2, 12, `Invalid expression`}}},
		{"syntax error in a pool", "ipam {\n  default_pools = [\n    { base = , size = 24 },\n  ]\n}",
			[]wantDiag{{3, 14, `Invalid expression`}}},
		{"null pool size", "ipam {\n  default_pools = [\n    { base = \"10.0.0.0/8\", size = null },\n  ]\n}",
			[]wantDiag{{3, 35, `The pool's size must not be null`}}},
		{"problems inside a duplicate block", "driver \"none\" {}\ndriver \"none\" {\n  comand = \"/x\"\n}\nlog {}\nlog {\n  levl = \"debug\"\n}",
			[]wantDiag{
				{2, 1, `already defined at test.hcl:1:1`},
				{3, 3, `Did you mean "command"?`},
				{6, 1, `A log block was already defined at test.hcl:5:1`},
				{7, 3, `Did you mean "level"?`},
			}},
		{"every problem, not just the first", "plugn_dir = \"/x\"\nlog {\n  level = \"loud\"\n}\ndriver \"none\" {}\ndriver \"none\" {}",
			[]wantDiag{
				{1, 1, `Did you mean "plugin_dir"?`},
				{3, 11, `"loud" is not a log level`},
				{6, 1, `already defined at test.hcl:5:1`},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, diags := Parse([]byte(tt.src), "test.hcl")
			if c == nil || c.Files()["test.hcl"] == nil {
				t.Error("Parse returned no Config or no source to quote")
			}
			requireDiags(t, "test.hcl", diags, tt.want...)
		})
	}
}

func TestAdvertiseAddr(t *testing.T) {
	for src, want := range map[string]string{
		``:                                   "",
		`advertise_addr = "192.0.2.10"`:      "192.0.2.10",
		`advertise_addr = "::ffff:10.0.0.1"`: "10.0.0.1",
		`advertise_addr = "2001:db8::1"`:     "2001:db8::1",
		`advertise_addr = "eth1"`:            "eth1",
	} {
		c, diags := Parse([]byte(src), "test.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s: %s", src, render(diags))
		}
		if c.AdvertiseAddr != want {
			t.Errorf("%s: AdvertiseAddr = %q, want %q", src, c.AdvertiseAddr, want)
		}
	}
}

func TestHostTTL(t *testing.T) {
	for src, want := range map[string]time.Duration{
		``:                 DefaultHostTTL,
		`host_ttl = "20s"`: 20 * time.Second,
		`host_ttl = "2m"`:  2 * time.Minute,
	} {
		c, diags := Parse([]byte(src), "test.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s: %s", src, render(diags))
		}
		if c.HostTTL != want {
			t.Errorf("%s: HostTTL = %s, want %s", src, c.HostTTL, want)
		}
	}
}

func TestPluginRestartWait(t *testing.T) {
	for src, want := range map[string]time.Duration{
		``:                            DefaultPluginRestartWait,
		`plugin_restart_wait = "2m"`:  2 * time.Minute,
		`plugin_restart_wait = "1s"`:  time.Second,
		`plugin_restart_wait = "10m"`: MaxPluginRestartWait,
	} {
		c, diags := Parse([]byte(src), "test.hcl")
		if diags.HasErrors() {
			t.Fatalf("%s: %s", src, render(diags))
		}
		if c.PluginRestartWait != want {
			t.Errorf("%s: PluginRestartWait = %s, want %s", src, c.PluginRestartWait, want)
		}
	}
}

// An overlay driver without advertise_addr is a warning at its block:
// the file is usable, but overlay networks will be refused.
func TestOverlayWithoutAdvertiseAddr(t *testing.T) {
	_, diags := Parse([]byte("\ndriver \"overlay\" {}\n"), "test.hcl")
	if diags.HasErrors() || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning ||
		diags[0].Subject.Start.Line != 2 || !strings.Contains(diags[0].Detail, "advertise_addr") {
		t.Fatalf("diagnostics = %s, want one warning at line 2 naming advertise_addr", render(diags))
	}
	if _, diags := Parse([]byte("advertise_addr = \"eth1\"\ndriver \"overlay\" {}\n"), "test.hcl"); len(diags) != 0 {
		t.Fatalf("diagnostics = %s, want none", render(diags))
	}
}

func TestParseJSON(t *testing.T) {
	src := `{
  "plugin_dir": "/x",
  "driver": {"none": {}},
  "log": {"levle": "debug"}
}`
	c, diags := Parse([]byte(src), "agent.hcl.json")
	requireDiags(t, "agent.hcl.json", diags, wantDiag{4, 11, `Did you mean "level"?`})
	if c.PluginDir != "/x" || len(c.Drivers) != 1 || c.Drivers[0].Name != "none" {
		t.Errorf("JSON config: plugin_dir %q, drivers %v", c.PluginDir, c.Drivers)
	}
}

func TestLoadMissingFile(t *testing.T) {
	name := filepath.Join(t.TempDir(), "nope.hcl")
	c, diags := Load(name)
	if len(diags) != 1 || diags[0].Subject == nil || diags[0].Subject.Filename != name ||
		!strings.Contains(diags[0].Detail, "no such file") {
		t.Fatalf("Load of a missing file: %s", render(diags))
	}
	if c == nil {
		t.Fatal("Load returned no Config")
	}
	var b bytes.Buffer
	if err := FormatDiagnostics(&b, c.Files(), diags); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), name+": error: Failed to read config file; open ") {
		t.Errorf("formatted: %q", b.String())
	}
}

// TestExample loads examples/config.hcl, which the README tells operators
// to start from.
func TestExample(t *testing.T) {
	name := filepath.Join("..", "..", "examples", "config.hcl")
	c, diags := Load(name)
	requireDiags(t, name, diags)
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	if c.PluginDir != bin {
		t.Errorf("example plugin_dir = %q, want the checkout's %q", c.PluginDir, bin)
	}
	var drivers []string
	for _, d := range c.Drivers {
		drivers = append(drivers, d.Name)
	}
	if c.Store.Name != "bolt" || c.Store.Implicit || strings.Join(drivers, ",") != "none,bridge,host" {
		t.Errorf("example loads store %s and drivers %v, want bolt with none, bridge and host", c.Store, drivers)
	}
	// plugins/none declares an empty config struct.
	if _, diags := DecodePluginConfig(c.Drivers[0], sdk.MustSchemaFor(struct{}{})); diags.HasErrors() {
		t.Errorf("example's none driver config: %s", render(diags))
	}
	if js, diags := DecodePluginConfig(c.Store, sdk.MustSchemaFor(boltConfig{})); diags.HasErrors() || string(js) != `{"path":"/tmp/sandnet/store.db"}` {
		t.Errorf("example's bolt config = %s: %s", js, render(diags))
	}
}

func TestFormatDiagnostics(t *testing.T) {
	src := "data_dir = \"/d\"\n\tplugn_dir = \"/x\"\nlog {\n  level = \"loud\"\n}\n"
	c, diags := Parse([]byte(src), "f.hcl")
	diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: "No position"})
	var b bytes.Buffer
	if err := FormatDiagnostics(&b, c.Files(), diags); err != nil {
		t.Fatal(err)
	}
	want := `f.hcl:2:2: error: Unsupported argument; An argument named "plugn_dir" is not expected here. Did you mean "plugin_dir"?
    	plugn_dir = "/x"
    	^^^^^^^^^
f.hcl:4:11: error: Invalid log level; "loud" is not a log level; use one of trace, debug, info, warn, error.
      level = "loud"
              ^^^^^^
warning: No position
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestCheckBinaries(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("sandnet-store-bolt", 0o755)
	write("sandnet-driver-none", 0o644)
	custom := write("custom-driver", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "sandnet-driver-host"), 0o755); err != nil {
		t.Fatal(err)
	}

	src := "plugin_dir = \"" + dir + "\"\n" + // 1
		"store \"bolt\" {}\n" + // 2
		"driver \"none\" {}\n" + // 3
		"driver \"bridge\" {}\n" + // 4
		"driver \"host\" {}\n" + // 5
		"driver \"custom\" {\n  command = \"" + custom + "\"\n}\n" + // 6-8
		"driver \"gone\" {\n  command = \"" + dir + "/gone\"\n}\n" // 9-11
	c, diags := Parse([]byte(src), "b.hcl")
	requireDiags(t, "b.hcl", diags)
	requireDiags(t, "b.hcl", CheckBinaries(c),
		wantDiag{3, 1, "plugin binary " + dir + "/sandnet-driver-none is not executable"},
		wantDiag{4, 1, "plugin binary " + dir + "/sandnet-driver-bridge not found: build it with make, or set command"},
		wantDiag{5, 1, "sandnet-driver-host is not a regular file"},
		wantDiag{9, 1, "plugin binary " + dir + "/gone not found: check the block's command"},
	)

	// The default store is checked too, at the top of the file.
	c, diags = Parse([]byte("\nplugin_dir = \""+t.TempDir()+"\"\n"), "d.hcl")
	requireDiags(t, "d.hcl", diags)
	requireDiags(t, "d.hcl", CheckBinaries(c),
		wantDiag{1, 1, `sandnet-store-bolt not found: build it with make, or set plugin_dir (the config has no store block, so the default store "bolt" is used)`})
}

// bridgeConfig stands in for a driver's config struct.
type bridgeConfig struct {
	DefaultBridge string   `hcl:"default_bridge" doc:"name of the default bridge"`
	MTU           int      `hcl:"mtu,optional"`
	Pools         []string `hcl:"pools,optional"`
}

func TestDecodePluginConfig(t *testing.T) {
	schema := sdk.MustSchemaFor(bridgeConfig{})
	tests := []struct {
		name, src string
		schema    any // nil: bridgeConfig
		json      string
		want      []wantDiag
	}{
		{name: "valid", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"sandnet0\"\n    mtu = \"1500\"\n  }\n}",
			json: `{"default_bridge":"sandnet0","mtu":1500,"pools":null}`},
		{name: "missing required attribute", src: "driver \"bridge\" {\n  config {\n    mtu = 1500\n  }\n}",
			want: []wantDiag{{2, 3, `The driver "bridge" plugin requires the argument "default_bridge" in its config block, but it is not set. default_bridge: name of the default bridge.`}}},
		{name: "required attribute set to null", src: "driver \"bridge\" {\n  config {\n    default_bridge = null\n  }\n}",
			want: []wantDiag{{2, 3, `requires the argument "default_bridge"`}}},
		{name: "missing config block", src: "\n\ndriver \"bridge\" {}",
			want: []wantDiag{{3, 1, `requires the argument "default_bridge"`}}},
		{name: "wrong type", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"b\"\n    mtu            = \"big\"\n  }\n}",
			want: []wantDiag{{4, 22, `Inappropriate value for attribute "mtu": a number is required`}}},
		{name: "wrong element type", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"b\"\n    pools = [[1]]\n  }\n}",
			want: []wantDiag{{4, 13, `"pools": element 0: string required`}}},
		{name: "unknown attribute with suggestion", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"b\"\n    mtuu = 1500\n  }\n}",
			want: []wantDiag{{4, 5, `An argument named "mtuu" is not expected here. Did you mean "mtu"?`}}},
		{name: "unknown attribute far from any", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"b\"\n    colour = \"red\"\n  }\n}",
			want: []wantDiag{{4, 5, `The driver "bridge" plugin accepts: default_bridge, mtu, pools.`}}},
		{name: "unknown block", src: "driver \"bridge\" {\n  config {\n    default_bridge = \"b\"\n    pool {}\n  }\n}",
			want: []wantDiag{{4, 5, `Blocks of type "pool" are not expected here. The driver "bridge" plugin's config takes only arguments (name = value). Did you mean "pools"?`}}},
		{name: "plugin without settings", schema: struct{}{}, src: "driver \"none\" {\n  config {\n    mode = 1\n  }\n}",
			want: []wantDiag{{3, 5, `The driver "none" plugin takes no settings.`}}},
		{name: "plugin without settings, empty config", schema: struct{}{}, src: "driver \"none\" {\n  config {}\n}", json: `{}`},
		{name: "no config block, nothing required", schema: struct {
			MTU int `hcl:"mtu,optional"`
		}{}, src: "driver \"x\" {}", json: `{"mtu":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, diags := Parse([]byte(tt.src), "p.hcl")
			requireDiags(t, "p.hcl", diags)
			s := schema
			if tt.schema != nil {
				s = sdk.MustSchemaFor(tt.schema)
			}
			js, diags := DecodePluginConfig(c.Drivers[0], s)
			requireDiags(t, "p.hcl", diags, tt.want...)
			if string(js) != tt.json {
				t.Errorf("JSON = %s, want %s", js, tt.json)
			}
		})
	}
}

// TestDecodePluginConfigRoundTrip checks that what the host sends is what
// sdk.DecodeConfig, the plugin side, reads.
func TestDecodePluginConfigRoundTrip(t *testing.T) {
	src := "driver \"bridge\" {\n  config {\n    default_bridge = \"sandnet0\"\n    pools = [\"a\", \"b\"]\n  }\n}"
	c, diags := Parse([]byte(src), "r.hcl")
	requireDiags(t, "r.hcl", diags)
	js, diags := DecodePluginConfig(c.Drivers[0], sdk.MustSchemaFor(bridgeConfig{}))
	requireDiags(t, "r.hcl", diags)
	got := bridgeConfig{MTU: 1500} // a plugin's default survives an unset attribute
	if err := sdk.DecodeConfig(js, &got); err != nil {
		t.Fatal(err)
	}
	want := bridgeConfig{DefaultBridge: "sandnet0", MTU: 1500, Pools: []string{"a", "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plugin decoded %+v, want %+v", got, want)
	}
}

func TestDidYouMean(t *testing.T) {
	for _, tt := range []struct{ given, want string }{
		{"inf", ` Did you mean "info"?`},
		{"warning", ` Did you mean "warn"?`},
		{"dbg", ` Did you mean "debug"?`},
		{"loud", ``},
		{"", ``},
	} {
		if got := didYouMean(tt.given, logLevels); got != tt.want {
			t.Errorf("didYouMean(%q) = %q, want %q", tt.given, got, tt.want)
		}
	}
}

func TestSandboxBlock(t *testing.T) {
	src := "sandbox {\n  netns_dir = \"ns\"\n  stub_grace_period = \"5s\"\n}\n"
	c, diags := Parse([]byte(src), "/etc/sandnet/x.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if c.Sandbox.NetnsDir != "/etc/sandnet/ns" || c.Sandbox.StubGracePeriod != 5*time.Second {
		t.Fatalf("sandbox = %+v", c.Sandbox)
	}
	// The files go next to the namespaces unless told otherwise.
	if c.Sandbox.FilesDir != "/etc/sandnet/sandboxes" {
		t.Fatalf("files_dir = %q, want /etc/sandnet/sandboxes", c.Sandbox.FilesDir)
	}
	c, diags = Parse([]byte("sandbox {\n  files_dir = \"f\"\n  netns_dir = \"/run/x\"\n}\n"), "/etc/sandnet/x.hcl")
	if diags.HasErrors() || c.Sandbox.FilesDir != "/etc/sandnet/f" || c.Sandbox.NetnsDir != "/run/x" {
		t.Fatalf("files_dir given: %+v, %v", c.Sandbox, diags)
	}
	_, diags = Parse([]byte("sandbox {\n  stub_grace_period = \"soon\"\n}\n"), "x.hcl")
	if len(diags) != 1 || diags[0].Subject.Start.Line != 2 || diags[0].Subject.Start.Column != 23 {
		t.Fatalf("bad duration diagnostics = %v", diags)
	}
}
