package controller

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// nsSource is where a create's namespace comes from: one implementation
// per source (the host's, the runtime's given at once, a spare made
// ahead of time, a fresh one; none for an external key set later).
type nsSource interface {
	// acquire starts getting the namespace for sandbox sb (whose key is
	// set already) and returns it once there: at its key, or at a
	// scratch key under creatingDir, for moves to say. nil with no error:
	// no namespace yet.
	acquire(c *Controller, sb *sandbox.Sandbox) *async[*osl.Namespace]
	// adopt gives sb the namespace acquire got.
	adopt(sb *sandbox.Sandbox, ns *osl.Namespace)
	// moves says whether the namespace is at a scratch key until the
	// sandbox's record lands, and is moved to its key then.
	moves() bool
}

// hostNS is the host's own namespace, shared by host-mode sandboxes.
type hostNS struct{}

func (hostNS) acquire(c *Controller, _ *sandbox.Sandbox) *async[*osl.Namespace] {
	return resolved(c.defaultNamespace())
}
func (hostNS) adopt(sb *sandbox.Sandbox, ns *osl.Namespace) { sb.SetNamespace(ns.Path(), ns) }
func (hostNS) moves() bool                                  { return false }

// laterKey is an external key the runtime sets later (SetKey): no
// namespace now.
type laterKey struct{}

func (laterKey) acquire(*Controller, *sandbox.Sandbox) *async[*osl.Namespace] {
	return resolved[*osl.Namespace](nil, nil)
}
func (laterKey) adopt(*sandbox.Sandbox, *osl.Namespace) {}
func (laterKey) moves() bool                            { return false }

// runtimeNS is the runtime's namespace given at creation (netns): bound
// under the scratch key and moved to its key once the record has landed,
// as a namespace of our own would be; the runtime's path is never
// touched.
type runtimeNS struct{ path string }

func (r runtimeNS) acquire(c *Controller, sb *sandbox.Sandbox) *async[*osl.Namespace] {
	ns, err := osl.BindNamespace(r.path, filepath.Join(c.creatingDir(), sb.ID()))
	if err == nil {
		// A runtime may hand over its namespace with lo down; the
		// embedded resolver listens on it.
		if err = ns.SetLoopbackUp(); err != nil {
			_ = ns.Destroy()
			ns = nil
		}
	}
	if err != nil {
		return resolved[*osl.Namespace](nil, fmt.Errorf("netns: %w", err))
	}
	return resolved(ns, nil)
}

// adopt: the runtime's namespace may have routes of its own.
func (runtimeNS) adopt(sb *sandbox.Sandbox, ns *osl.Namespace) { sb.SetNamespace(sb.Key(), ns) }
func (runtimeNS) moves() bool                                  { return true }

// spareNS is a namespace the pool made ahead of time (core/nspool, spares.go), with
// the resolver's sockets bound inside and, maybe, the first network's
// attach prepared.
type spareNS struct{ sp *spare }

func (s spareNS) acquire(*Controller, *sandbox.Sandbox) *async[*osl.Namespace] {
	return resolved(s.sp.ns, nil)
}
func (spareNS) adopt(sb *sandbox.Sandbox, ns *osl.Namespace) { sb.SetNewNamespace(sb.Key(), ns) }
func (spareNS) moves() bool                                  { return true }

// freshNS is a namespace made for this create, under the scratch key,
// while the create goes on.
type freshNS struct{}

func (freshNS) acquire(c *Controller, sb *sandbox.Sandbox) *async[*osl.Namespace] {
	return start(func() (*osl.Namespace, error) {
		ns, err := osl.NewNamespace(filepath.Join(c.creatingDir(), sb.ID()))
		if err != nil {
			return nil, fmt.Errorf("creating namespace of sandbox %s: %w", short(sb.ID()), err)
		}
		return ns, nil
	})
}
func (freshNS) adopt(sb *sandbox.Sandbox, ns *osl.Namespace) { sb.SetNewNamespace(sb.Key(), ns) }
func (freshNS) moves() bool                                  { return true }

// nsSourceFor picks where a create's namespace comes from; with a spare,
// the pool has handed it over.
func (c *Controller) nsSourceFor(req SandboxCreate, nets []sandboxNetwork) nsSource {
	switch {
	case req.HostMode:
		return hostNS{}
	case req.ExternalKey && req.Netns == "":
		return laterKey{}
	case req.ExternalKey:
		return runtimeNS{path: req.Netns}
	}
	pool := c.sparePool()
	first := ""
	if len(nets) > 0 {
		first = nets[0].ref
	}
	if sp, ok := pool.Take(first); ok {
		return spareNS{sp}
	}
	return freshNS{}
}

// creation is one sandbox create (NewSandbox), after its checks and its
// reservation of the container: its steps run in the order of steps().
// With networks, the first is attached through the attach's own steps,
// the sandbox's record riding in its transaction while the namespace is
// still being made; without, the record is written beside the namespace.
// Any failure is undone whole (undoCreate).
type creation struct {
	c    *Controller
	req  SandboxCreate
	nets []sandboxNetwork
	src  nsSource
	op   *sandboxOp
	eps  []*Endpoint

	ns       *async[*osl.Namespace] // the namespace acquire got
	files    *async[struct{}]       // the resolution files, without networks
	adopted  bool                   // sb has the namespace
	acquired bool                   // acquireNamespace succeeded: a failure after it is undone
}

// steps returns the create's steps, in order. docs/architecture.md has
// the state a crash after each leaves and the repair that handles it.
func (cr *creation) steps() []step {
	return []step{
		{"acquire-namespace", cr.acquireNamespace},
		{"persist", cr.persist},
		{"commit-namespace", cr.commitNamespace},
		{"connect-rest", cr.connectRest},
		{"register", cr.register},
	}
}

// fast says whether the first network's attach carries the record: a
// create with networks, in a namespace of its own or the runtime's
// given at once.
func (cr *creation) fast() bool {
	return len(cr.nets) > 0 && !cr.req.HostMode && (!cr.req.ExternalKey || cr.req.Netns != "")
}

// acquireNamespace starts getting the namespace from its source (a spare
// comes at once, a fresh one is made in the background) and, without
// networks, writing the resolution files. A crash after it leaves a
// namespace in the scratch directory, which Start unmounts.
func (cr *creation) acquireNamespace(context.Context) error {
	c, sb := cr.c, cr.op.sb
	if cr.src.moves() {
		sb.SetNamespace(filepath.Join(c.cfg.NetnsDir, sb.ID()), nil)
	}
	cr.ns = cr.src.acquire(c, sb)
	if !cr.src.moves() {
		// The host's namespace, or none yet: there at once, at its key,
		// which the record names.
		if _, err := cr.nsReady(); err != nil {
			return err
		}
	}
	if _, ok := cr.src.(runtimeNS); ok {
		if err := cr.ns.Err(); err != nil {
			return err // nothing was bound
		}
	}
	if sp, ok := cr.src.(spareNS); ok {
		cr.op.dns.pre = sp.sp.sockets
		if !cr.fast() {
			cr.op.prep = sp.sp.prep // for the first connect (prep.go)
		}
	}
	if !cr.fast() {
		cr.files = start(func() (struct{}, error) { return struct{}{}, sb.WriteFiles() })
	}
	cr.acquired = true
	return nil
}

// nsReady waits for the namespace and gives it to the sandbox, once; it
// says where the namespace is now (still at its scratch key).
func (cr *creation) nsReady() (string, error) {
	ns, err := cr.ns.Wait()
	if err != nil {
		return "", err
	}
	if !cr.adopted && ns != nil {
		cr.src.adopt(cr.op.sb, ns)
		cr.adopted = true
	}
	if ns == nil {
		return "", nil
	}
	return ns.Path(), nil
}

// persist stores the sandbox's record: with networks, in the first
// network's attach (attach.go, via joinVia), which it runs; without,
// alone, beside the namespace being made. A crash after it leaves a
// record whose key holds no namespace (the namespace still at its
// scratch key), which Start deletes as a failed create, and the scratch
// namespace, which Start unmounts.
func (cr *creation) persist(ctx context.Context) error {
	c, op := cr.c, cr.op
	id := op.sb.ID()
	record := cas(sandboxKey(id), 0, c.record(op))
	var serr error
	if cr.fast() {
		var prep *preparedAttach
		if sp, ok := cr.src.(spareNS); ok {
			prep = sp.sp.prep
		}
		first := cr.nets[0]
		op.mu.Lock()
		ep, err := c.connectAny(ctx, op, first.ref, first.args, &joinVia{ops: []*pb.TxnOp{record}, ready: cr.nsReady, prep: prep})
		op.mu.Unlock()
		if err == nil {
			cr.eps = append(cr.eps, ep)
		} else {
			serr = first.failed(ctx, c, err)
		}
		cr.nets = cr.nets[1:]
	} else {
		if serr = c.kv.txn(ctx, record); outcomeUnknown(serr) {
			// The record may land once the store answers again.
			c.cleanupLater("sandbox "+short(id), func(ctx context.Context) error { return c.kv.txn(ctx, del(sandboxKey(id))) })
		}
		if serr != nil {
			serr = fmt.Errorf("storing sandbox %s: %w", short(id), serr)
		}
	}
	_, nerr := cr.nsReady() // when the attach failed before it needed the namespace
	var ferr error
	if cr.files != nil {
		ferr = cr.files.Err()
	}
	if nerr != nil {
		serr = nil // the namespace's failure says it all
	}
	return errors.Join(nerr, ferr, serr)
}

// commitNamespace moves the namespace from its scratch key to the
// sandbox's key: the record has landed. A crash after it leaves a whole
// sandbox, read back as a stub; one no container claims is deleted after
// the grace period.
func (cr *creation) commitNamespace(context.Context) error {
	ns, _ := cr.ns.Wait()
	if ns == nil || !cr.src.moves() {
		return nil
	}
	if err := ns.Move(cr.op.sb.Key()); err != nil {
		return fmt.Errorf("creating namespace of sandbox %s: %w", short(cr.op.sb.ID()), err)
	}
	return nil
}

// connectRest attaches the networks after the first, one at a time, each
// through the attach's steps. A crash after it leaves what a crash after
// an attach leaves, for each.
func (cr *creation) connectRest(ctx context.Context) error {
	c, op := cr.c, cr.op
	for _, n := range cr.nets {
		op.mu.Lock()
		ep, err := c.connectAny(ctx, op, n.ref, n.args, nil)
		op.mu.Unlock()
		if err != nil {
			return n.failed(ctx, c, err)
		}
		cr.eps = append(cr.eps, ep)
	}
	return nil
}

// register closes the sockets a spare brought that no resolver took (no
// network, or none with an address: bound and never read, they would
// take the container's queries to 127.0.0.11 and answer none; a later
// join's resolver binds its own) unless the spare's prepared attach
// waits for the first connect, which then takes both (prep.go); and adds
// the sandbox to the controller's maps. Nothing it does is in the store.
func (cr *creation) register(context.Context) error {
	c, op := cr.c, cr.op
	op.mu.Lock()
	if op.dns.r == nil && op.prep == nil {
		op.dns.pre.close()
		op.dns.pre = nil
	}
	op.expect = len(cr.eps) == 0 && cr.src.moves() && !cr.req.ExternalKey
	if op.prep != nil {
		c.discardPrepLater(op, op.prep)
	}
	op.mu.Unlock()
	c.mu.Lock()
	c.sandboxes[op.sb.ID()] = op
	c.byContainer[cr.req.ContainerID] = op.sb.ID()
	c.mu.Unlock()
	return nil
}

// create runs a create whose container is reserved (id is its sandbox's
// ID), undoing it whole if a step fails.
func (c *Controller) create(ctx context.Context, id string, req SandboxCreate, nets []sandboxNetwork) (*Sandbox, error) {
	sb := sandbox.New(id, req.ContainerID, req.Options, c.sandboxDir(id), c.hostResolv())
	op := &sandboxOp{sb: sb, created: time.Now().UTC(), external: req.ExternalKey, front: req.Front}
	if req.Front != "" && req.Netns != "" {
		op.runtimeNetns.Store(&req.Netns)
	}
	cr := &creation{c: c, req: req, nets: nets, src: c.nsSourceFor(req, nets), op: op}
	if err := c.runSteps(ctx, "create", cr.steps()); err != nil {
		if cr.acquired {
			if cr.files != nil {
				_ = cr.files.Err() // not written after the undo removed them
			}
			_, _ = cr.nsReady() // a namespace still being made goes too
			c.undoCreate(ctx, cr.op, storeDidNotAnswer(err))
		}
		return nil, err
	}
	c.log.Info("sandbox created", "sandbox", short(id), "container", req.ContainerID, "key", sb.Key(), "networks", len(cr.eps))
	c.announceCreate(cr.op)
	return c.viewOf(cr.op, cr.eps), nil
}
