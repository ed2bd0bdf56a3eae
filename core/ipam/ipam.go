// Package ipam hands out subnets to networks and addresses to endpoints,
// and keeps both in the store, so that several hosts sharing one store
// (global scope, on Consul) never hand out the same subnet or address.
//
// # Transactions
//
// The allocator never commits anything itself. RequestPool, Allocate and
// the release calls return store Txn ops, and the caller (core/controller)
// commits them in the same Txn as the network or endpoint record they
// belong to; that is what keeps a crash from leaving a leaked address or
// an endpoint without one. Every op that creates a pool or an address is
// a compare-and-swap on the key's absence, so of two writers (goroutines
// or hosts) racing for one subnet or address exactly one Txn commits and
// the other fails with sdk.ErrConflict; the loser asks again and gets
// another one. The caller retries a bounded number of times.
//
// # Key layout
//
//	sandnet/v1/ipam/pools-rev/v4 (and /v6)     rewritten by every Txn that creates a pool of the family
//	sandnet/v1/ipam/pools/<pool>               Pool as JSON: network_id, subnet, gateway, range
//	sandnet/v1/ipam/addrs/<pool>/<ip>          {"owner": "<endpoint id>"}, one key per address
//
// <pool> is the subnet with '/' spelt '-' ("10.1.0.0-24", "fd00::-64").
// Pool records and addresses live under separate prefixes so listing the
// pools never reads the addresses. The gateway, the network address and
// the IPv4 broadcast address are reserved by the pool record and have no
// address key.
//
// Overlap between subnets cannot be caught by a compare-and-swap on the
// pool's own key (10.1.0.0/16 and 10.1.0.0/24 are different keys), so a
// Txn that creates pools of a family also compares-and-swaps that
// family's pools-rev at the index read before listing the pools: of two
// networks created at once from the same view, the second to commit
// fails with sdk.ErrConflict and its retry sees the first one's pool.
// Network creation is rare, so these contended keys cost nothing in
// practice; there is one per family so that an IPv4 and an IPv6
// RequestPool can go in one Txn. Releasing a pool does not touch them: a
// pool going away cannot make another overlap.
//
// An address op also asserts the pool record's index (CHECK_INDEX), so
// no address can be committed into a pool released (or released and
// created again) meanwhile. Releasing a pool is ClearAddresses (the
// subnet's address keys, however many hosts allocated them, deleted in
// transactions that assert the pool record's index, so that a release
// that lost a race with another host's never deletes the addresses of
// the next network of that subnet) and then ReleasePool's delete of the
// pool key in the caller's Txn; an address key committed between the two
// (by another host, just before the release) is deleted by the next
// RequestPool of that subnet, in its own Txn. Until then such a key
// blocks nothing: no pool, no allocation.
//
// # Choosing a subnet
//
// A request without a subnet gets the first subnet of the default pools
// (config.Pool: Base cut into /Size subnets, in order) that overlaps
// neither a pool in the store nor a route of the host's namespace
// (Config.HostRoutes; default routes are ignored), as Docker does. IPv4
// requests use the IPv4 pools of Config.DefaultPools; IPv6 requests its
// IPv6 pools, or DefaultV6Pools when it has none: the unique local
// prefix fd53:616e:646e::/48 ("Sandn" in hex) cut into 65 536 /64s. An
// explicit subnet is checked against the other pools only, not against
// host routes: the operator chose it.
//
// # Addresses
//
// Each pool's allocation state is loaded from the store on first use with
// one List and then kept in memory: a sparse bitmap over the pool's range
// (blocks of 4096 bits, absent when empty, with a per-block summary of
// full words) plus a small map for static addresses outside the range.
// A dynamic allocation takes the next clear bit after a round-robin
// cursor, as Docker's bitseq does, so a just-released address is not
// handed out again until the range has wrapped. Its cost is O(1) plus one
// step per full 4096-address block skipped: at most n/4096 for n
// addresses in use, never a scan of the addresses. A static request is a
// single bit test (plus a Get when memory says the address is taken, in
// case another host released it).
//
// The range is the pool's Range, or its whole subnet; a static address may
// be anywhere in the subnet, as in Docker, so operators can keep statics
// outside the dynamic range. The network, broadcast and gateway addresses
// and the pool's auxiliary ones (Docker's --aux-address) are never handed
// out; they are part of the pool record, so every host keeps them. For a
// range of more than 2^63 addresses (IPv6 shorter than /65) dynamic
// allocation uses its first 2^63.
//
// Memory is a cache of the store, never the authority. An address handed
// out but not yet committed is pending: marked taken, so no other Allocate
// in this process picks it. Allocation.Done(false) — the caller's Txn
// failed or was never sent — leaves the address marked until the next
// Allocate from that pool checks the store, with a Get of the pool record
// and of the address: if the pool record changed or the address was
// committed by someone else, another writer is active and the whole pool
// is re-read; otherwise the address is freed, and a failure of the
// caller's own (say, an endpoint name taken) costs no re-read.
// Addresses taken by other hosts are otherwise learnt only through such a
// conflict, and ones they released on the next re-read: before reporting
// a pool full, Allocate re-reads it once. Refresh re-reads on demand.
//
// # Concurrency
//
// An Allocator is safe for concurrent use. Each pool has its own mutex,
// held for its in-memory updates and across the store reads Allocate
// makes for that pool (loading it, checking an address), so allocations
// from one pool wait for a reload rather than each doing their own. The
// allocator-wide mutex only guards the map of pools; it is never held
// with a pool's mutex nor across a store call.
package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

const (
	prefix      = "sandnet/v1/ipam/"
	poolsPrefix = prefix + "pools/"
	addrsPrefix = prefix + "addrs/"
)

func poolsRevKey(v6 bool) string {
	if v6 {
		return prefix + "pools-rev/v6"
	}
	return prefix + "pools-rev/v4"
}

func poolKey(subnet netip.Prefix) string { return poolsPrefix + keyOf(subnet) }

// addrsOf is the prefix of every address key of subnet; the trailing '/'
// keeps 10.1.0.0/2 from matching 10.1.0.0/24.
func addrsOf(subnet netip.Prefix) string { return addrsPrefix + keyOf(subnet) + "/" }

func addrKey(subnet netip.Prefix, a netip.Addr) string { return addrsOf(subnet) + a.String() }

var (
	// ErrPoolFull is wrapped by the error Allocate returns when a pool has
	// no free address. It wraps sdk.ErrConflict (HTTP 409).
	ErrPoolFull = fmt.Errorf("pool is full: %w", sdk.ErrConflict)
	// ErrNoSubnet is wrapped by the error RequestPool returns when every
	// subnet of the default pools is taken. It wraps sdk.ErrConflict.
	ErrNoSubnet = fmt.Errorf("all default pools are fully subnetted: %w", sdk.ErrConflict)
)

// DefaultV6Pools returns the IPv6 pools used when the configured default
// pools have none: fd53:616e:646e::/48 in /64s. The slice is new on every
// call.
func DefaultV6Pools() []config.Pool {
	return []config.Pool{{Base: netip.MustParsePrefix("fd53:616e:646e::/48"), Size: 64}}
}

// Config configures an Allocator.
type Config struct {
	// Store returns the store; it is called for every operation, since a
	// store plugin that restarted is a new client. Required.
	Store func() (store.Store, error)
	// DefaultPools are where subnets come from when a request names none,
	// IPv4 and IPv6 mixed, first first. Nil: config.DefaultPools(). With
	// no IPv6 pool among them, IPv6 requests use DefaultV6Pools().
	DefaultPools []config.Pool
	// HostRoutes returns the destinations of the host namespace's routes,
	// which automatically chosen subnets avoid. Nil: no routes.
	HostRoutes func() ([]netip.Prefix, error)
}

// Allocator allocates subnets and addresses. Create it with New; its
// methods are safe for concurrent use.
type Allocator struct {
	store    func() (store.Store, error)
	defaults atomic.Pointer[defaultPools] // SetDefaultPools
	routes   func() ([]netip.Prefix, error)

	mu    sync.Mutex // guards pools; never held across a store call
	pools map[netip.Prefix]*poolState
}

// New returns an Allocator. It reads nothing from the store until used.
func New(cfg Config) (*Allocator, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("ipam: no store: %w", sdk.ErrInvalid)
	}
	a := &Allocator{store: cfg.Store, routes: cfg.HostRoutes, pools: map[netip.Prefix]*poolState{}}
	if err := a.SetDefaultPools(cfg.DefaultPools); err != nil {
		return nil, err
	}
	return a, nil
}

// defaultPools are the pools automatic subnets are carved from, by family.
type defaultPools struct{ v4, v6 []config.Pool }

// SetDefaultPools makes pools (nil: config.DefaultPools) the pools the
// subnets of networks created without one are carved from, from now on
// (a reload of ipam { default_pools }); networks that exist keep their
// subnets. A pool that is not one is an error and changes nothing.
func (a *Allocator) SetDefaultPools(pools []config.Pool) error {
	if pools == nil {
		pools = config.DefaultPools()
	}
	d := &defaultPools{}
	for _, p := range pools {
		max := 30
		if p.Base.Addr().Is6() {
			max = 126
		}
		if !p.Base.IsValid() || p.Base != p.Base.Masked() || p.Base.Addr().Is4In6() || p.Size < p.Base.Bits() || p.Size > max {
			return fmt.Errorf("ipam: default pool %s with size %d: %w", p.Base, p.Size, sdk.ErrInvalid)
		}
		if p.Base.Addr().Is4() {
			d.v4 = append(d.v4, p)
		} else {
			d.v6 = append(d.v6, p)
		}
	}
	if len(d.v6) == 0 {
		d.v6 = DefaultV6Pools()
	}
	a.defaults.Store(d)
	return nil
}

// OverlapError is RequestPools' refusal of an explicit subnet that
// overlaps another network's pool; it is an sdk.ErrConflict. The
// allocator knows networks by ID only: a caller that knows the other
// network's name sets NetworkName, which the message then uses.
type OverlapError struct {
	Subnet, Other netip.Prefix
	NetworkID     string
	NetworkName   string
}

func (e *OverlapError) Error() string {
	name := e.NetworkID
	if e.NetworkName != "" {
		name = e.NetworkName
	}
	return fmt.Sprintf("subnet %s overlaps %s of network %s: %v", e.Subnet, e.Other, name, sdk.ErrConflict)
}

func (e *OverlapError) Unwrap() error { return sdk.ErrConflict }

// Pool is a network's subnet, as recorded in the store.
type Pool struct {
	NetworkID string       `json:"network_id"`
	Subnet    netip.Prefix `json:"subnet"`
	Gateway   netip.Addr   `json:"gateway"`
	// Range is the part of Subnet that dynamic allocation draws from; zero
	// means the whole subnet.
	Range netip.Prefix `json:"range,omitzero"`
	// Aux are addresses of Subnet kept from containers (Docker's
	// --aux-address: a router, a printer the network shares), by name,
	// sorted by address. Like the gateway, none is ever allocated.
	Aux []AuxAddress `json:"aux,omitempty"`
}

// AuxAddress is an address of a pool that no container gets, with the
// name the operator gave it.
type AuxAddress struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
}

// equal reports whether p and q are the same pool.
func (p *Pool) equal(q *Pool) bool {
	return p.NetworkID == q.NetworkID && p.Subnet == q.Subnet && p.Gateway == q.Gateway && p.Range == q.Range &&
		slices.Equal(p.Aux, q.Aux)
}

// PoolRequest asks for a network's subnet.
type PoolRequest struct {
	NetworkID string
	// Subnet is the subnet wanted; zero picks one from the default pools
	// of the family V6 names.
	Subnet netip.Prefix
	// Gateway is the gateway address; zero is the subnet's first address
	// after the network address. It needs a Subnet.
	Gateway netip.Addr
	// Range optionally limits dynamic allocation to a prefix inside
	// Subnet (Docker's --ip-range). It needs a Subnet.
	Range netip.Prefix
	// Aux are addresses of Subnet never to allocate (Docker's
	// --aux-address), by name. They need a Subnet.
	Aux map[string]netip.Addr
	// V6 asks for an IPv6 subnet. With a Subnet it must match its family.
	V6 bool
}

// RequestPool returns a pool for req and the ops that record it. See
// RequestPools.
func (a *Allocator) RequestPool(ctx context.Context, req PoolRequest) (*Pool, []*pb.TxnOp, error) {
	pools, ops, err := a.RequestPools(ctx, []PoolRequest{req})
	if err != nil {
		return nil, nil, err
	}
	return pools[0], ops, nil
}

// RequestPools returns a pool for each request, in order, and the ops that
// record them, for the caller to commit in the Txn that creates the
// network. Nothing is reserved until that Txn commits. The ops of one
// IPv4 and one IPv6 RequestPool may share a Txn; ask for several pools of
// one family in one call, since separate calls would not see each other
// (two automatic picks would get the same subnet, and their ops could not
// both commit).
//
// A Txn with these ops fails with sdk.ErrConflict when another pool was
// created since they were computed; call RequestPools again and retry.
//
// Errors: sdk.ErrInvalid naming the bad field (subnet, gateway, range);
// sdk.ErrConflict when an explicit subnet overlaps another pool, naming
// it and its network; ErrNoSubnet when the default pools are exhausted.
// A request repeating a pool its network already has (same subnet, and
// same gateway and range once defaults are filled in) returns that pool
// with an op that only asserts it still exists, so retrying a network's
// creation is idempotent.
func (a *Allocator) RequestPools(ctx context.Context, reqs []PoolRequest) ([]*Pool, []*pb.TxnOp, error) {
	want := make([]*Pool, len(reqs))
	for i, r := range reqs {
		p, err := checkRequest(r)
		if err != nil {
			return nil, nil, err
		}
		want[i] = p
	}
	s, err := a.store()
	if err != nil {
		return nil, nil, err
	}
	// pools-rev first: a pool created after this read fails our Txn.
	var rev [2]uint64 // IPv4, IPv6
	for i, key := range []string{poolsRevKey(false), poolsRevKey(true)} {
		switch kv, err := s.Get(ctx, key); {
		case err == nil:
			rev[i] = kv.GetIndex()
		case !errors.Is(err, sdk.ErrNotFound):
			return nil, nil, fmt.Errorf("reading %s: %w", key, err)
		}
	}
	existing, err := listPools(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	taken := make([]*Pool, 0, len(existing)+len(reqs))
	for _, e := range existing {
		taken = append(taken, e.pool)
	}

	out := make([]*Pool, len(reqs))
	var ops, created []*pb.TxnOp
	var newPools []*Pool
	// Explicit subnets first, so automatic picks avoid them.
	for i, p := range want {
		if !p.Subnet.IsValid() {
			continue
		}
		if j := slices.IndexFunc(existing, func(e storedPool) bool { return e.pool.equal(p) }); j >= 0 {
			out[i] = existing[j].pool
			ops = append(ops, &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: poolKey(p.Subnet), Index: existing[j].index})
			continue
		}
		if o := overlapping(taken, p.Subnet); o != nil {
			return nil, nil, &OverlapError{Subnet: p.Subnet, Other: o.Subnet, NetworkID: o.NetworkID}
		}
		out[i] = p
		taken = append(taken, p)
		newPools = append(newPools, p)
	}
	var routes []netip.Prefix
	routesRead := false
	for i, p := range want {
		if p.Subnet.IsValid() {
			continue
		}
		if !routesRead {
			if routes, err = a.hostRoutes(); err != nil {
				return nil, nil, err
			}
			routesRead = true
		}
		defaults := a.defaults.Load().v4
		if reqs[i].V6 {
			defaults = a.defaults.Load().v6
		}
		subnet, ok := pick(defaults, taken, routes)
		if !ok {
			return nil, nil, fmt.Errorf("choosing an %s subnet: %w", family(reqs[i].V6), ErrNoSubnet)
		}
		p.Subnet, p.Gateway = subnet, subnet.Addr().Next()
		out[i] = p
		taken = append(taken, p)
		newPools = append(newPools, p)
	}
	if len(newPools) == 0 {
		return out, ops, nil
	}
	for i, v6 := range []bool{false, true} {
		if slices.ContainsFunc(newPools, func(p *Pool) bool { return p.Subnet.Addr().Is6() == v6 }) {
			created = append(created, &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: poolsRevKey(v6), Value: []byte(newPools[0].NetworkID), Index: rev[i]})
		}
	}
	for _, p := range newPools {
		created = append(created, casOp(poolKey(p.Subnet), 0, p))
		// Leftovers of a released pool of the same subnet (see the
		// package doc). No address can be added to them meanwhile: every
		// address op asserts a pool record that no longer exists.
		stale, err := s.List(ctx, addrsOf(p.Subnet))
		if err != nil {
			return nil, nil, fmt.Errorf("listing addresses of %s: %w", p.Subnet, err)
		}
		for _, kv := range stale {
			created = append(created, &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: kv.GetKey(), Index: kv.GetIndex()})
		}
	}
	return out, append(created, ops...), nil
}

// ClearAddresses deletes every address key of subnet's pool from the
// store, whoever allocated it, while the pool is still network netID's:
// for a network being deleted, once no endpoint can take an address any
// more (it is marked in-delete) and before the Txn with ReleasePool's
// ops. Each transaction asserts the pool record's index, so that a
// delete that lost a race with another host's (which released the pool,
// after which a new network took the subnet and gave out addresses)
// deletes none of the new network's: a pool that is gone or another
// network's is left alone. Addresses go clearBatch at a time, within a
// store's limit on one transaction; a network being deleted has no
// endpoint left, so there are few (leftovers of crashes and races).
func (a *Allocator) ClearAddresses(ctx context.Context, subnet netip.Prefix, netID string) error {
	s, err := a.store()
	if err != nil {
		return err
	}
	for range clearAttempts {
		pool, err := s.Get(ctx, poolKey(subnet))
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading pool %s: %w", subnet, err)
		}
		if p, err := decodePool(pool); err != nil || p.NetworkID != netID {
			return err // another network's now
		}
		addrs, err := s.List(ctx, addrsOf(subnet))
		if err != nil {
			return fmt.Errorf("listing addresses of %s: %w", subnet, err)
		}
		for chunk := range slices.Chunk(addrs, clearBatch) {
			ops := []*pb.TxnOp{{Verb: pb.TxnOp_CHECK_INDEX, Key: pool.GetKey(), Index: pool.GetIndex()}}
			for _, kv := range chunk {
				ops = append(ops, &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: kv.GetKey(), Index: kv.GetIndex()})
			}
			if _, err = s.Txn(ctx, ops); err != nil {
				break
			}
		}
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, sdk.ErrConflict):
			return fmt.Errorf("deleting the addresses of %s: %w", subnet, err)
		}
		// The pool or an address changed: read them again.
	}
	return fmt.Errorf("deleting the addresses of %s: gave up after %d concurrent updates: %w", subnet, clearAttempts, sdk.ErrConflict)
}

// clearBatch is how many addresses one of ClearAddresses's transactions
// deletes, with the pool's check: within the Consul store's 64 ops.
const clearBatch = 63

// clearAttempts bounds ClearAddresses's tries when the pool or its
// addresses change under it.
const clearAttempts = 8

// ReleasePool returns the op that deletes the pool of subnet, for the
// caller to commit in the Txn that deletes the network; after that Txn
// commits, call PoolReleased. Its addresses go with ClearAddresses first;
// address keys left behind anyway are deleted when the subnet is next used
// (see the package doc). An allocation of the pool still pending then
// fails to commit.
func (a *Allocator) ReleasePool(subnet netip.Prefix) []*pb.TxnOp {
	return []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: poolKey(subnet)}}
}

// PoolReleased tells the allocator that a Txn with ReleasePool(subnet)
// committed, so it drops what it holds of the pool.
func (a *Allocator) PoolReleased(subnet netip.Prefix) {
	st := a.state(subnet, false)
	if st == nil {
		return
	}
	st.mu.Lock()
	st.unload()
	idle := len(st.pending) == 0
	st.mu.Unlock()
	if idle {
		// An Allocate that found st before this works on a pool that no
		// longer exists: its load fails, or, if the subnet was created
		// again, the store's compare-and-swap catches any overlap with
		// the new state.
		a.mu.Lock()
		if a.pools[subnet] == st {
			delete(a.pools, subnet)
		}
		a.mu.Unlock()
	}
}

// Pools returns every pool in the store, ordered by key.
func (a *Allocator) Pools(ctx context.Context) ([]*Pool, error) {
	s, err := a.store()
	if err != nil {
		return nil, err
	}
	stored, err := listPools(ctx, s)
	if err != nil {
		return nil, err
	}
	out := make([]*Pool, len(stored))
	for i, e := range stored {
		out[i] = e.pool
	}
	return out, nil
}

type storedPool struct {
	pool  *Pool
	index uint64
}

func listPools(ctx context.Context, s store.Store) ([]storedPool, error) {
	kvs, err := s.List(ctx, poolsPrefix)
	if err != nil {
		return nil, fmt.Errorf("listing pools: %w", err)
	}
	out := make([]storedPool, 0, len(kvs))
	for _, kv := range kvs {
		p, err := decodePool(kv)
		if err != nil {
			return nil, err
		}
		out = append(out, storedPool{p, kv.GetIndex()})
	}
	return out, nil
}

func decodePool(kv *pb.KVPair) (*Pool, error) {
	var p Pool
	if err := json.Unmarshal(kv.GetValue(), &p); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.GetKey(), err)
	}
	if !p.Subnet.IsValid() || poolKey(p.Subnet) != kv.GetKey() {
		return nil, fmt.Errorf("decoding %s: subnet %q does not match the key", kv.GetKey(), p.Subnet)
	}
	return &p, nil
}

func casOp(key string, index uint64, v any) *pb.TxnOp {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %s: %v", key, err)) // our own types always encode
	}
	return &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: key, Value: b, Index: index}
}

func (a *Allocator) hostRoutes() ([]netip.Prefix, error) {
	if a.routes == nil {
		return nil, nil
	}
	rs, err := a.routes()
	if err != nil {
		return nil, fmt.Errorf("reading the host's routes: %w", err)
	}
	out := rs[:0:0]
	for _, r := range rs {
		// A default route overlaps everything; Docker ignores it too.
		if r.IsValid() && r.Bits() > 0 {
			out = append(out, r.Masked())
		}
	}
	return out, nil
}

// pick returns the first subnet of defaults that overlaps neither a pool
// of taken nor a route. Each subnet it rejects makes it jump past the
// prefix in the way, so it visits at most len(taken)+len(routes)+1
// subnets of each pool even when a pool holds 2^16 of them.
func pick(defaults []config.Pool, taken []*Pool, routes []netip.Prefix) (netip.Prefix, bool) {
	for _, d := range defaults {
		c := netip.PrefixFrom(d.Base.Addr(), d.Size)
		for d.Base.Contains(c.Addr()) {
			var in netip.Prefix
			if o := overlapping(taken, c); o != nil {
				in = o.Subnet
			} else if i := slices.IndexFunc(routes, c.Overlaps); i >= 0 {
				in = routes[i]
			} else {
				return c, true
			}
			last := lastAddr(c)
			if l := lastAddr(in); last.Less(l) {
				last = l
			}
			next := last.Next()
			if !next.IsValid() {
				break // the end of the address space
			}
			c = netip.PrefixFrom(next, d.Size).Masked()
		}
	}
	return netip.Prefix{}, false
}

func overlapping(pools []*Pool, p netip.Prefix) *Pool {
	for _, o := range pools {
		if o.Subnet.Overlaps(p) {
			return o
		}
	}
	return nil
}

func family(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

// checkRequest checks r and returns its pool with the defaults filled in
// (a zero Subnet stays zero).
func checkRequest(r PoolRequest) (*Pool, error) {
	bad := func(format string, args ...any) (*Pool, error) {
		return nil, fmt.Errorf(format+": %w", append(args, sdk.ErrInvalid)...)
	}
	if r.NetworkID == "" {
		return bad("pool request without a network ID")
	}
	p := &Pool{NetworkID: r.NetworkID, Subnet: r.Subnet, Gateway: r.Gateway, Range: r.Range}
	if !r.Subnet.IsValid() {
		switch {
		case r.Gateway.IsValid():
			return bad("gateway %s needs a subnet", r.Gateway)
		case r.Range.IsValid():
			return bad("range %s needs a subnet", r.Range)
		case len(r.Aux) > 0:
			return bad("auxiliary addresses need a subnet")
		}
		return p, nil
	}
	sub := r.Subnet
	switch {
	case sub.Addr().Is4In6():
		return bad("subnet %s is an IPv4-mapped IPv6 prefix", sub)
	case sub.Addr().Is6() != r.V6:
		return bad("subnet %s is not an %s subnet", sub, family(r.V6))
	case sub != sub.Masked():
		return bad("subnet %s has host bits set (did you mean %s?)", sub, sub.Masked())
	case sub.Addr().Is4() && sub.Bits() > 30:
		return bad("subnet %s is too small: an IPv4 subnet is at most /30", sub)
	case sub.Addr().Is6() && sub.Bits() > 126:
		return bad("subnet %s is too small: an IPv6 subnet is at most /126", sub)
	}
	if res, what := config.ReservedOverlap(sub); res.IsValid() {
		return bad("subnet %s overlaps %s, %s: no container address can be there", sub, res, what)
	}
	if !p.Gateway.IsValid() {
		p.Gateway = sub.Addr().Next()
	}
	gw := p.Gateway
	switch {
	case gw.Zone() != "":
		return bad("gateway %s has a zone", gw)
	case !sub.Contains(gw):
		return bad("gateway %s is not in subnet %s", gw, sub)
	case gw == sub.Addr():
		return bad("gateway %s is the network address of %s", gw, sub)
	case gw.Is4() && gw == lastAddr(sub):
		return bad("gateway %s is the broadcast address of %s", gw, sub)
	}
	if rg := r.Range; rg.IsValid() {
		switch {
		case rg != rg.Masked():
			return bad("range %s has host bits set (did you mean %s?)", rg, rg.Masked())
		case rg.Bits() < sub.Bits() || !sub.Contains(rg.Addr()):
			return bad("range %s is not inside subnet %s", rg, sub)
		case rg == sub:
			p.Range = netip.Prefix{} // the same thing, spelt one way
		}
	}
	if err := p.setAux(r.Aux); err != nil {
		return nil, err
	}
	if rg := p.Range; rg.IsValid() && allReserved(p, rg) {
		return bad("range %s has no address to allocate besides the network, broadcast, gateway and auxiliary addresses", rg)
	}
	return p, nil
}

// setAux checks the auxiliary addresses aux of p, whose subnet and
// gateway are checked, and sets them, sorted by address.
func (p *Pool) setAux(aux map[string]netip.Addr) error {
	bad := func(name string, a netip.Addr, format string, args ...any) error {
		return fmt.Errorf("auxiliary address %q (%s) "+format+": %w", append([]any{name, a}, append(args, sdk.ErrInvalid)...)...)
	}
	sub := p.Subnet
	if len(aux) > MaxAux {
		return fmt.Errorf("%d auxiliary addresses; at most %d: %w", len(aux), MaxAux, sdk.ErrInvalid)
	}
	for _, name := range slices.Sorted(maps.Keys(aux)) {
		a := aux[name]
		switch {
		case name == "":
			return fmt.Errorf("auxiliary address %s has no name: %w", a, sdk.ErrInvalid)
		case !a.IsValid():
			return fmt.Errorf("auxiliary address %q has no address: %w", name, sdk.ErrInvalid)
		case a.Zone() != "":
			return bad(name, a, "has a zone")
		case !sub.Contains(a):
			return bad(name, a, "is not in subnet %s", sub)
		case a == sub.Addr():
			return bad(name, a, "is the network address of %s", sub)
		case a.Is4() && a == lastAddr(sub):
			return bad(name, a, "is the broadcast address of %s", sub)
		case a == p.Gateway:
			return bad(name, a, "is the gateway of %s", sub)
		}
		p.Aux = append(p.Aux, AuxAddress{Name: name, Addr: a})
	}
	slices.SortFunc(p.Aux, func(x, y AuxAddress) int { return x.Addr.Compare(y.Addr) })
	for i := 1; i < len(p.Aux); i++ {
		if x, y := p.Aux[i-1], p.Aux[i]; x.Addr == y.Addr {
			first, second := min(x.Name, y.Name), max(x.Name, y.Name)
			return fmt.Errorf("auxiliary addresses %q and %q are both %s: %w", first, second, x.Addr, sdk.ErrInvalid)
		}
	}
	return nil
}

// MaxAux bounds a pool's auxiliary addresses: each reserved check looks
// at them all.
const MaxAux = 256

// auxName is the name of auxiliary address a of p, or "".
func (p *Pool) auxName(a netip.Addr) string {
	for _, x := range p.Aux {
		if x.Addr == a {
			return x.Name
		}
	}
	return ""
}

// allReserved reports whether every address of rg is reserved in p.
func allReserved(p *Pool, rg netip.Prefix) bool {
	if hostBits(rg) >= bits.Len(uint(3+len(p.Aux))) {
		return false // more addresses than the 3 + len(p.Aux) reserved
	}
	for a, n := rg.Addr(), 0; n < 1<<hostBits(rg); a, n = a.Next(), n+1 {
		if !p.reserved(a) {
			return false
		}
	}
	return true
}

// reserved reports whether a is the network, broadcast, gateway or an
// auxiliary address of p; none of them is ever allocated.
func (p *Pool) reserved(a netip.Addr) bool {
	return a == p.Subnet.Addr() || a == p.Gateway || (a.Is4() && a == lastAddr(p.Subnet)) || p.auxName(a) != ""
}

// reservedAddrs are the addresses reserved in p (see reserved), some
// perhaps twice.
func (p *Pool) reservedAddrs() []netip.Addr {
	rs := []netip.Addr{p.Subnet.Addr(), lastAddr(p.Subnet), p.Gateway}
	for _, x := range p.Aux {
		rs = append(rs, x.Addr)
	}
	return rs
}
