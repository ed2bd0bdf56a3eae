package resolver

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeBackend is a Backend over fixed maps; it does not allocate.
type fakeBackend struct {
	names     map[string]addrs
	ptrs      map[netip.Addr]string
	noForward bool // every network internal
	qualified bool // single-label names are not forwarded
	lookups   atomic.Int64
}

type addrs struct{ v4, v6 []netip.Addr }

func (b *fakeBackend) Lookup(name string) (v4, v6 []netip.Addr, found bool) {
	b.lookups.Add(1)
	a, ok := b.names[name]
	return a.v4, a.v6, ok
}

func (b *fakeBackend) ReverseLookup(ip netip.Addr) (string, bool) {
	p, ok := b.ptrs[ip]
	return p, ok
}

func (b *fakeBackend) Forward() Forwarding {
	switch {
	case b.noForward:
		return ForwardNone
	case b.qualified:
		return ForwardQualified
	}
	return ForwardAll
}

func ips(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, x := range s {
		out[i] = netip.MustParseAddr(x)
	}
	return out
}

// seqAddrs returns n addresses 10.1.x.y.
func seqAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	return out
}

// testBackend knows:
//
//	web, web.net       10.0.0.2, 10.0.0.3, 10.0.0.4 and fd00::2
//	db                 10.0.0.5 only (no IPv6)
//	v6only             fd00::6 only
//	many               40 IPv4 addresses (more than 512 bytes of A records)
//	lots               300 IPv4 addresses (more than 4096 bytes)
//	10.0.0.2, fd00::2  PTR web.net.
//	10.0.0.7           a container's, named by a label DNS cannot hold
func testBackend() *fakeBackend {
	web := addrs{v4: ips("10.0.0.2", "10.0.0.3", "10.0.0.4"), v6: ips("fd00::2")}
	return &fakeBackend{
		names: map[string]addrs{
			"web":     web,
			"web.net": web,
			"db":      {v4: ips("10.0.0.5")},
			"v6only":  {v6: ips("fd00::6")},
			"many":    {v4: seqAddrs(40)},
			"lots":    {v4: seqAddrs(300)},
		},
		ptrs: map[netip.Addr]string{
			netip.MustParseAddr("10.0.0.2"): "web.net.",
			netip.MustParseAddr("fd00::2"):  "web.net.",
			netip.MustParseAddr("10.0.0.7"): strings.Repeat("0123456789abcdef", 4) + ".net.",
		},
	}
}

// newTestResolver makes a Resolver that never reaches a server the test did
// not start: without cfg.Upstreams it has no upstreams at all (forwarded
// queries get SERVFAIL at once), whatever the machine's resolv.conf says,
// also after Start.
func newTestResolver(t testing.TB, cfg Config, b Backend) *Resolver {
	t.Helper()
	none := len(cfg.Upstreams) == 0
	if none {
		// Keeps Start from reading a resolv.conf; replaced below.
		cfg.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}
	}
	cfg.HostResolvConf = "/nonexistent/resolv.conf"
	r := New(cfg, b)
	if none {
		r.upstreams.Store(newUpstreamSet(nil))
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

// recorder is a dns.ResponseWriter that keeps what the handler wrote.
type recorder struct {
	tcp  bool
	msgs [][]byte
}

func (w *recorder) LocalAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 11), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 11), Port: 53}
}

func (w *recorder) RemoteAddr() net.Addr {
	if w.tcp {
		return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	}
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}

func (w *recorder) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *recorder) Write(b []byte) (int, error) {
	w.msgs = append(w.msgs, append([]byte(nil), b...))
	return len(b), nil
}

func (w *recorder) Close() error        { return nil }
func (w *recorder) TsigStatus() error   { return nil }
func (w *recorder) TsigTimersOnly(bool) {}
func (w *recorder) Hijack()             {}

// serve runs q through the handler and returns the raw answer, or nil
// when there was none; more than one answer fails the test.
func serve(t testing.TB, r *Resolver, q *dns.Msg, tcp bool) []byte {
	t.Helper()
	w := &recorder{tcp: tcp}
	r.Handler().ServeDNS(w, q)
	switch len(w.msgs) {
	case 0:
		return nil
	case 1:
		return w.msgs[0]
	}
	t.Fatalf("handler wrote %d messages, want one", len(w.msgs))
	return nil
}

// ask is serve with the answer unpacked.
func ask(t testing.TB, r *Resolver, q *dns.Msg, tcp bool) *dns.Msg {
	t.Helper()
	raw := serve(t, r, q, tcp)
	if raw == nil {
		t.Fatalf("no answer to %v", q.Question)
	}
	m := new(dns.Msg)
	if err := m.Unpack(raw); err != nil {
		t.Fatalf("answer to %v does not unpack: %v", q.Question, err)
	}
	return m
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func queryEDNS(name string, qtype uint16, size uint16) *dns.Msg {
	m := query(name, qtype)
	m.SetEdns0(size, false)
	return m
}

// answerAddrs lists the A and AAAA addresses of m's answer section.
func answerAddrs(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		}
	}
	return out
}

// upstreamServer is a DNS server a test starts on 127.0.0.x, answering
// over UDP and TCP on the same port.
type upstreamServer struct {
	addr    netip.AddrPort
	queries atomic.Int64 // queries received
	udp     atomic.Int64 // ... of them over UDP
	mu      sync.Mutex
	ids     []uint16
	from    []net.Addr
}

// startUpstream serves h on host ("127.0.0.2": a free port; or
// "127.0.0.1:53") until the test ends.
func startUpstream(t testing.TB, host string, h func(u *upstreamServer, w dns.ResponseWriter, m *dns.Msg)) *upstreamServer {
	t.Helper()
	u := &upstreamServer{}
	if !strings.Contains(host, ":") {
		host += ":0"
	}
	var pc net.PacketConn
	var l net.Listener
	var err error
	for range 20 {
		if pc, err = net.ListenPacket("udp4", host); err != nil {
			t.Fatalf("upstream: %v", err)
		}
		if l, err = net.Listen("tcp4", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("upstream: %v", err)
	}
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		u.queries.Add(1)
		if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
			u.udp.Add(1)
		}
		u.mu.Lock()
		u.ids = append(u.ids, m.Id)
		u.from = append(u.from, w.RemoteAddr())
		u.mu.Unlock()
		h(u, w, m)
	})
	for _, s := range []*dns.Server{
		{PacketConn: pc, Handler: handler},
		{Listener: l, Handler: handler},
	} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go s.ActivateAndServe()
		<-started
		t.Cleanup(func() { s.Shutdown() })
	}
	return u
}

// answerA answers every question with one A record, 192.0.2.1.
func answerA(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.RecursionAvailable = true
	resp.Answer = append(resp.Answer, &dns.A{
		Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30},
		A:   net.IPv4(192, 0, 2, 1),
	})
	w.WriteMsg(resp)
}

// answerRcode answers with an empty message and rcode.
func answerRcode(rcode int) func(*upstreamServer, dns.ResponseWriter, *dns.Msg) {
	return func(_ *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetRcode(m, rcode)
		w.WriteMsg(resp)
	}
}

// deadUDP returns an address where nothing listens: UDP queries there get
// an ICMP port unreachable, TCP connections a reset.
func deadUDP(t testing.TB, host string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	return ap
}

// blackHole returns an address that reads UDP queries and never answers,
// and accepts TCP connections and never answers either.
func blackHole(t testing.TB, host string) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp4", host+":0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return pc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// startLoopback starts r on UDP and TCP sockets of 127.0.0.1, same port.
func startLoopback(t testing.TB, r *Resolver) netip.AddrPort {
	t.Helper()
	for range 20 {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		ap := udp.LocalAddr().(*net.UDPAddr).AddrPort()
		tcp, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			udp.Close()
			continue
		}
		if err := r.StartWith(udp, tcp); err != nil {
			t.Fatal(err)
		}
		return ap
	}
	t.Fatal("no free port on 127.0.0.1 for UDP and TCP")
	return netip.AddrPort{}
}

// exchange sends q to addr over network ("udp" or "tcp") with a client
// timeout.
func exchange(t testing.TB, network string, addr netip.AddrPort, q *dns.Msg, timeout time.Duration) (*dns.Msg, time.Duration, error) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: timeout, UDPSize: 65535}
	resp, rtt, err := c.Exchange(q, addr.String())
	return resp, rtt, err
}
