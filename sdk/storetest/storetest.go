// Package storetest is the conformance suite for store plugins. A store
// author runs it from a test of their own, against the implementation
// directly, through store.InProcess, or against the built plugin process
// (see sdk/plugintest):
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) (store.Store, string) {
//			s := mystore.New()
//			if err := s.Configure(t.Context(), cfg); err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close(context.Background()) })
//			return s, ""
//		})
//	}
//
// Run calls the factory once per subtest. The factory returns a configured
// store and a key prefix; the subtest reads and writes only keys that start
// with that prefix, and expects no other key in the store to start with
// it. A factory that hands out a fresh, empty store returns "". A factory
// for a shared backend (one Consul agent, one plugin process) returns a
// fresh prefix each call, such as Prefix(t). Run never closes a store: the
// factory arranges that with t.Cleanup.
//
// Prefixes are plain string prefixes everywhere (List, DeleteTree, Watch):
// "a/b" matches "a/bc" as well as "a/b/c", and "a/b/" matches only the
// latter. Keys are ordered by their bytes.
//
// The suite checks the contract written on store.Store. Where that
// contract is silent it also expects what the host relies on:
//   - a key written again after a delete gets an index greater than any it
//     had before, so a compare-and-swap that read the old key cannot
//     succeed on the new one;
//   - a Txn op with an unknown verb fails the transaction with
//     sdk.ErrInvalid and applies nothing;
//   - Watch delivers no event for a change committed before READY, and a
//     DELETE event for every key removed by DeleteTree or a Txn; the
//     events of one Txn may come in any order among themselves;
//   - a watch nobody reads never blocks writers: it keeps every event, or
//     it is closed after an in-order prefix of them and its reader
//     watches again.
//
// Errors are checked with errors.Is against the sdk sentinels, because
// that is what the host sees once an error has crossed the gRPC boundary.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// NewStore returns the store one subtest runs against, configured and
// ready, and the prefix that subtest must keep its keys under ("" for a
// store of its own). See the package doc.
type NewStore func(t *testing.T) (s store.Store, prefix string)

// Run runs the conformance suite, each subtest against a store from
// newStore.
func Run(t *testing.T, newStore NewStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(*testing.T, *harness)
	}{
		{"PutGetDelete", testPutGetDelete},
		{"GetMissing", testGetMissing},
		{"IndexGrows", testIndexGrows},
		{"AtomicPut", testAtomicPut},
		{"AtomicDelete", testAtomicDelete},
		{"List", testList},
		{"DeleteTree", testDeleteTree},
		{"Txn", testTxn},
		{"TxnAllOrNothing", testTxnAllOrNothing},
		{"Watch", testWatch},
		{"WatchCancel", testWatchCancel},
		{"WatchSlowConsumer", testWatchSlowConsumer},
		{"ConcurrentCAS", testConcurrentCAS},
		{"Values", testValues},
		{"Leases", testLeases},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, prefix := newStore(t)
			ctx, cancel := context.WithTimeout(t.Context(), opTimeout)
			t.Cleanup(cancel)
			tc.fn(t, &harness{t: t, s: s, p: prefix, ctx: ctx})
		})
	}
}

// Prefix returns a key prefix unique to this call, for a factory that
// shares one backend between subtests. It names the test so that leftovers
// on a shared backend can be traced, and ends with '/'.
func Prefix(t testing.TB) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, t.Name())
	return "storetest/" + hex.EncodeToString(b[:]) + "/" + name + "/"
}

const (
	// opTimeout bounds a whole subtest, so a store that hangs fails.
	opTimeout = 2 * time.Minute
	// eventTimeout is how long a watcher waits for an event it expects.
	eventTimeout = 10 * time.Second
	// writeTimeout bounds the writes of WatchSlowConsumer.
	writeTimeout = 20 * time.Second
)

// harness is one subtest's store and prefix, with helpers that fail the
// test on unexpected errors. Its helpers run on the test goroutine only.
type harness struct {
	t   *testing.T
	s   store.Store
	p   string
	ctx context.Context
}

func (h *harness) key(k string) string { return h.p + k }

func (h *harness) put(k string, v []byte) *pb.KVPair {
	h.t.Helper()
	kv, err := h.s.Put(h.ctx, k, v)
	if err != nil {
		h.t.Fatalf("Put(%q): %v", k, err)
	}
	if kv.GetKey() != k || !bytes.Equal(kv.GetValue(), v) || kv.GetIndex() == 0 {
		h.t.Fatalf("Put(%q, %q) = %s, want key %q, value %q and an index > 0", k, v, fmtKV(kv), k, v)
	}
	return kv
}

func (h *harness) get(k string) *pb.KVPair {
	h.t.Helper()
	kv, err := h.s.Get(h.ctx, k)
	if err != nil {
		h.t.Fatalf("Get(%q): %v", k, err)
	}
	return kv
}

// state returns the pair at k, or nil when k does not exist.
func (h *harness) state(k string) *pb.KVPair {
	h.t.Helper()
	kv, err := h.s.Get(h.ctx, k)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	if err != nil {
		h.t.Fatalf("Get(%q): %v", k, err)
	}
	return kv
}

func (h *harness) del(k string) {
	h.t.Helper()
	if err := h.s.Delete(h.ctx, k); err != nil {
		h.t.Fatalf("Delete(%q): %v", k, err)
	}
}

func (h *harness) list(prefix string) []*pb.KVPair {
	h.t.Helper()
	kvs, err := h.s.List(h.ctx, prefix)
	if err != nil {
		h.t.Fatalf("List(%q): %v", prefix, err)
	}
	return kvs
}

// wantPair fails unless got is want (key, value and index).
func (h *harness) wantPair(what string, got, want *pb.KVPair) {
	h.t.Helper()
	if !samePair(got, want) {
		h.t.Fatalf("%s = %s, want %s", what, fmtKV(got), fmtKV(want))
	}
}

// wantState fails unless the pair at k is want (nil: k does not exist).
func (h *harness) wantState(k string, want *pb.KVPair) {
	h.t.Helper()
	got := h.state(k)
	switch {
	case want == nil && got != nil:
		h.t.Fatalf("key %q exists (%s), want it absent", k, fmtKV(got))
	case want != nil && got == nil:
		h.t.Fatalf("key %q is absent, want %s", k, fmtKV(want))
	case want != nil:
		h.wantPair(fmt.Sprintf("Get(%q)", k), got, want)
	}
}

// wantErr fails unless err matches want: nil for success, else a sentinel
// err must wrap.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("%s: unexpected error: %v", what, err)
	case want != nil && err == nil:
		t.Fatalf("%s: succeeded, want an error wrapping %q", what, want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("%s: error %q (%T) does not wrap %q", what, err, err, want)
	}
}

func samePair(a, b *pb.KVPair) bool {
	return a.GetKey() == b.GetKey() && bytes.Equal(a.GetValue(), b.GetValue()) && a.GetIndex() == b.GetIndex()
}

func fmtKV(kv *pb.KVPair) string {
	if kv == nil {
		return "<nil>"
	}
	v := kv.GetValue()
	if len(v) > 32 {
		return fmt.Sprintf("{%q %q… (%d bytes) @%d}", kv.GetKey(), v[:32], len(v), kv.GetIndex())
	}
	return fmt.Sprintf("{%q %q @%d}", kv.GetKey(), v, kv.GetIndex())
}

func keysOf(kvs []*pb.KVPair) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.GetKey()
	}
	return keys
}

// withPrefix returns p+k for every k.
func withPrefix(p string, ks ...string) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = p + k
	}
	return out
}

// sortedCopy returns ks sorted by bytes, as the store must order them.
func sortedCopy(ks []string) []string {
	out := slices.Clone(ks)
	slices.Sort(out)
	return out
}

// sub returns h for the subtest t.
func (h *harness) sub(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}
