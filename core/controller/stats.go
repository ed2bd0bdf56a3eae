package controller

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/osl"
)

// Stats is a snapshot of what the controller manages, for metrics.
type Stats struct {
	Networks []NetworkStats
	// Sandboxes counts sandboxes, stubs included (their namespaces exist).
	Sandboxes int
	// Stubs counts sandboxes read back after a restart and not claimed yet.
	Stubs int
	// SpareNamespaces counts namespaces made ahead of time and ready for a
	// create, prepared ones included.
	SpareNamespaces int
	// DriverWaiters counts requests waiting for a driver plugin that is
	// restarting (see drivergate.go).
	DriverWaiters int
}

// NetworkStats is one network in Stats.
type NetworkStats struct {
	Name, Driver string
	Endpoints    int
	Pools        []PoolStats
}

// PoolStats is the address use of one of a network's subnets.
type PoolStats struct {
	Subnet netip.Prefix
	// Used are the addresses allocated; Free those dynamic allocation may
	// still hand out.
	Used int
	Free float64
}

// Stats reads the counts that Stats holds; networks and addresses come
// from the store. When the store fails it, Stats still has the counts
// held in memory (sandboxes, stubs, spares, waiters), with the error.
func (c *Controller) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{DriverWaiters: int(c.driverWaiters.Load())}
	c.mu.Lock()
	for _, op := range c.sandboxes {
		st.Sandboxes++
		if op.stub {
			st.Stubs++
		}
	}
	pool := c.pool
	c.mu.Unlock()
	st.SpareNamespaces = pool.Len() // c.mu is a leaf: the pool's lock is taken after it
	nets, err := c.Networks(ctx)
	if err != nil {
		return st, err
	}
	st.Networks = make([]NetworkStats, len(nets))
	err = inParallel(ctx, len(nets), func(ctx context.Context, i int) (err error) {
		st.Networks[i], err = c.networkStats(ctx, nets[i])
		return err
	})
	if err != nil {
		st.Networks = nil
		return st, err
	}
	return st, nil
}

// networkStats reads network n's endpoint count and address use.
func (c *Controller) networkStats(ctx context.Context, n *Network) (NetworkStats, error) {
	ns := NetworkStats{Name: n.Name, Driver: n.Driver}
	var err error
	if ns.Endpoints, err = c.kv.count(ctx, endpointsOf(n.ID)); err != nil {
		return ns, err
	}
	for _, pc := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
		used, inRange, err := c.ipam.Used(ctx, pc.Subnet, pc.Range)
		if err != nil {
			return ns, err
		}
		free := ipam.Capacity(pc.Subnet, pc.Gateway, pc.Range, pc.aux()) - float64(inRange)
		ns.Pools = append(ns.Pools, PoolStats{Subnet: pc.Subnet, Used: used, Free: max(free, 0)})
	}
	return ns, nil
}

// aux is c's auxiliary addresses as the allocator has them.
func (c IPAMConfig) aux() []ipam.AuxAddress {
	var out []ipam.AuxAddress
	for name, a := range c.AuxAddresses {
		out = append(out, ipam.AuxAddress{Name: name, Addr: a})
	}
	return out
}

// EndpointTraffic is what an endpoint's interface carried, as the kernel
// inside the sandbox counts it: received is into the container.
type EndpointTraffic struct {
	Container  string `json:"container"`
	Network    string `json:"network"`
	EndpointID string `json:"endpoint_id"`
	Interface  string `json:"interface"`
	osl.LinkStats
}

// Traffic returns the counters of the endpoints of container's sandbox,
// or, for container "", of every sandbox of this host, stubs included
// (their containers may be running), oldest first. A sandbox deleted
// meanwhile is left out of a listing.
func (c *Controller) Traffic(ctx context.Context, container string) ([]EndpointTraffic, error) {
	var ops []*sandboxOp
	if container != "" {
		op, err := c.byContainerID(container)
		if err != nil {
			return nil, err
		}
		ops = []*sandboxOp{op}
	} else {
		ops = c.sortedSandboxes(true)
	}
	out := []EndpointTraffic{}
	for _, op := range ops {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		stats, err := op.sb.InterfaceStats()
		if err != nil {
			if container != "" {
				return nil, fmt.Errorf("reading the counters of container %s: %w", container, err)
			}
			continue
		}
		for _, ep := range op.sb.Endpoints() {
			st, ok := stats[ep.ID]
			if !ok {
				continue
			}
			out = append(out, EndpointTraffic{Container: op.sb.ContainerID(), Network: ep.NetworkName, EndpointID: ep.ID, Interface: ep.IfName, LinkStats: st})
		}
	}
	return out, nil
}
