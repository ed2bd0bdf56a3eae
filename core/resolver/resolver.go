package resolver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/osl"
)

// Address returns where Start binds the resolver inside a sandbox, over
// UDP and TCP: 127.0.0.11:53. It needs no address of its own: 127.0.0.0/8
// is a local route on lo, which osl brings up in every namespace it makes.
func Address() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 11}), 53)
}

// DefaultHostResolvConf is the file upstreams are read from when
// Config.Upstreams is empty.
const DefaultHostResolvConf = "/etc/resolv.conf"

// ErrRunning is returned by Start and StartWith on a Resolver that is
// already serving.
var ErrRunning = errors.New("resolver already running")

// Backend is the controller's view of one sandbox's names. Its methods are
// called for every query, concurrently from several goroutines: they must
// be fast, do no I/O and not block behind slow work.
type Backend interface {
	// Lookup returns the addresses of name as seen from this sandbox:
	// container names, hostnames, network-scoped aliases, sandbox-local
	// aliases, and "name.network" for networks the sandbox shares with
	// the target. name is lowercase ASCII without the trailing dot and
	// never empty; names with bytes that cannot be in a container name
	// (dots inside a label, backslashes, spaces, control and non-ASCII
	// bytes) are not looked up. found=false means not a local name (it is
	// forwarded). found=true with no addresses of the asked family means
	// NOERROR with an empty answer (NODATA), not forwarded.
	//
	// v4 holds IPv4 addresses and v6 IPv6 addresses; others are skipped.
	// The resolver reads the slices only during the query and never
	// changes them; the Backend must not change them afterwards either
	// (return a copy or an immutable snapshot).
	Lookup(name string) (v4, v6 []netip.Addr, found bool)
	// ReverseLookup returns the PTR target ("name.network.") for an
	// address on a network the sandbox shares, or found=false (the query
	// is then forwarded). A target that is not a valid DNS name counts as
	// not found.
	ReverseLookup(ip netip.Addr) (ptr string, found bool)
	// Forward reports which names not found locally may be forwarded.
	// It is asked only for names that are not local.
	Forward() Forwarding
}

// Forwarding is which names that are not local a sandbox's resolver
// forwards upstream; the others get NXDOMAIN at once.
type Forwarding uint8

const (
	// ForwardNone forwards nothing: every network of the sandbox is
	// internal.
	ForwardNone Forwarding = iota
	// ForwardQualified forwards every name but the A and AAAA questions
	// for a single-label name ("db", not "db.example"): a name without a
	// dot that is not a container's is not one the world outside can
	// answer, and forwarding it leaks the sandbox's guesses upstream.
	ForwardQualified
	// ForwardAll forwards every name that is not local.
	ForwardAll
)

// Config configures a Resolver. Zero values mean the defaults.
type Config struct {
	// Upstreams are the servers non-local names are forwarded to, tried in
	// order. Empty means the nameservers of HostResolvConf.
	Upstreams []netip.AddrPort
	// HostResolvConf is the host's resolv.conf (default /etc/resolv.conf),
	// read by New and again by every Start when Upstreams is empty.
	HostResolvConf string
	// Timeout bounds one forwarded query, all upstreams together
	// (default config.DefaultTimeout, 4s).
	Timeout time.Duration
	// MaxInflight bounds the forwarded queries waiting for an upstream
	// (default config.DefaultMaxInflight, 1024); queries beyond it are
	// answered REFUSED at once.
	MaxInflight int
	// Budget, unless nil, bounds the forwarded queries of every resolver
	// sharing it as MaxInflight bounds one's: each waits on a socket of
	// its own, and the resolvers of one agent share its open files.
	Budget *Budget
	// Logger gets upstream failures (at debug level) and Start/Stop
	// (default: discard).
	Logger hclog.Logger
	// Cache keeps forwarded answers; nil forwards every time. Resolvers
	// may share one (see Cache).
	Cache *Cache
	// Metrics gets every query's outcome and the forwards in flight
	// (default: none).
	Metrics Metrics
}

// Resolver is the embedded DNS server of one sandbox. Its methods are safe
// for concurrent use. A stopped Resolver can be started again.
type Resolver struct {
	backend     Backend
	log         hclog.Logger
	timeout     atomic.Int64 // time.Duration; SetLimits
	maxInflight atomic.Int64 // SetLimits
	budget      *Budget      // Config.Budget
	resolvConf  string
	cache       *Cache
	metrics     Metrics

	configured []netip.AddrPort // Config.Upstreams, or SetConfigured's; upMu

	upMu   sync.Mutex       // guards static, fromSet and configured; held while the upstreams are set
	static []netip.AddrPort // SetUpstreams's list, else configured
	// fromSet says static is SetUpstreams's list, which SetConfigured
	// does not replace.
	fromSet bool

	upstreams atomic.Pointer[upstreamSet]
	inflight  atomic.Int64  // forwarded queries holding a slot
	rot       atomic.Uint32 // round-robin position of multi-address answers

	mu  sync.Mutex // guards run and extra
	run *run
	// extra are the runs of the other addresses it answers on besides
	// Address (SetExtraAddrs), by address.
	extra map[netip.Addr]*run
}

// run is one address's Start..Stop period (or SetExtraAddrs's): the
// sockets and every goroutine serving them.
type run struct {
	ctx    context.Context // cancelled by Stop: forwards give up
	cancel context.CancelFunc
	udp    *net.UDPConn
	tcp    *net.TCPListener
	wg     sync.WaitGroup // readers, accept loop, connections, forwards

	mu     sync.Mutex // guards conns and closed
	conns  map[*net.TCPConn]struct{}
	closed bool
}

// New returns a stopped Resolver answering from b.
func New(cfg Config, b Backend) *Resolver {
	r := &Resolver{
		backend:    b,
		log:        cfg.Logger,
		configured: slices.Clone(cfg.Upstreams),
		static:     slices.Clone(cfg.Upstreams),
		resolvConf: cfg.HostResolvConf,
		cache:      cfg.Cache,
		metrics:    cfg.Metrics,
		budget:     cfg.Budget,
	}
	if r.metrics == nil {
		r.metrics = nopMetrics{}
	}
	if r.log == nil {
		r.log = hclog.NewNullLogger()
	}
	r.SetLimits(cfg.Timeout, cfg.MaxInflight)
	if r.resolvConf == "" {
		r.resolvConf = DefaultHostResolvConf
	}
	r.loadUpstreams()
	return r
}

// upstreamSet is the list of servers a resolver forwards to.
type upstreamSet struct {
	list []upstream
	key  string // the list written out: the cache's name for it
}

func newUpstreamSet(aps []netip.AddrPort) *upstreamSet {
	set := &upstreamSet{list: make([]upstream, len(aps))}
	var b strings.Builder
	for i, ap := range aps {
		set.list[i] = newUpstream(ap)
		b.WriteString(ap.String())
		b.WriteByte(' ')
	}
	set.key = b.String()
	return set
}

// loadUpstreams sets the upstreams from the config or the host's
// resolv.conf. A resolv.conf that cannot be read leaves the previous list.
func (r *Resolver) loadUpstreams() {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	r.loadUpstreamsLocked()
}

func (r *Resolver) loadUpstreamsLocked() {
	aps := r.static
	if len(aps) == 0 {
		var err error
		aps, err = hostUpstreams(r.resolvConf, resolvedResolvConf)
		if err != nil {
			r.log.Warn("cannot read upstream DNS servers", "error", err)
			if r.upstreams.Load() != nil {
				return
			}
		}
	}
	set := newUpstreamSet(aps)
	if old := r.upstreams.Load(); old != nil && old.key == set.key {
		return
	}
	r.upstreams.Store(set)
	r.log.Debug("upstream DNS servers", "servers", aps)
}

// SetUpstreams makes aps the servers forwarded queries go to from now on,
// for a running resolver too (queries already forwarded finish with the
// old list); empty means Config.Upstreams again, or the host's
// resolv.conf when that is empty too.
func (r *Resolver) SetUpstreams(aps []netip.AddrPort) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	r.static, r.fromSet = slices.Clone(aps), len(aps) > 0
	if len(r.static) == 0 {
		r.static = r.configured
	}
	r.loadUpstreamsLocked()
}

// SetConfigured replaces Config.Upstreams, the servers forwarded to when
// SetUpstreams gave none (empty: the host's resolv.conf): a running
// resolver forwarding to them forwards to the new ones from now on.
func (r *Resolver) SetConfigured(aps []netip.AddrPort) {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	if slices.Equal(r.configured, aps) {
		return
	}
	r.configured = slices.Clone(aps)
	if !r.fromSet {
		r.static = r.configured
		r.loadUpstreamsLocked()
	}
}

// ReloadHostResolvConf reads the host's resolv.conf again when the
// resolver forwards to its servers (no Config.Upstreams, none from
// SetUpstreams), and forwards to the servers it names from now on.
func (r *Resolver) ReloadHostResolvConf() {
	r.upMu.Lock()
	defer r.upMu.Unlock()
	if len(r.static) == 0 {
		r.loadUpstreamsLocked()
	}
}

// Upstreams returns the servers forwarded queries go to now.
func (r *Resolver) Upstreams() []netip.AddrPort {
	set := r.upstreams.Load()
	aps := make([]netip.AddrPort, len(set.list))
	for i, u := range set.list {
		aps[i] = u.ap
	}
	return aps
}

// Start binds Address (127.0.0.11:53) over UDP and TCP inside ns and
// serves it until Stop. The sockets are opened on a thread inside ns but
// served from ordinary goroutines; queries to upstreams leave from the
// agent's own namespace, so upstreams on the host's loopback work. When
// Config.Upstreams is empty, the host's resolv.conf is read again.
func (r *Resolver) Start(ns *osl.Namespace) error {
	if ns == nil {
		return errors.New("starting resolver: no namespace")
	}
	r.mu.Lock()
	running := r.run != nil
	r.mu.Unlock()
	if running {
		// Checked first: binding would fail on our own sockets.
		return fmt.Errorf("starting resolver in %s: %w", ns, ErrRunning)
	}
	var udp *net.UDPConn
	var tcp *net.TCPListener
	err := ns.Do(func() error {
		var err error
		udp, tcp, err = Listen()
		return err
	})
	if err != nil {
		return fmt.Errorf("starting resolver in %s: %w", ns, err)
	}
	r.ReloadHostResolvConf()
	if err := r.StartWith(udp, tcp); err != nil {
		return fmt.Errorf("starting resolver in %s: %w", ns, err)
	}
	return nil
}

// Listen binds Address (127.0.0.11:53) over UDP and TCP in the calling
// thread's network namespace, for StartWith: a namespace made ahead of
// time can have its resolver's sockets bound while it is made.
func Listen() (*net.UDPConn, *net.TCPListener, error) {
	return listenAt(Address())
}

// listenAt binds ap over UDP and TCP in the calling thread's network
// namespace.
func listenAt(ap netip.AddrPort) (*net.UDPConn, *net.TCPListener, error) {
	udp, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, nil, err
	}
	tcp, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		udp.Close()
		return nil, nil, err
	}
	return udp, tcp, nil
}

// StartWith serves on sockets the caller bound (tests and benchmarks use
// loopback ports); either may be nil. The Resolver owns them from then on:
// they are closed by Stop, or at once if StartWith fails.
func (r *Resolver) StartWith(udp *net.UDPConn, tcp *net.TCPListener) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run != nil {
		if udp != nil {
			udp.Close()
		}
		if tcp != nil {
			tcp.Close()
		}
		return ErrRunning
	}
	r.run = r.serve(udp, tcp)
	if r.log.IsDebug() {
		var ua, ta net.Addr
		if udp != nil {
			ua = udp.LocalAddr()
		}
		if tcp != nil {
			ta = tcp.Addr()
		}
		r.log.Debug("resolver started", "udp", ua, "tcp", ta)
	}
	return nil
}

// serve starts serving udp and tcp (either may be nil) in a run of their
// own.
func (r *Resolver) serve(udp *net.UDPConn, tcp *net.TCPListener) *run {
	ctx, cancel := context.WithCancel(context.Background())
	run := &run{ctx: ctx, cancel: cancel, udp: udp, tcp: tcp, conns: map[*net.TCPConn]struct{}{}}
	if udp != nil {
		tuneUDP(udp)
		// One reader: it never blocks (forwards go to goroutines of
		// their own), and a second one on the same socket only adds
		// wake-ups and contention: under a plain dnsperf run on 2 cores
		// one reader answered 1.4 times as many queries as two
		// (docs/BENCHMARKS.md). Sandboxes each have their own.
		run.wg.Add(1)
		go r.serveUDP(run)
	}
	if tcp != nil {
		run.wg.Add(1)
		go r.serveTCP(run)
	}
	return run
}

// SetExtraAddrs has a running Resolver answer on addrs too, port 53 over
// UDP and TCP, bound inside ns, besides Address: a CNI runtime that
// writes resolv.conf from each attachment's result, and takes an
// attachment's nameservers out of it by value when it goes, is given an
// address per attachment (the controller's resolverAddrFor). Addresses
// it answered on before and not in addrs are closed; those it answers on
// already are kept. An address that cannot be bound is skipped and
// named in the error, the others are served. A stopped Resolver serves
// none and closes those it had.
func (r *Resolver) SetExtraAddrs(ns *osl.Namespace, addrs []netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.extra) == 0 && !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a != Address().Addr() }) {
		return nil // none served, none asked for: every join of most sandboxes
	}
	want := map[netip.Addr]bool{}
	if r.run != nil {
		for _, a := range addrs {
			if a != Address().Addr() {
				want[a] = true
			}
		}
	}
	var errs []error
	for a, run := range r.extra {
		if !want[a] {
			delete(r.extra, a)
			errs = append(errs, run.stop())
		}
	}
	for a := range want {
		if r.extra[a] != nil {
			continue
		}
		var udp *net.UDPConn
		var tcp *net.TCPListener
		err := ns.Do(func() error {
			var err error
			udp, tcp, err = listenAt(netip.AddrPortFrom(a, Address().Port()))
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("answering on %s in %s: %w", a, ns, err))
			continue
		}
		if r.extra == nil {
			r.extra = map[netip.Addr]*run{}
		}
		r.extra[a] = r.serve(udp, tcp)
		r.log.Debug("resolver answering on another address", "address", a)
	}
	return errors.Join(errs...)
}

// ExtraAddrs returns the addresses SetExtraAddrs has the Resolver answer
// on, in order.
func (r *Resolver) ExtraAddrs() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	addrs := make([]netip.Addr, 0, len(r.extra))
	for a := range r.extra {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs
}

// Stop closes the sockets, cancels forwarded queries and waits for every
// goroutine of the Resolver to end. Stopping a stopped Resolver does
// nothing.
func (r *Resolver) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := r.run
	if run == nil {
		return nil
	}
	r.run = nil
	errs := []error{run.stop()}
	for a, x := range r.extra {
		delete(r.extra, a)
		errs = append(errs, x.stop())
	}
	r.log.Debug("resolver stopped")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stopping resolver: %w", err)
	}
	return nil
}

// stop closes the run's sockets and connections, cancels its forwards and
// waits for its goroutines.
func (run *run) stop() error {
	run.cancel()
	var errs []error
	if run.udp != nil {
		errs = append(errs, run.udp.Close())
	}
	if run.tcp != nil {
		errs = append(errs, run.tcp.Close())
	}
	run.mu.Lock()
	run.closed = true
	for c := range run.conns {
		c.Close()
	}
	run.mu.Unlock()
	run.wg.Wait()
	return errors.Join(errs...)
}

// track registers an accepted connection so Stop can close it; it refuses
// one when the run is stopping or maxTCPConns are open.
func (run *run) track(c *net.TCPConn) bool {
	run.mu.Lock()
	defer run.mu.Unlock()
	if run.closed || len(run.conns) >= maxTCPConns {
		return false
	}
	run.conns[c] = struct{}{}
	return true
}

func (run *run) untrack(c *net.TCPConn) {
	run.mu.Lock()
	delete(run.conns, c)
	run.mu.Unlock()
}

// SetLimits sets the bound of one forwarded query and of the queries in
// flight (0: the default of each), for the queries forwarded from now
// on.
func (r *Resolver) SetLimits(timeout time.Duration, maxInflight int) {
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	if maxInflight <= 0 {
		maxInflight = config.DefaultMaxInflight
	}
	r.timeout.Store(int64(timeout))
	r.maxInflight.Store(int64(maxInflight))
}

// acquire takes an in-flight slot for a forwarded query; false means the
// resolver is full and the query is refused.
func (r *Resolver) acquire() bool {
	if r.inflight.Add(1) > min(r.maxInflight.Load(), r.budget.share()) {
		r.inflight.Add(-1)
		return false
	}
	if !r.budget.take() {
		r.inflight.Add(-1)
		return false
	}
	r.metrics.ForwardStarted()
	return true
}

func (r *Resolver) release() {
	r.budget.give()
	r.inflight.Add(-1)
	r.metrics.ForwardDone()
}

// Budget bounds the forwarded queries in flight across the resolvers
// that share it (Config.Budget), and each one's to a quarter of it: a
// query beyond either is answered REFUSED at once, as beyond a resolver's
// own MaxInflight. Each forwarded query
// holds a socket, so that one agent's containers together cannot use up
// its open files, and with them its API, its other containers' lookups
// and the namespaces of new sandboxes. A nil *Budget bounds nothing.
type Budget struct {
	max  int64
	used atomic.Int64
}

// NewBudget returns a Budget of max forwarded queries.
func NewBudget(max int) *Budget { return &Budget{max: int64(max)} }

// share is the most one resolver may hold of the budget: a quarter, so
// that one container flooding its resolver leaves the others theirs. A
// nil *Budget bounds nothing.
func (b *Budget) share() int64 {
	if b == nil {
		return math.MaxInt64
	}
	return max(b.max/4, 1)
}

// take takes a query's place, or says there is none.
func (b *Budget) take() bool {
	if b == nil {
		return true
	}
	if b.used.Add(1) > b.max {
		b.used.Add(-1)
		return false
	}
	return true
}

// give gives back a place take took.
func (b *Budget) give() {
	if b != nil {
		b.used.Add(-1)
	}
}
