package boltstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Leases are trivial here: a bolt file is one host's alone (local scope),
// and a host outlives none of its own leases, so there is one lease, with
// the ID localLease, that never expires, and a key put with it is a plain
// key.

// localLease is the ID of the one lease.
const localLease = "local"

var _ store.Leaser = (*Store)(nil)

// LeaseGrant returns the lease that never expires, whatever ttl asks.
func (s *Store) LeaseGrant(_ context.Context, ttl time.Duration) (*pb.Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("lease ttl %s: must be more than 0: %w", ttl, sdk.ErrInvalid)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return &pb.Lease{Id: localLease, TtlMs: math.MaxInt64}, nil
}

// LeaseRenew renews nothing: the lease never expires.
func (s *Store) LeaseRenew(_ context.Context, id string) (*pb.Lease, error) {
	if id != localLease {
		return nil, fmt.Errorf("lease %q: %w", id, sdk.ErrNotFound)
	}
	if err := s.open(); err != nil {
		return nil, err
	}
	return &pb.Lease{Id: localLease, TtlMs: math.MaxInt64}, nil
}

// LeasePut is Put.
func (s *Store) LeasePut(ctx context.Context, key string, value []byte, id string) (*pb.KVPair, error) {
	if id != localLease {
		return nil, fmt.Errorf("put %q with lease %q: %w", key, id, sdk.ErrNotFound)
	}
	return s.Put(ctx, key, value)
}

// open says whether the store is open.
func (s *Store) open() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errUnconfigured
	}
	return nil
}
