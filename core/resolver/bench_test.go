package resolver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// discard is a dns.ResponseWriter that keeps nothing.
type discard struct{ recorder }

func (w *discard) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkLocalA: a local A query (three addresses) through Handler, the
// dns.Handler adapter (which packs the parsed query again).
func BenchmarkLocalA(b *testing.B) {
	r := newTestResolver(b, Config{}, testBackend())
	h := r.Handler()
	q := query("web.", dns.TypeA)
	w := &discard{}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeDNS(w, q)
	}
}

// BenchmarkRespondLocalA: the same query through the path the sockets use,
// from wire bytes to wire bytes.
func BenchmarkRespondLocalA(b *testing.B) {
	r := newTestResolver(b, Config{}, testBackend())
	q := rawQuery(b, "web.", dns.TypeA, nil)
	out := make([]byte, 0, maxUDPSize)
	b.ReportAllocs()
	for b.Loop() {
		r.respond(q, out, false)
	}
}

// BenchmarkUDPLocalA: round trips of a local A query over a real UDP
// socket on loopback, one client waiting for each answer (latency), and
// clients on every P in parallel (throughput).
func BenchmarkUDPLocalA(b *testing.B) {
	r := newTestResolver(b, Config{}, testBackend())
	addr := startLoopback(b, r)
	q := rawQuery(b, "web.", dns.TypeA, nil)
	b.Run("serial", func(b *testing.B) {
		c := dialUDP(b, addr)
		buf := make([]byte, 512)
		b.ReportAllocs()
		for b.Loop() {
			roundTrip(b, c, q, buf)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			c := dialUDP(b, addr)
			buf := make([]byte, 512)
			for pb.Next() {
				roundTrip(b, c, q, buf)
			}
		})
	})
}

// BenchmarkUDPForwardA: round trips of a forwarded query, through a
// resolver on loopback to an upstream on loopback.
func BenchmarkUDPForwardA(b *testing.B) {
	up := startUpstream(b, "127.0.0.2", answerA)
	r := newTestResolver(b, Config{Upstreams: []netip.AddrPort{up.addr}}, testBackend())
	addr := startLoopback(b, r)
	q := rawQuery(b, "example.com.", dns.TypeA, nil)
	c := dialUDP(b, addr)
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		roundTrip(b, c, q, buf)
	}
}

func dialUDP(b *testing.B, addr netip.AddrPort) *net.UDPConn {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(b *testing.B, c *net.UDPConn, q, buf []byte) {
	if _, err := c.Write(q); err != nil {
		b.Fatal(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		b.Fatal(err)
	}
	if n < headerLen || buf[3]&rcodeMask != 0 {
		b.Fatalf("bad answer %x", buf[:n])
	}
}
