package resolver

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// newSandbox makes a namespace like a sandbox's (lo up, nothing else),
// destroyed when the test ends.
func newSandbox(t *testing.T) (*osl.Namespace, string) {
	t.Helper()
	nstest.RequireRoot(t)
	key := filepath.Join(t.TempDir(), "sandbox")
	ns, err := osl.NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Destroy() })
	return ns, key
}

// nsExchange asks addr from a socket opened inside ns.
func nsExchange(t *testing.T, ns *osl.Namespace, network string, addr netip.AddrPort, q *dns.Msg) (*dns.Msg, error) {
	t.Helper()
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout(network, addr.String(), 2*time.Second)
		return err
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m, _, err := c.ExchangeWithConn(q, &dns.Conn{Conn: conn})
	return m, err
}

// bindable reports whether Address can be bound over UDP and TCP in the
// current thread's namespace.
func bindable() error {
	u, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(Address()))
	if err != nil {
		return err
	}
	u.Close()
	l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(Address()))
	if err != nil {
		return err
	}
	return l.Close()
}

// TestStartInNamespace runs the resolver in a sandbox namespace with an
// upstream on the loopback of the namespace the test runs in (the "host"):
// forwarded answers prove the upstream sockets are opened outside the
// sandbox, whose own loopback cannot reach that upstream.
func TestStartInNamespace(t *testing.T) {
	ns, key := newSandbox(t)
	up := startUpstream(t, "127.0.0.1", answerA)
	r := New(Config{Upstreams: []netip.AddrPort{up.addr}, HostResolvConf: "/nonexistent"}, testBackend())
	t.Cleanup(func() { r.Stop() })
	if err := r.Start(ns); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(ns); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start: %v, want ErrRunning", err)
	}

	// The sockets are in the sandbox, not here.
	if err := bindable(); err != nil {
		t.Fatalf("%s taken in the test's own namespace: %v", Address(), err)
	}
	// The sandbox cannot reach the upstream itself.
	if m, err := nsExchange(t, ns, "udp", up.addr, query("example.com.", dns.TypeA)); err == nil {
		t.Fatalf("upstream on the host's loopback answered from inside the sandbox: %v", m)
	}

	for _, network := range []string{"udp", "tcp"} {
		m, err := nsExchange(t, ns, network, Address(), query("web.", dns.TypeA))
		if err != nil {
			t.Fatalf("%s: local name: %v", network, err)
		}
		if got := answerAddrs(m); len(got) != 3 || !m.Authoritative {
			t.Errorf("%s: local answer %v", network, m)
		}
		m, err = nsExchange(t, ns, network, Address(), query("example.com.", dns.TypeA))
		if err != nil {
			t.Fatalf("%s: forwarded name: %v", network, err)
		}
		if got := answerAddrs(m); !slices.Equal(got, []string{"192.0.2.1"}) {
			t.Errorf("%s: forwarded answer %v", network, m)
		}
	}
	if up.queries.Load() != 2 || up.udp.Load() != 1 {
		t.Errorf("upstream got %d queries, %d over UDP; want 2, 1", up.queries.Load(), up.udp.Load())
	}

	t.Run("dig", func(t *testing.T) { digInSandbox(t, key) })

	// Stop releases both sockets inside the sandbox...
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(bindable); err != nil {
		t.Fatalf("%s still taken in the sandbox after Stop: %v", Address(), err)
	}
	if m, err := nsExchange(t, ns, "udp", Address(), query("web.", dns.TypeA)); err == nil {
		t.Fatalf("answered after Stop: %v", m)
	}
	// ...and Start binds them again.
	if err := r.Start(ns); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	for _, network := range []string{"udp", "tcp"} {
		if m, err := nsExchange(t, ns, network, Address(), query("db.", dns.TypeA)); err != nil || len(m.Answer) != 1 {
			t.Errorf("%s after restart: %v, %v", network, m, err)
		}
	}
}

// digInSandbox asks the resolver with dig(1) run inside the sandbox.
func digInSandbox(t *testing.T, key string) {
	for _, tool := range []string{"dig", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dig := func(args ...string) []string {
		t.Helper()
		args = append([]string{"--net=" + key, "dig", "@" + Address().Addr().String(), "+short", "+time=2", "+tries=1"}, args...)
		out, err := exec.Command("nsenter", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		var lines []string
		for l := range strings.Lines(string(out)) {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, ";") {
				lines = append(lines, l)
			}
		}
		slices.Sort(lines)
		return lines
	}
	web := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"web", "A"}, web},
		{[]string{"+tcp", "WEB.net", "A"}, web},
		{[]string{"web", "AAAA"}, []string{"fd00::2"}},
		{[]string{"db", "AAAA"}, nil},
		{[]string{"-x", "10.0.0.2"}, []string{"web.net."}},
		{[]string{"-x", "fd00::2"}, []string{"web.net."}},
		{[]string{"example.com", "A"}, []string{"192.0.2.1"}},
		{[]string{"+tcp", "example.com", "A"}, []string{"192.0.2.1"}},
	}
	for _, tt := range tests {
		if got := dig(tt.args...); !slices.Equal(got, tt.want) {
			t.Errorf("dig %s: %v, want %v", strings.Join(tt.args, " "), got, tt.want)
		}
	}
	// 40 addresses do not fit 512 bytes: dig gets TC over UDP and asks
	// again over TCP by itself.
	if got := dig("+noedns", "many", "A"); len(got) != 40 {
		t.Errorf("dig +noedns many: %d addresses, want 40 after the TCP retry", len(got))
	}
}

// TestStartHostResolvConf: with no configured upstreams, a loopback
// nameserver of the host's resolv.conf (127.0.0.1:53 in the test's
// namespace) is asked from the host's namespace.
func TestStartHostResolvConf(t *testing.T) {
	ns, _ := newSandbox(t)
	up := startUpstream(t, "127.0.0.1:53", answerA)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example\nnameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Config{HostResolvConf: conf}, testBackend())
	t.Cleanup(func() { r.Stop() })
	if err := r.Start(ns); err != nil {
		t.Fatal(err)
	}
	m, err := nsExchange(t, ns, "udp", Address(), query("example.com.", dns.TypeA))
	if err != nil {
		t.Fatal(err)
	}
	if got := answerAddrs(m); !slices.Equal(got, []string{"192.0.2.1"}) || up.queries.Load() != 1 {
		t.Errorf("answer %v, upstream asked %d times", m, up.queries.Load())
	}
}

// TestStartFailsCleanly: a second resolver in the same sandbox cannot
// bind, says so, and leaves the first one serving.
func TestStartFailsCleanly(t *testing.T) {
	ns, _ := newSandbox(t)
	r1 := newTestResolver(t, Config{}, testBackend())
	if err := r1.Start(ns); err != nil {
		t.Fatal(err)
	}
	r2 := newTestResolver(t, Config{}, testBackend())
	if err := r2.Start(ns); err == nil {
		t.Fatal("second resolver bound the same address")
	}
	if m, err := nsExchange(t, ns, "tcp", Address(), query("web.", dns.TypeA)); err != nil || len(m.Answer) != 3 {
		t.Errorf("first resolver after the failed Start: %v, %v", m, err)
	}
	if err := r2.Stop(); err != nil {
		t.Errorf("Stop of a resolver that never started: %v", err)
	}
}

// TestExtraAddrs: a resolver given other addresses answers on each of
// them, over UDP and TCP, as on Address; an address dropped from the set
// stops answering and is free to bind again; one that cannot be bound is
// named in the error while the others serve; Stop closes them all.
func TestExtraAddrs(t *testing.T) {
	ns, _ := newSandbox(t)
	r := newTestResolver(t, Config{HostResolvConf: "/nonexistent"}, testBackend())
	a12, a13 := netip.MustParseAddr("127.0.0.12"), netip.MustParseAddr("127.0.0.13")
	if err := r.SetExtraAddrs(ns, []netip.Addr{a12}); err != nil || len(r.ExtraAddrs()) != 0 {
		t.Fatalf("SetExtraAddrs on a stopped resolver: %v, serving %v; want nothing served", err, r.ExtraAddrs())
	}
	if err := r.Start(ns); err != nil {
		t.Fatal(err)
	}
	answers := func(a netip.Addr) bool {
		for _, network := range []string{"udp", "tcp"} {
			m, err := nsExchange(t, ns, network, netip.AddrPortFrom(a, 53), query("web.", dns.TypeA))
			if err != nil || len(m.Answer) != 3 {
				return false
			}
		}
		return true
	}
	// Address stays in the set whether or not it is named.
	if err := r.SetExtraAddrs(ns, []netip.Addr{Address().Addr(), a12, a13}); err != nil {
		t.Fatal(err)
	}
	if got := r.ExtraAddrs(); !slices.Equal(got, []netip.Addr{a12, a13}) {
		t.Fatalf("ExtraAddrs %v, want [%s %s]", got, a12, a13)
	}
	for _, a := range []netip.Addr{Address().Addr(), a12, a13} {
		if !answers(a) {
			t.Fatalf("no answer on %s", a)
		}
	}

	if err := r.SetExtraAddrs(ns, []netip.Addr{a13}); err != nil {
		t.Fatal(err)
	}
	if answers(a12) {
		t.Fatalf("%s answers after it left the set", a12)
	}
	if !answers(a13) || !answers(Address().Addr()) {
		t.Fatalf("%s or %s stopped answering when %s left the set", a13, Address(), a12)
	}
	// 127.0.0.12:53 is free again; taken by another program, it cannot
	// be served and the error says so.
	var held *net.UDPConn
	if err := ns.Do(func() (err error) {
		held, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a12, 53)))
		return err
	}); err != nil {
		t.Fatalf("binding %s after it left the set: %v", a12, err)
	}
	defer held.Close()
	if err := r.SetExtraAddrs(ns, []netip.Addr{a12, a13}); err == nil || !strings.Contains(err.Error(), a12.String()) {
		t.Fatalf("SetExtraAddrs with %s taken: %v, want an error naming it", a12, err)
	}
	if got := r.ExtraAddrs(); !slices.Equal(got, []netip.Addr{a13}) {
		t.Fatalf("ExtraAddrs %v after a failed bind, want [%s]", got, a13)
	}

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if answers(a13) || len(r.ExtraAddrs()) != 0 {
		t.Fatalf("%s answers after Stop (serving %v)", a13, r.ExtraAddrs())
	}
}
