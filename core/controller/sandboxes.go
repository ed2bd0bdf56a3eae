package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// NewSandbox creates the sandbox of a container, or claims the stub
// sandbox an agent restart left for it, and connects it to the networks
// the request lists. Every failure leaves nothing behind.
func (c *Controller) NewSandbox(ctx context.Context, req SandboxCreate) (_ *Sandbox, err error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	var nsid osl.ID // the runtime's namespace's, given at once
	if req.Netns != "" {
		// The runtime's namespace, given at once: an external key set
		// at creation.
		req.ExternalKey = true
		if nsid, err = c.checkRuntimeNS("netns", req.Netns); err != nil {
			return nil, err
		}
	}
	if req.HostMode && req.ExternalKey {
		return nil, errorf(sdk.ErrInvalid, "external_key: a host-mode sandbox uses the host's namespace and takes no key")
	}
	c.quiet.Enter()
	defer c.quiet.Leave()
	nets, err := c.checkNetworks(ctx, req)
	if err != nil {
		return nil, err
	}
	if req.Netns != "" {
		release, err := c.claimNamespace("netns", req.Netns, nsid, req.ContainerID)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	c.mu.Lock()
	if id, ok := c.byContainer[req.ContainerID]; ok {
		op := c.sandboxes[id]
		if err := claimable(op, req.ContainerID); err != nil {
			c.mu.Unlock()
			return nil, err
		}
		op.stub = false
		c.mu.Unlock()
		c.log.Info("stub sandbox claimed", "sandbox", short(id), "container", req.ContainerID)
		return c.claimWithNetworks(ctx, op, nets)
	}
	if c.creating[req.ContainerID] {
		c.mu.Unlock()
		return nil, errorf(sdk.ErrForbidden, "container %s already has a sandbox being created", req.ContainerID)
	}
	if req.Ingress && c.ingress != "" {
		c.mu.Unlock()
		return nil, errorf(sdk.ErrForbidden, "ingress: sandbox %s is already the ingress sandbox", short(c.ingress))
	}
	c.creating[req.ContainerID] = true
	id := newID()
	if req.Ingress {
		c.ingress = id
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.creating, req.ContainerID)
		if err != nil && req.Ingress && c.ingress == id {
			c.ingress = ""
		}
		c.mu.Unlock()
	}()

	// The namespace, the resolution files and the record are made side
	// by side (with networks, the first join writes the files and carries
	// the record). The namespace is made under a scratch key and moved to
	// its key once the record has landed: should the agent stop in
	// between, Start finds either a record whose key holds no namespace
	// (deleted as a failed create) or a namespace in the scratch directory
	// (which it unmounts), never a namespace at a key no record names.
	return c.create(ctx, id, req, nets)
}

// sandboxNetwork is a network of a SandboxCreate, checked.
type sandboxNetwork struct {
	index int    // in the request
	ref   string // the network's ID
	name  string // the network's name
	args  connectArgs
}

// failed names the entry in err, the error of the attach to the network.
// A network deleted since the create checked it is named as the request
// named it, not by the ID the attach looked up.
func (n sandboxNetwork) failed(ctx context.Context, c *Controller, err error) error {
	if errors.Is(err, sdk.ErrNotFound) {
		if _, _, lerr := c.networkByID(ctx, n.ref); errors.Is(lerr, sdk.ErrNotFound) {
			return errorf(sdk.ErrNotFound, "networks[%d].network: network %s was deleted while the sandbox was being created", n.index, n.name)
		}
	}
	return fmt.Errorf("networks[%d]: %w", n.index, err)
}

// checkNetworks checks the networks a create lists before anything is
// made: each names a network that exists, at most once, with valid
// addresses and ports. Errors name the entry (networks[i].field).
func (c *Controller) checkNetworks(ctx context.Context, req SandboxCreate) ([]sandboxNetwork, error) {
	var out []sandboxNetwork
	seen := map[string]int{}
	for i, sn := range req.Networks { // each entry checked by Validate
		sn.Container = req.ContainerID
		args, err := parseConnect(sn.Connect)
		if err != nil {
			return nil, fmt.Errorf("networks[%d].%w", i, err)
		}
		n, _, _, err := c.cachedNetwork(ctx, sn.Network)
		if err != nil {
			return nil, fmt.Errorf("networks[%d].network: %w", i, err)
		}
		if _, caps, err := c.driver(ctx, n.Driver); err == nil {
			if err := checkConnectArgs(n, caps, args); err != nil {
				return nil, fmt.Errorf("networks[%d].%w", i, err)
			}
		}
		if j, dup := seen[n.ID]; dup {
			return nil, errorf(sdk.ErrInvalid, "networks[%d].network: network %s is listed twice (networks[%d])", i, n.Name, j)
		}
		seen[n.ID] = i
		out = append(out, sandboxNetwork{index: i, ref: n.ID, name: n.Name, args: args})
	}
	return out, nil
}

// lockLive takes op.mu for a change to a sandbox found by its container,
// unless the sandbox is gone or going meanwhile: a delete that took the
// lock first (op.deleted), one waiting for it (op.deleting) or one that
// failed part-way (op.unfinished). A change after a delete would write
// the record of a sandbox that no longer exists back to the store. On
// error op.mu is not held.
func (c *Controller) lockLive(op *sandboxOp) error {
	op.mu.Lock()
	st := c.stateOf(op)
	var err error
	switch {
	case st.deleted:
		err = errorf(sdk.ErrNotFound, "sandbox %s was deleted", short(op.sb.ID()))
	case st.deleting:
		err = errorf(sdk.ErrForbidden, "sandbox %s is being deleted", short(op.sb.ID()))
	case st.unfinished:
		err = errorf(sdk.ErrForbidden, "sandbox %s: a delete failed part-way; delete it again to finish", short(op.sb.ID()))
	}
	if err != nil {
		op.mu.Unlock()
	}
	return err
}

// claimable says why op, the sandbox of container, cannot be claimed
// by a create, or nil: it is a stub no delete has begun on (one has when
// the grace period ended just before: the claim would get a sandbox on
// its way out). Called with c.mu held.
func claimable(op *sandboxOp, container string) error {
	switch {
	case !op.stub:
		return errorf(sdk.ErrForbidden, "container %s already has sandbox %s", container, short(op.sb.ID()))
	case op.deleting:
		return errorf(sdk.ErrForbidden, "container %s's sandbox %s is being deleted (a stub past its grace period, or removed): create it again once it is gone", container, short(op.sb.ID()))
	}
	return nil
}

// claimWithNetworks connects a claimed stub sandbox to those of the
// networks it is not on yet; the networks it is on keep their endpoints
// as they are. It is all or nothing, as a create is: when a connect
// fails, those it made go again and the sandbox is a stub again (it was
// left claimed, never to be reaped, with the networks connected before
// the failure).
func (c *Controller) claimWithNetworks(ctx context.Context, op *sandboxOp, nets []sandboxNetwork) (*Sandbox, error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	if st := c.stateOf(op); st.deleted || st.unfinished {
		// A delete that began after the claim took the lock first. Not
		// lockLive: a delete merely waiting (deleting) is the reaper's,
		// which keeps the claimed sandbox, or one that runs after the
		// claim, as it would had it come later.
		return nil, errorf(sdk.ErrForbidden, "container %s's sandbox %s was deleted while the create claimed it: create it again", op.sb.ContainerID(), short(op.sb.ID()))
	}
	if err := c.reopen(op); err != nil {
		c.unclaim(op)
		return nil, err
	}
	var added []*Endpoint
	for _, n := range nets {
		if slices.ContainsFunc(op.sb.Endpoints(), func(e sandbox.Endpoint) bool { return e.NetworkID == n.ref }) {
			continue
		}
		ep, err := c.connectAny(ctx, op, n.ref, n.args, nil)
		if err != nil {
			err = n.failed(ctx, c, err)
			c.undoClaim(ctx, op, added)
			return nil, err
		}
		added = append(added, ep)
	}
	c.announceCreate(op)
	return c.view(ctx, op)
}

// undoClaim takes back a failed claim: the endpoints it added go (in the
// background when that fails: a plugin killed mid-call), and the sandbox
// is a stub again. op.mu is held.
func (c *Controller) undoClaim(ctx context.Context, op *sandboxOp, added []*Endpoint) {
	ctx = context.WithoutCancel(ctx)
	for _, ep := range slices.Backward(added) {
		if err := c.removeEndpoint(ctx, op, ep.NetworkID, ep.ID, false); err != nil {
			c.log.Warn("undoing a failed claim's connect; retrying in the background", "sandbox", short(op.sb.ID()), "endpoint", short(ep.ID), "error", err)
			c.cleanupLater("endpoint "+short(ep.ID), func(ctx context.Context) error {
				op.mu.Lock()
				defer op.mu.Unlock()
				return c.removeEndpoint(ctx, op, ep.NetworkID, ep.ID, false)
			})
		}
	}
	if len(added) > 0 {
		if err := op.sb.WriteFiles(); err != nil {
			c.log.Error("writing resolution files", "sandbox", short(op.sb.ID()), "error", err)
		}
	}
	c.unclaim(op)
}

// undoCreate removes what a create made before one of its parts failed:
// its endpoints, its namespace and files, its record. When the create
// failed because the store did not answer (storeDown), what needs the
// store is left to the background at once: trying it here would only
// wait out the store's timeout a second time before the caller hears
// of the failure (a 503 after twice the timeout). What needs no store
// (the namespace, the files) still goes now when nothing of the store
// comes first.
func (c *Controller) undoCreate(ctx context.Context, op *sandboxOp, storeDown bool) {
	ctx = context.WithoutCancel(ctx)
	now := ctx
	if storeDown {
		var cancel context.CancelFunc
		now, cancel = context.WithCancel(ctx)
		cancel() // every store call fails at once
	}
	if err := c.deleteSandbox(now, op); err != nil {
		c.log.Warn("rolling back sandbox; retrying in the background", "sandbox", short(op.sb.ID()), "error", err)
		c.cleanupLater("sandbox "+short(op.sb.ID()), func(ctx context.Context) error { return c.deleteSandbox(ctx, op) })
	}
}

// validFront reports whether front names a runtime front sandnet has.
func validFront(front string) bool {
	return front == "" || front == "cni" || front == "oci"
}

// creatingDir holds the namespaces of sandboxes being created, until
// their records land.
func (c *Controller) creatingDir() string { return filepath.Join(c.cfg.NetnsDir, ".creating") }

// record is the stored form of a sandbox.
func (c *Controller) record(op *sandboxOp) *Sandbox {
	return &Sandbox{ID: op.sb.ID(), ContainerID: op.sb.ContainerID(), HostID: c.cfg.HostID, Key: op.sb.Key(), Options: op.sb.Options(), Front: op.front, RuntimeNetns: op.runtimePath(), Created: op.created, InDelete: c.stateOf(op).inDelete()}
}

// saveSandbox rewrites a sandbox's record.
func (c *Controller) saveSandbox(ctx context.Context, op *sandboxOp) error {
	s, err := c.kv.store()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(c.record(op))
	_, err = s.Put(ctx, sandboxKey(op.sb.ID()), b)
	return err
}

// view is a sandbox as the API shows it, with its endpoints as stored.
func (c *Controller) view(ctx context.Context, op *sandboxOp) (*Sandbox, error) {
	var eps []*Endpoint
	for _, e := range op.sb.Endpoints() {
		var ep Endpoint
		_, err := c.kv.get(ctx, endpointKey(e.NetworkID, e.ID), &ep)
		switch {
		case errors.Is(err, sdk.ErrNotFound):
			// Its record went while a delete that failed part-way
			// still holds it: gone as far as the API is concerned.
			continue
		case err != nil:
			return nil, err
		}
		eps = append(eps, &ep)
	}
	return c.viewOf(op, eps), nil
}

// viewOf is a sandbox as the API shows it, with endpoints eps.
func (c *Controller) viewOf(op *sandboxOp, eps []*Endpoint) *Sandbox {
	v := c.record(op)
	v.Stub = c.stateOf(op).stub
	v.ResolvConf, v.Hosts = op.sb.ResolvConfPath(), op.sb.HostsPath()
	v.GatewayEndpoint, v.GatewayEndpointV6 = op.sb.GatewayEndpoints()
	for _, ep := range eps {
		v.Endpoints = append(v.Endpoints, *answer(op, ep))
	}
	return v
}

// answer is ep as the API shows it: with the host's end of its interface,
// which the sandbox keeps from the driver's join and the record never
// holds (reserve cannot predict it, and a write for it alone would cost
// every attach a store round trip).
func answer(op *sandboxOp, ep *Endpoint) *Endpoint {
	if ep == nil {
		return nil
	}
	out := *ep
	if e, ok := op.sb.Endpoint(ep.ID); ok {
		out.HostIfName = e.HostIfName
	}
	return &out
}

// destroyNamespace removes a sandbox's namespace, never the host's.
// Without a namespace, what is left at its key (the file of a create or
// move that never finished) goes.
func (c *Controller) destroyNamespace(sb *sandbox.Sandbox) {
	if sb.Options().HostMode {
		return
	}
	var err error
	if ns := sb.Namespace(); ns != nil {
		err = ns.Destroy()
	} else if key := sb.Key(); key != "" {
		err = osl.Remove(key)
	}
	if err != nil {
		c.log.Error("destroying namespace", "sandbox", short(sb.ID()), "error", err)
	}
}

// lookup returns the sandbox with that ID.
func (c *Controller) lookup(id string) (*sandboxOp, error) {
	if id == "" {
		return nil, errorf(sdk.ErrInvalid, "sandbox: empty sandbox ID")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	op, ok := c.sandboxes[id]
	if !ok {
		return nil, errorf(sdk.ErrNotFound, "sandbox %s not found", id)
	}
	return op, nil
}

// byContainerID returns the sandbox of a container.
func (c *Controller) byContainerID(container string) (*sandboxOp, error) {
	if container == "" {
		return nil, errorf(sdk.ErrInvalid, "container: empty container ID")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id, ok := c.byContainer[container]
	if !ok {
		// Only a valid ID is echoed (one that could name a sandbox):
		// another gets the 400 that names what is wrong with it.
		if err := checkContainerID("container", container); err != nil {
			return nil, err
		}
		// The sandbox's own ID, as `sandbox ls` prints it (12 or more
		// characters), for a container that has no such name.
		if op, err := c.bySandboxIDPrefixLocked(container); op != nil || err != nil {
			return op, err
		}
		return nil, errorf(sdk.ErrNotFound, "container %s has no sandbox", container)
	}
	return c.sandboxes[id], nil
}

// bySandboxIDPrefixLocked is the sandbox whose ID starts with ref, when
// ref is at least 12 hex digits; nil when none does, an error when
// several do. c.mu is held.
func (c *Controller) bySandboxIDPrefixLocked(ref string) (*sandboxOp, error) {
	if !isIDPrefix(ref) {
		return nil, nil
	}
	var found *sandboxOp
	for id, op := range c.sandboxes {
		if !strings.HasPrefix(id, ref) {
			continue
		}
		if found != nil {
			return nil, errorf(sdk.ErrInvalid, "container: %s is no container, and the IDs of several sandboxes start with it; give more of the ID", ref)
		}
		found = op
	}
	return found, nil
}

// SandboxByID returns a sandbox by ID: an empty ID is an invalid-argument
// error, an unknown one not-found.
func (c *Controller) SandboxByID(ctx context.Context, id string) (*Sandbox, error) {
	op, err := c.lookup(id)
	if err != nil {
		return nil, err
	}
	return c.view(ctx, op)
}

// SandboxByContainer returns the sandbox of a container.
func (c *Controller) SandboxByContainer(ctx context.Context, container string) (*Sandbox, error) {
	op, err := c.byContainerID(container)
	if err != nil {
		return nil, err
	}
	return c.view(ctx, op)
}

// Sandboxes lists the sandboxes, stubs left out, oldest first.
func (c *Controller) Sandboxes(ctx context.Context) ([]*Sandbox, error) {
	return c.ListSandboxes(ctx, false)
}

// ListSandboxes lists the sandboxes, oldest first; with stubs, also those
// read back after a restart and not claimed yet (marked Stub).
func (c *Controller) ListSandboxes(ctx context.Context, stubs bool) ([]*Sandbox, error) {
	ops := c.sortedSandboxes(stubs)
	out := make([]*Sandbox, len(ops))
	err := inParallel(ctx, len(ops), func(ctx context.Context, i int) (err error) {
		out[i], err = c.view(ctx, ops[i])
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// SandboxWalker is called for each sandbox; returning true stops the walk.
type SandboxWalker func(sb *sandbox.Sandbox) bool

// WalkSandboxes calls walker for each sandbox that is not a stub, oldest
// first, until it returns true.
func (c *Controller) WalkSandboxes(walker SandboxWalker) {
	for _, op := range c.sortedSandboxes(false) {
		if walker(op.sb) {
			return
		}
	}
}

// SandboxContainerWalker returns a walker that finds the sandbox of a
// container and stores it in *out.
func SandboxContainerWalker(out **sandbox.Sandbox, containerID string) SandboxWalker {
	return func(sb *sandbox.Sandbox) bool {
		if sb.ContainerID() == containerID {
			*out = sb
			return true
		}
		return false
	}
}

// SandboxKeyWalker returns a walker that finds the sandbox with that key
// and stores it in *out.
func SandboxKeyWalker(out **sandbox.Sandbox, key string) SandboxWalker {
	return func(sb *sandbox.Sandbox) bool {
		if sb.Key() == key {
			*out = sb
			return true
		}
		return false
	}
}

// finishing is the context of a change that runs to its end though its
// caller goes away (an HTTP client's timeout, a runtime killed mid-DEL),
// as an undo does: a sandbox's delete, a disconnect, a network's delete,
// a refresh, a rename; and a driver call that makes something, whose
// outcome the undo must know (cut short, the driver goes on unseen: a
// connect left the pair it made). Cut short, a delete left the sandbox
// listed with its endpoints and its namespace gone, a state that looked
// alive and was not. What such a change waits on is bounded without the
// caller: a restarting driver by plugin_restart_wait; a plugin that dies
// fails its calls at once. Internal callers that mean to cut the work
// short (an undo while the store is down, the controller's own
// background work) pass their context on as it is.
func finishing(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// SandboxDestroy deletes the sandbox of a container; a container with no
// sandbox is not an error. It runs to its end (finishing).
func (c *Controller) SandboxDestroy(ctx context.Context, container string) error {
	ctx = finishing(ctx)
	op, err := c.byContainerID(container)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.deleteSandboxUnless(ctx, op, nil, c.announceDelete(""))
}

// DeleteSandbox deletes a container's sandbox; unknown is not-found. It
// runs to its end (finishing).
func (c *Controller) DeleteSandbox(ctx context.Context, container string) error {
	ctx = finishing(ctx)
	op, err := c.byContainerID(container)
	if err != nil {
		return err
	}
	return c.deleteSandboxUnless(ctx, op, nil, c.announceDelete(""))
}

// deleteSandbox leaves and deletes every endpoint, stops what runs for
// the sandbox, destroys its namespace and removes it from the store and
// the controller. A second delete while one runs is forbidden. If an
// endpoint cannot be removed, the sandbox stays (still marked in-delete)
// and the error is returned; deleting it again finishes the job.
func (c *Controller) deleteSandbox(ctx context.Context, op *sandboxOp) error {
	return c.deleteSandboxUnless(ctx, op, nil, nil)
}

// errDeleteInProgress is deleteSandboxUnless's refusal while another
// delete of the sandbox (or a check whether to) is under way.
var errDeleteInProgress = errors.New("delete in progress")

// deleteSandboxUnless is deleteSandbox, unless keep (called with op.mu
// held, when not nil) says the sandbox is to stay. Once the delete has
// removed endpoints, announce (when not nil) is called with op.mu held,
// those endpoints, and whether the sandbox itself is gone too (see
// announceDelete).
func (c *Controller) deleteSandboxUnless(ctx context.Context, op *sandboxOp, keep func() bool, announce func(op *sandboxOp, removed []sandbox.Endpoint, gone bool)) (err error) {
	c.mu.Lock()
	if op.deleting {
		c.mu.Unlock()
		return fmt.Errorf("sandbox %s: %w: %w", short(op.sb.ID()), errDeleteInProgress, sdk.ErrForbidden)
	}
	op.deleting = true
	c.mu.Unlock()
	op.mu.Lock()
	defer op.mu.Unlock()
	// nsGone: the namespace went; marked: the in-delete mark may be in
	// the store (its write's outcome unknown). Either way a failed delete
	// leaves the sandbox unfinished: listed in-delete, refusing connects,
	// finished by a delete again (or the next start, which reads the mark).
	nsGone, marked := false, false
	defer func() {
		c.mu.Lock()
		op.deleting = false
		op.unfinished = op.unfinished || err != nil && (nsGone || marked)
		c.mu.Unlock()
	}()
	if op.deleted || keep != nil && keep() {
		return nil
	}
	if op.prep != nil {
		// Its interface goes with the namespace.
		op.prep = nil
		c.sparePool().Missed()
	}
	sb := op.sb
	// With endpoints to remove, the record says in-delete first, so that
	// a restart finishes the job. Without, there is nothing to finish: a
	// record whose namespace is gone is deleted at the next start anyway.
	if len(sb.Endpoints()) > 0 {
		if err := c.saveSandbox(ctx, op); err != nil { // marks it in-delete
			marked = outcomeUnknown(err)
			return fmt.Errorf("marking sandbox %s in-delete: %w", short(sb.ID()), err)
		}
	}
	// A namespace of our own goes first: the kernel then tears the veth
	// pairs down by itself, and each driver's Leave only unhooks the host
	// side — deleting a live veth costs the kernel tens of milliseconds.
	// A runtime's namespace outlives our key, so its interfaces are
	// removed one by one before the key goes.
	owned := !op.external || sb.Namespace() == nil
	if owned {
		c.stopDNS(op)
		c.destroyNamespace(sb)
		nsGone = true
	}
	var errs []error
	var removed []sandbox.Endpoint
	for _, e := range sb.Endpoints() {
		if err := c.removeEndpoint(ctx, op, e.NetworkID, e.ID, owned); err != nil {
			errs = append(errs, err)
		} else {
			removed = append(removed, e)
		}
	}
	if len(errs) > 0 {
		if announce != nil {
			announce(op, removed, false)
		}
		return fmt.Errorf("deleting sandbox %s: %w", short(sb.ID()), errors.Join(errs...))
	}
	if !owned {
		c.stopDNS(op)
		c.destroyNamespace(sb)
		nsGone = true
	}
	err = c.forgetSandbox(ctx, op)
	if announce != nil {
		announce(op, removed, err == nil)
	}
	return err
}

// forgetSandbox is the end of a delete, once the sandbox has no endpoint
// and no namespace: its files go, then its record, then the controller's
// entries for it.
func (c *Controller) forgetSandbox(ctx context.Context, op *sandboxOp) error {
	sb := op.sb
	if err := sb.RemoveFiles(); err != nil && !os.IsNotExist(err) {
		c.log.Warn("removing resolution files", "sandbox", short(sb.ID()), "error", err)
	}
	if err := c.kv.txn(ctx, &pb.TxnOp{Verb: pb.TxnOp_DELETE, Key: sandboxKey(sb.ID())}); err != nil {
		return fmt.Errorf("deleting sandbox %s from the store: %w", short(sb.ID()), err)
	}
	c.mu.Lock()
	delete(c.sandboxes, sb.ID())
	if c.byContainer[sb.ContainerID()] == sb.ID() {
		delete(c.byContainer, sb.ContainerID())
	}
	if c.ingress == sb.ID() {
		c.ingress = ""
	}
	op.deleted = true
	c.mu.Unlock()
	c.log.Info("sandbox deleted", "sandbox", short(sb.ID()), "container", sb.ContainerID())
	return nil
}

// checkRuntimeNS refuses, naming field, a path a runtime gives as a
// container's namespace that is not absolute (the agent would look for it
// in its own working directory, and the let-go watcher look at it there
// later), that is none, is the agent's own (a sandbox there would have
// the driver and the sandbox configure, and on delete tear down, the
// host's interfaces and routes; host networking is a host-mode sandbox),
// or lies where the agent makes namespaces ahead (creatingDir: a spare
// is no sandbox's yet, so claimNamespace would not find it; a sandbox's
// key it finds by the namespace's identity). It returns the namespace's
// identity, for claimNamespace.
func (c *Controller) checkRuntimeNS(field, path string) (osl.ID, error) {
	if !filepath.IsAbs(path) {
		return osl.ID{}, errorf(sdk.ErrInvalid, "%s: %q is not an absolute path (the agent does not share its caller's working directory)", field, clip(path))
	}
	var perr *fs.PathError
	switch err := osl.Check(path); {
	case errors.As(err, &perr):
		// Why it cannot be read: gone (a runtime's process that
		// exited), or refused.
		return osl.ID{}, errorf(sdk.ErrInvalid, "%s: %s: %v", field, path, perr.Err)
	case err != nil:
		return osl.ID{}, errorf(sdk.ErrInvalid, "%s: %s is not a network namespace", field, path)
	}
	id, err := osl.Identify(path)
	if err != nil {
		return osl.ID{}, errorf(sdk.ErrInvalid, "%s: %v", field, err)
	}
	if self, err := osl.Identify(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), os.Getpid())); err == nil && self == id {
		return osl.ID{}, errorf(sdk.ErrInvalid, "%s: %s is the agent's own network namespace, the host's; a container's sandbox needs one of its own (for host networking, create a host-mode sandbox)", field, path)
	}
	if dir := c.creatingDir(); strings.HasPrefix(filepath.Clean(path), dir+string(filepath.Separator)) {
		return osl.ID{}, errorf(sdk.ErrConflict, "%s: %s is under %s, where the agent makes its namespaces ahead: they are not a runtime's to give", field, path, dir)
	}
	return id, nil
}

// claimNamespace reserves the runtime namespace id (named by path, the
// request's field) for container, refusing one another container's
// sandbox has already, or another create or set-key is giving one: two
// sandboxes in one namespace would configure, and on delete tear down,
// each other's interfaces and routes, and the second's resolver could
// not bind. A runtime's containers that share a namespace (a pod) share
// its one sandbox. release ends the reservation, once the sandbox has the
// namespace or failed to take it. A sandbox registered after the
// reservation cannot have the namespace unless through a reservation of
// its own, which the first finds.
func (c *Controller) claimNamespace(field, path string, id osl.ID, container string) (release func(), err error) {
	c.mu.Lock()
	if other, ok := c.binding[id]; ok {
		c.mu.Unlock()
		if other == container {
			return func() {}, nil // the container's own create, which refuses this one
		}
		return nil, errorf(sdk.ErrConflict, "%s: %s is the namespace container %s's sandbox is being given", field, path, other)
	}
	c.binding[id] = container
	ops := make([]*sandboxOp, 0, len(c.sandboxes))
	for _, op := range c.sandboxes {
		ops = append(ops, op)
	}
	c.mu.Unlock()
	release = func() {
		c.mu.Lock()
		delete(c.binding, id)
		c.mu.Unlock()
	}
	for _, op := range ops {
		if ns := op.sb.Namespace(); ns != nil && ns.ID() == id && op.sb.ContainerID() != container {
			release()
			return nil, errorf(sdk.ErrConflict, "%s: %s is the namespace of sandbox %s (container %s) already", field, path, short(op.sb.ID()), op.sb.ContainerID())
		}
	}
	return release, nil
}

// SetKey gives a sandbox created with an external key its namespace: the
// namespace at path (made by the container runtime) is bind-mounted at the
// sandbox's key, and endpoints joined before are set up in it. A failure
// is logged as well as returned: its caller is often a runtime's hook
// whose output the runtime does not show (crun prints only its exit
// code).
func (c *Controller) SetKey(ctx context.Context, container, path string) (*Sandbox, error) {
	sb, err := c.setKey(ctx, container, path)
	if err != nil {
		c.log.Warn("set-key refused", "container", clip(container), "path", clip(path), "error", err)
	}
	return sb, err
}

func (c *Controller) setKey(ctx context.Context, container, path string) (*Sandbox, error) {
	op, err := c.byContainerID(container)
	if err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errorf(sdk.ErrInvalid, "path: must not be empty")
	}
	if err := c.lockLive(op); err != nil {
		return nil, err
	}
	defer op.mu.Unlock()
	if !op.external {
		return nil, errorf(sdk.ErrForbidden, "sandbox %s was not created with an external key", short(op.sb.ID()))
	}
	if op.sb.Namespace() != nil {
		return nil, errorf(sdk.ErrForbidden, "sandbox %s already has its key", short(op.sb.ID()))
	}
	key := filepath.Join(c.cfg.NetnsDir, op.sb.ID())
	ns, release, err := c.bindRuntimeNS(path, key, op.sb.ContainerID())
	if err != nil {
		return nil, err
	}
	op.sb.SetNamespace(key, ns)
	release() // other claims find it by the sandbox's namespace now
	if op.front != "" {
		op.runtimeNetns.Store(&path)
	}
	ok, saved := false, false
	var joined []sandbox.Endpoint // by this set-key, each as it was before
	defer func() {
		if ok {
			return
		}
		// The runtime's namespace outlives our key: what this set-key
		// put into it goes first, so that a retry finds it as before.
		for _, e := range slices.Backward(joined) {
			c.unjoin(context.WithoutCancel(ctx), op, e)
		}
		op.sb.SetNamespace("", nil)
		op.runtimeNetns.Store(nil)
		_ = ns.Destroy()
		if saved { // the record forgets the key again
			if err := c.saveSandbox(context.WithoutCancel(ctx), op); err != nil {
				c.log.Warn("undoing a failed set-key's record", "sandbox", short(op.sb.ID()), "error", err)
			}
		}
	}()
	// A runtime may hand over its namespace with lo still down (`ip netns
	// add`, unshare); the embedded resolver listens on it.
	if err := ns.SetLoopbackUp(); err != nil {
		return nil, fmt.Errorf("path: %w", err)
	}
	if err := c.saveSandbox(ctx, op); err != nil {
		return nil, err
	}
	saved = true
	// Endpoints connected before the key existed are joined now. Should
	// one fail, it and those after it stay the sandbox's, unjoined, and
	// those before it are unjoined again (the deferred undo), so that a
	// retry, or deleting the sandbox, finds them all as they were.
	eps := op.sb.Endpoints()
	for i, e := range eps {
		op.sb.Forget(e.ID)
		if err := c.rejoin(ctx, op, e.NetworkID, e.ID); err != nil {
			for _, rest := range eps[i:] {
				op.sb.Restore(rest)
			}
			return nil, err
		}
		joined = append(joined, e)
	}
	ok = true
	return c.view(ctx, op)
}

// bindRuntimeNS checks the namespace a runtime names by path for a
// set-key of container's sandbox, and binds it at key; it is refused when
// another sandbox has it (claimNamespace). The caller calls release once
// the sandbox has the namespace, which the claims after then find.
func (c *Controller) bindRuntimeNS(path, key, container string) (_ *osl.Namespace, release func(), err error) {
	nsid, err := c.checkRuntimeNS("path", path)
	if err != nil {
		return nil, nil, err
	}
	release, err = c.claimNamespace("path", path, nsid, container)
	if err != nil {
		return nil, nil, err
	}
	ns, err := osl.BindNamespace(path, key)
	if err != nil {
		release()
		return nil, nil, fmt.Errorf("binding %s at %s: %w", path, key, err)
	}
	return ns, release, nil
}

// unjoin undoes a failed set-key's join of endpoint e (as it was before
// the join): the driver's leave and the interface out of the runtime's
// namespace, the endpoint the sandbox's again, unjoined. Its record keeps
// the join's interface name, which the next join asks for again.
func (c *Controller) unjoin(ctx context.Context, op *sandboxOp, e sandbox.Endpoint) {
	n, ep, _, found, err := c.sandboxEndpoint(ctx, op, e.NetworkID, e.ID)
	if err == nil && found {
		err = c.leaveStored(ctx, op, n, &ep, false)
	}
	if err != nil {
		c.log.Error("rolling back a set-key: leaving the endpoint", "endpoint", short(e.ID), "sandbox", short(op.sb.ID()), "error", err)
	}
	op.sb.Forget(e.ID)
	op.sb.Restore(e)
}

// Rename renames every endpoint of a container's sandbox (the name other
// containers resolve); if one fails, all are renamed back. It runs to
// its end (finishing): cut short, its renaming back would fail too.
func (c *Controller) Rename(ctx context.Context, container, name string) error {
	ctx = finishing(ctx)
	if !validName.MatchString(name) {
		return errorf(sdk.ErrInvalid, "name: %q is not a valid name", clip(name))
	}
	op, err := c.byContainerID(container)
	if err != nil {
		return err
	}
	if err := c.lockLive(op); err != nil {
		return err
	}
	defer op.mu.Unlock()
	for _, e := range op.sb.Endpoints() {
		// Held until the rename is done: a connect or rename racing it
		// cannot take the name meanwhile.
		other, release, ok := c.names.hold(e.NetworkID, name, e.ID)
		if !ok {
			return nameTaken(e.NetworkName, name, other, true)
		}
		defer release()
	}
	type done struct {
		ep  Endpoint
		old string
	}
	var renamed []done
	for _, e := range op.sb.Endpoints() {
		var ep Endpoint
		err := c.updateEndpoint(ctx, e.NetworkID, e.ID, func(cur *Endpoint) error {
			ep = *cur
			cur.Name = name
			return nil
		})
		if err != nil {
			for _, d := range renamed {
				_ = c.updateEndpoint(ctx, d.ep.NetworkID, d.ep.ID, func(cur *Endpoint) error { cur.Name = d.old; return nil })
				op.sb.Rename(d.ep.ID, d.old)
			}
			return fmt.Errorf("renaming sandbox %s: %w", short(op.sb.ID()), err)
		}
		renamed = append(renamed, done{ep: ep, old: ep.Name})
		op.sb.Rename(e.ID, name)
	}
	for _, d := range renamed {
		if n, _, err := c.network(ctx, d.ep.NetworkID); err == nil {
			ep := d.ep
			ep.Name = name
			c.names.add(n, &ep, op.sb.Options().Hostname)
		}
	}
	return op.sb.WriteFiles()
}

// Refresh leaves every endpoint of a container's sandbox, applies new
// options, rebuilds the resolution files and joins the endpoints again.
// It runs to its end (finishing): cut short after its leaves, the
// container would be left without its networks.
func (c *Controller) Refresh(ctx context.Context, container string, opts sandbox.Options) (*Sandbox, error) {
	ctx = finishing(ctx)
	op, err := c.byContainerID(container)
	if err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := c.lockLive(op); err != nil {
		return nil, err
	}
	defer op.mu.Unlock()
	old := op.sb.Options()
	if opts.HostMode != old.HostMode || opts.ExternalKey != old.ExternalKey || opts.Ingress != old.Ingress {
		return nil, errorf(sdk.ErrInvalid, "options: host_mode, external_key and ingress cannot change on refresh")
	}
	eps := op.sb.Endpoints()
	for _, e := range eps {
		if err := c.leave(ctx, op, e.NetworkID, e.ID, false); err != nil {
			return nil, err
		}
	}
	op.sb.SetOptions(opts)
	if err := c.saveSandbox(ctx, op); err != nil {
		return nil, err
	}
	for _, e := range eps {
		if err := c.rejoin(ctx, op, e.NetworkID, e.ID); err != nil {
			return nil, err
		}
	}
	if err := op.sb.WriteFiles(); err != nil {
		return nil, err
	}
	return c.view(ctx, op)
}
