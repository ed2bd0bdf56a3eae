package resolver

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// FuzzQuery feeds raw bytes to the query path the sockets use (respond,
// then forward with no upstreams) over UDP and TCP, and to the dns.Handler
// when miekg/dns can parse them. Nothing may panic, and every answer must
// be a well-formed DNS message for the client's ID that fits the
// transport's limit. Seeds: testdata/fuzz/FuzzQuery.
func FuzzQuery(f *testing.F) {
	r := newTestResolver(f, Config{}, testBackend())
	buf := make([]byte, maxMsgSize)
	out := make([]byte, 0, maxMsgSize)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, tcp := range []bool{false, true} {
			resp, req, act := r.respond(data, out, tcp)
			switch act {
			case actDrop:
				if len(data) >= headerLen && data[2]&(flagQR>>8) == 0 {
					t.Fatalf("tcp=%v: dropped a query", tcp)
				}
				continue
			case actForward:
				q := append([]byte(nil), data[:req.end]...)
				resp = r.forward(t.Context(), q, &req, tcp, buf)
			}
			limit := maxMsgSize
			if !tcp {
				limit = req.udpSize
			}
			checkAnswer(t, data, resp, limit)
		}

		var m dns.Msg
		if m.Unpack(data) != nil {
			return
		}
		for _, tcp := range []bool{false, true} {
			w := &recorder{tcp: tcp}
			r.Handler().ServeDNS(w, &m)
			if len(w.msgs) > 1 {
				t.Fatalf("handler wrote %d messages", len(w.msgs))
			}
			for _, resp := range w.msgs {
				checkAnswer(t, data, resp, maxMsgSize)
			}
		}
	})
}

func checkAnswer(t *testing.T, query, resp []byte, limit int) {
	t.Helper()
	if len(resp) > limit {
		t.Fatalf("answer of %d bytes, limit %d", len(resp), limit)
	}
	var m dns.Msg
	if err := m.Unpack(resp); err != nil {
		t.Fatalf("answer %x to %x does not unpack: %v", resp, query, err)
	}
	if m.Id != binary.BigEndian.Uint16(query) || !m.Response {
		t.Fatalf("answer id %d QR %v to query id %d", m.Id, m.Response, binary.BigEndian.Uint16(query))
	}
}

// TestQueryAllocs bounds what the query path allocates, whatever the
// packet claims: nothing for errors, one string for a local name, over the
// seed corpus and packets with every count at 65535.
func TestQueryAllocs(t *testing.T) {
	r := newTestResolver(t, Config{}, testBackend())
	packets := seedCorpus(t)
	huge := rawQuery(t, "web.", dns.TypeA, func(b []byte) []byte {
		b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11] = 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
		return b
	})
	packets = append(packets, huge, huge[:len(huge)-1], bytes.Repeat([]byte{0xff}, 600))
	out := make([]byte, 0, maxMsgSize)
	for i, p := range packets {
		for _, tcp := range []bool{false, true} {
			allocs := testing.AllocsPerRun(20, func() { r.respond(p, out, tcp) })
			if allocs > 1 {
				t.Errorf("packet %d (%x): %v allocations, want at most 1", i, p, allocs)
			}
		}
	}
}

// seedCorpus reads testdata/fuzz/FuzzQuery.
func seedCorpus(t *testing.T) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzQuery", "*"))
	if err != nil || len(files) < 10 {
		t.Fatalf("seed corpus: %d files, %v", len(files), err)
	}
	var out [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(b), "\n")
		lit := strings.TrimSuffix(strings.TrimSpace(rest), ")")
		lit = strings.TrimPrefix(lit, "[]byte(")
		s, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, []byte(s))
	}
	return out
}

// TestWriteSeedCorpus regenerates testdata/fuzz/FuzzQuery when
// SANDNET_WRITE_CORPUS is set.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("SANDNET_WRITE_CORPUS") == "" {
		t.Skip("set SANDNET_WRITE_CORPUS=1 to rewrite the seed corpus")
	}
	pack := func(m *dns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	edit := func(m *dns.Msg, f func([]byte) []byte) []byte { return f(pack(m)) }
	withOpt := func(name string, qtype uint16, size uint16, do bool) *dns.Msg {
		m := query(name, qtype)
		m.SetEdns0(size, do)
		return m
	}
	cookie := withOpt("WeB.NeT.", dns.TypeA, 1232, true)
	cookie.IsEdns0().Option = append(cookie.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})
	badvers := withOpt("web.", dns.TypeA, 1232, false)
	badvers.IsEdns0().SetVersion(1)
	chaos := query("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	update := query("web.", dns.TypeSOA)
	update.Opcode = dns.OpcodeUpdate
	two := query("web.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "db.", Qtype: dns.TypeA, Qclass: dns.ClassINET})

	seeds := map[string][]byte{
		"a-local":          pack(query("web.", dns.TypeA)),
		"aaaa-local":       pack(query("web.net.", dns.TypeAAAA)),
		"any-local":        pack(query("web.", dns.TypeANY)),
		"mx-nodata":        pack(query("db.", dns.TypeMX)),
		"ptr-v4":           pack(query("2.0.0.10.in-addr.arpa.", dns.TypePTR)),
		"ptr-v6":           pack(query(mustReverse("fd00::2"), dns.TypePTR)),
		"a-forward":        pack(query("example.com.", dns.TypeA)),
		"edns-lots":        pack(withOpt("lots.", dns.TypeA, 65535, false)),
		"edns-small":       pack(withOpt("many.", dns.TypeA, 100, false)),
		"edns-cookie-do":   pack(cookie),
		"edns-badvers":     pack(badvers),
		"chaos":            pack(chaos),
		"update":           pack(update),
		"two-questions":    pack(two),
		"no-question":      pack(&dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}}),
		"axfr":             pack(query("web.", dns.TypeAXFR)),
		"response":         edit(query("web.", dns.TypeA), func(b []byte) []byte { b[2] |= 0x80; return b }),
		"short":            []byte{0x12, 0x34, 1, 0, 0, 1},
		"compressed-qname": {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1},
		"label-64":         append(append([]byte{0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64}, bytes.Repeat([]byte("a"), 64)...), 0, 0, 1, 0, 1),
		"counts-lie":       edit(query("web.", dns.TypeA), func(b []byte) []byte { b[6], b[7], b[10], b[11] = 0xff, 0xff, 0xff, 0xff; return b }),
		"rdlen-past-end":   edit(withOpt("web.", dns.TypeA, 1232, false), func(b []byte) []byte { b[len(b)-1] = 40; return b }),
		"dot-in-label":     {0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'w', 'e', 'b', '.', 'n', 'e', 't', 0, 0, 1, 0, 1},
		"trailing-garbage": append(pack(query("web.", dns.TypeA)), 0xde, 0xad, 0xbe, 0xef),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzQuery")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(b)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
