package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

func TestRequestPoolPicks(t *testing.T) {
	custom := []config.Pool{
		{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24},
		{Base: netip.MustParsePrefix("fd00:1::/48"), Size: 64},
	}
	for _, tc := range []struct {
		name     string
		pools    []config.Pool
		existing []string // subnets of other networks, committed first
		routes   []string
		v6       bool
		want     string // subnet, or "" for ErrNoSubnet
	}{
		{name: "first default", want: "172.17.0.0/16"},
		{name: "skips a used pool", existing: []string{"172.17.0.0/16"}, want: "172.18.0.0/16"},
		{name: "skips a pool inside a candidate", existing: []string{"172.17.3.0/24"}, want: "172.18.0.0/16"},
		{name: "skips host routes", routes: []string{"172.17.0.0/16", "172.18.5.0/24"}, want: "172.19.0.0/16"},
		{name: "skips pools and routes", existing: []string{"172.17.0.0/16"}, routes: []string{"172.18.0.0/16"}, want: "172.19.0.0/16"},
		{name: "ignores default routes", routes: []string{"0.0.0.0/0", "::/0"}, want: "172.17.0.0/16"},
		{name: "route with host bits", routes: []string{"172.17.0.1/16"}, want: "172.18.0.0/16"},
		{name: "route covering a whole pool list", routes: []string{"172.16.0.0/12"}, want: "192.168.0.0/20"},
		{name: "next pool of the list", routes: []string{"172.16.0.0/12"}, existing: []string{"192.168.0.128/25"}, want: "192.168.16.0/20"},
		{name: "configured pools", pools: custom, existing: []string{"10.10.0.0/24", "10.10.1.0/24"}, want: "10.10.2.0/24"},
		{name: "configured pools used up", pools: custom, routes: []string{"10.10.0.0/16"}},
		{name: "default pools used up", routes: []string{"172.16.0.0/12", "192.168.0.0/16"}},
		{name: "IPv6 default", v6: true, want: "fd53:616e:646e::/64"},
		{name: "IPv6 skips a pool", v6: true, existing: []string{"fd53:616e:646e::/64"}, want: "fd53:616e:646e:1::/64"},
		{name: "IPv6 jumps over a large pool", v6: true, existing: []string{"fd53:616e:646e::/52"}, want: "fd53:616e:646e:1000::/64"},
		{name: "IPv6 skips host routes", v6: true, routes: []string{"fd53:616e:646e::/63", "fe80::/64"}, want: "fd53:616e:646e:2::/64"},
		{name: "IPv6 configured", v6: true, pools: custom, want: "fd00:1::/64"},
		{name: "IPv4 ignores IPv6 routes", routes: []string{"fd53:616e:646e::/48"}, want: "172.17.0.0/16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			a := newAllocator(t, s, opts{pools: tc.pools, routes: tc.routes})
			for i, e := range tc.existing {
				p := netip.MustParsePrefix(e)
				createPool(t, a, s, PoolRequest{NetworkID: fmt.Sprint("other", i), Subnet: p, V6: p.Addr().Is6()})
			}
			p, ops, err := a.RequestPool(t.Context(), PoolRequest{NetworkID: "net", V6: tc.v6})
			if tc.want == "" {
				wantErr(t, err, ErrNoSubnet, "fully subnetted")
				wantErr(t, err, sdk.ErrConflict, family(tc.v6))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := netip.MustParsePrefix(tc.want)
			if p.Subnet != want || p.Gateway != want.Addr().Next() || p.NetworkID != "net" || p.Range.IsValid() {
				t.Errorf("pool = %+v; want subnet %s, gateway %s", p, want, want.Addr().Next())
			}
			if _, err := s.Txn(t.Context(), ops); err != nil {
				t.Fatalf("committing: %v", err)
			}
			pools, err := a.Pools(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n := len(pools); n != len(tc.existing)+1 {
				t.Errorf("%d pools in the store, want %d", n, len(tc.existing)+1)
			}
		})
	}
}

func TestRequestPoolInvalid(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	sub := pfx("10.1.0.0/24")
	tooMany := map[string]netip.Addr{}
	for i := range MaxAux + 1 {
		tooMany[fmt.Sprint("a", i)] = netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
	}
	for _, tc := range []struct {
		name string
		req  PoolRequest
		want string // in the error
	}{
		{"no network", PoolRequest{Subnet: sub}, "network ID"},
		{"subnet host bits", PoolRequest{NetworkID: "n", Subnet: pfx("10.1.0.5/24")}, "subnet 10.1.0.5/24 has host bits set (did you mean 10.1.0.0/24?)"},
		{"subnet not IPv4", PoolRequest{NetworkID: "n", Subnet: pfx("fd00::/64")}, "subnet fd00::/64 is not an IPv4 subnet"},
		{"subnet not IPv6", PoolRequest{NetworkID: "n", Subnet: sub, V6: true}, "subnet 10.1.0.0/24 is not an IPv6 subnet"},
		{"subnet too small", PoolRequest{NetworkID: "n", Subnet: pfx("10.1.0.0/31")}, "subnet 10.1.0.0/31 is too small"},
		{"IPv6 subnet too small", PoolRequest{NetworkID: "n", Subnet: pfx("fd00::/127"), V6: true}, "subnet fd00::/127 is too small"},
		{"subnet IPv4-mapped", PoolRequest{NetworkID: "n", Subnet: pfx("::ffff:10.1.0.0/120"), V6: true}, "subnet ::ffff:10.1.0.0/120 is an IPv4-mapped"},
		{"loopback", PoolRequest{NetworkID: "n", Subnet: pfx("127.0.0.0/24")}, "subnet 127.0.0.0/24 overlaps 127.0.0.0/8, loopback"},
		{"every address", PoolRequest{NetworkID: "n", Subnet: pfx("0.0.0.0/0")}, "subnet 0.0.0.0/0 overlaps 0.0.0.0/8"},
		{"multicast", PoolRequest{NetworkID: "n", Subnet: pfx("224.0.0.0/24")}, "overlaps 224.0.0.0/4, multicast"},
		{"limited broadcast", PoolRequest{NetworkID: "n", Subnet: pfx("255.255.255.0/24")}, "overlaps 255.255.255.255/32"},
		{"IPv6 link-local", PoolRequest{NetworkID: "n", Subnet: pfx("fe80::/64"), V6: true}, "overlaps fe80::/10, link-local"},
		{"IPv6 multicast", PoolRequest{NetworkID: "n", Subnet: pfx("ff00::/64"), V6: true}, "overlaps ff00::/8, multicast"},
		{"IPv6 loopback", PoolRequest{NetworkID: "n", Subnet: pfx("::/64"), V6: true}, "overlaps ::/127"},
		{"gateway outside", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("10.2.0.1")}, "gateway 10.2.0.1 is not in subnet 10.1.0.0/24"},
		{"gateway other family", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("fd00::1")}, "gateway fd00::1 is not in subnet 10.1.0.0/24"},
		{"gateway network address", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("10.1.0.0")}, "gateway 10.1.0.0 is the network address of 10.1.0.0/24"},
		{"gateway broadcast", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("10.1.0.255")}, "gateway 10.1.0.255 is the broadcast address of 10.1.0.0/24"},
		{"IPv6 gateway network address", PoolRequest{NetworkID: "n", Subnet: pfx("fd00::/64"), Gateway: addr("fd00::"), V6: true}, "gateway fd00:: is the network address"},
		{"gateway without subnet", PoolRequest{NetworkID: "n", Gateway: addr("10.1.0.1")}, "gateway 10.1.0.1 needs a subnet"},
		{"range without subnet", PoolRequest{NetworkID: "n", Range: pfx("10.1.0.0/25")}, "range 10.1.0.0/25 needs a subnet"},
		{"range outside", PoolRequest{NetworkID: "n", Subnet: sub, Range: pfx("10.2.0.0/25")}, "range 10.2.0.0/25 is not inside subnet 10.1.0.0/24"},
		{"range larger", PoolRequest{NetworkID: "n", Subnet: sub, Range: pfx("10.0.0.0/8")}, "range 10.0.0.0/8 is not inside subnet 10.1.0.0/24"},
		{"range host bits", PoolRequest{NetworkID: "n", Subnet: sub, Range: pfx("10.1.0.5/25")}, "range 10.1.0.5/25 has host bits set"},
		{"range only reserved", PoolRequest{NetworkID: "n", Subnet: sub, Range: pfx("10.1.0.0/31")}, "range 10.1.0.0/31 has no address to allocate"},
		{"range only gateway", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("10.1.0.9"), Range: pfx("10.1.0.9/32")}, "range 10.1.0.9/32 has no address"},
		{"range only auxiliary", PoolRequest{NetworkID: "n", Subnet: sub, Range: pfx("10.1.0.8/31"), Aux: map[string]netip.Addr{"a": addr("10.1.0.8"), "b": addr("10.1.0.9")}},
			"range 10.1.0.8/31 has no address to allocate besides the network, broadcast, gateway and auxiliary addresses"},
		{"auxiliary without subnet", PoolRequest{NetworkID: "n", Aux: map[string]netip.Addr{"router": addr("10.1.0.5")}}, "auxiliary addresses need a subnet"},
		{"auxiliary outside", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"router": addr("10.2.0.5")}}, `auxiliary address "router" (10.2.0.5) is not in subnet 10.1.0.0/24`},
		{"auxiliary other family", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"router": addr("fd00::5")}}, `auxiliary address "router" (fd00::5) is not in subnet 10.1.0.0/24`},
		{"auxiliary network address", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"r": addr("10.1.0.0")}}, `auxiliary address "r" (10.1.0.0) is the network address of 10.1.0.0/24`},
		{"auxiliary broadcast", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"r": addr("10.1.0.255")}}, `auxiliary address "r" (10.1.0.255) is the broadcast address of 10.1.0.0/24`},
		{"auxiliary gateway", PoolRequest{NetworkID: "n", Subnet: sub, Gateway: addr("10.1.0.9"), Aux: map[string]netip.Addr{"r": addr("10.1.0.9")}}, `auxiliary address "r" (10.1.0.9) is the gateway of 10.1.0.0/24`},
		{"auxiliary twice", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"r1": addr("10.1.0.9"), "r2": addr("10.1.0.9")}}, `auxiliary addresses "r1" and "r2" are both 10.1.0.9`},
		{"too many auxiliary", PoolRequest{NetworkID: "n", Subnet: pfx("10.2.0.0/16"), Aux: tooMany}, "257 auxiliary addresses; at most 256"},
		{"auxiliary without name", PoolRequest{NetworkID: "n", Subnet: sub, Aux: map[string]netip.Addr{"": addr("10.1.0.9")}}, "auxiliary address 10.1.0.9 has no name"},
		{"auxiliary with zone", PoolRequest{NetworkID: "n", Subnet: pfx("fd00::/64"), V6: true, Aux: map[string]netip.Addr{"r": addr("fd00::9%eth0")}}, `auxiliary address "r" (fd00::9%eth0) has a zone`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			a := newAllocator(t, s, opts{})
			p, ops, err := a.RequestPool(t.Context(), tc.req)
			if p != nil || ops != nil {
				t.Errorf("got pool %+v and %d ops with the error", p, len(ops))
			}
			wantErr(t, err, sdk.ErrInvalid, tc.want)
		})
	}
}

func TestRequestPoolExplicit(t *testing.T) {
	pfx, addr := netip.MustParsePrefix, netip.MustParseAddr
	for _, tc := range []struct {
		name string
		req  PoolRequest
		want Pool
	}{
		{"default gateway", PoolRequest{Subnet: pfx("10.1.0.0/24")},
			Pool{Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1")}},
		{"gateway and range", PoolRequest{Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.254"), Range: pfx("10.1.0.128/25")},
			Pool{Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.254"), Range: pfx("10.1.0.128/25")}},
		{"range equal to subnet", PoolRequest{Subnet: pfx("10.1.0.0/24"), Range: pfx("10.1.0.0/24")},
			Pool{Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1")}},
		{"smallest subnet", PoolRequest{Subnet: pfx("10.1.0.0/30")},
			Pool{Subnet: pfx("10.1.0.0/30"), Gateway: addr("10.1.0.1")}},
		{"IPv6 last address as gateway", PoolRequest{Subnet: pfx("fd00::/64"), Gateway: addr("fd00::ffff:ffff:ffff:ffff"), V6: true},
			Pool{Subnet: pfx("fd00::/64"), Gateway: addr("fd00::ffff:ffff:ffff:ffff")}},
		{"IPv6 /48", PoolRequest{Subnet: pfx("fd00:2::/48"), V6: true},
			Pool{Subnet: pfx("fd00:2::/48"), Gateway: addr("fd00:2::1")}},
		{"auxiliary addresses, sorted by address", PoolRequest{Subnet: pfx("10.1.0.0/24"), Aux: map[string]netip.Addr{"printer": addr("10.1.0.20"), "router": addr("10.1.0.9")}},
			Pool{Subnet: pfx("10.1.0.0/24"), Gateway: addr("10.1.0.1"), Aux: []AuxAddress{{"router", addr("10.1.0.9")}, {"printer", addr("10.1.0.20")}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			a := newAllocator(t, s, opts{})
			tc.req.NetworkID, tc.want.NetworkID = "n", "n"
			got := createPool(t, a, s, tc.req)
			if !got.equal(&tc.want) {
				t.Errorf("pool = %+v, want %+v", got, tc.want)
			}
			// What a fresh allocator reads back is the same.
			pools, err := newAllocator(t, s, opts{}).Pools(t.Context())
			if err != nil || len(pools) != 1 || !pools[0].equal(&tc.want) {
				t.Errorf("Pools() = %v, %v", pools, err)
			}
		})
	}
}

func TestRequestPoolOverlap(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	createPool(t, a, s, PoolRequest{NetworkID: "net-a", Subnet: netip.MustParsePrefix("10.1.0.0/16")})
	for _, tc := range []struct{ subnet, want string }{
		{"10.1.0.0/24", "subnet 10.1.0.0/24 overlaps 10.1.0.0/16 of network net-a"},
		{"10.0.0.0/8", "subnet 10.0.0.0/8 overlaps 10.1.0.0/16 of network net-a"},
		{"10.1.0.0/16", "subnet 10.1.0.0/16 overlaps 10.1.0.0/16 of network net-a"},
	} {
		_, _, err := a.RequestPool(t.Context(), PoolRequest{NetworkID: "net-b", Subnet: netip.MustParsePrefix(tc.subnet)})
		wantErr(t, err, sdk.ErrConflict, tc.want)
	}
	// Two pools of one request overlap each other.
	_, _, err := a.RequestPools(t.Context(), []PoolRequest{
		{NetworkID: "net-c", Subnet: netip.MustParsePrefix("10.5.0.0/16")},
		{NetworkID: "net-c", Subnet: netip.MustParsePrefix("10.5.1.0/24")},
	})
	wantErr(t, err, sdk.ErrConflict, "subnet 10.5.1.0/24 overlaps 10.5.0.0/16 of network net-c")
	// An explicit subnet may cover a host route: the operator chose it.
	a = newAllocator(t, s, opts{routes: []string{"10.9.0.0/16"}})
	createPool(t, a, s, PoolRequest{NetworkID: "net-d", Subnet: netip.MustParsePrefix("10.9.0.0/24")})
}

// TestRequestPoolRace has two hosts create overlapping pools from the same
// view of the store: the second Txn to commit must fail, and its retry
// must see the first pool.
func TestRequestPoolRace(t *testing.T) {
	for _, tc := range []struct {
		name           string
		first, second  string // "" picks automatically
		retryErr, want string
	}{
		{name: "same subnet", first: "10.7.0.0/16", second: "10.7.0.0/16", retryErr: "overlaps 10.7.0.0/16 of network net-a"},
		{name: "nested subnets", first: "10.7.0.0/16", second: "10.7.3.0/24", retryErr: "overlaps 10.7.0.0/16 of network net-a"},
		{name: "automatic picks", want: "172.18.0.0/16"},
		{name: "explicit then automatic", first: "172.17.0.0/16", want: "172.18.0.0/16"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			a1, a2 := newAllocator(t, s, opts{}), newAllocator(t, s, opts{})
			req := func(net, subnet string) PoolRequest {
				r := PoolRequest{NetworkID: net}
				if subnet != "" {
					r.Subnet = netip.MustParsePrefix(subnet)
				}
				return r
			}
			_, ops1, err1 := a1.RequestPool(t.Context(), req("net-a", tc.first))
			_, ops2, err2 := a2.RequestPool(t.Context(), req("net-b", tc.second))
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if _, err := s.Txn(t.Context(), ops1); err != nil {
				t.Fatal(err)
			}
			_, err := s.Txn(t.Context(), ops2)
			wantErr(t, err, sdk.ErrConflict, "")
			p, _, err := a2.RequestPool(t.Context(), req("net-b", tc.second))
			if tc.retryErr != "" {
				wantErr(t, err, sdk.ErrConflict, tc.retryErr)
				return
			}
			if err != nil || p.Subnet.String() != tc.want {
				t.Fatalf("retry: %+v, %v; want %s", p, err, tc.want)
			}
		})
	}
}

func TestRequestPoolsDualStack(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	pools, ops, err := a.RequestPools(t.Context(), []PoolRequest{
		{NetworkID: "n"},
		{NetworkID: "n", V6: true},
		{NetworkID: "n"},
		{NetworkID: "n", Subnet: netip.MustParsePrefix("172.17.0.0/16")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pools {
		got = append(got, p.Subnet.String())
	}
	if fmt.Sprint(got) != "[172.18.0.0/16 fd53:616e:646e::/64 172.19.0.0/16 172.17.0.0/16]" {
		t.Errorf("subnets = %v", got)
	}
	if _, err := s.Txn(t.Context(), ops); err != nil {
		t.Fatalf("committing all pools in one Txn: %v", err)
	}
	if all, _ := a.Pools(t.Context()); len(all) != 4 {
		t.Errorf("%d pools stored, want 4", len(all))
	}
}

// TestRequestPoolSeparateFamilies is what the controller does: an IPv4
// and an IPv6 RequestPool, their ops in one Txn.
func TestRequestPoolSeparateFamilies(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	createPool(t, a, s, PoolRequest{NetworkID: "old", V6: true}) // so both guard keys are not new
	var ops []*pb.TxnOp
	for _, v6 := range []bool{false, true} {
		_, o, err := a.RequestPool(t.Context(), PoolRequest{NetworkID: "n", V6: v6})
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o...)
	}
	if _, err := s.Txn(t.Context(), ops); err != nil {
		t.Fatalf("committing an IPv4 and an IPv6 pool in one Txn: %v", err)
	}
	if all, _ := a.Pools(t.Context()); len(all) != 3 {
		t.Errorf("%d pools stored, want 3", len(all))
	}
}

func TestRequestPoolIdempotent(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	req := PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.9.0.0/24"), Range: netip.MustParsePrefix("10.9.0.128/25")}
	first := createPool(t, a, s, req)
	again, ops, err := a.RequestPool(t.Context(), req)
	if err != nil || !again.equal(first) {
		t.Fatalf("again: %+v, %v; want %+v", again, err, first)
	}
	if len(ops) != 1 || ops[0].GetVerb() != pb.TxnOp_CHECK_INDEX {
		t.Errorf("ops = %v; want one CHECK_INDEX", ops)
	}
	if _, err := s.Txn(t.Context(), ops); err != nil {
		t.Errorf("committing: %v", err)
	}
	// The same subnet with another gateway is another pool.
	req.Gateway = netip.MustParseAddr("10.9.0.254")
	_, _, err = a.RequestPool(t.Context(), req)
	wantErr(t, err, sdk.ErrConflict, "overlaps 10.9.0.0/24 of network n")
}

// TestClearAddressesOfTheNetworkOnly: a delete of network old that lost
// a race with another host's delete of it clears no address of the
// network that took the subnet next (two containers got one address: the
// loser's clear ran after the new network had given it out); and the
// addresses of a big pool go, more than one transaction's worth.
func TestClearAddressesOfTheNetworkOnly(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	subnet := netip.MustParsePrefix("10.7.0.0/24")
	createPool(t, a, s, PoolRequest{NetworkID: "old", Subnet: subnet})
	for i := range 2*clearBatch + 5 {
		mustAllocate(t, a, s, subnet, "", fmt.Sprint("ep", i))
	}
	// The winner's delete.
	if err := a.ClearAddresses(ctx, subnet, "old"); err != nil {
		t.Fatal(err)
	}
	if got := storedAddrs(t, s, subnet); len(got) != 0 {
		t.Fatalf("addresses left after clearing %d: %v", 2*clearBatch+5, got)
	}
	if _, err := s.Txn(ctx, a.ReleasePool(subnet)); err != nil {
		t.Fatal(err)
	}
	a.PoolReleased(subnet)
	// The next network of the subnet gives out an address.
	createPool(t, a, s, PoolRequest{NetworkID: "new", Subnet: subnet})
	mustAllocate(t, a, s, subnet, "", "y1")
	// The loser's delete of old, late.
	if err := a.ClearAddresses(ctx, subnet, "old"); err != nil {
		t.Fatal(err)
	}
	if got := storedAddrs(t, s, subnet); len(got) != 1 {
		t.Fatalf("the new network's addresses after a late clear of the old one's: %v, want y1's", got)
	}
	// Nor does a clear of a pool that is gone fail.
	if err := a.ClearAddresses(ctx, netip.MustParsePrefix("10.6.0.0/24"), "old"); err != nil {
		t.Fatalf("clearing a pool that is gone: %v", err)
	}
}

func TestReleasePool(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	p := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.8.0.0/24"), Range: netip.MustParsePrefix("10.8.0.128/25")})
	for i := range 3 {
		mustAllocate(t, a, s, p.Subnet, "", fmt.Sprint("ep", i))
	}
	mustAllocate(t, a, s, p.Subnet, "10.8.0.9", "outside-range")
	// An allocation made before the release and committed after it.
	late, err := a.Allocate(ctx, p.Subnet, netip.Addr{}, "late")
	if err != nil {
		t.Fatal(err)
	}

	if err := a.ClearAddresses(ctx, p.Subnet, "n"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn(ctx, a.ReleasePool(p.Subnet)); err != nil {
		t.Fatal(err)
	}
	a.PoolReleased(p.Subnet)
	if _, err := s.Txn(ctx, late.Ops); !errors.Is(err, sdk.ErrConflict) {
		t.Errorf("committing an address into a released pool: %v; want ErrConflict", err)
	}
	late.Done(false)
	if kvs, _ := s.List(ctx, poolsPrefix); len(kvs) != 0 {
		t.Errorf("pools left after the release: %v", kvs)
	}
	if got := storedAddrs(t, s, p.Subnet); len(got) != 0 {
		t.Errorf("addresses left after the release: %v", got)
	}
	if _, err := a.Allocate(ctx, p.Subnet, netip.Addr{}, "x"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Allocate in a released pool: %v; want ErrNotFound", err)
	}
	if _, err := s.Txn(ctx, a.ReleasePool(p.Subnet)); err != nil {
		t.Errorf("releasing again: %v", err)
	}
}

// TestReleasePoolUnknown releases a pool from an Allocator that never
// used it, as another host would: the addresses it does not know of stay
// until the subnet is used again, and are deleted then.
func TestReleasePoolUnknown(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	h1, h2 := newAllocator(t, s, opts{}), newAllocator(t, s, opts{})
	p := createPool(t, h1, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.8.0.0/24")})
	mustAllocate(t, h1, s, p.Subnet, "10.8.0.9", "ep")

	if _, err := s.Txn(ctx, h2.ReleasePool(p.Subnet)); err != nil {
		t.Fatal(err)
	}
	h2.PoolReleased(p.Subnet)
	if got := storedAddrs(t, s, p.Subnet); len(got) != 1 {
		t.Fatalf("addresses after the release: %v; the test wants one leftover", got)
	}
	// h1 still has the pool in memory: its allocation fails to commit,
	// and then it learns the pool is gone.
	if _, err := allocate(ctx, h1, s, p.Subnet, netip.Addr{}, "x"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("allocating in a pool released by another host: %v; want ErrNotFound", err)
	}
	createPool(t, h2, s, PoolRequest{NetworkID: "n2", Subnet: p.Subnet})
	if got := storedAddrs(t, s, p.Subnet); len(got) != 0 {
		t.Errorf("addresses after re-creating the pool: %v", got)
	}
	if got := mustAllocate(t, h1, s, p.Subnet, "10.8.0.9", "ep2"); got.String() != "10.8.0.9" {
		t.Errorf("got %s", got)
	}
}

// SetDefaultPools changes where automatic subnets come from; a bad pool
// is refused and the pools stay as they were.
func TestSetDefaultPools(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{pools: []config.Pool{{Base: netip.MustParsePrefix("10.140.0.0/16"), Size: 24}}})
	if p := createPool(t, a, s, PoolRequest{NetworkID: "one"}); p.Subnet != netip.MustParsePrefix("10.140.0.0/24") {
		t.Fatalf("first pool %s", p.Subnet)
	}
	if err := a.SetDefaultPools([]config.Pool{{Base: netip.MustParsePrefix("10.150.0.0/16"), Size: 8}}); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("a pool whose size is shorter than its base: %v, want invalid", err)
	}
	if p := createPool(t, a, s, PoolRequest{NetworkID: "two"}); p.Subnet != netip.MustParsePrefix("10.140.1.0/24") {
		t.Fatalf("after a refused change: %s, want the old pools' next", p.Subnet)
	}
	if err := a.SetDefaultPools([]config.Pool{{Base: netip.MustParsePrefix("10.150.0.0/16"), Size: 26}}); err != nil {
		t.Fatal(err)
	}
	if p := createPool(t, a, s, PoolRequest{NetworkID: "three"}); p.Subnet != netip.MustParsePrefix("10.150.0.0/26") {
		t.Fatalf("after the change: %s, want 10.150.0.0/26", p.Subnet)
	}
}
