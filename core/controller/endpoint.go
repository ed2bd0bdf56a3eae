package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Connect attaches a container's sandbox to a network: it creates an
// endpoint (addresses from IPAM when the driver needs them) and joins it
// to the sandbox. A failure leaves no endpoint, address, link or rule
// behind.
func (c *Controller) Connect(ctx context.Context, netRef string, req Connect) (*Endpoint, error) {
	op, err := c.byContainerID(req.Container)
	if err != nil {
		return nil, err
	}
	ports, err := parsePorts(req.Publish)
	if err != nil {
		return nil, err
	}
	ip, err := parseAddr("ip", req.IP)
	if err != nil {
		return nil, err
	}
	ip6, err := parseAddr("ipv6", req.IPv6)
	if err != nil {
		return nil, err
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	if op.deleting || op.deleted {
		return nil, errorf(sdk.ErrForbidden, "sandbox %s is being deleted", short(op.sb.ID()))
	}
	n, _, err := c.network(ctx, netRef)
	if err != nil {
		return nil, err
	}
	for _, e := range op.sb.Endpoints() {
		if e.NetworkID == n.ID {
			return nil, errorf(sdk.ErrExists, "container %s is already connected to network %s", req.Container, n.Name)
		}
	}
	_, caps, err := c.driver(n.Driver)
	if err != nil {
		return nil, err
	}
	switch hostMode := op.sb.Options().HostMode; {
	case caps.GetUsesHostNamespace() && !hostMode:
		return nil, errorf(sdk.ErrForbidden, "network %s uses the host's namespace: container %s needs a host-mode sandbox (sandbox create --host)", n.Name, req.Container)
	case hostMode && !caps.GetUsesHostNamespace():
		return nil, errorf(sdk.ErrForbidden, "container %s shares the host's namespace and cannot join network %s", req.Container, n.Name)
	}
	name := req.Name
	if name == "" {
		name = op.sb.Options().Hostname
	}
	if name == "" {
		name = req.Container
	}
	ep := &Endpoint{
		ID: newID(), Name: name, NetworkID: n.ID, Aliases: req.Aliases, Priority: req.Priority,
		Ports: ports, Created: time.Now().UTC(),
	}
	if err := c.createEndpoint(ctx, ep, ip, ip6); err != nil {
		return nil, err
	}
	if err := c.join(ctx, op, n, ep); err != nil {
		if rerr := c.deleteEndpoint(ctx, ep.NetworkID, ep.ID); rerr != nil {
			c.log.Error("rolling back endpoint", "endpoint", short(ep.ID), "error", rerr)
		}
		return nil, err
	}
	return ep, nil
}

// createEndpoint allocates the endpoint's addresses and writes it, in one
// transaction that also checks the network was not marked in-delete, then
// asks the driver to create it.
func (c *Controller) createEndpoint(ctx context.Context, ep *Endpoint, ip, ip6 netip.Addr) error {
	var n *Network
	var caps *pb.Capabilities
	err := retry(ctx, "creating endpoint", func() error {
		var nIdx uint64
		var err error
		if n, nIdx, err = c.network(ctx, ep.NetworkID); err != nil {
			return err
		}
		if n.InDelete {
			return errorf(sdk.ErrConflict, "network %s is being deleted", n.Name)
		}
		if _, caps, err = c.driver(n.Driver); err != nil {
			return err
		}
		ops := []*pb.TxnOp{check(networkKey(n.ID), nIdx)}
		var allocs []*ipam.Allocation
		defer func() {
			for _, a := range allocs {
				a.Done(false) // a no-op once Done(true) ran
			}
		}()
		ep.Address, ep.AddressV6, ep.Gateway, ep.GatewayV6 = netip.Prefix{}, netip.Prefix{}, netip.Addr{}, netip.Addr{}
		if caps.GetNeedsAddresses() {
			if len(n.IPv4) == 0 {
				return errorf(sdk.ErrInvalid, "network %s has no IPv4 pool", n.Name)
			}
			for _, f := range []struct {
				pools []IPAMConfig
				want  netip.Addr
				addr  *netip.Prefix
				gw    *netip.Addr
			}{{n.IPv4, ip, &ep.Address, &ep.Gateway}, {n.IPv6, ip6, &ep.AddressV6, &ep.GatewayV6}} {
				if len(f.pools) == 0 {
					continue
				}
				a, err := c.ipam.Allocate(ctx, f.pools[0].Subnet, f.want, ep.ID)
				if err != nil {
					return fmt.Errorf("network %s: %w", n.Name, err)
				}
				allocs = append(allocs, a)
				ops = append(ops, a.Ops...)
				*f.addr = a.Addr
				if !n.Internal {
					*f.gw = f.pools[0].Gateway
				}
			}
			ep.MAC = macFor(ep.Address.Addr())
		} else if ip.IsValid() || ip6.IsValid() {
			return errorf(sdk.ErrInvalid, "ip: driver %q of network %s does not use addresses", n.Driver, n.Name)
		}
		ops = append(ops, cas(endpointKey(n.ID, ep.ID), 0, ep))
		if err := c.kv.txn(ctx, ops...); err != nil {
			return err
		}
		for _, a := range allocs {
			a.Done(true)
		}
		return nil
	})
	if err != nil {
		return err
	}
	d, _, err := c.driver(n.Driver)
	if err == nil {
		var resp *pb.CreateEndpointResponse
		if resp, err = d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: netProto(n), Endpoint: epProto(ep)}); err == nil {
			err = c.adoptDriverFill(ctx, ep, resp.GetInterface())
		}
	}
	if err != nil {
		if rerr := c.dropEndpoint(ctx, ep); rerr != nil {
			c.log.Error("rolling back endpoint record", "endpoint", short(ep.ID), "error", rerr)
		}
		return fmt.Errorf("driver %q creating endpoint on network %s: %w", n.Driver, n.Name, err)
	}
	return nil
}

// adoptDriverFill records what the driver filled in (a MAC; addresses for
// drivers that pick their own).
func (c *Controller) adoptDriverFill(ctx context.Context, ep *Endpoint, fill *pb.EndpointInterface) error {
	if fill == nil || (fill.GetMac() == "" || fill.GetMac() == ep.MAC) && fill.GetAddress() == "" && fill.GetAddressV6() == "" {
		return nil
	}
	return c.updateEndpoint(ctx, ep.NetworkID, ep.ID, func(cur *Endpoint) error {
		if m := fill.GetMac(); m != "" {
			if _, err := net.ParseMAC(m); err != nil {
				return fmt.Errorf("driver gave a bad MAC %q: %w", m, sdk.ErrInvalid)
			}
			cur.MAC = m
		}
		if a := fill.GetAddress(); a != "" && !cur.Address.IsValid() {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return fmt.Errorf("driver gave a bad address %q: %w", a, sdk.ErrInvalid)
			}
			cur.Address = p
		}
		*ep = *cur
		return nil
	})
}

// macFor derives a MAC from an IPv4 address as Docker does (02:42 and the
// four address bytes), so a container keeps its MAC when it keeps its IP.
func macFor(a netip.Addr) string {
	if !a.Is4() {
		return ""
	}
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}.String()
}

// updateEndpoint applies fn to the stored endpoint with compare-and-swap.
func (c *Controller) updateEndpoint(ctx context.Context, netID, id string, fn func(*Endpoint) error) error {
	return retry(ctx, "updating endpoint "+short(id), func() error {
		var cur Endpoint
		idx, err := c.kv.get(ctx, endpointKey(netID, id), &cur)
		if err != nil {
			return err
		}
		if err := fn(&cur); err != nil {
			return err
		}
		return c.kv.txn(ctx, cas(endpointKey(netID, id), idx, &cur))
	})
}

// dropEndpoint deletes an endpoint's record and releases its addresses in
// one transaction.
func (c *Controller) dropEndpoint(ctx context.Context, ep *Endpoint) error {
	n, _, err := c.network(ctx, ep.NetworkID)
	if err != nil {
		return err
	}
	return retry(ctx, "deleting endpoint "+short(ep.ID), func() error {
		var cur Endpoint
		idx, err := c.kv.get(ctx, endpointKey(ep.NetworkID, ep.ID), &cur)
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ops := []*pb.TxnOp{delCAS(endpointKey(ep.NetworkID, ep.ID), idx)}
		type rel struct{ pool, addr netip.Prefix }
		var rels []rel
		if cur.Address.IsValid() && len(n.IPv4) > 0 {
			ops = append(ops, c.ipam.ReleaseOps(n.IPv4[0].Subnet, cur.Address.Addr())...)
			rels = append(rels, rel{n.IPv4[0].Subnet, cur.Address})
		}
		if cur.AddressV6.IsValid() && len(n.IPv6) > 0 {
			ops = append(ops, c.ipam.ReleaseOps(n.IPv6[0].Subnet, cur.AddressV6.Addr())...)
			rels = append(rels, rel{n.IPv6[0].Subnet, cur.AddressV6})
		}
		if err := c.kv.txn(ctx, ops...); err != nil {
			return err
		}
		for _, r := range rels {
			c.ipam.Released(r.pool, r.addr.Addr())
		}
		return nil
	})
}

// deleteEndpoint asks the driver to delete the endpoint, then deletes its
// record and addresses.
func (c *Controller) deleteEndpoint(ctx context.Context, netID, id string) error {
	n, _, err := c.network(ctx, netID)
	if err != nil {
		return err
	}
	var ep Endpoint
	if _, err := c.kv.get(ctx, endpointKey(netID, id), &ep); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		return err
	}
	d, _, err := c.driver(n.Driver)
	if err != nil {
		return err
	}
	if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: netProto(n), Endpoint: epProto(&ep)}); err != nil {
		return fmt.Errorf("driver %q deleting endpoint %s: %w", n.Driver, short(id), err)
	}
	return c.dropEndpoint(ctx, &ep)
}

// join joins a stored endpoint to a sandbox: the driver's Join, the
// interface into the namespace, external connectivity, then the record.
// Undone on failure. With an external key not yet set, only the record
// says the endpoint belongs to the sandbox; SetKey does the rest.
func (c *Controller) join(ctx context.Context, op *sandboxOp, n *Network, ep *Endpoint) error {
	if op.sb.Namespace() == nil {
		if err := c.updateEndpoint(ctx, ep.NetworkID, ep.ID, func(cur *Endpoint) error {
			cur.SandboxID = op.sb.ID()
			*ep = *cur
			return nil
		}); err != nil {
			return err
		}
		op.sb.Restore(sbEndpoint(n, ep))
		return nil
	}
	return c.joinStored(ctx, op, n, ep)
}

// rejoin joins a stored endpoint again (SetKey, Refresh).
func (c *Controller) rejoin(ctx context.Context, op *sandboxOp, netID, epID string) error {
	n, _, err := c.network(ctx, netID)
	if err != nil {
		return err
	}
	var ep Endpoint
	if _, err := c.kv.get(ctx, endpointKey(netID, epID), &ep); err != nil {
		return err
	}
	return c.joinStored(ctx, op, n, &ep)
}

func sbEndpoint(n *Network, ep *Endpoint) sandbox.Endpoint {
	mac, _ := net.ParseMAC(ep.MAC)
	return sandbox.Endpoint{
		ID: ep.ID, Name: ep.Name, NetworkID: n.ID, NetworkName: n.Name, IfName: ep.IfName, MAC: mac,
		Addr: ep.Address, AddrV6: ep.AddressV6, Gateway: ep.Gateway, GatewayV6: ep.GatewayV6,
		Routes: ep.Routes, Priority: ep.Priority, Internal: n.Internal, Aliases: ep.Aliases,
	}
}

// joinStored does the work of a join for an endpoint already stored, and
// leaves ep as stored afterwards.
func (c *Controller) joinStored(ctx context.Context, op *sandboxOp, n *Network, ep *Endpoint) (err error) {
	d, _, err := c.driver(n.Driver)
	if err != nil {
		return err
	}
	sb := op.sb
	np, epp := netProto(n), epProto(ep)
	resp, err := d.Join(ctx, &pb.JoinRequest{Network: np, Endpoint: epp, SandboxKey: sb.Key()})
	if err != nil {
		return fmt.Errorf("driver %q joining endpoint %s to %s: %w", n.Driver, short(ep.ID), sb, err)
	}
	defer func() {
		if err != nil {
			if lerr := d.Leave(context.WithoutCancel(ctx), &pb.LeaveRequest{Network: np, Endpoint: epp, SandboxKey: sb.Key()}); lerr != nil {
				c.log.Error("rolling back join", "endpoint", short(ep.ID), "error", lerr)
			}
		}
	}()
	se := sbEndpoint(n, ep)
	se.Routes = nil
	for _, r := range resp.GetStaticRoutes() {
		dst, err := netip.ParsePrefix(r.GetDestination())
		if err != nil {
			return fmt.Errorf("driver %q gave a bad route %q: %w", n.Driver, r.GetDestination(), sdk.ErrInvalid)
		}
		hop, _ := netip.ParseAddr(r.GetNextHop())
		se.Routes = append(se.Routes, sandbox.Route{Dst: dst, NextHop: hop})
	}
	if g := resp.GetGateway(); g != "" {
		if se.Gateway, err = netip.ParseAddr(g); err != nil {
			return fmt.Errorf("driver %q gave a bad gateway %q: %w", n.Driver, g, sdk.ErrInvalid)
		}
	} else if resp.GetSrcName() != "" {
		se.Gateway = netip.Addr{}
	}
	if g := resp.GetGatewayV6(); g != "" {
		if se.GatewayV6, err = netip.ParseAddr(g); err != nil {
			return fmt.Errorf("driver %q gave a bad IPv6 gateway %q: %w", n.Driver, g, sdk.ErrInvalid)
		}
	} else if resp.GetSrcName() != "" {
		se.GatewayV6 = netip.Addr{}
	}
	rec, err := sb.AddInterface(se, c.host, resp.GetSrcName(), resp.GetInSandbox(), resp.GetDstPrefix())
	if err != nil {
		return fmt.Errorf("setting up endpoint %s in %s: %w", short(ep.ID), sb, err)
	}
	defer func() {
		if err != nil {
			_ = sb.RemoveInterface(ep.ID)
		}
	}()
	ep.SandboxID, ep.IfName, ep.Gateway, ep.GatewayV6, ep.Routes = sb.ID(), rec.IfName, se.Gateway, se.GatewayV6, se.Routes
	if len(ep.Ports) > 0 {
		resp, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: np, Endpoint: epProto(ep)})
		if err != nil {
			return fmt.Errorf("driver %q publishing ports of endpoint %s: %w", n.Driver, short(ep.ID), err)
		}
		defer func() {
			if err != nil {
				_ = d.RevokeExternalConnectivity(context.WithoutCancel(ctx), &pb.ExternalConnectivityRequest{Network: np, Endpoint: epProto(ep)})
			}
		}()
		ep.External = true
		if bs := resp.GetPortBindings(); len(bs) > 0 {
			ep.Ports = ep.Ports[:0]
			for _, b := range bs {
				hip, _ := netip.ParseAddr(b.GetHostIp())
				ep.Ports = append(ep.Ports, PortBinding{Proto: b.GetProto(), ContainerPort: uint16(b.GetContainerPort()), HostIP: hip, HostPort: uint16(b.GetHostPort())})
			}
		}
	}
	joined := *ep
	if err = c.updateEndpoint(ctx, ep.NetworkID, ep.ID, func(cur *Endpoint) error {
		cur.SandboxID, cur.IfName, cur.Gateway, cur.GatewayV6, cur.Routes = joined.SandboxID, joined.IfName, joined.Gateway, joined.GatewayV6, joined.Routes
		cur.External, cur.Ports = joined.External, joined.Ports
		*ep = *cur
		return nil
	}); err != nil {
		return err
	}
	c.names.add(n, ep, sb.Options().Hostname)
	c.refreshDNS(op)
	return sb.WriteFiles()
}

// leave detaches an endpoint from a sandbox: external connectivity
// revoked, the driver's Leave, the interface out of the namespace (unless
// the namespace is going away: then the kernel removes it), the record
// updated.
func (c *Controller) leave(ctx context.Context, op *sandboxOp, netID, epID string, dying bool) error {
	n, _, err := c.network(ctx, netID)
	if err != nil {
		return err
	}
	var ep Endpoint
	if _, err := c.kv.get(ctx, endpointKey(netID, epID), &ep); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			op.sb.Forget(epID)
			return nil
		}
		return err
	}
	d, _, err := c.driver(n.Driver)
	if err != nil {
		return err
	}
	np, epp := netProto(n), epProto(&ep)
	if ep.External {
		if err := d.RevokeExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: np, Endpoint: epp}); err != nil {
			return fmt.Errorf("driver %q revoking ports of endpoint %s: %w", n.Driver, short(ep.ID), err)
		}
	}
	if key := op.sb.Key(); key != "" {
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: np, Endpoint: epp, SandboxKey: key}); err != nil {
			return fmt.Errorf("driver %q: endpoint %s leaving %s: %w", n.Driver, short(ep.ID), op.sb, err)
		}
	}
	c.names.remove(epID)
	if dying {
		op.sb.Forget(epID)
	} else if err := op.sb.RemoveInterface(epID); err != nil {
		return err
	}
	c.refreshDNS(op)
	if err := c.updateEndpoint(ctx, netID, epID, func(cur *Endpoint) error {
		cur.SandboxID, cur.IfName, cur.External = "", "", false
		return nil
	}); err != nil {
		return err
	}
	if dying {
		return nil
	}
	return op.sb.WriteFiles()
}

// removeEndpoint is leave then delete.
func (c *Controller) removeEndpoint(ctx context.Context, op *sandboxOp, netID, epID string, dying bool) error {
	if err := c.leave(ctx, op, netID, epID, dying); err != nil {
		return err
	}
	return c.deleteEndpoint(ctx, netID, epID)
}

// Disconnect detaches a container's sandbox from a network and deletes the
// endpoint.
func (c *Controller) Disconnect(ctx context.Context, netRef, container string) error {
	op, err := c.byContainerID(container)
	if err != nil {
		return err
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	n, _, err := c.network(ctx, netRef)
	if err != nil {
		return err
	}
	for _, e := range op.sb.Endpoints() {
		if e.NetworkID == n.ID {
			return c.removeEndpoint(ctx, op, n.ID, e.ID, false)
		}
	}
	return errorf(sdk.ErrNotFound, "container %s is not connected to network %s", container, n.Name)
}

// parsePorts reads publish specs [HOSTIP:][HOSTPORT:]PORT[/tcp|udp].
func parsePorts(specs []string) ([]PortBinding, error) {
	var out []PortBinding
	for _, s := range specs {
		b := PortBinding{Proto: "tcp"}
		spec := s
		if i := strings.LastIndexByte(spec, '/'); i >= 0 {
			b.Proto, spec = strings.ToLower(spec[i+1:]), spec[:i]
			if b.Proto != "tcp" && b.Proto != "udp" {
				return nil, errorf(sdk.ErrInvalid, "publish: %q: protocol must be tcp or udp", s)
			}
		}
		parts := strings.Split(spec, ":")
		if strings.HasPrefix(spec, "[") { // [v6]:host:container
			end := strings.Index(spec, "]")
			if end < 0 {
				return nil, errorf(sdk.ErrInvalid, "publish: %q: unclosed [", s)
			}
			parts = append([]string{spec[1:end]}, strings.Split(strings.TrimPrefix(spec[end+1:], ":"), ":")...)
		}
		port := func(p string) (uint16, error) {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil || n == 0 {
				return 0, errorf(sdk.ErrInvalid, "publish: %q: %q is not a port number", s, p)
			}
			return uint16(n), nil
		}
		var err error
		switch len(parts) {
		case 1:
			b.ContainerPort, err = port(parts[0])
		case 2:
			if b.HostPort, err = port(parts[0]); err == nil {
				b.ContainerPort, err = port(parts[1])
			}
		case 3:
			if b.HostIP, err = netip.ParseAddr(parts[0]); err != nil {
				return nil, errorf(sdk.ErrInvalid, "publish: %q: %q is not an IP address", s, parts[0])
			}
			if parts[1] != "" {
				if b.HostPort, err = port(parts[1]); err != nil {
					return nil, err
				}
			}
			b.ContainerPort, err = port(parts[2])
		default:
			return nil, errorf(sdk.ErrInvalid, "publish: %q is not [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]", s)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}
