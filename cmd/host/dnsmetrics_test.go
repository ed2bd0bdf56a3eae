package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestDNSMetrics: dig queries inside a sandbox move the agent's DNS
// metrics on its /metrics endpoint, each under what the resolver did with
// it: a container's name, a forward, a cache hit, a single label kept
// home, an upstream failure.
func TestDNSMetrics(t *testing.T) {
	nstest.RequireRoot(t)
	const prom = "127.0.0.1:19387"
	up := startFakeUpstream(t, "127.0.0.1:0")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+fmt.Sprintf(
		"resolver {\n  upstreams = [%q]\n}\ntelemetry {\n  prometheus_listen = %q\n}\n", up.addr, prom)).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "met"}); err != nil {
		t.Fatal(err)
	}
	web := attach(t, a.Client, "met", "web")
	cli := attach(t, a.Client, "met", "cli")

	get := func() map[string]*dto.MetricFamily {
		t.Helper()
		resp, err := http.Get("http://" + prom + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return scrape(t, string(body))
	}
	series := []struct {
		name   string
		labels []string
		moves  float64
	}{
		{"sandnet_dns_queries_total", []string{"outcome=container", "rcode=NOERROR"}, 2},
		{"sandnet_dns_queries_total", []string{"outcome=forwarded", "rcode=NOERROR"}, 1},
		{"sandnet_dns_queries_total", []string{"outcome=forwarded", "rcode=NXDOMAIN"}, 1},
		{"sandnet_dns_queries_total", []string{"outcome=cached", "rcode=NOERROR"}, 1},
		{"sandnet_dns_queries_total", []string{"outcome=nxdomain", "rcode=NXDOMAIN"}, 1},
		{"sandnet_dns_queries_total", []string{"outcome=failed", "rcode=SERVFAIL"}, 1},
		{"sandnet_dns_queries_total", []string{"outcome=refused"}, 0},
		{"sandnet_dns_forwarded_total", nil, 3},
		{"sandnet_dns_forwards_in_flight", nil, 0},
	}
	before := get()
	for _, s := range series {
		if value(before, s.name, s.labels...) < 0 {
			t.Fatalf("no %s %v on /metrics before any query", s.name, s.labels)
		}
	}

	if got := dig(t, cli.key, "+short", "web"); got != web.addr.String() {
		t.Fatalf("dig web = %q", got)
	}
	if got := dig(t, cli.key, "+short", "+tcp", "web.met"); got != web.addr.String() {
		t.Fatalf("dig +tcp web.met = %q", got)
	}
	for range 2 { // forwarded, then from the cache
		if got := dig(t, cli.key, "+short", "kept.example"); got != "192.0.2.1" {
			t.Fatalf("dig kept.example = %q", got)
		}
	}
	for name, status := range map[string]string{"registry": "NXDOMAIN", "nx.example": "NXDOMAIN", "fail.example": "SERVFAIL"} {
		if got := dig(t, cli.key, name); !strings.Contains(got, "status: "+status) {
			t.Fatalf("dig %s: want %s:\n%s", name, status, got)
		}
	}

	after := get()
	for _, s := range series {
		if d := value(after, s.name, s.labels...) - value(before, s.name, s.labels...); d != s.moves {
			t.Errorf("%s %v moved by %v, want %v", s.name, s.labels, d, s.moves)
		}
	}
}
