package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/osl"
)

// Options are a sandbox's settings, given when it is created and changed
// only by Refresh.
type Options struct {
	Hostname   string `json:"hostname,omitempty"`
	DomainName string `json:"domain_name,omitempty"`
	// HostMode shares the host's network namespace instead of creating one.
	HostMode bool `json:"host_mode,omitempty"`
	// ExternalKey: the container runtime makes the namespace and hands it
	// over with SetKey.
	ExternalKey bool `json:"external_key,omitempty"`
	// Ingress marks the one ingress sandbox.
	Ingress bool `json:"ingress,omitempty"`
	// DNS servers, search domains and options for resolv.conf; empty means
	// the host's.
	DNS        []netip.Addr `json:"dns,omitempty"`
	DNSSearch  []string     `json:"dns_search,omitempty"`
	DNSOptions []string     `json:"dns_options,omitempty"`
	// ExtraHosts are added to the hosts file.
	ExtraHosts []HostEntry `json:"extra_hosts,omitempty"`
}

// HostEntry is one extra line of the hosts file: Name at IP, or, with
// HostGateway, at the host as the container reaches it — the gateway of
// its default route, IPv4 and IPv6 (Docker's and Podman's
// "host-gateway"), which follows the sandbox's networks; no line while
// it has no gateway (no network yet, or only internal ones).
type HostEntry struct {
	Name        string     `json:"name"`
	IP          netip.Addr `json:"ip,omitzero"`
	HostGateway bool       `json:"host_gateway,omitempty"`
}

// Route is a static route an endpoint adds inside the sandbox.
type Route struct {
	Dst     netip.Prefix `json:"dst"`
	NextHop netip.Addr   `json:"next_hop,omitzero"`
}

// Endpoint is what the sandbox knows of one of its endpoints.
type Endpoint struct {
	ID          string
	Name        string
	NetworkID   string
	NetworkName string
	// IfName is the interface's name inside the sandbox; empty when the
	// driver gave the endpoint no interface.
	IfName    string
	MAC       net.HardwareAddr
	Addr      netip.Prefix
	AddrV6    netip.Prefix
	Gateway   netip.Addr
	GatewayV6 netip.Addr
	Routes    []Route
	Priority  int
	Internal  bool
	Aliases   []string
	// HostIfName is the host's end of the interface (a veth pair's other
	// end), as the driver's join said; the API shows it.
	HostIfName string
	// Resolver is the address of the embedded resolver that the
	// endpoint's runtime was given, when it was given one of its own
	// (controller.Endpoint.Resolver); the resolver answers on it as on
	// 127.0.0.11 while the endpoint is joined.
	Resolver netip.Addr
	// Leaving marks an endpoint whose removal failed part-way: its
	// interface is gone (IfName is empty), its record may still name the
	// sandbox, and a retried removal or the driver's replay finishes it.
	Leaving bool
}

// Sandbox is one container's network stack.
//
// Two locks, always taken in this order, guard it (fmu, for the
// resolution files, is taken before mu and never with nsMu):
//
//   - nsMu serializes changes to the namespace (interfaces, addresses,
//     routes): it is held across the netlink calls and the wait for a
//     link to come up, and by nothing else.
//   - mu guards the fields below it. It is a leaf held only to read or
//     update them, never across a netlink call or a wait, so listings and
//     lookups never wait for the kernel. Helpers that expect it held end
//     in Locked.
type Sandbox struct {
	id          string     // fixed
	containerID string     // fixed
	dir         string     // fixed: resolv.conf and hosts live here
	hostResolv  ResolvConf // fixed

	// fmu serializes writing the resolution files; written (guarded by
	// fmu) is what was written last.
	fmu     sync.Mutex
	written struct{ resolv, hosts []byte }

	nsMu sync.Mutex // serializes namespace changes; see above

	mu          sync.Mutex // guards all following fields
	opts        Options
	key         string
	ns          *osl.Namespace
	eps         []*Endpoint // ordered: see less
	embeddedDNS bool        // an embedded resolver serves 127.0.0.11
	reaping     bool        // a deletion of retired interfaces is scheduled
	// gateways are the default routes the namespace is known to have,
	// IPv4 then IPv6, so that re-picking them touches only what changes.
	// Written only with nsMu held too, so a holder of nsMu may read them
	// without mu.
	gateways [2]gateway
	// configured is the interface PrepareInterface set up ahead of its
	// AddInterface, with how; ready when it already carried traffic.
	configured *preconfigured
}

// preconfigured is what PrepareInterface did.
type preconfigured struct {
	cfg   osl.InterfaceConfig
	ready bool
}

// gateway is what a sandbox knows of one family's default route.
type gateway struct {
	known bool   // false: whatever the namespace has
	via   string // "GW dev IFNAME"; "" for none
}

// embeddedDNSAddr is where a sandbox's embedded resolver listens.
var embeddedDNSAddr = netip.MustParseAddr("127.0.0.11")

// SetEmbeddedDNS says whether the sandbox's resolver runs: its
// resolv.conf then names 127.0.0.11 (the resolver forwards to the servers
// the file would otherwise name).
func (s *Sandbox) SetEmbeddedDNS(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.embeddedDNS = on
}

// New returns a sandbox with no namespace yet (SetNamespace gives it one)
// whose resolution files will live in dir. hostResolv is the host's
// resolv.conf, which the sandbox's follows unless opts says otherwise.
func New(id, containerID string, opts Options, dir string, hostResolv ResolvConf) *Sandbox {
	return &Sandbox{id: id, containerID: containerID, opts: opts, dir: dir, hostResolv: hostResolv}
}

// ID returns the sandbox's ID.
func (s *Sandbox) ID() string { return s.id }

// ContainerID returns the ID of the container the sandbox belongs to.
func (s *Sandbox) ContainerID() string { return s.containerID }

// Options returns the sandbox's options.
func (s *Sandbox) Options() Options {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opts
}

// SetOptions replaces the sandbox's options (Refresh).
func (s *Sandbox) SetOptions(o Options) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts = o
}

// SetNamespace gives the sandbox its namespace and key.
func (s *Sandbox) SetNamespace(key string, ns *osl.Namespace) {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.ns = key, ns
	s.gateways = [2]gateway{}
}

// SetNewNamespace is SetNamespace for a namespace just made, which has no
// routes yet.
func (s *Sandbox) SetNewNamespace(key string, ns *osl.Namespace) {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.ns = key, ns
	s.gateways = [2]gateway{{known: true}, {known: true}}
}

// Key returns the path of the sandbox's namespace; empty while an external
// key has not been set.
func (s *Sandbox) Key() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// Namespace returns the sandbox's namespace, or nil.
func (s *Sandbox) Namespace() *osl.Namespace {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ns
}

// Do runs fn inside the sandbox's namespace on a locked OS thread.
func (s *Sandbox) Do(fn func() error) error {
	ns := s.Namespace()
	if ns == nil {
		return fmt.Errorf("sandbox %s has no namespace yet: %w", s.id, osl.ErrClosed)
	}
	return ns.Do(fn)
}

// Endpoints returns copies of the sandbox's endpoints, highest priority
// first.
func (s *Sandbox) Endpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Endpoint, len(s.eps))
	for i, ep := range s.eps {
		out[i] = *ep
	}
	return out
}

// InterfaceStats returns the counters of the endpoints' interfaces, by
// endpoint ID (none for an endpoint without an interface, nor without a
// namespace). Neither lock is held across the kernel's dump.
func (s *Sandbox) InterfaceStats() (map[string]osl.LinkStats, error) {
	s.mu.Lock()
	ns := s.ns
	byName := map[string]string{}
	for _, ep := range s.eps {
		if ep.IfName != "" {
			byName[ep.IfName] = ep.ID
		}
	}
	s.mu.Unlock()
	if ns == nil || len(byName) == 0 {
		return nil, nil
	}
	all, err := ns.Stats()
	if err != nil {
		return nil, err
	}
	out := make(map[string]osl.LinkStats, len(byName))
	for name, id := range byName {
		if st, ok := all[name]; ok {
			out[id] = st
		}
	}
	return out, nil
}

// Endpoint returns a copy of the endpoint with that ID.
func (s *Sandbox) Endpoint(id string) (Endpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.eps {
		if ep.ID == id {
			return *ep, true
		}
	}
	return Endpoint{}, false
}

// less orders endpoints as libnetwork does: higher priority first, then
// endpoints on networks with a way out before internal ones, then by
// network name.
func less(a, b *Endpoint) int {
	if c := cmp.Compare(b.Priority, a.Priority); c != 0 {
		return c
	}
	if a.Internal != b.Internal {
		if !a.Internal {
			return -1
		}
		return 1
	}
	return cmp.Compare(a.NetworkName, b.NetworkName)
}

// Restore records an endpoint whose interface is already in the namespace
// (an agent restart): nothing in the namespace is touched.
func (s *Sandbox) Restore(ep Endpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.insertLocked(&ep)
}

// insertLocked records ep in order; mu held.
func (s *Sandbox) insertLocked(ep *Endpoint) {
	s.eps = append(s.eps, ep)
	slices.SortStableFunc(s.eps, less)
}

// AddInterface puts the interface a driver's Join handed over into the
// sandbox: it moves src in unless the driver created it inside
// (inSandbox), names it ep.IfName or, when that is empty, dstPrefix plus
// the first free number, sets the endpoint's MAC and addresses, adds its
// routes, waits (within ctx, and at most readyTimeout) until the link
// carries packets, and re-picks the default gateway. An empty src adds
// the endpoint with no interface. On failure the interface is removed
// again and the sandbox is as before. It returns the endpoint as
// recorded, with IfName set.
func (s *Sandbox) AddInterface(ctx context.Context, ep Endpoint, host *netlink.Handle, src string, inSandbox bool, dstPrefix string) (Endpoint, error) {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	if e := s.findLocked(ep.ID); e != nil {
		if e.HostIfName == "" {
			e.HostIfName = ep.HostIfName // a prepared interface's join
		}
		s.mu.Unlock()
		return *e, nil // a replayed join
	}
	if src == "" {
		s.insertLocked(&ep)
		s.mu.Unlock()
		return ep, nil
	}
	ns := s.ns
	if dstPrefix == "" {
		dstPrefix = DefaultIfPrefix
	}
	if ep.IfName == "" {
		ep.IfName = s.nextNameLocked(dstPrefix)
	}
	pre := s.configured
	s.configured = nil
	s.mu.Unlock()
	if ns == nil {
		return ep, fmt.Errorf("sandbox %s has no namespace yet: %w", s.id, osl.ErrClosed)
	}
	if !inSandbox {
		if err := ns.MoveLinkIn(host, src); err != nil {
			return ep, err
		}
	}
	cfg := interfaceConfig(ep, src)
	if pre == nil || !inSandbox || !sameConfig(pre.cfg, cfg) {
		if pre != nil {
			// Configured again (the driver's answer differs: say, the MAC
			// it picked for an IPv6-only endpoint), the link goes down,
			// and the default routes PrepareInterface set through it with
			// it: they are no longer known to be there.
			s.mu.Lock()
			s.gateways = [2]gateway{}
			s.mu.Unlock()
		}
		pre = nil
		err := ns.ConfigureInterface(cfg)
		if errors.Is(err, fs.ErrExist) && ns.ReleaseName(ep.IfName) == nil {
			// An interface retired by RemoveInterface held the name.
			err = ns.ConfigureInterface(cfg)
		}
		if err != nil {
			_ = ns.RemoveInterface(src)
			return ep, err
		}
	}
	if err := s.finishInterface(ctx, ns, ep, pre); err != nil {
		_ = ns.RemoveInterface(ep.IfName)
		s.mu.Lock()
		s.gateways = [2]gateway{} // whatever routes went with the interface
		s.mu.Unlock()
		return ep, err
	}
	return ep, nil
}

// finishInterface is the end of AddInterface, for an interface configured
// in ns: its routes, the wait for it to carry packets (unless pre says it
// already did), the endpoint recorded and the default gateway re-picked.
// On failure the endpoint is not recorded. nsMu is held.
func (s *Sandbox) finishInterface(ctx context.Context, ns *osl.Namespace, ep Endpoint, pre *preconfigured) error {
	if err := addRoutes(ns, &ep); err != nil {
		return err
	}
	// A container started right after a join must not lose its first
	// packets.
	if pre == nil || !pre.ready {
		if err := waitReady(ctx, ns, ep); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.insertLocked(&ep)
	s.mu.Unlock()
	if err := s.updateGateway(); err != nil {
		s.mu.Lock()
		s.removeLocked(ep.ID)
		s.mu.Unlock()
		_ = s.updateGateway()
		return err
	}
	return nil
}

// waitReady waits, within ctx and at most readyTimeout, until ep's
// interface in ns can carry packets (operationally up, IPv6 addresses
// routable).
func waitReady(ctx context.Context, ns *osl.Namespace, ep Endpoint) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if ep.AddrV6.IsValid() {
		return ns.WaitInterfaceReady(ctx, ep.IfName)
	}
	return ns.WaitLinkUp(ctx, ep.IfName)
}

// interfaceConfig is how AddInterface configures the interface src for
// ep, ep.IfName its name in the sandbox.
func interfaceConfig(ep Endpoint, src string) osl.InterfaceConfig {
	// An interface the host addresses with IPv4 only gets no IPv6
	// link-local address either (as Docker does for IPv4-only networks).
	noLL := ep.Addr.IsValid() && !ep.AddrV6.IsValid()
	return osl.InterfaceConfig{SrcName: src, DstName: ep.IfName, MAC: ep.MAC, Addresses: ep.addresses(), NoIPv6LinkLocal: noLL}
}

// sameConfig says whether two configurations set the same.
func sameConfig(a, b osl.InterfaceConfig) bool {
	return a.SrcName == b.SrcName && a.DstName == b.DstName && bytes.Equal(a.MAC, b.MAC) && a.MTU == b.MTU &&
		a.NoIPv6LinkLocal == b.NoIPv6LinkLocal &&
		slices.EqualFunc(a.Addresses, b.Addresses, func(x, y *net.IPNet) bool { return x.String() == y.String() })
}

// PrepareInterface configures ahead of its AddInterface the interface
// src a driver made inside the namespace and will answer its join with
// (PrepareResponse.src_name): ep's MAC and addresses, up, under the name
// the sandbox's next interface gets; with peerUp (the driver's side is up
// already: PrepareResponse.up) it also waits for the link to carry
// packets and, for the sandbox's first interface, sets the default routes
// through ep's gateways, those the caller expects the answer to give. It
// runs beside the driver's call; the AddInterface that follows (for src,
// in the sandbox, with the same configuration) then only adds the
// answer's static routes, and changes the default routes if the answer's
// gateways differ. On failure the interface is left as it was.
func (s *Sandbox) PrepareInterface(ctx context.Context, ep Endpoint, src string, peerUp bool) error {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	ns := s.ns
	ep.IfName = s.nextNameLocked(DefaultIfPrefix)
	first := len(s.eps) == 0 && s.gateways == [2]gateway{{known: true}, {known: true}} // a new namespace
	s.mu.Unlock()
	if ns == nil {
		return fmt.Errorf("sandbox %s has no namespace yet: %w", s.id, osl.ErrClosed)
	}
	if ep.IfName != src {
		return fmt.Errorf("sandbox %s: prepared interface %s would be renamed %s: %w", s.id, src, ep.IfName, osl.ErrInvalid)
	}
	cfg := interfaceConfig(ep, src)
	if err := ns.ConfigureInterface(cfg); err != nil {
		return err
	}
	// When the driver has brought its side up already (peerUp), the link
	// is waited for here too, and the first interface's default routes
	// (through the gateways the caller expects the answer to give) set;
	// one that fails is left to AddInterface, as is any the answer
	// changes.
	pre := &preconfigured{cfg: cfg, ready: peerUp && waitReady(ctx, ns, ep) == nil}
	set := s.gateways // nsMu held: no one else writes them
	first = first && pre.ready
	if first {
		for i, gw := range []netip.Addr{ep.Gateway, ep.GatewayV6} {
			if gw.IsValid() {
				set[i], _ = routeVia(ns, gw, src)
			}
		}
	}
	s.mu.Lock()
	s.configured = pre
	s.gateways = set
	s.mu.Unlock()
	return nil
}

// Reapply makes the namespace carry the sandbox's endpoints again after an
// agent restart that may have cut a join short: each endpoint's interface
// gets the addresses it is missing and comes up, its routes are set and
// the default gateway re-picked. Endpoints whose interface is not there at
// all are dropped from the sandbox (as Forget does) and their IDs
// returned, for the caller to remove.
func (s *Sandbox) Reapply() (missing []string, err error) {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	ns, hostMode := s.ns, s.opts.HostMode
	eps := make([]Endpoint, 0, len(s.eps))
	for _, ep := range s.eps {
		eps = append(eps, *ep)
	}
	s.mu.Unlock()
	if ns == nil || hostMode {
		return nil, nil
	}
	var errs []error
	for _, ep := range eps {
		if ep.IfName == "" {
			continue
		}
		if err := ns.EnsureInterface(ep.IfName, ep.addresses()); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, ep.ID)
		} else if err != nil {
			errs = append(errs, err)
		} else if err := addRoutes(ns, &ep); err != nil {
			errs = append(errs, err)
		}
	}
	s.mu.Lock()
	for _, id := range missing {
		s.removeLocked(id)
	}
	s.gateways = [2]gateway{}
	s.mu.Unlock()
	errs = append(errs, s.updateGateway())
	return missing, errors.Join(errs...)
}

// addresses returns the endpoint's addresses as netlink takes them.
func (ep *Endpoint) addresses() []*net.IPNet {
	var out []*net.IPNet
	for _, p := range []netip.Prefix{ep.Addr, ep.AddrV6} {
		if p.IsValid() {
			out = append(out, &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
		}
	}
	return out
}

// addRoutes adds (or replaces) the endpoint's static routes through its
// interface in ns.
func addRoutes(ns *osl.Namespace, ep *Endpoint) error {
	for _, r := range ep.Routes {
		dst := &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())}
		var gw net.IP
		if r.NextHop.IsValid() {
			gw = r.NextHop.AsSlice()
		}
		if err := ns.AddRoute(dst, gw, ep.IfName); err != nil {
			return err
		}
	}
	return nil
}

// readyTimeout bounds the wait for a new interface to carry packets.
const readyTimeout = 5 * time.Second

// DefaultIfPrefix names a sandbox's interfaces when the driver gives no
// prefix: eth0, eth1, …
const DefaultIfPrefix = "eth"

// NextIfName returns the name AddInterface would give the next interface
// with that prefix.
func (s *Sandbox) NextIfName(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nextNameLocked(prefix)
}

// nextNameLocked returns prefix plus the lowest number no endpoint uses;
// mu held.
func (s *Sandbox) nextNameLocked(prefix string) string {
	for i := 0; ; i++ {
		name := prefix + strconv.Itoa(i)
		if !slices.ContainsFunc(s.eps, func(e *Endpoint) bool { return e.IfName == name }) {
			return name
		}
	}
}

// findLocked returns the endpoint with that ID, or nil; mu held.
func (s *Sandbox) findLocked(id string) *Endpoint {
	for _, e := range s.eps {
		if e.ID == id {
			return e
		}
	}
	return nil
}

// removeLocked drops the endpoint with that ID and returns it, or nil;
// mu held.
func (s *Sandbox) removeLocked(id string) *Endpoint {
	for i, e := range s.eps {
		if e.ID == id {
			s.eps = slices.Delete(s.eps, i, i+1)
			return e
		}
	}
	return nil
}

// RemoveInterface forgets the endpoint, takes its interface out of service
// if it is still there (down, without addresses: the container no longer
// has it) and re-picks the default gateway. The interface itself is
// deleted later — by its driver (a veth pair goes with its host end), by
// the sandbox retiredDelay after, or with the namespace, whichever comes
// first — as deleting a live link costs the kernel tens of milliseconds.
// Until then its name stays taken (AddInterface frees it when it needs
// it), but in a namespace a runtime owns (ExternalKey), where another
// plugin may make a link of that name as soon as the detach answers: there
// it is renamed at once. A missing endpoint is not an error.
func (s *Sandbox) RemoveInterface(id string) error {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	ep, ns, runtimes := s.removeLocked(id), s.ns, s.opts.ExternalKey
	s.mu.Unlock()
	if ep == nil {
		return nil
	}
	if ep.IfName != "" && ns != nil {
		if err := s.retireNsLocked(ns, ep.IfName, runtimes); err != nil {
			return err
		}
	}
	return s.updateGateway()
}

// retireNsLocked takes interface name of namespace ns out of service and
// has it deleted later (deleteRetiredLaterLocked); release frees its name
// at once. nsMu held.
func (s *Sandbox) retireNsLocked(ns *osl.Namespace, name string, release bool) error {
	if err := ns.RetireInterface(name, release); err != nil {
		return err
	}
	s.mu.Lock()
	s.deleteRetiredLaterLocked()
	s.mu.Unlock()
	return nil
}

// DiscardInterface takes an interface no endpoint owns (one a driver
// prepared that no attach took) out of service, as RemoveInterface does
// an endpoint's: it is deleted later, and its name is free for a new
// interface at once. A missing interface, or no namespace, is not an
// error.
func (s *Sandbox) DiscardInterface(name string) error {
	s.nsMu.Lock()
	defer s.nsMu.Unlock()
	s.mu.Lock()
	ns := s.ns
	s.mu.Unlock()
	if ns == nil {
		return nil
	}
	return s.retireNsLocked(ns, name, false)
}

// retiredDelay is how long retired interfaces wait for their driver, or
// the namespace's end, before the sandbox deletes them itself.
const retiredDelay = time.Second

// deleteRetiredLaterLocked deletes the namespace's retired interfaces
// after retiredDelay, in one batch, unless the namespace is gone by then.
// mu held.
func (s *Sandbox) deleteRetiredLaterLocked() {
	if s.reaping {
		return
	}
	s.reaping = true
	ns := s.ns
	time.AfterFunc(retiredDelay, func() {
		s.nsMu.Lock()
		defer s.nsMu.Unlock()
		s.mu.Lock()
		s.reaping = false
		current := s.ns == ns
		s.mu.Unlock()
		if current {
			// After Destroy or Close this is ErrClosed: nothing to do.
			_ = ns.DeleteRetired()
		}
	})
}

// Forget drops the endpoint from the sandbox without touching the
// namespace (the sandbox is being destroyed).
func (s *Sandbox) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(id)
}

// GatewayEndpoints returns the IDs of the endpoints whose gateways are
// the sandbox's IPv4 and IPv6 default routes, or "" for none.
func (s *Sandbox) GatewayEndpoints() (v4, v6 string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep := s.gatewayEPLocked(false); ep != nil {
		v4 = ep.ID
	}
	if ep := s.gatewayEPLocked(true); ep != nil {
		v6 = ep.ID
	}
	return v4, v6
}

func (s *Sandbox) gatewayEPLocked(v6 bool) *Endpoint {
	for _, ep := range s.eps {
		if ep.IfName == "" {
			continue
		}
		if (!v6 && ep.Gateway.IsValid()) || (v6 && ep.GatewayV6.IsValid()) {
			return ep
		}
	}
	return nil
}

// updateGateway points the default routes at the highest-priority
// endpoint that has a gateway, or removes them when none has. nsMu is
// held; mu is taken only to read the endpoints and record the routes.
func (s *Sandbox) updateGateway() error {
	s.mu.Lock()
	ns, hostMode, cur := s.ns, s.opts.HostMode, s.gateways
	var want [2]gateway // known: a route through via; otherwise none
	var dev [2]string
	var gws [2]netip.Addr
	for i, v6 := range []bool{false, true} {
		if ep := s.gatewayEPLocked(v6); ep != nil {
			gws[i], dev[i] = ep.Gateway, ep.IfName
			if v6 {
				gws[i] = ep.GatewayV6
			}
			want[i] = gateway{known: true, via: via(gws[i], dev[i])}
		}
	}
	s.mu.Unlock()
	if ns == nil || hostMode {
		return nil
	}
	for i, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var next gateway
		var err error
		switch {
		case !want[i].known && cur[i].known && cur[i].via == "":
			continue // none wanted, none there
		case !want[i].known:
			if err = ns.UnsetDefaultGateway(fam); err == nil {
				next = gateway{known: true}
			}
		case cur[i].known && cur[i].via == want[i].via:
			continue
		default:
			next, err = routeVia(ns, gws[i], dev[i])
		}
		s.mu.Lock()
		s.gateways[i] = next
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// via is how a sandbox records a default route through gw on dev.
func via(gw netip.Addr, dev string) string { return gw.String() + " dev " + dev }

// routeVia sets the default route of gw's family in ns through gw on dev
// and returns what the sandbox knows of that route then: nothing when
// setting it failed.
func routeVia(ns *osl.Namespace, gw netip.Addr, dev string) (gateway, error) {
	if err := ns.SetDefaultGateway(gw.AsSlice(), dev); err != nil {
		return gateway{}, err
	}
	return gateway{known: true, via: via(gw, dev)}, nil
}

// Rename renames the endpoint (its name, as other containers resolve it).
func (s *Sandbox) Rename(id, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.eps {
		if e.ID == id {
			e.Name = name
		}
	}
}

// ResolvConfPath and HostsPath are the files the container mounts.
func (s *Sandbox) ResolvConfPath() string { return filepath.Join(s.dir, "resolv.conf") }

// HostsPath is the sandbox's hosts file.
func (s *Sandbox) HostsPath() string { return filepath.Join(s.dir, "hosts") }

// WriteFiles (re)writes the sandbox's resolv.conf and hosts. A file whose
// content this sandbox wrote last is not written again.
func (s *Sandbox) WriteFiles() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.mu.Lock()
	rcv := s.resolvConfLocked()
	err := checkTokens("resolv.conf", rcv.Search, rcv.Options)
	if err == nil {
		err = checkTokens("hosts", s.hostNamesLocked())
	}
	rc, hosts := rcv.Bytes(), s.hostsLocked()
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", s.id, err)
	}
	if !bytes.Equal(rc, s.written.resolv) {
		s.written.resolv = nil
		if err := writeFile(s.ResolvConfPath(), rc); err != nil {
			return fmt.Errorf("writing resolv.conf of sandbox %s: %w", s.id, err)
		}
		s.written.resolv = rc
	}
	if !bytes.Equal(hosts, s.written.hosts) {
		s.written.hosts = nil
		if err := writeFile(s.HostsPath(), hosts); err != nil {
			return fmt.Errorf("writing hosts of sandbox %s: %w", s.id, err)
		}
		s.written.hosts = hosts
	}
	return nil
}

// resolvConfLocked is the host's resolv.conf with the sandbox's own DNS
// settings over it. Outside host mode, nameservers on the host's loopback
// are dropped: they cannot be reached from the sandbox's namespace. With
// the embedded resolver, 127.0.0.11 is the only nameserver and the
// options follow Docker's rules (embeddedOptions). mu held.
func (s *Sandbox) resolvConfLocked() ResolvConf {
	rc := ResolvConf{Search: s.hostResolv.Search, Options: s.hostResolv.Options}
	for _, ns := range s.hostResolv.Nameservers {
		if s.opts.HostMode || !ns.IsLoopback() {
			rc.Nameservers = append(rc.Nameservers, ns)
		}
	}
	if len(s.opts.DNS) > 0 {
		rc.Nameservers = s.opts.DNS
	}
	if s.embeddedDNS {
		rc.Nameservers = []netip.Addr{embeddedDNSAddr}
	}
	if len(s.opts.DNSSearch) > 0 {
		rc.Search = s.opts.DNSSearch
	}
	if len(s.opts.DNSOptions) > 0 {
		rc.Options = s.opts.DNSOptions
	}
	if s.embeddedDNS {
		rc.Options = embeddedOptions(rc.Options, len(s.opts.DNSOptions) > 0)
	}
	return rc
}

// embeddedOptions are the resolv.conf options of a sandbox served by the
// embedded resolver, as Docker writes them: the container's own options
// (own) as given, an ndots among them included; else the host's options
// without their ndots, which was chosen for the host's search domains, not
// for container names. Without an ndots of the container's, ndots:0 is
// added, so a container name is asked as it is first, answered at once,
// rather than after a round of search domains sent upstream.
func embeddedOptions(opts []string, own bool) []string {
	out := make([]string, 0, len(opts)+1)
	ndots := false
	for _, o := range opts {
		if strings.HasPrefix(o, "ndots:") {
			if !own {
				continue
			}
			ndots = true
		}
		out = append(out, o)
	}
	if !ndots {
		out = append(out, "ndots:0")
	}
	return out
}

// hostsLocked is the hosts file's content; mu held.
func (s *Sandbox) hostsLocked() []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	names := ""
	if h := s.opts.Hostname; h != "" {
		names = h
		if s.opts.DomainName != "" {
			names = h + "." + s.opts.DomainName + " " + h
		}
	}
	if names != "" {
		for _, ep := range s.eps {
			for _, p := range []netip.Prefix{ep.Addr, ep.AddrV6} {
				if p.IsValid() {
					fmt.Fprintf(&b, "%s\t%s\n", p.Addr(), names)
				}
			}
		}
	}
	for _, h := range s.opts.ExtraHosts {
		if !h.HostGateway {
			fmt.Fprintf(&b, "%s\t%s\n", h.IP, h.Name)
			continue
		}
		for _, v6 := range []bool{false, true} {
			if ep := s.gatewayEPLocked(v6); ep != nil {
				gw := ep.Gateway
				if v6 {
					gw = ep.GatewayV6
				}
				fmt.Fprintf(&b, "%s\t%s\n", gw, h.Name)
			}
		}
	}
	return b.Bytes()
}

// hostNamesLocked are the names the hosts file holds besides the fixed ones.
func (s *Sandbox) hostNamesLocked() []string {
	var names []string
	if h := s.opts.Hostname; h != "" {
		names = append(names, h)
		if s.opts.DomainName != "" {
			names = append(names, s.opts.DomainName)
		}
	}
	for _, h := range s.opts.ExtraHosts {
		names = append(names, h.Name)
	}
	return names
}

// RemoveFiles deletes the sandbox's resolution files and their directory.
func (s *Sandbox) RemoveFiles() error {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	s.written.resolv, s.written.hosts = nil, nil
	return os.RemoveAll(s.dir)
}

// String names the sandbox in errors and logs.
func (s *Sandbox) String() string {
	return fmt.Sprintf("sandbox %s (container %s)", shortID(s.id), s.containerID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return strings.TrimSpace(id)
}
