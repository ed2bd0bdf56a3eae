package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Connect attaches a container's sandbox to a network: it creates an
// endpoint (addresses from IPAM when the driver needs them) and joins it
// to the sandbox. A failure leaves no endpoint, address, link or rule
// behind.
func (c *Controller) Connect(ctx context.Context, netRef string, req Connect) (*Endpoint, error) {
	c.quiet.Enter()
	defer c.quiet.Leave()
	if err := req.Validate(); err != nil {
		return nil, err
	}
	args, err := parseConnect(req)
	if err != nil {
		return nil, err
	}
	op, err := c.byContainerID(req.Container)
	if err != nil {
		return nil, err
	}
	if err := c.lockLive(op); err != nil {
		return nil, err
	}
	defer op.mu.Unlock()
	if err := c.reopen(op); err != nil {
		return nil, err
	}
	ep, err := c.connectAny(ctx, op, netRef, args, nil)
	if err == nil {
		if e, ok := op.sb.Endpoint(ep.ID); ok {
			c.announceConnect(op, e)
		}
	}
	return answer(op, ep), err
}

// connectArgs is a Connect with its addresses and ports parsed.
type connectArgs struct {
	req     Connect
	ports   []PortBinding
	ip, ip6 netip.Addr
	ifname  string // empty: the sandbox's next ethN
	mac     string // normalized; empty: the driver's
}

// maxDriverOpts bounds an endpoint's driver options.
const maxDriverOpts = 64

// parseConnect checks a Connect's name, aliases, ports, driver options
// and addresses.
// Errors start with the field's name.
func parseConnect(req Connect) (a connectArgs, err error) {
	a.req = req
	if req.Name != "" && !validName.MatchString(req.Name) {
		return a, errorf(sdk.ErrInvalid, "name: %q is not a valid name (letters, digits, _ . -; up to 128)", clip(req.Name))
	}
	for i, al := range req.Aliases {
		if err := sandbox.CheckDNSName(fmt.Sprintf("aliases[%d]", i), al, false); err != nil {
			return a, err
		}
	}
	if a.ports, err = parsePorts(req.Publish); err != nil {
		return a, err
	}
	if err := checkKeyValues("driver_opts", req.DriverOpts, maxDriverOpts); err != nil {
		return a, err
	}
	if a.ip, err = parseAddr("ip", req.IP); err != nil {
		return a, err
	}
	if a.ip6, err = parseAddr("ipv6", req.IPv6); err != nil {
		return a, err
	}
	if req.Interface != "" {
		if err := osl.ValidLinkName(req.Interface); err != nil || req.Interface == "lo" {
			return a, errorf(sdk.ErrInvalid, "interface: %q is not a usable interface name (1-15 characters, no '/', ':' or white space, not lo)", req.Interface)
		}
		a.ifname = req.Interface
	}
	if req.MAC != "" {
		mac, err := net.ParseMAC(req.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 != 0 || string(mac) == "\x00\x00\x00\x00\x00\x00" {
			return a, errorf(sdk.ErrInvalid, "mac: %q is not a unicast Ethernet address (nor all zeros, which the kernel refuses)", req.MAC)
		}
		a.mac = mac.String()
	}
	return a, nil
}

// joinVia is how a sandbox created with its networks joins the first one:
// its record (ops) goes to the store in the endpoint's transaction, which
// starts while its namespace is still being made; ready waits for the
// namespace and says where it is (still at a scratch path). A sandbox
// created without networks joins its first with prep alone (prep.go):
// no ops, and its namespace is there (ready nil).
type joinVia struct {
	ops   []*pb.TxnOp
	ready func() (key string, err error)
	// prep, unless nil, is the attach a spare namespace came prepared
	// with; the first attach to its network claims it, once.
	prep *preparedAttach
}

// connectAny is connect from the cache first, and again from the store if
// the cached network record was out of date. op.mu is held.
func (c *Controller) connectAny(ctx context.Context, op *sandboxOp, netRef string, a connectArgs, via *joinVia) (*Endpoint, error) {
	ep, err := c.connect(ctx, op, netRef, a, true, via)
	if errors.Is(err, errStale) {
		// The cached network record was out of date: start over from
		// the store.
		ep, err = c.connect(ctx, op, netRef, a, false, via)
	}
	return ep, err
}

// errStale says a cached network record turned out to be out of date.
var errStale = errors.New("cached network record is out of date")

// connect is Connect with op.mu held. With useCache, the network may come
// from the cache; the endpoint's transaction checks it, and errStale says
// to start over without the cache.
func (c *Controller) connect(ctx context.Context, op *sandboxOp, netRef string, a connectArgs, useCache bool, via *joinVia) (*Endpoint, error) {
	req := a.req
	var n *Network
	var nIdx uint64
	var cached bool
	var err error
	if useCache {
		n, nIdx, cached, err = c.cachedNetwork(ctx, netRef)
	} else {
		n, nIdx, err = c.network(ctx, netRef)
	}
	if err != nil {
		return nil, err
	}
	for _, e := range op.sb.Endpoints() {
		if e.NetworkID == n.ID {
			return nil, errorf(sdk.ErrExists, "container %s is already connected to network %s", req.Container, n.Name)
		}
		if a.ifname != "" && e.IfName == a.ifname {
			return nil, errorf(sdk.ErrExists, "interface: container %s already has %s (network %s)", req.Container, a.ifname, e.NetworkName)
		}
	}
	d, caps, err := c.driver(ctx, n.Driver)
	if err != nil {
		return nil, err
	}
	if err := checkConnectArgs(n, caps, a); err != nil {
		return nil, err
	}
	if err := c.ensureOnHost(ctx, d, n); err != nil {
		return nil, err
	}
	switch hostMode := op.sb.Options().HostMode; {
	case caps.GetUsesHostNamespace() && !hostMode:
		return nil, errorf(sdk.ErrForbidden, "network %s uses the host's namespace: container %s needs a host-mode sandbox (sandbox create --host)", n.Name, req.Container)
	case hostMode && !caps.GetUsesHostNamespace():
		return nil, errorf(sdk.ErrForbidden, "container %s shares the host's namespace and cannot join network %s", req.Container, n.Name)
	}
	name, release, err := c.endpointName(op, n, req)
	if err != nil {
		return nil, err
	}
	defer release() // the attach has indexed it, or failed
	via, claimed := c.settlePrep(op, n, a, via)
	id := newID()
	if via != nil && via.prep != nil && via.prep.netID == n.ID {
		id = via.prep.epID // the ID the driver prepared the attach for
	}
	ep := &Endpoint{
		ID: id, Name: name, NetworkID: n.ID, HostID: c.cfg.HostID, Aliases: req.Aliases, Priority: req.Priority,
		Ports: a.ports, IfName: a.ifname, MAC: a.mac, DriverOpts: req.DriverOpts, Created: time.Now().UTC(),
	}
	if n.Scope == scopeGlobal && c.cfg.AdvertiseAddr.IsValid() {
		ep.VTEP = c.cfg.AdvertiseAddr.String()
	}
	if op.sb.Namespace() == nil && via == nil {
		// An external key not set yet: the record alone says the
		// endpoint belongs to the sandbox; SetKey does the rest.
		ep.SandboxID = op.sb.ID()
		if _, err := c.createEndpoint(ctx, ep, n, nIdx, cached, a.ip, a.ip6); err != nil {
			return nil, err
		}
		op.sb.Restore(sbEndpoint(n, ep))
		return ep, nil
	}
	if err := c.attach(ctx, op, n, nIdx, cached, ep, a.ip, a.ip6, via); err != nil {
		if claimed != nil {
			// It may have failed before the driver took the pair (an
			// address already taken): the prepared interface must not
			// keep the first interface's name from the next connect.
			c.retirePrepared(op, claimed)
		}
		return nil, err
	}
	return ep, nil
}

// endpointName is the name of op's endpoint on n: the connect's, else the
// container's, as Docker's is — what other containers (on every host)
// resolve and what PTR answers; the sandbox's hostname is a name of its
// own beside it (nameIndex.add). Another endpoint's name is refused, and
// so is one a connect under way holds: the name is held (release lets
// it go) until the attach has indexed it.
func (c *Controller) endpointName(op *sandboxOp, n *Network, req Connect) (string, func(), error) {
	name := req.Name
	if name == "" {
		name = req.Container
	}
	// A CNI runtime's name (K8S_POD_NAME) repeats across Kubernetes
	// namespaces and cannot be chosen otherwise: shared, as an alias is.
	if op.front == "cni" {
		return name, func() {}, nil
	}
	other, release, ok := c.names.hold(n.ID, name, "")
	if !ok {
		return "", nil, nameTaken(n.Name, name, other, req.Name != "")
	}
	return name, release, nil
}

// nameTaken refuses, with sdk.ErrExists, an endpoint name that another
// endpoint of network netName has (owner, its ID) or that a connect or
// rename under way holds (owner ""), as libnetwork does: the name is what
// its DNS answers with one container and PTR gives back. given says the
// name was asked for (else it is the container's). Endpoints are known
// by name once joined with an address: on a global network, those of
// every host.
func nameTaken(netName, name, owner string, given bool) error {
	who := short(owner)
	if owner == "" {
		who = "being connected"
	}
	if given {
		return errorf(sdk.ErrExists, "name: network %s already has an endpoint named %s (%s)", netName, name, who)
	}
	return errorf(sdk.ErrExists, "container %s: network %s already has an endpoint named %s (%s); connect it with another name", name, netName, name, who)
}

// outcomeUnknown tells a failure after which the store may or may not
// have applied the write (it stopped answering mid-call, or the caller
// went away while it was in flight).
func outcomeUnknown(err error) bool {
	return errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrTimeout) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// endpointOps allocates ep's addresses (in memory, pending until the
// caller's transaction commits or fails) and returns the operations that
// store ep with them, checking that network n, read at index nIdx, was
// not marked in-delete since. The caller calls Done on every allocation.
func (c *Controller) endpointOps(ctx context.Context, ep *Endpoint, n *Network, nIdx uint64, ip, ip6 netip.Addr) ([]*pb.TxnOp, []*ipam.Allocation, error) {
	if n.InDelete {
		return nil, nil, errorf(sdk.ErrConflict, "network %s is being deleted", n.Name)
	}
	_, caps, err := c.driver(ctx, n.Driver)
	if err != nil {
		return nil, nil, err
	}
	ops := []*pb.TxnOp{check(networkKey(n.ID), nIdx)}
	var allocs []*ipam.Allocation
	ep.Address, ep.AddressV6, ep.Gateway, ep.GatewayV6 = netip.Prefix{}, netip.Prefix{}, netip.Addr{}, netip.Addr{}
	if caps.GetNeedsAddresses() {
		if len(n.IPv4) == 0 && len(n.IPv6) == 0 {
			return nil, nil, errorf(sdk.ErrInvalid, "network %s has no address pool", n.Name)
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
				for _, a := range allocs {
					a.Done(false)
				}
				return nil, nil, fmt.Errorf("network %s: %w", n.Name, err)
			}
			allocs = append(allocs, a)
			ops = append(ops, a.Ops...)
			*f.addr = a.Addr
			if !n.Internal {
				*f.gw = f.pools[0].Gateway
			}
		}
		if ep.MAC == "" { // a MAC the connect asked for stays
			ep.MAC = macFor(ep.Address.Addr())
		}
	} else if ip.IsValid() || ip6.IsValid() {
		return nil, nil, errorf(sdk.ErrInvalid, "ip: driver %q of network %s does not use addresses", n.Driver, n.Name)
	}
	return ops, allocs, nil
}

// createEndpoint allocates the endpoint's addresses and writes it, in one
// transaction that also checks that network n (read at index nIdx) was not
// marked in-delete since, then asks the driver to create it. It returns
// the index of the endpoint's record. With cached, n came from the cache:
// a failed check then gives errStale rather than a retry.
func (c *Controller) createEndpoint(ctx context.Context, ep *Endpoint, n *Network, nIdx uint64, cached bool, ip, ip6 netip.Addr) (uint64, error) {
	var epIdx uint64
	first := true
	err := retry(ctx, "creating endpoint", func() error {
		if !first {
			var err error
			if n, nIdx, err = c.freshNetwork(ctx, ep.NetworkID, n.Name, cached); err != nil {
				return err
			}
		}
		first = false
		ops, allocs, err := c.endpointOps(ctx, ep, n, nIdx, ip, ip6)
		if err != nil {
			return err
		}
		ops = append(ops, cas(endpointKey(n.ID, ep.ID), 0, ep))
		res, err := c.kv.txnResults(ctx, ops...)
		for _, a := range allocs {
			a.Done(err == nil)
		}
		if err != nil {
			return err
		}
		epIdx = indexOf(res, endpointKey(n.ID, ep.ID))
		c.kv.eps.put(endpointKey(n.ID, ep.ID), ep, epIdx)
		return nil
	})
	if err != nil {
		if outcomeUnknown(err) {
			// The record and its addresses may land once the store
			// answers again: make sure they go.
			c.cleanupLater("endpoint "+short(ep.ID), func(ctx context.Context) error { return c.dropEndpoint(ctx, ep) })
		}
		return 0, err
	}
	d, _, err := c.driver(ctx, n.Driver)
	if err == nil {
		var resp *pb.CreateEndpointResponse
		if resp, err = d.CreateEndpoint(finishing(ctx), &pb.CreateEndpointRequest{Network: c.netProto(n), Endpoint: epProto(ep)}); err == nil {
			epIdx, err = c.adoptDriverFill(ctx, ep, epIdx, resp.GetInterface())
		}
	}
	if err != nil {
		if rerr := c.dropEndpoint(ctx, ep); rerr != nil {
			c.log.Warn("rolling back endpoint record; retrying in the background", "endpoint", short(ep.ID), "error", rerr)
			c.cleanupLater("endpoint "+short(ep.ID), func(ctx context.Context) error { return c.dropEndpoint(ctx, ep) })
		}
		return 0, fmt.Errorf("driver %q creating endpoint on network %s: %w", n.Driver, n.Name, err)
	}
	return epIdx, nil
}

// freshNetwork reads network id (named name) again after a lost race:
// errStale when the caller's copy came from the cache (it starts over
// without it). A network deleted meanwhile is named by its name.
func (c *Controller) freshNetwork(ctx context.Context, id, name string, cached bool) (*Network, uint64, error) {
	if cached {
		return nil, 0, errStale
	}
	n, idx, err := c.networkByID(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, 0, errorf(sdk.ErrNotFound, "network %q not found (deleted meanwhile)", name)
	}
	return n, idx, err
}

// attach creates endpoint ep on network n (read at index nIdx) and joins
// it to the sandbox of op, which has its namespace. Its record — already
// naming the sandbox and the interface it will have — goes to the store
// with its addresses in one transaction while the driver and the
// namespace do their work, so the store's round trip costs the attach
// nothing; a failure on either side undoes both. Should the agent stop
// in between, Start removes an endpoint whose interface is missing from
// its sandbox and an interface no endpoint owns.
func (c *Controller) attach(ctx context.Context, op *sandboxOp, n *Network, nIdx uint64, cached bool, ep *Endpoint, ip, ip6 netip.Addr, via *joinVia) error {
	first := true
	asked := ep.clone()
	return retry(ctx, "creating endpoint", func() error {
		*ep = asked.clone()
		if !first {
			var err error
			if n, nIdx, err = c.freshNetwork(ctx, ep.NetworkID, n.Name, cached); err != nil {
				return err
			}
		}
		first = false
		return c.attachOnce(ctx, op, n, nIdx, ep, ip, ip6, via)
	})
}

// adoptDriverFill records what the driver filled in (a MAC; addresses for
// drivers that pick their own) in ep, stored at index idx, and returns
// its index afterwards.
func (c *Controller) adoptDriverFill(ctx context.Context, ep *Endpoint, idx uint64, fill *pb.EndpointInterface) (uint64, error) {
	if fill == nil || (fill.GetMac() == "" || fill.GetMac() == ep.MAC) && fill.GetAddress() == "" && fill.GetAddressV6() == "" {
		return idx, nil
	}
	return c.updateEndpointAt(ctx, ep.NetworkID, ep.ID, idx, ep, func(cur *Endpoint) error {
		if err := adoptFill(cur, fill); err != nil {
			return err
		}
		*ep = *cur
		return nil
	})
}

// adoptFill takes into ep what the driver filled in (a MAC; an address
// for drivers that pick their own).
func adoptFill(ep *Endpoint, fill *pb.EndpointInterface) error {
	if m := fill.GetMac(); m != "" {
		if _, err := net.ParseMAC(m); err != nil {
			return fmt.Errorf("driver gave a bad MAC %q: %w", m, sdk.ErrInvalid)
		}
		ep.MAC = m
	}
	if a := fill.GetAddress(); a != "" && !ep.Address.IsValid() {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("driver gave a bad address %q: %w", a, sdk.ErrInvalid)
		}
		ep.Address = p
	}
	return nil
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
	_, err := c.updateEndpointAt(ctx, netID, id, 0, nil, fn)
	return err
}

// updateEndpointAt is updateEndpoint for a caller that knows the record:
// stored is its content at index idx (0: unknown). The first attempt then
// applies fn to a copy of stored without reading the record back; if the
// record has changed since, it reads and retries as updateEndpoint does.
// It returns the record's new index.
func (c *Controller) updateEndpointAt(ctx context.Context, netID, id string, idx uint64, stored *Endpoint, fn func(*Endpoint) error) (uint64, error) {
	key := endpointKey(netID, id)
	var newIdx uint64
	err := retry(ctx, "updating endpoint "+short(id), func() error {
		var cur Endpoint
		if idx != 0 && stored != nil {
			cur = stored.clone()
		} else {
			var err error
			if idx, err = c.kv.get(ctx, key, &cur); err != nil {
				return err
			}
		}
		if err := fn(&cur); err != nil {
			return err
		}
		res, err := c.kv.txnResults(ctx, cas(key, idx, &cur))
		if err != nil {
			idx = 0 // read it back next time
			c.kv.eps.forget(key)
			return err
		}
		newIdx = indexOf(res, key)
		c.kv.eps.put(key, &cur, newIdx)
		return nil
	})
	return newIdx, err
}

// endpointRecord returns an endpoint's record and index, from the cache
// when it has them.
func (c *Controller) endpointRecord(ctx context.Context, netID, id string) (Endpoint, uint64, error) {
	key := endpointKey(netID, id)
	if ep, idx, ok := c.kv.eps.get(key); ok {
		return ep, idx, nil
	}
	var ep Endpoint
	idx, err := c.kv.get(ctx, key, &ep)
	if err != nil {
		return Endpoint{}, 0, err
	}
	c.kv.eps.put(key, &ep, idx)
	return ep, idx, nil
}

// clone returns a copy of ep that shares no slice with it.
func (ep *Endpoint) clone() Endpoint {
	cp := *ep
	cp.Routes = slices.Clone(ep.Routes)
	cp.Aliases = slices.Clone(ep.Aliases)
	cp.Ports = slices.Clone(ep.Ports)
	return cp
}

// dropEndpoint deletes an endpoint's record and releases its addresses in
// one transaction.
func (c *Controller) dropEndpoint(ctx context.Context, ep *Endpoint) error {
	n, err := c.stableNetwork(ctx, ep.NetworkID)
	if err != nil {
		return err
	}
	return c.dropEndpointAt(ctx, n, ep.NetworkID, ep.ID, 0, nil)
}

// dropEndpointAt is dropEndpoint for a caller that knows the record:
// stored is its content at index idx (0: unknown), and the first attempt
// deletes it without reading it back.
func (c *Controller) dropEndpointAt(ctx context.Context, n *Network, netID, id string, idx uint64, stored *Endpoint) error {
	return c.dropEndpointAtWith(ctx, n, netID, id, idx, stored, nil)
}

// dropEndpointAtWith is dropEndpointAt with extra ops (checks) in the
// transaction.
func (c *Controller) dropEndpointAtWith(ctx context.Context, n *Network, netID, id string, idx uint64, stored *Endpoint, extra []*pb.TxnOp) error {
	key := endpointKey(netID, id)
	return retry(ctx, "deleting endpoint "+short(id), func() error {
		var cur Endpoint
		if idx != 0 && stored != nil {
			cur = *stored
		} else {
			var err error
			idx, err = c.kv.get(ctx, key, &cur)
			if errors.Is(err, sdk.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		ops := append([]*pb.TxnOp{delCAS(key, idx)}, extra...)
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
		err := c.kv.txn(ctx, ops...)
		c.kv.eps.forget(key)
		if err != nil {
			idx = 0 // read it back next time
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
	n, err := c.stableNetwork(ctx, netID)
	if err != nil {
		return err
	}
	ep, idx, err := c.endpointRecord(ctx, netID, id)
	if err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		return err
	}
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: c.netProto(n), Endpoint: epProto(&ep)}); err != nil {
		return fmt.Errorf("driver %q deleting endpoint %s: %w", n.Driver, short(id), err)
	}
	return c.dropEndpointAt(ctx, n, netID, id, idx, &ep)
}

// rejoin joins a stored endpoint again (SetKey, Refresh).
func (c *Controller) rejoin(ctx context.Context, op *sandboxOp, netID, epID string) error {
	n, err := c.stableNetwork(ctx, netID)
	if err != nil {
		return err
	}
	ep, idx, err := c.endpointRecord(ctx, netID, epID)
	if err != nil {
		return err
	}
	return c.joinStored(ctx, op, n, &ep, idx)
}

func sbEndpoint(n *Network, ep *Endpoint) sandbox.Endpoint {
	mac, _ := net.ParseMAC(ep.MAC)
	return sandbox.Endpoint{
		ID: ep.ID, Name: ep.Name, NetworkID: n.ID, NetworkName: n.Name, IfName: ep.IfName, MAC: mac,
		Addr: ep.Address, AddrV6: ep.AddressV6, Gateway: ep.Gateway, GatewayV6: ep.GatewayV6,
		Routes: ep.Routes, Priority: ep.Priority, Internal: n.Internal, Aliases: ep.Aliases,
		Resolver: ep.Resolver,
	}
}

// joinStored joins an endpoint stored at index idx (0: unknown) to the
// sandbox of op, and leaves ep as stored afterwards. Undone on failure.
func (c *Controller) joinStored(ctx context.Context, op *sandboxOp, n *Network, ep *Endpoint, idx uint64) (err error) {
	u := newUndo(c.log, "endpoint", short(ep.ID), "network", n.Name)
	defer u.RunIf(ctx, &err)
	stored := ep.clone()
	if err := c.joinSandbox(ctx, u, op, n, ep); err != nil {
		return err
	}
	joined := ep.clone()
	var final Endpoint
	updated := start(func() (uint64, error) {
		return c.updateEndpointAt(ctx, ep.NetworkID, ep.ID, idx, &stored, func(cur *Endpoint) error {
			cur.SandboxID, cur.IfName, cur.Gateway, cur.GatewayV6, cur.Routes = joined.SandboxID, joined.IfName, joined.Gateway, joined.GatewayV6, joined.Routes
			cur.External, cur.Ports = joined.External, joined.Ports
			final = cur.clone()
			return nil
		})
	})
	// While the store commits the join, the name index, the resolver and
	// the resolution files take the endpoint in. None of them is state the
	// store vouches for: if the commit fails, they follow the interface
	// out again.
	u.Push("names", c.announce(op, n, &joined))
	if err := updated.Err(); err != nil {
		return err
	}
	*ep = final
	return nil
}

// joinSandbox is the work of a join outside the store: the driver's Join,
// then setupJoin. ep takes what the join decided (sandbox, interface name,
// gateways, routes, ports); u takes what undoes it.
func (c *Controller) joinSandbox(ctx context.Context, u *undoStack, op *sandboxOp, n *Network, ep *Endpoint) error {
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	ifname := ep.IfName // the name a connect asked for, before an external key was set
	if ifname == "" {
		ifname = op.sb.NextIfName(sandbox.DefaultIfPrefix)
	}
	key := op.sb.Key()
	resp, err := d.Join(finishing(ctx), &pb.JoinRequest{Network: c.netProto(n), Endpoint: epProto(ep), SandboxKey: key, Ifname: ifname})
	if err != nil {
		return fmt.Errorf("driver %q joining endpoint %s to %s: %w", n.Driver, short(ep.ID), op.sb, err)
	}
	u.Push("driver join", c.leaveDriver(d, n, ep, key))
	// A stored name is one a connect asked for before an external key
	// was set (a leave clears it).
	return c.setupJoin(ctx, u, op, n, d, ep, resp, ep.IfName)
}

// leaveDriver returns the undo of the driver's side of a join.
func (c *Controller) leaveDriver(d driver.Driver, n *Network, ep *Endpoint, key string) func(context.Context) error {
	return func(ctx context.Context) error {
		return d.Leave(ctx, &pb.LeaveRequest{Network: c.netProto(n), Endpoint: epProto(ep), SandboxKey: key})
	}
}

// setupJoin takes an endpoint the driver has joined (resp is its answer)
// into the sandbox: the interface into the namespace and, beside it, the
// driver publishing the ports; u takes what undoes each (the caller has
// pushed the driver's leave). want is the interface name the connect
// asked for, or empty for the next free one.
func (c *Controller) setupJoin(ctx context.Context, u *undoStack, op *sandboxOp, n *Network, d driver.Driver, ep *Endpoint, resp *pb.JoinResponse, want string) error {
	sb := op.sb
	np := c.netProto(n)
	se, err := joinedEndpoint(n, ep, resp, want)
	if err != nil {
		return err
	}
	se.HostIfName = resp.GetHostInterface()
	// The driver publishes the ports (on the host side) while the sandbox
	// side is set up.
	var publishing *async[*pb.ExternalConnectivityResponse]
	if len(ep.Ports) > 0 {
		preq := &pb.ExternalConnectivityRequest{Network: np, Endpoint: epProto(ep)}
		publishing = start(func() (*pb.ExternalConnectivityResponse, error) {
			return d.ProgramExternalConnectivity(finishing(ctx), preq)
		})
	}
	rec, err := sb.AddInterface(ctx, se, c.host, resp.GetSrcName(), resp.GetInSandbox(), resp.GetDstPrefix())
	if err == nil {
		u.Push("interface", func(context.Context) error {
			err := sb.RemoveInterface(ep.ID)
			// Gone from the sandbox now: the resolver of a sandbox
			// left with no addressed endpoint stops (the names undo
			// ran before, while the endpoint was still there).
			c.refreshDNS(op)
			return err
		})
	} else {
		err = fmt.Errorf("setting up endpoint %s in %s: %w", short(ep.ID), sb, err)
	}
	var pub *pb.ExternalConnectivityResponse
	if publishing != nil {
		var perr error
		if pub, perr = publishing.Wait(); perr == nil {
			u.Push("published ports", func(ctx context.Context) error {
				return d.RevokeExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: np, Endpoint: epProto(ep)})
			})
		} else if err == nil {
			err = fmt.Errorf("driver %q publishing ports of endpoint %s: %w", n.Driver, short(ep.ID), perr)
		}
	}
	if err != nil {
		return err
	}
	ep.SandboxID, ep.IfName, ep.Gateway, ep.GatewayV6, ep.Routes = sb.ID(), rec.IfName, se.Gateway, se.GatewayV6, se.Routes
	if publishing != nil {
		ep.External = true
		if bound := boundPorts(pub); len(bound) > 0 {
			ep.Ports = bound
		}
	}
	return nil
}

// joinedEndpoint is ep as the sandbox takes it in, with the routes and
// gateways of the driver's Join answer, and the interface name asked for
// (want), or none: AddInterface then names it.
func joinedEndpoint(n *Network, ep *Endpoint, resp *pb.JoinResponse, want string) (sandbox.Endpoint, error) {
	se := sbEndpoint(n, ep)
	se.IfName, se.Routes = want, nil
	for _, r := range resp.GetStaticRoutes() {
		dst, err := netip.ParsePrefix(r.GetDestination())
		if err != nil {
			return se, fmt.Errorf("driver %q gave a bad route %q: %w", n.Driver, r.GetDestination(), sdk.ErrInvalid)
		}
		hop, _ := netip.ParseAddr(r.GetNextHop())
		se.Routes = append(se.Routes, sandbox.Route{Dst: dst, NextHop: hop})
	}
	var err error
	if g := resp.GetGateway(); g != "" {
		if se.Gateway, err = netip.ParseAddr(g); err != nil {
			return se, fmt.Errorf("driver %q gave a bad gateway %q: %w", n.Driver, g, sdk.ErrInvalid)
		}
	} else if resp.GetSrcName() != "" {
		se.Gateway = netip.Addr{}
	}
	if g := resp.GetGatewayV6(); g != "" {
		if se.GatewayV6, err = netip.ParseAddr(g); err != nil {
			return se, fmt.Errorf("driver %q gave a bad IPv6 gateway %q: %w", n.Driver, g, sdk.ErrInvalid)
		}
	} else if resp.GetSrcName() != "" {
		se.GatewayV6 = netip.Addr{}
	}
	return se, nil
}

// announce has the name index, the resolver and the resolution files take
// a joined endpoint in; the returned undo takes it out of them again.
func (c *Controller) announce(op *sandboxOp, n *Network, ep *Endpoint) (undo func(context.Context) error) {
	c.names.add(n, ep, op.sb.Options().Hostname)
	c.refreshDNS(op)
	if err := op.sb.WriteFiles(); err != nil {
		c.log.Error("writing resolution files", "sandbox", short(op.sb.ID()), "error", err)
	}
	return func(context.Context) error {
		c.names.remove(ep.ID)
		c.refreshDNS(op)
		return op.sb.WriteFiles()
	}
}

// sandboxEndpoint reads an endpoint of the sandbox with its network and
// index. An endpoint already gone from the store is forgotten by the
// sandbox and the name index, and found is false.
func (c *Controller) sandboxEndpoint(ctx context.Context, op *sandboxOp, netID, epID string) (*Network, Endpoint, uint64, bool, error) {
	n, err := c.stableNetwork(ctx, netID)
	if err != nil {
		return nil, Endpoint{}, 0, false, err
	}
	ep, idx, err := c.endpointRecord(ctx, netID, epID)
	if errors.Is(err, sdk.ErrNotFound) {
		c.names.remove(epID)
		op.sb.Forget(epID)
		return nil, Endpoint{}, 0, false, nil
	}
	if err != nil {
		return nil, Endpoint{}, 0, false, err
	}
	return n, ep, idx, true, nil
}

// leave detaches an endpoint from a sandbox: external connectivity
// revoked, the driver's Leave, the interface out of service in the
// namespace (unless the namespace is going away: then the kernel removes
// it), the record updated.
func (c *Controller) leave(ctx context.Context, op *sandboxOp, netID, epID string, dying bool) error {
	n, ep, idx, found, err := c.sandboxEndpoint(ctx, op, netID, epID)
	if err != nil || !found {
		return err
	}
	if err := c.leaveStored(ctx, op, n, &ep, dying); err != nil {
		return err
	}
	if _, err := c.updateEndpointAt(ctx, netID, epID, idx, &ep, func(cur *Endpoint) error {
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

// leaveStored does the work of a leave for endpoint ep as stored, but
// leaves the record to its caller.
func (c *Controller) leaveStored(ctx context.Context, op *sandboxOp, n *Network, ep *Endpoint, dying bool) error {
	if err := c.driverLeave(ctx, op, n, ep); err != nil {
		return err
	}
	c.names.remove(ep.ID)
	if dying {
		op.sb.Forget(ep.ID)
	} else if err := op.sb.RemoveInterface(ep.ID); err != nil {
		return err
	}
	c.refreshDNS(op)
	return nil
}

// driverLeave is the driver's part of a leave: external connectivity
// revoked, then Leave.
func (c *Controller) driverLeave(ctx context.Context, op *sandboxOp, n *Network, ep *Endpoint) error {
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	np, epp := c.netProto(n), epProto(ep)
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
	return nil
}

// removeEndpoint is leave then delete, with one write to the store at the
// end: the record goes with its addresses. (Should the agent stop before
// that write, the endpoint is read back as joined; disconnecting or
// deleting the sandbox again finishes the job.)
func (c *Controller) removeEndpoint(ctx context.Context, op *sandboxOp, netID, epID string, dying bool) error {
	n, ep, idx, found, err := c.sandboxEndpoint(ctx, op, netID, epID)
	if err != nil || !found {
		return err
	}
	// The sandbox side goes out of service while the driver cuts the
	// endpoint off and deletes it: they touch different ends. A dying
	// sandbox's namespace goes with its interfaces, unless it is a
	// runtime's: there the interface leaves service, and frees its name,
	// before the delete answers (a CNI DEL; another plugin may make that
	// name next).
	c.names.remove(epID)
	retired := make(chan error, 1)
	if dying && !op.external {
		op.sb.Forget(epID)
		retired <- nil
	} else {
		go func() { retired <- op.sb.RemoveInterface(epID) }()
	}
	// The driver revokes, leaves and deletes in one round trip.
	d, _, err := c.driver(ctx, n.Driver)
	if err == nil {
		err = driver.Detach(ctx, d, &pb.DetachRequest{Network: c.netProto(n), Endpoint: epProto(&ep), SandboxKey: op.sb.Key(), RevokeExternal: ep.External})
		if err != nil {
			err = fmt.Errorf("driver %q detaching endpoint %s from %s: %w", n.Driver, short(epID), op.sb, err)
		}
	}
	err = errors.Join(err, <-retired)
	c.refreshDNS(op)
	if err == nil {
		err = c.dropEndpointAt(ctx, n, netID, epID, idx, &ep)
	}
	if err != nil {
		// The record still names the sandbox, and the sandbox keeps the
		// endpoint (its interface already gone): a retried disconnect
		// or delete, or the driver's replay, calls the driver again
		// (every call is idempotent) and drops the record then. Never
		// an endpoint that no sandbox holds.
		se := sbEndpoint(n, &ep)
		se.IfName, se.Leaving = "", true
		op.sb.Restore(se)
		return err
	}
	if dying {
		return nil
	}
	return op.sb.WriteFiles()
}

// wasAttachedAs says whether endpoint e, whose interface is not named
// ifname, is still the attachment under ifname: one whose removal failed
// part-way (Leaving) has lost its interface, and its record names the one
// it had; with its record gone too (the store applied the delete, its
// answer lost), it is the attachment being released.
func (c *Controller) wasAttachedAs(ctx context.Context, e sandbox.Endpoint, ifname string) (bool, error) {
	if !e.Leaving {
		return false, nil
	}
	ep, _, err := c.endpointRecord(ctx, e.NetworkID, e.ID)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return ep.IfName == ifname, nil
}

// releaseEndpoint removes endpoint e of a front's sandbox, as a release
// (Release, or a driver's replay finishing one that failed part-way): the
// ports a CNI container's endpoint published are handed over to another
// of its endpoints. op.mu is held.
func (c *Controller) releaseEndpoint(ctx context.Context, op *sandboxOp, e sandbox.Endpoint) error {
	var ports []PortBinding // a CNI container's, which another endpoint takes over
	if op.front == "cni" {
		if ep, _, err := c.endpointRecord(ctx, e.NetworkID, e.ID); err == nil {
			ports = ep.Ports
		}
	}
	if err := c.removeAnnounced(ctx, op, e); err != nil {
		return err
	}
	if len(ports) > 0 {
		c.handOverPorts(ctx, op, ports)
	}
	return nil
}

// Disconnect detaches a container's sandbox from a network and deletes the
// endpoint. It runs to its end (finishing).
func (c *Controller) Disconnect(ctx context.Context, netRef, container string) error {
	ctx = finishing(ctx)
	if err := checkContainerID("container", container); err != nil {
		return err
	}
	op, err := c.byContainerID(container)
	if err != nil {
		return err
	}
	if err := c.lockLive(op); err != nil {
		return err
	}
	defer op.mu.Unlock()
	return c.disconnect(ctx, op, netRef, container)
}

// Release is a runtime front's Disconnect (CNI DEL, GC): it detaches the
// container from the network and, when a front's sandbox has no endpoint
// left, deletes the sandbox too — never the runtime's namespace, only the
// sandbox's key. What is already gone (the sandbox, the network, the
// attachment) is no error: a runtime may release twice, or after a crash.
// An ifname other than "" releases only an attachment under that
// interface: CNI keys one by container, network and ifname, and the DEL
// of an ADD that failed because the container is on the network already
// (under another ifname) must leave that attachment. It runs to its end
// (finishing).
func (c *Controller) Release(ctx context.Context, netRef, container, ifname string) error {
	ctx = finishing(ctx)
	op, err := c.byContainerID(container)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	op.mu.Lock()
	if op.deleted {
		op.mu.Unlock()
		return nil
	}
	e, err := c.connectedTo(ctx, op, netRef, container)
	if err == nil && ifname != "" && e.IfName != ifname {
		mine, rerr := c.wasAttachedAs(ctx, e, ifname)
		if rerr != nil || !mine {
			op.mu.Unlock()
			return rerr // nil: not this attachment, the container's is another
		}
	}
	if err == nil {
		err = c.releaseEndpoint(ctx, op, e)
	}
	empty := len(op.sb.Endpoints()) == 0
	op.mu.Unlock()
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return err
	}
	if op.front == "" || !empty {
		return nil
	}
	// Only a release that left the sandbox empty deletes it; a connect
	// in between keeps it. Should another release (of a runtime that
	// runs DELs at once) be at it, that one decides: it too found the
	// sandbox empty.
	err = c.deleteSandboxUnless(ctx, op, func() bool { return len(op.sb.Endpoints()) > 0 }, c.announceDelete(""))
	if errors.Is(err, errDeleteInProgress) {
		return nil
	}
	return err
}

// disconnect is Disconnect with op.mu held.
func (c *Controller) disconnect(ctx context.Context, op *sandboxOp, netRef, container string) error {
	e, err := c.connectedTo(ctx, op, netRef, container)
	if err != nil {
		return err
	}
	return c.removeAnnounced(ctx, op, e)
}

// connectedTo is op's endpoint on network netRef (an ID or a name), or
// ErrNotFound. op.mu is held.
func (c *Controller) connectedTo(ctx context.Context, op *sandboxOp, netRef, container string) (sandbox.Endpoint, error) {
	// The sandbox knows its networks' IDs and names: a network with an
	// endpoint cannot go away, nor its name pass to another network.
	eps := op.sb.Endpoints()
	for _, match := range []func(sandbox.Endpoint) bool{
		func(e sandbox.Endpoint) bool { return e.NetworkID == netRef },
		func(e sandbox.Endpoint) bool { return e.NetworkName == netRef },
	} {
		for _, e := range eps {
			if match(e) {
				return e, nil
			}
		}
	}
	n, _, err := c.network(ctx, netRef)
	if err != nil {
		return sandbox.Endpoint{}, err
	}
	for _, e := range eps {
		if e.NetworkID == n.ID {
			return e, nil
		}
	}
	return sandbox.Endpoint{}, errorf(sdk.ErrNotFound, "container %s is not connected to network %s", container, n.Name)
}

// removeAnnounced is a disconnect's removeEndpoint of e, announced once
// it succeeded.
func (c *Controller) removeAnnounced(ctx context.Context, op *sandboxOp, e sandbox.Endpoint) error {
	if err := c.removeEndpoint(ctx, op, e.NetworkID, e.ID, false); err != nil {
		return err
	}
	c.announceDisconnect(op, e)
	return nil
}

// maxPublished bounds the ports one endpoint's publish specs expand to
// (a range is one binding per port, each a rule in the driver's table).
const maxPublished = 1024

// parsePorts reads publish specs
// [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp], as Docker's -p does: a
// range publishes each of its ports, a host range maps onto a container
// range of the same length, one port onto one port, and a host range
// onto one container port publishes it on a free port of the range.
func parsePorts(specs []string) ([]PortBinding, error) {
	var out []PortBinding
	for _, s := range specs {
		bs, err := parsePortSpec(s)
		if err != nil {
			return nil, err
		}
		if out = append(out, bs...); len(out) > maxPublished {
			return nil, errorf(sdk.ErrInvalid, "publish: %q: more than %d ports published in all", s, maxPublished)
		}
	}
	return out, nil
}

// parsePortSpec reads one publish spec (see parsePorts).
func parsePortSpec(s string) ([]PortBinding, error) {
	proto, spec := "tcp", s
	if i := strings.LastIndexByte(spec, '/'); i >= 0 {
		proto, spec = strings.ToLower(spec[i+1:]), spec[:i]
		if proto != "tcp" && proto != "udp" {
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
	var hostIP netip.Addr
	var host, ctr string
	switch len(parts) {
	case 1:
		ctr = parts[0]
	case 2:
		host, ctr = parts[0], parts[1]
	case 3:
		var err error
		if hostIP, err = netip.ParseAddr(parts[0]); err != nil {
			return nil, errorf(sdk.ErrInvalid, "publish: %q: %q is not an IP address", s, parts[0])
		}
		if hostIP.Zone() != "" {
			return nil, errorf(sdk.ErrInvalid, "publish: %q: host address %s has a zone; a port is published on an address without one", s, hostIP)
		}
		hostIP = hostIP.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
		host, ctr = parts[1], parts[2]
	default:
		return nil, errorf(sdk.ErrInvalid, "publish: %q is not [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]", s)
	}
	clo, chi, err := portRange(s, ctr)
	if err != nil {
		return nil, err
	}
	var hlo, hhi uint16
	if host != "" || len(parts) == 2 {
		if hlo, hhi, err = portRange(s, host); err != nil {
			return nil, err
		}
	}
	n := int(chi-clo) + 1
	switch {
	case hostIP.IsLoopback() && hostIP.Is6():
		return nil, errorf(sdk.ErrInvalid, "publish: %q: the kernel does not route IPv6 loopback traffic out of the host, so nothing sent to %s reaches a container; publish on all addresses (127.0.0.1 then works) or on another", s, hostIP)
	case n > maxPublished:
		return nil, errorf(sdk.ErrInvalid, "publish: %q: more than %d ports", s, maxPublished)
	case n == 1 && hhi > hlo:
		// One container port on any free port of the host range.
		return []PortBinding{{Proto: proto, HostIP: hostIP, ContainerPort: clo, HostPort: hlo, HostPortEnd: hhi}}, nil
	case hlo != 0 && int(hhi-hlo)+1 != n:
		return nil, errorf(sdk.ErrInvalid, "publish: %q: %d host ports for %d container ports; a host range maps onto a container range of the same length (8000-8002:80-82), or onto one port (8000-8010:80)", s, int(hhi-hlo)+1, n)
	}
	out := make([]PortBinding, n)
	for i := range out {
		out[i] = PortBinding{Proto: proto, HostIP: hostIP, ContainerPort: clo + uint16(i)}
		if hlo != 0 {
			out[i].HostPort = hlo + uint16(i)
		}
	}
	return out, nil
}

// portRange reads PORT or PORT-END of spec s.
func portRange(s, p string) (lo, hi uint16, err error) {
	if p == "" {
		return 0, 0, errorf(sdk.ErrInvalid, "publish: %q: a port is empty (write HOSTIP::PORT for a free host port)", s)
	}
	number := func(q string) (uint16, error) {
		n, err := strconv.ParseUint(q, 10, 16)
		if err != nil || n == 0 {
			return 0, errorf(sdk.ErrInvalid, "publish: %q: %q is not a port number (1-65535) or range of them (8000-8010)", s, p)
		}
		return uint16(n), nil
	}
	first, last, isRange := strings.Cut(p, "-")
	if lo, err = number(first); err != nil {
		return 0, 0, err
	}
	if hi = lo; isRange {
		if hi, err = number(last); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, errorf(sdk.ErrInvalid, "publish: %q: range %q ends before it starts", s, p)
		}
	}
	return lo, hi, nil
}
