package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Key layout, under a versioned prefix so a later layout can live beside
// this one during a migration.
const (
	prefix         = "sandnet/v1/"
	networkPrefix  = prefix + "network/"
	namePrefix     = prefix + "network-name/"
	endpointPrefix = prefix + "endpoint/"
	sandboxPrefix  = prefix + "sandbox/"
)

func networkKey(id string) string       { return networkPrefix + id }
func networkNameKey(name string) string { return namePrefix + name }
func endpointKey(netID, id string) string {
	return endpointPrefix + netID + "/" + id
}
func endpointsOf(netID string) string { return endpointPrefix + netID + "/" }
func sandboxKey(id string) string     { return sandboxPrefix + id }

// maxAttempts bounds every compare-and-swap retry loop.
const maxAttempts = 8

// kv wraps the store with JSON records.
type kv struct {
	store func() (store.Store, error)
}

func (k kv) get(ctx context.Context, key string, v any) (uint64, error) {
	s, err := k.store()
	if err != nil {
		return 0, err
	}
	pair, err := s.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(pair.GetValue(), v); err != nil {
		return 0, fmt.Errorf("decoding %s: %w", key, err)
	}
	return pair.GetIndex(), nil
}

// list decodes every record under prefix with decode.
func (k kv) list(ctx context.Context, prefix string, decode func(key string, index uint64, raw []byte) error) error {
	s, err := k.store()
	if err != nil {
		return err
	}
	pairs, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		if err := decode(p.GetKey(), p.GetIndex(), p.GetValue()); err != nil {
			return fmt.Errorf("decoding %s: %w", p.GetKey(), err)
		}
	}
	return nil
}

func (k kv) count(ctx context.Context, prefix string) (int, error) {
	s, err := k.store()
	if err != nil {
		return 0, err
	}
	pairs, err := s.List(ctx, prefix)
	return len(pairs), err
}

func (k kv) txn(ctx context.Context, ops ...*pb.TxnOp) error {
	s, err := k.store()
	if err != nil {
		return err
	}
	if _, err = s.Txn(ctx, ops); errors.Is(err, sdk.ErrConflict) {
		// A compare-and-swap lost a race: the caller re-reads and retries.
		return fmt.Errorf("%w: %v", errRetry, err)
	}
	return err
}

// cas is a compare-and-swap op writing v at key if its index is index
// (0: absent).
func cas(key string, index uint64, v any) *pb.TxnOp {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding %s: %v", key, err)) // our own types always encode
	}
	return &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: key, Value: b, Index: index}
}

func delCAS(key string, index uint64) *pb.TxnOp {
	return &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: key, Index: index}
}

func del(key string) *pb.TxnOp { return &pb.TxnOp{Verb: pb.TxnOp_DELETE, Key: key} }

func check(key string, index uint64) *pb.TxnOp {
	return &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: key, Index: index}
}

// retry runs fn until it succeeds, fails with something other than a
// compare-and-swap conflict, or maxAttempts is reached, with a short
// jittered pause between attempts.
func retry(ctx context.Context, what string, fn func() error) error {
	var err error
	for attempt := range maxAttempts {
		if err = fn(); err == nil || !isConflict(err) {
			return err
		}
		pause := time.Duration(1+attempt) * time.Duration(500+rand.IntN(1500)) * time.Microsecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	return fmt.Errorf("%s: gave up after %d concurrent updates (%v): %w", what, maxAttempts, err, sdk.ErrConflict)
}

// isConflict tells a lost compare-and-swap race from other errors; a
// conflict of the caller's own making (an address in use, a network with
// endpoints) wraps sdk.ErrConflict but not errRetry and is not retried.
func isConflict(err error) bool { return errors.Is(err, errRetry) }

// errRetry marks a lost compare-and-swap race: retry tries again.
var errRetry = errors.New("concurrent update")
