package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/core/telemetry"
	"github.com/sandnet/sandnet/sdk"
)

// newTelemetry makes the agent's metric registry (with the Go runtime's
// and the process's collectors beside sandnet's own) and event bus.
func (a *Agent) newTelemetry() {
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := telemetry.New(a.registry)
	if err != nil {
		panic(fmt.Sprintf("registering metrics on a new registry: %v", err)) // a programming error
	}
	a.metrics = m
	a.events = events.NewBus(m.EventsDropped)
}

// Metrics returns the agent's metrics; DNS() is what the embedded
// resolvers report to.
func (a *Agent) Metrics() *telemetry.Metrics { return a.metrics }

// Events returns the agent's event bus.
func (a *Agent) Events() *events.Bus { return a.events }

// observePlugin records a gRPC call to a plugin, and notices the store
// becoming unreachable or answering again.
func (a *Agent) observePlugin(kind, name, method string, d time.Duration, err error) {
	a.metrics.PluginCall(kind, name, method, d, err)
	// Only the store's own calls reach its backend: a health check or
	// Info the plugin answers while Consul is down says nothing of it
	// (health checks every 5 s announced store.back while it was down).
	if kind != sdk.KindStore || !strings.Contains(method, ".Store/") || strings.HasSuffix(method, "/Close") {
		return
	}
	switch status.Code(err) {
	case codes.Unavailable:
		a.storeReachable(name, false, status.Convert(err).Message())
	case codes.OK:
		a.storeReachable(name, true, "")
	}
}

// storeReachable publishes store.unreachable and store.back on changes.
func (a *Agent) storeReachable(name string, up bool, why string) {
	if a.storeDown.CompareAndSwap(up, !up) {
		e := events.Event{Type: events.TypeStoreBack, PluginKind: sdk.KindStore, Plugin: name}
		if !up {
			e.Type, e.Message = events.TypeStoreUnreachable, why
		}
		a.events.Publish(e)
	}
}

// watchPlugins turns plugin exits and restarts into metrics and events.
func (a *Agent) watchPlugins() {
	a.plugins.OnExit(func(p *plugin.Plugin, reason string) {
		a.metrics.PluginExited(p.Kind(), p.Name())
		a.events.Publish(events.Event{Type: events.TypePluginExit, PluginKind: p.Kind(), Plugin: p.Name(), PID: p.Status().PID, Message: reason})
		if p.Kind() == sdk.KindStore {
			a.storeReachable(p.Name(), false, reason)
		}
	})
	a.plugins.OnRestart(func(p *plugin.Plugin) {
		a.metrics.PluginRestarted(p.Kind(), p.Name())
		a.events.Publish(events.Event{Type: events.TypePluginRestart, PluginKind: p.Kind(), Plugin: p.Name(), PID: p.Status().PID})
	})
}

// opsRoutes serves GET /v1/metrics, GET /v1/events and POST /v1/reload.
func (a *Agent) opsRoutes() {
	a.api.HandleHTTP("GET /v1/metrics", telemetry.Handler(a.registry, a.log.Named("metrics")))
	a.api.HandleHTTP("GET /v1/events", http.HandlerFunc(a.serveEvents))
	a.api.Handle("POST /v1/reload", 0, func(r *http.Request) (any, error) {
		// No body, or an empty object: a field it does not know is a
		// 400, as on every route.
		var none struct{}
		if err := api.DecodeOptional(r, &none); err != nil {
			return nil, err
		}
		return a.Reload(r.Context())
	})
}

// servePrometheus serves /metrics on telemetry { prometheus_listen }.
func (a *Agent) servePrometheus() error {
	srv, err := a.listenPrometheus(a.cfg.Telemetry.PrometheusListen)
	if err != nil {
		return err
	}
	a.prom = srv
	return nil
}

// listenPrometheus serves /metrics on addr ("": nowhere, a nil server).
func (a *Agent) listenPrometheus(addr string) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("telemetry prometheus_listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", telemetry.Handler(a.registry, a.log.Named("metrics")))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("prometheus listener stopped", "error", err)
		}
	}()
	a.log.Info("serving metrics", "address", l.Addr().String())
	return srv, nil
}

// movePrometheus serves /metrics on addr instead (a reload): the new
// listener first, so that one that cannot listen keeps the old.
func (a *Agent) movePrometheus(ctx context.Context, addr string) error {
	srv, err := a.listenPrometheus(addr)
	if err != nil {
		return err
	}
	a.stopPrometheus(ctx)
	a.prom = srv
	return nil
}

func (a *Agent) stopPrometheus(ctx context.Context) {
	if a.prom != nil {
		_ = a.prom.Shutdown(ctx)
		a.prom = nil
	}
}
