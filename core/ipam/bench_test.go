package ipam

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// BenchmarkAllocate measures one dynamic allocation in a /16 that already
// has `used` addresses committed in the store: Allocate, Done(true), and
// Released, so the number in use stays put. The store is only read once,
// before the clock starts; what is timed is the in-memory search and the
// ops. Compare across `used`: the cost must not grow with it.
//
//	packed     the first `used` addresses are taken; round robin goes on after them
//	scattered  `used` addresses taken at random
//	worst      packed, with the cursor put back at the start every time, so
//	           every search skips all the full blocks: n/4096 steps
//	scan       the peer: a linear scan of a map of used addresses from the
//	           start of the pool, what an allocator without a bitmap does
func BenchmarkAllocate(b *testing.B) {
	for _, used := range []int{0, 1000, 60000} {
		for _, layout := range []string{"packed", "scattered", "worst", "scan"} {
			b.Run(fmt.Sprintf("%s/used=%d", layout, used), func(b *testing.B) {
				pool := netip.MustParsePrefix("10.0.0.0/16")
				taken := usedAddrs(pool, used, layout == "scattered")
				if layout == "scan" {
					benchScan(b, pool, taken)
					return
				}
				a, _ := benchPool(b, pool, taken)
				st := a.state(pool, false)
				ctx := context.Background()
				for b.Loop() {
					if layout == "worst" {
						st.mu.Lock()
						st.cursor = 0
						st.mu.Unlock()
					}
					al, err := a.Allocate(ctx, pool, netip.Addr{}, "ep")
					if err != nil {
						b.Fatal(err)
					}
					al.Done(true)
					a.Released(pool, al.Addr.Addr())
				}
			})
		}
	}
}

// BenchmarkAllocateCommit is the whole cycle through a bolt store (no
// fsync) in a /16 with 60 000 addresses in use: allocate and commit with
// an endpoint record, then release and commit. It shows the allocator's
// share of an endpoint's life is noise next to the store's.
func BenchmarkAllocateCommit(b *testing.B) {
	pool := netip.MustParsePrefix("10.0.0.0/16")
	a, s := benchPool(b, pool, usedAddrs(pool, 60000, true))
	ctx := context.Background()
	for b.Loop() {
		al, err := a.Allocate(ctx, pool, netip.Addr{}, "ep")
		if err != nil {
			b.Fatal(err)
		}
		ep := &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: "sandnet/v1/endpoint/n/ep", Value: []byte("{}")}
		_, err = s.Txn(ctx, append([]*pb.TxnOp{ep}, al.Ops...))
		al.Done(err == nil)
		if err != nil {
			b.Fatal(err)
		}
		del := &pb.TxnOp{Verb: pb.TxnOp_DELETE, Key: ep.Key}
		if _, err := s.Txn(ctx, append([]*pb.TxnOp{del}, a.ReleaseOps(pool, al.Addr.Addr())...)); err != nil {
			b.Fatal(err)
		}
		a.Released(pool, al.Addr.Addr())
	}
}

// usedAddrs returns n addresses of pool other than its network, gateway
// and broadcast addresses: the first n, or n at random.
func usedAddrs(pool netip.Prefix, n int, scattered bool) []netip.Addr {
	all := make([]netip.Addr, 0, 1<<hostBits(pool))
	for a := pool.Addr().Next().Next(); a != lastAddr(pool); a = a.Next() {
		all = append(all, a)
	}
	if scattered {
		rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	}
	return all[:n]
}

// benchPool returns an allocator whose pool has taken committed in a
// fresh store, already loaded.
func benchPool(b *testing.B, pool netip.Prefix, taken []netip.Addr) (*Allocator, store.Store) {
	s := newStore(b)
	a := newAllocator(b, s, opts{})
	createPool(b, a, s, PoolRequest{NetworkID: "n", Subnet: pool})
	ctx := context.Background()
	for len(taken) > 0 {
		chunk := taken[:min(len(taken), 10000)]
		taken = taken[len(chunk):]
		ops := make([]*pb.TxnOp, len(chunk))
		for i, addr := range chunk {
			ops[i] = &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: addrKey(pool, addr), Value: []byte(`{"owner":"old"}`)}
		}
		if _, err := s.Txn(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Refresh(ctx, pool); err != nil {
		b.Fatal(err)
	}
	return a, s
}

// benchScan is the peer: the first free address by walking the pool
// from its start and looking each address up in a set of those in use.
func benchScan(b *testing.B, pool netip.Prefix, taken []netip.Addr) {
	inUse := make(map[netip.Addr]struct{}, len(taken)+2)
	for _, a := range taken {
		inUse[a] = struct{}{}
	}
	inUse[pool.Addr()], inUse[pool.Addr().Next()] = struct{}{}, struct{}{}
	end := lastAddr(pool)
	for b.Loop() {
		a := pool.Addr()
		for ; a != end; a = a.Next() {
			if _, ok := inUse[a]; !ok {
				break
			}
		}
		if a == end {
			b.Fatal("full")
		}
		inUse[a] = struct{}{}
		delete(inUse, a)
	}
}

// BenchmarkNextClear is the search alone, in a /16's bitmap with the
// first `used` bits set, from the start: the worst case for a search,
// which must skip every full block.
func BenchmarkNextClear(b *testing.B) {
	for _, used := range []uint64{0, 1000, 60000, 65535} {
		b.Run(fmt.Sprintf("used=%d", used), func(b *testing.B) {
			m := newBitmap(1 << 16)
			for i := range used {
				m.set(i)
			}
			for b.Loop() {
				i, ok := m.nextClear(0)
				if !ok || i != used {
					b.Fatalf("nextClear = %d, %v", i, ok)
				}
			}
		})
	}
}
