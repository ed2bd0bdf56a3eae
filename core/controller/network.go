package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"time"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// DefaultDriver is the driver of a network created without one.
const DefaultDriver = "bridge"

func parsePrefix(field, s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, errorf(sdk.ErrInvalid, "%s: %q is not a CIDR prefix", field, s)
	}
	return p, nil
}

func parseAddr(field, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, errorf(sdk.ErrInvalid, "%s: %q is not an IP address", field, s)
	}
	return a, nil
}

// CreateNetwork creates a network: the record, its name and its address
// pools are written in one transaction, then the driver sets it up. A
// failure leaves nothing behind.
func (c *Controller) CreateNetwork(ctx context.Context, req NetworkCreate) (*Network, error) {
	if !validName.MatchString(req.Name) {
		return nil, errorf(sdk.ErrInvalid, "name: %q is not a valid network name (letters, digits, _ . -; up to 128)", req.Name)
	}
	if req.Driver == "" {
		req.Driver = DefaultDriver
	}
	d, caps, err := c.driver(req.Driver)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, errorf(sdk.ErrInvalid, "driver: no driver %q is loaded (add a driver %q block to the config)", req.Driver, req.Driver)
	} else if err != nil {
		return nil, err
	}
	switch req.Scope {
	case "", "local":
		req.Scope = "local"
	case "global":
		if !c.plugins.StoreGlobal() {
			return nil, errorf(sdk.ErrInvalid, "scope: global networks need a store shared between hosts (such as consul); this agent's store is local")
		}
	default:
		return nil, errorf(sdk.ErrInvalid, "scope: %q is not local or global", req.Scope)
	}
	subnet, err := parsePrefix("subnet", req.Subnet)
	if err != nil {
		return nil, err
	}
	gateway, err := parseAddr("gateway", req.Gateway)
	if err != nil {
		return nil, err
	}
	ipRange, err := parsePrefix("ip_range", req.IPRange)
	if err != nil {
		return nil, err
	}
	subnet6, err := parsePrefix("subnet_v6", req.SubnetV6)
	if err != nil {
		return nil, err
	}
	gateway6, err := parseAddr("gateway_v6", req.GatewayV6)
	if err != nil {
		return nil, err
	}
	if subnet.IsValid() && subnet.Addr().Is6() {
		return nil, errorf(sdk.ErrInvalid, "subnet: %s is IPv6; give it as subnet_v6", subnet)
	}
	if !caps.GetNeedsAddresses() && (subnet.IsValid() || gateway.IsValid() || ipRange.IsValid() || subnet6.IsValid()) {
		return nil, errorf(sdk.ErrInvalid, "subnet: driver %q does not use addresses", req.Driver)
	}
	if (subnet6.IsValid() || gateway6.IsValid()) && !req.EnableIPv6 {
		req.EnableIPv6 = true
	}
	n := &Network{
		ID: newID(), Name: req.Name, Driver: req.Driver, Scope: req.Scope, Internal: req.Internal,
		EnableIPv6: req.EnableIPv6 && caps.GetNeedsAddresses(), Options: req.Options, Created: time.Now().UTC(),
	}
	err = retry(ctx, "creating network "+req.Name, func() error {
		if _, err := c.kv.get(ctx, networkNameKey(req.Name), new(string)); err == nil {
			return errorf(sdk.ErrExists, "name: a network named %q already exists", req.Name)
		} else if !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
		ops := []*pb.TxnOp{cas(networkKey(n.ID), 0, n), cas(networkNameKey(n.Name), 0, n.ID)}
		n.IPv4, n.IPv6 = nil, nil
		if caps.GetNeedsAddresses() {
			reqs := []ipam.PoolRequest{{NetworkID: n.ID, Subnet: subnet, Gateway: gateway, Range: ipRange}}
			if n.EnableIPv6 {
				reqs = append(reqs, ipam.PoolRequest{NetworkID: n.ID, Subnet: subnet6, Gateway: gateway6, V6: true})
			}
			pools, pops, err := c.ipam.RequestPools(ctx, reqs)
			if err != nil {
				return err
			}
			n.IPv4 = []IPAMConfig{{Subnet: pools[0].Subnet, Gateway: pools[0].Gateway, Range: pools[0].Range}}
			if len(pools) > 1 {
				n.IPv6 = []IPAMConfig{{Subnet: pools[1].Subnet, Gateway: pools[1].Gateway, Range: pools[1].Range}}
			}
			ops = append(ops, pops...)
			ops[0] = cas(networkKey(n.ID), 0, n) // now with its pools
		}
		return c.kv.txn(ctx, ops...)
	})
	if err != nil {
		return nil, err
	}
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: netProto(n)}); err != nil {
		if rerr := c.removeNetwork(ctx, n); rerr != nil {
			c.log.Error("rolling back network record", "network", n.Name, "error", rerr)
		}
		return nil, fmt.Errorf("driver %q creating network %s: %w", n.Driver, n.Name, err)
	}
	c.log.Info("network created", "name", n.Name, "id", short(n.ID), "driver", n.Driver)
	return n, nil
}

// removeNetwork deletes a network's record, name and pools in one
// transaction.
func (c *Controller) removeNetwork(ctx context.Context, n *Network) error {
	return retry(ctx, "removing network "+n.Name, func() error {
		ops := []*pb.TxnOp{del(networkKey(n.ID))}
		var cur string
		if _, err := c.kv.get(ctx, networkNameKey(n.Name), &cur); err == nil && cur == n.ID {
			ops = append(ops, del(networkNameKey(n.Name)))
		}
		for _, p := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
			ops = append(ops, c.ipam.ReleasePool(p.Subnet)...)
		}
		if err := c.kv.txn(ctx, ops...); err != nil {
			return err
		}
		for _, p := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
			c.ipam.PoolReleased(p.Subnet)
		}
		return nil
	})
}

// Network returns the network with that ID or name, with its index.
func (c *Controller) network(ctx context.Context, ref string) (*Network, uint64, error) {
	if ref == "" {
		return nil, 0, errorf(sdk.ErrInvalid, "network: empty network name or ID")
	}
	var n Network
	idx, err := c.kv.get(ctx, networkKey(ref), &n)
	if err == nil {
		return &n, idx, nil
	}
	if !errors.Is(err, sdk.ErrNotFound) {
		return nil, 0, err
	}
	var id string
	if _, err := c.kv.get(ctx, networkNameKey(ref), &id); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil, 0, errorf(sdk.ErrNotFound, "network %q not found", ref)
		}
		return nil, 0, err
	}
	idx, err = c.kv.get(ctx, networkKey(id), &n)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, 0, errorf(sdk.ErrNotFound, "network %q not found", ref)
	}
	return &n, idx, err
}

// Network returns a network by ID or name, with its endpoints.
func (c *Controller) Network(ctx context.Context, ref string) (*Network, error) {
	n, _, err := c.network(ctx, ref)
	if err != nil {
		return nil, err
	}
	if n.Endpoints, err = c.endpoints(ctx, n.ID); err != nil {
		return nil, err
	}
	return n, nil
}

// Networks lists every network, ordered by name.
func (c *Controller) Networks(ctx context.Context) ([]*Network, error) {
	var out []*Network
	err := c.kv.list(ctx, networkPrefix, func(_ string, _ uint64, raw []byte) error {
		var n Network
		if err := json.Unmarshal(raw, &n); err != nil {
			return err
		}
		out = append(out, &n)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// endpoints lists the endpoints of a network.
func (c *Controller) endpoints(ctx context.Context, netID string) ([]Endpoint, error) {
	var out []Endpoint
	err := c.kv.list(ctx, endpointsOf(netID), func(_ string, _ uint64, raw []byte) error {
		var ep Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		out = append(out, ep)
		return nil
	})
	return out, err
}

// DeleteNetwork deletes a network that has no endpoints. It marks the
// record in-delete first, so endpoint creates racing with it fail and a
// crash midway is finished on restart.
func (c *Controller) DeleteNetwork(ctx context.Context, ref string) error {
	var n *Network
	err := retry(ctx, "deleting network "+ref, func() error {
		var idx uint64
		var err error
		if n, idx, err = c.network(ctx, ref); err != nil {
			return err
		}
		if n.InDelete {
			return nil
		}
		if err := c.refuseIfEndpoints(ctx, n); err != nil {
			return err
		}
		n.InDelete = true
		if err := c.kv.txn(ctx, cas(networkKey(n.ID), idx, n)); err != nil {
			n.InDelete = false
			return err
		}
		// An endpoint committed between the count and the mark is seen now;
		// after the mark no endpoint can commit.
		if err := c.refuseIfEndpoints(ctx, n); err != nil {
			c.unmarkDelete(ctx, n)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.finishNetworkDelete(ctx, n)
}

func (c *Controller) refuseIfEndpoints(ctx context.Context, n *Network) error {
	count, err := c.kv.count(ctx, endpointsOf(n.ID))
	if err != nil {
		return err
	}
	if count > 0 {
		return errorf(sdk.ErrConflict, "network %s has %d endpoint(s); disconnect them first", n.Name, count)
	}
	return nil
}

func (c *Controller) unmarkDelete(ctx context.Context, n *Network) {
	_ = retry(ctx, "unmarking network "+n.Name, func() error {
		var cur Network
		idx, err := c.kv.get(ctx, networkKey(n.ID), &cur)
		if err != nil {
			return err
		}
		cur.InDelete = false
		return c.kv.txn(ctx, cas(networkKey(n.ID), idx, &cur))
	})
	n.InDelete = false
}

// finishNetworkDelete tears a network marked in-delete down in the driver
// and removes its records.
func (c *Controller) finishNetworkDelete(ctx context.Context, n *Network) error {
	d, _, err := c.driver(n.Driver)
	if err != nil {
		return fmt.Errorf("deleting network %s: %w", n.Name, err)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: netProto(n)}); err != nil {
		return fmt.Errorf("driver %q deleting network %s: %w", n.Driver, n.Name, err)
	}
	if err := c.removeNetwork(ctx, n); err != nil {
		return err
	}
	c.log.Info("network deleted", "name", n.Name, "id", short(n.ID))
	return nil
}
