package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// addrRecord is the value of an address key.
type addrRecord struct {
	Owner string `json:"owner"`
}

// Allocation is an address handed out by Allocate and not yet settled.
// The caller commits Ops in its own Txn and then calls Done exactly once
// with the outcome; until then no other Allocate of this Allocator hands
// out the address.
type Allocation struct {
	// Addr is the address with the pool's prefix length.
	Addr netip.Prefix
	// Ops create the address key (compare-and-swap on its absence) and
	// assert that the pool still exists. Append them to the Txn that
	// writes the endpoint holding the address.
	Ops []*pb.TxnOp

	st   *poolState
	done bool // guarded by st.mu
}

// Done settles the allocation: committed true when the Txn holding Ops
// committed. After a Txn that failed or was never sent, call Done(false);
// the address stays out of circulation until the next Allocate from the
// pool has checked the store, since the failure may be another host
// having committed that address. Calls after the first do nothing.
func (al *Allocation) Done(committed bool) {
	st := al.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if al.done {
		return
	}
	al.done = true
	a := al.Addr.Addr()
	delete(st.pending, a)
	if !committed && st.loaded {
		st.suspect[a] = struct{}{}
	}
}

// Allocate hands out an address of the pool whose subnet is pool, for
// owner (the endpoint ID, recorded in the address key). With want zero
// it is the next free address of the pool's range after the last one
// handed out (round robin); otherwise it is want, which may be anywhere
// in the subnet. The address is reserved in memory only: commit
// Allocation.Ops, then call Allocation.Done.
//
// Errors: sdk.ErrNotFound when the pool does not exist (or its Txn has
// not committed yet); sdk.ErrInvalid when want is outside the subnet or
// is its network, broadcast or gateway address; sdk.ErrConflict when want
// is in use; ErrPoolFull (an sdk.ErrConflict) when no address is free.
// A Txn holding Ops fails with sdk.ErrConflict when another writer took
// the address first: call Done(false) and Allocate again.
func (a *Allocator) Allocate(ctx context.Context, pool netip.Prefix, want netip.Addr, owner string) (*Allocation, error) {
	if !pool.IsValid() || pool != pool.Masked() {
		return nil, fmt.Errorf("allocating an address: pool %s is not a subnet: %w", pool, sdk.ErrInvalid)
	}
	if owner == "" {
		return nil, fmt.Errorf("allocating an address in %s: no owner: %w", pool, sdk.ErrInvalid)
	}
	if pool.Addr().Is4() {
		want = want.Unmap()
	}
	s, err := a.store()
	if err != nil {
		return nil, err
	}
	value, err := json.Marshal(addrRecord{Owner: owner})
	if err != nil {
		return nil, err
	}
	st := a.state(pool, true)
	st.mu.Lock()
	defer st.mu.Unlock()
	fresh, err := st.sync(ctx, s)
	if err != nil {
		return nil, err
	}
	st.takeObserved()
	var addr netip.Addr
	if want.IsValid() {
		addr, err = st.claim(ctx, s, want)
	} else {
		addr, err = st.next(ctx, s, fresh)
	}
	if err != nil {
		return nil, err
	}
	st.pending[addr] = struct{}{}
	return &Allocation{
		Addr: netip.PrefixFrom(addr, pool.Bits()),
		Ops: []*pb.TxnOp{
			{Verb: pb.TxnOp_CAS, Key: st.addrs + addr.String(), Value: value},
			{Verb: pb.TxnOp_CHECK_INDEX, Key: st.key, Index: st.index},
		},
		st: st,
	}, nil
}

// ReleaseOps returns the ops that free addr of pool, for the caller to
// commit in the Txn that deletes the endpoint holding it; after that
// Txn commits, call Released. Freeing a free address is not an error.
func (a *Allocator) ReleaseOps(pool netip.Prefix, addr netip.Addr) []*pb.TxnOp {
	if pool.Addr().Is4() {
		addr = addr.Unmap()
	}
	return []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: addrKey(pool, addr)}}
}

// Released tells the allocator that a Txn with ReleaseOps(pool, addr)
// committed, so addr is free again. It is handed out again only after the
// round-robin cursor has gone round the range, or when asked for by
// address.
func (a *Allocator) Released(pool netip.Prefix, addr netip.Addr) {
	st := a.state(pool, false)
	if st == nil {
		return
	}
	if pool.Addr().Is4() {
		addr = addr.Unmap()
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, pending := st.pending[addr]; !st.loaded || pending || st.pool.reserved(addr) || !pool.Contains(addr) {
		return
	}
	st.unmark(addr)
	delete(st.suspect, addr)
}

// Refresh reads the pool's addresses from the store again, picking up
// what other hosts allocated and released. Allocate does this by itself
// when it learns that its view is out of date; Refresh is for callers
// that know better, e.g. after a watch event.
func (a *Allocator) Refresh(ctx context.Context, pool netip.Prefix) error {
	s, err := a.store()
	if err != nil {
		return err
	}
	st := a.state(pool, true)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.load(ctx, s)
}

// Observe tells the allocator that another host holds addr (its
// endpoint record came through the store's watch), so that the next
// Allocate from a pool holding it does not pick it: hosts allocating in
// turn from one pool would otherwise each pick the address the other
// took last, lose the commit and try again. It reads nothing and never
// waits for an Allocate; an address of a pool this allocator has not
// read is ignored (the read finds it). A release elsewhere is not
// observed: a freed address comes round again once the pool is read.
func (a *Allocator) Observe(addr netip.Addr) {
	if !addr.IsValid() {
		return
	}
	addr = addr.Unmap()
	a.mu.Lock()
	var sts []*poolState
	for p, st := range a.pools {
		if p.Contains(addr) {
			sts = append(sts, st)
		}
	}
	a.mu.Unlock()
	for _, st := range sts {
		st.obsMu.Lock()
		if len(st.observed) < maxObserved {
			st.observed = append(st.observed, addr)
		}
		st.obsMu.Unlock()
	}
}

// state returns the state of the pool with subnet p, creating it when
// create is set (and returning nil otherwise when there is none).
func (a *Allocator) state(p netip.Prefix, create bool) *poolState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.pools[p]
	if st == nil && create {
		st = &poolState{subnet: p, key: poolKey(p), addrs: addrsOf(p), pending: map[netip.Addr]struct{}{}}
		a.pools[p] = st
	}
	return st
}

// poolState is what this Allocator knows of one pool's addresses.
type poolState struct {
	subnet     netip.Prefix
	key, addrs string // poolKey and addrsOf subnet

	mu     sync.Mutex
	loaded bool
	pool   *Pool  // the record as last read
	index  uint64 // its modify index
	// base and used.size are the window dynamic allocation draws from:
	// the pool's range, or its first 2^63 addresses. used holds, by
	// offset from base, the reserved addresses and the ones taken (as
	// last read, or pending); far holds taken ones outside the window.
	base   netip.Addr
	used   *bitmap
	far    map[netip.Addr]struct{}
	cursor uint64 // where the next dynamic search starts
	seeded bool   // cursor was set from the store once

	pending map[netip.Addr]struct{} // handed out, Done not called yet; kept across reloads
	suspect map[netip.Addr]struct{} // Done(false): check against the store

	// observed are addresses Observe was told other hosts hold, for the
	// next Allocate to mark taken; obsMu guards it alone, so that Observe
	// never waits for an Allocate's store reads under mu.
	obsMu    sync.Mutex
	observed []netip.Addr
}

// maxObserved bounds the addresses waiting in poolState.observed; beyond
// it they are dropped: an Allocate that picks one loses its commit to
// the holder and reads the pool again, as without Observe.
const maxObserved = 4096

// takeObserved marks the addresses Observe queued as taken. mu held.
func (st *poolState) takeObserved() {
	st.obsMu.Lock()
	obs := st.observed
	st.observed = nil
	st.obsMu.Unlock()
	if !st.loaded {
		return // the next load reads them
	}
	for _, a := range obs {
		if st.subnet.Contains(a) {
			st.mark(a)
		}
	}
}

// sync makes the view usable: it loads it if needed, and checks the
// addresses whose Txn failed. It reports whether it read the whole pool.
func (st *poolState) sync(ctx context.Context, s store.Store) (reloaded bool, err error) {
	if !st.loaded {
		return true, st.load(ctx, s)
	}
	if len(st.suspect) == 0 {
		return false, nil
	}
	kv, err := s.Get(ctx, poolKey(st.subnet))
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return false, fmt.Errorf("reading pool %s: %w", st.subnet, err)
	}
	if err != nil || kv.GetIndex() != st.index {
		return true, st.load(ctx, s) // released, or released and created again
	}
	for a := range st.suspect {
		_, err := s.Get(ctx, addrKey(st.subnet, a))
		switch {
		case err == nil:
			// Someone else committed it: another writer is at work in
			// this pool, and it likely took more than this one.
			return true, st.load(ctx, s)
		case !errors.Is(err, sdk.ErrNotFound):
			return false, fmt.Errorf("reading address %s: %w", a, err)
		}
		delete(st.suspect, a)
		st.unmark(a)
	}
	return false, nil
}

// load reads the pool record and its addresses and rebuilds the view,
// keeping what is pending.
func (st *poolState) load(ctx context.Context, s store.Store) error {
	kv, err := s.Get(ctx, poolKey(st.subnet))
	if err != nil {
		st.unload()
		if errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("no address pool %s: %w", st.subnet, sdk.ErrNotFound)
		}
		return fmt.Errorf("reading pool %s: %w", st.subnet, err)
	}
	p, err := decodePool(kv)
	if err != nil {
		st.unload()
		return err
	}
	prefix := addrsOf(st.subnet)
	kvs, err := s.List(ctx, prefix)
	if err != nil {
		st.unload()
		return fmt.Errorf("listing addresses of %s: %w", st.subnet, err)
	}

	rg := p.Range
	if !rg.IsValid() {
		rg = p.Subnet
	}
	st.pool, st.index = p, kv.GetIndex()
	st.base, st.used, st.far = rg.Addr(), newBitmap(uint64(1)<<min(hostBits(rg), 63)), map[netip.Addr]struct{}{}
	st.suspect = map[netip.Addr]struct{}{}
	for _, a := range p.reservedAddrs() {
		if p.reserved(a) {
			if off, ok := offsetIn(st.base, st.used.size, a); ok {
				st.used.set(off)
			}
		}
	}
	var last uint64
	seen := false
	for _, kv := range kvs {
		a, err := netip.ParseAddr(strings.TrimPrefix(kv.GetKey(), prefix))
		if err != nil || !p.Subnet.Contains(a) {
			continue // not ours to judge; it does not block anything
		}
		if off, ok := offsetIn(st.base, st.used.size, a); ok {
			st.used.set(off)
			if !seen || off > last {
				last, seen = off, true
			}
		} else {
			st.far[a] = struct{}{}
		}
	}
	for a := range st.pending {
		st.mark(a)
	}
	if !st.seeded {
		// After a restart, go on after the highest address in use rather
		// than from the start, which may have been freed just before.
		if seen {
			st.cursor = last + 1
		}
		st.seeded = true
	}
	if st.cursor >= st.used.size {
		st.cursor = 0
	}
	st.loaded = true
	return nil
}

// unload drops the view; the next use reads the store again.
func (st *poolState) unload() {
	st.loaded = false
	st.used, st.far, st.suspect = nil, nil, nil
}

// next takes the next free address of the window after the cursor.
// Unless the view was read in this call, a full pool is read again
// before giving up, in case other hosts freed addresses.
func (st *poolState) next(ctx context.Context, s store.Store, fresh bool) (netip.Addr, error) {
	off, ok := st.used.nextClear(st.cursor)
	if !ok && !fresh {
		if err := st.load(ctx, s); err != nil {
			return netip.Addr{}, err
		}
		off, ok = st.used.nextClear(st.cursor)
	}
	if !ok {
		return netip.Addr{}, fmt.Errorf("allocating an address in %s: %w", st.subnet, ErrPoolFull)
	}
	st.used.set(off)
	st.cursor = off + 1
	return addrAt(st.base, off), nil
}

// claim takes want, a static address.
func (st *poolState) claim(ctx context.Context, s store.Store, want netip.Addr) (netip.Addr, error) {
	bad := func(format string) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("address %s "+format+" %s: %w", want, st.subnet, sdk.ErrInvalid)
	}
	p := st.pool
	switch {
	case want.Zone() != "":
		return bad("has a zone; want an address of")
	case !p.Subnet.Contains(want):
		return bad("is not in subnet")
	case want == p.Subnet.Addr():
		return bad("is the network address of")
	case want.Is4() && want == lastAddr(p.Subnet):
		return bad("is the broadcast address of")
	case want == p.Gateway:
		return bad("is the gateway of")
	case p.auxName(want) != "":
		return netip.Addr{}, fmt.Errorf("address %s is auxiliary address %q of %s: %w", want, p.auxName(want), st.subnet, sdk.ErrInvalid)
	}
	inUse := fmt.Errorf("address %s is already in use: %w", want, sdk.ErrConflict)
	if st.isUsed(want) {
		if _, ok := st.pending[want]; ok {
			return netip.Addr{}, inUse
		}
		// Memory may be out of date: another host may have freed it.
		switch _, err := s.Get(ctx, addrKey(st.subnet, want)); {
		case err == nil:
			return netip.Addr{}, inUse
		case !errors.Is(err, sdk.ErrNotFound):
			return netip.Addr{}, fmt.Errorf("reading address %s: %w", want, err)
		}
		st.unmark(want)
		delete(st.suspect, want)
	}
	st.mark(want)
	return want, nil
}

func (st *poolState) mark(a netip.Addr) {
	if off, ok := offsetIn(st.base, st.used.size, a); ok {
		st.used.set(off)
	} else {
		st.far[a] = struct{}{}
	}
}

func (st *poolState) unmark(a netip.Addr) {
	if off, ok := offsetIn(st.base, st.used.size, a); ok {
		st.used.clear(off)
	} else {
		delete(st.far, a)
	}
}

func (st *poolState) isUsed(a netip.Addr) bool {
	if off, ok := offsetIn(st.base, st.used.size, a); ok {
		return st.used.isSet(off)
	}
	_, ok := st.far[a]
	return ok
}
