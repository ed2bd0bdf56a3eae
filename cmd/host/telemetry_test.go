package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// metricsAgent starts an agent with the bolt store and the bridge driver,
// its metrics also on a TCP port of the test's own namespace.
func metricsAgent(t *testing.T, promAddr string) (*agenttest.Env, *agenttest.Agent) {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	cfg := boltAndBridge(dir, "")
	if promAddr != "" {
		cfg += fmt.Sprintf("telemetry {\n  prometheus_listen = %q\n}\n", promAddr)
	}
	e := agenttest.NewEnv(t, bins, cfg)
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	return e, a
}

// scrape parses the agent's metrics, after checking them with promtool.
func scrape(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value returns the value of the sample of family name whose labels
// include every pair of labels ("k=v"); for histograms, the count; the
// sum over all matching samples.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && have[k] == v
		}
		if !ok {
			continue
		}
		switch {
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// After a burst of attaches, a few deletes and a driver killed, the
// metrics count what was done, on the API socket and on the TCP port
// alike, and pass promtool's checks.
func TestMetricsAfterAttaches(t *testing.T) {
	const prom = "127.0.0.1:19386"
	_, a := metricsAgent(t, prom)
	ctx := context.Background()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "m", Subnet: "10.47.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		req := controller.SandboxCreate{ContainerID: fmt.Sprintf("one%d", i), Networks: []controller.SandboxNetwork{{Network: "m"}}}
		if _, err := a.Client.CreateSandbox(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		attach(t, a.Client, "m", fmt.Sprintf("two%d", i))
	}
	for i := range 3 {
		if err := a.Client.DeleteSandbox(ctx, fmt.Sprintf("one%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	bridge := plugins(t, a)["driver/bridge"]
	if err := syscall.Kill(bridge.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "the bridge driver restarted", func() bool {
		p := plugins(t, a)["driver/bridge"]
		return p.Running && p.PID != bridge.PID
	})

	text, err := a.Client.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, text)
	want := []struct {
		name   string
		labels []string
		value  float64
	}{
		{"sandnet_networks", nil, 1},
		{"sandnet_sandboxes", nil, 22},
		{"sandnet_endpoints", []string{"network=m", "driver=bridge"}, 22},
		{"sandnet_ipam_addresses_used", []string{"network=m", "subnet=10.47.0.0/24"}, 22},
		{"sandnet_ipam_addresses_free", []string{"network=m", "subnet=10.47.0.0/24"}, 253 - 22},
		{"sandnet_api_request_duration_seconds", []string{"route=POST /v1/sandboxes", "code=201"}, 25},
		{"sandnet_api_request_duration_seconds", []string{"route=POST /v1/networks/{ref}/connect", "code=201"}, 5},
		{"sandnet_api_request_duration_seconds", []string{"route=DELETE /v1/sandboxes/{container}", "code=204"}, 3},
		{"sandnet_plugin_restarts_total", []string{"kind=driver", "plugin=bridge"}, 1},
		{"sandnet_plugin_exits_total", []string{"kind=driver", "plugin=bridge"}, 1},
		{"sandnet_plugin_restarts_total", []string{"kind=store", "plugin=bolt"}, 0},
		{"sandnet_dns_queries_total", []string{"rcode=NOERROR"}, 0},
		{"sandnet_dns_refused_total", nil, 0},
		{"sandnet_dns_forwards_in_flight", nil, 0},
	}
	for _, w := range want {
		if got := value(fams, w.name, w.labels...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}
	for _, name := range []string{"sandnet_spare_namespaces_ready", "sandnet_dns_forwarded_total", "sandnet_events_dropped_total"} {
		if fams[name] == nil {
			t.Errorf("no %s in the metrics", name)
		}
	}
	// Every attach called the driver and wrote to the store.
	if got := value(fams, "sandnet_plugin_rpc_duration_seconds", "kind=driver", "plugin=bridge"); got < 25 {
		t.Errorf("bridge driver calls counted: %v, want at least 25", got)
	}
	if got := value(fams, "sandnet_store_operation_duration_seconds", "op=Txn"); got < 25 {
		t.Errorf("store transactions counted: %v, want at least 25", got)
	}
	// Every attach and every create ran its named steps.
	for _, w := range [][]string{
		{"flow=attach", "step=call-driver", "outcome=ok"},
		{"flow=attach", "step=reconcile", "outcome=ok"},
		{"flow=create", "step=register", "outcome=ok"},
	} {
		if got := value(fams, "sandnet_controller_step_duration_seconds", w...); got < 25 {
			t.Errorf("steps %v counted: %v, want at least 25", w, got)
		}
	}

	resp, err := http.Get("http://" + prom + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if got := value(scrape(t, string(body)), "sandnet_sandboxes"); got != 22 {
		t.Errorf("sandnet_sandboxes on %s = %v, want 22", prom, got)
	}
}

// eventReader collects a stream's events in the background.
type eventReader struct {
	mu      sync.Mutex
	got     []events.Event
	dropped int
}

func (r *eventReader) read(next func() (events.Event, error)) {
	for {
		e, err := next()
		if err != nil {
			return
		}
		r.mu.Lock()
		if e.Type == events.TypeDropped {
			r.dropped += e.Dropped
		} else {
			r.got = append(r.got, e)
		}
		r.mu.Unlock()
	}
}

func (r *eventReader) snapshot() ([]events.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.got...), r.dropped
}

func (r *eventReader) types() map[string]int {
	got, _ := r.snapshot()
	out := map[string]int{}
	for _, e := range got {
		out[e.Type]++
	}
	return out
}

// stalledSubscriber opens GET /v1/events on the agent's socket with a
// small buffer and reads nothing until resume is called.
func stalledSubscriber(t *testing.T, socket string) (resume func() *eventReader) {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET /v1/events?buffer=16 HTTP/1.1\r\nHost: sandnet\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return func() *eventReader {
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(resp.Body)
		r := &eventReader{}
		go r.read(func() (e events.Event, err error) { return e, dec.Decode(&e) })
		return r
	}
}

// TestEventsBadQuery: GET /v1/events refuses a query it cannot honour
// with a 400 naming the parameter, instead of streaming.
func TestEventsBadQuery(t *testing.T) {
	_, a := metricsAgent(t, "")
	for _, tc := range []struct {
		q    url.Values
		says string
	}{
		{url.Values{"typ": {"network"}}, `"typ": not a parameter`},
		{url.Values{"type": {"bogus"}}, `type: "bogus" is not an event type`},
		{url.Values{"since": {"yesterday"}}, `since: "yesterday" is not an RFC 3339 time`},
		{url.Values{"buffer": {"0"}}, `buffer: "0" is not a number`},
		{url.Values{"since": {"2026-01-02T00:00:00Z"}, "until": {"2026-01-01T00:00:00Z"}}, `until: 2026-01-01T00:00:00Z is before since`},
	} {
		s, err := a.Client.Events(t.Context(), tc.q)
		if err == nil {
			s.Close()
		}
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.HasPrefix(ae.Message, tc.says) {
			t.Errorf("events %s: %v, want a 400 starting %q", tc.q.Encode(), err, tc.says)
		}
	}
}

// Every kind of event reaches a subscriber, a filter passes only what it
// names, and a subscriber that stops reading neither holds up a burst of
// attaches nor goes unaware: it is told how many events it missed, and
// what it read plus what it missed is everything.
func TestEvents(t *testing.T) {
	env, a := metricsAgent(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resume := stalledSubscriber(t, env.Socket)
	open := func(q url.Values) *eventReader {
		s, err := a.Client.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		r := &eventReader{}
		go r.read(s.Next)
		return r
	}
	all := open(url.Values{"buffer": {"65536"}})
	nets := open(url.Values{"type": {"network"}})
	onEv := open(url.Values{"network": {"ev"}, "type": {"endpoint"}})

	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "ev", Subnet: "10.48.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	attach(t, c, "ev", "c1")
	if err := c.Disconnect(ctx, "ev", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"driver/bridge", "store/bolt"} {
		before := plugins(t, a)[kind]
		if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		agenttest.Eventually(t, kind+" restarted", func() bool {
			p := plugins(t, a)[kind]
			return p.Running && p.PID != before.PID
		})
	}
	// The burst: one-request attaches, then deletes.
	const burst = 150
	for i := range burst {
		req := controller.SandboxCreate{ContainerID: fmt.Sprintf("b%d", i), Networks: []controller.SandboxNetwork{{Network: "ev"}}}
		if _, err := c.CreateSandbox(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	for i := range burst {
		if err := c.DeleteSandbox(ctx, fmt.Sprintf("b%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteNetwork(ctx, "ev"); err != nil {
		t.Fatal(err)
	}

	agenttest.Eventually(t, "every kind of event seen", func() bool {
		tp := all.types()
		for _, k := range events.Types {
			if k != events.TypeDropped && k != events.TypeReload && tp[k] == 0 {
				return false
			}
		}
		return tp[events.TypeNetworkDelete] == 1
	})
	tp := all.types()
	if tp[events.TypeSandboxCreate] != burst+1 || tp[events.TypeConnect] != burst+1 || tp[events.TypeDisconnect] != burst+1 || tp[events.TypeSandboxDelete] != burst+1 {
		t.Fatalf("event counts %v; want %d sandbox creates, connects, disconnects and deletes", tp, burst+1)
	}
	got, dropped := all.snapshot()
	if dropped != 0 {
		t.Fatalf("the reading subscriber missed %d events", dropped)
	}
	for _, e := range got {
		if e.Time.IsZero() || e.Type == events.TypeSandboxCreate && (e.Container == "" || e.SandboxID == "") ||
			(e.Type == events.TypeConnect || e.Type == events.TypeDisconnect) && (e.EndpointID == "" || e.NetworkID == "" || e.Network != "ev" || e.Container == "") ||
			e.Type == events.TypePluginRestart && (e.Plugin == "" || e.PID == 0) {
			t.Fatalf("event lacks its time, names or IDs: %+v", e)
		}
	}
	agenttest.Eventually(t, "the filtered subscriber's two network events", func() bool { return len(nets.types()) == 2 })
	if tp := nets.types(); tp[events.TypeNetworkCreate] != 1 || tp[events.TypeNetworkDelete] != 1 {
		t.Fatalf("type=network subscriber got %v", tp)
	}
	// A network's name selects its endpoints' events however they came:
	// a connect, a create with networks, a disconnect, a sandbox delete.
	agenttest.Eventually(t, "the network=ev subscriber's endpoint events", func() bool {
		tp := onEv.types()
		return tp[events.TypeConnect] == burst+1 && tp[events.TypeDisconnect] == burst+1
	})

	stalled := resume()
	agenttest.Eventually(t, "the stalled subscriber's events and drops adding up to all", func() bool {
		got, dropped := stalled.snapshot()
		everything, _ := all.snapshot()
		return len(got)+dropped == len(everything)
	})
	if _, dropped := stalled.snapshot(); dropped == 0 {
		t.Fatal("the stalled subscriber was not told of any dropped event")
	}
}

// events --until ends the stream there: with --since in the past, the
// kept events between the two, then exit 0; in the future, what comes
// until then.
func TestEventsUntil(t *testing.T) {
	env, a := metricsAgent(t, "")
	ctx := t.Context()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "u1", Subnet: "10.52.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	mid := time.Now()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "u2", Subnet: "10.52.1.0/24"}); err != nil {
		t.Fatal(err)
	}
	networks := func(out string) string {
		var names []string
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var e events.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("%v: %q", err, line)
			}
			names = append(names, e.Network)
		}
		return strings.Join(names, " ")
	}
	out, code := sandnetCmd(t, "events", "--socket", env.Socket, "--format", "json", "--filter", "type=network",
		"--since", "1h", "--until", mid.UTC().Format(time.RFC3339Nano))
	if code != 0 || networks(out) != "u1" {
		t.Fatalf("events --since 1h --until (between the creates): exit %d, want u1's create only\n%s", code, out)
	}
	start := time.Now()
	out, code = sandnetCmd(t, "events", "--socket", env.Socket, "--format", "json", "--filter", "type=network",
		"--since", "1h", "--until", start.Add(time.Second).UTC().Format(time.RFC3339Nano))
	if code != 0 || networks(out) != "u1 u2" || time.Since(start) < time.Second {
		t.Fatalf("events --until a second ahead: exit %d after %v, want both creates and the end of the stream a second on\n%s", code, time.Since(start), out)
	}
	if status, msg := rawRequest(t, env.Socket, "GET", "/v1/events?until=soon", nil); status != 400 || !strings.HasPrefix(msg, `until: "soon" is not an RFC 3339 time`) {
		t.Fatalf("GET /v1/events?until=soon: %d %s", status, msg)
	}
}

// TestEventStreamsLeaveRoomForRequests: clients holding event streams
// open cannot take every connection the agent serves: past half of them
// a stream is refused with a 503 saying why, and an ordinary request is
// still answered at once. 4,100 streams kept every request waiting.
func TestEventStreamsLeaveRoomForRequests(t *testing.T) {
	e, a := metricsAgent(t, "")
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	refused := ""
	for len(conns) < 4200 && refused == "" {
		c, err := net.Dial("unix", e.Socket)
		if err != nil {
			t.Fatalf("after %d streams: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /v1/events HTTP/1.1\r\nHost: sandnet\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stream %d: %v", len(conns), err)
		}
		if resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("stream %d: %d %s", len(conns), resp.StatusCode, b)
			}
			refused = string(b)
		}
	}
	if !strings.Contains(refused, "event streams are open, the most the agent serves at once") {
		t.Fatalf("%d streams open and none refused (last answer %q)", len(conns), refused)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Client.Version(ctx); err != nil {
		t.Fatalf("a request with %d streams open: %v", len(conns)-1, err)
	}
}
