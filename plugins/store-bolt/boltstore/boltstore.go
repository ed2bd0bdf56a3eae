// Package boltstore is sandnet's embedded default store: a store.Store in
// one bbolt file, for state that stays on this host (local scope).
//
// Every pair lives in one bucket, its value prefixed by its modify index.
// The index is a store-wide revision, like etcd's: a counter kept in a meta
// bucket that every committing write advances by one, so all the writes
// of one Txn share a revision, a key's index grows with each write to it,
// and a key deleted and written again never gets an index it had before.
// Failed and no-op writes (a Delete of a missing key) do not advance it.
// Writes are serialized, so AtomicPut and Txn are atomic.
//
// A write is durable once it is in the write-ahead log (wal.go): one
// synced append, where a bbolt commit syncs twice. Until a checkpoint
// applies it to the bbolt file — once the store has been idle for
// checkpointIdle, or once checkpointWrites keys wait — it is served from
// memory. The file and the log survive restarts of the plugin.
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
	"slices"
	"strings"
	"sync"
	"time"

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
// store is local: it declares no sdk.CapabilityGlobalScope. It declares
// sdk.CapabilityLease, with leases that never expire (see LeaseGrant).
func Info(version string) sdk.Info {
	return sdk.Info{Name: Name, Version: version, Capabilities: []string{sdk.CapabilityLease}, Config: Config{}}
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

// Store is a store.Store on a bbolt file. Its methods are safe for
// concurrent use.
type Store struct {
	log         hclog.Logger
	watchBuffer int
	// idleAfter and maxWaiting are checkpointIdle and checkpointWrites;
	// tests change them.
	idleAfter  time.Duration
	maxWaiting int

	// mu guards db, wal and set. Operations hold it shared for their
	// whole transaction; Configure and Close hold it exclusively.
	mu  sync.RWMutex
	db  *bolt.DB
	wal *wal
	set settings

	// wmu serializes committing a write with publishing its events, so
	// watchers see events in revision order, orders a new watch between
	// two writes, and keeps checkpoints apart from writes. Lock order: mu,
	// wmu, ovMu, hub.mu.
	wmu sync.Mutex
	hub hub

	// ov holds what was committed to the log since the last checkpoint,
	// by key, and rev the current revision. Writers change them holding
	// wmu and ovMu; readers read them holding ovMu shared.
	ovMu sync.RWMutex
	ov   map[string]entry
	rev  uint64
	// idle is the pending idle checkpoint, armed by the last write.
	idle *time.Timer
}

// entry is a key's state in ov.
type entry struct {
	value   []byte // nil for a deleted key
	index   uint64
	deleted bool
}

const (
	// checkpointIdle is how long the store waits after its last write
	// before it moves the log into the bbolt file.
	checkpointIdle = 100 * time.Millisecond
	// checkpointWrites is how many keys may wait in the log before the
	// next write checkpoints.
	checkpointWrites = 512
)

var _ store.Store = (*Store)(nil)

// New returns a Store that is not open yet; Configure opens it.
func New() *Store {
	return &Store{log: sdk.NewLogger(Name), watchBuffer: DefaultWatchBuffer, idleAfter: checkpointIdle, maxWaiting: checkpointWrites}
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
	log, recs, err := openWAL(set.path+walSuffix, set.noSync)
	if err != nil {
		db.Close()
		return err
	}
	// What the log holds past the file's revision was committed after
	// the last checkpoint: it goes in the file now. Its records go on
	// from the file's revision one by one; a log that starts further on
	// was written after a checkpoint this file does not hold.
	s.ov = map[string]entry{}
	replayed := 0
	for _, r := range recs {
		if r.rev <= rev {
			continue
		}
		if r.rev != rev+1 {
			db.Close()
			log.close()
			return fmt.Errorf("opening %s: its log %s goes on from revision %d, but the file is at revision %d: the file was replaced (restored from a backup?) after the log was written. "+
				"To use the file as it is, remove %[2]s (the writes it holds are lost); otherwise put back the file that goes with it: %[5]w",
				set.path, set.path+walSuffix, r.rev-1, rev, sdk.ErrInvalid)
		}
		for _, c := range r.changes {
			s.ov[c.key] = entry{value: c.value, index: r.rev, deleted: c.deleted}
		}
		rev = r.rev
		replayed++
	}
	s.db, s.wal, s.set, s.rev = db, log, set, rev
	if err := s.checkpoint(); err != nil {
		s.closeLocked()
		return err
	}
	s.log.Info("opened store", "path", set.path, "revision", rev, "replayed", replayed, "no_sync", set.noSync)
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
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
	// A failed checkpoint loses nothing: the log is replayed on the next
	// open.
	cerr := s.checkpoint()
	err := errors.Join(cerr, s.wal.close(), s.db.Close())
	s.db, s.wal, s.ov = nil, nil, nil
	if err != nil {
		return fmt.Errorf("closing %s: %w", s.set.path, err)
	}
	return nil
}

// checkpoint applies what waits in ov to the bbolt file, in one synced
// transaction, and empties the log. Called with mu held (shared or not)
// and, unless mu is held exclusively, wmu.
func (s *Store) checkpoint() error {
	if len(s.ov) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		data, meta := tx.Bucket(dataBucket), tx.Bucket(metaBucket)
		for k, e := range s.ov {
			var err error
			if e.deleted {
				err = data.Delete([]byte(k))
			} else {
				buf := make([]byte, indexLen+len(e.value))
				binary.BigEndian.PutUint64(buf, e.index)
				copy(buf[indexLen:], e.value)
				err = data.Put([]byte(k), buf)
			}
			if err != nil {
				return err
			}
		}
		return meta.Put(revisionKey, binary.BigEndian.AppendUint64(nil, s.rev))
	})
	if err != nil {
		return fmt.Errorf("checkpointing %s: %w", s.set.path, err)
	}
	if err := s.wal.reset(); err != nil {
		s.log.Warn("emptying the write-ahead log after a checkpoint", "error", err)
	}
	s.ovMu.Lock()
	s.ov = map[string]entry{}
	s.ovMu.Unlock()
	return nil
}

// idleCheckpoint is the checkpoint the last write armed.
func (s *Store) idleCheckpoint() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.checkpoint(); err != nil {
		s.log.Warn("idle checkpoint failed; the next one tries again", "error", err)
	}
}

// Get returns the pair at key.
func (s *Store) Get(ctx context.Context, key string) (*pb.KVPair, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var kv *pb.KVPair
	err := s.view(ctx, func(data *bolt.Bucket) error {
		if e, ok := s.ov[key]; ok {
			if e.deleted {
				return fmt.Errorf("get %q: %w", key, sdk.ErrNotFound)
			}
			kv = &pb.KVPair{Key: key, Value: append([]byte{}, e.value...), Index: e.index}
			return nil
		}
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
			if _, ok := s.ov[string(k)]; ok {
				continue // newer below
			}
			kv, err := decode(string(k), v)
			if err != nil {
				return err
			}
			kvs = append(kvs, kv)
		}
		n := len(kvs)
		for k, e := range s.ov {
			if !e.deleted && strings.HasPrefix(k, prefix) {
				kvs = append(kvs, &pb.KVPair{Key: k, Value: append([]byte{}, e.value...), Index: e.index})
			}
		}
		if len(kvs) > n {
			slices.SortFunc(kvs, func(a, b *pb.KVPair) int { return strings.Compare(a.GetKey(), b.GetKey()) })
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
		for k := range w.ov {
			if strings.HasPrefix(k, prefix) {
				keys = append(keys, k)
			}
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

// view runs fn in a read transaction on the data bucket, with ovMu held
// shared: what ov holds for a key is newer than the bucket.
func (s *Store) view(ctx context.Context, fn func(data *bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.db == nil {
		return errUnconfigured
	}
	s.ovMu.RLock()
	defer s.ovMu.RUnlock()
	return s.db.View(func(tx *bolt.Tx) error { return fn(tx.Bucket(dataBucket)) })
}

// update runs fn as a write at the next revision: against the bucket (in
// a read transaction) and ov, its changes collected in a writeTx. If fn
// changes anything, the changes go to the log, then into ov, and their
// events to the watchers.
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
	tx, err := s.db.Begin(false)
	if err != nil {
		return err
	}
	// ov changes only under wmu, which this write holds.
	w := writeTx{data: tx.Bucket(dataBucket), ov: s.ov, rev: s.rev + 1, changed: map[string]int{}}
	err = fn(&w)
	_ = tx.Rollback()
	if err != nil || len(w.events) == 0 {
		return err
	}
	if err := s.wal.append(record{rev: w.rev, changes: w.changes}); err != nil {
		return err
	}
	s.ovMu.Lock()
	for _, c := range w.changes {
		s.ov[c.key] = entry{value: c.value, index: w.rev, deleted: c.deleted}
	}
	s.rev = w.rev
	s.ovMu.Unlock()
	if n := s.hub.publish(w.events); n > 0 {
		s.log.Warn("closed watches that fell behind; their readers must watch again",
			"watches", n, "buffer", s.watchBuffer)
	}
	if len(s.ov) >= s.maxWaiting {
		if err := s.checkpoint(); err != nil {
			// Committed all the same: the log has it.
			s.log.Warn("checkpoint failed; the next one tries again", "error", err)
		}
	} else if s.idle == nil {
		s.idle = time.AfterFunc(s.idleAfter, s.idleCheckpoint)
	} else {
		s.idle.Reset(s.idleAfter)
	}
	return nil
}

// writeTx is one write: what it reads from (the bucket, ov), the revision
// it writes at, and its changes and their events so far.
type writeTx struct {
	data    *bolt.Bucket
	ov      map[string]entry
	rev     uint64
	changes []change
	changed map[string]int // key → position in changes
	events  []*pb.WatchEvent
}

// current returns key's value and index as of this write, and whether it
// exists.
func (w *writeTx) current(key string) (value []byte, index uint64, ok bool, err error) {
	if i, ok := w.changed[key]; ok {
		c := w.changes[i]
		return c.value, w.rev, !c.deleted, nil
	}
	if e, ok := w.ov[key]; ok {
		return e.value, e.index, !e.deleted, nil
	}
	raw := w.data.Get([]byte(key))
	if raw == nil {
		return nil, 0, false, nil
	}
	if len(raw) < indexLen {
		return nil, 0, false, corrupt(key)
	}
	return raw[indexLen:], binary.BigEndian.Uint64(raw), true, nil
}

func (w *writeTx) record(c change) {
	if i, ok := w.changed[c.key]; ok {
		w.changes[i] = c
		return
	}
	w.changed[c.key] = len(w.changes)
	w.changes = append(w.changes, c)
}

// index returns key's modify index and whether key exists.
func (w *writeTx) index(key string) (uint64, bool, error) {
	_, idx, ok, err := w.current(key)
	if !ok {
		idx = 0
	}
	return idx, ok, err
}

// put writes key at the write's revision and returns the new pair.
func (w *writeTx) put(key string, value []byte) (*pb.KVPair, error) {
	// The log, ov, the event and the caller's pair each get their own
	// copy: the caller owns the pair it is returned.
	w.record(change{key: key, value: append([]byte{}, value...)})
	w.events = append(w.events, &pb.WatchEvent{
		Type: pb.WatchEvent_PUT,
		Kv:   &pb.KVPair{Key: key, Value: append([]byte(nil), value...), Index: w.rev},
	})
	return &pb.KVPair{Key: key, Value: append([]byte(nil), value...), Index: w.rev}, nil
}

// del removes key if it exists.
func (w *writeTx) del(key string) error {
	if _, _, ok, err := w.current(key); err != nil || !ok {
		return err
	}
	w.record(change{key: key, deleted: true})
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
