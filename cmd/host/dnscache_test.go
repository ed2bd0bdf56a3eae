package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// fakeUpstream is a DNS server on the test namespace's loopback that
// counts the questions it gets, by name. Its answers:
//
//	nx.example.    NXDOMAIN, SOA TTL 60 MINIMUM 2
//	fail.example.  SERVFAIL
//	anything else  A 192.0.2.1, TTL 2
type fakeUpstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	asks map[string]int // guarded by mu
}

// startFakeUpstream serves on addr ("127.0.0.1:0" for any free port).
func startFakeUpstream(t *testing.T, addr string) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{asks: map[string]int{}}
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(u.serve)}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go s.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.Shutdown() })
	return u
}

func (u *fakeUpstream) serve(w dns.ResponseWriter, m *dns.Msg) {
	name := strings.ToLower(m.Question[0].Name)
	u.mu.Lock()
	u.asks[name]++
	u.mu.Unlock()
	resp := new(dns.Msg)
	switch name {
	case "nx.example.":
		resp.SetRcode(m, dns.RcodeNameError)
		resp.Ns = append(resp.Ns, &dns.SOA{
			Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
			Ns:  "ns.example.", Mbox: "admin.example.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 2,
		})
	case "fail.example.":
		resp.SetRcode(m, dns.RcodeServerFailure)
	default:
		resp.SetReply(m)
		resp.RecursionAvailable = true
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 2},
			A:   net.IPv4(192, 0, 2, 1),
		})
	}
	w.WriteMsg(resp)
}

// asked returns how many times name was asked.
func (u *fakeUpstream) asked(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asks[name]
}

// TestDNSCache: the agent's resolvers keep forwarded answers for their
// TTL, NXDOMAIN for the SOA's, never SERVFAIL, and a container name always
// beats a kept answer; dig inside the sandbox sees it all.
func TestDNSCache(t *testing.T) {
	nstest.RequireRoot(t)
	up := startFakeUpstream(t, "127.0.0.1:0")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+
		fmt.Sprintf("resolver {\n  upstreams = [%q]\n  timeout = \"1s\"\n}\n", up.addr)).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	// Single labels forwarded: "late" below is an upstream's name first.
	if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "cachenet", DNSForwardSingleLabel: true}); err != nil {
		t.Fatal(err)
	}
	cli := attach(t, a.Client, "cachenet", "cli")

	// A hit: the second answer comes from the cache, its TTL counting down.
	if got := dig(t, cli.key, "+short", "cached.example"); got != "192.0.2.1" {
		t.Fatalf("dig cached.example = %q", got)
	}
	second := dig(t, cli.key, "+noall", "+answer", "CACHED.example")
	if n := up.asked("cached.example."); n != 1 {
		t.Fatalf("upstream asked %d times for two queries within the TTL, want once", n)
	}
	if f := strings.Fields(second); len(f) != 5 || f[4] != "192.0.2.1" || (f[1] != "2" && f[1] != "1" && f[1] != "0") {
		t.Fatalf("cached answer %q: want 192.0.2.1 with a TTL of at most 2", second)
	}
	// TTL expiry: once the 2 s are over, the upstream is asked again.
	polltest.Until(t, 10*time.Second, "the answer to expire and the upstream to be asked again", func() bool {
		dig(t, cli.key, "+short", "cached.example")
		return up.asked("cached.example.") == 2
	})

	// The negative cache.
	for range 2 {
		if got := dig(t, cli.key, "nx.example"); !strings.Contains(got, "status: NXDOMAIN") {
			t.Fatalf("dig nx.example:\n%s", got)
		}
	}
	if n := up.asked("nx.example."); n != 1 {
		t.Fatalf("upstream asked %d times for NXDOMAIN within the SOA's 2 s, want once", n)
	}

	// SERVFAIL is never kept.
	for range 2 {
		if got := dig(t, cli.key, "fail.example"); !strings.Contains(got, "status: SERVFAIL") {
			t.Fatalf("dig fail.example:\n%s", got)
		}
	}
	if n := up.asked("fail.example."); n != 2 {
		t.Fatalf("upstream asked %d times for two queries answered SERVFAIL, want twice (never cached)", n)
	}

	// A name kept from upstream is a container's as soon as it exists.
	if got := dig(t, cli.key, "+short", "late"); got != "192.0.2.1" {
		t.Fatalf("dig late (not a container yet) = %q, want the upstream's 192.0.2.1", got)
	}
	late := attach(t, a.Client, "cachenet", "late")
	if got := dig(t, cli.key, "+short", "late"); got != late.addr.String() {
		t.Fatalf("dig late = %q, want the container's %s, not the cached upstream answer", got, late.addr)
	}
}
