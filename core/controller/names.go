package controller

import (
	"net/netip"
	"strings"
	"sync"

	"github.com/sandnet/sandnet/core/resolver"
)

// nameIndex is the controller's service-discovery index: for every network,
// the names its joined endpoints answer to (endpoint name, sandbox
// hostname, aliases) and the reverse entries of their addresses. The
// embedded resolvers of all sandboxes read it on every query, so reads
// take only a read lock and return slices that are never changed after
// publication. Its lock is a leaf.
type nameIndex struct {
	mu   sync.RWMutex
	nets map[string]*netNames // by network ID
	byEP map[string]epNames   // by endpoint ID, for removal
	// held has, by network ID, the lowercase names that a connect or a
	// rename under way checked free and has not indexed yet: a second
	// one under such a name is refused as if it were indexed.
	held map[string]map[string]bool
}

type netNames struct {
	name string // the network's name, lowercase
	// owners maps each endpoint name (lowercase) to the endpoint that
	// has it: an endpoint's name is its own on a network (aliases and
	// hostnames may be shared).
	owners   map[string]string
	internal bool
	// single forwards single-label names (Network.DNSForwardSingleLabel).
	single bool
	v4, v6 map[string][]netip.Addr // name → addresses, copy-on-write
	ptr    map[netip.Addr]string   // address → "name.network."
}

// epNames is what one endpoint put in the index.
type epNames struct {
	netID string
	name  string // its endpoint name, lowercase (owners)
	names []string
	addrs []netip.Addr
}

func newNameIndex() *nameIndex {
	return &nameIndex{nets: map[string]*netNames{}, byEP: map[string]epNames{}, held: map[string]map[string]bool{}}
}

// add indexes a joined endpoint under its names on network n.
func (x *nameIndex) add(n *Network, ep *Endpoint, hostname string) {
	var addrs []netip.Addr
	for _, p := range []netip.Prefix{ep.Address, ep.AddressV6} {
		if p.IsValid() {
			addrs = append(addrs, p.Addr())
		}
	}
	if len(addrs) == 0 {
		return
	}
	var ns []string
	seen := map[string]bool{}
	for _, s := range append([]string{ep.Name, hostname}, ep.Aliases...) {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if s != "" && !seen[s] {
			seen[s] = true
			ns = append(ns, s)
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(ep.ID)
	nn := x.nets[n.ID]
	if nn == nil {
		nn = &netNames{name: strings.ToLower(n.Name), internal: n.Internal, single: n.DNSForwardSingleLabel, owners: map[string]string{},
			v4: map[string][]netip.Addr{}, v6: map[string][]netip.Addr{}, ptr: map[netip.Addr]string{}}
		x.nets[n.ID] = nn
	}
	for _, name := range ns {
		for _, a := range addrs {
			m := nn.v4
			if a.Is6() {
				m = nn.v6
			}
			m[name] = append(append([]netip.Addr(nil), m[name]...), a)
		}
	}
	if len(ns) > 0 {
		// The first name DNS can hold (a container named by its
		// 64-character ID cannot), else the first: the resolver then
		// answers the address's reverse lookup with no data.
		ptr := ns[0] + "." + nn.name + "."
		for _, name := range ns {
			if p := name + "." + nn.name + "."; dnsName(p) {
				ptr = p
				break
			}
		}
		for _, a := range addrs {
			nn.ptr[a] = ptr
		}
	}
	own := strings.ToLower(strings.TrimSuffix(ep.Name, "."))
	if _, taken := nn.owners[own]; !taken {
		nn.owners[own] = ep.ID
	}
	x.byEP[ep.ID] = epNames{netID: n.ID, name: own, names: ns, addrs: addrs}
}

// hold checks that no endpoint of network netID other than except has
// name, and that no connect or rename under way holds it; if so, it
// holds the name until release is called (once the caller indexed it,
// or failed). Otherwise it returns the owner's endpoint ID, or "" for
// one under way.
func (x *nameIndex) hold(netID, name, except string) (owner string, release func(), ok bool) {
	name = strings.ToLower(name)
	x.mu.Lock()
	defer x.mu.Unlock()
	if nn := x.nets[netID]; nn != nil {
		if id := nn.owners[name]; id != "" && id != except {
			return id, nil, false
		}
	}
	if x.held[netID][name] {
		return "", nil, false
	}
	if x.held[netID] == nil {
		x.held[netID] = map[string]bool{}
	}
	x.held[netID][name] = true
	return "", func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		delete(x.held[netID], name)
		if len(x.held[netID]) == 0 {
			delete(x.held, netID)
		}
	}, true
}

// forgetNetwork drops network netID's entry, which outlived its last
// endpoint, once the network is deleted: an entry still naming an
// endpoint stays (its removal drops it then).
func (x *nameIndex) forgetNetwork(netID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if nn := x.nets[netID]; nn != nil && len(nn.owners) == 0 && len(nn.v4) == 0 && len(nn.v6) == 0 && len(nn.ptr) == 0 {
		delete(x.nets, netID)
	}
}

// remove drops what an endpoint put in the index.
func (x *nameIndex) remove(epID string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(epID)
}

func (x *nameIndex) removeLocked(epID string) {
	e, ok := x.byEP[epID]
	if !ok {
		return
	}
	delete(x.byEP, epID)
	nn := x.nets[e.netID]
	if nn == nil {
		return
	}
	if nn.owners[e.name] == epID {
		delete(nn.owners, e.name)
	}
	drop := func(m map[string][]netip.Addr, name string, a netip.Addr) {
		var keep []netip.Addr
		for _, b := range m[name] {
			if b != a {
				keep = append(keep, b)
			}
		}
		if len(keep) == 0 {
			delete(m, name)
		} else {
			m[name] = keep
		}
	}
	for _, a := range e.addrs {
		for _, name := range e.names {
			if a.Is6() {
				drop(nn.v6, name, a)
			} else {
				drop(nn.v4, name, a)
			}
		}
		delete(nn.ptr, a)
	}
}

// view is what one sandbox sees: the networks it is joined to. It
// implements resolver.Backend.
type view struct {
	x    *nameIndex
	nets func() []string // IDs of the sandbox's networks, current
}

// Lookup answers a name from the sandbox's networks: "name" on any of
// them, "name.network" on that one. A name may have dots of its own (an
// alias "db.local", a hostname "web.example.com", a network "my.net"):
// the whole name is looked up first, then, ending in ".network", the
// name before it.
func (v view) Lookup(name string) (v4, v6 []netip.Addr, found bool) {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	for _, id := range v.nets() {
		nn := v.x.nets[id]
		if nn == nil {
			continue
		}
		a4, ok4 := nn.v4[name]
		a6, ok6 := nn.v6[name]
		if base, ok := cutNetwork(name, nn.name); !ok4 && !ok6 && ok {
			a4, ok4 = nn.v4[base]
			a6, ok6 = nn.v6[base]
		}
		if ok4 || ok6 {
			// Clipped, so a second match appends to a copy, never into the
			// index's own arrays; one match costs no allocation.
			v4, v6, found = appendClipped(v4, a4), appendClipped(v6, a6), true
		}
	}
	return v4, v6, found
}

// cutNetwork returns the part of name before ".network", if name is
// "base.network" with base not empty; it allocates nothing, as it runs
// for every network of every question.
func cutNetwork(name, network string) (string, bool) {
	i := len(name) - len(network) - 1
	if i < 1 || name[i] != '.' || name[i+1:] != network {
		return "", false
	}
	return name[:i], true
}

// ReverseLookup answers PTR queries for addresses on the sandbox's
// networks.
func (v view) ReverseLookup(ip netip.Addr) (string, bool) {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	for _, id := range v.nets() {
		if nn := v.x.nets[id]; nn != nil {
			if p, ok := nn.ptr[ip]; ok {
				return p, true
			}
		}
	}
	return "", false
}

// Forward reports which names the sandbox may forward: none when every
// network is internal or there is none, every name when one of its networks that is not
// internal forwards single-label names, else every name but those.
func (v view) Forward() resolver.Forwarding {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	fw := resolver.ForwardNone
	ids := v.nets()
	for _, id := range ids {
		nn := v.x.nets[id]
		switch {
		case nn == nil:
			fw = resolver.ForwardQualified
		case nn.internal:
		case nn.single:
			return resolver.ForwardAll
		default:
			fw = resolver.ForwardQualified
		}
	}
	return fw // none without networks: no way out to forward through
}

func appendClipped(to, from []netip.Addr) []netip.Addr {
	if to == nil {
		return from[:len(from):len(from)]
	}
	return append(to, from...)
}

// dnsName reports whether the fully qualified name (with its trailing
// dot) fits DNS: labels of 1 to 63 bytes, 255 bytes on the wire.
func dnsName(name string) bool {
	if len(name) > 254 {
		return false
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
	}
	return true
}
