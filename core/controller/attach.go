package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// attachment is one try of an attach (see Controller.attach): endpoint ep
// on network n, read at index nIdx, joined to the sandbox of op, which
// has its namespace or will (via). Its steps run in the order of
// attachSteps; each pushes on undo what takes it back, so a failure at
// any step leaves nothing behind. op.mu is held throughout.
type attachment struct {
	c       *Controller
	op      *sandboxOp
	n       *Network
	nIdx    uint64
	ep      *Endpoint // what the attach decides, step by step
	ip, ip6 netip.Addr
	via     *joinVia
	undo    *undoStack

	d       driver.Driver
	want    string // the interface name the connect asked for, or empty
	key     string // the endpoint's record key
	written Endpoint
	record  *pb.TxnOp
	commit  *async[uint64] // the record's transaction: its index
	sbKey   string         // where the namespace is now, for the driver

	resolver   *async[*resolver.Resolver] // nil: the sandbox has one, or needs none
	taken      bool                       // the sandbox took the resolver
	prep       *preparedAttach            // the attach a spare came prepared with
	configured *async[struct{}]           // the prepared interface configured
	resp       *pb.AttachResponse
}

// step is a named step of a flow (attach, create). Its doc comment says
// what it may assume and what a crash right after it leaves.
type step struct {
	name string
	run  func(ctx context.Context) error
}

// steps returns the attach's steps, in order. docs/architecture.md has
// the state a crash after each leaves and the repair that handles it.
func (a *attachment) steps() []step {
	return []step{
		{"reserve", a.reserve},
		{"await-namespace", a.awaitNamespace},
		{"start-side-work", a.startSideWork},
		{"call-driver", a.callDriver},
		{"join-sandbox", a.joinSandbox},
		{"await-commit", a.awaitCommit},
		{"reconcile", a.reconcile},
	}
}

// attachOnce runs one try of an attach; errRetry from the store says to
// try again.
func (c *Controller) attachOnce(ctx context.Context, op *sandboxOp, n *Network, nIdx uint64, ep *Endpoint, ip, ip6 netip.Addr, via *joinVia) (err error) {
	a := &attachment{c: c, op: op, n: n, nIdx: nIdx, ep: ep, ip: ip, ip6: ip6, via: via,
		undo: newUndo(c.log, "endpoint", short(ep.ID), "network", n.Name)}
	defer a.undo.RunIf(ctx, &err)
	err = c.runSteps(ctx, "attach", a.steps())
	if err != nil && !isConflict(err) && a.commit != nil {
		// The driver's call and the join run while the record's
		// transaction is under way. When it lost its race — the network
		// was marked in-delete, or changed, since it was read — their
		// failure is most likely its consequence (the delete's driver
		// call took the endpoint's interface or the bridge away under
		// the join): the retry reads the network again and answers as a
		// connect to a network being deleted does, not with the
		// interface's disappearance.
		if _, cerr := a.commit.Wait(); isConflict(cerr) {
			c.log.Debug("attach failed after its record lost a race; trying again", "endpoint", short(ep.ID), "network", n.Name, "error", err)
			return cerr
		}
	}
	return err
}

// runSteps runs steps in order until one fails. A flow whose caller has
// gone away by its end fails too, so that a create or a connect nobody
// will hear of is undone (its driver calls run whole, so the undo knows
// what they made) rather than left for a runtime that has given up on
// it: a CNI runtime's DEL after its ADD timed out found nothing yet, and
// the ADD then finished. A test's hook may fail the flow after any step,
// as a crash or a store failure there would.
func (c *Controller) runSteps(ctx context.Context, flow string, steps []step) error {
	for _, s := range steps {
		t0 := time.Now()
		err := s.run(ctx)
		if c.cfg.OnStep != nil {
			c.cfg.OnStep(flow, s.name, time.Since(t0), err)
		}
		if err != nil {
			return err
		}
		if c.afterStep != nil {
			if err := c.afterStep(flow, s.name); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// reserve allocates the endpoint's addresses (pending) and sends, in the
// background, one transaction that stores them with the endpoint's
// record — already naming the sandbox and the interface it most likely
// gets — and whatever rides along (via.ops: a create's sandbox record).
// It may assume the network exists and is not in-delete as of nIdx (the
// transaction checks). A crash after it leaves, at most, a record whose
// interface is missing from its sandbox (or a sandbox record whose key
// holds no namespace), which Start deletes with its addresses.
func (a *attachment) reserve(ctx context.Context) error {
	c, ep, n := a.c, a.ep, a.n
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	a.d = d
	ops, allocs, err := c.endpointOps(ctx, ep, n, a.nIdx, a.ip, a.ip6)
	if err != nil {
		return err
	}
	a.sbKey = a.op.sb.Key()
	if a.via != nil {
		ops = append(ops, a.via.ops...)
	}
	a.want = ep.IfName
	if ep.IfName == "" {
		ep.IfName = a.op.sb.NextIfName(sandbox.DefaultIfPrefix)
	}
	ep.SandboxID, ep.External = a.op.sb.ID(), len(ep.Ports) > 0
	if a.op.front == "cni" {
		ep.Resolver = resolverAddrFor(a.op.sb)
	}
	a.written = ep.clone()
	a.key = endpointKey(n.ID, ep.ID)
	a.record = cas(a.key, 0, &a.written)
	ops = append(ops, a.record)
	a.commit = start(func() (uint64, error) {
		res, err := c.kv.txnResults(ctx, ops...)
		doneAll(allocs, err == nil)
		return indexOf(res, a.key), err
	})
	a.undo.Push("endpoint record", a.dropRecord)
	return nil
}

// doneAll settles pending allocations: kept when their transaction
// committed.
func doneAll(allocs []*ipam.Allocation, committed bool) {
	for _, al := range allocs {
		al.Done(committed)
	}
}

// dropRecord undoes reserve: whatever the store made of the transaction
// goes, now or, when the store's answer is unknown, once it answers.
func (a *attachment) dropRecord(ctx context.Context) error {
	c, ep := a.c, a.ep
	idx, err := a.commit.Wait()
	switch {
	case err == nil:
		if derr := c.dropEndpointAt(ctx, a.n, a.n.ID, ep.ID, idx, &a.written); derr != nil {
			c.cleanupLater("endpoint "+short(ep.ID), func(ctx context.Context) error { return c.dropEndpoint(ctx, &a.written) })
			return fmt.Errorf("%w (retrying in the background)", derr)
		}
	case outcomeUnknown(err):
		c.cleanupLater("endpoint "+short(ep.ID), func(ctx context.Context) error { return c.dropEndpoint(ctx, &a.written) })
		if a.via != nil && len(a.via.ops) > 0 {
			// What rode along with it may land too.
			var dels []*pb.TxnOp
			for _, o := range a.via.ops {
				dels = append(dels, del(o.GetKey()))
			}
			c.cleanupLater("records of endpoint "+short(ep.ID), func(ctx context.Context) error { return c.kv.txn(ctx, dels...) })
		}
	}
	return nil
}

// awaitNamespace waits, for a create's first attach, for the namespace
// being made (still at its scratch key). A crash after it leaves what
// reserve's does, and a namespace in the scratch directory, which Start
// unmounts.
func (a *attachment) awaitNamespace(context.Context) error {
	if a.via == nil || a.via.ready == nil {
		return nil
	}
	key, err := a.via.ready()
	a.sbKey = key
	return err
}

// startSideWork starts, beside the driver's call: the sandbox's resolver
// (its first addressed endpoint), and the configuration of the interface
// a spare namespace came prepared with (claimed once: a retry does the
// whole attach). Nothing it does outlives a crash.
func (a *attachment) startSideWork(ctx context.Context) error {
	c, op, ep, n := a.c, a.op, a.ep, a.n
	if op.dns.r == nil && (ep.Address.IsValid() || ep.AddressV6.IsValid()) {
		a.resolver = start(func() (*resolver.Resolver, error) { return c.newResolver(op), nil })
		a.undo.Push("resolver", func(context.Context) error {
			if r, _ := a.resolver.Wait(); r != nil && !a.taken {
				return r.Stop()
			}
			return nil
		})
	}
	if v := a.via; v != nil {
		if p := v.prep; p != nil && p.netID == n.ID && p.epID == ep.ID && p.src == ep.IfName {
			a.prep = p
		}
		v.prep = nil
	}
	if a.prep != nil {
		// ep's gateways, as endpointOps set them, are those a driver's
		// answer gives, most likely.
		se, src, up := sbEndpoint(n, ep), a.prep.src, a.prep.up
		a.configured = start(func() (struct{}, error) { return struct{}{}, op.sb.PrepareInterface(ctx, se, src, up) })
		a.undo.Push("prepared interface", func(context.Context) error { _, _ = a.configured.Wait(); return nil })
	}
	return nil
}

// callDriver has the driver create the endpoint and join it in one round
// trip (finishing a prepared attach). A crash after it leaves the
// driver's side (the host end of the pair) with, at most, a record whose
// interface is not configured: Start sets it up again, or deletes the
// record and the host end no endpoint owns.
func (a *attachment) callDriver(ctx context.Context) error {
	c, n, ep := a.c, a.n, a.ep
	// The call runs whole (finishing): cut short, the driver's work
	// would go on unseen, and no undo would know of it.
	resp, err := driver.Attach(finishing(ctx), a.d, &pb.AttachRequest{Network: c.netProto(n), Endpoint: epProto(ep), SandboxKey: a.sbKey, Ifname: ep.IfName, Prepared: a.prep != nil})
	if err != nil {
		return fmt.Errorf("driver %q creating endpoint %s on network %s and joining it to %s: %w", n.Driver, short(ep.ID), n.Name, a.op.sb, err)
	}
	a.resp = resp
	a.undo.Push("driver endpoint", func(ctx context.Context) error {
		return a.d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: c.netProto(n), Endpoint: epProto(ep)})
	})
	a.undo.Push("driver join", c.leaveDriver(a.d, n, ep, a.sbKey))
	return adoptFill(ep, resp.GetCreate().GetInterface())
}

// joinSandbox takes the interface into the namespace (and has the driver
// publish the ports beside it), hands the sandbox its resolver, and has
// the name index, the resolver and the resolution files take the
// endpoint in. A crash after it leaves a joined endpoint whose record
// (should its commit not land) Start does not find: the interface is
// then one no endpoint owns, and Start deletes it.
func (a *attachment) joinSandbox(ctx context.Context) error {
	c, op, ep := a.c, a.op, a.ep
	if a.configured != nil {
		if _, err := a.configured.Wait(); err != nil {
			c.log.Debug("configuring a prepared interface ahead of the join; configuring it after", "endpoint", short(ep.ID), "error", err)
		}
	}
	if err := c.setupJoin(ctx, a.undo, op, a.n, a.d, ep, a.resp.GetJoin(), a.want); err != nil {
		return err
	}
	if a.resolver != nil {
		if r, _ := a.resolver.Wait(); r != nil {
			c.useResolver(op, r)
		}
		a.taken = true
	}
	a.undo.Push("names", c.announce(op, a.n, ep))
	return nil
}

// awaitCommit waits for reserve's transaction. A crash after it leaves
// the attach done, its record as predicted.
func (a *attachment) awaitCommit(context.Context) error {
	idx, err := a.commit.Wait()
	if err != nil {
		if errors.Is(err, errRetry) {
			return err
		}
		return fmt.Errorf("storing endpoint %s: %w", short(a.ep.ID), err)
	}
	a.c.kv.eps.put(a.key, &a.written, idx)
	return nil
}

// reconcile writes the record again only if the join decided otherwise
// than reserve predicted (another interface name, the driver's MAC, the
// ports it picked). A crash between awaitCommit and it leaves a record
// that names another interface than the one in the namespace: Start
// deletes the record and the interface no endpoint owns.
func (a *attachment) reconcile(ctx context.Context) error {
	if b, _ := json.Marshal(a.ep); bytes.Equal(b, a.record.GetValue()) {
		return nil
	}
	idx, _ := a.commit.Wait()
	final := a.ep.clone()
	_, err := a.c.updateEndpointAt(ctx, a.n.ID, a.ep.ID, idx, &a.written, func(cur *Endpoint) error {
		*cur = final.clone()
		return nil
	})
	return err
}
