package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Spec says which plugin to run and how to configure it.
type Spec struct {
	Kind string // sdk.KindDriver or sdk.KindStore
	Name string
	Path string // the binary
	Args []string
	// Checksum is the pinned SHA-256 of the binary in hex; empty: no pin.
	Checksum string
	// Configure turns the plugin's config schema into the cty JSON sent to
	// it; it is where the operator's `config` block is checked. Nil sends
	// an empty configuration.
	Configure func(schema *pb.Schema) ([]byte, error)
}

// Options tune the manager. Zero values take the defaults.
type Options struct {
	StartTimeout   time.Duration // default 10s
	HealthInterval time.Duration // default 5s
	// HealthTimeout bounds each health check; three failed in a row
	// restart the plugin (a stopped or hung process is killed).
	HealthTimeout time.Duration // default 3s
	// PollInterval is how often a plugin's process is checked for exit.
	PollInterval time.Duration // default 100ms
	// MinBackoff and MaxBackoff bound the wait before a restart: a
	// process that ran StableAfter or longer waits MinBackoff; one that
	// exits sooner waits twice its last wait, up to MaxBackoff, so a
	// plugin that crashes at every start, or on the call the host makes
	// after every start, is restarted ever more slowly, not in a loop.
	MinBackoff  time.Duration // default 100ms
	MaxBackoff  time.Duration // default 10s
	StableAfter time.Duration // default 1m
	// Observe, when set, is called after every unary gRPC call to a
	// plugin with the plugin's kind and name, the full method name, the
	// time taken and the call's error (a gRPC status error), for metrics.
	Observe func(kind, name, method string, d time.Duration, err error)
	// DrainTimeout bounds how long a planned stop of a plugin (Replace,
	// Stop, Shutdown) waits for the calls in flight to it to finish
	// before it ends the process; default 10s.
	DrainTimeout time.Duration
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.StartTimeout, 10*time.Second)
	def(&o.HealthInterval, 5*time.Second)
	def(&o.HealthTimeout, 3*time.Second)
	def(&o.PollInterval, 100*time.Millisecond)
	def(&o.MinBackoff, 100*time.Millisecond)
	def(&o.MaxBackoff, 10*time.Second)
	def(&o.StableAfter, time.Minute)
	def(&o.DrainTimeout, 10*time.Second)
}

// ErrChecksum is wrapped by the error of a plugin whose binary does not
// match its pinned checksum.
var ErrChecksum = errors.New("checksum mismatch")

// Manager runs plugins. Its methods are safe for concurrent use.
type Manager struct {
	log  hclog.Logger
	opts Options
	lch  *launcher

	mu        sync.Mutex
	plugins   map[string]*Plugin // by kind/name
	onRestart []func(*Plugin)
	onExit    []func(p *Plugin, reason string)
	closed    bool
}

// NewManager returns a manager that logs, and forwards plugin logs, to log.
func NewManager(log hclog.Logger, opts Options) *Manager {
	opts.defaults()
	return &Manager{log: log, opts: opts, lch: newLauncher(), plugins: map[string]*Plugin{}}
}

// OnRestart registers fn to be called, outside any lock, after a plugin was
// restarted and configured again, so its owner can replay state.
func (m *Manager) OnRestart(fn func(*Plugin)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onRestart = append(m.onRestart, fn)
}

// Start launches and configures the plugin spec describes, and keeps it
// running until Shutdown. It fails if the binary does not match its pinned
// checksum, does not start in time, is of another kind, or rejects its
// configuration.
func (m *Manager) Start(ctx context.Context, spec Spec) (*Plugin, error) {
	key := spec.Kind + "/" + spec.Name
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, fmt.Errorf("starting %s plugin %q: manager is shut down", spec.Kind, spec.Name)
	}
	if _, ok := m.plugins[key]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("starting %s plugin %q: %w", spec.Kind, spec.Name, sdk.ErrExists)
	}
	p := &Plugin{spec: spec, m: m, log: m.log.Named(spec.Kind + "." + spec.Name), stop: make(chan struct{}), done: make(chan struct{})}
	m.plugins[key] = p
	m.mu.Unlock()

	if err := p.launch(ctx); err != nil {
		m.mu.Lock()
		delete(m.plugins, key)
		m.mu.Unlock()
		return nil, err
	}
	go p.supervise()
	return p, nil
}

// Plugins returns every plugin, ordered by kind and name.
func (m *Manager) Plugins() []*Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Plugin, 0, len(m.plugins))
	for _, p := range m.plugins {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].spec.Kind != out[j].spec.Kind {
			return out[i].spec.Kind < out[j].spec.Kind
		}
		return out[i].spec.Name < out[j].spec.Name
	})
	return out
}

// Get returns the plugin of that kind and name, or nil.
func (m *Manager) Get(kind, name string) *Plugin {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.plugins[kind+"/"+name]
}

// Shutdown stops every plugin: stores are closed first so they flush, then
// each process is asked to exit and killed if it does not. It is safe to
// call more than once.
func (m *Manager) Shutdown() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	ps := make([]*Plugin, 0, len(m.plugins))
	for _, p := range m.plugins {
		ps = append(ps, p)
	}
	m.mu.Unlock()

	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.shutdown()
		}()
	}
	wg.Wait()
	close(m.lch.reqs)
}

// OnExit registers fn to be called, outside any lock, when a plugin's
// process died or is about to be restarted for failing its health checks
// (reason says which), before it is started again.
func (m *Manager) OnExit(fn func(p *Plugin, reason string)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.onExit = append(m.onExit, fn)
}

func (m *Manager) exited(p *Plugin, reason string) {
	m.mu.Lock()
	fns := append([]func(*Plugin, string){}, m.onExit...)
	m.mu.Unlock()
	for _, fn := range fns {
		fn(p, reason)
	}
}

func (m *Manager) restarted(p *Plugin) {
	m.mu.Lock()
	fns := append([]func(*Plugin){}, m.onRestart...)
	m.mu.Unlock()
	for _, fn := range fns {
		fn(p)
	}
}

// Inspect starts the plugin spec describes only to read its Info (and so
// its config schema), then stops it. `sandnet config validate` uses it to
// check each plugin's config block against the plugin's own schema. An
// empty spec.Kind accepts a plugin of either kind; the Info says which.
func (m *Manager) Inspect(ctx context.Context, spec Spec) (*pb.PluginInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.StartTimeout)
	defer cancel()
	r, err := m.exec(ctx, spec, m.log.Named(spec.Kind+"."+spec.Name), nil)
	if err != nil {
		return nil, err
	}
	r.client.Kill()
	return r.info, nil
}

// Instance is a plugin process started by Launch: past the handshake,
// configured, and not supervised.
type Instance struct {
	r *running
}

// Launch starts and configures the plugin spec describes exactly as Start
// does (checksum, handshake, AutoMTLS, no inherited environment, its kind
// checked) but does not supervise it: a process that dies stays dead.
// `sandnet plugin check` uses it, where a crash is a verdict to report
// rather than something a restart should hide. The caller calls Kill.
func (m *Manager) Launch(ctx context.Context, spec Spec) (*Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.StartTimeout)
	defer cancel()
	r, err := m.configured(ctx, spec, m.log.Named(spec.Kind+"."+spec.Name), nil)
	if err != nil {
		return nil, err
	}
	return &Instance{r: r}, nil
}

// Client returns the instance's *driver.Client or *store.Client.
func (i *Instance) Client() any { return i.r.raw }

// Info returns what the plugin said about itself.
func (i *Instance) Info() *pb.PluginInfo { return i.r.info }

// Protocol returns the protocol version the handshake settled on.
func (i *Instance) Protocol() int { return i.r.client.NegotiatedVersion() }

// Exited reports whether the process has exited.
func (i *Instance) Exited() bool { return i.r.client.Exited() }

// Kill stops the process (gracefully first, as go-plugin does).
func (i *Instance) Kill() { i.r.client.Kill() }

// configured is exec followed by Configure with the config spec yields.
// On error no process is left.
func (m *Manager) configured(ctx context.Context, spec Spec, log hclog.Logger, calls *inflight) (*running, error) {
	r, err := m.exec(ctx, spec, log, calls)
	if err != nil {
		return nil, err
	}
	var cfg []byte
	if spec.Configure != nil {
		cfg, err = spec.Configure(r.info.GetConfigSchema())
	}
	if err == nil {
		err = r.pc.Configure(ctx, cfg)
	}
	if err != nil {
		r.client.Kill()
		return nil, fmt.Errorf("%s plugin %q: configuring: %w", spec.Kind, spec.Name, err)
	}
	return r, nil
}

// running is a plugin process that passed the handshake and said what it is.
type running struct {
	client *goplugin.Client
	rpc    goplugin.ClientProtocol
	raw    any
	pc     pluginClient
	info   *pb.PluginInfo
}

type pluginClient interface {
	Info(context.Context) (*pb.PluginInfo, error)
	sdk.Configurer
}

// exec verifies the binary, starts it, negotiates the protocol and checks
// the kind the plugin reports. On error no process is left.
func (m *Manager) exec(ctx context.Context, spec Spec, log hclog.Logger, calls *inflight) (_ *running, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s plugin %q: %w", spec.Kind, spec.Name, err)
		}
	}()
	if _, err := os.Stat(spec.Path); err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if spec.Checksum != "" {
		if err := verifyChecksum(spec.Path, spec.Checksum); err != nil {
			return nil, err
		}
	}
	var self atomic.Pointer[goplugin.Client] // for the connection's interceptor
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		VersionedPlugins: pluginSets(spec.Kind),
		Cmd:              command(spec),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		AutoMTLS:         true,
		GRPCDialOptions:  m.dialOptions(spec, calls, &self),
		SkipHostEnv:      true,
		StartTimeout:     m.opts.StartTimeout,
		Logger:           log,
	})
	self.Store(client)
	defer func() {
		if err != nil {
			client.Kill()
		}
	}()
	var rpc goplugin.ClientProtocol
	m.lch.run(func() { rpc, err = client.Client() })
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", spec.Path, err)
	}
	kind := spec.Kind
	if kind == "" {
		// Any kind: the Plugin service (Info) is served by both, and
		// dispensing only builds the host's client.
		kind = sdk.KindDriver
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		return nil, fmt.Errorf("dispensing: %w", err)
	}
	pc, ok := raw.(pluginClient)
	if !ok {
		return nil, fmt.Errorf("dispensed %T is not a plugin client", raw)
	}
	info, err := pc.Info(ctx)
	if err != nil {
		return nil, err
	}
	if spec.Kind != "" && info.GetKind() != spec.Kind {
		return nil, fmt.Errorf("%s is a %s plugin, not a %s plugin: %w", spec.Path, info.GetKind(), spec.Kind, sdk.ErrInvalid)
	}
	return &running{client: client, rpc: rpc, raw: raw, pc: pc, info: info}, nil
}

// dialOptions are the gRPC options of the connection to spec's plugin
// process, client; calls, unless nil, counts the calls in flight on it.
func (m *Manager) dialOptions(spec Spec, calls *inflight, client *atomic.Pointer[goplugin.Client]) []grpc.DialOption {
	opts := sdk.GRPCDialOptions()
	opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
		return endedDuring(invoker(ctx, method, req, reply, cc, callOpts...), client.Load())
	}))
	if calls != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
			calls.begin()
			defer calls.end()
			return invoker(ctx, method, req, reply, cc, callOpts...)
		}))
	}
	if observe := m.opts.Observe; observe != nil {
		opts = append(opts, grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, callOpts ...grpc.CallOption) error {
			start := time.Now()
			err := invoker(ctx, method, req, reply, cc, callOpts...)
			observe(spec.Kind, spec.Name, method, time.Since(start), err)
			return err
		}))
	}
	return opts
}

// endedDuring says so when err is a call's loss of its connection because
// the plugin's process ended: a bare "error reading from server: EOF"
// leaves the operator guessing, while the process's last words (a panic's
// stack, say) are in the agent's log. An Unavailable the plugin answered
// itself (a store's "Consul unreachable") is left as it is, at once.
func endedDuring(err error, client *goplugin.Client) error {
	// The SDK's mapping says which statuses are a lost connection.
	if err == nil || client == nil || !errors.Is(sdk.FromStatus(err), sdk.ErrUnavailable) {
		return err
	}
	if !client.Exited() {
		rc := client.ReattachConfig()
		if rc == nil || rc.Pid <= 0 || !dying(rc.Pid) {
			return err
		}
	}
	st, _ := status.FromError(err)
	return status.Error(codes.Unavailable, "the plugin process ended during the call (its output in the agent's log says why): "+st.Message())
}

// dying reports whether process pid, a child not reaped yet, has exited or
// is exiting: /proc/PID/stat shows it a zombie, or with PF_EXITING in its
// flags, which the kernel sets before it closes the process's files, and
// so before its end of a connection breaks.
func dying(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The fields after the command, which is in parentheses: the state,
	// then ppid, pgrp, session, tty_nr, tpgid, flags.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 7 {
		return false
	}
	const pfExiting = 0x4
	flags, _ := strconv.ParseUint(f[6], 10, 64)
	return f[0] == "Z" || f[0] == "X" || flags&pfExiting != 0
}

// verifyChecksum compares the binary's SHA-256 with the pinned one.
func verifyChecksum(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		return fmt.Errorf("%w: config pins sha256:%s but %s has sha256:%s", ErrChecksum, want, path, got)
	}
	return nil
}

func pluginSets(kind string) map[int]goplugin.PluginSet {
	if kind == sdk.KindStore {
		return store.PluginSets(sdk.Info{}, nil)
	}
	return driver.PluginSets(sdk.Info{}, nil)
}

func command(spec Spec) *exec.Cmd {
	cmd := exec.Command(spec.Path, spec.Args...)
	// Pdeathsig: a crashed agent takes its plugins with it. Setpgid: a
	// terminal's Ctrl-C reaches the agent only, which then stops the
	// plugins in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	return cmd
}

// VerifyChecksum checks that the binary at path has the SHA-256 want
// (hex); the error wraps ErrChecksum on a mismatch. `sandnet doctor`
// uses it.
func VerifyChecksum(path, want string) error { return verifyChecksum(path, want) }
