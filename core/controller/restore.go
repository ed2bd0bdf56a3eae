package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/nspool"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// state is everything the store holds, read in one pass.
type state struct {
	networks  map[string]*Network
	endpoints []*Endpoint
	sandboxes []*Sandbox
}

func (c *Controller) readState(ctx context.Context) (*state, error) {
	st := &state{networks: map[string]*Network{}}
	if err := c.kv.list(ctx, networkPrefix, func(_ string, idx uint64, raw []byte) error {
		var n Network
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		if c.mine(&n) {
			st.networks[n.ID] = &n
			c.noteNetworkDNS(&n, idx)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := c.kv.list(ctx, endpointPrefix, func(_ string, _ uint64, raw []byte) error {
		var ep Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		if ep.HostID == c.cfg.HostID { // other hosts' endpoints on global networks are theirs
			st.endpoints = append(st.endpoints, &ep)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	err := c.kv.list(ctx, sandboxPrefix, func(_ string, _ uint64, raw []byte) error {
		var s Sandbox
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if s.HostID == c.cfg.HostID {
			st.sandboxes = append(st.sandboxes, &s)
		}
		return nil
	})
	return st, err
}

// mine reports whether a network is this host's to replay and restore:
// every global network, and the local networks of this host.
func (c *Controller) mine(n *Network) bool {
	return n.Scope == "global" || n.HostID == c.cfg.HostID
}

// Start reads the store back after an agent start: networks and endpoints
// are replayed to their drivers (every driver call is idempotent), what
// the store does not hold is removed from the host (collect), every
// stored sandbox becomes a stub — keeping its namespace, interfaces and
// addresses — and anything left in-delete is finished. Stubs that no
// container claims within the grace period are deleted with their
// endpoints.
func (c *Controller) Start(ctx context.Context) error {
	st, err := c.readStateWaiting(ctx)
	if err != nil {
		return fmt.Errorf("reading state back: %w", err)
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		if err := fileLimitError(len(st.sandboxes), lim.Cur); err != nil {
			return err
		}
	}
	leasing, err := c.lease.begin(ctx)
	if err != nil {
		return err
	}
	c.upgradeLayout(ctx, st)
	bySandbox := map[string][]*Endpoint{}
	for _, ep := range st.endpoints {
		bySandbox[ep.SandboxID] = append(bySandbox[ep.SandboxID], ep)
	}
	if err := c.replay(ctx, st, "", nil); err != nil {
		c.log.Warn("the drivers did not all take the state back", "error", err)
	}
	c.collect(ctx, st)
	c.removeOrphanEndpoints(ctx, st, bySandbox)
	c.removeUnfinished()
	pool := nspool.New(c.log, c.cfg.SpareNamespaces, spareMaker{c}, c.quiet)
	c.mu.Lock()
	c.pool = pool
	c.mu.Unlock()
	c.restoreSandboxes(ctx, st, bySandbox)
	for _, n := range st.networks {
		if n.InDelete {
			if err := c.finishNetworkDelete(ctx, n); err != nil {
				c.log.Error("finishing network delete", "network", n.Name, "error", err)
			}
		}
	}
	if err := c.startHostListener(); err != nil {
		return err
	}
	wctx, cancel := context.WithCancel(c.bg) // background work: the controller's own context
	c.mu.Lock()
	c.stubTimer, c.stubsSince = time.AfterFunc(c.cfg.StubGracePeriod, c.reapStubs), time.Now()
	c.stopWatch = cancel
	c.mu.Unlock()
	if leasing {
		go c.lease.run(wctx)
	}
	go c.watchGlobal(wctx)
	go c.peers.run(wctx)
	go c.watchHostResolvConf(wctx)
	go c.watchOrphans(wctx)
	c.log.Info("state restored", "networks", len(st.networks), "endpoints", len(st.endpoints), "sandboxes", len(st.sandboxes))
	return nil
}

// removeOrphanEndpoints deletes, with their addresses, the endpoints
// that name no stored sandbox: a crash between create and join left them.
// bySandbox holds st's endpoints by the sandbox they name.
func (c *Controller) removeOrphanEndpoints(ctx context.Context, st *state, bySandbox map[string][]*Endpoint) {
	sandboxIDs := map[string]bool{}
	for _, s := range st.sandboxes {
		sandboxIDs[s.ID] = true
	}
	for sbID, eps := range bySandbox {
		if sbID != "" && sandboxIDs[sbID] {
			continue
		}
		for _, ep := range eps {
			c.log.Info("removing orphan endpoint", "endpoint", short(ep.ID), "network", short(ep.NetworkID))
			if err := c.deleteEndpoint(ctx, ep.NetworkID, ep.ID); err != nil {
				c.log.Error("removing orphan endpoint", "endpoint", short(ep.ID), "error", err)
			}
		}
	}
}

// restoreSandboxes makes every stored sandbox a stub, makes the
// namespaces of the live ones agree with their endpoints
// (reconcileInterfaces), and deletes those left in-delete or whose
// namespace is missing (doomed). It may assume the orphan endpoints and
// the scratch namespaces are gone.
func (c *Controller) restoreSandboxes(ctx context.Context, st *state, bySandbox map[string][]*Endpoint) {
	var doomed, restored []*sandboxOp
	for _, s := range st.sandboxes {
		op, err := c.restoreSandbox(s, st.networks, bySandbox[s.ID])
		if err != nil {
			c.log.Error("restoring sandbox", "sandbox", short(s.ID), "error", err)
			continue
		}
		restored = append(restored, op)
		if s.InDelete || op.sb.Namespace() == nil && !op.external && op.unopened == nil {
			doomed = append(doomed, op)
		}
	}
	if host, err := netns.GetFromPid(os.Getpid()); err != nil {
		c.log.Error("opening the agent's namespace; sandboxes' interfaces not checked", "error", err)
	} else {
		for _, op := range restored {
			if !slices.Contains(doomed, op) {
				c.reconcileInterfaces(ctx, op, host)
			}
		}
		host.Close()
	}
	for _, op := range doomed {
		if err := c.deleteSandbox(ctx, op); err != nil {
			c.log.Error("finishing sandbox delete", "sandbox", short(op.sb.ID()), "error", err)
		}
	}
}

// reconcileInterfaces makes a restored sandbox's namespace agree with its
// endpoints after a stop in the middle of a connect, whose record and
// interface are made side by side. An endpoint whose interface is missing
// never finished joining and is removed (its connect never answered); one
// whose interface is there gets what it may lack (addresses, up, routes,
// the default gateway). In a namespace sandnet made, an interface of the
// host's side (its other end on the host, or retired) that no endpoint
// owns is deleted: its record never landed, so its address is not held.
// Interfaces the container made inside its namespace are never touched,
// host-mode sandboxes are left alone, and so is a namespace the runtime
// made (external key), whose other interfaces may be the runtime's.
// host is the agent's own namespace.
func (c *Controller) reconcileInterfaces(ctx context.Context, op *sandboxOp, host netns.NsHandle) {
	ns := op.sb.Namespace()
	if ns == nil || op.sb.Options().HostMode {
		return
	}
	links, err := ns.HostLinks(host)
	if err != nil {
		c.log.Error("listing interfaces", "sandbox", short(op.sb.ID()), "error", err)
		return
	}
	eps := op.sb.Endpoints()
	missing, err := op.sb.Reapply()
	if err != nil {
		c.log.Error("setting the sandbox's interfaces up again", "sandbox", short(op.sb.ID()), "error", err)
	}
	owned := map[string]bool{}
	for _, e := range eps {
		if slices.Contains(missing, e.ID) {
			c.log.Warn("removing an endpoint whose connect did not finish", "endpoint", short(e.ID), "sandbox", short(op.sb.ID()))
			if err := c.removeEndpoint(ctx, op, e.NetworkID, e.ID, false); err != nil {
				c.log.Error("removing unfinished endpoint", "endpoint", short(e.ID), "error", err)
			}
			continue
		}
		owned[e.IfName] = true
	}
	if op.external {
		return
	}
	for _, l := range links {
		if name := l.Attrs().Name; !owned[name] {
			c.log.Warn("deleting an interface no endpoint owns", "interface", name, "sandbox", short(op.sb.ID()))
			if err := ns.RemoveInterface(name); err != nil {
				c.log.Error("deleting stray interface", "interface", name, "error", err)
			}
		}
	}
}

// removeUnfinished unmounts the namespaces of creates an agent stop
// interrupted before their records landed.
func (c *Controller) removeUnfinished() {
	entries, err := os.ReadDir(c.creatingDir())
	if err != nil {
		return // none
	}
	for _, e := range entries {
		key := filepath.Join(c.creatingDir(), e.Name())
		if strings.HasPrefix(e.Name(), sparePrefix) {
			c.log.Debug("discarding a spare namespace of the previous run", "key", key)
		} else {
			c.log.Info("removing the namespace of an unfinished sandbox create", "key", key)
		}
		if err := osl.Remove(key); err != nil {
			c.log.Error("removing namespace", "key", key, "error", err)
		}
	}
}

// restoreSandbox registers a stored sandbox as a stub, with its namespace
// when it still exists.
func (c *Controller) restoreSandbox(s *Sandbox, networks map[string]*Network, eps []*Endpoint) (*sandboxOp, error) {
	dir := c.sandboxDir(s.ID)
	if legacy := filepath.Join(c.cfg.DataDir, "sandboxes", s.ID); c.cfg.DataDir != "" && !exists(dir) && exists(legacy) {
		dir = legacy
	}
	sb := sandbox.New(s.ID, s.ContainerID, s.Options, dir, c.hostResolv())
	var unopened error
	switch {
	case s.Options.HostMode:
		ns, err := c.defaultNamespace()
		if err != nil {
			return nil, err
		}
		sb.SetNamespace(ns.Path(), ns)
	case s.Key != "" && osl.Exists(s.Key):
		ns, err := openNamespace(s.Key)
		if err != nil {
			// Kept without a handle rather than dropped: a sandbox the
			// controller does not know would hold its addresses and
			// names for ever, beyond inspect and rm.
			c.log.Error("opening a sandbox's namespace; it stays, without one, until a claim opens it", "sandbox", short(s.ID), "error", err)
			unopened = err
		}
		sb.SetNamespace(s.Key, ns)
	case s.Key != "":
		sb.SetNamespace(s.Key, nil) // gone, or never made: see Start
	}
	for _, ep := range eps {
		if n := networks[ep.NetworkID]; n != nil {
			sb.Restore(sbEndpoint(n, ep))
			c.names.add(n, ep, s.Options.Hostname)
		}
	}
	// A front's sandbox is its runtime's until the front removes it: the
	// runtime will not create it again, so it is never a stub to reap.
	op := &sandboxOp{sb: sb, created: s.Created, external: s.Options.ExternalKey, front: s.Front, stub: s.Front == "", unopened: unopened}
	if s.RuntimeNetns != "" {
		op.runtimeNetns.Store(&s.RuntimeNetns)
	}
	c.refreshDNS(op)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sandboxes[s.ID] = op
	c.byContainer[s.ContainerID] = s.ID
	if s.Options.Ingress {
		c.ingress = s.ID
	}
	return op, nil
}

// RestoreSandbox claims the stub sandbox of a container without changing
// it (a runtime that restarted with its containers still running).
func (c *Controller) RestoreSandbox(ctx context.Context, container string) (*Sandbox, error) {
	op, err := c.byContainerID(container)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if op.stub && op.deleting { // the grace period just ended: see claimable
		err = claimable(op, container)
		c.mu.Unlock()
		return nil, err
	}
	op.stub = false
	c.mu.Unlock()
	op.mu.Lock()
	err = c.reopen(op)
	op.mu.Unlock()
	if err != nil {
		c.unclaim(op)
		return nil, err
	}
	return c.view(ctx, op)
}

// storeStartWait bounds how long a start waits for a store that does not
// answer yet (Consul still coming up beside the agent at boot).
const storeStartWait = 30 * time.Second

// readStateWaiting is readState, tried again while the store is
// unavailable, for up to storeStartWait: the agent may start before its
// store (the Consul plugin's Configure does not contact Consul).
func (c *Controller) readStateWaiting(ctx context.Context) (*state, error) {
	begin, wait := time.Now(), 250*time.Millisecond
	for {
		st, err := c.readState(ctx)
		if err == nil || !errors.Is(err, sdk.ErrUnavailable) || time.Since(begin)+wait > storeStartWait {
			return st, err
		}
		c.log.Warn("the store does not answer yet; waiting for it", "error", err, "retry_in", wait, "waited", time.Since(begin).Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 4*time.Second)
	}
}

// Open files the agent holds: about filesBase with no sandbox (the store
// and driver connections, the API, spares), and filesPerSandbox more for
// each sandbox (its namespace, its resolver's sockets), measured with the
// bridge driver at 37 and 5.
const (
	filesBase       = 64
	filesPerSandbox = 6
)

// fileLimitError refuses a start whose open-file limit cannot hold the
// sandboxes the store has: past it, namespaces fail to open and the API
// stops accepting, so that no runtime can claim its stub before the
// grace period deletes it.
func fileLimitError(sandboxes int, limit uint64) error {
	need := uint64(filesBase + filesPerSandbox*sandboxes)
	if limit >= need {
		return nil
	}
	return errorf(sdk.ErrUnavailable, "the open-file limit (RLIMIT_NOFILE) is %d, and the store's %d sandboxes need about %d: "+
		"raise it (LimitNOFILE= in the systemd unit, ulimit -n) and start again", limit, sandboxes, need)
}

// openNamespace opens a sandbox's namespace as it is read back or
// reopened; tests make it fail.
var openNamespace = osl.OpenNamespace

// unclaim makes a sandbox whose claim failed before it changed anything
// a stub again, for the runtime's next try (or the reaper).
func (c *Controller) unclaim(op *sandboxOp) {
	c.mu.Lock()
	op.stub = op.front == ""
	c.mu.Unlock()
}

// reopen opens the namespace of a sandbox whose namespace could not be
// opened when it was read back (op.unopened), for a claim or a connect.
// op.mu is held.
func (c *Controller) reopen(op *sandboxOp) error {
	if op.unopened == nil {
		return nil
	}
	ns, err := openNamespace(op.sb.Key())
	if err != nil {
		return errorf(sdk.ErrUnavailable, "opening the namespace of sandbox %s at %s: %v (at the agent's start: %v)", short(op.sb.ID()), op.sb.Key(), err, op.unopened)
	}
	op.sb.SetNamespace(op.sb.Key(), ns)
	op.unopened = nil
	c.log.Info("opened the namespace of a sandbox read back without one", "sandbox", short(op.sb.ID()))
	c.refreshDNS(op)
	return nil
}

// SetStubGracePeriod changes how long the stubs Start read back wait for
// their containers (a reload of sandbox { stub_grace_period }), counted
// from Start: a period already over deletes the unclaimed ones now. It
// says whether they were still waiting; once they were deleted there is
// nothing to change until the next start, which uses its config's period.
func (c *Controller) SetStubGracePeriod(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stubTimer == nil || !c.stubTimer.Stop() {
		return false
	}
	c.stubTimer = time.AfterFunc(max(0, time.Until(c.stubsSince.Add(d))), c.reapStubs)
	c.log.Info("stub grace period", "period", d)
	return true
}

// reapStubs deletes the stubs nobody claimed.
func (c *Controller) reapStubs() {
	for _, op := range c.sortedSandboxes(true) {
		if !c.stateOf(op).stub {
			continue
		}
		c.log.Info("deleting unclaimed stub sandbox", "sandbox", short(op.sb.ID()), "container", op.sb.ContainerID())
		// A claim between the check above and the delete's start keeps
		// the sandbox; one after it is refused (claimable).
		keep := func() bool { return !c.stateOf(op).stub }
		if err := c.deleteSandboxUnless(c.bg, op, keep, c.announceDelete("unclaimed stub deleted after the grace period")); err != nil {
			c.log.Error("deleting unclaimed stub sandbox", "sandbox", short(op.sb.ID()), "error", err)
		}
	}
}

// Replay sends a restarted driver everything it owns: its networks, their
// endpoints, the joins and the published ports. It says what the driver
// did not take (replay); a driver that left a call unanswered is not
// asked to finish the deletes that failed while it was down either.
func (c *Controller) Replay(ctx context.Context, driverName string) error {
	// Requests wait for the driver until the replay is done (see
	// drivergate.go); the replay's own calls do not.
	opened := false
	open := func() {
		if !opened {
			opened = true
			c.driverUp(driverName)
		}
	}
	defer open()
	ctx = context.WithValue(ctx, replayingKey{}, driverName)
	c.mu.Lock()
	delete(c.caps, driverName)
	for id, n := range c.onHost {
		if n.Driver == driverName {
			delete(c.onHost, id)
		}
	}
	c.mu.Unlock()
	st, err := c.readState(ctx)
	if err != nil {
		return err
	}
	leaving := c.leavingEndpoints()
	rerr := c.replay(ctx, st, driverName, leaving)
	// The restarted driver knows no peers: all of them again.
	c.peers.resync(ctx, "")
	open()
	if errors.Is(rerr, errNoAnswer) {
		return rerr
	}
	// A disconnect that failed while the driver was down finishes now.
	for _, l := range leaving {
		if n := st.networks[l.e.NetworkID]; n == nil || n.Driver != driverName {
			continue
		}
		if err := c.lockLive(l.op); err != nil {
			continue // deleted meanwhile
		}
		err := c.releaseEndpoint(ctx, l.op, l.e)
		l.op.mu.Unlock()
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			c.log.Error("finishing a disconnect after the driver's restart", "endpoint", short(l.e.ID), "error", err)
		}
	}
	// A delete that failed while the driver was down finishes now.
	for _, s := range st.sandboxes {
		if !s.InDelete {
			continue
		}
		if op, err := c.lookup(s.ID); err == nil {
			if err := c.deleteSandbox(ctx, op); err != nil && !errors.Is(err, sdk.ErrForbidden) {
				c.log.Error("finishing sandbox delete after the driver's restart", "sandbox", short(s.ID), "error", err)
			}
		}
	}
	return rerr
}

// leavingEndpoint is an endpoint whose removal failed part-way: its
// sandbox keeps it, Leaving, without an interface (removeEndpoint), and
// its record may name the sandbox still.
type leavingEndpoint struct {
	op *sandboxOp
	e  sandbox.Endpoint
}

// leavingEndpoints are the endpoints, by ID, whose removal failed part-way
// (sandbox.Endpoint.Leaving) in sandboxes that have their namespace: a replay must not join them
// again (the driver would make them a new interface), and Replay finishes
// removing them.
func (c *Controller) leavingEndpoints() map[string]leavingEndpoint {
	out := map[string]leavingEndpoint{}
	for _, op := range c.sortedSandboxes(true) {
		if op.sb.Namespace() == nil {
			continue
		}
		for _, e := range op.sb.Endpoints() {
			if e.Leaving {
				out[e.ID] = leavingEndpoint{op: op, e: e}
			}
		}
	}
	return out
}

// replay is Replay over state already read; "" replays every driver. It
// goes on past a failed call (each is logged) and says how many failed,
// naming the first. A driver that leaves one call unanswered for
// replayCallTimeout (its process alive, its health checks answered, but
// stuck) is sent nothing more: a hung call held the replay, and the
// reload or the restart waiting for it, for ever.
func (c *Controller) replay(ctx context.Context, st *state, driverName string, leaving map[string]leavingEndpoint) error {
	keys := map[string]string{}
	for _, s := range st.sandboxes {
		keys[s.ID] = s.Key
	}
	var failed []error
	hung := map[string]bool{}
	for _, n := range st.networks {
		if n.InDelete || driverName != "" && n.Driver != driverName || hung[n.Driver] {
			continue
		}
		errs := c.replayNetwork(ctx, st, n, keys, leaving)
		failed = append(failed, errs...)
		if len(errs) > 0 && errors.Is(errs[len(errs)-1], errNoAnswer) {
			hung[n.Driver] = true
		}
	}
	switch len(failed) {
	case 0:
		return nil
	case 1:
		return failed[0]
	}
	return fmt.Errorf("%d calls failed; the first: %w", len(failed), failed[0])
}

// DefaultReplayCallTimeout bounds each driver call of a replay: calls a
// driver answers in milliseconds (a veth pair, a bridge port), a hundred
// times over.
const DefaultReplayCallTimeout = 30 * time.Second

// errNoAnswer is a replay's call that the driver left unanswered for
// replayCallTimeout.
var errNoAnswer = errors.New("no answer")

// replayNetwork sends network n's driver the network, its endpoints, the
// joins and the published ports, and returns what failed, each failure
// logged; it stops at a call the driver does not answer (errNoAnswer,
// last).
func (c *Controller) replayNetwork(ctx context.Context, st *state, n *Network, keys map[string]string, leaving map[string]leavingEndpoint) []error {
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		c.log.Error("replaying network", "network", n.Name, "error", err)
		return []error{fmt.Errorf("network %s: %w", n.Name, err)}
	}
	np := c.netProto(n)
	if err := c.bounded(ctx, func(ctx context.Context) error {
		return d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: np})
	}); err != nil {
		c.log.Error("replaying network", "network", n.Name, "error", err)
		return []error{fmt.Errorf("network %s: %w", n.Name, err)}
	}
	if n.Scope == scopeGlobal {
		c.mu.Lock()
		c.onHost[n.ID] = n
		c.mu.Unlock()
	}
	var failed []error
	for _, ep := range st.endpoints {
		if _, gone := leaving[ep.ID]; ep.NetworkID != n.ID || gone {
			continue // another network's, or one Replay finishes removing
		}
		epp := epProto(ep)
		err := c.bounded(ctx, func(ctx context.Context) error {
			_, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: np, Endpoint: epp})
			return err
		})
		if key := keys[ep.SandboxID]; err == nil && key != "" && osl.Exists(key) {
			err = c.bounded(ctx, func(ctx context.Context) error {
				if _, err := d.Join(ctx, &pb.JoinRequest{Network: np, Endpoint: epp, SandboxKey: key}); err != nil || !ep.External {
					return err
				}
				_, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: np, Endpoint: epp})
				return err
			})
		}
		if err != nil {
			c.log.Error("replaying endpoint", "endpoint", short(ep.ID), "network", n.Name, "error", err)
			failed = append(failed, fmt.Errorf("endpoint %s on network %s: %w", short(ep.ID), n.Name, err))
			if errors.Is(err, errNoAnswer) {
				break
			}
		}
	}
	return failed
}

// bounded runs one of a replay's driver calls with replayCallTimeout; a
// call cut off by it is errNoAnswer.
func (c *Controller) bounded(ctx context.Context, call func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, c.replayCallTimeout)
	defer cancel()
	err := call(cctx)
	// The call may see its deadline pass before cctx says so.
	deadline, _ := cctx.Deadline()
	if err != nil && !time.Now().Before(deadline) && ctx.Err() == nil {
		return fmt.Errorf("the driver did not answer within %s; the rest of its state was not sent: %w", c.replayCallTimeout, errNoAnswer)
	}
	return err
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
