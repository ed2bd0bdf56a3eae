package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// countingStore counts the Lists, which is what reloading a pool costs.
type countingStore struct {
	store.Store
	lists atomic.Int64
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, prefix)
}

func TestAllocateStatic(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	v4 := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.1.0.0/24"), Range: netip.MustParsePrefix("10.1.0.128/25")}).Subnet
	v6 := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("fd00:1::/64"), V6: true}).Subnet
	mustAllocate(t, a, s, v4, "10.1.0.5", "taken")
	mustAllocate(t, a, s, v6, "fd00:1::5", "taken6")
	for _, tc := range []struct {
		pool     netip.Prefix
		want     string
		sentinel error  // nil: allocated
		msg      string // in the error
	}{
		{v4, "10.1.0.5", sdk.ErrConflict, "address 10.1.0.5 is already in use"},
		{v4, "10.1.0.1", sdk.ErrInvalid, "address 10.1.0.1 is the gateway of 10.1.0.0/24"},
		{v4, "10.1.0.0", sdk.ErrInvalid, "address 10.1.0.0 is the network address of 10.1.0.0/24"},
		{v4, "10.1.0.255", sdk.ErrInvalid, "address 10.1.0.255 is the broadcast address of 10.1.0.0/24"},
		{v4, "10.2.0.1", sdk.ErrInvalid, "address 10.2.0.1 is not in subnet 10.1.0.0/24"},
		{v4, "fd00:1::7", sdk.ErrInvalid, "address fd00:1::7 is not in subnet 10.1.0.0/24"},
		{v4, "10.1.0.6", nil, ""},   // outside the range, inside the subnet: allowed, as in Docker
		{v4, "10.1.0.200", nil, ""}, // inside the range
		{v4, "::ffff:10.1.0.7", nil, ""},
		{v6, "fd00:1::5", sdk.ErrConflict, "address fd00:1::5 is already in use"},
		{v6, "fd00:1::1", sdk.ErrInvalid, "is the gateway of fd00:1::/64"},
		{v6, "fd00:1::", sdk.ErrInvalid, "is the network address of fd00:1::/64"},
		{v6, "fd00:2::5", sdk.ErrInvalid, "is not in subnet fd00:1::/64"},
		{v6, "fd00:1::ffff:ffff:ffff:ffff", nil, ""}, // no broadcast in IPv6
		{v6, "fd00:1::8000:0:0:1", nil, ""},          // beyond the 2^63 window
		{v6, "fd00:1::1234", nil, ""},
	} {
		t.Run(tc.want, func(t *testing.T) {
			got, err := allocate(t.Context(), a, s, tc.pool, netip.MustParseAddr(tc.want), "ep-"+tc.want)
			if tc.sentinel != nil {
				wantErr(t, err, tc.sentinel, tc.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddr(tc.want).Unmap(); got != netip.PrefixFrom(want, tc.pool.Bits()) {
				t.Errorf("got %s, want %s/%d", got, want, tc.pool.Bits())
			}
			// Taken now, for this allocator and for a fresh one.
			_, err = allocate(t.Context(), a, s, tc.pool, got.Addr(), "again")
			wantErr(t, err, sdk.ErrConflict, "already in use")
			_, err = allocate(t.Context(), newAllocator(t, s, opts{}), s, tc.pool, got.Addr(), "again")
			wantErr(t, err, sdk.ErrConflict, "already in use")
		})
	}
	if _, err := a.Allocate(t.Context(), netip.MustParsePrefix("10.1.0.1/24"), netip.Addr{}, "x"); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("Allocate in a prefix with host bits: %v", err)
	}
	if _, err := a.Allocate(t.Context(), v4, netip.Addr{}, ""); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("Allocate without an owner: %v", err)
	}
	if _, err := a.Allocate(t.Context(), netip.MustParsePrefix("10.99.0.0/24"), netip.Addr{}, "x"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Allocate in a missing pool: %v", err)
	}
}

// TestAllocatePending checks that an address handed out but not settled
// is not handed out again, and is free again after Done(false).
func TestAllocatePending(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.1.0.0/29")}).Subnet
	want := netip.MustParseAddr("10.1.0.4")
	al, err := a.Allocate(t.Context(), pool, want, "one")
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Allocate(t.Context(), pool, want, "two")
	wantErr(t, err, sdk.ErrConflict, "address 10.1.0.4 is already in use")
	seen := map[netip.Addr]bool{}
	var held []*Allocation
	for range 4 { // .2 .3 .5 .6: every other address
		al, err := a.Allocate(t.Context(), pool, netip.Addr{}, "dyn")
		if err != nil {
			t.Fatal(err)
		}
		if a := al.Addr.Addr(); a == want || seen[a] {
			t.Fatalf("handed out %s twice", a)
		}
		seen[al.Addr.Addr()] = true
		held = append(held, al)
	}
	_, err = a.Allocate(t.Context(), pool, netip.Addr{}, "dyn")
	wantErr(t, err, ErrPoolFull, "pool is full")
	al.Done(false)
	al.Done(true) // ignored: the first call counts
	for _, h := range held {
		h.Done(false)
	}
	if got := mustAllocate(t, a, s, pool, "10.1.0.4", "two"); got != want {
		t.Errorf("got %s", got)
	}
}

func TestAllocateRoundRobin(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.2.0.0/29")}).Subnet
	next := func(owner string) string { return mustAllocate(t, a, s, pool, "", owner).String() }
	for i, want := range []string{"10.2.0.2", "10.2.0.3"} {
		if got := next(fmt.Sprint("ep", i)); got != want {
			t.Errorf("allocation %d: %s, want %s", i, got, want)
		}
	}
	release(t, a, s, pool, netip.MustParseAddr("10.2.0.2"), "ep0")
	// The freed .2 waits until the cursor comes round.
	for i, want := range []string{"10.2.0.4", "10.2.0.5", "10.2.0.6", "10.2.0.2"} {
		if got := next(fmt.Sprint("ep", i+2)); got != want {
			t.Errorf("allocation %d after the release: %s, want %s", i, got, want)
		}
	}
}

func TestAllocateExhausted(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.3.0.0/29")}).Subnet
	// A /29 has 8 addresses: network, gateway, broadcast and 5 to hand out.
	for i := range 5 {
		mustAllocate(t, a, s, pool, "", fmt.Sprint("ep", i))
	}
	_, err := allocate(t.Context(), a, s, pool, netip.Addr{}, "ep5")
	wantErr(t, err, ErrPoolFull, "allocating an address in 10.3.0.0/29: pool is full")
	wantErr(t, err, sdk.ErrConflict, "")
	if n := len(storedAddrs(t, s, pool)); n != 5 {
		t.Errorf("%d addresses stored, want 5", n)
	}
	release(t, a, s, pool, netip.MustParseAddr("10.3.0.4"), "ep2")
	if got := mustAllocate(t, a, s, pool, "", "ep5").String(); got != "10.3.0.4" {
		t.Errorf("after a release: %s, want 10.3.0.4", got)
	}
}

// TestAllocateAux checks that auxiliary addresses are never handed out,
// neither dynamically nor when asked for, also by an allocator that reads
// the pool afresh (another host's).
func TestAllocateAux(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	aux := map[string]netip.Addr{"router": netip.MustParseAddr("10.3.0.2"), "printer": netip.MustParseAddr("10.3.0.5")}
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.3.0.0/29"), Aux: aux}).Subnet
	for _, al := range []*Allocator{a, newAllocator(t, s, opts{})} {
		_, err := allocate(t.Context(), al, s, pool, netip.MustParseAddr("10.3.0.2"), "static")
		wantErr(t, err, sdk.ErrInvalid, `address 10.3.0.2 is auxiliary address "router" of 10.3.0.0/29`)
	}
	// A /29 has 8 addresses: network, gateway, broadcast, two auxiliary
	// and 3 to hand out.
	var got []string
	for i := range 3 {
		got = append(got, mustAllocate(t, a, s, pool, "", fmt.Sprint("ep", i)).String())
	}
	if fmt.Sprint(got) != "[10.3.0.3 10.3.0.4 10.3.0.6]" {
		t.Errorf("dynamic addresses = %v", got)
	}
	_, err := allocate(t.Context(), a, s, pool, netip.Addr{}, "ep3")
	wantErr(t, err, ErrPoolFull, "pool is full")
	_, err = allocate(t.Context(), newAllocator(t, s, opts{}), s, pool, netip.Addr{}, "ep3")
	wantErr(t, err, ErrPoolFull, "pool is full")
}

func TestAllocateRange(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.4.0.0/24"), Range: netip.MustParsePrefix("10.4.0.64/30")}).Subnet
	var got []string
	for i := range 4 {
		got = append(got, mustAllocate(t, a, s, pool, "", fmt.Sprint("ep", i)).String())
	}
	if fmt.Sprint(got) != "[10.4.0.64 10.4.0.65 10.4.0.66 10.4.0.67]" {
		t.Errorf("dynamic addresses = %v", got)
	}
	_, err := allocate(t.Context(), a, s, pool, netip.Addr{}, "ep4")
	wantErr(t, err, ErrPoolFull, "pool is full")
	// A static address outside the range still works.
	mustAllocate(t, a, s, pool, "10.4.0.10", "static")
}

func TestAllocateV6(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", V6: true}).Subnet
	var got []string
	for i := range 3 {
		got = append(got, mustAllocate(t, a, s, pool, "", fmt.Sprint("ep", i)).String())
	}
	if fmt.Sprint(got) != "[fd53:616e:646e::2 fd53:616e:646e::3 fd53:616e:646e::4]" {
		t.Errorf("dynamic addresses = %v", got)
	}
	far := "fd53:616e:646e:0:ffff:ffff:ffff:fffe"
	mustAllocate(t, a, s, pool, far, "far")
	b := newAllocator(t, s, opts{})
	_, err := allocate(t.Context(), b, s, pool, netip.MustParseAddr(far), "again")
	wantErr(t, err, sdk.ErrConflict, "already in use")
	release(t, a, s, pool, netip.MustParseAddr(far), "far")
	mustAllocate(t, a, s, pool, far, "far2")
}

// TestReload checks that a new Allocator over the same store, as after a
// restart, sees what was allocated, and does not start over at the
// beginning of the pool.
func TestReload(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.5.0.0/24")}).Subnet
	for i := range 4 { // .2 to .5
		mustAllocate(t, a, s, pool, "", fmt.Sprint("ep", i))
	}
	mustAllocate(t, a, s, pool, "10.5.0.100", "static")
	release(t, a, s, pool, netip.MustParseAddr("10.5.0.2"), "ep0")
	release(t, a, s, pool, netip.MustParseAddr("10.5.0.100"), "static")

	b := newAllocator(t, s, opts{})
	for _, taken := range []string{"10.5.0.3", "10.5.0.4", "10.5.0.5"} {
		_, err := allocate(t.Context(), b, s, pool, netip.MustParseAddr(taken), "x")
		wantErr(t, err, sdk.ErrConflict, "address "+taken+" is already in use")
	}
	if got := mustAllocate(t, b, s, pool, "", "new").String(); got != "10.5.0.6" {
		t.Errorf("first allocation after a reload: %s; want 10.5.0.6, after the highest in use", got)
	}
	mustAllocate(t, b, s, pool, "10.5.0.2", "reuse")
	if got := storedAddrs(t, s, pool); len(got) != 5 || got[netip.MustParseAddr("10.5.0.6")] != `{"owner":"new"}` {
		t.Errorf("stored = %v", got)
	}
}

// TestTxnFailure checks that an address whose Txn failed for a reason of
// its own (here another op's CHECK_INDEX) is free again, without reading
// the whole pool again.
func TestTxnFailure(t *testing.T) {
	ctx := t.Context()
	s := &countingStore{Store: newStore(t)}
	a := newAllocator(t, s, opts{})
	pool := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.6.0.0/24")}).Subnet
	mustAllocate(t, a, s, pool, "", "first")

	al, err := a.Allocate(ctx, pool, netip.Addr{}, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	ops := append(al.Ops, &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: "sandnet/v1/endpoint/net/doomed", Index: 99})
	_, err = s.Txn(ctx, ops)
	wantErr(t, err, sdk.ErrConflict, "")
	al.Done(false)
	if got := storedAddrs(t, s, pool); len(got) != 1 {
		t.Errorf("stored after the failed Txn: %v", got)
	}
	lists := s.lists.Load()
	if got := mustAllocate(t, a, s, pool, al.Addr.Addr().String(), "second"); got != al.Addr.Addr() {
		t.Errorf("got %s", got)
	}
	if n := s.lists.Load() - lists; n != 0 {
		t.Errorf("%d Lists after a failure of the caller's own; want none", n)
	}
}

// TestStaleView has two hosts share a pool, each learning late what the
// other did.
func TestStaleView(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	h1, h2 := newAllocator(t, s, opts{}), newAllocator(t, s, opts{})
	pool := createPool(t, h1, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.7.0.0/29")}).Subnet
	if err := h2.Refresh(ctx, pool); err != nil {
		t.Fatal(err)
	}
	mustAllocate(t, h1, s, pool, "", "h1-a") // .2, unknown to h2

	// h2 picks .2 too; its Txn loses and it learns.
	al, err := h2.Allocate(ctx, pool, netip.Addr{}, "h2-a")
	if err != nil {
		t.Fatal(err)
	}
	if al.Addr.Addr().String() != "10.7.0.2" {
		t.Fatalf("h2 picked %s; the test wants it to collide on 10.7.0.2", al.Addr)
	}
	_, err = s.Txn(ctx, al.Ops)
	wantErr(t, err, sdk.ErrConflict, "")
	al.Done(false)
	if got := mustAllocate(t, h2, s, pool, "", "h2-a").String(); got != "10.7.0.3" {
		t.Errorf("h2 after the conflict: %s, want 10.7.0.3", got)
	}

	// h1 frees .2: h2 still thinks it taken, but a static request checks.
	release(t, h1, s, pool, netip.MustParseAddr("10.7.0.2"), "h1-a")
	mustAllocate(t, h2, s, pool, "10.7.0.2", "h2-b")

	// h2 fills the pool; h1 frees one; h2 sees it before saying full.
	for _, o := range []string{"h2-c", "h2-d", "h2-e"} {
		mustAllocate(t, h2, s, pool, "", o)
	}
	_, err = allocate(ctx, h2, s, pool, netip.Addr{}, "h2-f")
	wantErr(t, err, ErrPoolFull, "")
	release(t, h1, s, pool, netip.MustParseAddr("10.7.0.3"), "h2-a")
	if got := mustAllocate(t, h2, s, pool, "", "h2-f").String(); got != "10.7.0.3" {
		t.Errorf("h2 after h1's release: %s, want 10.7.0.3", got)
	}
}

// TestTwoHosts has two hosts, each with its own Allocator and its own
// connection to one store, allocate from one /24 at once, committing
// every address with an endpoint record and retrying on conflicts: first
// 100 addresses each, then until the pool is full. Every address must be
// handed out once, and the pool must end full.
func TestTwoHosts(t *testing.T) {
	ctx := t.Context()
	impl := newStore(t)
	hosts := twoHosts(t, impl)
	pool := createPool(t, hosts[0].a, hosts[0].s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.8.0.0/24")})

	const workers, perWorker = 4, 25 // per host
	var mu sync.Mutex
	got := map[netip.Addr]string{}
	var conflicts atomic.Int64
	run := func(limit int) {
		var wg sync.WaitGroup
		for h := range hosts {
			for w := range workers {
				wg.Go(func() {
					for n := 0; limit == 0 || n < limit; n++ {
						owner := fmt.Sprintf("h%d-w%d-%d-%d", h, w, limit, n)
						addr, err := allocateCounting(ctx, hosts[h].a, hosts[h].s, pool.Subnet, owner, &conflicts)
						if errors.Is(err, ErrPoolFull) && limit == 0 {
							return
						}
						if err != nil {
							t.Errorf("%s: %v", owner, err)
							return
						}
						mu.Lock()
						if prev, dup := got[addr]; dup {
							t.Errorf("%s handed out to %s and %s", addr, prev, owner)
						}
						got[addr] = owner
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
	}
	run(perWorker)
	if len(got) != 2*workers*perWorker {
		t.Errorf("%d distinct addresses after the first round, want %d", len(got), 2*workers*perWorker)
	}
	run(0)
	t.Logf("%d conflicts retried", conflicts.Load())
	if len(got) != 253 {
		t.Errorf("%d distinct addresses handed out, want all 253 of the /24", len(got))
	}
	stored := storedAddrs(t, impl, pool.Subnet)
	if len(stored) != len(got) {
		t.Errorf("%d addresses stored, %d handed out", len(stored), len(got))
	}
	for addr, owner := range got {
		if pool.reserved(addr) || !pool.Subnet.Contains(addr) {
			t.Errorf("handed out %s", addr)
		}
		if want := fmt.Sprintf(`{"owner":%q}`, owner); stored[addr] != want {
			t.Errorf("%s stored as %s, want %s", addr, stored[addr], want)
		}
	}
}

func allocateCounting(ctx context.Context, a *Allocator, s store.Store, pool netip.Prefix, owner string, conflicts *atomic.Int64) (netip.Addr, error) {
	for range 1000 {
		al, err := a.Allocate(ctx, pool, netip.Addr{}, owner)
		if err != nil {
			return netip.Addr{}, err
		}
		ops := append([]*pb.TxnOp{{Verb: pb.TxnOp_CAS, Key: "sandnet/v1/endpoint/n/" + owner, Value: []byte("{}")}}, al.Ops...)
		_, err = s.Txn(ctx, ops)
		al.Done(err == nil)
		if err == nil {
			return al.Addr.Addr(), nil
		}
		if !errors.Is(err, sdk.ErrConflict) {
			return netip.Addr{}, err
		}
		conflicts.Add(1)
	}
	return netip.Addr{}, errors.New("too many conflicts")
}

// TestHostsInTurn: two hosts allocating from one pool in turn, each told
// of the other's addresses as its watch would (Observe), never pick an
// address the other holds: no commit is lost. Without Observe each picks
// the address the other took last, loses the commit and tries again.
func TestHostsInTurn(t *testing.T) {
	for _, observe := range []bool{true, false} {
		t.Run(fmt.Sprintf("observe=%v", observe), func(t *testing.T) {
			ctx := t.Context()
			hosts := twoHosts(t, newStore(t))
			pool := createPool(t, hosts[0].a, hosts[0].s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.9.0.0/24")})
			var conflicts atomic.Int64
			for n := range 20 {
				h := n % 2
				addr, err := allocateCounting(ctx, hosts[h].a, hosts[h].s, pool.Subnet, fmt.Sprint("e", n), &conflicts)
				if err != nil {
					t.Fatal(err)
				}
				if observe {
					hosts[1-h].a.Observe(addr)
				}
			}
			if got := conflicts.Load(); observe && got != 0 {
				t.Errorf("%d commits lost to the other host, though each was told of its addresses", got)
			} else if !observe && got < 10 {
				t.Errorf("only %d commits lost without Observe: the test no longer shows what Observe is for", got)
			}
		})
	}
}

// host is one host's allocator and its connection to the shared store.
type host struct {
	a *Allocator
	s store.Store
}

// twoHosts returns two hosts sharing impl, each through a store plugin
// connection of its own, as two agents on one Consul.
func twoHosts(t *testing.T, impl store.Store) [2]host {
	t.Helper()
	var hosts [2]host
	for i := range hosts {
		c, stop, err := store.InProcess(boltstore.Info("test"), impl)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		hosts[i] = host{a: newAllocator(t, c, opts{}), s: c}
	}
	return hosts
}
