package resolver

import (
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestHandler(t *testing.T) {
	type tc struct {
		name     string
		q        *dns.Msg
		tcp      bool
		internal bool // Backend.Forward() false
		noEcho   bool // the question is not echoed (NOTIMP)
		rcode    int
		aa       bool
		answers  []string // A/AAAA addresses or PTR targets, any order
		check    func(t *testing.T, q, m *dns.Msg)
	}
	with := func(m *dns.Msg, f func(m *dns.Msg)) *dns.Msg { f(m); return m }
	web := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"}
	tests := []tc{
		{name: "A has every address", q: query("web.", dns.TypeA), aa: true, answers: web},
		{name: "A over TCP", q: query("web.", dns.TypeA), tcp: true, aa: true, answers: web},
		{name: "AAAA", q: query("web.", dns.TypeAAAA), aa: true, answers: []string{"fd00::2"}},
		{name: "name.network", q: query("web.net.", dns.TypeA), aa: true, answers: web},
		{
			name: "case-insensitive, question echoed as asked",
			q:    query("WeB.NeT.", dns.TypeA), aa: true, answers: web,
			check: func(t *testing.T, q, m *dns.Msg) {
				if got := m.Question[0].Name; got != "WeB.NeT." {
					t.Errorf("question name %q, want the client's WeB.NeT.", got)
				}
				if got := m.Answer[0].Header().Name; got != "WeB.NeT." {
					t.Errorf("answer owner %q, want WeB.NeT.", got)
				}
			},
		},
		{
			name: "TTL 600, RD copied, RA set",
			q:    query("db.", dns.TypeA), aa: true, answers: []string{"10.0.0.5"},
			check: func(t *testing.T, q, m *dns.Msg) {
				if ttl := m.Answer[0].Header().Ttl; ttl != TTL {
					t.Errorf("TTL %d, want %d", ttl, TTL)
				}
				if !m.RecursionDesired || !m.RecursionAvailable {
					t.Errorf("RD %v RA %v, want both", m.RecursionDesired, m.RecursionAvailable)
				}
			},
		},
		{
			name: "RD clear stays clear",
			q:    with(query("db.", dns.TypeA), func(m *dns.Msg) { m.RecursionDesired = false }),
			aa:   true, answers: []string{"10.0.0.5"},
			check: func(t *testing.T, q, m *dns.Msg) {
				if m.RecursionDesired {
					t.Error("RD set in the answer to a query without it")
				}
			},
		},
		{name: "ANY has A and AAAA", q: query("web.", dns.TypeANY), aa: true, answers: append(slices.Clone(web), "fd00::2")},
		{name: "NODATA: AAAA of an IPv4-only name", q: query("db.", dns.TypeAAAA), aa: true},
		{name: "NODATA: A of an IPv6-only name", q: query("v6only.", dns.TypeA), aa: true},
		{name: "NODATA: MX of a local name", q: query("web.", dns.TypeMX), aa: true},
		{name: "NODATA: TXT of a local name over TCP", q: query("web.net.", dns.TypeTXT), tcp: true, aa: true},
		{name: "PTR IPv4", q: query("2.0.0.10.in-addr.arpa.", dns.TypePTR), aa: true, answers: []string{"web.net."}},
		{name: "PTR IPv4, upper case", q: query("2.0.0.10.IN-ADDR.ARPA.", dns.TypePTR), aa: true, answers: []string{"web.net."}},
		{name: "PTR IPv6", q: query(mustReverse("fd00::2"), dns.TypePTR), aa: true, answers: []string{"web.net."}},
		{name: "NODATA: A of a local reverse name", q: query("2.0.0.10.in-addr.arpa.", dns.TypeA), aa: true},
		{name: "unknown name forwarded, no upstream: SERVFAIL", q: query("example.com.", dns.TypeA), rcode: dns.RcodeServerFailure},
		{name: "PTR of a container whose name DNS cannot hold: no data, not forwarded", q: query("7.0.0.10.in-addr.arpa.", dns.TypePTR), aa: true},
		{name: "unknown PTR forwarded, no upstream: SERVFAIL", q: query("9.0.0.10.in-addr.arpa.", dns.TypePTR), rcode: dns.RcodeServerFailure},
		{name: "partial reverse name forwarded", q: query("10.in-addr.arpa.", dns.TypePTR), rcode: dns.RcodeServerFailure},
		{name: "root forwarded", q: query(".", dns.TypeNS), rcode: dns.RcodeServerFailure},
		{name: "internal: unknown name NXDOMAIN", q: query("example.com.", dns.TypeA), internal: true, rcode: dns.RcodeNameError, aa: true},
		{name: "internal: unknown PTR NXDOMAIN", q: query("9.0.0.10.in-addr.arpa.", dns.TypePTR), internal: true, rcode: dns.RcodeNameError, aa: true},
		{name: "internal: local name answered", q: query("web.", dns.TypeA), internal: true, aa: true, answers: web},
		{
			name: "EDNS0 echoed, DO copied",
			q:    with(query("web.", dns.TypeA), func(m *dns.Msg) { m.SetEdns0(1232, true) }),
			aa:   true, answers: web,
			check: func(t *testing.T, q, m *dns.Msg) {
				opt := m.IsEdns0()
				if opt == nil {
					t.Fatal("no OPT in the answer to an EDNS0 query")
				}
				if opt.UDPSize() != maxUDPSize || !opt.Do() || opt.Version() != 0 {
					t.Errorf("OPT size %d DO %v version %d, want %d true 0", opt.UDPSize(), opt.Do(), opt.Version(), maxUDPSize)
				}
			},
		},
		{
			name: "EDNS0 with a cookie option",
			q: with(query("web.", dns.TypeA), func(m *dns.Msg) {
				m.SetEdns0(1232, false)
				opt := m.IsEdns0()
				opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
			}),
			aa: true, answers: web,
		},
		{
			name: "no OPT without EDNS0",
			q:    query("web.", dns.TypeA), aa: true, answers: web,
			check: func(t *testing.T, q, m *dns.Msg) {
				if m.IsEdns0() != nil {
					t.Error("OPT in the answer to a query without EDNS0")
				}
			},
		},
		{name: "no question: FORMERR", q: &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}}, rcode: dns.RcodeFormatError},
		{
			name: "two questions: FORMERR",
			q: with(query("web.", dns.TypeA), func(m *dns.Msg) {
				m.Question = append(m.Question, dns.Question{Name: "db.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			}),
			rcode: dns.RcodeFormatError,
		},
		{
			name:  "CHAOS version.bind: REFUSED",
			q:     with(query("version.bind.", dns.TypeTXT), func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }),
			rcode: dns.RcodeRefused,
		},
		{
			name:  "class ANY: REFUSED",
			q:     with(query("web.", dns.TypeA), func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }),
			rcode: dns.RcodeRefused,
		},
		{name: "AXFR: REFUSED", q: query("web.", dns.TypeAXFR), tcp: true, rcode: dns.RcodeRefused},
		{name: "IXFR: REFUSED", q: query("example.com.", dns.TypeIXFR), rcode: dns.RcodeRefused},
		{name: "qtype OPT: FORMERR", q: query("web.", dns.TypeOPT), rcode: dns.RcodeFormatError},
		{
			name:  "UPDATE: NOTIMP",
			q:     with(query("web.", dns.TypeSOA), func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }),
			rcode: dns.RcodeNotImplemented, noEcho: true,
		},
		{
			name:  "NOTIFY: NOTIMP",
			q:     with(query("web.", dns.TypeSOA), func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }),
			rcode: dns.RcodeNotImplemented, noEcho: true,
		},
		{
			name: "EDNS version 1: BADVERS with OPT",
			q: with(query("web.", dns.TypeA), func(m *dns.Msg) {
				m.SetEdns0(1232, false)
				m.IsEdns0().SetVersion(1)
			}),
			rcode: dns.RcodeBadVers,
			check: func(t *testing.T, q, m *dns.Msg) {
				if m.IsEdns0() == nil {
					t.Error("BADVERS without OPT")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBackend()
			b.noForward = tt.internal
			r := newTestResolver(t, Config{}, b)
			m := ask(t, r, tt.q, tt.tcp)
			if m.Id != tt.q.Id || !m.Response || m.Opcode != tt.q.Opcode {
				t.Errorf("id %d response %v opcode %d, want %d true %d", m.Id, m.Response, m.Opcode, tt.q.Id, tt.q.Opcode)
			}
			if m.Rcode != tt.rcode {
				t.Errorf("rcode %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if m.Authoritative != tt.aa {
				t.Errorf("AA %v, want %v", m.Authoritative, tt.aa)
			}
			if m.Truncated {
				t.Error("TC set")
			}
			if !m.RecursionAvailable {
				t.Error("RA clear")
			}
			if tt.noEcho && len(m.Question) != 0 {
				t.Errorf("question %v echoed", m.Question)
			}
			if !tt.noEcho && len(tt.q.Question) == 1 && (len(m.Question) != 1 || m.Question[0] != tt.q.Question[0]) {
				t.Errorf("question %v, want %v echoed", m.Question, tt.q.Question)
			}
			var got []string
			for _, rr := range m.Answer {
				switch rr := rr.(type) {
				case *dns.A:
					got = append(got, rr.A.String())
				case *dns.AAAA:
					got = append(got, rr.AAAA.String())
				case *dns.PTR:
					got = append(got, rr.Ptr)
				default:
					t.Errorf("unexpected answer %v", rr)
				}
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.answers))
			if !slices.Equal(got, want) {
				t.Errorf("answers %v, want %v", got, want)
			}
			if len(m.Ns) != 0 || len(m.Extra) > 1 {
				t.Errorf("authority %v additional %v, want none (but OPT)", m.Ns, m.Extra)
			}
			if tt.check != nil {
				tt.check(t, tt.q, m)
			}
		})
	}
}

func mustReverse(ip string) string {
	s, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return s
}

func TestHandlerDropsResponses(t *testing.T) {
	r := newTestResolver(t, Config{}, testBackend())
	q := query("web.", dns.TypeA)
	q.Response = true
	for _, tcp := range []bool{false, true} {
		if raw := serve(t, r, q, tcp); raw != nil {
			t.Errorf("tcp=%v: answered a response: %x", tcp, raw)
		}
	}
}

// TestRoundRobin checks that every answer holds all addresses, in the
// backend's order rotated, and that consecutive answers start with
// different addresses.
func TestRoundRobin(t *testing.T) {
	r := newTestResolver(t, Config{}, testBackend())
	order := []string{"10.0.0.2", "10.0.0.3", "10.0.0.4"}
	firsts := map[string]int{}
	for i := range 3 * len(order) {
		m := ask(t, r, query("web.", dns.TypeA), i%2 == 1)
		got := answerAddrs(m)
		if len(got) != len(order) {
			t.Fatalf("answer %d: %v, want all of %v", i, got, order)
		}
		start := slices.Index(order, got[0])
		for j := range got {
			if got[j] != order[(start+j)%len(order)] {
				t.Fatalf("answer %d: %v is not a rotation of %v", i, got, order)
			}
		}
		firsts[got[0]]++
	}
	for _, a := range order {
		if firsts[a] != 3 {
			t.Errorf("first addresses %v, want each of %v first 3 times out of 9", firsts, order)
			break
		}
	}
}

func TestTruncation(t *testing.T) {
	tests := []struct {
		name  string
		q     *dns.Msg
		tcp   bool
		limit int // size the packed answer must fit
		count int // A records expected
		tc    bool
	}{
		// 12 header + 10 question ("many." A IN) + 16 per A record.
		{name: "UDP 512", q: query("many.", dns.TypeA), limit: 512, count: (512 - 22) / 16, tc: true},
		{name: "TCP complete", q: query("many.", dns.TypeA), tcp: true, limit: maxMsgSize, count: 40},
		{name: "UDP small answer not cut", q: query("web.", dns.TypeA), limit: 512, count: 3},
		// With EDNS0 the OPT record (11 bytes) must fit too.
		{name: "UDP EDNS0 1232", q: queryEDNS("lots.", dns.TypeA, 1232), limit: 1232, count: (1232 - 22 - 11) / 16, tc: true},
		{name: "UDP EDNS0 under 512 counts as 512", q: queryEDNS("lots.", dns.TypeA, 100), limit: 512, count: (512 - 22 - 11) / 16, tc: true},
		{name: "UDP EDNS0 65535 clamped to 4096", q: queryEDNS("lots.", dns.TypeA, 65535), limit: maxUDPSize, count: (maxUDPSize - 22 - 11) / 16, tc: true},
		{name: "UDP EDNS0 fits 40", q: queryEDNS("many.", dns.TypeA, 4096), limit: 4096, count: 40},
		{name: "TCP EDNS0 complete", q: queryEDNS("lots.", dns.TypeA, 1232), tcp: true, limit: maxMsgSize, count: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestResolver(t, Config{}, testBackend())
			raw := serve(t, r, tt.q, tt.tcp)
			if len(raw) > tt.limit {
				t.Errorf("answer of %d bytes, limit %d", len(raw), tt.limit)
			}
			m := new(dns.Msg)
			if err := m.Unpack(raw); err != nil {
				t.Fatalf("answer does not unpack: %v", err)
			}
			if m.Truncated != tt.tc || len(m.Answer) != tt.count || m.Rcode != dns.RcodeSuccess {
				t.Errorf("TC %v, %d answers, rcode %d; want TC %v, %d answers, NOERROR",
					m.Truncated, len(m.Answer), m.Rcode, tt.tc, tt.count)
			}
			if (tt.q.IsEdns0() != nil) != (m.IsEdns0() != nil) {
				t.Errorf("OPT in query %v, in answer %v", tt.q.IsEdns0() != nil, m.IsEdns0() != nil)
			}
			seen := map[string]bool{}
			for _, a := range answerAddrs(m) {
				if seen[a] {
					t.Errorf("address %s twice", a)
				}
				seen[a] = true
			}
		})
	}
}

// rawQuery packs name/qtype with the given ID and lets edit change the
// bytes.
func rawQuery(t testing.TB, name string, qtype uint16, edit func([]byte) []byte) []byte {
	t.Helper()
	q := query(name, qtype)
	q.Id = 0x1234
	b, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		b = edit(b)
	}
	return b
}

// TestRawQueries feeds hand-made packets to the query path the sockets
// use: what miekg/dns would refuse to pack.
func TestRawQueries(t *testing.T) {
	header := func(qd, an, ns, ar uint16) []byte {
		return []byte{0x12, 0x34, 0x01, 0x00, byte(qd >> 8), byte(qd), byte(an >> 8), byte(an), byte(ns >> 8), byte(ns), byte(ar >> 8), byte(ar)}
	}
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	aIN := []byte{0, 1, 0, 1}
	web := []byte("\x03web\x00")
	opt := []byte{0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0} // root, OPT, 1232
	long := strings.Repeat("\x3f"+strings.Repeat("a", 63), 4) + "\x00"

	tests := []struct {
		name   string
		msg    []byte
		rcode  int // drop: no answer
		echo   bool
		answer int
	}{
		{name: "empty", msg: nil, rcode: drop},
		{name: "short header", msg: header(1, 0, 0, 0)[:11], rcode: drop},
		{name: "response", msg: cat([]byte{0x12, 0x34, 0x81, 0x00}, header(1, 0, 0, 0)[4:], web, aIN), rcode: drop},
		{name: "header only", msg: header(1, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "no question", msg: header(0, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "two questions", msg: cat(header(2, 0, 0, 0), web, aIN, web, aIN), rcode: dns.RcodeFormatError},
		{name: "name not ended", msg: cat(header(1, 0, 0, 0), []byte("\x03web\x03ne")), rcode: dns.RcodeFormatError},
		{name: "no type and class", msg: cat(header(1, 0, 0, 0), web, []byte{0, 1}), rcode: dns.RcodeFormatError},
		{name: "compressed question", msg: cat(header(1, 0, 0, 0), []byte{0xc0, 12}, aIN), rcode: dns.RcodeFormatError},
		{name: "label of 64", msg: cat(header(1, 0, 0, 0), []byte("\x40"+strings.Repeat("a", 64)+"\x00"), aIN), rcode: dns.RcodeFormatError},
		{name: "name over 255", msg: cat(header(1, 0, 0, 0), []byte(long), aIN), rcode: dns.RcodeFormatError},
		{name: "answer count lies", msg: cat(header(1, 65535, 0, 0), web, aIN), rcode: dns.RcodeFormatError, echo: true},
		{name: "additional count lies", msg: cat(header(1, 0, 0, 65535), web, aIN, opt), rcode: dns.RcodeFormatError, echo: true},
		{name: "record past the end", msg: cat(header(1, 0, 0, 1), web, aIN, []byte{0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 9, 1}), rcode: dns.RcodeFormatError, echo: true},
		{name: "two OPT", msg: cat(header(1, 0, 0, 2), web, aIN, opt, opt), rcode: dns.RcodeFormatError, echo: true},
		{name: "OPT not at the root", msg: cat(header(1, 0, 0, 1), web, aIN, []byte("\x01x"), opt), rcode: dns.RcodeFormatError, echo: true},
		{name: "opcode STATUS", msg: cat([]byte{0x12, 0x34, 0x10, 0x00}, header(1, 0, 0, 0)[4:], web, aIN), rcode: dns.RcodeNotImplemented},
		{name: "qtype 0", msg: cat(header(1, 0, 0, 0), web, []byte{0, 0, 0, 1}), rcode: dns.RcodeFormatError, echo: true},
		{name: "valid", msg: cat(header(1, 0, 0, 0), web, aIN), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "valid with EDNS0", msg: cat(header(1, 0, 0, 1), web, aIN, opt), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "EDNS0 with a cookie", msg: cat(header(1, 0, 0, 1), web, aIN, opt[:9], []byte{0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "EDNS0 version 1 with a cookie", msg: cat(header(1, 0, 0, 1), web, aIN, opt[:6], []byte{1, 0, 0}, []byte{0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}), rcode: dns.RcodeBadVers, echo: true},
		{name: "OPT after another record", msg: cat(header(1, 0, 0, 2), web, aIN, []byte{0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 1, 'x'}, opt), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "trailing bytes ignored", msg: cat(header(1, 0, 0, 0), web, aIN, []byte{1, 2, 3}), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "records in a query skipped", msg: cat(header(1, 1, 0, 0), web, aIN, []byte{0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4}), rcode: dns.RcodeSuccess, echo: true, answer: 3},
		{name: "label with a dot is not local", msg: cat(header(1, 0, 0, 0), []byte("\x07web.net\x00"), aIN), rcode: dns.RcodeServerFailure, echo: true},
	}
	for _, tt := range tests {
		for _, tcp := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				r := newTestResolver(t, Config{}, testBackend())
				resp := answerRaw(t, r, tt.msg, tcp)
				if tt.rcode == drop {
					if resp != nil {
						t.Fatalf("answered %x, want no answer", resp)
					}
					return
				}
				m := new(dns.Msg)
				if err := m.Unpack(resp); err != nil {
					t.Fatalf("answer %x does not unpack: %v", resp, err)
				}
				if m.Id != 0x1234 || !m.Response || m.Rcode != tt.rcode || len(m.Answer) != tt.answer {
					t.Errorf("id %#x QR %v rcode %s answers %d; want 0x1234 true %s %d",
						m.Id, m.Response, dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[tt.rcode], tt.answer)
				}
				if (len(m.Question) == 1) != tt.echo {
					t.Errorf("question echoed: %v, want %v", m.Question, tt.echo)
				}
			})
		}
	}
}

// answerRaw runs a raw packet through respond and, for a forward, through
// forward: what serveUDP and serveConn do.
func answerRaw(t testing.TB, r *Resolver, msg []byte, tcp bool) []byte {
	t.Helper()
	out := make([]byte, 0, maxMsgSize)
	resp, req, act := r.respond(msg, out, tcp)
	switch act {
	case actDrop:
		return nil
	case actForward:
		q := append([]byte(nil), msg[:req.end]...)
		return r.forward(t.Context(), q, &req, tcp, make([]byte, maxMsgSize))
	}
	return append([]byte(nil), resp...)
}
