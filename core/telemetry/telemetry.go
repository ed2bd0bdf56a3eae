// Package telemetry holds the agent's Prometheus metrics: API request and
// plugin call latencies, plugin restarts, store operations and errors,
// the counts of networks, endpoints, sandboxes, spare namespaces and
// addresses (read from the controller at scrape time), and the embedded
// DNS resolvers' counters.
//
// Nothing is registered globally: New registers the families on the
// registry it is given, and the owner serves that registry (the agent, at
// GET /v1/metrics and on telemetry { prometheus_listen }).
package telemetry

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/resolver"
)

const namespace = "sandnet"

// Metrics are the agent's metric families. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg prometheus.Registerer

	apiRequests    *prometheus.HistogramVec
	pluginCalls    *prometheus.HistogramVec
	pluginRestarts *prometheus.CounterVec
	pluginExits    *prometheus.CounterVec
	storeOps       *prometheus.HistogramVec
	storeErrors    *prometheus.CounterVec
	steps          *prometheus.HistogramVec
	eventsDropped  prometheus.Counter
	dns            *dnsMetrics
}

// latencyBuckets run from 100µs to 10s: an attach is a few milliseconds,
// a store write on Consul tens, a plugin start hundreds.
var latencyBuckets = prometheus.ExponentialBucketsRange(0.0001, 10, 16)

// stepBuckets run from 10µs to 1s: a step of an attach takes from tens of
// microseconds (a reservation in memory) to a few milliseconds (the
// driver's call).
var stepBuckets = prometheus.ExponentialBucketsRange(0.00001, 1, 16)

// New registers the agent's metric families on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reg: reg,
		apiRequests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time to answer an API request, by route pattern and HTTP status code.",
			Buckets: latencyBuckets,
		}, []string{"route", "code"}),
		pluginCalls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "plugin", Name: "rpc_duration_seconds",
			Help:    "Time of a gRPC call to a plugin, by plugin kind, plugin name, method and gRPC code.",
			Buckets: latencyBuckets,
		}, []string{"kind", "plugin", "method", "code"}),
		pluginRestarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "plugin", Name: "restarts_total",
			Help: "Plugins started again after their process died or stopped answering health checks, or after a reload changed their block.",
		}, []string{"kind", "plugin"}),
		pluginExits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "plugin", Name: "exits_total",
			Help: "Plugin processes that died or were restarted as unhealthy, without the agent asking them to stop.",
		}, []string{"kind", "plugin"}),
		storeOps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "store", Name: "operation_duration_seconds",
			Help:    "Time of a store operation (Get, Put, Txn, List, ...), by operation.",
			Buckets: latencyBuckets,
		}, []string{"op"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "store", Name: "errors_total",
			Help: "Store operations that failed, by operation and gRPC code; not found and compare-and-swap conflicts are answers, not errors.",
		}, []string{"op", "code"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "controller", Name: "step_duration_seconds",
			Help:    "Time of one named step of a create or an attach (docs/architecture.md lists them), by flow, step and outcome.",
			Buckets: stepBuckets,
		}, []string{"flow", "step", "outcome"}),
		eventsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "events", Name: "dropped_total",
			Help: "Events not delivered to a subscriber whose buffer was full.",
		}),
		dns: newDNSMetrics(),
	}
	cs := []prometheus.Collector{m.apiRequests, m.pluginCalls, m.pluginRestarts, m.pluginExits, m.storeOps, m.storeErrors, m.steps, m.eventsDropped}
	cs = append(cs, m.dns.collectors()...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Handler serves g's metrics in the Prometheus text format. A collector
// that fails (the store unreachable) leaves its families out of that
// scrape, logged to log at warn level; the others are still served.
func Handler(g prometheus.Gatherer, log hclog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	})
}

// APIRequest records one answered API request.
func (m *Metrics) APIRequest(route string, code int, d time.Duration) {
	m.apiRequests.WithLabelValues(route, strconv.Itoa(code)).Observe(d.Seconds())
}

// PluginCall records one gRPC call to a plugin; method is the full gRPC
// method name (/pkg.Service/Method) or the bare method. Calls to the store
// also count as store operations.
func (m *Metrics) PluginCall(kind, name, method string, d time.Duration, err error) {
	method = method[strings.LastIndexByte(method, '/')+1:]
	code := status.Code(err)
	m.pluginCalls.WithLabelValues(kind, name, method, code.String()).Observe(d.Seconds())
	if kind != "store" {
		return
	}
	m.storeOps.WithLabelValues(method).Observe(d.Seconds())
	switch code {
	case codes.OK, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
	default:
		m.storeErrors.WithLabelValues(method, code.String()).Inc()
	}
}

// Step records one named step of a create or an attach (flow "create"
// or "attach"); a step that failed counts under outcome "error".
func (m *Metrics) Step(flow, step string, d time.Duration, err error) {
	outcome := "ok"
	switch {
	case controller.Retried(err):
		outcome = "retry" // a race lost to another writer: the flow runs again
	case err != nil:
		outcome = "error"
	}
	m.steps.WithLabelValues(flow, step, outcome).Observe(d.Seconds())
}

// PluginRestarted counts a plugin started again.
func (m *Metrics) PluginRestarted(kind, name string) {
	m.pluginRestarts.WithLabelValues(kind, name).Inc()
}

// PluginExited counts a plugin process that went away unasked.
func (m *Metrics) PluginExited(kind, name string) {
	m.pluginExits.WithLabelValues(kind, name).Inc()
}

// EventsDropped counts n events a subscriber missed.
func (m *Metrics) EventsDropped(n int) { m.eventsDropped.Add(float64(n)) }

// StatsFunc reads the controller's counts.
type StatsFunc func(ctx context.Context) (*controller.Stats, error)

// WatchController registers the gauges read from the controller at each
// scrape: networks, endpoints by network, sandboxes, stub sandboxes, spare
// namespaces, and addresses used and free by network and subnet.
func (m *Metrics) WatchController(stats StatsFunc) error {
	return m.reg.Register(&stateCollector{stats: stats})
}

// scrapeTimeout bounds the store reads of one scrape.
const scrapeTimeout = 5 * time.Second

var (
	descNetworks = prometheus.NewDesc("sandnet_networks", "Networks of this host (local ones and global ones).", nil, nil)
	descEPs      = prometheus.NewDesc("sandnet_endpoints", "Endpoints of a network.", []string{"network", "driver"}, nil)
	descSBs      = prometheus.NewDesc("sandnet_sandboxes", "Sandboxes, stubs included.", nil, nil)
	descStubs    = prometheus.NewDesc("sandnet_stub_sandboxes", "Sandboxes read back after a restart that no container claimed yet.", nil, nil)
	descSpares   = prometheus.NewDesc("sandnet_spare_namespaces_ready", "Namespaces made ahead of time and ready for a sandbox create.", nil, nil)
	descWaiters  = prometheus.NewDesc("sandnet_driver_restart_waiters", "Requests waiting for a driver plugin to restart and be replayed.", nil, nil)
	descUsed     = prometheus.NewDesc("sandnet_ipam_addresses_used", "Addresses allocated in a network's subnet.", []string{"network", "subnet"}, nil)
	descFree     = prometheus.NewDesc("sandnet_ipam_addresses_free", "Addresses dynamic allocation may still hand out in a network's subnet.", []string{"network", "subnet"}, nil)
)

// stateCollector reads the controller's counts when scraped.
type stateCollector struct {
	stats StatsFunc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descNetworks, descEPs, descSBs, descStubs, descSpares, descWaiters, descUsed, descFree} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.stats(ctx)
	if st == nil {
		ch <- prometheus.NewInvalidMetric(descNetworks, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if err != nil {
		// The store did not answer: what the agent holds in memory is
		// still reported, the store's counts are not.
		ch <- prometheus.NewInvalidMetric(descNetworks, err)
	} else {
		gauge(descNetworks, float64(len(st.Networks)))
	}
	gauge(descSBs, float64(st.Sandboxes))
	gauge(descStubs, float64(st.Stubs))
	gauge(descSpares, float64(st.SpareNamespaces))
	gauge(descWaiters, float64(st.DriverWaiters))
	for _, n := range st.Networks {
		gauge(descEPs, float64(n.Endpoints), n.Name, n.Driver)
		for _, p := range n.Pools {
			gauge(descUsed, float64(p.Used), n.Name, p.Subnet.String())
			gauge(descFree, p.Free, n.Name, p.Subnet.String())
		}
	}
}

// TrafficFunc reads the counters of every sandbox's endpoints.
type TrafficFunc func(ctx context.Context) ([]controller.EndpointTraffic, error)

// WatchTraffic registers the counters of each endpoint's interface, read
// from the kernel at each scrape: bytes, packets, drops and errors each
// way, labelled with the container, the network and the interface.
func (m *Metrics) WatchTraffic(traffic TrafficFunc) error {
	return m.reg.Register(&trafficCollector{traffic: traffic})
}

var trafficLabels = []string{"container", "network", "interface"}

// trafficDescs are the endpoint counters, each with how to read it.
var trafficDescs = []struct {
	d    *prometheus.Desc
	read func(t *controller.EndpointTraffic) uint64
}{
	{prometheus.NewDesc("sandnet_endpoint_receive_bytes_total", "Bytes an endpoint's interface received (into the container).", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.RxBytes }},
	{prometheus.NewDesc("sandnet_endpoint_transmit_bytes_total", "Bytes an endpoint's interface sent (out of the container).", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.TxBytes }},
	{prometheus.NewDesc("sandnet_endpoint_receive_packets_total", "Packets an endpoint's interface received.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.RxPackets }},
	{prometheus.NewDesc("sandnet_endpoint_transmit_packets_total", "Packets an endpoint's interface sent.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.TxPackets }},
	{prometheus.NewDesc("sandnet_endpoint_receive_dropped_total", "Received packets an endpoint's interface dropped.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.RxDropped }},
	{prometheus.NewDesc("sandnet_endpoint_transmit_dropped_total", "Packets to send an endpoint's interface dropped.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.TxDropped }},
	{prometheus.NewDesc("sandnet_endpoint_receive_errors_total", "Receive errors of an endpoint's interface.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.RxErrors }},
	{prometheus.NewDesc("sandnet_endpoint_transmit_errors_total", "Transmit errors of an endpoint's interface.", trafficLabels, nil),
		func(t *controller.EndpointTraffic) uint64 { return t.TxErrors }},
}

// trafficCollector reads the endpoints' counters when scraped.
type trafficCollector struct {
	traffic TrafficFunc
}

func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, td := range trafficDescs {
		ch <- td.d
	}
}

func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	ts, err := c.traffic(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(trafficDescs[0].d, err)
		return
	}
	for i := range ts {
		t := &ts[i]
		for _, td := range trafficDescs {
			ch <- prometheus.MustNewConstMetric(td.d, prometheus.CounterValue, float64(td.read(t)), t.Container, t.Network, t.Interface)
		}
	}
}

// DNS returns what the embedded resolvers report their queries to
// (resolver.Config.Metrics).
func (m *Metrics) DNS() resolver.Metrics { return m.dns }

// dnsMetrics implements resolver.Metrics. The counters of the usual
// outcome and rcode pairs are looked up once, so a query costs an atomic
// add, not a label lookup.
type dnsMetrics struct {
	queries   *prometheus.CounterVec
	common    [resolver.NumOutcomes][dns.RcodeRefused + 1]prometheus.Counter
	forwarded prometheus.Counter
	inflight  prometheus.Gauge
	refused   prometheus.Counter
}

func newDNSMetrics() *dnsMetrics {
	d := &dnsMetrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "queries_total",
			Help: "Queries the embedded resolvers answered, by outcome (container, forwarded, cached, nxdomain, refused, failed, invalid) and response code.",
		}, []string{"outcome", "rcode"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "forwarded_total",
			Help: "Queries forwarded to an upstream server.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "dns", Name: "forwards_in_flight",
			Help: "Forwarded queries waiting for an upstream answer.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "dns", Name: "refused_total",
			Help: "Queries answered REFUSED because too many forwards were in flight.",
		}),
	}
	// The pairs that can happen are there at zero from the start, so a
	// rate() over them works before the first one.
	for o := range resolver.NumOutcomes {
		for rc := range d.common[o] {
			if possible(o, rc) {
				d.common[o][rc] = d.queries.WithLabelValues(o.String(), dns.RcodeToString[rc])
			}
		}
	}
	return d
}

// possible reports whether a query can end with outcome o and rcode rc.
func possible(o resolver.Outcome, rc int) bool {
	switch o {
	case resolver.OutcomeContainer:
		return rc == dns.RcodeSuccess
	case resolver.OutcomeForwarded, resolver.OutcomeCached:
		return rc == dns.RcodeSuccess || rc == dns.RcodeNameError
	case resolver.OutcomeNXDomain:
		return rc == dns.RcodeNameError
	case resolver.OutcomeRefused:
		return rc == dns.RcodeRefused
	case resolver.OutcomeFailed:
		return rc == dns.RcodeServerFailure
	case resolver.OutcomeInvalid:
		return rc == dns.RcodeFormatError || rc == dns.RcodeNotImplemented || rc == dns.RcodeRefused
	}
	return false
}

func (d *dnsMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.queries, d.forwarded, d.inflight, d.refused}
}

func (d *dnsMetrics) Query(o resolver.Outcome, rcode int) {
	if o < resolver.NumOutcomes && rcode >= 0 && rcode < len(d.common[o]) {
		if c := d.common[o][rcode]; c != nil {
			c.Inc()
			if o == resolver.OutcomeRefused {
				d.refused.Inc()
			}
			return
		}
	}
	name, ok := dns.RcodeToString[rcode]
	switch {
	case rcode == dns.RcodeBadVers: // 16 is BADSIG too, in TSIG
		name = "BADVERS"
	case !ok:
		name = strconv.Itoa(rcode)
	}
	d.queries.WithLabelValues(o.String(), name).Inc()
}

func (d *dnsMetrics) ForwardStarted() { d.forwarded.Inc(); d.inflight.Inc() }
func (d *dnsMetrics) ForwardDone()    { d.inflight.Dec() }
