package consulstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Leases are Consul sessions with a TTL, no health checks and the delete
// behaviour: a key put with a lease is locked (acquired) by its session,
// and Consul deletes it when the session ends.
//
// Consul ends a session whose TTL passed without a renewal somewhere
// between its TTL and twice that (it waits TTL × 2 on its leader). The
// contract (store.Leaser) wants the keys gone at the latest ttl after the
// last renewal, so a lease of ttl is a session of ttl/2, rounded up to
// the second; Consul takes session TTLs from 10 s to 24 h, so a lease
// lasts from MinLeaseTTL to MaxLeaseTTL. The session's lock delay is the
// shortest Consul keeps (1 ms) rather than its default 15 s, so that a
// host whose lease ended may take its key again at once.

// Bounds of a lease's ttl: twice Consul's bounds of a session TTL.
const (
	MinLeaseTTL = 20 * time.Second
	MaxLeaseTTL = 48 * time.Hour
)

var _ store.Leaser = (*Store)(nil)

// LeaseGrant creates a session of ttl/2.
func (s *Store) LeaseGrant(ctx context.Context, ttl time.Duration) (*pb.Lease, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if ttl < MinLeaseTTL || ttl > MaxLeaseTTL {
		return nil, fmt.Errorf("lease ttl %s: the consul store keeps leases of %s to %s (a Consul session lasts between its TTL and twice that): %w",
			ttl, MinLeaseTTL, MaxLeaseTTL, sdk.ErrInvalid)
	}
	half := (ttl/2 + time.Second - 1).Truncate(time.Second)
	var id string
	err = c.call(ctx, "lease grant", c.set.timeout, func(ctx context.Context) (err error) {
		id, _, err = c.api.Session().CreateNoChecks(&api.SessionEntry{
			Name:      "sandnet",
			TTL:       half.String(),
			Behavior:  api.SessionBehaviorDelete,
			LockDelay: time.Millisecond,
		}, write(ctx))
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Lease{Id: id, TtlMs: (2 * half).Milliseconds()}, nil
}

// LeaseRenew renews session id.
func (s *Store) LeaseRenew(ctx context.Context, id string) (*pb.Lease, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if err := checkLeaseID(id); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("lease renew %q", id)
	var se *api.SessionEntry
	err = c.call(ctx, what, c.set.timeout, func(ctx context.Context) (err error) {
		se, _, err = c.api.Session().Renew(id, write(ctx))
		return err
	})
	if err != nil {
		return nil, err
	}
	if se == nil {
		return nil, fmt.Errorf("%s: no such session (it expired): %w", what, sdk.ErrNotFound)
	}
	half, err := time.ParseDuration(se.TTL)
	if err != nil {
		return nil, fmt.Errorf("%s: consul answered the TTL %q: %v: %w", what, se.TTL, err, sdk.ErrUnavailable)
	}
	return &pb.Lease{Id: id, TtlMs: (2 * half).Milliseconds()}, nil
}

// LeasePut writes key locked by session id, in one transaction (Consul's
// lock verb), so the key never exists without its lease.
func (s *Store) LeasePut(ctx context.Context, key string, value []byte, id string) (*pb.KVPair, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if err := c.checkKey(key); err != nil {
		return nil, err
	}
	if err := checkLeaseID(id); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("put %q with lease %q", key, id)
	resp, err := c.txn(ctx, what, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVLock, Key: c.set.prefix + key, Value: value, Session: id}},
	}, nil)
	var failed *txnError
	switch {
	case errors.As(err, &failed) && failed.conflict() && strings.Contains(failed.Error(), "invalid session"):
		return nil, fmt.Errorf("%w: the lease expired: %w", err, sdk.ErrNotFound)
	case errors.As(err, &failed) && failed.conflict():
		return nil, fmt.Errorf("%w: another lease holds the key: %w", err, sdk.ErrConflict)
	case err != nil:
		return nil, err
	}
	if len(resp.Results) != 1 || resp.Results[0].KV == nil {
		return nil, fmt.Errorf("%s: consul answered %d results, want 1: %w", what, len(resp.Results), sdk.ErrUnavailable)
	}
	idx := resp.Results[0].KV.ModifyIndex
	c.settle(ctx, change{index: idx, puts: []string{key}})
	return &pb.KVPair{Key: key, Value: value, Index: idx}, nil
}

// checkLeaseID refuses an ID that cannot be a Consul session's (a UUID),
// before it goes into a URL path.
func checkLeaseID(id string) error {
	if len(id) != 36 || strings.Trim(id, "0123456789abcdefABCDEF-") != "" {
		return fmt.Errorf("lease %q: not a consul session ID: %w", id, sdk.ErrNotFound)
	}
	return nil
}

func write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}
