package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// bridge is the driver. It keeps a cache of what the host told it
// (networks, endpoints) and a mirror of the published-port rules it
// programmed; the kernel is the state, and every call reconciles it.
//
// mu guards the maps and serialises every nftables change. Join and Leave
// take it only to read the cache: their netlink work runs unlocked, so
// attaches to different sandboxes proceed in parallel (the kernel's RTNL
// lock orders them). The slow part of a detach is the reaper's (see
// reaper_linux.go).
type bridge struct {
	sys  func() (*system, error) // kernel handles, opened on first use
	reap *reaper

	mu          sync.Mutex
	cfg         Config
	nets        map[string]*network // by network id
	bridgeIndex map[string]int      // ifindex of each network's bridge, by network id
	eps         map[string]*endpoint
	joined      map[string]bool         // endpoint id → has a veth pair; absent: unknown
	preparedOn  map[string]preparedPort // endpoint id → the port Prepare made, until a Join takes it
	hairpin     map[string]bool         // endpoint id → hairpin mode as last set; absent: unknown
	ports       map[string][]portRule   // published-port rules by endpoint tag
	portNames   map[string]string       // the endpoint's name by tag, for a port conflict's message
	portsLoaded bool                    // ports holds what a previous run left in the table
	nextPort    uint16
	// deleted are the networks DeleteNetwork removed, the most recent
	// 1024. A call that names one afterwards raced the network's delete
	// in the host (an attach or a spare's Prepare that read the network
	// before the delete marked it) and must not make it again: nothing
	// would delete its bridge and chains until the next agent start
	// (Collect). Only CreateNetwork brings such a network back. Network
	// IDs are never reused. Safe for concurrent use.
	deleted *lru.Cache[string, struct{}]
}

// system holds the driver's kernel handles, all in the driver's own
// network namespace (the host's).
type system struct {
	rt *rtnl           // hand-built requests on the attach path
	h  *netlink.Handle // everything else but conntrack (the reaper's)
	fw *firewall       // the nftables table
}

func newDriver() *bridge {
	deleted, _ := lru.New[string, struct{}](1024) // only a size below 1 fails
	return &bridge{
		deleted: deleted,
		sys: sync.OnceValues(func() (*system, error) {
			rt, err := newRtnl()
			if err != nil {
				return nil, err
			}
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return nil, fmt.Errorf("opening netlink handle: %w", err)
			}
			fw, err := newFirewall()
			if err != nil {
				return nil, err
			}
			return &system{rt: rt, h: h, fw: fw}, nil
		}),
		cfg:         defaultConfig(),
		nets:        map[string]*network{},
		bridgeIndex: map[string]int{},
		eps:         map[string]*endpoint{},
		joined:      map[string]bool{},
		preparedOn:  map[string]preparedPort{},
		hairpin:     map[string]bool{},
		ports:       map[string][]portRule{},
		portNames:   map[string]string{},
		reap:        newReaper(),
	}
}

// close finishes the reaper's pending work; main calls it once the host
// has stopped the plugin.
//
// With no network left it also removes the nftables table, should one be
// there (left by a run that stopped before its last network went).
func (b *bridge) close() {
	if err := b.reap.drain(); err != nil {
		b.reap.log.Error("deleting detached endpoints' leftovers", "error", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.nets) > 0 {
		return
	}
	s, err := b.sys()
	if err == nil {
		_, err = s.fw.dropIfUnused()
	}
	if err != nil {
		b.reap.log.Error("removing the unused nftables table", "error", err)
	}
}

func (b *bridge) Configure(_ context.Context, raw []byte) error {
	c, err := parse(raw)
	if err != nil {
		return err
	}
	b.mu.Lock()
	b.cfg = c
	b.mu.Unlock()
	return nil
}

func (b *bridge) GetCapabilities(ctx context.Context) (*pb.Capabilities, error) {
	return capabilities(ctx)
}

// CreateNetwork creates or repairs the network's bridge, its gateway
// addresses, sysctls and firewall rules. Creating a network again with
// the same configuration changes nothing; with another configuration it
// reprograms the network, except that its bridge name cannot change.
func (b *bridge) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := parseNetwork(b.cfg, req.GetNetwork())
	if err != nil {
		return err
	}
	b.deleted.Remove(n.id)
	return b.ensureNetwork(n)
}

// ensureNetwork reconciles network n and records it. Called with mu held.
func (b *bridge) ensureNetwork(n *network) error {
	for id, o := range b.nets {
		if id != n.id && o.bridge == n.bridge {
			return fmt.Errorf("network %s: bridge %s belongs to network %s: %w", n.id, n.bridge, id, sdk.ErrConflict)
		}
		if id == n.id && o.bridge != n.bridge {
			return fmt.Errorf("network %s exists with bridge %s, cannot move it to %s: %w", n.id, o.bridge, n.bridge, sdk.ErrConflict)
		}
	}
	s, err := b.sys()
	if err != nil {
		return err
	}
	idx, made, err := s.ensureBridge(n, b.cfg.EnableIPForwarding)
	if err == nil {
		if err = b.ensureFirewall(s); err == nil {
			err = s.fw.syncNetwork(n)
		}
	}
	if err != nil {
		if made {
			// A failed create leaves no bridge behind.
			if derr := s.rt.delLink(n.bridge); derr != nil {
				return fmt.Errorf("network %s: %w (and deleting its bridge %s: %v)", n.id, err, n.bridge, derr)
			}
		}
		return fmt.Errorf("network %s: %w", n.id, err)
	}
	b.nets[n.id] = n
	b.bridgeIndex[n.id] = idx
	return nil
}

// makeBridge creates n's bridge, marked as the driver's.
func (s *system) makeBridge(n *network) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
		Name: n.bridge, MTU: n.mtu, HardwareAddr: bridgeMAC(n.id), TxQLen: -1, Flags: net.FlagUp,
	}, MulticastSnooping: ptr(n.snoop)}
	if err := s.h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("creating bridge %s: %w", n.bridge, err)
	}
	link, err := s.h.LinkByName(n.bridge)
	if err != nil {
		return nil, fmt.Errorf("finding bridge %s: %w", n.bridge, err)
	}
	// The alias marks the bridge as the driver's, to delete with the
	// network; a bridge that existed before is only borrowed.
	if err := s.h.LinkSetAlias(link, bridgeAlias(n)); err != nil {
		_ = s.rt.delLink(n.bridge)
		return nil, fmt.Errorf("setting alias of %s: %w", n.bridge, err)
	}
	return link, nil
}

// ensureBridge creates or repairs n's bridge and returns its ifindex, and
// whether it made the bridge (which a failure after it should delete).
// With forward, it also turns on IP forwarding for the network's
// families.
func (s *system) ensureBridge(n *network, forward bool) (idx int, made bool, err error) {
	link, err := s.h.LinkByName(n.bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		if link, err = s.makeBridge(n); err != nil {
			return 0, false, err
		}
		made = true
	case err != nil:
		return 0, false, fmt.Errorf("finding bridge %s: %w", n.bridge, err)
	}
	if link.Type() != "bridge" {
		return 0, false, fmt.Errorf("option %s: %s exists and is a %s, not a bridge; name another (or a bridge) for the network: %w", optBridgeName, n.bridge, link.Type(), sdk.ErrConflict)
	}
	idx, err = s.setUpBridge(link, n, forward)
	return idx, made, err
}

// setUpBridge gives n's bridge its MTU, its gateways and the sysctls the
// network needs, and returns its ifindex.
func (s *system) setUpBridge(link netlink.Link, n *network, forward bool) (int, error) {
	if link.Attrs().MTU != n.mtu {
		if err := s.h.LinkSetMTU(link, n.mtu); err != nil {
			return 0, fmt.Errorf("setting MTU of %s: %w", n.bridge, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := s.h.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("setting %s up: %w", n.bridge, err)
		}
	}
	if len(n.v6) > 0 {
		// No duplicate address detection on the bridge: the kernel
		// solicits neighbours for forwarded packets from the bridge's
		// link-local address, and while that is tentative (the first
		// two seconds after the first container attaches) forwarded
		// IPv6 traffic into the network stalls.
		for _, kv := range [][2]string{{"disable_ipv6", "0"}, {"accept_dad", "0"}} {
			if err := setSysctl("ipv6/conf/"+n.bridge+"/"+kv[0], kv[1]); err != nil {
				return 0, err
			}
		}
	}
	if err := s.ensureGateways(link, n); err != nil {
		return 0, err
	}
	if len(n.v4) > 0 {
		// Lets published ports answer on 127.0.0.1: the DNATed packet
		// leaves through the bridge with its loopback source.
		if err := setSysctl("ipv4/conf/"+n.bridge+"/route_localnet", "1"); err != nil {
			return 0, err
		}
	}
	if !n.internal && forward {
		if len(n.v4) > 0 {
			if err := setSysctl("ipv4/ip_forward", "1"); err != nil {
				return 0, err
			}
		}
		if len(n.v6) > 0 {
			if err := setSysctl("ipv6/conf/all/forwarding", "1"); err != nil {
				return 0, err
			}
		}
	}
	return link.Attrs().Index, nil
}

func bridgeAlias(n *network) string { return bridgeAliasPrefix + tagID(n.id) }

// bridgeAliasPrefix starts the alias of every bridge the driver made.
const bridgeAliasPrefix = "sandnet network "

// ensureGateways puts n's gateways on the bridge and removes other
// addresses of n's pools from it.
func (s *system) ensureGateways(link netlink.Link, n *network) error {
	have, err := s.h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("listing addresses of %s: %w", n.bridge, err)
	}
	want := n.subnets()
	for _, a := range have {
		// Only stale gateways of the network's own pools go: a borrowed
		// bridge keeps the addresses it had.
		inPool := slices.ContainsFunc(want, func(s subnet) bool { return s.pool.Contains(a.IP) })
		if inPool && !slices.ContainsFunc(want, func(s subnet) bool { return s.gateway.String() == a.IPNet.String() }) {
			if err := s.h.AddrDel(link, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
				return fmt.Errorf("removing address %s from %s: %w", a.IPNet, n.bridge, err)
			}
		}
	}
	for _, sn := range want {
		if slices.ContainsFunc(have, func(a netlink.Addr) bool { return a.IPNet.String() == sn.gateway.String() }) {
			continue
		}
		a := &netlink.Addr{IPNet: sn.gateway}
		if sn.gateway.IP.To4() == nil {
			// The gateway is usable at once instead of after a second
			// of duplicate address detection.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := s.h.AddrReplace(link, a); err != nil {
			return fmt.Errorf("adding gateway %s to %s: %w", sn.gateway, n.bridge, err)
		}
	}
	return nil
}

// checkFirewall is ensureFirewall for calls that do not hold mu.
func (b *bridge) checkFirewall(s *system) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ensureFirewall(s)
}

// ensureFirewall rebuilds the nftables table from the cache when someone
// deleted or flushed it, and loads the published ports a previous run of
// the driver left in it. Called with mu held, before every firewall change.
func (b *bridge) ensureFirewall(s *system) error {
	ok, err := s.fw.intact()
	if err != nil {
		return err
	}
	if ok && !b.portsLoaded {
		left, err := s.fw.portRules()
		if err != nil {
			return err
		}
		for tag, rules := range left {
			if _, known := b.ports[tag]; !known {
				b.ports[tag] = rules
			}
		}
	}
	b.portsLoaded = true
	if ok {
		return nil
	}
	return b.rebuildFirewall(s)
}

// rebuildFirewall replaces the table's rules with those of the driver's
// networks and ports, in one transaction. Called with mu held.
func (b *bridge) rebuildFirewall(s *system) error {
	nets := make([]*network, 0, len(b.nets))
	for _, n := range b.nets {
		nets = append(nets, n)
	}
	slices.SortFunc(nets, func(x, y *network) int { return strings.Compare(x.id, y.id) })
	return s.fw.rebuild(nets, b.ports)
}

// DeleteNetwork removes the network's bridge (with its addresses), its
// firewall rules and chains, and the conntrack entries of its pools. Its
// endpoints should be gone; any left are forgotten. Sysctls the driver set
// host-wide (ip_forward) stay as they are.
func (b *bridge) DeleteNetwork(_ context.Context, req *pb.DeleteNetworkRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	pn := req.GetNetwork()
	n, ok := b.nets[pn.GetId()]
	if !ok {
		var err error
		if n, err = parseNetwork(b.cfg, pn); err != nil {
			// Options that no longer parse (the config changed, say)
			// must not keep the network from being deleted.
			if pn.GetId() == "" {
				return err
			}
			n = &network{id: pn.GetId(), bridge: bridgeName(pn.GetId())}
		}
	}
	s, err := b.sys()
	if err != nil {
		return err
	}
	eps := b.forgetNetworkLocked(n.id)
	b.deleted.Add(n.id, struct{}{})
	if err := b.ensureFirewall(s); err != nil {
		return err
	}
	if err := b.detachLocked(s, eps); err != nil {
		return err
	}
	if err := s.fw.removeNetwork(n); err != nil {
		return fmt.Errorf("network %s: %w", n.id, err)
	}
	if len(b.nets) == 0 {
		// The last network is gone: so is the table.
		if _, err := s.fw.dropIfUnused(); err != nil {
			return fmt.Errorf("network %s: %w", n.id, err)
		}
	}
	if err := removeBridge(s, n); err != nil {
		return err
	}
	return b.flushPools(n)
}

// forgetNetworkLocked drops network netID from the driver's maps, with
// what was prepared on it, and returns its endpoints, dropped too; b.mu
// held.
func (b *bridge) forgetNetworkLocked(netID string) []*endpoint {
	delete(b.nets, netID)
	delete(b.bridgeIndex, netID)
	for id, p := range b.preparedOn {
		if p.netID == netID {
			delete(b.preparedOn, id)
		}
	}
	var eps []*endpoint
	for id, ep := range b.eps {
		if ep.netID == netID {
			eps = append(eps, ep)
			delete(b.eps, id)
		}
	}
	return eps
}

// detachLocked revokes the ports of endpoints eps, of a network being
// deleted, and deletes their host ends (in the background, through the
// reaper); b.mu held, the firewall ensured.
func (b *bridge) detachLocked(s *system, eps []*endpoint) error {
	for _, ep := range eps {
		if err := b.revoke(s, ep.id, false); err != nil {
			return err
		}
		delete(b.hairpin, ep.id)
		delete(b.joined, ep.id)
		if err := s.rt.doom(hostIfName(ep.id)); err != nil {
			return fmt.Errorf("detaching %s: %w", hostIfName(ep.id), err)
		}
	}
	if len(eps) > 0 {
		b.reap.deleteLinks()
	}
	return nil
}

// removeBridge deletes network n's bridge if the driver made it (its
// alias says so), or else removes the gateways it added to the bridge
// the operator made. A bridge already gone is no error.
func removeBridge(s *system, n *network) error {
	link, err := s.h.LinkByName(n.bridge)
	if err != nil || link.Type() != "bridge" {
		return nil
	}
	if link.Attrs().Alias == bridgeAlias(n) {
		if err := s.rt.delLink(n.bridge); err != nil {
			return fmt.Errorf("deleting bridge %s: %w", n.bridge, err)
		}
		return nil
	}
	for _, sn := range n.subnets() {
		if err := s.h.AddrDel(link, &netlink.Addr{IPNet: sn.gateway}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("removing gateway %s from %s: %w", sn.gateway, n.bridge, err)
		}
	}
	return nil
}

// flushPools deletes the conntrack entries from network n's pools.
func (b *bridge) flushPools(n *network) error {
	var pools []netip.Prefix
	var pfams []netip.Addr
	for _, sn := range n.subnets() {
		p, _ := netip.AddrFromSlice(sn.pool.IP)
		ones, _ := sn.pool.Mask.Size()
		pools = append(pools, netip.PrefixFrom(p.Unmap(), ones))
		pfams = append(pfams, p.Unmap())
	}
	return b.reap.flush(familiesOf(pfams...), func(f *netlink.ConntrackFlow) bool {
		return slices.ContainsFunc(pools, func(p netip.Prefix) bool {
			return p.Contains(addrOf(f.Forward.SrcIP)) || p.Contains(addrOf(f.Reverse.SrcIP))
		})
	})
}

// network returns the cached network of a request, creating it when the
// driver has not seen it yet (a call replayed out of order) — unless it
// deleted it (b.deleted): that call raced the network's delete.
func (b *bridge) network(pn *pb.Network) (*network, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n, ok := b.nets[pn.GetId()]; ok {
		return n, b.bridgeIndex[n.id], nil
	}
	if b.deleted.Contains(pn.GetId()) {
		return nil, 0, fmt.Errorf("network %s was deleted: %w", pn.GetId(), sdk.ErrNotFound)
	}
	n, err := parseNetwork(b.cfg, pn)
	if err != nil {
		return nil, 0, err
	}
	if err := b.ensureNetwork(n); err != nil {
		return nil, 0, err
	}
	return n, b.bridgeIndex[n.id], nil
}

// renewNetwork is network without the cache: it makes the network's
// bridge again should it have been deleted or made anew under the driver.
func (b *bridge) renewNetwork(pn *pb.Network) (*network, int, error) {
	b.mu.Lock()
	delete(b.nets, pn.GetId())
	b.mu.Unlock()
	return b.network(pn)
}

// prepare is the start of every call on a joined endpoint: it tells the
// reaper the driver is busy and resolves the system handles, the network
// (with its index) and the endpoint the request names.
func (b *bridge) prepare(pn *pb.Network, pe *pb.Endpoint) (*system, *network, int, *endpoint, error) {
	b.reap.busy()
	s, err := b.sys()
	if err != nil {
		return nil, nil, 0, nil, err
	}
	n, idx, err := b.network(pn)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	ep, err := b.endpoint(n, pe)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	return s, n, idx, ep, nil
}

// endpoint returns the cached endpoint of a request, or the one the
// request describes.
func (b *bridge) endpoint(n *network, pe *pb.Endpoint) (*endpoint, error) {
	b.mu.Lock()
	ep, ok := b.eps[pe.GetId()]
	b.mu.Unlock()
	if ok && ep.netID == n.id {
		return ep, nil
	}
	return parseEndpoint(n, pe)
}

// CreateEndpoint checks the endpoint and fills in its MAC when the host
// left it empty. It touches nothing in the kernel: the interface appears
// in Join.
func (b *bridge) CreateEndpoint(_ context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	b.reap.busy()
	n, _, err := b.network(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	ep, err := parseEndpoint(n, req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if o, ok := b.eps[ep.id]; ok && o.netID != ep.netID {
		b.mu.Unlock()
		return nil, fmt.Errorf("endpoint %s exists on network %s: %w", ep.id, o.netID, sdk.ErrConflict)
	}
	b.eps[ep.id] = ep
	b.mu.Unlock()
	if err := b.reap.ensureFlushed([]netip.Addr{ep.ip4, ep.ip6}, nil); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	resp := &pb.CreateEndpointResponse{Interface: &pb.EndpointInterface{}}
	if !ep.macSet {
		resp.Interface.Mac = ep.mac.String()
	}
	return resp, nil
}

// DeleteEndpoint removes what is left of the endpoint: its published
// ports, its veth pair if Leave was skipped, and the conntrack entries of
// its addresses. The pair and the entries go in the reaper's next pass;
// the entries before the address is used again.
func (b *bridge) DeleteEndpoint(_ context.Context, req *pb.EndpointRequest) error {
	b.reap.busy()
	s, err := b.sys()
	if err != nil {
		return err
	}
	id := req.GetEndpoint().GetId()
	b.mu.Lock()
	ep, ok := b.eps[id]
	delete(b.eps, id)
	joined, known := b.joined[id]
	delete(b.joined, id)
	err = b.ensureFirewall(s)
	if err == nil {
		err = b.revoke(s, id, false)
	}
	delete(b.hairpin, id)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	// After a Leave there is nothing to cut off.
	if joined || !known {
		if err := s.rt.doom(hostIfName(id)); err != nil {
			return fmt.Errorf("endpoint %s: detaching %s: %w", id, hostIfName(id), err)
		}
		b.reap.deleteLinks()
	}
	var addrs []netip.Addr
	if ok {
		addrs = append(addrs, ep.ip4, ep.ip6)
	} else {
		for _, s := range []string{req.GetEndpoint().GetInterface().GetAddress(), req.GetEndpoint().GetInterface().GetAddressV6()} {
			if p, err := netip.ParsePrefix(s); err == nil {
				addrs = append(addrs, p.Addr().Unmap())
			}
		}
	}
	// Flows of the address must not outlive the endpoint: a new endpoint
	// given the same address would receive them (moby/moby#8795). This
	// also covers the flows of its published ports.
	b.reap.forget(addrs, nil)
	return nil
}

// Join creates the endpoint's veth pair: the host end on the bridge, the
// other end directly inside the sandbox, where the host names and
// addresses it. An attach Prepare readied is finished instead.
func (b *bridge) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	s, n, idx, ep, err := b.prepare(req.GetNetwork(), req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	if err := b.reap.ensureFlushed([]netip.Addr{ep.ip4, ep.ip6}, nil); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	fd, err := openSandbox(ep.id, req.GetSandboxKey())
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// Join changes no firewall rule, but like every call it restores a
	// table someone deleted; the check runs while the kernel creates the
	// pair, so it costs the attach nothing.
	fwErr := make(chan error, 1)
	go func() { fwErr <- b.checkFirewall(s) }()
	j := b.newJoin(req, s, n, idx, ep, fd)
	if req.GetPrepared() {
		j.usePrepared()
	}
	if err := j.makePair(fwErr); err != nil {
		return nil, err
	}
	if err := j.finish(); err != nil {
		return nil, err
	}
	return joinResponse(j.n, j.src, j.spec.host), nil
}

// joining is one Join, once the network, its bridge and the endpoint are
// known and the sandbox is open: its steps are newJoin, usePrepared (for
// an attach Prepare readied), makePair and finish, in that order. b.mu is
// not held between them.
type joining struct {
	b       *bridge
	s       *system
	req     *pb.JoinRequest
	n       *network
	ep      *endpoint
	spec    vethSpec  // the pair to make; master is the bridge's index
	src     string    // the sandbox end's name, for the host to rename
	flags   portFlags // the bridge port's flags
	hairpin bool      // the endpoint publishes ports: the port hairpins
	up      bool      // the host end is up on the bridge already
}

// newJoin plans the pair of endpoint ep on network n (whose bridge has
// index idx) with its sandbox end in the namespace open as fd. The
// sandbox end gets the name the host will give it, if it can: a rename
// costs the kernel more than the name (the interface's sysctls are
// registered again).
func (b *bridge) newJoin(req *pb.JoinRequest, s *system, n *network, idx int, ep *endpoint, fd int) *joining {
	j := &joining{b: b, s: s, req: req, n: n, ep: ep, flags: n.portFlags()}
	j.spec = vethSpec{
		host: hostIfName(ep.id), peer: sandboxIfName(req.GetIfname(), ep.id),
		mtu: n.mtu, master: idx, peerMAC: ep.mac, peerNS: fd,
	}
	j.src = j.spec.peer
	b.mu.Lock()
	// An endpoint with ports to publish gets hairpin mode now, which
	// spares ProgramExternalConnectivity a request.
	j.hairpin = len(b.ports[tagID(ep.id)]) > 0 || len(req.GetEndpoint().GetPortBindings()) > 0 && !n.internal
	b.mu.Unlock()
	if j.hairpin {
		j.flags.hairpin = ptr(true)
	}
	return j
}

// usePrepared checks the pair Prepare made, its host end up on the
// bridge with the network's flags, and sets j.up when it is ready. When
// this driver made it on the bridge that is still the network's, and the
// endpoint publishes no ports, it is ready as it is: two ioctls check
// that port and bridge are there, and no request is sent. Otherwise one
// request sets the port's flags (hairpin) and names the bridge, which
// puts the port back on it should the bridge have been made anew since.
// Should the pair be gone, or have been prepared by the driver's previous
// process, j.up stays false and makePair makes it, or takes it over, as
// without Prepare.
func (j *joining) usePrepared() {
	b, s, spec := j.b, j.s, &j.spec
	b.mu.Lock()
	made, known := b.preparedOn[j.ep.id]
	delete(b.preparedOn, j.ep.id)
	b.mu.Unlock()
	if known && made.bridge == spec.master && !j.hairpin && s.rt.portReady(spec.host, j.n.bridge, spec.master) {
		j.up = true
		return
	}
	if !known {
		// Prepared by this driver's previous process, perhaps with
		// another mtu: makePair takes the pair over as a rejoin does.
		return
	}
	err := s.rt.bringUp(spec.host, j.flags, spec.master)
	if err != nil && s.rt.exists(spec.host) {
		// The port is there but its bridge is not (deleted, or made
		// anew): repair the network and put the port on it.
		if j.n, spec.master, err = b.renewNetwork(j.req.GetNetwork()); err == nil {
			err = s.rt.bringUp(spec.host, j.flags, spec.master)
		}
	}
	j.up = err == nil
}

// makePair makes the veth pair, unless a prepared one is up (j.up): a
// pair left by an earlier Join is taken over (rejoin), a bridge deleted
// or made anew under us is repaired once. It waits for the firewall check
// (fwErr), whose failure deletes the pair. A failure leaves no pair.
func (j *joining) makePair(fwErr <-chan error) error {
	s, spec, ep, n := j.s, &j.spec, j.ep, j.n
	var err error
	if !j.up {
		err = s.rt.addVeth(*spec)
	}
	switch {
	case errors.Is(err, unix.EEXIST):
		j.src, err = s.rejoin(*spec)
		if tmp := peerIfName(ep.id); errors.Is(err, errNameTaken) && spec.peer != tmp {
			// The sandbox has an interface of that name: take one of
			// ours, which the host renames.
			spec.peer, j.src = tmp, tmp
			err = s.rt.addVeth(*spec)
		}
	case errors.Is(err, unix.EXFULL):
		<-fwErr
		return fmt.Errorf("endpoint %s: network %s is full: its bridge %s has the kernel's maximum of %d ports: %w",
			ep.id, n.id, n.bridge, maxBridgePorts, sdk.ErrConflict)
	case err != nil:
		// The bridge may have been deleted or recreated under us:
		// repair the network and try once more.
		if j.n, spec.master, err = j.b.renewNetwork(j.req.GetNetwork()); err != nil {
			return err
		}
		err = s.rt.addVeth(*spec)
	}
	if ferr := <-fwErr; ferr != nil && err == nil {
		_ = s.rt.delLink(spec.host)
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("endpoint %s: creating veth pair %s/%s in %s: %w", ep.id, spec.host, spec.peer, j.req.GetSandboxKey(), err)
	}
	return nil
}

// finish marks the endpoint joined, brings the host end of a pair it
// made up, and records the port's hairpin mode. It may assume makePair
// made the pair (or found the prepared one up); a failure deletes it.
func (j *joining) finish() error {
	b, s, ep := j.b, j.s, j.ep
	b.mu.Lock()
	b.joined[ep.id] = true
	b.mu.Unlock()
	if !j.up {
		withoutIPv6(j.spec.host)
		if err := s.rt.bringUp(j.spec.host, j.flags, 0); err != nil {
			_ = s.rt.delLink(j.spec.host)
			return fmt.Errorf("endpoint %s: bringing bridge port %s up: %w", ep.id, j.spec.host, err)
		}
	}
	b.mu.Lock()
	if j.hairpin {
		b.hairpin[ep.id] = true
	} else {
		delete(b.hairpin, ep.id) // as the kernel made it, unless a rejoin found it set
	}
	b.mu.Unlock()
	return nil
}

// Prepare makes an endpoint's veth pair ahead of its attach: the sandbox
// end inside the namespace with the name the host asks for, down; the
// host end up on the network's bridge, with the network's port flags.
// Join, told the attach was prepared, checks the port is still on its
// bridge (and sets hairpin mode when the endpoint publishes ports). A
// pair never joined goes with the namespace. A name the sandbox cannot take, or a pair that exists
// already, prepares nothing.
func (b *bridge) Prepare(_ context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	b.reap.busy()
	s, err := b.sys()
	if err != nil {
		return nil, err
	}
	n, idx, err := b.network(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	id := req.GetEndpointId()
	if id == "" {
		return nil, fmt.Errorf("preparing an endpoint: no endpoint ID: %w", sdk.ErrInvalid)
	}
	if validIfName(req.GetIfname()) != nil {
		return &pb.PrepareResponse{}, nil
	}
	fd, err := openSandbox(id, req.GetSandboxKey())
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	// The sandbox end's MAC is the host's to set when it configures the
	// interface: the endpoint's address is not known yet.
	spec := vethSpec{host: hostIfName(id), peer: req.GetIfname(), mtu: n.mtu, master: idx, peerNS: fd}
	switch err := s.rt.addVeth(spec); {
	case errors.Is(err, unix.EEXIST), errors.Is(err, unix.EXFULL):
		return &pb.PrepareResponse{}, nil
	case err != nil:
		return nil, fmt.Errorf("endpoint %s: preparing veth pair %s/%s in %s: %w", id, spec.host, spec.peer, req.GetSandboxKey(), err)
	}
	// The port comes up now, with the network's isolation: it forwards
	// nothing before the sandbox end is up, which only the host does
	// once the endpoint is attached.
	flags := n.portFlags()
	withoutIPv6(spec.host)
	if err := s.rt.bringUp(spec.host, flags, 0); err != nil {
		_ = s.rt.delLink(spec.host)
		return nil, fmt.Errorf("endpoint %s: bringing prepared bridge port %s up: %w", id, spec.host, err)
	}
	b.mu.Lock()
	if len(b.preparedOn) >= maxPreparedPorts {
		// Ports of spares the host dropped: forgetting them costs a
		// Join one request.
		clear(b.preparedOn)
	}
	b.preparedOn[id] = preparedPort{netID: n.id, bridge: idx}
	b.mu.Unlock()
	return &pb.PrepareResponse{SrcName: spec.peer, Up: true}, nil
}

// preparedPort is a port Prepare made: on the bridge of network netID,
// whose ifindex was bridge.
type preparedPort struct {
	netID  string
	bridge int
}

// maxPreparedPorts bounds the ports Prepare remembers. A host keeps a few
// prepared at a time; the ports of spares it dropped unused (another
// network became its target) are never joined.
const maxPreparedPorts = 256

// openSandbox opens the network namespace at key, for endpoint id.
func openSandbox(id, key string) (int, error) {
	fd, err := unix.Open(key, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("endpoint %s: sandbox %s: %w", id, key, sdk.ErrNotFound)
		}
		return -1, fmt.Errorf("endpoint %s: opening sandbox %s: %w", id, key, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("endpoint %s: sandbox %s is not a network namespace: %w", id, key, sdk.ErrInvalid)
	}
	return fd, nil
}

// portFlags are the flags every port of network n has: isolated with ICC
// off.
func (n *network) portFlags() portFlags {
	var f portFlags
	if !n.icc {
		f.isolated = ptr(true)
	}
	return f
}

// errNameTaken says the sandbox already has an interface of the name asked
// for its end of a veth pair.
var errNameTaken = errors.New("interface name taken")

// maxBridgePorts is the kernel's limit of ports per bridge (port numbers
// 1 to BR_MAX_PORTS-1); one more fails with EXFULL.
const maxBridgePorts = 1023

// rejoin handles a Join whose veth pair could not be made because a name
// exists: when its pair exists, its sandbox end is in the requested
// sandbox and it was not left, it makes sure the host end is attached
// (Join brings it up) and returns the sandbox end's current name (the
// host may have renamed it); otherwise the pair is stale and is
// recreated. With no host end, the pair is made again once: the name
// taken was that of a left pair the reaper deleted meanwhile (a driver's
// reaper deletes its doomed links in one batch, whenever it runs), or
// the sandbox's, and then the name is taken (errNameTaken).
func (s *system) rejoin(spec vethSpec) (string, error) {
	link, err := s.h.LinkByName(spec.host)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return "", err
		}
		if err := s.rt.addVeth(spec); !errors.Is(err, unix.EEXIST) {
			return spec.peer, err
		}
		return "", fmt.Errorf("the sandbox already has an interface named %s: %w: %w", spec.peer, errNameTaken, sdk.ErrConflict)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return "", fmt.Errorf("%s exists and is a %s, not a veth: %w", spec.host, link.Type(), sdk.ErrConflict)
	}
	nsid, err := s.h.GetNetNsIdByFd(spec.peerNS)
	if err == nil && nsid >= 0 && link.Attrs().NetNsID == nsid && link.Attrs().Group != doomGroup {
		if link.Attrs().MasterIndex != spec.master {
			if err := s.h.LinkSetMasterByIndex(link, spec.master); err != nil {
				return "", err
			}
		}
		// The driver may have been restarted with another mtu (a reload):
		// both ends follow the network's, as its bridge does.
		if link.Attrs().MTU != spec.mtu {
			if err := s.h.LinkSetMTU(link, spec.mtu); err != nil {
				return "", fmt.Errorf("setting MTU of %s: %w", spec.host, err)
			}
		}
		return s.peerName(spec, link.Attrs().ParentIndex)
	}
	if err := s.rt.delLink(spec.host); err != nil {
		return "", err
	}
	return spec.peer, s.rt.addVeth(spec)
}

// peerName returns the current name of the sandbox end, found by its
// ifindex inside the sandbox, and gives it spec's MTU if it has another.
func (s *system) peerName(spec vethSpec, index int) (string, error) {
	h, err := netlink.NewHandleAt(netns.NsHandle(spec.peerNS), unix.NETLINK_ROUTE)
	if err != nil {
		return "", fmt.Errorf("opening netlink in the sandbox: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByIndex(index)
	if err != nil {
		return "", fmt.Errorf("finding the sandbox end of %s: %w", spec.host, err)
	}
	if l.Attrs().MTU != spec.mtu {
		if err := h.LinkSetMTU(l, spec.mtu); err != nil {
			return "", fmt.Errorf("setting MTU of the sandbox end of %s: %w", spec.host, err)
		}
	}
	return l.Attrs().Name, nil
}

// Leave cuts the endpoint's veth pair off at once — the host end down, so
// the sandbox has no connectivity through it from then on — and leaves
// deleting the pair to the reaper. Deleting a live veth
// pair costs the kernel 17-20 ms, and when the host tears the sandbox down
// next the kernel deletes the pair with the namespace anyway. The host
// takes the sandbox end down and frees its name.
func (b *bridge) Leave(_ context.Context, req *pb.LeaveRequest) error {
	b.reap.busy()
	s, err := b.sys()
	if err != nil {
		return err
	}
	fwErr := make(chan error, 1)
	go func() { fwErr <- b.checkFirewall(s) }()
	host := hostIfName(req.GetEndpoint().GetId())
	err = s.rt.doom(host)
	if ferr := <-fwErr; err == nil {
		err = ferr
	}
	if err != nil {
		return fmt.Errorf("endpoint %s: detaching %s: %w", req.GetEndpoint().GetId(), host, err)
	}
	b.reap.deleteLinks()
	b.mu.Lock()
	b.joined[req.GetEndpoint().GetId()] = false
	b.mu.Unlock()
	return nil
}

// ProgramExternalConnectivity publishes the endpoint's port bindings and
// returns them with the host ports chosen. Replaying it keeps the chosen
// ports. Internal networks publish nothing.
func (b *bridge) ProgramExternalConnectivity(_ context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	s, n, _, ep, err := b.prepare(req.GetNetwork(), req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	reqs, err := parsePortRequests(req.GetEndpoint().GetPortBindings())
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	if n.internal {
		reqs = nil
	}
	for i := range reqs {
		if !reqs[i].hostIP.IsValid() && n.hostBind.IsValid() {
			reqs[i].hostIP = n.hostBind // the network's default host address
		}
	}
	lo, hi, err := localPortRange()
	if err != nil {
		return nil, err
	}

	bs, old, rules, err := b.publish(s, ep, req.GetEndpoint().GetName(), reqs, lo, hi)
	if err != nil {
		return nil, err
	}
	// The host ports and the address may have had another user whose
	// flows are still queued for deletion.
	if err := b.reap.ensureFlushed([]netip.Addr{ep.ip4, ep.ip6}, bs); err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	if err := b.setHairpin(s, ep, len(rules) > 0, len(old) > 0); err != nil {
		return nil, err
	}
	if err := b.flushChangedPorts(old, rules); err != nil {
		return nil, err
	}
	resp := &pb.ExternalConnectivityResponse{}
	for _, b := range bs {
		resp.PortBindings = append(resp.PortBindings, b.proto3())
	}
	return resp, nil
}

// publish chooses the host ports of endpoint ep's port requests (keeping
// those it had; free ones from lo-hi, never another endpoint's) and syncs
// the firewall's rules for it. It returns the bindings, the endpoint's
// rules before and its rules now. A failure changes nothing.
func (b *bridge) publish(s *system, ep *endpoint, name string, reqs []portRequest, lo, hi uint16) (bs []binding, old, rules []portRule, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.ensureFirewall(s); err != nil {
		return nil, nil, nil, err
	}
	tag := tagID(ep.id)
	old = b.ports[tag]
	alloc := allocator{describe: b.portHolder, lo: lo, hi: hi, next: &b.nextPort, probe: probePort}
	for t, rules := range b.ports {
		if t != tag {
			for _, tb := range bindingsOf(rules) {
				alloc.taken = append(alloc.taken, tb)
				alloc.holders = append(alloc.holders, t)
			}
		}
	}
	if bs, err = alloc.assign(reqs, bindingsOf(old)); err != nil {
		return nil, nil, nil, err // it names the port and its holder
	}
	rules, err = rulesFor(bs, ep.ip4, ep.ip6)
	if err == nil {
		// ensureFirewall just found the table as the driver left it, so
		// the mirror says what it holds for tag.
		err = s.fw.syncPorts(tag, rules, len(old) == 0)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("endpoint %s: %w", ep.id, err)
	}
	if len(rules) == 0 {
		delete(b.ports, tag)
		delete(b.portNames, tag)
	} else {
		b.ports[tag] = rules
		b.portNames[tag] = name
	}
	return bs, old, rules, nil
}

// portHolder names the endpoint whose published ports are under tag, as
// a conflict's message does: by its name when a publish since the
// driver's start gave it, and by its ID.
func (b *bridge) portHolder(tag string) string {
	id := tag
	if len(id) > 12 {
		id = id[:12]
	}
	if name := b.portNames[tag]; name != "" {
		return fmt.Sprintf("endpoint %s (%s)", name, id)
	}
	return "endpoint " + id
}

// setHairpin sets hairpin mode on endpoint ep's bridge port to want (it
// publishes ports; had: it did), unless it is so already: a container
// reaching its own published port needs it. Before Join there is no
// port yet: Join sets it.
func (b *bridge) setHairpin(s *system, ep *endpoint, want, had bool) error {
	b.mu.Lock()
	set, known := b.hairpin[ep.id]
	b.mu.Unlock()
	if !(want || had) || known && set == want {
		return nil
	}
	if err := s.rt.setPortFlags(hostIfName(ep.id), portFlags{hairpin: ptr(want)}); err != nil {
		return fmt.Errorf("endpoint %s: setting hairpin mode: %w", ep.id, err)
	}
	b.mu.Lock()
	b.hairpin[ep.id] = want
	b.mu.Unlock()
	return nil
}

// flushChangedPorts has the reaper delete the conntrack entries that a
// change of an endpoint's port rules from old to rules leaves wrong:
// flows of mappings that went away must not keep reaching the container,
// and UDP flows to a newly published port that conntrack saw before the
// mapping existed (a client that kept sending) would bypass the new DNAT
// rule for as long as they live.
func (b *bridge) flushChangedPorts(old, rules []portRule) error {
	var gone, added []portRule
	for _, r := range old {
		if !slices.Contains(rules, r) {
			gone = append(gone, r)
		}
	}
	for _, r := range rules {
		if !slices.Contains(old, r) && r.proto == "udp" {
			added = append(added, r)
		}
	}
	if len(gone)+len(added) == 0 {
		return nil
	}
	var ctrs []netip.Addr
	for _, r := range slices.Concat(gone, added) {
		ctrs = append(ctrs, r.ctr)
	}
	return b.reap.flush(familiesOf(ctrs...), func(f *netlink.ConntrackFlow) bool {
		return slices.ContainsFunc(gone, func(r portRule) bool { return r.ownsFlow(f) }) ||
			slices.ContainsFunc(added, func(r portRule) bool { return r.shadowedBy(f) })
	})
}

// RevokeExternalConnectivity unpublishes the endpoint's ports and has the
// reaper delete the conntrack entries of their flows, so no established
// flow keeps reaching the container through a mapping that no longer
// exists. (The host revokes as it disconnects the container, which cuts
// those flows off at once anyway.)
func (b *bridge) RevokeExternalConnectivity(_ context.Context, req *pb.ExternalConnectivityRequest) error {
	b.reap.busy()
	s, err := b.sys()
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.ensureFirewall(s); err != nil {
		return err
	}
	return b.revoke(s, req.GetEndpoint().GetId(), true)
}

// revoke removes the published ports of endpoint id and, with flush, queues
// the conntrack entries of their flows for the reaper. Called with mu held.
func (b *bridge) revoke(s *system, id string, flush bool) error {
	tag := tagID(id)
	if b.portsLoaded && len(b.ports[tag]) == 0 {
		return nil
	}
	if err := b.ensureFirewall(s); err != nil {
		return err
	}
	old := b.ports[tag]
	if len(old) == 0 {
		return nil
	}
	if err := s.fw.syncPorts(tag, nil, false); err != nil {
		return fmt.Errorf("endpoint %s: %w", id, err)
	}
	delete(b.ports, tag)
	delete(b.portNames, tag)
	if err := s.rt.setPortFlags(hostIfName(id), portFlags{hairpin: ptr(false)}); err != nil {
		return fmt.Errorf("endpoint %s: clearing hairpin mode: %w", id, err)
	}
	b.hairpin[id] = false
	if flush {
		b.reap.forget(nil, old)
	}
	return nil
}

// ownsFlow reports whether conntrack flow f was DNATed by rule r.
func (r portRule) ownsFlow(f *netlink.ConntrackFlow) bool {
	return r.matchesOrig(f) && addrOf(f.Reverse.SrcIP) == r.ctr && f.Reverse.SrcPort == r.ctrPort
}

// shadowedBy reports whether f is a flow to r's host port that is not
// DNATed to r's container: created before r existed.
func (r portRule) shadowedBy(f *netlink.ConntrackFlow) bool {
	return r.matchesOrig(f) && addrOf(f.Reverse.SrcIP) != r.ctr
}

func (r portRule) matchesOrig(f *netlink.ConntrackFlow) bool {
	proto := uint8(unix.IPPROTO_TCP)
	if r.proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	if f.Forward.Protocol != proto || f.Forward.DstPort != r.hostPort {
		return false
	}
	dst := addrOf(f.Forward.DstIP)
	if family(dst) != family(r.ctr) {
		return false
	}
	return r.wildcard() || dst == r.hostIP
}

// probePort reports whether a host socket could bind b's port, so an
// automatically chosen port does not shadow a host service.
func probePort(b binding) bool {
	addr := ""
	if b.hostIP.IsValid() {
		addr = b.hostIP.String()
	}
	hp := net.JoinHostPort(addr, strconv.Itoa(int(b.hostPort)))
	if b.proto == "udp" {
		c, err := net.ListenPacket("udp", hp)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
	l, err := net.Listen("tcp", hp)
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// EndpointOperInfo reports the endpoint's interfaces, bridge and
// published ports. The sandbox's interface is reported by the name it has
// now (the one the host gave it at the join), read from the kernel; an
// endpoint not joined to a sandbox has none.
func (b *bridge) EndpointOperInfo(_ context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	n, _, err := b.network(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	ep, err := b.endpoint(n, req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	info := map[string]string{
		"bridge":         n.bridge,
		"host_interface": hostIfName(ep.id),
		"mac":            ep.mac.String(),
	}
	if s, err := b.sys(); err == nil {
		if name, err := s.rt.sandboxEnd(hostIfName(ep.id)); err == nil {
			info["sandbox_interface"] = name
		}
	}
	b.mu.Lock()
	var ports []string
	for _, r := range b.ports[tagID(ep.id)] {
		host := "*:" + strconv.Itoa(int(r.hostPort))
		if r.hostIP.IsValid() {
			host = netip.AddrPortFrom(r.hostIP, r.hostPort).String()
		}
		ports = append(ports, fmt.Sprintf("%s/%s->%s", host, r.proto, netip.AddrPortFrom(r.ctr, r.ctrPort)))
	}
	b.mu.Unlock()
	if len(ports) > 0 {
		info["ports"] = strings.Join(ports, ",")
	}
	return &pb.EndpointOperInfoResponse{Info: info}, nil
}

func ptr[T any](v T) *T { return &v }
