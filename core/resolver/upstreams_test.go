package resolver

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/config"
)

func TestHostUpstreams(t *testing.T) {
	tests := []struct {
		name     string
		conf     *string // nil: no file
		resolved *string // systemd-resolved's list; nil: no file
		want     []string
	}{
		{name: "nameservers in order", conf: ptr("search corp\nnameserver 10.0.0.1\nnameserver 2001:db8::1\noptions ndots:2\n"),
			want: []string{"10.0.0.1:53", "[2001:db8::1]:53"}},
		{name: "zone kept", conf: ptr("nameserver fe80::1%eth0\n"), want: []string{"[fe80::1%eth0]:53"}},
		{name: "systemd-resolved stub followed", conf: ptr("nameserver 127.0.0.53\noptions edns0 trust-ad\n"),
			resolved: ptr("nameserver 192.0.2.10\nnameserver 192.0.2.11\n"), want: []string{"192.0.2.10:53", "192.0.2.11:53"}},
		{name: "stub kept without resolved's list", conf: ptr("nameserver 127.0.0.53\n"), want: []string{"127.0.0.53:53"}},
		{name: "stub kept when resolved's list is empty", conf: ptr("nameserver 127.0.0.53\n"), resolved: ptr("# nothing\n"),
			want: []string{"127.0.0.53:53"}},
		{name: "stub among others kept", conf: ptr("nameserver 127.0.0.53\nnameserver 10.0.0.1\n"),
			resolved: ptr("nameserver 192.0.2.10\n"), want: []string{"127.0.0.53:53", "10.0.0.1:53"}},
		{name: "host loopback server kept", conf: ptr("nameserver 127.0.0.1\n"), want: []string{"127.0.0.1:53"}},
		{name: "no nameserver: glibc's 127.0.0.1", conf: ptr("search corp\n"), want: []string{"127.0.0.1:53"}},
		{name: "no file: glibc's 127.0.0.1", want: []string{"127.0.0.1:53"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf, resolved := filepath.Join(dir, "resolv.conf"), filepath.Join(dir, "resolved.conf")
			writeIf(t, conf, tt.conf)
			writeIf(t, resolved, tt.resolved)
			aps, err := hostUpstreams(conf, resolved)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ap := range aps {
				got = append(got, ap.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("upstreams %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUpstreamsFromConfigOrFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	writeIf(t, conf, ptr("nameserver 10.0.0.1\n"))

	static := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.2:5353")}
	r := New(Config{Upstreams: static, HostResolvConf: conf}, testBackend())
	if got := upstreamList(r); !slices.Equal(got, []string{"127.0.0.2:5353"}) {
		t.Errorf("with Config.Upstreams: %v", got)
	}

	r = New(Config{HostResolvConf: conf}, testBackend())
	if got := upstreamList(r); !slices.Equal(got, []string{"10.0.0.1:53"}) {
		t.Errorf("from resolv.conf: %v", got)
	}
	// Start reads the file again (it calls loadUpstreams).
	writeIf(t, conf, ptr("nameserver 10.0.0.2\n"))
	r.loadUpstreams()
	if got := upstreamList(r); !slices.Equal(got, []string{"10.0.0.2:53"}) {
		t.Errorf("after the file changed: %v", got)
	}
	// An unreadable file keeps what was there.
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	r.loadUpstreams()
	if got := upstreamList(r); !slices.Equal(got, []string{"10.0.0.2:53"}) {
		t.Errorf("after the file became unreadable: %v", got)
	}
}

func upstreamList(r *Resolver) []string {
	var out []string
	for _, u := range r.upstreams.Load().list {
		out = append(out, u.ap.String())
	}
	return out
}

func ptr(s string) *string { return &s }

func writeIf(t *testing.T, path string, content *string) {
	t.Helper()
	if content == nil {
		return
	}
	if err := os.WriteFile(path, []byte(*content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// SetConfigured replaces the config's upstreams a resolver falls back on:
// at once when it forwards to them (or to the host's file), and not while
// SetUpstreams's list (its networks' servers) stands, until that list is
// emptied.
func TestSetConfigured(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	writeIf(t, conf, ptr("nameserver 10.0.0.1\n"))
	aps := func(s ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, a := range s {
			out = append(out, netip.MustParseAddrPort(a))
		}
		return out
	}
	r := New(Config{HostResolvConf: conf}, testBackend())
	r.SetConfigured(aps("127.0.0.2:53"))
	if got := upstreamList(r); !slices.Equal(got, []string{"127.0.0.2:53"}) {
		t.Fatalf("forwarding to the host's file, then given upstreams: %v", got)
	}
	r.SetUpstreams(aps("10.9.0.1:53"))
	r.SetConfigured(aps("127.0.0.3:53"))
	if got := upstreamList(r); !slices.Equal(got, []string{"10.9.0.1:53"}) {
		t.Fatalf("the networks' servers must stand: %v", got)
	}
	r.SetUpstreams(nil)
	if got := upstreamList(r); !slices.Equal(got, []string{"127.0.0.3:53"}) {
		t.Fatalf("the networks' servers gone, the config's latest: %v", got)
	}
	r.SetConfigured(nil)
	if got := upstreamList(r); !slices.Equal(got, []string{"10.0.0.1:53"}) {
		t.Fatalf("no upstreams configured: the host's file: %v", got)
	}
}

// SetLimits changes the in-flight bound and the timeout of a resolver
// for what it forwards next.
func TestSetLimits(t *testing.T) {
	r := New(Config{MaxInflight: 1, Timeout: time.Second, HostResolvConf: "/nonexistent"}, testBackend())
	if !r.acquire() || r.acquire() {
		t.Fatal("with max_inflight 1: want one slot, then none")
	}
	r.SetLimits(3*time.Second, 2)
	if !r.acquire() || r.acquire() {
		t.Fatal("with max_inflight 2 and one slot held: want one more slot, then none")
	}
	if got := time.Duration(r.timeout.Load()); got != 3*time.Second {
		t.Fatalf("timeout %v, want 3s", got)
	}
	r.SetLimits(0, 0)
	if got := r.maxInflight.Load(); got != int64(config.DefaultMaxInflight) {
		t.Fatalf("max_inflight 0: %d, want the default %d", got, config.DefaultMaxInflight)
	}
}
