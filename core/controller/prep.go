package controller

import (
	"time"

	"github.com/sandnet/sandnet/core/nspool"
)

// A create without networks (Docker's flow: create the sandbox, then
// connect it) may take a spare prepared for the network the pool
// expects such a sandbox to be connected to first (nspool.Pool.Expect).
// The sandbox then holds the prepared attach (sandboxOp.prep) and the
// resolver's sockets the spare brought, and its first connect, when it
// goes to that network under the first interface's name, finishes the
// attach through the same steps as a create with its network does
// (joinVia.prep). A connect elsewhere discards the prepared interface
// first (retired at once, deleted later), as does a sandbox no connect
// reaches within unclaimedPrep; a delete leaves it to the namespace.
// The interface is never in the store: after a crash, Start deletes it
// as an interface no endpoint owns.

// unclaimedPrep is how long a sandbox created without networks keeps a
// prepared attach for its first connect; a runtime connects within
// milliseconds of its create.
const unclaimedPrep = time.Second

// sparePool is the controller's spare pool (nil: none).
func (c *Controller) sparePool() *nspool.Pool[*spare] {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pool
}

// settlePrep settles, at a sandbox's connect to network n, what its
// create without networks left: a prepared attach for n under the name
// the connect wants is claimed, returned as via's to finish (and as
// claimed, for connect to retire should the attach fail); another is
// discarded; and the first connect tells the pool where such creates go.
// A create's own via passes through. op.mu held.
func (c *Controller) settlePrep(op *sandboxOp, n *Network, a connectArgs, via *joinVia) (_ *joinVia, claimed *preparedAttach) {
	if p := op.prep; p != nil && via == nil {
		op.prep = nil
		if p.netID == n.ID && (a.ifname == "" || a.ifname == p.src) && len(op.sb.Endpoints()) == 0 {
			via, claimed = &joinVia{prep: p}, p
		} else {
			c.retirePrepared(op, p)
			c.sparePool().Missed()
		}
	}
	if op.expect {
		op.expect = false
		c.sparePool().Expect(n.ID)
	}
	return via, claimed
}

// retirePrepared takes the interface of prepared attach p out of service
// (deleted later, its name free at once); one already gone or retired is
// no error. op.mu held.
func (c *Controller) retirePrepared(op *sandboxOp, p *preparedAttach) {
	if err := op.sb.DiscardInterface(p.src); err != nil {
		c.log.Warn("discarding a prepared interface", "sandbox", short(op.sb.ID()), "interface", p.src, "error", err)
	}
}

// discardPrepLater discards op's prepared attach p, and the resolver's
// sockets with it, unless a connect or a delete settled it within
// unclaimedPrep.
func (c *Controller) discardPrepLater(op *sandboxOp, p *preparedAttach) {
	time.AfterFunc(unclaimedPrep, func() {
		op.mu.Lock()
		defer op.mu.Unlock()
		if op.prep != p {
			return
		}
		op.prep = nil
		c.retirePrepared(op, p)
		if op.dns.r == nil {
			op.dns.pre.close()
			op.dns.pre = nil
		}
		c.sparePool().Missed()
	})
}

// SetSpareNamespaces keeps n spare namespaces from now on (a reload of
// sandbox { spare_namespaces }): a new pool of n takes the old one's
// place, and the old one's spares are destroyed; 0 keeps none. A create
// that took a spare from the old pool keeps it.
func (c *Controller) SetSpareNamespaces(n int) {
	pool := nspool.New(c.log, n, spareMaker{c}, c.quiet)
	c.mu.Lock()
	old := c.pool
	c.pool = pool
	c.mu.Unlock()
	old.Close()
	c.log.Info("spare namespaces", "count", n)
}
