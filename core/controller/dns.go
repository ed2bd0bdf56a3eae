package controller

import (
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
)

// dnsState is a sandbox's embedded resolver and the networks its queries
// may see.
type dnsState struct {
	nets atomic.Pointer[[]string] // IDs of the networks joined with addresses
	r    *resolver.Resolver
	// live is r for readers that do not hold the sandbox's lock (the
	// resolv.conf watcher, network DNS updates).
	live atomic.Pointer[resolver.Resolver]
	// pre are sockets bound inside the namespace when it was made ahead
	// of time, for the first resolver to take.
	pre *dnsSockets
}

// networks returns the current network IDs for the resolver's view.
func (d *dnsState) networks() []string {
	if p := d.nets.Load(); p != nil {
		return *p
	}
	return nil
}

// refreshDNS indexes the sandbox's endpoints for service discovery and
// starts its resolver on the first endpoint that has an address. The
// resolver serves 127.0.0.11 inside the sandbox's own namespace; host-mode
// sandboxes and sandboxes without a namespace yet get none. Called with
// op.mu held after every join and leave.
func (c *Controller) refreshDNS(op *sandboxOp) {
	var ids []string
	var addrs []netip.Addr
	for _, e := range op.sb.Endpoints() {
		if e.Addr.IsValid() || e.AddrV6.IsValid() {
			ids = append(ids, e.NetworkID)
		}
		if e.Resolver.IsValid() {
			addrs = append(addrs, e.Resolver)
		}
	}
	op.dns.nets.Store(&ids)
	c.applyUpstreams(op) // the networks' servers may have changed

	if len(ids) == 0 {
		// No network left to answer for or forward through: nothing
		// listens on 127.0.0.11 (a query is refused at once) until the
		// next addressed join, as after a restart. resolv.conf still
		// names it.
		c.dropResolver(op)
		return
	}
	// A delete stopped the resolver for good.
	if op.dns.r == nil && len(ids) > 0 && !c.stateOf(op).inDelete() {
		if r := c.newResolver(op); r != nil {
			c.useResolver(op, r)
		}
	}
	if op.dns.r != nil {
		if err := op.dns.r.SetExtraAddrs(op.sb.Namespace(), addrs); err != nil {
			c.log.Warn("the embedded resolver cannot answer on an address a runtime was given", "sandbox", short(op.sb.ID()), "error", err)
		}
	}
}

// resolverAddrFor returns the resolver's address for a CNI front's new
// endpoint in sb (Endpoint.Resolver): 127.0.0.11 when no endpoint of sb
// has it, else the lowest address from 127.0.0.12 on that none has.
// The caller holds the sandbox's lock, so that no other attach picks the
// same.
func resolverAddrFor(sb *sandbox.Sandbox) netip.Addr {
	used := map[netip.Addr]bool{}
	for _, e := range sb.Endpoints() {
		used[e.Resolver] = true
	}
	a := resolver.Address().Addr()
	for used[a] && a.Next().As4()[3] != 0 {
		a = a.Next()
	}
	return a
}

// newResolver starts a resolver for the sandbox, or returns nil when it
// gets none (no namespace yet, host mode) or the resolver cannot start.
// It takes the sockets bound when the namespace was made ahead of time,
// if any, and touches op no further: the caller hands the resolver to
// useResolver. op.mu is held.
func (c *Controller) newResolver(op *sandboxOp) *resolver.Resolver {
	ns := op.sb.Namespace()
	if ns == nil || op.sb.Options().HostMode {
		return nil
	}
	c.dnsMu.Lock() // SetResolverUpstreams writes the upstreams
	cfg := c.cfg.Resolver
	c.dnsMu.Unlock()
	cfg.HostResolvConf = c.cfg.HostResolvConf
	if dns := op.sb.Options().DNS; len(dns) > 0 {
		cfg.Upstreams = nil
		for _, a := range dns {
			cfg.Upstreams = append(cfg.Upstreams, netip.AddrPortFrom(a, 53))
		}
	}
	cfg.Logger = c.log.Named("dns")
	r := resolver.New(cfg, view{x: c.names, nets: op.dns.networks})
	if pre := op.dns.pre; pre != nil {
		op.dns.pre = nil
		if err := r.StartWith(pre.udp, pre.tcp); err != nil {
			c.log.Error("starting the embedded resolver", "sandbox", short(op.sb.ID()), "error", err)
			return nil
		}
		return r
	}
	if err := r.Start(ns); err != nil {
		c.log.Error("starting the embedded resolver", "sandbox", short(op.sb.ID()), "error", err)
		return nil
	}
	return r
}

// useResolver makes r the sandbox's resolver.
func (c *Controller) useResolver(op *sandboxOp, r *resolver.Resolver) {
	op.dns.r = r
	c.dnsMu.Lock()
	op.dns.live.Store(r)
	c.resolvers[op] = struct{}{}
	// The config may have changed since r was made.
	if len(op.sb.Options().DNS) == 0 {
		r.SetConfigured(c.cfg.Resolver.Upstreams)
	}
	r.SetLimits(c.cfg.Resolver.Timeout, c.cfg.Resolver.MaxInflight)
	c.applyUpstreamsLocked(op)
	c.dnsMu.Unlock()
	op.sb.SetEmbeddedDNS(true)
}

// stopDNS stops a sandbox's resolver.
func (c *Controller) stopDNS(op *sandboxOp) {
	op.dns.pre.close()
	op.dns.pre = nil
	c.dropResolver(op)
	op.sb.SetEmbeddedDNS(false)
}

// dropResolver stops the sandbox's resolver, if one runs. op.mu is held.
func (c *Controller) dropResolver(op *sandboxOp) {
	if op.dns.r != nil {
		c.dnsMu.Lock()
		op.dns.live.Store(nil)
		delete(c.resolvers, op)
		c.dnsMu.Unlock()
		_ = op.dns.r.Stop()
		op.dns.r = nil
	}
}

// liveResolvers returns the sandboxes; their dns.live is their running
// resolver, if any.
func (c *Controller) liveResolvers() []*sandboxOp {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops := make([]*sandboxOp, 0, len(c.sandboxes))
	for _, op := range c.sandboxes {
		ops = append(ops, op)
	}
	return ops
}

// SetResolverUpstreams makes aps the config's upstream servers (resolver
// { upstreams }; empty: the host's resolv.conf) from now on, for the
// resolvers running now too: each forwards to them unless its sandbox
// has servers of its own (--dns) or its networks have (network create
// --dns). A reload calls it.
func (c *Controller) SetResolverUpstreams(aps []netip.AddrPort) {
	aps = slices.Clone(aps)
	c.updateResolvers(func(cfg *resolver.Config) { cfg.Upstreams = aps }, func(op *sandboxOp, r *resolver.Resolver) {
		if op == nil || len(op.sb.Options().DNS) == 0 {
			r.SetConfigured(aps)
		}
	})
}

// SetResolverLimits makes timeout and maxInflight (resolver { timeout,
// max_inflight }) the bounds of the queries forwarded from now on, by the
// resolvers running now too. A reload calls it.
func (c *Controller) SetResolverLimits(timeout time.Duration, maxInflight int) {
	c.updateResolvers(func(cfg *resolver.Config) { cfg.Timeout, cfg.MaxInflight = timeout, maxInflight },
		func(_ *sandboxOp, r *resolver.Resolver) { r.SetLimits(timeout, maxInflight) })
}

// updateResolvers changes the resolvers' config with set, and applies it
// with apply to every running resolver: the host listener's (op nil) and
// the sandboxes'. Under dnsMu, so that a resolver that starts meanwhile
// takes the new config in useResolver.
func (c *Controller) updateResolvers(set func(*resolver.Config), apply func(*sandboxOp, *resolver.Resolver)) {
	c.mu.Lock()
	host := c.hostDNS
	c.mu.Unlock()
	c.dnsMu.Lock()
	defer c.dnsMu.Unlock()
	set(&c.cfg.Resolver)
	if host != nil {
		apply(nil, host)
	}
	for op := range c.resolvers {
		if r := op.dns.live.Load(); r != nil {
			apply(op, r)
		}
	}
}
