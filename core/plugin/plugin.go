package plugin

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Plugin is one running plugin. Its client changes when the plugin is
// restarted: fetch it with Driver or Store for every use rather than
// keeping it.
type Plugin struct {
	spec Spec
	m    *Manager
	log  hclog.Logger
	stop chan struct{}
	done chan struct{}
	// stopOnce closes stop: Shutdown and Replace or Stop may race.
	stopOnce sync.Once

	mu       sync.Mutex
	client   *goplugin.Client
	rpc      goplugin.ClientProtocol
	raw      any // *driver.Client or *store.Client
	info     *pb.PluginInfo
	pid      int
	protocol int
	healthy  bool
	running  bool
	// up is closed when the plugin runs again (see WaitRunning); nil
	// while it runs.
	up chan struct{}
	// exited is closed when the running process exits, which the
	// supervisor then sees at once; nil where the kernel cannot say
	// (no pidfd), and the supervisor's poll sees it.
	exited    <-chan struct{}
	restarts  int
	startedAt time.Time
	lastErr   string
	// lastWait is the wait before the last restart (see restartWait).
	lastWait time.Duration

	// calls counts the calls in flight to the process, which a planned
	// stop lets finish (see terminate).
	calls inflight
}

// Status is a snapshot of a plugin for `sandnet plugins`.
type Status struct {
	Kind     string `json:"kind"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Protocol int    `json:"protocol"`
	// SDKVersion is the SDK version the plugin was built with; empty
	// when it was built before the SDK reported one (before 0.1.0).
	SDKVersion string    `json:"sdk_version,omitempty"`
	Path       string    `json:"path"`
	PID        int       `json:"pid"`
	Running    bool      `json:"running"`
	Healthy    bool      `json:"healthy"`
	Restarts   int       `json:"restarts"`
	StartedAt  time.Time `json:"started_at"`
	LastError  string    `json:"last_error,omitempty"`
}

// Kind returns the plugin's kind.
func (p *Plugin) Kind() string { return p.spec.Kind }

// Name returns the plugin's name as the config gives it.
func (p *Plugin) Name() string { return p.spec.Name }

// Info returns what the plugin said about itself at its last start.
func (p *Plugin) Info() *pb.PluginInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Status returns a snapshot of the plugin's state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Kind: p.spec.Kind, Name: p.spec.Name, Version: p.info.GetVersion(), Protocol: p.protocol,
		SDKVersion: p.info.GetSdkVersion(),
		Path:       p.spec.Path, PID: p.pid, Running: p.running, Healthy: p.healthy, Restarts: p.restarts,
		StartedAt: p.startedAt, LastError: p.lastErr,
	}
}

// Driver returns the current client of a driver plugin, or an error
// wrapping sdk.ErrUnavailable while the plugin is down.
func (p *Plugin) Driver() (*driver.Client, error) {
	raw, err := p.current()
	if err != nil {
		return nil, err
	}
	c, ok := raw.(*driver.Client)
	if !ok {
		return nil, fmt.Errorf("%s plugin %q is not a driver: %w", p.spec.Kind, p.spec.Name, sdk.ErrInvalid)
	}
	return c, nil
}

// Store returns the current client of a store plugin, or an error
// wrapping sdk.ErrUnavailable while the plugin is down.
func (p *Plugin) Store() (*store.Client, error) {
	raw, err := p.current()
	if err != nil {
		return nil, err
	}
	c, ok := raw.(*store.Client)
	if !ok {
		return nil, fmt.Errorf("%s plugin %q is not a store: %w", p.spec.Kind, p.spec.Name, sdk.ErrInvalid)
	}
	return c, nil
}

// WaitRunning waits, at most d, until the plugin runs (at once when it
// does), and reports whether it does; a plugin being stopped for good
// ends the wait. A caller that found it down while it restarts (its
// process died) waits for the restart rather than failing at once.
func (p *Plugin) WaitRunning(d time.Duration) bool {
	p.mu.Lock()
	if p.running {
		p.mu.Unlock()
		return true
	}
	if p.up == nil {
		p.up = make(chan struct{})
	}
	up := p.up
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-up:
		return true
	case <-t.C:
	case <-p.stop:
	}
	return false
}

func (p *Plugin) current() (any, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return nil, fmt.Errorf("%s plugin %q is not running: %w", p.spec.Kind, p.spec.Name, sdk.ErrUnavailable)
	}
	return p.raw, nil
}

// launch starts the process, checks its Info and configures it.
func (p *Plugin) launch(ctx context.Context) (err error) {
	spec := p.spec
	defer func() {
		if err != nil {
			p.mu.Lock()
			p.lastErr = err.Error()
			p.mu.Unlock()
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, p.m.opts.StartTimeout)
	defer cancel()
	r, err := p.m.configured(ctx, spec, p.log, &p.calls)
	if err != nil {
		return err
	}
	pid := 0
	if rc := r.client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	exited := exitWatch(pid)
	p.mu.Lock()
	p.client, p.rpc, p.raw, p.info = r.client, r.rpc, r.raw, r.info
	p.pid, p.protocol, p.exited = pid, r.client.NegotiatedVersion(), exited
	p.running, p.healthy, p.startedAt, p.lastErr = true, true, time.Now(), ""
	if p.up != nil {
		close(p.up)
		p.up = nil
	}
	p.mu.Unlock()
	p.log.Info("plugin started", "path", spec.Path, "pid", pid, "version", r.info.GetVersion(), "protocol", p.protocol)
	return nil
}

// supervise watches the process until stop, restarting it when it dies or
// stops answering health checks.
func (p *Plugin) supervise() {
	defer close(p.done)
	poll := time.NewTicker(p.m.opts.PollInterval)
	defer poll.Stop()
	health := time.NewTicker(p.m.opts.HealthInterval)
	defer health.Stop()
	failures := 0
	for {
		hung := false
		p.mu.Lock()
		exitedNow := p.exited
		p.mu.Unlock()
		select {
		case <-p.stop:
			p.terminate()
			return
		case <-exitedNow:
			p.log.Error("plugin process exited; restarting")
			p.m.exited(p, "process exited")
		case <-poll.C:
			p.mu.Lock()
			exited := p.client.Exited()
			p.mu.Unlock()
			if !exited {
				continue
			}
			p.log.Error("plugin process exited; restarting")
			p.m.exited(p, "process exited")
		case <-health.C:
			p.mu.Lock()
			rpc := p.rpc
			p.mu.Unlock()
			if err := p.ping(rpc); err != nil {
				failures++
				p.mu.Lock()
				p.healthy = false
				p.mu.Unlock()
				p.log.Warn("plugin health check failed", "error", err, "failures", failures)
				if failures < 3 {
					continue
				}
				p.log.Error("plugin unhealthy; restarting")
				p.m.exited(p, "health checks failed")
				hung = true
			} else {
				failures = 0
				p.mu.Lock()
				p.healthy = true
				p.mu.Unlock()
				continue
			}
		}
		failures = 0
		if !p.restart(hung) {
			p.terminate()
			return
		}
	}
}

// restart kills what is left of the process and launches it again with
// exponential backoff until it runs or stop is closed (false); hung says
// the process is alive but failed its health checks.
func (p *Plugin) restart(hung bool) bool {
	p.mu.Lock()
	old, pid := p.client, p.pid
	p.running, p.healthy = false, false
	ran := time.Since(p.startedAt)
	backoff := p.restartWait(ran)
	p.mu.Unlock()
	if hung && !old.Exited() && pid > 0 {
		// Stopped (SIGSTOP) or stuck: its graceful shutdown is a call it
		// would never answer, which would hold this goroutine for ever.
		// Alive, it is not reaped: the PID is still our child's.
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	old.Kill()

	if backoff > p.m.opts.MinBackoff {
		p.log.Warn("plugin ended soon after its start again; waiting longer before each restart until it runs a while",
			"ran", ran.Round(time.Millisecond), "restart_in", backoff, "stable_after", p.m.opts.StableAfter)
	}
	for {
		select {
		case <-p.stop:
			return false
		case <-time.After(backoff):
		}
		if err := p.launch(context.Background()); err != nil {
			p.log.Error("restarting plugin failed", "error", err, "retry_in", backoff*2)
			backoff = min(backoff*2, p.m.opts.MaxBackoff)
			continue
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
		p.m.restarted(p)
		return true
	}
}

// ping is a health check of the process rpc talks to, bounded by
// HealthTimeout: go-plugin's own Ping has no deadline, so a process that
// was stopped (SIGSTOP) or hung held the supervisor in it for ever, and
// the calls to it with it.
func (p *Plugin) ping(rpc goplugin.ClientProtocol) error {
	gc, ok := rpc.(*goplugin.GRPCClient)
	if !ok {
		return rpc.Ping()
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.m.opts.HealthTimeout)
	defer cancel()
	_, err := grpc_health_v1.NewHealthClient(gc.Conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: goplugin.GRPCServiceName})
	return err
}

// restartWait is the wait before restarting a process that ran for ran:
// MinBackoff after a run of StableAfter or longer, else twice the last
// wait, at most MaxBackoff. It records the wait; p.mu is held.
func (p *Plugin) restartWait(ran time.Duration) time.Duration {
	o := p.m.opts
	wait := o.MinBackoff
	if ran < o.StableAfter && p.lastWait > 0 {
		wait = min(2*p.lastWait, o.MaxBackoff)
	}
	p.lastWait = wait
	return wait
}

// terminate closes a store so it flushes, then stops the process.
func (p *Plugin) terminate() {
	p.mu.Lock()
	client, raw, running := p.client, p.raw, p.running
	p.running, p.healthy = false, false
	p.mu.Unlock()
	// A planned stop (a reload's Replace or Stop, the agent's shutdown)
	// lets the calls already made finish, so that they do not fail for
	// it; calls made from now on fail as to a plugin not running, and
	// the agent holds its requests back while a driver is replaced.
	if running && !p.calls.wait(p.m.opts.DrainTimeout) {
		p.log.Warn("calls still in flight; ending the plugin anyway", "waited", p.m.opts.DrainTimeout)
	}
	if s, ok := raw.(*store.Client); ok && running {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Close(ctx); err != nil {
			p.log.Warn("closing store", "error", err)
		}
		cancel()
	}
	if client != nil {
		client.Kill()
	}
}

func (p *Plugin) shutdown() {
	p.stopOnce.Do(func() { close(p.stop) })
	<-p.done
}

// inflight counts the calls in flight on a plugin's connection.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0 with someone waiting; else nil
}

func (f *inflight) begin() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
}

func (f *inflight) end() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// wait waits until no call is in flight, for at most d, and reports
// whether none is.
func (f *inflight) wait(d time.Duration) bool {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return true
	}
	if f.idle == nil {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

// exitWatch returns a channel closed when process pid exits, from a
// pidfd (Linux 5.3 and later), so that a plugin that dies is restarted —
// and the agent holds its requests back for it — at once rather than at
// the next poll, when requests made meanwhile would fail to reach it; nil
// when the kernel has no pidfd.
func exitWatch(pid int) <-chan struct{} {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil
	}
	ch := make(chan struct{})
	go func() {
		defer unix.Close(fd)
		defer close(ch)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(fds, -1); err != unix.EINTR {
				return
			}
		}
	}()
	return ch
}
