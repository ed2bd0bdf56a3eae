package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
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
		return nil, errorf(sdk.ErrInvalid, "name: %q is not a valid network name (letters, digits, _ . -; up to 128)", clip(req.Name))
	}
	if err := checkLabels(req.Labels); err != nil {
		return nil, err
	}
	nc := &netCreation{c: c, req: req}
	defer nc.end()
	for _, check := range []func(context.Context) error{nc.checkDriver, nc.checkScope, nc.parseAddresses} {
		if err := check(ctx); err != nil {
			return nil, err
		}
	}
	nc.n = nc.network()
	if err := retry(ctx, "creating network "+req.Name, func() error { return nc.persist(ctx) }); err != nil {
		return nil, err
	}
	if err := nc.callDriver(ctx); err != nil {
		return nil, err
	}
	c.log.Info("network created", "name", nc.n.Name, "id", short(nc.n.ID), "driver", nc.n.Driver)
	return nc.n, nil
}

// netCreation is one network create (CreateNetwork), whose name is
// valid: its checks fill in the request's defaults and parse it, and
// only then does it write (persist) and have the driver set the network
// up (callDriver).
type netCreation struct {
	c    *Controller
	req  NetworkCreate // with its defaults filled in
	d    driver.Driver
	caps *pb.Capabilities

	subnet, ipRange, subnet6, ipRange6 netip.Prefix
	gateway, gateway6                  netip.Addr
	aux, aux6                          map[string]netip.Addr // auxiliary addresses by family
	noV4                               bool                  // an IPv6-only network (enable_ipv4 false)
	dns                                []netip.Addr
	vni                                uint32 // the VNI asked for; 0: any

	n       *Network
	release func() // ends the count of this create on its driver (see RetireDriver); nil before checkDriver
}

// end ends the create's count on its driver, if checkDriver began one.
func (nc *netCreation) end() {
	if nc.release != nil {
		nc.release()
	}
}

// checkDriver finds the network's driver (the default when none is
// named) and checks the options against those it declares. It may
// assume nothing; it changes nothing, but counts the create as one on
// its driver (a reload that removes the driver waits for it, or, having
// begun, makes it a conflict).
func (nc *netCreation) checkDriver(ctx context.Context) error {
	req := &nc.req
	if req.Driver == "" {
		req.Driver = DefaultDriver
	}
	var err error
	if nc.release, err = nc.c.beginNetCreate(req.Driver); err != nil {
		return err
	}
	d, caps, err := nc.c.driver(ctx, req.Driver)
	var nl *notLoadedError
	if errors.As(err, &nl) {
		return errorf(sdk.ErrInvalid, "driver: no driver %q is loaded (add a driver %q block to the config)", req.Driver, req.Driver)
	} else if err != nil {
		return err
	}
	nc.d, nc.caps = d, caps
	if known := caps.GetNetworkOptions(); len(known) > 0 {
		for _, k := range slices.Sorted(maps.Keys(req.Options)) {
			if !slices.Contains(known, k) {
				return errorf(sdk.ErrInvalid, "options.%s: not an option of driver %q (known: %s)", clip(k), req.Driver, strings.Join(known, ", "))
			}
		}
	}
	return nil
}

// checkScope settles the network's scope (local, or global where the
// store is shared) and whether it may advertise itself. It may assume
// checkDriver found the driver.
func (nc *netCreation) checkScope(context.Context) error {
	req, caps := &nc.req, nc.caps
	// A driver whose networks are global by nature (overlay) makes
	// global networks unless told otherwise, and no local ones.
	if req.Scope == "" && caps.GetDataScope() == pb.Scope_SCOPE_GLOBAL {
		req.Scope = scopeGlobal
	}
	switch req.Scope {
	case "", "local":
		if caps.GetDataScope() == pb.Scope_SCOPE_GLOBAL {
			return errorf(sdk.ErrInvalid, "scope: driver %q makes global networks only; leave scope out or make it global", req.Driver)
		}
		req.Scope = "local"
	case "global":
		if !nc.c.plugins.StoreGlobal() {
			return errorf(sdk.ErrInvalid, "scope: global networks need a store shared between hosts (such as consul); this agent's store is local")
		}
	default:
		return errorf(sdk.ErrInvalid, "scope: %q is not local or global", req.Scope)
	}
	return nc.c.checkAdvertise(req.Name, req.Driver, req.Scope, caps)
}

// parseAddresses parses the subnets, gateways, range, DNS servers and
// VNI the request asks for, and checks the driver uses addresses if any
// is given. It may assume the driver and the scope are settled.
func (nc *netCreation) parseAddresses(context.Context) (err error) {
	req := &nc.req
	if nc.subnet, err = parsePrefix("subnet", req.Subnet); err != nil {
		return err
	}
	if nc.gateway, err = parseAddr("gateway", req.Gateway); err != nil {
		return err
	}
	if nc.ipRange, err = parsePrefix("ip_range", req.IPRange); err != nil {
		return err
	}
	if nc.subnet6, err = parsePrefix("subnet_v6", req.SubnetV6); err != nil {
		return err
	}
	if nc.ipRange6, err = parsePrefix("ip_range_v6", req.IPRangeV6); err != nil {
		return err
	}
	if nc.gateway6, err = parseAddr("gateway_v6", req.GatewayV6); err != nil {
		return err
	}
	if nc.subnet.IsValid() && nc.subnet.Addr().Is4In6() {
		return errorf(sdk.ErrInvalid, "subnet: %s is an IPv4-mapped IPv6 prefix; give an IPv4 subnet as IPv4", nc.subnet)
	}
	if nc.subnet.IsValid() && nc.subnet.Addr().Is6() {
		return errorf(sdk.ErrInvalid, "subnet: %s is IPv6; give it as subnet_v6", nc.subnet)
	}
	if !nc.caps.GetNeedsAddresses() && (nc.subnet.IsValid() || nc.gateway.IsValid() || nc.ipRange.IsValid() || nc.subnet6.IsValid() || nc.ipRange6.IsValid()) {
		return errorf(sdk.ErrInvalid, "subnet: driver %q does not use addresses", req.Driver)
	}
	if err := nc.parseAux(); err != nil {
		return err
	}
	if nc.dns, err = parseDNS("dns", req.DNS); err != nil {
		return err
	}
	if needsVNI(req.Scope, nc.caps) {
		if nc.vni, err = wantedVNI(req.Options); err != nil {
			return err
		}
	}
	if nc.subnet6.IsValid() || nc.gateway6.IsValid() || nc.ipRange6.IsValid() {
		req.EnableIPv6 = true
	}
	return nc.checkFamilies()
}

// checkFamilies settles whether the network has IPv4 (enable_ipv4,
// default true): one without is IPv6-only, as Docker's --ipv4=false
// makes, and takes none of the IPv4 settings. It may assume the rest of
// the request is parsed.
func (nc *netCreation) checkFamilies() error {
	req := &nc.req
	if req.EnableIPv4 == nil || *req.EnableIPv4 {
		return nil
	}
	switch {
	case !nc.caps.GetNeedsAddresses():
		return errorf(sdk.ErrInvalid, "enable_ipv4: driver %q does not use addresses", req.Driver)
	case !req.EnableIPv6:
		return errorf(sdk.ErrInvalid, "enable_ipv4: a network without IPv4 needs IPv6 (enable_ipv6, or a subnet_v6)")
	case nc.subnet.IsValid():
		return errorf(sdk.ErrInvalid, "subnet: %s is IPv4, and the network has no IPv4 (enable_ipv4 false)", nc.subnet)
	case nc.gateway.IsValid():
		return errorf(sdk.ErrInvalid, "gateway: %s is an IPv4 gateway, and the network has no IPv4 (enable_ipv4 false)", nc.gateway)
	case nc.ipRange.IsValid():
		return errorf(sdk.ErrInvalid, "ip_range: %s is an IPv4 range, and the network has no IPv4 (enable_ipv4 false)", nc.ipRange)
	}
	nc.noV4 = true
	return nil
}

// parseAux parses the auxiliary addresses into aux and aux6, by family:
// each needs the subnet of its family given (the allocator checks it is
// inside, and no other reserved address).
func (nc *netCreation) parseAux() error {
	req := &nc.req
	if len(req.AuxAddresses) > ipam.MaxAux {
		return errorf(sdk.ErrInvalid, "aux_addresses: %d of them; at most %d", len(req.AuxAddresses), ipam.MaxAux)
	}
	for _, name := range slices.Sorted(maps.Keys(req.AuxAddresses)) {
		field := "aux_addresses." + clip(name)
		if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r == '=' || unicode.IsControl(r) }) || len(name) > maxAuxName {
			return errorf(sdk.ErrInvalid, "aux_addresses: %q is not a name for an address (1 to %d characters, no '=' and no control character)", clip(name), maxAuxName)
		}
		a, err := parseAddr(field, req.AuxAddresses[name])
		if err != nil {
			return err
		}
		if !a.IsValid() {
			return errorf(sdk.ErrInvalid, "%s: no address", field)
		}
		if !nc.caps.GetNeedsAddresses() {
			return errorf(sdk.ErrInvalid, "%s: driver %q does not use addresses", field, req.Driver)
		}
		m, subnet, key := &nc.aux, nc.subnet, "subnet"
		if a.Is6() && !a.Is4In6() {
			m, subnet, key = &nc.aux6, nc.subnet6, "subnet_v6"
		}
		if !subnet.IsValid() {
			return errorf(sdk.ErrInvalid, "%s: %s needs the network's %s given, to be inside it", field, a, key)
		}
		if *m == nil {
			*m = map[string]netip.Addr{}
		}
		(*m)[name] = a.Unmap()
	}
	return nil
}

// maxAuxName bounds the name of an auxiliary address.
const maxAuxName = 128

// network is the record the checked request makes, with a new ID and
// no pools yet.
func (nc *netCreation) network() *Network {
	req := nc.req
	return &Network{
		ID: newID(), Name: req.Name, Driver: req.Driver, Scope: req.Scope, Internal: req.Internal, HostID: nc.c.cfg.HostID,
		EnableIPv6: req.EnableIPv6 && nc.caps.GetNeedsAddresses(), Options: req.Options, Labels: req.Labels, Created: time.Now().UTC(),
		DNS: nc.dns, DNSForwardSingleLabel: req.DNSForwardSingleLabel,
	}
}

// nameLocalElsewhere refuses a global network the name of a local
// network of any host: there, the name would find the local one, and the
// global one only by its ID.
func (c *Controller) nameLocalElsewhere(ctx context.Context, name string) error {
	var host string
	err := c.kv.list(ctx, namePrefix+scopeLocal+"/", func(key string, _ uint64, _ []byte) error {
		rest := strings.TrimPrefix(key, namePrefix+scopeLocal+"/")
		if h, n, ok := strings.Cut(rest, "/"); ok && n == name && host == "" {
			host = h
		}
		return nil
	})
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return err
	}
	if host != "" {
		return errorf(sdk.ErrExists, "name: host %s has a local network named %q; a global network of that name would be found there only by its ID", host, name)
	}
	return nil
}

// persist writes, in one transaction, the network's record, its name,
// its VNI and its address pools, once no network has its name; retried
// on a lost race. A crash after it leaves a network the driver has not
// set up: Start's driver replay sets it up.
func (nc *netCreation) persist(ctx context.Context) error {
	c, n := nc.c, nc.n
	for _, key := range []string{c.localNameKey(n.Name), globalNameKey(n.Name)} {
		if _, err := c.kv.get(ctx, key, new(string)); err == nil {
			return errorf(sdk.ErrExists, "name: a network named %q already exists", n.Name)
		} else if !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
	}
	if n.Scope == scopeGlobal {
		if err := c.nameLocalElsewhere(ctx, n.Name); err != nil {
			return err
		}
	}
	ops := []*pb.TxnOp{nil, cas(c.nameKeyOf(n), 0, n.ID)} // the record goes first, once complete
	if needsVNI(n.Scope, nc.caps) {
		op, err := c.vniOp(ctx, n, nc.vni)
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	pops, err := nc.requestPools(ctx)
	if err != nil {
		return err
	}
	ops = append(ops, pops...)
	ops[0] = cas(networkKey(n.ID), 0, n) // now with its VNI and pools
	res, err := c.kv.txnResults(ctx, ops...)
	if err == nil {
		c.kv.nets.put(n, indexOf(res, networkKey(n.ID)))
		c.noteNetworkDNS(n, indexOf(res, networkKey(n.ID)))
	}
	return err
}

// requestPools sets the network's address pools (none when its driver
// uses no addresses) and returns the store writes that reserve them.
func (nc *netCreation) requestPools(ctx context.Context) ([]*pb.TxnOp, error) {
	n := nc.n
	n.IPv4, n.IPv6 = nil, nil
	if !nc.caps.GetNeedsAddresses() {
		return nil, nil
	}
	var reqs []ipam.PoolRequest
	if !nc.noV4 {
		reqs = append(reqs, ipam.PoolRequest{NetworkID: n.ID, Subnet: nc.subnet, Gateway: nc.gateway, Range: nc.ipRange, Aux: nc.aux})
	}
	if n.EnableIPv6 {
		reqs = append(reqs, ipam.PoolRequest{NetworkID: n.ID, Subnet: nc.subnet6, Gateway: nc.gateway6, Range: nc.ipRange6, V6: true, Aux: nc.aux6})
	}
	pools, pops, err := nc.c.ipam.RequestPools(ctx, reqs)
	if oe := (*ipam.OverlapError)(nil); errors.As(err, &oe) {
		var other Network
		if _, err := nc.c.kv.get(ctx, networkKey(oe.NetworkID), &other); err == nil {
			oe.NetworkName = other.Name
			if !nc.c.mine(&other) {
				// Not one this host lists: say whose, and why it counts.
				oe.NetworkName = fmt.Sprintf("%s, a local network of host %s (hosts that share a store keep their subnets apart)", other.Name, other.HostID)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	for _, p := range pools {
		if p.Subnet.Addr().Is6() {
			n.IPv6 = []IPAMConfig{{Subnet: p.Subnet, Gateway: p.Gateway, Range: p.Range, AuxAddresses: nc.aux6}}
		} else {
			n.IPv4 = []IPAMConfig{{Subnet: p.Subnet, Gateway: p.Gateway, Range: p.Range, AuxAddresses: nc.aux}}
		}
	}
	return pops, nil
}

// callDriver has the driver set the stored network up. It may assume
// persist wrote the records. If the call fails, the driver is told to
// delete the network, since it may have set part of it up (or all of it,
// the call cut short by the request's end: a bridge no record owns),
// and the records go again, both undone with a context the request's
// end does not cancel.
func (nc *netCreation) callDriver(ctx context.Context) (err error) {
	c, n := nc.c, nc.n
	u := newUndo(c.log, "network", n.Name)
	defer u.RunIf(ctx, &err)
	u.Push("network record", func(ctx context.Context) error { return c.removeNetwork(ctx, n, 0) })
	u.Push("driver's network", func(ctx context.Context) error {
		return nc.d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: c.netProto(n)})
	})
	if err := nc.d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: c.netProto(n)}); err != nil {
		return fmt.Errorf("driver %q creating network %s: %w", n.Driver, n.Name, err)
	}
	if n.Scope == scopeGlobal {
		// Set up here: a deletion on another host tears it down here
		// too (watchGlobal), as on the hosts that set it up later.
		c.mu.Lock()
		c.onHost[n.ID] = n
		c.mu.Unlock()
		c.peers.resync(ctx, n.ID)
	}
	return nil
}

// removeNetwork deletes a network's record, name and pools in one
// transaction, with the checks given; with idx (not 0), only the record
// as it was at idx. The addresses go first, each pool's only while the
// pool is still the network's. A record another host's delete removed
// meanwhile is not found: the check at idx can never pass again, and is
// not retried.
func (c *Controller) removeNetwork(ctx context.Context, n *Network, idx uint64, checks ...*pb.TxnOp) error {
	c.kv.nets.forget(n.ID)
	c.forgetNetworkDNS(n.ID)
	c.names.forgetNetwork(n.ID)
	for _, p := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
		if err := c.ipam.ClearAddresses(ctx, p.Subnet, n.ID); err != nil {
			return err
		}
	}
	return retry(ctx, "removing network "+n.Name, func() error {
		ops := slices.Clone(checks)
		if idx != 0 {
			ops = append(ops, check(networkKey(n.ID), idx))
		}
		ops = append(ops, del(networkKey(n.ID)))
		if n.VNI != 0 {
			var holder string
			if _, err := c.kv.get(ctx, vniKey(n.VNI), &holder); err == nil && holder == n.ID {
				ops = append(ops, del(vniKey(n.VNI)))
			}
		}
		var cur string
		if _, err := c.kv.get(ctx, c.nameKeyOf(n), &cur); err == nil && cur == n.ID {
			ops = append(ops, del(c.nameKeyOf(n)))
		}
		for _, p := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
			ops = append(ops, c.ipam.ReleasePool(p.Subnet)...)
		}
		if err := c.kv.txn(ctx, ops...); err != nil {
			if idx != 0 && isConflict(err) {
				switch now, gerr := c.kv.get(ctx, networkKey(n.ID), &Network{}); {
				case errors.Is(gerr, sdk.ErrNotFound):
					return errorf(sdk.ErrNotFound, "network %s was deleted meanwhile (by another host)", n.Name)
				case gerr == nil && now != idx:
					return errorf(sdk.ErrConflict, "network %s changed while it was being deleted; try again", n.Name)
				}
			}
			return err
		}
		for _, p := range append(append([]IPAMConfig{}, n.IPv4...), n.IPv6...) {
			c.ipam.PoolReleased(p.Subnet)
		}
		return nil
	})
}

// network returns the network with that ID or name, with its index, as
// the store has it now, and remembers it in the cache.
func (c *Controller) network(ctx context.Context, ref string) (*Network, uint64, error) {
	if ref == "" {
		return nil, 0, errorf(sdk.ErrInvalid, "network: empty network name or ID")
	}
	// Names are looked up first unless ref has the form of an ID: a
	// lookup that misses costs a store round trip.
	byName := !isID(ref)
	for range 2 {
		var n *Network
		var idx uint64
		var err error
		if byName {
			n, idx, err = c.networkByName(ctx, ref)
		} else {
			n, idx, err = c.networkByID(ctx, ref)
		}
		if !errors.Is(err, sdk.ErrNotFound) {
			return n, idx, err
		}
		byName = !byName
	}
	return c.networkByIDPrefix(ctx, ref)
}

// networkByIDPrefix finds the network whose ID starts with ref, as Docker
// takes the 12-character IDs `network ls` prints: the last resort of
// network, after names and whole IDs. A prefix is at least those 12
// characters, so that a short name that is no network's (a CNI config's
// network, deleted) never lands on a network whose ID happens to start so.
func (c *Controller) networkByIDPrefix(ctx context.Context, ref string) (*Network, uint64, error) {
	if !isIDPrefix(ref) || isID(ref) {
		return nil, 0, errorf(sdk.ErrNotFound, "network %q not found", ref)
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		return nil, 0, err
	}
	var ids []string
	for _, n := range nets {
		if strings.HasPrefix(n.ID, ref) {
			ids = append(ids, n.ID)
		}
	}
	switch len(ids) {
	case 0:
		return nil, 0, errorf(sdk.ErrNotFound, "network %q not found", ref)
	case 1:
		return c.networkByID(ctx, ids[0])
	}
	return nil, 0, errorf(sdk.ErrInvalid, "network %q is ambiguous: the IDs of %d networks start with it; give more of the ID", ref, len(ids))
}

func (c *Controller) networkByID(ctx context.Context, id string) (*Network, uint64, error) {
	var n Network
	idx, err := c.kv.get(ctx, networkKey(id), &n)
	if err != nil {
		return nil, 0, err
	}
	if !c.mine(&n) {
		return nil, 0, errorf(sdk.ErrNotFound, "network %q is local to another host", id)
	}
	c.kv.nets.put(&n, idx)
	c.noteNetworkDNS(&n, idx)
	return &n, idx, nil
}

// networkByName finds a name among this host's local networks first,
// then among the global ones.
func (c *Controller) networkByName(ctx context.Context, name string) (*Network, uint64, error) {
	var id string
	_, err := c.kv.get(ctx, c.localNameKey(name), &id)
	if errors.Is(err, sdk.ErrNotFound) {
		_, err = c.kv.get(ctx, globalNameKey(name), &id)
	}
	if err != nil {
		return nil, 0, err
	}
	n, idx, err := c.networkByID(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		// Deleted since its name was read: named as the caller named it.
		return nil, 0, errorf(sdk.ErrNotFound, "network %q not found", name)
	}
	return n, idx, err
}

// cachedNetwork is network answered from the cache when it can be: the
// record may since have been marked in-delete or deleted, which only its
// index tells (see netCache). fromCache says which it was.
func (c *Controller) cachedNetwork(ctx context.Context, ref string) (n *Network, idx uint64, fromCache bool, err error) {
	if n, idx, ok := c.kv.nets.get(ref); ok {
		return n, idx, true, nil
	}
	n, idx, err = c.network(ctx, ref)
	return n, idx, false, err
}

// stableNetwork returns network id for work on its existing endpoints: it
// reads only what never changes in a network's record (its driver, pools
// and options), and a network with endpoints is not deleted, so a cached
// record will do.
func (c *Controller) stableNetwork(ctx context.Context, id string) (*Network, error) {
	if n, _, ok := c.kv.nets.get(id); ok && n.ID == id {
		return n, nil
	}
	n, _, err := c.networkByID(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, errorf(sdk.ErrNotFound, "network %q not found", id)
	}
	return n, err
}

// isID reports whether ref has the form of a network ID (see newID).
func isID(ref string) bool {
	return len(ref) == 64 && strings.Trim(ref, "0123456789abcdef") == ""
}

// isIDPrefix reports whether ref can be the start of an ID as the CLI
// prints one: 12 or more of its hex digits, as Docker takes them. Fewer
// could be a short name that happens to start an ID.
func isIDPrefix(ref string) bool {
	return len(ref) >= 12 && len(ref) <= 64 && strings.Trim(ref, "0123456789abcdef") == ""
}

// netCache remembers network records by ID, each with the index it was
// read or written at, and the IDs of network names. A network's record
// changes when a delete marks it in-delete, and when its DNS servers
// change (UpdateNetworkDNS caches the new record; nothing else reads its
// DNS servers from here), and a name
// names one network until that network is gone: so a cached record has
// the record's content, and only its index (and whether the network still
// exists) may be out of date. Whoever needs the network to exist and not
// be in-delete checks the index in the transaction that relies on it (an
// endpoint create does, and starts over from the store if the check
// fails); the others read only what never changes. Deletes, and the
// API's reads, go to the store.
type netCache struct {
	mu    sync.Mutex
	byID  map[string]cachedNet
	names map[string]string // name → ID
}

type cachedNet struct {
	n   Network
	idx uint64
}

// get returns a copy of the network cached under ref, an ID or a name.
func (nc *netCache) get(ref string) (*Network, uint64, bool) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	e, ok := nc.byID[ref]
	if !ok {
		if e, ok = nc.byID[nc.names[ref]]; !ok {
			return nil, 0, false
		}
	}
	n := e.n
	return &n, e.idx, true
}

// put caches n at index idx; a network in-delete is forgotten instead.
func (nc *netCache) put(n *Network, idx uint64) {
	if n.InDelete {
		nc.forget(n.ID)
		return
	}
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if nc.byID == nil {
		nc.byID, nc.names = map[string]cachedNet{}, map[string]string{}
	}
	cp := *n
	cp.Endpoints = nil
	nc.byID[n.ID] = cachedNet{n: cp, idx: idx}
	nc.names[n.Name] = n.ID
}

// forget drops network id and its name.
func (nc *netCache) forget(id string) {
	nc.mu.Lock()
	defer nc.mu.Unlock()
	if e, ok := nc.byID[id]; ok {
		if nc.names[e.n.Name] == id {
			delete(nc.names, e.n.Name)
		}
		delete(nc.byID, id)
	}
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
		if c.mine(&n) {
			out = append(out, &n)
		}
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

// holders names the containers of eps, the first few: a stub's with
// "(stub)" and a note on what claims or removes it, another host's with
// that host.
func (c *Controller) holders(eps []Endpoint) string {
	const most = 5
	var names []string
	stubs := false
	c.mu.Lock() // the sandboxes and their stub flags
	for i, ep := range eps {
		if i == most {
			names = append(names, fmt.Sprintf("and %d more", len(eps)-most))
			break
		}
		name := ep.Name
		switch op := c.sandboxes[ep.SandboxID]; {
		case op != nil && op.stub:
			name, stubs = op.sb.ContainerID()+" (stub)", true
		case op != nil:
			name = op.sb.ContainerID()
		case ep.HostID != "" && ep.HostID != c.cfg.HostID:
			name += " (host " + short(ep.HostID) + ")"
		}
		names = append(names, name)
	}
	c.mu.Unlock()
	out := "containers " + strings.Join(names, ", ")
	if stubs {
		out += "; a stub is a sandbox not claimed since the agent restarted, listed by `sandbox ls --all`: `sandbox rm` removes it now, else it goes after stub_grace_period"
	}
	return out
}

// DeleteNetwork deletes a network that has no endpoints. It marks the
// record in-delete first, so endpoint creates racing with it fail and a
// crash midway is finished on restart. Deletes of one network in this
// agent take turns: of two at once, the second finds it gone (404), or,
// should the first have withdrawn its mark because a container connected
// meanwhile, refused for that container (409).
func (c *Controller) DeleteNetwork(ctx context.Context, ref string) error {
	ctx = finishing(ctx) // its mark as well: a mark that lands unheard would strand it
	first, _, err := c.network(ctx, ref)
	if err != nil {
		return err
	}
	unlock, err := c.lockNetworkDelete(ctx, first.ID)
	if err != nil {
		return err
	}
	defer unlock()
	var n *Network
	err = retry(ctx, "deleting network "+ref, func() error {
		var idx uint64
		var err error
		if n, idx, err = c.network(ctx, first.ID); err != nil {
			return err
		}
		if n.InDelete {
			// No delete of this agent is at it: one stopped midway (or
			// another host's is under way). Finished here, unless
			// endpoints hold the network: then its mark is withdrawn.
			return c.refuseIfEndpoints(ctx, n)
		}
		if err := c.refuseIfEndpoints(ctx, n); err != nil {
			return err
		}
		n.InDelete = true
		c.kv.nets.forget(n.ID)
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

// refuseIfEndpoints refuses the delete of a network that has endpoints,
// naming their containers: stubs (sandboxes not claimed since the agent
// restarted, which `sandbox ls` leaves out) and other hosts' are marked,
// so that the user finds what holds the network.
func (c *Controller) refuseIfEndpoints(ctx context.Context, n *Network) error {
	eps, err := c.endpoints(ctx, n.ID)
	if err != nil {
		return err
	}
	if len(eps) > 0 {
		return errorf(sdk.ErrConflict, "network %s has %d endpoint(s) (%s); disconnect them first", n.Name, len(eps), c.holders(eps))
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

// lockNetworkDelete waits until no other DeleteNetwork of this agent is at
// network id, then holds it until the returned function is called.
func (c *Controller) lockNetworkDelete(ctx context.Context, id string) (func(), error) {
	for {
		c.mu.Lock()
		busy, ok := c.netDeletes[id]
		if !ok {
			done := make(chan struct{})
			c.netDeletes[id] = done
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				delete(c.netDeletes, id)
				c.mu.Unlock()
				close(done)
			}, nil
		}
		c.mu.Unlock()
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// finishNetworkDelete tears a network marked in-delete down in the driver
// and removes its records. The record must still be marked: a mark
// withdrawn since (a container connected) fails it with a conflict before
// anything is torn down, and the record is removed only as it was when
// checked.
func (c *Controller) finishNetworkDelete(ctx context.Context, n *Network) error {
	var cur Network
	idx, err := c.kv.get(ctx, networkKey(n.ID), &cur)
	if err != nil {
		return fmt.Errorf("deleting network %s: %w", n.Name, err)
	}
	if !cur.InDelete {
		return errorf(sdk.ErrConflict, "network %s: its delete was withdrawn (a container connected to it meanwhile)", n.Name)
	}
	d, _, err := c.driver(ctx, n.Driver)
	if err != nil {
		return fmt.Errorf("deleting network %s: %w", n.Name, err)
	}
	c.mu.Lock()
	delete(c.onHost, n.ID) // torn down here: the store watch need not
	pool := c.pool
	c.mu.Unlock()
	pool.Forget(n.ID) // spares prepared for it hold its ports
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: c.netProto(n)}); err != nil {
		return fmt.Errorf("driver %q deleting network %s: %w", n.Driver, n.Name, err)
	}
	if err := c.removeNetwork(ctx, n, idx); err != nil {
		return err
	}
	c.log.Info("network deleted", "name", n.Name, "id", short(n.ID))
	return nil
}
