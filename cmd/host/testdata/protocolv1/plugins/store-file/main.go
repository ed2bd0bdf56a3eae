// Command store-file is a store plugin written against SDK protocol v1
// as first published: the whole map in memory, written to one JSON file
// (the config's path) after every change, with one store-wide revision as
// every key's modify index.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Config is the store's `config` block.
type Config struct {
	Path string `hcl:"path" doc:"the JSON file holding the store"`
}

func main() {
	store.Serve(sdk.Info{Name: "file", Version: "1.0.0", Config: Config{}}, &fileStore{})
}

type entry struct {
	Value []byte `json:"value"`
	Index uint64 `json:"index"`
}

type fileStore struct {
	mu       sync.Mutex // guards all following fields
	path     string
	Revision uint64            `json:"revision"`
	Keys     map[string]entry  `json:"keys"`
	watchers map[*watcher]bool // open watches
}

type watcher struct {
	prefix string
	ch     chan *pb.WatchEvent
}

func (s *fileStore) Configure(_ context.Context, raw []byte) error {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	if c.Path == "" {
		return fmt.Errorf("path: empty: %w", sdk.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.path, s.Keys = c.Path, map[string]entry{}
	b, err := os.ReadFile(c.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.Path, err)
	}
	if err := json.Unmarshal(b, s); err != nil {
		return fmt.Errorf("reading %s: %v: %w", c.Path, err, sdk.ErrInvalid)
	}
	if s.Keys == nil {
		s.Keys = map[string]entry{}
	}
	return nil
}

func (s *fileStore) Get(_ context.Context, key string) (*pb.KVPair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.Keys[key]
	if !ok {
		return nil, fmt.Errorf("key %s: %w", key, sdk.ErrNotFound)
	}
	return &pb.KVPair{Key: key, Value: e.Value, Index: e.Index}, nil
}

func (s *fileStore) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	return s.one(ctx, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: key, Value: value})
}

func (s *fileStore) AtomicPut(ctx context.Context, key string, value []byte, prev uint64) (*pb.KVPair, error) {
	s.mu.Lock()
	_, exists := s.Keys[key]
	s.mu.Unlock()
	kv, err := s.one(ctx, &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: key, Value: value, Index: prev})
	if errors.Is(err, sdk.ErrConflict) && prev == 0 && exists {
		return nil, fmt.Errorf("key %s: %w", key, sdk.ErrExists)
	}
	return kv, err
}

func (s *fileStore) Delete(ctx context.Context, key string) error {
	_, err := s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: key}})
	return err
}

func (s *fileStore) AtomicDelete(ctx context.Context, key string, prev uint64) error {
	if _, err := s.Get(ctx, key); err != nil {
		return err
	}
	_, err := s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_DELETE_CAS, Key: key, Index: prev}})
	return err
}

func (s *fileStore) List(_ context.Context, prefix string) ([]*pb.KVPair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*pb.KVPair{}
	for k, e := range s.Keys {
		if strings.HasPrefix(k, prefix) {
			out = append(out, &pb.KVPair{Key: k, Value: e.Value, Index: e.Index})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (s *fileStore) DeleteTree(ctx context.Context, prefix string) error {
	kvs, err := s.List(ctx, prefix)
	if err != nil {
		return err
	}
	ops := make([]*pb.TxnOp, len(kvs))
	for i, kv := range kvs {
		ops[i] = &pb.TxnOp{Verb: pb.TxnOp_DELETE, Key: kv.Key}
	}
	_, err = s.Txn(ctx, ops)
	return err
}

func (s *fileStore) one(ctx context.Context, op *pb.TxnOp) (*pb.KVPair, error) {
	kvs, err := s.Txn(ctx, []*pb.TxnOp{op})
	if err != nil {
		return nil, err
	}
	return kvs[0], nil
}

// Txn checks every op against the map as it is, then applies them all
// under one new revision, writes the file and tells the watchers.
func (s *fileStore) Txn(_ context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range ops {
		e, ok := s.Keys[op.GetKey()]
		switch op.GetVerb() {
		case pb.TxnOp_CAS, pb.TxnOp_CHECK_INDEX, pb.TxnOp_DELETE_CAS:
			if (op.GetIndex() == 0 && ok) || (op.GetIndex() != 0 && (!ok || e.Index != op.GetIndex())) {
				return nil, fmt.Errorf("key %s: index is not %d: %w", op.GetKey(), op.GetIndex(), sdk.ErrConflict)
			}
		case pb.TxnOp_PUT, pb.TxnOp_DELETE:
		default:
			return nil, fmt.Errorf("txn op %v: %w", op.GetVerb(), sdk.ErrInvalid)
		}
	}
	rev := s.Revision + 1
	var out []*pb.KVPair
	var events []*pb.WatchEvent
	for _, op := range ops {
		key := op.GetKey()
		switch op.GetVerb() {
		case pb.TxnOp_PUT, pb.TxnOp_CAS:
			s.Keys[key] = entry{Value: op.GetValue(), Index: rev}
			kv := &pb.KVPair{Key: key, Value: op.GetValue(), Index: rev}
			out = append(out, kv)
			events = append(events, &pb.WatchEvent{Type: pb.WatchEvent_PUT, Kv: kv})
		case pb.TxnOp_DELETE, pb.TxnOp_DELETE_CAS:
			if _, ok := s.Keys[key]; ok {
				delete(s.Keys, key)
				events = append(events, &pb.WatchEvent{Type: pb.WatchEvent_DELETE, Kv: &pb.KVPair{Key: key, Index: rev}})
			}
		}
	}
	if len(events) == 0 {
		return out, nil
	}
	s.Revision = rev
	if err := s.saveLocked(); err != nil {
		return nil, err
	}
	for w := range s.watchers {
		for _, ev := range events {
			if !strings.HasPrefix(ev.GetKv().GetKey(), w.prefix) {
				continue
			}
			select {
			case w.ch <- ev:
			default:
				// A watcher that cannot keep up loses its watch and
				// watches again, as the contract allows.
				close(w.ch)
				delete(s.watchers, w)
			}
			if !s.watchers[w] {
				break
			}
		}
	}
	return out, nil
}

func (s *fileStore) saveLocked() error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	return nil
}

func (s *fileStore) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	w := &watcher{prefix: prefix, ch: make(chan *pb.WatchEvent, 1024)}
	w.ch <- &pb.WatchEvent{Type: pb.WatchEvent_READY}
	s.mu.Lock()
	if s.watchers == nil {
		s.watchers = map[*watcher]bool{}
	}
	s.watchers[w] = true
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.watchers[w] {
			delete(s.watchers, w)
			close(w.ch)
		}
	}()
	return w.ch, nil
}

func (s *fileStore) Close(context.Context) error { return nil }
