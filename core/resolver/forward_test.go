package resolver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/sdk/polltest"
)

// Every upstream here is a server the test starts on 127.0.0.x: forwarding
// never leaves the loopback.

func TestForward(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			up := startUpstream(t, "127.0.0.2", answerA)
			b := testBackend()
			r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, b)
			addr := startLoopback(t, r)

			q := query("example.com.", dns.TypeA)
			m, _, err := exchange(t, network, addr, q, 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if m.Id != q.Id || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 ||
				m.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
				t.Fatalf("answer %v, want 192.0.2.1 from upstream with id %d", m, q.Id)
			}
			if m.Authoritative {
				t.Error("forwarded answer marked authoritative")
			}
			wantUDP := int64(0)
			if network == "udp" {
				wantUDP = 1
			}
			if up.queries.Load() != 1 || up.udp.Load() != wantUDP {
				t.Errorf("upstream got %d queries, %d over UDP; want 1, %d", up.queries.Load(), up.udp.Load(), wantUDP)
			}

			// Local names never reach the upstream.
			m, _, err = exchange(t, network, addr, query("web.", dns.TypeAAAA), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Answer) != 1 || !m.Authoritative {
				t.Errorf("local answer %v", m)
			}
			if up.queries.Load() != 1 {
				t.Errorf("upstream asked %d times, want once", up.queries.Load())
			}
			// The slot is released just after the answer is written.
			polltest.Until(t, 5*time.Second, "the slot to be released", func() bool { return r.inflight.Load() == 0 })
		})
	}
}

// TestForwardTruncated: a UDP answer the upstream truncated reaches the
// client with TC, and the client's retry over TCP gets the whole answer.
func TestForwardTruncated(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			resp.Truncated = true
		} else {
			for i := range 50 {
				resp.Answer = append(resp.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
					A:   net.IPv4(192, 0, 2, byte(i)),
				})
			}
		}
		w.WriteMsg(resp)
	})
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, testBackend())
	addr := startLoopback(t, r)

	q := query("big.example.", dns.TypeA)
	m, _, err := exchange(t, "udp", addr, q, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Truncated || len(m.Answer) != 0 || m.Id != q.Id {
		t.Fatalf("UDP answer TC %v with %d answers, want the upstream's truncated answer", m.Truncated, len(m.Answer))
	}
	m, _, err = exchange(t, "tcp", addr, q, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Truncated || len(m.Answer) != 50 || m.Id != q.Id {
		t.Fatalf("TCP answer TC %v with %d answers, want 50", m.Truncated, len(m.Answer))
	}
	if up.queries.Load() != 2 || up.udp.Load() != 1 {
		t.Errorf("upstream got %d queries, %d over UDP; want 2, 1", up.queries.Load(), up.udp.Load())
	}
}

// TestForwardOversized: an upstream that ignores the client's size gets
// its answer cut to fit, with TC.
func TestForwardOversized(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		for i := range 100 {
			resp.Answer = append(resp.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
				A:   net.IPv4(192, 0, 2, byte(i)),
			})
		}
		b, _ := resp.Pack()
		w.Write(b) // 1600 bytes and more, whatever the query said
	})
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, testBackend())
	raw := answerRaw(t, r, rawQuery(t, "big.example.", dns.TypeA, nil), false)
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) > 512 || !m.Truncated || len(m.Answer) == 0 || m.Id != 0x1234 {
		t.Errorf("answer of %d bytes, TC %v, %d answers, id %#x; want at most 512 bytes with TC", len(raw), m.Truncated, len(m.Answer), m.Id)
	}
}

func TestForwardFailover(t *testing.T) {
	type server func(t *testing.T) netip.AddrPort
	dead := func(t *testing.T) netip.AddrPort { return deadUDP(t, "127.0.0.3") }
	hole := func(t *testing.T) netip.AddrPort { return blackHole(t, "127.0.0.3") }
	rcode := func(rc int) server {
		return func(t *testing.T) netip.AddrPort { return startUpstream(t, "127.0.0.3", answerRcode(rc)).addr }
	}
	const timeout = time.Second
	tests := []struct {
		name  string
		first server
		max   time.Duration // the answer comes within
	}{
		{"first down", dead, timeout / 4},
		{"first SERVFAIL", rcode(dns.RcodeServerFailure), timeout / 4},
		{"first REFUSED", rcode(dns.RcodeRefused), timeout / 4},
		// A black hole gets half the timeout, the second server the rest.
		{"first silent", hole, timeout/2 + timeout/4},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				second := startUpstream(t, "127.0.0.4", answerA)
				r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{tt.first(t), second.addr}, Timeout: timeout}, testBackend())
				addr := startLoopback(t, r)
				start := time.Now()
				m, _, err := exchange(t, network, addr, query("example.com.", dns.TypeA), 5*time.Second)
				took := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
					t.Fatalf("answer %v, want the second upstream's", m)
				}
				if second.queries.Load() != 1 {
					t.Errorf("second upstream asked %d times", second.queries.Load())
				}
				if took > tt.max {
					t.Errorf("answer took %v, want at most %v", took, tt.max)
				}
			})
		}
	}
}

func TestForwardAllFail(t *testing.T) {
	const timeout = 400 * time.Millisecond
	tests := []struct {
		name     string
		ups      func(t *testing.T) []netip.AddrPort
		min, max time.Duration
	}{
		{"down", func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{deadUDP(t, "127.0.0.3")}
		}, 0, timeout / 2},
		{"silent", func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{blackHole(t, "127.0.0.3")}
		}, timeout - 50*time.Millisecond, timeout + 300*time.Millisecond},
		{"two silent", func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{blackHole(t, "127.0.0.3"), blackHole(t, "127.0.0.4")}
		}, timeout - 50*time.Millisecond, timeout + 300*time.Millisecond},
		{"SERVFAIL", func(t *testing.T) []netip.AddrPort {
			return []netip.AddrPort{startUpstream(t, "127.0.0.3", answerRcode(dns.RcodeServerFailure)).addr}
		}, 0, timeout / 2},
	}
	for _, tt := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tt.name+"/"+network, func(t *testing.T) {
				r := newTestResolver(t, Config{Upstreams: tt.ups(t), Timeout: timeout}, testBackend())
				addr := startLoopback(t, r)
				q := queryEDNS("example.com.", dns.TypeA, 1232)
				start := time.Now()
				m, _, err := exchange(t, network, addr, q, 5*time.Second)
				took := time.Since(start)
				if err != nil {
					t.Fatal(err)
				}
				if m.Rcode != dns.RcodeServerFailure || m.Id != q.Id || len(m.Question) != 1 || m.IsEdns0() == nil {
					t.Errorf("answer %v, want SERVFAIL with question and OPT", m)
				}
				if took < tt.min || took > tt.max {
					t.Errorf("SERVFAIL after %v, want %v..%v", took, tt.min, tt.max)
				}
			})
		}
	}
}

// blockingUpstream answers only once release is called (or the test ends).
func blockingUpstream(t *testing.T) (up *upstreamServer, release func()) {
	ch := make(chan struct{})
	up = startUpstream(t, "127.0.0.2", func(u *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		<-ch
		answerA(u, w, m)
	})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return up, release
}

// TestInflightBound fills MaxInflight with queries an upstream holds, then
// checks that more forwards are refused at once while local names are
// still answered, and that the held ones are answered when it lets go.
func TestInflightBound(t *testing.T) {
	const maxInflight, extra = 4, 8
	up, release := blockingUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 10 * time.Second, MaxInflight: maxInflight}, testBackend())
	addr := startLoopback(t, r)

	type result struct {
		m   *dns.Msg
		err error
	}
	held := make(chan result, maxInflight)
	for i := range maxInflight {
		go func() {
			m, _, err := exchange(t, "udp", addr, query("held"+string(rune('a'+i))+".example.", dns.TypeA), 10*time.Second)
			held <- result{m, err}
		}()
	}
	polltest.Until(t, 5*time.Second, "the upstream to hold every slot", func() bool { return up.queries.Load() == maxInflight })

	var wg sync.WaitGroup
	errs := make(chan error, extra+1)
	for i := range extra {
		network := "udp"
		if i%2 == 1 {
			network = "tcp"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, rtt, err := exchange(t, network, addr, query("extra.example.", dns.TypeA), 2*time.Second)
			switch {
			case err != nil:
				errs <- err
			case m.Rcode != dns.RcodeRefused:
				errs <- errors.New("extra query over " + network + " got " + dns.RcodeToString[m.Rcode] + ", want REFUSED")
			case rtt > 500*time.Millisecond:
				errs <- errors.New("REFUSED after " + rtt.String())
			}
		}()
	}
	wg.Wait()
	m, rtt, err := exchange(t, "udp", addr, query("web.", dns.TypeA), 2*time.Second)
	if err != nil || len(m.Answer) != 3 || rtt > 500*time.Millisecond {
		t.Errorf("local query while forwarding is full: %v after %v, %v", m, rtt, err)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := up.queries.Load(); got != maxInflight {
		t.Errorf("upstream got %d queries, want only the %d held ones", got, maxInflight)
	}

	release()
	for range maxInflight {
		res := <-held
		if res.err != nil || res.m.Rcode != dns.RcodeSuccess || len(res.m.Answer) != 1 {
			t.Errorf("held query: %v, %v", res.m, res.err)
		}
	}
	polltest.Until(t, 5*time.Second, "the slots to be released", func() bool { return r.inflight.Load() == 0 })
}

// TestStopCancelsForwards: Stop does not wait for upstreams.
func TestStopCancelsForwards(t *testing.T) {
	up, _ := blockingUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 30 * time.Second}, testBackend())
	addr := startLoopback(t, r)
	for _, network := range []string{"udp", "tcp"} {
		go exchange(t, network, addr, query("example.com.", dns.TypeA), 5*time.Second)
	}
	polltest.Until(t, 5*time.Second, "both queries to reach the upstream", func() bool { return up.queries.Load() == 2 })
	start := time.Now()
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("Stop took %v with forwards pending", took)
	}
	if n := r.inflight.Load(); n != 0 {
		t.Errorf("%d in flight after Stop", n)
	}
	if _, _, err := exchange(t, "udp", addr, query("web.", dns.TypeA), 200*time.Millisecond); err == nil {
		t.Error("answered after Stop")
	}
	if err := r.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestTCPPipelining: on one connection, a local answer is not held up by
// a forwarded query sent before it.
func TestTCPPipelining(t *testing.T) {
	up, release := blockingUpstream(t)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 10 * time.Second}, testBackend())
	addr := startLoopback(t, r)

	c, err := dns.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fwd, local := query("example.com.", dns.TypeA), query("web.", dns.TypeA)
	fwd.Id, local.Id = 1, 2
	for _, q := range []*dns.Msg{fwd, local} {
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.ReadMsg()
	if err != nil || m.Id != local.Id || len(m.Answer) != 3 {
		t.Fatalf("first answer %v, %v; want the local one", m, err)
	}
	release()
	m, err = c.ReadMsg()
	if err != nil || m.Id != fwd.Id || len(m.Answer) != 1 {
		t.Fatalf("second answer %v, %v; want the forwarded one", m, err)
	}
}

func TestMaxTCPConns(t *testing.T) {
	r := newTestResolver(t, Config{}, testBackend())
	addr := startLoopback(t, r)
	var conns []*dns.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range maxTCPConns {
		c, err := dns.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if i == 0 || i == maxTCPConns-1 {
			// Each accepted connection is served.
			if err := c.WriteMsg(query("web.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if m, err := c.ReadMsg(); err != nil || len(m.Answer) != 3 {
				t.Fatalf("connection %d: %v, %v", i, m, err)
			}
		}
	}
	c, err := dns.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMsg(query("web.", dns.TypeA))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := c.ReadMsg(); err == nil {
		t.Fatalf("connection %d answered %v, want it closed", maxTCPConns+1, m)
	}
	// UDP is not affected.
	if m, _, err := exchange(t, "udp", addr, query("web.", dns.TypeA), 2*time.Second); err != nil || len(m.Answer) != 3 {
		t.Errorf("UDP with TCP full: %v, %v", m, err)
	}
}

func TestStartWithTwice(t *testing.T) {
	r := newTestResolver(t, Config{}, testBackend())
	startLoopback(t, r)
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.StartWith(udp, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("second StartWith: %v, want ErrRunning", err)
	}
	// The refused socket was closed.
	if _, err := udp.WriteToUDPAddrPort([]byte{0}, udp.LocalAddr().(*net.UDPAddr).AddrPort()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("socket given to a failed StartWith still open: %v", err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	addr := startLoopback(t, r)
	if m, _, err := exchange(t, "udp", addr, query("web.", dns.TypeA), 2*time.Second); err != nil || len(m.Answer) != 3 {
		t.Errorf("after restart: %v, %v", m, err)
	}
}

// TestSingleLabel: with ForwardQualified, an A or AAAA question for a
// single-label name that is not local gets NXDOMAIN and reaches no
// upstream; other types and dotted names are forwarded; ForwardAll
// forwards them all.
func TestSingleLabel(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", answerA)
	for _, tt := range []struct {
		name      string
		q         *dns.Msg
		qualified bool
		rcode     int
		forwarded bool
	}{
		{"A of a single label", query("registry.", dns.TypeA), true, dns.RcodeNameError, false},
		{"AAAA of a single label", query("Registry.", dns.TypeAAAA), true, dns.RcodeNameError, false},
		{"ANY of a single label", query("registry.", dns.TypeANY), true, dns.RcodeNameError, false},
		{"NS of a top-level domain", query("com.", dns.TypeNS), true, dns.RcodeSuccess, true},
		{"A of a dotted name", query("registry.example.", dns.TypeA), true, dns.RcodeSuccess, true},
		{"A of the root", query(".", dns.TypeA), true, dns.RcodeSuccess, true},
		{"local single label", query("web.", dns.TypeA), true, dns.RcodeSuccess, false},
		{"ForwardAll: single label forwarded", query("registry.", dns.TypeA), false, dns.RcodeSuccess, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := testBackend()
			b.qualified = tt.qualified
			r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}}, b)
			before := up.queries.Load()
			m := ask(t, r, tt.q, false)
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if got := up.queries.Load() - before; (got > 0) != tt.forwarded {
				t.Errorf("upstream asked %d times, want forwarded=%v", got, tt.forwarded)
			}
		})
	}
}

// TestTCPClientThatDoesNotRead: a client that pipelines forwarded queries
// over TCP and never reads their answers holds no forward slot once the
// upstream has answered: the slots bound the queries upstream, not the
// client's reading. Each slot was held until its answer was written, each
// write waiting out its timeout in turn: minutes for a few hundred.
func TestTCPClientThatDoesNotRead(t *testing.T) {
	big := func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(m)
		for i := range 230 { // about 60 KB: a few fill the agent's send buffer
			resp.Answer = append(resp.Answer, &dns.TXT{
				Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 30},
				Txt: []string{fmt.Sprintf("%03d%s", i, strings.Repeat("x", 250))},
			})
		}
		w.WriteMsg(resp)
	}
	up := startUpstream(t, "127.0.0.2", big)
	r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 5 * time.Second, MaxInflight: 1024}, testBackend())
	addr := startLoopback(t, r)
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(1024)
	const n = 200
	for i := range n {
		q := query(fmt.Sprintf("n%d.big.test.", i), dns.TypeTXT)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Until(t, 10*time.Second, "the upstream asked every query", func() bool { return up.queries.Load() == n })
	polltest.Until(t, 3*time.Second, "every slot released while the client still does not read", func() bool { return r.inflight.Load() == 0 })
}

// TestBudgetSharedAcrossResolvers: resolvers sharing a Budget (an
// agent's) together forward no more than it allows, and each no more than
// a quarter of it; a query beyond either is REFUSED at once by the
// resolver that gets it, though its own MaxInflight has room, local names
// are still answered, and the places come back once the upstream
// answers.
func TestBudgetSharedAcrossResolvers(t *testing.T) {
	const budget = 8 // a quarter: 2 per resolver
	up, release := blockingUpstream(t)
	b := NewBudget(budget)
	cfg := Config{Upstreams: []netip.AddrPort{up.addr}, Timeout: 10 * time.Second, MaxInflight: 1024, Budget: b}
	var addrs []netip.AddrPort
	for range 5 {
		addrs = append(addrs, startLoopback(t, newTestResolver(t, cfg, testBackend())))
	}
	refusedAtOnce := func(addr netip.AddrPort, what string) {
		t.Helper()
		m, rtt, err := exchange(t, "udp", addr, query("extra.example.", dns.TypeA), 2*time.Second)
		if err != nil || m.Rcode != dns.RcodeRefused || rtt > 500*time.Millisecond {
			t.Errorf("%s: %v after %v, %v; want REFUSED at once", what, m, rtt, err)
		}
	}
	held := make(chan error, budget)
	hold := func(addr netip.AddrPort, name string) {
		go func() {
			m, _, err := exchange(t, "udp", addr, query(name, dns.TypeA), 10*time.Second)
			if err == nil && m.Rcode != dns.RcodeSuccess {
				err = errors.New("held query got " + dns.RcodeToString[m.Rcode])
			}
			held <- err
		}()
	}
	// One resolver holds its quarter; a third query of its is refused.
	hold(addrs[0], "held-a.example.")
	hold(addrs[0], "held-b.example.")
	polltest.Until(t, 5*time.Second, "the first resolver's quarter held", func() bool { return up.queries.Load() == 2 })
	refusedAtOnce(addrs[0], "a query beyond one resolver's quarter")
	// The others take the rest of the budget, and then none is left.
	for i, addr := range addrs[1:4] {
		hold(addr, fmt.Sprintf("held-%d-1.example.", i))
		hold(addr, fmt.Sprintf("held-%d-2.example.", i))
	}
	polltest.Until(t, 5*time.Second, "the upstream to hold the budget", func() bool { return up.queries.Load() == budget })
	refusedAtOnce(addrs[4], "a query beyond the shared budget")
	if m, _, err := exchange(t, "udp", addrs[4], query("web.", dns.TypeA), 2*time.Second); err != nil || len(m.Answer) != 3 {
		t.Errorf("local query while the budget is spent: %v, %v", m, err)
	}
	release()
	for range budget {
		if err := <-held; err != nil {
			t.Error(err)
		}
	}
	polltest.Until(t, 5*time.Second, "the budget to be given back", func() bool { return b.used.Load() == 0 })
}
