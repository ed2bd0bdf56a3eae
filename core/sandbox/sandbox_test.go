package sandbox

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseResolvConf(t *testing.T) {
	rc := ParseResolvConf([]byte(`# comment
nameserver 127.0.0.53
nameserver 10.0.0.2 # trailing
domain ignored.example
search a.example b.example
options ndots:2 timeout:1
options rotate
sortlist 10.0.0.0
nameserver bogus
`))
	if got := rc.Nameservers; len(got) != 2 || got[0].String() != "127.0.0.53" || got[1].String() != "10.0.0.2" {
		t.Fatalf("nameservers = %v", got)
	}
	if strings.Join(rc.Search, " ") != "a.example b.example" {
		t.Fatalf("search = %v (the last of domain/search wins)", rc.Search)
	}
	if strings.Join(rc.Options, " ") != "ndots:2 timeout:1 rotate" {
		t.Fatalf("options = %v", rc.Options)
	}
}

func TestResolutionFiles(t *testing.T) {
	dir := t.TempDir()
	host := ResolvConf{
		Nameservers: []netip.Addr{netip.MustParseAddr("127.0.0.53"), netip.MustParseAddr("192.0.2.53")},
		Search:      []string{"corp.example"},
		Options:     []string{"ndots:1"},
	}
	sb := New("id", "c1", Options{Hostname: "web", DomainName: "corp.example", ExtraHosts: []HostEntry{{Name: "db", IP: netip.MustParseAddr("192.0.2.9")}}}, dir, host)
	sb.Restore(Endpoint{ID: "e1", NetworkName: "red", Addr: netip.MustParsePrefix("10.1.0.2/24")})
	if err := sb.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	rc, _ := os.ReadFile(filepath.Join(dir, "resolv.conf"))
	if strings.Contains(string(rc), "127.0.0.53") || !strings.Contains(string(rc), "nameserver 192.0.2.53") ||
		!strings.Contains(string(rc), "search corp.example") || !strings.Contains(string(rc), "options ndots:1") {
		t.Fatalf("resolv.conf (the host's loopback server cannot be reached from a sandbox):\n%s", rc)
	}
	hosts, _ := os.ReadFile(filepath.Join(dir, "hosts"))
	for _, want := range []string{"127.0.0.1\tlocalhost", "10.1.0.2\tweb.corp.example web", "192.0.2.9\tdb"} {
		if !strings.Contains(string(hosts), want) {
			t.Fatalf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	// host-gateway: the gateway of the default routes, following the
	// endpoints; no line while there is none.
	gw := New("id3", "c3", Options{ExtraHosts: []HostEntry{{Name: "host.sandnet.internal", HostGateway: true}}}, t.TempDir(), host)
	if err := gw.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	if h, _ := os.ReadFile(gw.HostsPath()); strings.Contains(string(h), "host.sandnet.internal") {
		t.Fatalf("host-gateway line with no gateway yet:\n%s", h)
	}
	gw.Restore(Endpoint{ID: "e1", IfName: "eth0", NetworkName: "red", Addr: netip.MustParsePrefix("10.1.0.2/24"), Gateway: netip.MustParseAddr("10.1.0.1"),
		AddrV6: netip.MustParsePrefix("fd00::2/64"), GatewayV6: netip.MustParseAddr("fd00::1")})
	if err := gw.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	if h, _ := os.ReadFile(gw.HostsPath()); !strings.Contains(string(h), "10.1.0.1\thost.sandnet.internal\nfd00::1\thost.sandnet.internal\n") {
		t.Fatalf("hosts lacks the host-gateway lines for 10.1.0.1 and fd00::1:\n%s", h)
	}
	hostMode := New("id2", "c2", Options{HostMode: true}, t.TempDir(), host)
	if rc := hostMode.resolvConfLocked(); len(rc.Nameservers) != 2 {
		t.Fatalf("host-mode resolv.conf nameservers = %v, want the host's own", rc.Nameservers)
	}
}

func TestEndpointOrder(t *testing.T) {
	sb := New("id", "c1", Options{}, t.TempDir(), ResolvConf{})
	sb.Restore(Endpoint{ID: "internal", NetworkName: "a", Internal: true})
	sb.Restore(Endpoint{ID: "b", NetworkName: "b"})
	sb.Restore(Endpoint{ID: "prio", NetworkName: "z", Priority: 5})
	sb.Restore(Endpoint{ID: "a2", NetworkName: "a2"})
	var got []string
	for _, ep := range sb.Endpoints() {
		got = append(got, ep.ID)
	}
	if strings.Join(got, ",") != "prio,a2,b,internal" {
		t.Fatalf("order = %v, want priority first, then networks with a way out by name, internal last", got)
	}
}

// TestFilesUpdatedInPlace: a container bind-mounts its resolution files,
// so it holds their inodes: an update must reach the same inode. And a
// file this sandbox wrote is not written again while its content stays.
func TestFilesUpdatedInPlace(t *testing.T) {
	dir := t.TempDir()
	sb := New("id", "c1", Options{Hostname: "web"}, dir, ResolvConf{})
	if err := sb.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	held, err := os.Open(sb.HostsPath()) // as a bind mount holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before, _ := os.Stat(sb.HostsPath())
	sb.Restore(Endpoint{ID: "e1", NetworkName: "red", Addr: netip.MustParsePrefix("10.1.0.2/24")})
	if err := sb.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(held)
	if err != nil || !strings.Contains(string(b), "10.1.0.2\tweb") {
		t.Fatalf("the held hosts file after the update: %q, %v; want the new address", b, err)
	}
	if fi, _ := os.Stat(sb.HostsPath()); !os.SameFile(before, fi) || fi.Mode().Perm() != 0o644 {
		t.Fatalf("hosts replaced or mode %v: want the same file, 0644", fi.Mode())
	}
	// A shorter content leaves nothing of the longer one.
	sb.Forget("e1")
	if err := sb.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(sb.HostsPath()); strings.Contains(string(b), "10.1.0.2") {
		t.Fatalf("hosts after the endpoint went:\n%s", b)
	}
	// Unchanged content is not written again.
	mtime := func() time.Time { fi, _ := os.Stat(sb.ResolvConfPath()); return fi.ModTime() }
	old := time.Unix(1, 0)
	if err := os.Chtimes(sb.ResolvConfPath(), old, old); err != nil {
		t.Fatal(err)
	}
	if err := sb.WriteFiles(); err != nil {
		t.Fatal(err)
	}
	if !mtime().Equal(old) {
		t.Fatal("resolv.conf written again with unchanged content")
	}
}

// TestEmbeddedResolvConfOptions: with the embedded resolver, a
// container's own ndots wins, the host's ndots is dropped, and ndots:0 is
// added when the container gives none; without it the options are the
// host's or the container's as they are.
func TestEmbeddedResolvConfOptions(t *testing.T) {
	host := ResolvConf{Options: []string{"ndots:5", "timeout:1", "rotate"}}
	for _, tt := range []struct {
		name     string
		own      []string
		embedded bool
		want     string
	}{
		{"host's options, its ndots dropped", nil, true, "timeout:1 rotate ndots:0"},
		{"own ndots wins", []string{"ndots:3", "edns0"}, true, "ndots:3 edns0"},
		{"own options without ndots", []string{"edns0"}, true, "edns0 ndots:0"},
		{"own ndots:0 kept once", []string{"ndots:0"}, true, "ndots:0"},
		{"no embedded resolver: the host's", nil, false, "ndots:5 timeout:1 rotate"},
		{"no embedded resolver: own", []string{"ndots:2"}, false, "ndots:2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sb := New("id", "c1", Options{DNSOptions: tt.own}, t.TempDir(), host)
			sb.SetEmbeddedDNS(tt.embedded)
			if got := strings.Join(sb.resolvConfLocked().Options, " "); got != tt.want {
				t.Fatalf("options %q, want %q", got, tt.want)
			}
		})
	}
	if got := strings.Join(host.Options, " "); got != "ndots:5 timeout:1 rotate" {
		t.Fatalf("the host's options were changed: %q", got)
	}
}
