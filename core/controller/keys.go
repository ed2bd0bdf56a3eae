package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

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

func networkKey(id string) string { return networkPrefix + id }
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
	// nets remembers network records; see netCache.
	nets netCache
	// eps remembers endpoint records; see epCache.
	eps epCache
}

func (k *kv) get(ctx context.Context, key string, v any) (uint64, error) {
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
func (k *kv) list(ctx context.Context, prefix string, decode func(key string, index uint64, raw []byte) error) error {
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

func (k *kv) count(ctx context.Context, prefix string) (int, error) {
	s, err := k.store()
	if err != nil {
		return 0, err
	}
	pairs, err := s.List(ctx, prefix)
	return len(pairs), err
}

func (k *kv) txn(ctx context.Context, ops ...*pb.TxnOp) error {
	_, err := k.txnResults(ctx, ops...)
	return err
}

// txnResults is txn returning the new pair of every PUT and CAS op, in
// order: their indexes let the caller's next compare-and-swap on those
// keys skip reading them back.
func (k *kv) txnResults(ctx context.Context, ops ...*pb.TxnOp) ([]*pb.KVPair, error) {
	s, err := k.store()
	if err != nil {
		return nil, err
	}
	res, err := s.Txn(ctx, ops)
	switch {
	case errors.Is(err, sdk.ErrConflict):
		// A compare-and-swap lost a race: the caller re-reads and retries.
		return nil, fmt.Errorf("%w: %v", errRetry, err)
	case errors.Is(err, sdk.ErrUnavailable) || errors.Is(err, sdk.ErrTimeout):
		return nil, &noAnswerError{err}
	}
	return res, err
}

// noAnswerError is a transaction that failed because the store did not
// answer (down, hung, past its timeout): the next call to it would most
// likely wait as long, for nothing. It unwraps to the store's error.
type noAnswerError struct{ err error }

func (e *noAnswerError) Error() string { return e.err.Error() }
func (e *noAnswerError) Unwrap() error { return e.err }

// storeDidNotAnswer reports whether err comes from a transaction the
// store did not answer.
func storeDidNotAnswer(err error) bool {
	var na *noAnswerError
	return errors.As(err, &na)
}

// indexOf returns the index a transaction's results give key, or 0.
func indexOf(res []*pb.KVPair, key string) uint64 {
	for _, p := range res {
		if p.GetKey() == key {
			return p.GetIndex()
		}
	}
	return 0
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

// Retried says whether err, a step's (Config.OnStep), is a lost
// compare-and-swap race that the flow tries again, rather than a
// failure anyone hears of.
func Retried(err error) bool { return isConflict(err) }

// isConflict tells a lost compare-and-swap race from other errors; a
// conflict of the caller's own making (an address in use, a network with
// endpoints) wraps sdk.ErrConflict but not errRetry and is not retried.
func isConflict(err error) bool { return errors.Is(err, errRetry) }

// errRetry marks a lost compare-and-swap race: retry tries again.
var errRetry = errors.New("concurrent update")

// epCache remembers the endpoint records this agent wrote or read last,
// each with its index, so that the next compare-and-swap on one (a join's
// update, a disconnect's delete) need not read it back first. Only the
// agent whose sandbox an endpoint joins writes its record; should the
// record have changed anyway, the compare-and-swap fails, the entry is
// dropped and the caller reads the store.
type epCache struct {
	mu sync.Mutex
	m  map[string]cachedEP // by key
}

type cachedEP struct {
	ep  Endpoint
	idx uint64
}

func (ec *epCache) get(key string) (Endpoint, uint64, bool) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	e, ok := ec.m[key]
	if !ok {
		return Endpoint{}, 0, false
	}
	return e.ep.clone(), e.idx, true
}

func (ec *epCache) put(key string, ep *Endpoint, idx uint64) {
	if idx == 0 {
		ec.forget(key)
		return
	}
	ec.mu.Lock()
	defer ec.mu.Unlock()
	if ec.m == nil {
		ec.m = map[string]cachedEP{}
	}
	ec.m[key] = cachedEP{ep: ep.clone(), idx: idx}
}

func (ec *epCache) forget(key string) {
	ec.mu.Lock()
	defer ec.mu.Unlock()
	delete(ec.m, key)
}

// storeReadsAtOnce bounds the store reads a listing or a scrape has in
// flight: each waits a round trip to the store, which one after another
// add up to seconds with a store tens of milliseconds away.
const storeReadsAtOnce = 16

// inParallel runs fn for 0..n-1, storeReadsAtOnce at a time, and
// returns the first error; the others' contexts are cancelled then.
func inParallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n <= 1 {
		for i := range n {
			if err := fn(ctx, i); err != nil {
				return err
			}
		}
		return nil
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(storeReadsAtOnce)
	for i := range n {
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}
