package controller

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sandnet/sandnet/core/sandbox"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// A CNI runtime passes a container's port mappings to the ADD of each of
// its networks, and a host port leads to one container address: the
// first network's endpoint publishes them, the later ones' ADD does not
// ask again (cmd/host/cni). The ports are the container's, not that
// network's: when a DEL releases the endpoint that publishes them while
// the container stays on other networks (podman network disconnect), they
// are handed over to another of its endpoints, as Docker moves a
// container's published ports to its new gateway endpoint and as CNI's
// portmap leaves the next network's rule in effect.

// handOverPorts publishes ports, which a front's released endpoint
// published, through another endpoint of op's sandbox: the gateway's
// first, then the others in order, the first that can take them (a
// network that is not internal, an address to forward to). A failure is
// logged, not returned: the release itself succeeded. op.mu is held.
func (c *Controller) handOverPorts(ctx context.Context, op *sandboxOp, ports []PortBinding) {
	for _, e := range handOverOrder(op.sb) {
		n, ep, idx, found, err := c.sandboxEndpoint(ctx, op, e.NetworkID, e.ID)
		if err != nil || !found || n.Internal || !ep.Address.IsValid() && !ep.AddressV6.IsValid() {
			continue
		}
		if err := c.publishMore(ctx, n, &ep, idx, ports); err != nil {
			c.log.Warn("handing a released endpoint's published ports over", "sandbox", short(op.sb.ID()), "endpoint", short(ep.ID), "error", err)
			continue
		}
		c.log.Info("published ports handed over", "sandbox", short(op.sb.ID()), "endpoint", short(ep.ID), "network", n.Name, "ports", len(ports))
		return
	}
}

// handOverOrder is sb's endpoints, its gateway endpoints first.
func handOverOrder(sb *sandbox.Sandbox) []sandbox.Endpoint {
	eps := sb.Endpoints()
	v4, v6 := sb.GatewayEndpoints()
	rank := func(e sandbox.Endpoint) int {
		switch e.ID {
		case v4:
			return 0
		case v6:
			return 1
		}
		return 2
	}
	slices.SortStableFunc(eps, func(a, b sandbox.Endpoint) int { return rank(a) - rank(b) })
	return eps
}

// publishMore adds ports to those endpoint ep of network n publishes
// (idx is its record's index): the record says so first, then the driver
// publishes the whole set; should the driver fail, the record goes back
// to the ports it had. A crash in between leaves a record whose ports the
// driver's replay publishes at the next start; the other order left a
// rule that no record named, which the replay kept (it publishes what
// records say, and takes away only what no endpoint owns). Ports ep
// publishes already are skipped.
func (c *Controller) publishMore(ctx context.Context, n *Network, ep *Endpoint, idx uint64, ports []PortBinding) error {
	next := ep.clone()
	for _, p := range ports {
		if !slices.Contains(next.Ports, p) {
			next.Ports = append(next.Ports, p)
		}
	}
	if len(next.Ports) == len(ep.Ports) {
		return nil
	}
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	ctx = finishing(ctx)
	idx, err = c.updateEndpointAt(ctx, n.ID, ep.ID, idx, ep, func(cur *Endpoint) error {
		cur.Ports, cur.External = next.Ports, true
		return nil
	})
	if err != nil {
		return err
	}
	resp, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: c.netProto(n), Endpoint: epProto(&next)})
	if err == nil {
		if bound := boundPorts(resp); len(bound) > 0 && !slices.Equal(bound, next.Ports) {
			// The driver picked host ports the ports left open.
			_, err = c.updateEndpointAt(ctx, n.ID, ep.ID, idx, nil, func(cur *Endpoint) error {
				cur.Ports = bound
				return nil
			})
		}
		return err
	}
	err = fmt.Errorf("driver %q publishing ports of endpoint %s: %w", n.Driver, short(ep.ID), err)
	if _, uerr := c.updateEndpointAt(ctx, n.ID, ep.ID, idx, nil, func(cur *Endpoint) error {
		cur.Ports, cur.External = ep.Ports, ep.External
		return nil
	}); uerr != nil {
		c.log.Error("undoing a hand-over of published ports", "endpoint", short(ep.ID), "error", uerr)
	}
	return err
}

// boundPorts is the ports a driver's answer to ProgramExternalConnectivity
// says it bound, with the host ports it picked; nil when it names none.
func boundPorts(resp *pb.ExternalConnectivityResponse) []PortBinding {
	var out []PortBinding
	for _, b := range resp.GetPortBindings() {
		hip, _ := netip.ParseAddr(b.GetHostIp())
		out = append(out, PortBinding{Proto: b.GetProto(), ContainerPort: uint16(b.GetContainerPort()), HostIP: hip, HostPort: uint16(b.GetHostPort())})
	}
	return out
}
