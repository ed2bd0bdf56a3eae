// Package boltstore is sandnet's embedded default store: a store.Store in
// one bbolt file, for state that stays on this host (local scope).
//
// Every pair lives in one bucket, its value prefixed by its modify index.
// The index is a store-wide revision, like etcd's: a counter kept in a meta
// bucket that every committing write transaction advances by one, so all
// the writes of one Txn share a revision, a key's index grows with each
// write to it, and a key deleted and written again never gets an index it
// had before. Failed and no-op writes (a Delete of a missing key) do not
// advance it. Every operation is one bbolt transaction, so AtomicPut and
// Txn are atomic, and the file survives restarts of the plugin.
//
// Watches are served in process: after a write commits, its events go to
// every watcher of a matching prefix in revision order. Each watcher has a
// buffer of DefaultWatchBuffer events; a watcher that falls that far
// behind is closed rather than allowed to block writers, and its reader
// watches again (the host does this for every broken watch).
package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Name is the plugin's name, the label of its `store` block.
const Name = "bolt"

// Info describes the plugin, built as the given version, to the host. The
// store is local: it declares no sdk.CapabilityGlobalScope.
func Info(version string) sdk.Info {
	return sdk.Info{Name: Name, Version: version, Config: Config{}}
}

// DefaultWatchBuffer is how many undelivered events a watcher may hold
// before it is closed.
const DefaultWatchBuffer = 1024

var (
	dataBucket  = []byte("kv")
	metaBucket  = []byte("meta")
	revisionKey = []byte("revision")
)

// indexLen is the size of the modify index stored before each value.
const indexLen = 8

// errUnconfigured is returned by every operation before Configure and
// after Close.
var errUnconfigured = fmt.Errorf("bolt store is not open: %w", sdk.ErrUnavailable)

// errNoChange rolls back a write transaction that changed nothing, so it
// neither advances the revision nor pays for a commit.
var errNoChange = errors.New("no change")

// Store is a store.Store on a bbolt file. Its methods are safe for
// concurrent use.
type Store struct {
	log         hclog.Logger
	watchBuffer int

	// mu guards db and set. Operations hold it shared for their whole
	// transaction; Configure and Close hold it exclusively.
	mu  sync.RWMutex
	db  *bolt.DB
	set settings

	// wmu serializes committing a write with publishing its events, so
	// watchers see events in revision order, and orders a new watch
	// between two writes. Lock order: mu, wmu, hub.mu.
	wmu sync.Mutex
	hub hub
}

var _ store.Store = (*Store)(nil)

// New returns a Store that is not open yet; Configure opens it.
func New() *Store {
	return &Store{log: sdk.NewLogger(Name), watchBuffer: DefaultWatchBuffer}
}

// Configure opens the database the configuration names. Called again with
// the same configuration it does nothing; with another one it closes the
// open database, and its watches, and opens the new one.
func (s *Store) Configure(_ context.Context, raw []byte) error {
	set, err := parse(raw)
	if err != nil {
		return fmt.Errorf("configuring bolt store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.db != nil && s.set == set {
		return nil
	}
	if err := s.closeLocked(); err != nil {
		return err
	}
	db, rev, err := open(set)
	if err != nil {
		return err
	}
	s.db, s.set = db, set
	s.log.Info("opened store", "path", set.path, "revision", rev, "no_sync", set.noSync)
	return nil
}

// open opens the database file, creating it and its parent directories
// as needed, and returns it with its current revision.
func open(set settings) (*bolt.DB, uint64, error) {
	if err := os.MkdirAll(filepath.Dir(set.path), 0o700); err != nil {
		return nil, 0, fmt.Errorf("creating directory of %s: %w", set.path, err)
	}
	db, err := bolt.Open(set.path, 0o600, &bolt.Options{Timeout: set.timeout, NoSync: set.noSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, 0, fmt.Errorf("opening %s: another process still holds its lock after %s: %w",
			set.path, set.timeout, sdk.ErrUnavailable)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("opening %s: %w", set.path, err)
	}
	var rev uint64
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(dataBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		rev, err = revision(meta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, 0, fmt.Errorf("initializing %s: %w", set.path, err)
	}
	return db, rev, nil
}

// Close closes every watch and the database. The store can be opened
// again with Configure.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *Store) closeLocked() error {
	s.hub.closeAll()
	if s.db == nil {
		return nil
	}
	err := s.db.Close()
	s.db = nil
	if err != nil {
		return fmt.Errorf("closing %s: %w", s.set.path, err)
	}
	return nil
}

// Get returns the pair at key.
func (s *Store) Get(ctx context.Context, key string) (*pb.KVPair, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var kv *pb.KVPair
	err := s.view(ctx, func(data *bolt.Bucket) error {
		raw := data.Get([]byte(key))
		if raw == nil {
			return fmt.Errorf("get %q: %w", key, sdk.ErrNotFound)
		}
		var err error
		kv, err = decode(key, raw)
		return err
	})
	return kv, err
}

// List returns the pairs whose key starts with prefix, ordered by key.
func (s *Store) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	kvs := []*pb.KVPair{}
	err := s.view(ctx, func(data *bolt.Bucket) error {
		c := data.Cursor()
		for k, v := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, v = c.Next() {
			kv, err := decode(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		return nil
	})
	return kvs, err
}

// Put writes key at the next revision.
func (s *Store) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	if err := checkPair(key, value); err != nil {
		return nil, err
	}
	var kv *pb.KVPair
	err := s.update(ctx, func(w *writeTx) error {
		var err error
		kv, err = w.put(key, value)
		return err
	})
	return kv, err
}

// AtomicPut writes key if its index is prevIndex (0: if it does not exist).
func (s *Store) AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (*pb.KVPair, error) {
	if err := checkPair(key, value); err != nil {
		return nil, err
	}
	var kv *pb.KVPair
	err := s.update(ctx, func(w *writeTx) error {
		cur, ok, err := w.index(key)
		switch {
		case err != nil:
			return err
		case prevIndex == 0 && ok:
			return fmt.Errorf("atomic put %q: key exists at index %d: %w", key, cur, sdk.ErrExists)
		case prevIndex != 0 && !ok:
			return fmt.Errorf("atomic put %q: key does not exist, expected index %d: %w", key, prevIndex, sdk.ErrConflict)
		case cur != prevIndex:
			return fmt.Errorf("atomic put %q: index is %d, expected %d: %w", key, cur, prevIndex, sdk.ErrConflict)
		}
		kv, err = w.put(key, value)
		return err
	})
	return kv, err
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update(ctx, func(w *writeTx) error { return w.del(key) })
}

// AtomicDelete removes key if its index is prevIndex.
func (s *Store) AtomicDelete(ctx context.Context, key string, prevIndex uint64) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return s.update(ctx, func(w *writeTx) error {
		cur, ok, err := w.index(key)
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("atomic delete %q: %w", key, sdk.ErrNotFound)
		case cur != prevIndex:
			return fmt.Errorf("atomic delete %q: index is %d, expected %d: %w", key, cur, prevIndex, sdk.ErrConflict)
		}
		return w.del(key)
	})
}

// DeleteTree removes every key that starts with prefix.
func (s *Store) DeleteTree(ctx context.Context, prefix string) error {
	return s.update(ctx, func(w *writeTx) error {
		var keys []string
		c := w.data.Cursor()
		for k, _ := c.Seek([]byte(prefix)); k != nil && strings.HasPrefix(string(k), prefix); k, _ = c.Next() {
			keys = append(keys, string(k))
		}
		for _, k := range keys {
			if err := w.del(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Txn applies ops in order in one bbolt transaction, all at one revision;
// an op sees the effects of the ops before it. A failed check rolls back
// everything with sdk.ErrConflict, an unknown verb with sdk.ErrInvalid.
func (s *Store) Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	for i, op := range ops {
		if err := checkPair(op.GetKey(), op.GetValue()); err != nil {
			return nil, fmt.Errorf("txn op %d: %w", i, err)
		}
	}
	var results []*pb.KVPair
	err := s.update(ctx, func(w *writeTx) error {
		results = results[:0]
		for i, op := range ops {
			kv, err := w.apply(op)
			if err != nil {
				return fmt.Errorf("txn op %d: %w", i, err)
			}
			if kv != nil {
				results = append(results, kv)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// Watch streams the changes to keys that start with prefix, READY first.
// The events are shared between watchers and must not be modified.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return nil, errUnconfigured
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.hub.add(ctx, prefix, s.watchBuffer), nil
}

// view runs fn in a read transaction on the data bucket.
func (s *Store) view(ctx context.Context, fn func(data *bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errUnconfigured
	}
	return s.db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket(dataBucket)) })
}

// update runs fn in a write transaction at the next revision and, once it
// has committed, publishes the events fn recorded.
func (s *Store) update(ctx context.Context, fn func(w *writeTx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errUnconfigured
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var w writeTx
	err := s.db.Update(func(tx *bolt.Tx) error {
		w = writeTx{data: tx.Bucket(dataBucket), meta: tx.Bucket(metaBucket)}
		cur, err := revision(w.meta)
		if err != nil {
			return err
		}
		w.rev = cur + 1
		if err := fn(&w); err != nil {
			return err
		}
		if len(w.events) == 0 {
			return errNoChange
		}
		return w.meta.Put(revisionKey, binary.BigEndian.AppendUint64(nil, w.rev))
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return err
	}
	if n := s.hub.publish(w.events); n > 0 {
		s.log.Warn("closed watches that fell behind; their readers must watch again",
			"watches", n, "buffer", s.watchBuffer)
	}
	return nil
}

// writeTx is one write transaction: the buckets, the revision it writes
// at, and the events of its changes so far.
type writeTx struct {
	data, meta *bolt.Bucket
	rev        uint64
	events     []*pb.WatchEvent
}

// index returns key's modify index and whether key exists.
func (w *writeTx) index(key string) (uint64, bool, error) {
	raw := w.data.Get([]byte(key))
	if raw == nil {
		return 0, false, nil
	}
	if len(raw) < indexLen {
		return 0, false, corrupt(key)
	}
	return binary.BigEndian.Uint64(raw), true, nil
}

// put writes key at the transaction's revision and returns the new pair.
func (w *writeTx) put(key string, value []byte) (*pb.KVPair, error) {
	buf := make([]byte, indexLen+len(value))
	binary.BigEndian.PutUint64(buf, w.rev)
	copy(buf[indexLen:], value)
	if err := w.data.Put([]byte(key), buf); err != nil {
		return nil, fmt.Errorf("put %q: %w", key, err)
	}
	// bbolt keeps buf until the commit and never after; the event gets
	// its own copy because the caller owns the pair it is returned.
	w.events = append(w.events, &pb.WatchEvent{
		Type: pb.WatchEvent_PUT,
		Kv:   &pb.KVPair{Key: key, Value: append([]byte(nil), value...), Index: w.rev},
	})
	return &pb.KVPair{Key: key, Value: buf[indexLen:], Index: w.rev}, nil
}

// del removes key if it exists.
func (w *writeTx) del(key string) error {
	if w.data.Get([]byte(key)) == nil {
		return nil
	}
	if err := w.data.Delete([]byte(key)); err != nil {
		return fmt.Errorf("delete %q: %w", key, err)
	}
	w.events = append(w.events, &pb.WatchEvent{
		Type: pb.WatchEvent_DELETE,
		Kv:   &pb.KVPair{Key: key, Index: w.rev},
	})
	return nil
}

// apply applies one Txn op and returns the new pair of a PUT or CAS.
func (w *writeTx) apply(op *pb.TxnOp) (*pb.KVPair, error) {
	key := op.GetKey()
	switch op.GetVerb() {
	case pb.TxnOp_PUT:
		return w.put(key, op.GetValue())
	case pb.TxnOp_DELETE:
		return nil, w.del(key)
	case pb.TxnOp_CAS, pb.TxnOp_DELETE_CAS, pb.TxnOp_CHECK_INDEX:
		cur, _, err := w.index(key)
		if err != nil {
			return nil, err
		}
		// An existing key's index is never 0, so index 0 asserts absence.
		if cur != op.GetIndex() {
			return nil, fmt.Errorf("%s %q: index is %d (0: absent), expected %d: %w",
				op.GetVerb(), key, cur, op.GetIndex(), sdk.ErrConflict)
		}
		switch op.GetVerb() {
		case pb.TxnOp_CAS:
			return w.put(key, op.GetValue())
		case pb.TxnOp_DELETE_CAS:
			return nil, w.del(key)
		}
		return nil, nil
	default:
		return nil, fmt.Errorf("unknown verb %s on %q: %w", op.GetVerb(), key, sdk.ErrInvalid)
	}
}

// revision reads the store's current revision from the meta bucket.
func revision(meta *bolt.Bucket) (uint64, error) {
	raw := meta.Get(revisionKey)
	switch len(raw) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(raw), nil
	}
	return 0, fmt.Errorf("revision counter is %d bytes, want 8: database corrupt", len(raw))
}

// decode copies a stored pair out of bbolt's memory, which is only valid
// during the transaction.
func decode(key string, raw []byte) (*pb.KVPair, error) {
	if len(raw) < indexLen {
		return nil, corrupt(key)
	}
	return &pb.KVPair{
		Key:   key,
		Value: append([]byte(nil), raw[indexLen:]...),
		Index: binary.BigEndian.Uint64(raw),
	}, nil
}

func corrupt(key string) error {
	return fmt.Errorf("key %q: stored value shorter than its index: database corrupt", key)
}

// checkKey rejects keys bbolt cannot hold.
func checkKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("empty key: %w", sdk.ErrInvalid)
	case len(key) > bolt.MaxKeySize:
		return fmt.Errorf("key of %d bytes, limit %d: %w", len(key), bolt.MaxKeySize, sdk.ErrInvalid)
	}
	return nil
}

func checkPair(key string, value []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if len(value) > bolt.MaxValueSize-indexLen {
		return fmt.Errorf("value of %d bytes for %q, limit %d: %w", len(value), key, bolt.MaxValueSize-indexLen, sdk.ErrInvalid)
	}
	return nil
}
