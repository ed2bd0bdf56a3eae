package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// namedStore names the store plugin in the errors that say it could not
// be reached (a plugin killed mid-call gives gRPC's "error reading from
// server: EOF"), as driver errors name their driver: `store plugin
// "bolt" unavailable: …`, still wrapping sdk.ErrUnavailable (503).
type namedStore struct {
	store.Store
	name string
}

func (s namedStore) wrap(err error) error {
	if err != nil && errors.Is(err, sdk.ErrUnavailable) {
		return fmt.Errorf("store plugin %q unavailable: %w", s.name, err)
	}
	return err
}

func (s namedStore) Get(ctx context.Context, key string) (*pb.KVPair, error) {
	p, err := s.Store.Get(ctx, key)
	return p, s.wrap(err)
}

func (s namedStore) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	p, err := s.Store.Put(ctx, key, value)
	return p, s.wrap(err)
}

func (s namedStore) AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (*pb.KVPair, error) {
	p, err := s.Store.AtomicPut(ctx, key, value, prevIndex)
	return p, s.wrap(err)
}

func (s namedStore) Delete(ctx context.Context, key string) error {
	return s.wrap(s.Store.Delete(ctx, key))
}

func (s namedStore) AtomicDelete(ctx context.Context, key string, prevIndex uint64) error {
	return s.wrap(s.Store.AtomicDelete(ctx, key, prevIndex))
}

func (s namedStore) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	ps, err := s.Store.List(ctx, prefix)
	return ps, s.wrap(err)
}

func (s namedStore) DeleteTree(ctx context.Context, prefix string) error {
	return s.wrap(s.Store.DeleteTree(ctx, prefix))
}

func (s namedStore) Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	ps, err := s.Store.Txn(ctx, ops)
	return ps, s.wrap(err)
}

func (s namedStore) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	ch, err := s.Store.Watch(ctx, prefix)
	return ch, s.wrap(err)
}

// The lease calls pass through to a store.Leaser; a store that is none
// answers sdk.ErrNotSupported, as a plugin built before leases does.

func (s namedStore) leaser() (store.Leaser, error) {
	if l := store.Leases(s.Store); l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("store plugin %q has no leases: %w", s.name, sdk.ErrNotSupported)
}

func (s namedStore) LeaseGrant(ctx context.Context, ttl time.Duration) (*pb.Lease, error) {
	l, err := s.leaser()
	if err != nil {
		return nil, err
	}
	lease, err := l.LeaseGrant(ctx, ttl)
	return lease, s.wrap(err)
}

func (s namedStore) LeaseRenew(ctx context.Context, id string) (*pb.Lease, error) {
	l, err := s.leaser()
	if err != nil {
		return nil, err
	}
	lease, err := l.LeaseRenew(ctx, id)
	return lease, s.wrap(err)
}

func (s namedStore) LeasePut(ctx context.Context, key string, value []byte, id string) (*pb.KVPair, error) {
	l, err := s.leaser()
	if err != nil {
		return nil, err
	}
	kv, err := l.LeasePut(ctx, key, value, id)
	return kv, s.wrap(err)
}
