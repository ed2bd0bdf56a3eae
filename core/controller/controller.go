package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/nspool"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Plugins gives the controller the current clients of its plugins. The
// agent adapts core/plugin's manager to it; tests may use in-process
// plugins.
type Plugins interface {
	// Store returns the store, or an error wrapping sdk.ErrUnavailable.
	Store() (store.Store, error)
	// Driver returns the named driver, or an error wrapping
	// sdk.ErrNotFound when no such driver is loaded.
	Driver(name string) (driver.Driver, error)
	// StoreGlobal reports whether the store shares state between hosts.
	StoreGlobal() bool
	// Drivers names the loaded drivers.
	Drivers() []string
}

// Config configures a controller.
type Config struct {
	// HostID names this host among the hosts that may share a global
	// store; records of local objects carry it. Empty is a valid ID for a
	// host that shares its store with no other.
	HostID string
	// FilesDir holds each sandbox's resolution files, under <id>/.
	FilesDir string
	// DataDir is where agents before FilesDir kept them, under
	// sandboxes/<id>/: a sandbox restored with its files there keeps them
	// there, as its container has them bind-mounted. Its layout file says
	// which conventions this host's records follow (upgradeLayout).
	DataDir string
	// NetnsDir holds the sandboxes' namespace keys.
	NetnsDir string
	// StubGracePeriod is how long a sandbox read back after a restart waits
	// for its container to claim it.
	StubGracePeriod time.Duration
	// SpareNamespaces is how many namespaces are kept made ahead of time
	// for sandbox creates, from Start on; 0 makes each on demand.
	SpareNamespaces int
	// AdvertiseAddr is this host's address on the network the hosts
	// share (the agent's advertise_addr, resolved): drivers of global
	// networks tunnel from it. Invalid when the agent has none; global
	// networks of drivers whose connectivity is global are then refused.
	AdvertiseAddr netip.Addr
	// HostTTL is how long this host's record outlives the last renewal
	// of its lease (see hosts.go); 0 is DefaultHostTTL.
	HostTTL time.Duration
	// HostResolvConf is the host's resolv.conf (default /etc/resolv.conf).
	HostResolvConf string
	// IPAM is the address allocator; it shares the controller's store.
	IPAM *ipam.Allocator
	// HostListen is where the host's questions for name.network are
	// answered (UDP and TCP, in the agent's namespace); invalid: nowhere.
	HostListen netip.AddrPort
	// Resolver configures every sandbox's embedded DNS resolver
	// (upstreams, timeout, in-flight bound); HostResolvConf and Logger
	// are filled in by the controller.
	Resolver resolver.Config
	// OnEvent, when set, is told of each sandbox created or deleted and
	// each endpoint connected or disconnected by a request — a delete's
	// endpoints each, a runtime front's release that deletes the sandbox,
	// an unclaimed stub deleted after StubGracePeriod (with a message
	// saying so) — naming the network by ID and name and the container
	// (see announce.go); the agent publishes them on its event bus. It is
	// called on the request's goroutine: it must be quick.
	OnEvent func(events.Event)
	// OnStep, when set, is told how long each named step of a create or
	// an attach took (flow "create" or "attach"; docs/architecture.md
	// lists the steps) and whether it failed; the agent records it as a
	// metric. It is called on the request's goroutine: it must be quick.
	OnStep func(flow, step string, d time.Duration, err error)
	// DriverRestartWait bounds how long a request that needs a driver
	// plugin waits for it while it restarts (after a crash, or a reload
	// that changed its block) and its state is replayed to it, before the
	// request goes on and fails with sdk.ErrUnavailable (a 503); the
	// request's own context may end the wait sooner. Default
	// DefaultDriverRestartWait.
	DriverRestartWait time.Duration
	// CrashAfter, for crash-injection tests only, names a step as
	// "flow:step" (say "attach:call-driver"; docs/architecture.md lists
	// them): the process kills itself with SIGKILL right after that step
	// ends, as a crash there would. Empty in production.
	CrashAfter string
}

// Controller manages networks, endpoints and sandboxes. Its methods are
// safe for concurrent use.
type Controller struct {
	log     hclog.Logger
	cfg     Config
	plugins Plugins
	kv      kv
	ipam    *ipam.Allocator
	host    *netlink.Handle // the agent's own namespace
	names   *nameIndex
	peers   *peerSync
	lease   *hostLease
	// replayCallTimeout bounds each driver call of a replay (fixed;
	// DefaultReplayCallTimeout, shorter in tests).
	replayCallTimeout time.Duration

	defaultMu sync.Mutex     // guards defaultNS; never held with mu
	defaultNS *osl.Namespace // the host's namespace, for host-mode sandboxes

	mu          sync.Mutex // leaf lock: see the package doc
	sandboxes   map[string]*sandboxOp
	byContainer map[string]string // container ID → sandbox ID
	creating    map[string]bool   // container IDs whose sandbox is being made
	// binding: the runtime namespaces a create or a set-key is giving a
	// sandbox, by identity, with the container whose it becomes; a
	// sandbox that has one is found by its own Namespace.
	binding     map[osl.ID]string
	ingress     string                      // ID of the ingress sandbox
	pool        *nspool.Pool[*spare]        // namespaces made ahead of time; nil for none
	quiet       *nspool.Gate                // attaches in flight, for background work to wait on
	caps        map[string]*pb.Capabilities // by driver name
	driverDown  map[string]chan struct{}    // drivers restarting: closed once replayed (see drivergate.go)
	retiring    map[string]bool             // drivers a reload is removing: network creates on them are refused
	netCreates  map[string]int              // network creates past their driver check, by driver
	driverUsers map[string]int              // requests holding a driver (see Hold), by driver
	idle        *sync.Cond                  // on mu: broadcast as a driver's netCreates or driverUsers drops to 0
	// driverWaiters counts the requests waiting for a driver to restart.
	driverWaiters atomic.Int64
	onHost        map[string]*Network // global networks this host's driver has set up
	// netDeletes are the networks a DeleteNetwork of this agent is at:
	// closed when it ends (see lockNetworkDelete).
	netDeletes map[string]chan struct{}
	stopWatch  context.CancelFunc
	bg         context.Context // ends with Close: the context of all background work
	stopBG     context.CancelFunc
	stubTimer  *time.Timer        // guarded by mu: reaps the stubs Start read back
	stubsSince time.Time          // guarded by mu: when Start set stubTimer
	hostDNS    *resolver.Resolver // the host listener; nil when off

	// afterStep, when set (by tests), is called after each named step of
	// a flow (see runSteps); an error fails the flow there.
	afterStep func(flow, step string) error

	dnsMu  sync.Mutex             // guards netDNS, resolvers and cfg.Resolver.Upstreams; see netdns.go. A leaf: never held with mu
	netDNS map[string]netDNSEntry // network ID → its DNS servers
	// resolvers are the sandboxes whose resolver runs (useResolver to
	// stopDNS).
	resolvers map[*sandboxOp]struct{}
}

// sandboxOp is a sandbox with the lock that serializes operations on it.
// Which lock guards a field is said beside it; "fixed" fields are set
// before the sandboxOp is shared and never change.
type sandboxOp struct {
	mu       sync.Mutex       // held for a whole operation; see the package doc
	sb       *sandbox.Sandbox // fixed; has its own locks
	created  time.Time        // fixed
	external bool             // fixed: the runtime gives the namespace (SetKey, netns)
	front    string           // fixed: Sandbox.Front
	// unopened is why the namespace at the sandbox's key could not be
	// opened when the sandbox was read back (too many open files, say),
	// or nil. Such a sandbox has no namespace handle but is not doomed:
	// a claim opens it again (reopen), a delete removes its key. mu.
	unopened error
	dns      dnsState // mu (nets and live are atomics, for readers without it)
	// prep is the attach the spare of a create without networks came
	// prepared with (its interface in the namespace, down, named as the
	// first interface), until the sandbox's first connect claims it or
	// discards it, or none comes within unclaimedPrep (prep.go).
	prep *preparedAttach // mu
	// expect: created without networks in a namespace of its own and
	// not connected yet; its first connect tells the spare pool where
	// such creates go next.
	expect bool // mu
	// runtimeNetns is Sandbox.RuntimeNetns: fixed for a front's create
	// with a namespace, set by a front's set-key under mu; an atomic, for
	// listings, which do not take mu.
	runtimeNetns atomic.Pointer[string]

	// stub, deleting and unfinished are guarded by Controller.mu (read
	// them with Controller.stateOf): a delete marks the sandbox before it
	// waits for mu, so that a second delete, a connect and a listing see
	// it.
	stub     bool // read back after a restart, not yet claimed
	deleting bool // a delete is in progress
	// unfinished: a delete failed after the namespace went (a plugin
	// died mid-call), or when its in-delete mark may have landed (the
	// store did not answer); the sandbox is listed in-delete, refuses
	// connects, and a delete again finishes it.
	unfinished bool
	// deleted is written with both mu and Controller.mu held, so either
	// suffices to read it.
	deleted bool
}

// runtimePath is op.runtimeNetns, or "".
func (op *sandboxOp) runtimePath() string {
	if p := op.runtimeNetns.Load(); p != nil {
		return *p
	}
	return ""
}

// opState is what Controller.mu guards in a sandboxOp.
type opState struct{ stub, deleting, unfinished, deleted bool }

// inDelete says whether the sandbox is listed in-delete.
func (s opState) inDelete() bool { return s.deleting || s.unfinished }

// stateOf reads op's flags that Controller.mu guards.
func (c *Controller) stateOf(op *sandboxOp) opState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return opState{stub: op.stub, deleting: op.deleting, unfinished: op.unfinished, deleted: op.deleted}
}

// New returns a controller. Start reads the store back.
func New(log hclog.Logger, cfg Config, plugins Plugins) (*Controller, error) {
	if cfg.HostResolvConf == "" {
		cfg.HostResolvConf = "/etc/resolv.conf"
	}
	h, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	c := &Controller{
		log: log, cfg: cfg, plugins: plugins, kv: kv{store: plugins.Store}, ipam: cfg.IPAM, host: h, names: newNameIndex(),
		sandboxes: map[string]*sandboxOp{}, byContainer: map[string]string{}, creating: map[string]bool{}, binding: map[osl.ID]string{},
		caps: map[string]*pb.Capabilities{}, driverDown: map[string]chan struct{}{}, resolvers: map[*sandboxOp]struct{}{}, onHost: map[string]*Network{}, quiet: nspool.NewGate(),
	}
	c.retiring, c.netCreates, c.driverUsers = map[string]bool{}, map[string]int{}, map[string]int{}
	c.netDeletes = map[string]chan struct{}{}
	c.idle = sync.NewCond(&c.mu)
	c.bg, c.stopBG = context.WithCancel(context.Background())
	c.peers = newPeerSync(c)
	if cfg.HostTTL <= 0 {
		cfg.HostTTL = DefaultHostTTL
	}
	c.lease = &hostLease{c: c, ttl: cfg.HostTTL}
	c.replayCallTimeout = DefaultReplayCallTimeout
	if cfg.CrashAfter != "" {
		c.afterStep = crashAfter(cfg.CrashAfter)
	}
	return c, nil
}

// crashAfter is the step hook of Config.CrashAfter: it kills the process
// right after the step named spec ("flow:step").
func crashAfter(spec string) func(flow, step string) error {
	return func(flow, step string) error {
		if flow+":"+step == spec {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // until the signal lands
		}
		return nil
	}
}

// Close releases the controller's handles. Sandboxes and their namespaces
// stay: they outlive an agent restart.
func (c *Controller) Close() {
	c.mu.Lock()
	if c.stubTimer != nil {
		c.stubTimer.Stop()
	}
	if c.stopWatch != nil {
		c.stopWatch()
	}
	c.stopBG()
	pool := c.pool
	c.pool = nil
	ops := make([]*sandboxOp, 0, len(c.sandboxes))
	for _, op := range c.sandboxes {
		ops = append(ops, op)
	}
	c.mu.Unlock()
	pool.Close()
	for _, op := range ops {
		op.mu.Lock()
		c.stopDNS(op)
		op.prep = nil // left to the next Start's repairs
		op.mu.Unlock()
		if ns := op.sb.Namespace(); ns != nil && !op.sb.Options().HostMode {
			_ = ns.Close()
		}
	}
	c.useHostDNS(nil)
	c.defaultMu.Lock()
	if c.defaultNS != nil {
		_ = c.defaultNS.Close()
	}
	c.defaultMu.Unlock()
	c.host.Close()
}

// driver returns a driver and its capabilities. Capabilities are asked
// once per driver process, within ctx (the request's): Replay, which
// follows a driver restart, forgets them.
func (c *Controller) driver(ctx context.Context, name string) (driver.Driver, *pb.Capabilities, error) {
	h, _ := ctx.Value(heldKey{}).(*held)
	c.mu.Lock()
	caps, down := c.caps[name], c.driverDown[name]
	if h.has(name) {
		down = nil // held since before the drain began, which waits for this request
	} else if down == nil {
		c.holdLocked(h, name)
	}
	c.mu.Unlock()
	if down != nil && ctx.Value(noWaitKey{}) != nil {
		return nil, nil, errorf(sdk.ErrUnavailable, "driver %q is restarting", name)
	}
	if down != nil {
		if err := c.awaitDriver(ctx, name, down); err != nil {
			return nil, nil, err
		}
		c.mu.Lock()
		caps = c.caps[name]
		c.holdLocked(h, name)
		c.mu.Unlock()
	}
	d, err := c.plugins.Driver(name)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, nil, &notLoadedError{driver: name}
	} else if err != nil {
		return nil, nil, err
	}
	if caps != nil {
		return d, caps, nil
	}
	if caps, err = d.GetCapabilities(ctx); err != nil {
		return nil, nil, fmt.Errorf("driver %q capabilities: %w", name, err)
	}
	c.mu.Lock()
	c.caps[name] = caps
	c.mu.Unlock()
	return d, caps, nil
}

// notLoadedError says that the config loads no driver of a name: a
// network's whose block was removed, or one a create names. It is
// sdk.ErrUnavailable (503): what is on such a network can be neither used
// nor removed until the block is back, which a reload (or a restart)
// does; a delete that needed it is finished then.
type notLoadedError struct{ driver string }

func (e *notLoadedError) Error() string {
	return fmt.Sprintf("driver %q is not loaded: the config has no driver %q block; add it back and run `sandnet reload` to use or remove what is on its networks", e.driver, e.driver)
}

func (e *notLoadedError) Unwrap() error { return sdk.ErrUnavailable }

func (c *Controller) sandboxDir(id string) string {
	return filepath.Join(c.cfg.FilesDir, id)
}

func (c *Controller) hostResolv() sandbox.ResolvConf {
	rc, err := sandbox.ReadResolvConf(c.cfg.HostResolvConf)
	if err != nil {
		c.log.Warn("reading the host's resolv.conf", "error", err)
	}
	return rc
}

// defaultNamespace returns the host's namespace mounted at
// <netns_dir>/default, making it on first use. A failure is returned and
// tried again on the next call.
func (c *Controller) defaultNamespace() (*osl.Namespace, error) {
	c.defaultMu.Lock()
	defer c.defaultMu.Unlock()
	if c.defaultNS != nil {
		return c.defaultNS, nil
	}
	key := filepath.Join(c.cfg.NetnsDir, "default")
	var ns *osl.Namespace
	var err error
	if osl.Exists(key) {
		ns, err = osl.OpenNamespace(key)
	} else {
		ns, err = osl.BindNamespace(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), os.Getpid()), key)
	}
	if err != nil {
		return nil, fmt.Errorf("host namespace for host-mode sandboxes: %w", err)
	}
	c.defaultNS = ns
	return ns, nil
}

// netProto is the wire form of a network for drivers. A global network
// carries this host's advertise address.
func (c *Controller) netProto(n *Network) *pb.Network {
	p := &pb.Network{Id: n.ID, Name: n.Name, Options: n.Options, Internal: n.Internal, EnableIpv6: n.EnableIPv6, Scope: pb.Scope_SCOPE_LOCAL, Vni: n.VNI}
	if n.Scope == "global" {
		p.Scope = pb.Scope_SCOPE_GLOBAL
		if c.cfg.AdvertiseAddr.IsValid() {
			p.AdvertiseAddr = c.cfg.AdvertiseAddr.String()
		}
	}
	conv := func(cs []IPAMConfig) []*pb.IPAMData {
		var out []*pb.IPAMData
		for _, ic := range cs {
			d := &pb.IPAMData{Pool: ic.Subnet.String()}
			if ic.Gateway.IsValid() {
				d.Gateway = fmt.Sprintf("%s/%d", ic.Gateway, ic.Subnet.Bits())
			}
			if ic.Range.IsValid() {
				d.Range = ic.Range.String()
			}
			out = append(out, d)
		}
		return out
	}
	p.Ipv4, p.Ipv6 = conv(n.IPv4), conv(n.IPv6)
	return p
}

// epProto is the wire form of an endpoint for drivers.
func epProto(ep *Endpoint) *pb.Endpoint {
	p := &pb.Endpoint{Id: ep.ID, Name: ep.Name, NetworkId: ep.NetworkID, Interface: &pb.EndpointInterface{Mac: ep.MAC}, Options: ep.DriverOpts}
	if ep.Address.IsValid() {
		p.Interface.Address = ep.Address.String()
	}
	if ep.AddressV6.IsValid() {
		p.Interface.AddressV6 = ep.AddressV6.String()
	}
	for _, b := range ep.Ports {
		pbb := &pb.PortBinding{Proto: b.Proto, ContainerPort: uint32(b.ContainerPort), HostPort: uint32(b.HostPort), HostPortEnd: uint32(b.HostPortEnd)}
		if b.HostIP.IsValid() {
			pbb.HostIp = b.HostIP.String()
		}
		p.PortBindings = append(p.PortBindings, pbb)
	}
	return p
}

// sortedSandboxes returns the sandboxes ordered by creation.
func (c *Controller) sortedSandboxes(stubs bool) []*sandboxOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*sandboxOp, 0, len(c.sandboxes))
	for _, op := range c.sandboxes {
		if stubs || !op.stub {
			out = append(out, op)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].created.Before(out[j].created) })
	return out
}

// errorf is fmt.Errorf with the sentinel last, for API errors that name
// the field at fault.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, sentinel)...)
}
