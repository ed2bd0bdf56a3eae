package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// memStore is a small reference store: a map under one mutex, with a
// store-wide revision. With mut set it carries one deliberate defect, so
// the suite can be shown to catch it.
type memStore struct {
	mut string

	mu       sync.Mutex
	rev      uint64
	kvs      map[string]*pb.KVPair
	watchers map[*memWatcher]struct{}
}

type memWatcher struct {
	prefix string
	ch     chan *pb.WatchEvent
}

func newMemStore(mut string) *memStore {
	return &memStore{mut: mut, kvs: map[string]*pb.KVPair{}, watchers: map[*memWatcher]struct{}{}}
}

func (m *memStore) Configure(context.Context, []byte) error { return nil }
func (m *memStore) Close(context.Context) error             { return nil }

// fail returns an error wrapping sentinel, or, with the plainErrors
// defect, one that only reads like it.
func (m *memStore) fail(sentinel error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if m.mut == "plainErrors" {
		return errors.New(msg + ": " + sentinel.Error())
	}
	return fmt.Errorf("%s: %w", msg, sentinel)
}

func clone(kv *pb.KVPair) *pb.KVPair {
	return &pb.KVPair{Key: kv.GetKey(), Value: slices.Clone(kv.GetValue()), Index: kv.GetIndex()}
}

func (m *memStore) Get(_ context.Context, key string) (*pb.KVPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kv, ok := m.kvs[key]
	if !ok {
		return nil, m.fail(sdk.ErrNotFound, "get %q", key)
	}
	return clone(kv), nil
}

// txn is one write under m.mu: the revision it writes at and its events.
type txn struct {
	m      *memStore
	rev    uint64
	events []*pb.WatchEvent
	undo   []func()
}

func (m *memStore) begin() *txn { return &txn{m: m, rev: m.rev + 1} }

func (x *txn) put(key string, value []byte) *pb.KVPair {
	idx := x.rev
	old, had := x.m.kvs[key]
	if x.m.mut == "perKeyIndex" {
		idx = old.GetIndex() + 1
	}
	kv := &pb.KVPair{Key: key, Value: slices.Clone(value), Index: idx}
	x.m.kvs[key] = kv
	x.undo = append(x.undo, func() {
		if had {
			x.m.kvs[key] = old
		} else {
			delete(x.m.kvs, key)
		}
	})
	x.events = append(x.events, &pb.WatchEvent{Type: pb.WatchEvent_PUT, Kv: clone(kv)})
	return clone(kv)
}

func (x *txn) del(key string) {
	old, ok := x.m.kvs[key]
	if !ok {
		return
	}
	delete(x.m.kvs, key)
	x.undo = append(x.undo, func() { x.m.kvs[key] = old })
	x.events = append(x.events, &pb.WatchEvent{Type: pb.WatchEvent_DELETE, Kv: &pb.KVPair{Key: key, Index: x.rev}})
}

func (x *txn) rollback() {
	if x.m.mut == "partialTxn" {
		return
	}
	for i := len(x.undo) - 1; i >= 0; i-- {
		x.undo[i]()
	}
}

// commit advances the revision and publishes the events. m.mu is held.
func (x *txn) commit() {
	if len(x.events) == 0 {
		return
	}
	x.m.rev = x.rev
	for w := range x.m.watchers {
		for _, ev := range x.events {
			prefix := w.prefix
			if x.m.mut == "siblingEvents" {
				prefix = strings.TrimSuffix(prefix, "/")
			}
			if !strings.HasPrefix(ev.GetKv().GetKey(), prefix) {
				continue
			}
			if x.m.mut == "blockingWatch" {
				w.ch <- ev
				continue
			}
			select {
			case w.ch <- ev:
			default:
				delete(x.m.watchers, w)
				close(w.ch)
			}
			if _, ok := x.m.watchers[w]; !ok {
				break
			}
		}
	}
}

func (m *memStore) Put(_ context.Context, key string, value []byte) (*pb.KVPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	x := m.begin()
	kv := x.put(key, value)
	x.commit()
	return kv, nil
}

func (m *memStore) AtomicPut(_ context.Context, key string, value []byte, prev uint64) (*pb.KVPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.kvs[key]
	switch {
	case prev == 0 && ok && m.mut == "existsAsConflict":
		return nil, m.fail(sdk.ErrConflict, "atomic put %q", key)
	case prev == 0 && ok:
		return nil, m.fail(sdk.ErrExists, "atomic put %q", key)
	case cur.GetIndex() != prev:
		return nil, m.fail(sdk.ErrConflict, "atomic put %q", key)
	}
	if m.mut == "lostUpdate" {
		// Check, then write in a separate critical section.
		m.mu.Unlock()
		runtime.Gosched()
		m.mu.Lock()
	}
	x := m.begin()
	kv := x.put(key, value)
	x.commit()
	return kv, nil
}

func (m *memStore) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	x := m.begin()
	x.del(key)
	x.commit()
	return nil
}

func (m *memStore) AtomicDelete(_ context.Context, key string, prev uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.kvs[key]
	switch {
	case !ok:
		return m.fail(sdk.ErrNotFound, "atomic delete %q", key)
	case cur.GetIndex() != prev:
		return m.fail(sdk.ErrConflict, "atomic delete %q", key)
	}
	x := m.begin()
	x.del(key)
	x.commit()
	return nil
}

func (m *memStore) sortedKeys(prefix string) []string {
	var keys []string
	for k := range m.kvs {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if m.mut == "unsortedList" {
		slices.Reverse(keys)
	}
	return keys
}

func (m *memStore) List(_ context.Context, prefix string) ([]*pb.KVPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := m.sortedKeys(prefix)
	if len(keys) == 0 && m.mut == "emptyListNotFound" {
		return nil, m.fail(sdk.ErrNotFound, "list %q", prefix)
	}
	kvs := make([]*pb.KVPair, 0, len(keys))
	for _, k := range keys {
		kvs = append(kvs, clone(m.kvs[k]))
	}
	return kvs, nil
}

func (m *memStore) DeleteTree(_ context.Context, prefix string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	x := m.begin()
	for _, k := range m.sortedKeys(prefix) {
		x.del(k)
	}
	if m.mut == "silentDeleteTree" {
		x.events = x.events[:0]
		m.rev = x.rev
	}
	x.commit()
	return nil
}

func (m *memStore) Txn(_ context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	x := m.begin()
	var res []*pb.KVPair
	for i, op := range ops {
		cur := m.kvs[op.GetKey()].GetIndex()
		switch op.GetVerb() {
		case pb.TxnOp_PUT:
			res = append(res, x.put(op.GetKey(), op.GetValue()))
		case pb.TxnOp_DELETE:
			x.del(op.GetKey())
		case pb.TxnOp_CAS, pb.TxnOp_DELETE_CAS, pb.TxnOp_CHECK_INDEX:
			if cur != op.GetIndex() {
				x.rollback()
				return nil, m.fail(sdk.ErrConflict, "txn op %d", i)
			}
			switch op.GetVerb() {
			case pb.TxnOp_CAS:
				res = append(res, x.put(op.GetKey(), op.GetValue()))
			case pb.TxnOp_DELETE_CAS:
				x.del(op.GetKey())
			}
		default:
			x.rollback()
			return nil, m.fail(sdk.ErrInvalid, "txn op %d", i)
		}
	}
	x.commit()
	return res, nil
}

func (m *memStore) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	buffer := 1024
	if m.mut == "blockingWatch" {
		// Smaller than the writes of WatchSlowConsumer, so it fills.
		buffer = 64
	}
	w := &memWatcher{prefix: prefix, ch: make(chan *pb.WatchEvent, buffer)}
	if m.mut != "noReady" {
		w.ch <- &pb.WatchEvent{Type: pb.WatchEvent_READY}
	}
	m.watchers[w] = struct{}{}
	if m.mut != "watchNeverCloses" {
		context.AfterFunc(ctx, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.watchers[w]; ok {
				delete(m.watchers, w)
				close(w.ch)
			}
		})
	}
	return w.ch, nil
}

// keys returns every key in the store, sorted.
func (m *memStore) keys() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.kvs))
}
