package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/store"
)

// leaseTTL is the lease the suite asks for: long enough for every store
// (Consul's sessions last 10 s at least), so that no lease it holds
// expires while it runs.
const leaseTTL = time.Minute

// testLeases checks store.Leaser on a store that implements it: a key put
// with a granted lease reads back and survives renewals; renewing a lease
// the store never granted, or putting with one, gives sdk.ErrNotFound
// and writes nothing. Leases are optional: a store that is no Leaser (or
// answers sdk.ErrNotSupported, as every store built before them does)
// passes with nothing checked. Expiry is not checked here: it takes a
// ttl, which a conformance run should not wait for.
func testLeases(t *testing.T, h *harness) {
	l := store.Leases(h.s)
	if l == nil {
		t.Log("the store is no store.Leaser: leases are optional")
		return
	}
	lease, err := l.LeaseGrant(h.ctx, leaseTTL)
	if errors.Is(err, sdk.ErrNotSupported) {
		t.Log("the store has no leases: they are optional")
		return
	}
	if err != nil {
		t.Fatalf("LeaseGrant(%s): %v", leaseTTL, err)
	}
	if lease.GetId() == "" || lease.GetTtlMs() < leaseTTL.Milliseconds() {
		t.Fatalf("LeaseGrant(%s) = %v, want an ID and a ttl of at least %s", leaseTTL, lease, leaseTTL)
	}
	k := h.key("leased")
	kv, err := l.LeasePut(h.ctx, k, []byte("v1"), lease.GetId())
	if err != nil {
		t.Fatalf("LeasePut: %v", err)
	}
	if kv.GetKey() != k || kv.GetIndex() == 0 {
		t.Fatalf("LeasePut returned %v, want key %q with an index", kv, k)
	}
	if _, err := l.LeaseRenew(h.ctx, lease.GetId()); err != nil {
		t.Fatalf("LeaseRenew of a live lease: %v", err)
	}
	if _, err := l.LeasePut(h.ctx, k, []byte("v2"), lease.GetId()); err != nil {
		t.Fatalf("LeasePut again with the same lease: %v", err)
	}
	if got := h.get(k); string(got.GetValue()) != "v2" {
		t.Fatalf("Get(%q) = %q after LeasePut, want v2", k, got.GetValue())
	}
	const unknown = "00000000-0000-0000-0000-000000000000"
	if _, err := l.LeaseRenew(h.ctx, unknown); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeaseRenew of a lease never granted: %v, want sdk.ErrNotFound", err)
	}
	other := h.key("other")
	if _, err := l.LeasePut(h.ctx, other, []byte("x"), unknown); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeasePut with a lease never granted: %v, want sdk.ErrNotFound", err)
	}
	if _, err := h.s.Get(h.ctx, other); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a failed LeasePut wrote %q: Get gives %v", other, err)
	}
}
