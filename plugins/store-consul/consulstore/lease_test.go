package consulstore

import (
	"errors"
	"testing"
	"time"

	"github.com/sandnet/sandnet/plugins/store-consul/consultest"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// testLeaseExpires: a key put with a lease nobody renews is deleted (a
// watch sees it go) within the lease's ttl, and the lease is then gone;
// a key locked by a live lease refuses a put with another; a ttl Consul
// cannot keep is refused before anything is sent.
func testLeaseExpires(t *testing.T, a *consultest.Agent) {
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	ctx := t.Context()
	if _, err := s.LeaseGrant(ctx, 10*time.Second); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("LeaseGrant(10s) = %v, want sdk.ErrInvalid (Consul cannot end a session that soon)", err)
	}
	lease, err := s.LeaseGrant(ctx, MinLeaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.LeaseGrant(ctx, MinLeaseTTL)
	if err != nil {
		t.Fatal(err)
	}
	const key = "lease-test/host"
	if _, err := s.LeasePut(ctx, key, []byte("a"), lease.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeasePut(ctx, key, []byte("b"), other.GetId()); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("LeasePut with another lease of a key held by a live one = %v, want sdk.ErrConflict", err)
	}
	events, err := s.Watch(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	<-events // READY
	start := time.Now()
	polltest.Until(t, 2*MinLeaseTTL, "the leased key deleted once its lease is not renewed", func() bool {
		select {
		case ev := <-events:
			return ev.GetType().String() == "DELETE"
		default:
			return false
		}
	})
	if took := time.Since(start); took > MinLeaseTTL+5*time.Second {
		t.Errorf("the leased key went %s after its last renewal, want within the ttl (%s)", took, MinLeaseTTL)
	}
	if _, err := s.LeaseRenew(ctx, lease.GetId()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeaseRenew of an expired lease = %v, want sdk.ErrNotFound", err)
	}
	if _, err := s.LeasePut(ctx, key, []byte("c"), lease.GetId()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeasePut with an expired lease = %v, want sdk.ErrNotFound", err)
	}
}
