package telemetry

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/resolver"
)

// Store calls count as store operations; only failures that are not
// answers (not found, a compare-and-swap conflict) count as errors.
func TestStoreErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.PluginCall("store", "bolt", "/sandnet.store.v1.Store/Get", time.Millisecond, status.Error(codes.NotFound, "no key"))
	m.PluginCall("store", "bolt", "/sandnet.store.v1.Store/Txn", time.Millisecond, status.Error(codes.Aborted, "conflict"))
	m.PluginCall("store", "bolt", "/sandnet.store.v1.Store/Txn", time.Millisecond, status.Error(codes.Unavailable, "down"))
	m.PluginCall("driver", "bridge", "/sandnet.driver.v1.Driver/Join", time.Millisecond, nil)
	want := `
# HELP sandnet_store_errors_total Store operations that failed, by operation and gRPC code; not found and compare-and-swap conflicts are answers, not errors.
# TYPE sandnet_store_errors_total counter
sandnet_store_errors_total{code="Unavailable",op="Txn"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sandnet_store_errors_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.storeOps); n != 2 {
		t.Fatalf("store operation series: %d, want 2 (Get, Txn)", n)
	}
	if n := testutil.CollectAndCount(m.pluginCalls); n != 4 {
		t.Fatalf("plugin call series: %d, want 4", n)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// DNS outcomes land under their outcome and rcode; REFUSED for the
// in-flight bound also counts in refused_total, REFUSED for a zone
// transfer does not.
func TestDNSQueries(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	d := m.DNS()
	d.Query(resolver.OutcomeContainer, dns.RcodeSuccess)
	d.Query(resolver.OutcomeCached, dns.RcodeNameError)
	d.Query(resolver.OutcomeRefused, dns.RcodeRefused)
	d.Query(resolver.OutcomeInvalid, dns.RcodeRefused)
	d.Query(resolver.OutcomeInvalid, dns.RcodeBadVers)
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"container", "NOERROR"}, 1},
		{[]string{"cached", "NXDOMAIN"}, 1},
		{[]string{"refused", "REFUSED"}, 1},
		{[]string{"invalid", "REFUSED"}, 1},
		{[]string{"invalid", "BADVERS"}, 1},
		{[]string{"forwarded", "NOERROR"}, 0},
	} {
		if got := testutil.ToFloat64(m.dns.queries.WithLabelValues(c.labels...)); got != c.want {
			t.Errorf("queries_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	if got := testutil.ToFloat64(m.dns.refused); got != 1 {
		t.Errorf("refused_total = %v, want 1", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %v", problems, err)
	}
}

// A scrape whose store reads fail still reports what the agent holds in
// memory (sandboxes, stubs, spares, waiters); only the store's counts
// are left out.
func TestStateWithoutTheStore(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg)
	if err != nil {
		t.Fatal(err)
	}
	err = m.WatchController(func(context.Context) (*controller.Stats, error) {
		return &controller.Stats{Sandboxes: 3, Stubs: 1, SpareNamespaces: 2}, errors.New("store plugin unavailable")
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	Handler(reg, hclog.NewNullLogger()).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, line := range []string{"sandnet_sandboxes 3", "sandnet_stub_sandboxes 1", "sandnet_spare_namespaces_ready 2"} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("a scrape without the store lacks %q", line)
		}
	}
	if strings.Contains(body, "sandnet_networks ") {
		t.Error("a scrape without the store reports a network count")
	}
}
