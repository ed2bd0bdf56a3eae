package resolver

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// clock is a time the test moves by hand.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// testCache returns a cache on a clock the test moves.
func testCache(t *testing.T, cfg CacheConfig) (*Cache, *clock) {
	t.Helper()
	c := NewCache(cfg)
	if c == nil {
		t.Fatalf("NewCache(%+v) = nil", cfg)
	}
	clk := &clock{}
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	c.now = clk.now
	return c, clk
}

// answerTTL answers every A question with 192.0.2.1, TTL ttl, and an
// additional record living 5 s.
func answerTTL(ttl uint32) func(*upstreamServer, dns.ResponseWriter, *dns.Msg) {
	return func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		resp.RecursionAvailable = true
		name := m.Question[0].Name
		resp.Answer = append(resp.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl},
			A:   net.IPv4(192, 0, 2, 1),
		})
		resp.Extra = append(resp.Extra, &dns.A{
			Hdr: dns.RR_Header{Name: "glue." + name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   net.IPv4(192, 0, 2, 9),
		})
		if o := m.IsEdns0(); o != nil {
			resp.SetEdns0(o.UDPSize(), o.Do())
		}
		w.WriteMsg(resp)
	}
}

// answerNX answers NXDOMAIN, with a SOA (TTL 60, MINIMUM minimum) in the
// authority section when soa is true.
func answerNX(soa bool, minimum uint32) func(*upstreamServer, dns.ResponseWriter, *dns.Msg) {
	return func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetRcode(m, dns.RcodeNameError)
		if soa {
			resp.Ns = append(resp.Ns, &dns.SOA{
				Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
				Ns:  "ns.example.", Mbox: "admin.example.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: minimum,
			})
		}
		w.WriteMsg(resp)
	}
}

// cachedResolver starts a resolver with upstream h and cache c on
// loopback.
func cachedResolver(t *testing.T, c *Cache, h func(*upstreamServer, dns.ResponseWriter, *dns.Msg)) (*upstreamServer, netip.AddrPort) {
	t.Helper()
	up := startUpstream(t, "127.0.0.2", h)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Cache: c}, testBackend())
	return up, startLoopback(t, r)
}

// mustExchange asks addr and fails the test on a transport error.
func mustExchange(t *testing.T, network string, addr netip.AddrPort, q *dns.Msg) *dns.Msg {
	t.Helper()
	m, _, err := exchange(t, network, addr, q, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Id != q.Id {
		t.Fatalf("answer ID %d, query ID %d", m.Id, q.Id)
	}
	return m
}

func TestCacheHitAndExpiry(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c, clk := testCache(t, CacheConfig{Size: 100})
			up, addr := cachedResolver(t, c, answerTTL(30))

			first := mustExchange(t, network, addr, query("example.com.", dns.TypeA))
			if len(first.Answer) != 1 || first.Answer[0].Header().Ttl != 30 {
				t.Fatalf("first answer %v", first)
			}
			clk.advance(10 * time.Second)
			q := query("ExAmple.COM.", dns.TypeA)
			q.RecursionDesired = false
			m := mustExchange(t, network, addr, q)
			if got := up.queries.Load(); got != 1 {
				t.Fatalf("upstream asked %d times, want once (the second answer is the cache's)", got)
			}
			if len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
				t.Fatalf("cached answer %v", m)
			}
			if m.Question[0].Name != "ExAmple.COM." {
				t.Errorf("question echoed as %q, want the client's ExAmple.COM.", m.Question[0].Name)
			}
			if m.RecursionDesired {
				t.Error("RD set in the answer to a query without it")
			}
			if ttl := m.Answer[0].Header().Ttl; ttl != 20 {
				t.Errorf("TTL after 10 s in the cache = %d, want 20", ttl)
			}
			if ttl := m.Extra[0].Header().Ttl; ttl != 0 {
				t.Errorf("additional record's TTL (5) after 10 s = %d, want 0", ttl)
			}

			clk.advance(20 * time.Second) // 30 s: expired
			if m := mustExchange(t, network, addr, query("example.com.", dns.TypeA)); len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 30 {
				t.Fatalf("answer after expiry %v", m)
			}
			if got := up.queries.Load(); got != 2 {
				t.Fatalf("upstream asked %d times, want twice (the answer expired)", got)
			}
			if s := c.Stats(); s.Hits != 1 || s.Stores != 2 {
				t.Errorf("stats %+v, want 1 hit and 2 stores", s)
			}
		})
	}
}

func TestCacheMaxTTL(t *testing.T) {
	c, clk := testCache(t, CacheConfig{Size: 100, MaxTTL: 5 * time.Second})
	up, addr := cachedResolver(t, c, answerTTL(3600))
	mustExchange(t, "udp", addr, query("example.com.", dns.TypeA))
	clk.advance(2 * time.Second)
	m := mustExchange(t, "udp", addr, query("example.com.", dns.TypeA))
	if ttl := m.Answer[0].Header().Ttl; up.queries.Load() != 1 || ttl != 3 {
		t.Fatalf("after 2 s: upstream asked %d times, TTL %d; want once, 3 (5 s cap)", up.queries.Load(), ttl)
	}
	clk.advance(3 * time.Second)
	mustExchange(t, "udp", addr, query("example.com.", dns.TypeA))
	if got := up.queries.Load(); got != 2 {
		t.Fatalf("upstream asked %d times, want twice: the cap is 5 s", got)
	}
}

func TestCacheNegative(t *testing.T) {
	t.Run("with SOA", func(t *testing.T) {
		c, clk := testCache(t, CacheConfig{Size: 100})
		up, addr := cachedResolver(t, c, answerNX(true, 10))
		for range 2 {
			if m := mustExchange(t, "udp", addr, query("nothing.example.", dns.TypeA)); m.Rcode != dns.RcodeNameError {
				t.Fatalf("answer %v, want NXDOMAIN", m)
			}
		}
		if got := up.queries.Load(); got != 1 {
			t.Fatalf("upstream asked %d times, want once (NXDOMAIN is kept)", got)
		}
		clk.advance(10 * time.Second) // the SOA's MINIMUM, below its TTL
		mustExchange(t, "udp", addr, query("nothing.example.", dns.TypeA))
		if got := up.queries.Load(); got != 2 {
			t.Fatalf("upstream asked %d times, want twice (kept for MINIMUM, 10 s)", got)
		}
	})
	t.Run("capped", func(t *testing.T) {
		c, clk := testCache(t, CacheConfig{Size: 100, MaxNegativeTTL: 2 * time.Second})
		up, addr := cachedResolver(t, c, answerNX(true, 600))
		mustExchange(t, "udp", addr, query("nothing.example.", dns.TypeA))
		clk.advance(2 * time.Second)
		mustExchange(t, "udp", addr, query("nothing.example.", dns.TypeA))
		if got := up.queries.Load(); got != 2 {
			t.Fatalf("upstream asked %d times, want twice (negative cap 2 s)", got)
		}
	})
	t.Run("without SOA", func(t *testing.T) {
		c, _ := testCache(t, CacheConfig{Size: 100})
		up, addr := cachedResolver(t, c, answerNX(false, 0))
		for range 2 {
			mustExchange(t, "udp", addr, query("nothing.example.", dns.TypeA))
		}
		if got := up.queries.Load(); got != 2 {
			t.Fatalf("upstream asked %d times, want twice (no SOA, no TTL to keep it for)", got)
		}
	})
}

// TestCacheNeverKeeps: failures, truncated answers and TTL 0 are asked
// again every time.
func TestCacheNeverKeeps(t *testing.T) {
	truncated := func(u *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		resp.Truncated = true
		w.WriteMsg(resp)
	}
	for _, tt := range []struct {
		name string
		h    func(*upstreamServer, dns.ResponseWriter, *dns.Msg)
	}{
		{"SERVFAIL", answerRcode(dns.RcodeServerFailure)},
		{"REFUSED", answerRcode(dns.RcodeRefused)},
		{"FORMERR", answerRcode(dns.RcodeFormatError)},
		{"truncated", truncated},
		{"TTL 0", answerTTL(0)},
		// RFC 2181 section 8: a TTL with its top bit set is zero.
		{"TTL 2^31", answerTTL(1 << 31)},
		{"TTL 2^32-1", answerTTL(1<<32 - 1)},
		{"a record whose name is a compression loop", loopingAnswer},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := testCache(t, CacheConfig{Size: 100})
			up, addr := cachedResolver(t, c, tt.h)
			for range 3 {
				// The looping answer does not unpack for the client
				// either: only what reached the upstream counts.
				_, _, _ = exchange(t, "udp", addr, query("example.com.", dns.TypeA), 2*time.Second)
			}
			if got := up.queries.Load(); got != 3 {
				t.Fatalf("upstream asked %d times for 3 queries, want 3 (never cached)", got)
			}
			if s := c.Stats(); s.Stores != 0 || s.Entries != 0 {
				t.Fatalf("stats %+v, want nothing stored", s)
			}
		})
	}
}

// loopingAnswer answers with an A record (TTL 60) and a second one whose
// owner name is a compression pointer to itself: clients cannot read it.
func loopingAnswer(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.Answer = append(resp.Answer, &dns.A{
		Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A:   net.IPv4(192, 0, 2, 1),
	})
	b, err := resp.Pack()
	if err != nil {
		return
	}
	off := len(b)
	b = append(b, 0xc0|byte(off>>8), byte(off), 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2)
	b[7]++ // ANCOUNT 2
	w.Write(b)
}

// TestCacheLocalNamesFirst: a name kept from upstream is answered locally
// once a container has it.
func TestCacheLocalNamesFirst(t *testing.T) {
	c, _ := testCache(t, CacheConfig{Size: 100})
	up := startUpstream(t, "127.0.0.2", answerTTL(300))
	b := &newboxBackend{fakeBackend: testBackend()}
	addr := startLoopback(t, newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Cache: c}, b))
	mustExchange(t, "udp", addr, query("newbox.", dns.TypeA))
	b.there.Store(true)
	m := mustExchange(t, "udp", addr, query("newbox.", dns.TypeA))
	if got := answerAddrs(m); len(got) != 1 || got[0] != "10.0.0.99" || !m.Authoritative {
		t.Fatalf("answer %v, want the container's 10.0.0.99, authoritative", m)
	}
}

// newboxBackend is testBackend plus a container "newbox" (10.0.0.99) once
// there is set.
type newboxBackend struct {
	*fakeBackend
	there atomic.Bool
}

func (b *newboxBackend) Lookup(name string) (v4, v6 []netip.Addr, found bool) {
	if name == "newbox" && b.there.Load() {
		return ips("10.0.0.99"), nil, true
	}
	return b.fakeBackend.Lookup(name)
}

// TestCacheSharedBySameUpstreams: two resolvers sharing a cache share
// answers only when they forward to the same servers.
func TestCacheSharedBySameUpstreams(t *testing.T) {
	c, _ := testCache(t, CacheConfig{Size: 100})
	up := startUpstream(t, "127.0.0.2", answerTTL(300))
	other := startUpstream(t, "127.0.0.3", answerTTL(300))
	start := func(ups ...netip.AddrPort) netip.AddrPort {
		return startLoopback(t, newTestResolver(t, Config{Upstreams: ups, Cache: c}, testBackend()))
	}
	a, b, d := start(up.addr), start(up.addr), start(other.addr)
	mustExchange(t, "udp", a, query("example.com.", dns.TypeA))
	mustExchange(t, "udp", b, query("example.com.", dns.TypeA))
	if got := up.queries.Load(); got != 1 {
		t.Fatalf("upstream asked %d times by two resolvers forwarding to it, want once", got)
	}
	mustExchange(t, "udp", d, query("example.com.", dns.TypeA))
	if got := other.queries.Load(); got != 1 {
		t.Fatalf("the other upstream asked %d times, want once: its resolver must not use the first's answers", got)
	}
}

func TestCacheEDNSIsPartOfTheKey(t *testing.T) {
	c, _ := testCache(t, CacheConfig{Size: 100})
	up, addr := cachedResolver(t, c, answerTTL(300))
	mustExchange(t, "udp", addr, query("example.com.", dns.TypeA))
	m := mustExchange(t, "udp", addr, queryEDNS("example.com.", dns.TypeA, 1232))
	if m.IsEdns0() == nil {
		t.Fatalf("answer to an EDNS query without OPT: %v", m)
	}
	m = mustExchange(t, "udp", addr, query("example.com.", dns.TypeA))
	if m.IsEdns0() != nil {
		t.Fatalf("answer to a plain query with OPT: %v", m)
	}
	if got := up.queries.Load(); got != 2 {
		t.Fatalf("upstream asked %d times, want twice (once with EDNS, once without)", got)
	}
}

func TestCacheLRU(t *testing.T) {
	c, _ := testCache(t, CacheConfig{Size: 2})
	up, addr := cachedResolver(t, c, answerTTL(300))
	for _, n := range []string{"a.example.", "b.example.", "a.example.", "c.example.", "a.example.", "b.example."} {
		mustExchange(t, "udp", addr, query(n, dns.TypeA))
	}
	// a, b asked; a hit; c asked, evicts b (least recently used); a hit;
	// b asked again.
	if got := up.queries.Load(); got != 4 {
		t.Fatalf("upstream asked %d times, want 4", got)
	}
	if s := c.Stats(); s.Entries != 2 {
		t.Fatalf("%d entries, want the size bound, 2", s.Entries)
	}
}

func TestCacheTruncatesForUDP(t *testing.T) {
	c, _ := testCache(t, CacheConfig{Size: 100})
	many := func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		for i := range 60 {
			resp.Answer = append(resp.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A:   net.IPv4(192, 0, 2, byte(i)),
			})
		}
		w.WriteMsg(resp)
	}
	up, addr := cachedResolver(t, c, many)
	if m := mustExchange(t, "tcp", addr, query("big.example.", dns.TypeA)); len(m.Answer) != 60 {
		t.Fatalf("%d answers over TCP, want 60", len(m.Answer))
	}
	m := mustExchange(t, "udp", addr, query("big.example.", dns.TypeA))
	if !m.Truncated || len(m.Answer) >= 60 {
		t.Fatalf("cached 60-record answer over UDP without EDNS: TC %v, %d records; want TC and fewer", m.Truncated, len(m.Answer))
	}
	if got := up.queries.Load(); got != 1 {
		t.Fatalf("upstream asked %d times, want once", got)
	}
}

func TestNewCacheOff(t *testing.T) {
	if c := NewCache(CacheConfig{}); c != nil {
		t.Fatal("NewCache with size 0 returned a cache")
	}
	var c *Cache
	if s := c.Stats(); s != (CacheStats{}) {
		t.Fatalf("nil cache stats %+v", s)
	}
}

// SetLimits, as a reload applies the cache settings: a smaller size keeps
// the most recently used answers, a new TTL cap bounds what is kept from
// then on; turning the cache on or off is refused.
func TestCacheSetLimits(t *testing.T) {
	c, clk := testCache(t, CacheConfig{Size: 4})
	up, addr := cachedResolver(t, c, answerTTL(3600))
	for _, n := range []string{"a.example.", "b.example.", "c.example.", "d.example."} {
		mustExchange(t, "udp", addr, query(n, dns.TypeA))
	}
	if !c.SetLimits(CacheConfig{Size: 2, MaxTTL: 5 * time.Second}) {
		t.Fatal("SetLimits refused a size of 2")
	}
	if s := c.Stats(); s.Entries != 2 {
		t.Fatalf("%d entries after shrinking to 2", s.Entries)
	}
	// c and d, the most recent, stay; e is kept for 5 s only.
	for _, n := range []string{"c.example.", "d.example.", "e.example."} {
		mustExchange(t, "udp", addr, query(n, dns.TypeA))
	}
	if got := up.queries.Load(); got != 5 {
		t.Fatalf("upstream asked %d times, want 5 (c and d from the cache)", got)
	}
	clk.advance(6 * time.Second)
	mustExchange(t, "udp", addr, query("e.example.", dns.TypeA))
	if got := up.queries.Load(); got != 6 {
		t.Fatalf("upstream asked %d times, want 6: e's answer kept past the new 5 s cap", got)
	}
	if c.SetLimits(CacheConfig{Size: 0}) || (*Cache)(nil).SetLimits(CacheConfig{Size: 10}) {
		t.Fatal("SetLimits turned a cache off, or one on")
	}
	if s := c.Stats(); s.Entries == 0 {
		t.Fatal("a refused SetLimits emptied the cache")
	}
}
