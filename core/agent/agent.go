// Package agent assembles a sandnet host from its configuration: it starts
// the store plugin and the driver plugins through the plugin manager, and
// serves the API on the configured unix socket until it is stopped.
package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/telemetry"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Version is the sandnet version, set at build time with
// -ldflags "-X github.com/sandnet/sandnet/core/agent.Version=…".
var Version = "dev"

// Agent is a running sandnet host.
type Agent struct {
	cfg     *config.Config
	log     hclog.Logger
	plugins *plugin.Manager
	api     *api.Server
	lis     net.Listener
	ctrl    *controller.Controller
	ipam    *ipam.Allocator // the controller's; a reload sets its default pools
	cache   *resolver.Cache // the resolvers' forwarding cache (nil: off); a reload sets its limits
	profile func()          // finishes the CPU profile, if one is written
	locks   []*dirLock
	nsLock  *net.UnixListener // nsLockName, held while the agent runs
	// made is what this start created in the agent's directories (them
	// included), which a start that fails removes (removeMade).
	made []string

	registry  *prometheus.Registry
	metrics   *telemetry.Metrics
	events    *events.Bus
	prom      *http.Server // serves telemetry { prometheus_listen }; nil when off
	storeDown atomic.Bool  // the store answered Unavailable last
	streams   atomic.Int64 // event streams being served (api.MaxStreams)
	reloadMu  sync.Mutex   // serializes reloads; guards cfg's Drivers, Log and PluginDir
	// replayed is the outcome of each driver's last replay (the
	// controller's Replay after the plugin's start), by driver name, for
	// a reload that restarted it to report.
	replayMu sync.Mutex
	replayed map[string]error
	// retries cancels, by driver name, the replay waiting for the store
	// to answer (replayLater); replayMu guards it.
	retries map[string]context.CancelFunc
	// bg is cancelled by Stop: background work of the agent's own ends.
	bg     context.Context
	stopBg context.CancelFunc
}

// New returns an agent for cfg; Start starts it.
func New(cfg *config.Config, log hclog.Logger) *Agent {
	a := &Agent{cfg: cfg, log: log, retries: map[string]context.CancelFunc{}}
	a.bg, a.stopBg = context.WithCancel(context.Background())
	a.newTelemetry()
	a.plugins = plugin.NewManager(log.Named("plugin"), plugin.Options{Observe: a.observePlugin})
	a.watchPlugins()
	return a
}

// Start launches the store and every driver, then listens on the API
// socket. On error everything it started is stopped again.
//
// The drivers start first: they touch no directory of the agent's, so a
// driver that fails to start (its config block, its binary) leaves
// nothing behind — no lock file, no store. A plugin's failure is a
// *PluginError naming its block.
func (a *Agent) Start(ctx context.Context) (err error) {
	// Another agent on our directories is refused before anything
	// starts; the locks themselves are taken once the drivers are up.
	if err := a.checkDirsFree(); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			a.Stop()
			a.removeMade()
		}
	}()
	for _, b := range a.cfg.Drivers {
		if err := a.startPlugin(ctx, b); err != nil {
			return err
		}
	}
	// Before anything touches the directories: a second agent on one of
	// them would unmount the first's namespaces in the making.
	if err := a.lockDirs(); err != nil {
		return err
	}
	a.profile = a.startProfile()
	if err := a.startPlugin(ctx, a.cfg.Store); err != nil {
		return err
	}
	if err := a.startController(ctx); err != nil {
		return err
	}
	if err := a.metrics.WatchController(a.ctrl.Stats); err != nil {
		return err
	}
	if err := a.metrics.WatchTraffic(func(ctx context.Context) ([]controller.EndpointTraffic, error) { return a.ctrl.Traffic(ctx, "") }); err != nil {
		return err
	}
	a.api = api.NewServer(a.log.Named("api"))
	if a.cfg.API.SocketGroup != "" {
		a.api.SetSocketGroup(a.cfg.API.SocketGID)
	}
	a.api.Observe(a.metrics.APIRequest)
	a.routes()
	a.controllerRoutes()
	a.opsRoutes()
	if err := a.servePrometheus(); err != nil {
		return err
	}
	if a.lis, err = a.api.Listen(a.cfg.API.Socket); err != nil {
		return err
	}
	go func() {
		if err := a.api.Serve(a.lis); err != nil {
			a.log.Error("api server stopped", "error", err)
		}
	}()
	a.log.Info("agent started", "socket", a.cfg.API.Socket, "store", a.cfg.Store.Name, "drivers", len(a.cfg.Drivers))
	return nil
}

// PluginError is a plugin that failed to start, with the config block
// that names it, so that the failure can be reported at its position.
type PluginError struct {
	Block config.PluginBlock
	Err   error
}

func (e *PluginError) Error() string { return e.Err.Error() }
func (e *PluginError) Unwrap() error { return e.Err }

func (a *Agent) startPlugin(ctx context.Context, b config.PluginBlock) error {
	if _, err := a.plugins.Start(ctx, a.spec(b)); err != nil {
		return &PluginError{Block: b, Err: err}
	}
	return nil
}

// Stop stops serving the API and stops every plugin.
func (a *Agent) Stop() {
	a.stopBg()
	// Event streams end first, so the API's shutdown need not wait for them.
	a.events.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.stopPrometheus(ctx)
	if a.api != nil {
		_ = a.api.Shutdown(ctx)
	}
	if a.ctrl != nil {
		a.ctrl.Close()
	}
	a.plugins.Shutdown()
	if a.profile != nil {
		a.profile()
		a.profile = nil
	}
	a.unlockDirs()
}

// Plugins returns the agent's plugin manager.
func (a *Agent) Plugins() *plugin.Manager { return a.plugins }

func (a *Agent) spec(b config.PluginBlock) plugin.Spec { return PluginSpec(a.cfg, b) }

// PluginSpec is how the agent runs the plugin of block b: the binary the
// config names, its pinned checksum, and its config block checked against
// the schema the plugin declares.
func PluginSpec(cfg *config.Config, b config.PluginBlock) plugin.Spec {
	return plugin.Spec{
		Kind:     b.Kind,
		Name:     b.Name,
		Path:     b.Binary(cfg.PluginDir),
		Args:     b.Args,
		Checksum: b.Checksum,
		Configure: func(schema *pb.Schema) ([]byte, error) {
			js, diags := config.DecodePluginConfig(b, schema)
			if diags.HasErrors() {
				return nil, fmt.Errorf("invalid config block: %w", &config.DiagnosticsError{Diags: diags})
			}
			return js, nil
		},
	}
}

func (a *Agent) routes() {
	a.api.Handle("GET /v1/version", 0, func(*http.Request) (any, error) {
		return api.Version{Version: Version, APIVersion: "v1", GoVersion: runtime.Version(), PluginProtocol: sdk.ProtocolVersion, SDKVersion: sdk.Version}, nil
	})
	a.api.Handle("GET /v1/plugins", 0, func(*http.Request) (any, error) {
		return a.statuses(), nil
	})
	a.api.Handle("GET /v1/health", 0, func(*http.Request) (any, error) {
		h := api.Health{Status: "ok", Plugins: a.statuses()}
		for _, p := range h.Plugins {
			if !p.Running || !p.Healthy {
				h.Status = "degraded"
			}
		}
		return h, nil
	})
}

func (a *Agent) statuses() []plugin.Status {
	ps := a.plugins.Plugins()
	out := make([]plugin.Status, len(ps))
	for i, p := range ps {
		out[i] = p.Status()
	}
	return out
}
