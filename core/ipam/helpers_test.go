package ipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// newStore returns a bolt store on a file of its own, without fsync.
func newStore(t testing.TB) *boltstore.Store {
	t.Helper()
	s := boltstore.New()
	path := filepath.Join(t.TempDir(), "store.db")
	cfg := fmt.Sprintf(`{"path":%q,"timeout":null,"no_sync":true}`, path)
	if err := s.Configure(context.Background(), []byte(cfg)); err != nil {
		t.Fatalf("configuring bolt: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

type opts struct {
	pools  []config.Pool
	routes []string
}

// newAllocator returns an Allocator over s.
func newAllocator(t testing.TB, s store.Store, o opts) *Allocator {
	t.Helper()
	var routes []netip.Prefix
	for _, r := range o.routes {
		routes = append(routes, netip.MustParsePrefix(r))
	}
	a, err := New(Config{
		Store:        func() (store.Store, error) { return s, nil },
		DefaultPools: o.pools,
		HostRoutes:   func() ([]netip.Prefix, error) { return routes, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// createPool requests a pool and commits it, as the controller does
// with its network record.
func createPool(t testing.TB, a *Allocator, s store.Store, req PoolRequest) *Pool {
	t.Helper()
	p, ops, err := a.RequestPool(context.Background(), req)
	if err != nil {
		t.Fatalf("RequestPool(%+v): %v", req, err)
	}
	ops = append(ops, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: "sandnet/v1/network/" + req.NetworkID, Value: []byte("{}")})
	if _, err := s.Txn(context.Background(), ops); err != nil {
		t.Fatalf("committing pool %s: %v", p.Subnet, err)
	}
	return p
}

// allocate allocates in pool and commits it with an endpoint record in
// one Txn, retrying on conflicts as the controller does.
func allocate(ctx context.Context, a *Allocator, s store.Store, pool netip.Prefix, want netip.Addr, owner string) (netip.Prefix, error) {
	for attempt := 0; attempt < 1000; attempt++ {
		al, err := a.Allocate(ctx, pool, want, owner)
		if err != nil {
			return netip.Prefix{}, err
		}
		ops := append([]*pb.TxnOp{{Verb: pb.TxnOp_CAS, Key: "sandnet/v1/endpoint/net/" + owner, Value: []byte(al.Addr.String())}}, al.Ops...)
		_, err = s.Txn(ctx, ops)
		al.Done(err == nil)
		if err == nil {
			return al.Addr, nil
		}
		if !errors.Is(err, sdk.ErrConflict) {
			return netip.Prefix{}, err
		}
	}
	return netip.Prefix{}, errors.New("too many conflicts")
}

func mustAllocate(t testing.TB, a *Allocator, s store.Store, pool netip.Prefix, want, owner string) netip.Addr {
	t.Helper()
	var w netip.Addr
	if want != "" {
		w = netip.MustParseAddr(want)
	}
	p, err := allocate(context.Background(), a, s, pool, w, owner)
	if err != nil {
		t.Fatalf("allocating %q in %s: %v", want, pool, err)
	}
	if p.Bits() != pool.Bits() {
		t.Errorf("allocated %s: want prefix length %d", p, pool.Bits())
	}
	return p.Addr()
}

// release frees addr with an endpoint delete, as the controller does.
func release(t testing.TB, a *Allocator, s store.Store, pool netip.Prefix, addr netip.Addr, owner string) {
	t.Helper()
	ops := append([]*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: "sandnet/v1/endpoint/net/" + owner}}, a.ReleaseOps(pool, addr)...)
	if _, err := s.Txn(context.Background(), ops); err != nil {
		t.Fatalf("releasing %s: %v", addr, err)
	}
	a.Released(pool, addr)
}

// storedAddrs returns the address keys of pool in the store, and their
// owners.
func storedAddrs(t testing.TB, s store.Store, pool netip.Prefix) map[netip.Addr]string {
	t.Helper()
	kvs, err := s.List(context.Background(), addrsOf(pool))
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for _, kv := range kvs {
		a := netip.MustParseAddr(strings.TrimPrefix(kv.GetKey(), addrsOf(pool)))
		out[a] = string(kv.GetValue())
	}
	return out
}

func wantErr(t testing.TB, err, sentinel error, substr string) {
	t.Helper()
	switch {
	case err == nil:
		t.Fatalf("no error; want %v containing %q", sentinel, substr)
	case !errors.Is(err, sentinel):
		t.Fatalf("error %q does not wrap %v", err, sentinel)
	case !strings.Contains(err.Error(), substr):
		t.Fatalf("error %q does not contain %q", err, substr)
	}
}
