package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
)

// A network's DNS servers (`network create --dns`, changed by
// UpdateNetworkDNS) are the upstreams of the resolvers of the sandboxes on
// it, in the order the sandbox's networks were joined, duplicates dropped.
// A sandbox's own DNS servers win over them; without either, the resolver
// forwards to the config's upstreams or the host's resolv.conf.
//
// netDNS keeps each network's servers in memory, with the index of the
// record they were read from, so a resolver's upstreams are computed
// without a store call; dnsMu serializes computing and applying them, so
// a resolver that starts while a network's servers change gets the new
// ones (see applyUpstreams).

// netDNSEntry is a network's servers as of a record index.
type netDNSEntry struct {
	idx     uint64
	servers []netip.Addr
}

// noteNetworkDNS remembers n's servers, read or written at index idx,
// unless a later record is known already.
func (c *Controller) noteNetworkDNS(n *Network, idx uint64) {
	c.dnsMu.Lock()
	defer c.dnsMu.Unlock()
	c.noteNetworkDNSLocked(n, idx)
}

func (c *Controller) noteNetworkDNSLocked(n *Network, idx uint64) {
	if e, ok := c.netDNS[n.ID]; ok && e.idx > idx {
		return
	}
	if c.netDNS == nil {
		c.netDNS = map[string]netDNSEntry{}
	}
	c.netDNS[n.ID] = netDNSEntry{idx: idx, servers: slices.Clone(n.DNS)}
}

// forgetNetworkDNS drops a deleted network's servers.
func (c *Controller) forgetNetworkDNS(id string) {
	c.dnsMu.Lock()
	delete(c.netDNS, id)
	c.dnsMu.Unlock()
}

// networkUpstreamsLocked returns the servers of the networks op has
// joined, in order, without duplicates, on port 53.
func (c *Controller) networkUpstreamsLocked(op *sandboxOp) []netip.AddrPort {
	var aps []netip.AddrPort
	for _, id := range op.dns.networks() {
		for _, a := range c.netDNS[id].servers {
			ap := netip.AddrPortFrom(a, 53)
			if !slices.Contains(aps, ap) {
				aps = append(aps, ap)
			}
		}
	}
	return aps
}

// applyUpstreams gives op's running resolver the servers of its networks,
// unless the sandbox has servers of its own (the resolver was made with
// them and keeps them). Empty means the config's upstreams or the host's.
func (c *Controller) applyUpstreams(op *sandboxOp) {
	c.dnsMu.Lock()
	defer c.dnsMu.Unlock()
	c.applyUpstreamsLocked(op)
}

func (c *Controller) applyUpstreamsLocked(op *sandboxOp) {
	r := op.dns.live.Load()
	if r == nil || len(op.sb.Options().DNS) > 0 {
		return
	}
	r.SetUpstreams(c.networkUpstreamsLocked(op))
}

// NetworkDNSUpdate is a change to a network's DNS servers: Drop is taken
// out, then Add appended (one already there is left where it is).
type NetworkDNSUpdate struct {
	Add  []string `json:"add,omitempty"`
	Drop []string `json:"drop,omitempty"`
}

// parseDNS reads a list of server addresses; field names the list in
// errors ("dns", "add", "drop").
func parseDNS(field string, list []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range list {
		a, err := netip.ParseAddr(s)
		if err == nil {
			err = sandbox.CheckDNSServer(a)
		}
		if err != nil {
			return nil, errorf(sdk.ErrInvalid, "%s[%d]: %q is not the IP address of a DNS server", field, i, s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

// UpdateNetworkDNS changes a network's DNS servers and returns the
// network. The resolvers of running sandboxes on it forward to the new
// list at once (on this host; other hosts sharing a global network read it
// when they next start). Dropping a server the network does not have is
// an error and changes nothing.
func (c *Controller) UpdateNetworkDNS(ctx context.Context, ref string, req NetworkDNSUpdate) (*Network, error) {
	add, err := parseDNS("add", req.Add)
	if err != nil {
		return nil, err
	}
	drop, err := parseDNS("drop", req.Drop)
	if err != nil {
		return nil, err
	}
	if len(add) == 0 && len(drop) == 0 {
		return nil, errorf(sdk.ErrInvalid, "add: give servers to add or drop")
	}
	var n *Network
	var idx uint64
	err = retry(ctx, "updating the DNS servers of network "+ref, func() error {
		var cur uint64
		if n, cur, err = c.network(ctx, ref); err != nil {
			return err
		}
		if n.InDelete {
			return errorf(sdk.ErrNotFound, "network %q is being deleted", ref)
		}
		servers := slices.Clone(n.DNS)
		for i, a := range drop {
			j := slices.Index(servers, a)
			if j < 0 {
				return errorf(sdk.ErrInvalid, "drop[%d]: %s is not a DNS server of network %s (it has %v)", i, a, n.Name, n.DNS)
			}
			servers = slices.Delete(servers, j, j+1)
		}
		for _, a := range add {
			if !slices.Contains(servers, a) {
				servers = append(servers, a)
			}
		}
		n.DNS = servers
		res, err := c.kv.txnResults(ctx, cas(networkKey(n.ID), cur, n))
		if err != nil {
			return err
		}
		idx = indexOf(res, networkKey(n.ID))
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.kv.nets.put(n, idx)
	// Noted before the sandboxes are listed: a resolver that starts after
	// the list was taken reads the new servers itself.
	c.noteNetworkDNS(n, idx)
	moved := 0
	for _, op := range c.liveResolvers() {
		if slices.Contains(op.dns.networks(), n.ID) && op.dns.live.Load() != nil {
			c.applyUpstreams(op)
			moved++
		}
	}
	c.log.Info("network DNS servers changed", "network", n.Name, "servers", fmt.Sprint(n.DNS), "sandboxes", moved)
	return c.Network(ctx, n.ID)
}
