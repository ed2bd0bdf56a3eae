package resolver

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// countMetrics counts what a resolver reports.
type countMetrics struct {
	mu       sync.Mutex
	queries  map[string]int // "outcome rcode"; guarded by mu
	started  int            // guarded by mu
	inflight int            // guarded by mu
}

func (m *countMetrics) Query(o Outcome, rcode int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queries[fmt.Sprint(o, " ", dns.RcodeToString[rcode])]++
}
func (m *countMetrics) ForwardStarted() { m.mu.Lock(); m.started++; m.inflight++; m.mu.Unlock() }
func (m *countMetrics) ForwardDone()    { m.mu.Lock(); m.inflight--; m.mu.Unlock() }

// TestMetrics: each query is counted once, under what was done with it.
func TestMetrics(t *testing.T) {
	up := startUpstream(t, "127.0.0.2", func(u *upstreamServer, w dns.ResponseWriter, m *dns.Msg) {
		if m.Question[0].Name == "fail.example." {
			answerRcode(dns.RcodeServerFailure)(u, w, m)
			return
		}
		answerA(u, w, m)
	})
	for _, tt := range []struct {
		name   string
		qs     []*dns.Msg
		want   string
		starts int
	}{
		{"container name", []*dns.Msg{query("web.", dns.TypeA)}, "container NOERROR", 0},
		{"container PTR", []*dns.Msg{query(mustReverse("10.0.0.2"), dns.TypePTR)}, "container NOERROR", 0},
		{"forwarded", []*dns.Msg{query("a.example.", dns.TypeA)}, "forwarded NOERROR", 1},
		{"cache hit", []*dns.Msg{query("b.example.", dns.TypeA), query("b.example.", dns.TypeA)}, "cached NOERROR", 1},
		{"single label", []*dns.Msg{query("registry.", dns.TypeA)}, "nxdomain NXDOMAIN", 0},
		{"upstream fails", []*dns.Msg{query("fail.example.", dns.TypeA)}, "failed SERVFAIL", 1},
		{"invalid", []*dns.Msg{query("web.", dns.TypeAXFR)}, "invalid REFUSED", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &countMetrics{queries: map[string]int{}}
			b := testBackend()
			b.qualified = true
			r := newTestResolver(t, Config{Upstreams: []netip.AddrPort{up.addr}, Metrics: m, Timeout: time.Second,
				Cache: NewCache(CacheConfig{Size: 16, MaxTTL: time.Hour, MaxNegativeTTL: time.Hour})}, b)
			for _, q := range tt.qs {
				ask(t, r, q, false)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.queries[tt.want] != 1 {
				t.Errorf("counted %v, want %q once", m.queries, tt.want)
			}
			total := 0
			for _, n := range m.queries {
				total += n
			}
			if total != len(tt.qs) {
				t.Errorf("counted %d queries (%v), want %d", total, m.queries, len(tt.qs))
			}
			if m.started != tt.starts || m.inflight != 0 {
				t.Errorf("forwards started %d, in flight %d; want %d, 0", m.started, m.inflight, tt.starts)
			}
		})
	}
}
