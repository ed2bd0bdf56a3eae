package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

func testPutGetDelete(t *testing.T, h *harness) {
	k, other := h.key("pgd/a"), h.key("pgd/b")

	first := h.put(k, []byte("one"))
	h.wantPair(fmt.Sprintf("Get(%q) after Put", k), h.get(k), first)

	second := h.put(k, []byte("two"))
	if second.GetIndex() <= first.GetIndex() {
		t.Fatalf("second Put(%q) has index %d, want more than the first's %d", k, second.GetIndex(), first.GetIndex())
	}
	h.wantPair(fmt.Sprintf("Get(%q) after second Put", k), h.get(k), second)

	keep := h.put(other, []byte("other"))
	h.del(k)
	h.wantState(k, nil)
	h.wantState(other, keep)

	// Deleting a missing key is not an error.
	h.del(k)
	h.del(h.key("pgd/never"))
	h.wantState(other, keep)
}

func testGetMissing(t *testing.T, h *harness) {
	h.put(h.key("gm/dir/child"), []byte("x"))
	h.put(h.key("gm/leaf"), []byte("x"))
	h.put(h.key("gm/deleted"), []byte("x"))
	h.del(h.key("gm/deleted"))

	for _, tc := range []struct{ name, key string }{
		{"never written", "gm/never"},
		{"deleted", "gm/deleted"},
		{"parent of a key", "gm/dir"},
		{"parent of a key with slash", "gm/dir/"},
		{"child of a key", "gm/leaf/x"},
		{"prefix of a key", "gm/lea"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := h.key(tc.key)
			kv, err := h.s.Get(h.ctx, k)
			wantErr(t, fmt.Sprintf("Get(%q)", k), err, sdk.ErrNotFound)
			if kv != nil {
				t.Errorf("Get(%q) returned %s with its error, want nil", k, fmtKV(kv))
			}
		})
	}
}

// testIndexGrows writes one key with every kind of write and checks that
// each write's index is above the last, across deletes too.
func testIndexGrows(t *testing.T, h *harness) {
	k := h.key("ig/k")
	var last uint64
	check := func(what string, kv *pb.KVPair, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if kv.GetKey() != k || kv.GetIndex() <= last {
			t.Fatalf("%s = %s, want key %q with an index above %d", what, fmtKV(kv), k, last)
		}
		h.wantPair(what+", then Get", h.get(k), kv)
		last = kv.GetIndex()
	}
	one := func(res []*pb.KVPair, err error) (*pb.KVPair, error) {
		if err == nil && len(res) != 1 {
			return nil, fmt.Errorf("got %d results, want 1", len(res))
		}
		if err != nil {
			return nil, err
		}
		return res[0], nil
	}
	ctx := h.ctx

	kv, err := h.s.Put(ctx, k, []byte("1"))
	check("Put", kv, err)
	h.put(h.key("ig/other"), []byte("elsewhere"))
	kv, err = h.s.Put(ctx, k, []byte("2"))
	check("Put after a write to another key", kv, err)
	kv, err = h.s.AtomicPut(ctx, k, []byte("3"), last)
	check("AtomicPut", kv, err)
	kv, err = one(h.s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_PUT, Key: k, Value: []byte("4")}}))
	check("Txn PUT", kv, err)
	kv, err = one(h.s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_CAS, Key: k, Value: []byte("5"), Index: last}}))
	check("Txn CAS", kv, err)

	// A key created again must not reuse an old index, or a CAS that read
	// the deleted key could overwrite the new one.
	h.del(k)
	kv, err = h.s.Put(ctx, k, []byte("6"))
	check("Put after Delete", kv, err)
	if err := h.s.AtomicDelete(ctx, k, last); err != nil {
		t.Fatalf("AtomicDelete(%q, %d): %v", k, last, err)
	}
	kv, err = h.s.AtomicPut(ctx, k, []byte("7"), 0)
	check("AtomicPut after AtomicDelete", kv, err)
	if _, err := h.s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: k}}); err != nil {
		t.Fatalf("Txn DELETE %q: %v", k, err)
	}
	kv, err = one(h.s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_CAS, Key: k, Value: []byte("8"), Index: 0}}))
	check("Txn CAS after Txn DELETE", kv, err)
	if err := h.s.DeleteTree(ctx, h.key("ig/")); err != nil {
		t.Fatalf("DeleteTree: %v", err)
	}
	kv, err = h.s.Put(ctx, k, []byte("9"))
	check("Put after DeleteTree", kv, err)
}

func testAtomicPut(t *testing.T, h *harness) {
	for i, tc := range []struct {
		name string
		// setup prepares key k and returns the index to pass.
		setup func(h *harness, k string) uint64
		want  error
	}{
		{"create missing key", func(*harness, string) uint64 { return 0 }, nil},
		{"create existing key", func(h *harness, k string) uint64 {
			h.put(k, []byte("old"))
			return 0
		}, sdk.ErrExists},
		{"current index", func(h *harness, k string) uint64 {
			return h.put(k, []byte("old")).GetIndex()
		}, nil},
		{"stale index", func(h *harness, k string) uint64 {
			stale := h.put(k, []byte("old")).GetIndex()
			h.put(k, []byte("newer"))
			return stale
		}, sdk.ErrConflict},
		{"index not reached yet", func(h *harness, k string) uint64 {
			return h.put(k, []byte("old")).GetIndex() + 1000
		}, sdk.ErrConflict},
		{"index on missing key", func(*harness, string) uint64 { return 1 }, sdk.ErrConflict},
		{"index of deleted key", func(h *harness, k string) uint64 {
			i := h.put(k, []byte("old")).GetIndex()
			h.del(k)
			return i
		}, sdk.ErrConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			k := h.key(fmt.Sprintf("ap/%d", i))
			prev := tc.setup(h, k)
			before := h.state(k)

			kv, err := h.s.AtomicPut(h.ctx, k, []byte("new"), prev)
			wantErr(t, fmt.Sprintf("AtomicPut(%q, prev %d)", k, prev), err, tc.want)
			if tc.want != nil {
				h.wantState(k, before)
				return
			}
			if kv.GetKey() != k || string(kv.GetValue()) != "new" || kv.GetIndex() == 0 ||
				(before != nil && kv.GetIndex() <= before.GetIndex()) {
				t.Fatalf("AtomicPut(%q) = %s, want the new value and an index above %s", k, fmtKV(kv), fmtKV(before))
			}
			h.wantState(k, kv)
		})
	}
}

func testAtomicDelete(t *testing.T, h *harness) {
	for i, tc := range []struct {
		name  string
		setup func(h *harness, k string) uint64
		want  error
	}{
		{"current index", func(h *harness, k string) uint64 {
			return h.put(k, []byte("v")).GetIndex()
		}, nil},
		{"stale index", func(h *harness, k string) uint64 {
			stale := h.put(k, []byte("v")).GetIndex()
			h.put(k, []byte("newer"))
			return stale
		}, sdk.ErrConflict},
		{"index not reached yet", func(h *harness, k string) uint64 {
			return h.put(k, []byte("v")).GetIndex() + 1000
		}, sdk.ErrConflict},
		{"missing key", func(*harness, string) uint64 { return 1 }, sdk.ErrNotFound},
		{"deleted key", func(h *harness, k string) uint64 {
			i := h.put(k, []byte("v")).GetIndex()
			h.del(k)
			return i
		}, sdk.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			k := h.key(fmt.Sprintf("ad/%d", i))
			prev := tc.setup(h, k)
			before := h.state(k)

			err := h.s.AtomicDelete(h.ctx, k, prev)
			what := fmt.Sprintf("AtomicDelete(%q, prev %d)", k, prev)
			wantErr(t, what, err, tc.want)
			if tc.want != nil {
				h.wantState(k, before)
				return
			}
			h.wantState(k, nil)
			// The same delete again finds nothing to delete.
			wantErr(t, what+" again", h.s.AtomicDelete(h.ctx, k, prev), sdk.ErrNotFound)
		})
	}
}

// listKeys are written in this unsorted order; List must sort them.
var listKeys = []string{"a/b/2", "b/x", "a/bc", "a/b/c/3", "a/b", "a/b/10", "a/b/1"}

func testList(t *testing.T, h *harness) {
	base := h.key("l/")
	written := map[string]*pb.KVPair{}
	for _, k := range listKeys {
		kv := h.put(base+k, []byte("value of "+k))
		written[kv.GetKey()] = kv
	}

	for _, tc := range []struct {
		name, prefix string
		want         []string
	}{
		{"directory", "a/b/", []string{"a/b/1", "a/b/10", "a/b/2", "a/b/c/3"}},
		{"string prefix matches siblings", "a/b", []string{"a/b", "a/b/1", "a/b/10", "a/b/2", "a/b/c/3", "a/bc"}},
		{"nested directory", "a/b/c/", []string{"a/b/c/3"}},
		{"partial name", "a/b/1", []string{"a/b/1", "a/b/10"}},
		{"exact key", "b/x", []string{"b/x"}},
		{"no match", "nothing/", nil},
		{"no match below a key", "b/x/", nil},
		{"everything", "", listKeys},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			got := h.list(base + tc.prefix)
			want := sortedCopy(withPrefix(base, tc.want...))
			if !slices.Equal(keysOf(got), want) {
				t.Fatalf("List(%q) keys = %q, want %q", base+tc.prefix, keysOf(got), want)
			}
			for _, kv := range got {
				h.wantPair(fmt.Sprintf("List(%q) pair", base+tc.prefix), kv, written[kv.GetKey()])
			}
		})
	}
}

func testDeleteTree(t *testing.T, h *harness) {
	keys := []string{"a/b", "a/b/1", "a/b/c/2", "a/bc", "b/x"}
	left := 0
	for i, tc := range []struct {
		name, prefix string
		left         []string
	}{
		{"directory", "a/b/", []string{"a/b", "a/bc", "b/x"}},
		{"string prefix takes siblings", "a/b", []string{"b/x"}},
		{"exact key", "b/x", []string{"a/b", "a/b/1", "a/b/c/2", "a/bc"}},
		{"no match", "nothing/", keys},
		{"everything", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			base := h.key(fmt.Sprintf("dt/%d/", i))
			written := map[string]*pb.KVPair{}
			for _, k := range keys {
				kv := h.put(base+k, []byte(k))
				written[kv.GetKey()] = kv
			}
			if err := h.s.DeleteTree(h.ctx, base+tc.prefix); err != nil {
				t.Fatalf("DeleteTree(%q): %v", base+tc.prefix, err)
			}
			got := h.list(base)
			want := sortedCopy(withPrefix(base, tc.left...))
			if !slices.Equal(keysOf(got), want) {
				t.Fatalf("after DeleteTree(%q), keys = %q, want %q", base+tc.prefix, keysOf(got), want)
			}
			for _, kv := range got {
				h.wantPair("pair left by DeleteTree", kv, written[kv.GetKey()])
			}
		})
		left += len(tc.left)
	}
	// Each case deleted inside its own directory only.
	if got := h.list(h.key("dt/")); len(got) != left && !t.Failed() {
		t.Fatalf("after all DeleteTree cases, %d keys are left, want %d: %q", len(got), left, keysOf(got))
	}
}

func testTxn(t *testing.T, h *harness) {
	k := func(s string) string { return h.key("txn/" + s) }
	cas := h.put(k("cas"), []byte("old"))
	h.put(k("del"), []byte("x"))
	delCAS := h.put(k("delcas"), []byte("x"))
	check := h.put(k("check"), []byte("x"))

	res, err := h.s.Txn(h.ctx, []*pb.TxnOp{
		{Verb: pb.TxnOp_PUT, Key: k("new"), Value: []byte("put")},
		{Verb: pb.TxnOp_CAS, Key: k("cas"), Value: []byte("cas"), Index: cas.GetIndex()},
		{Verb: pb.TxnOp_CAS, Key: k("created"), Value: []byte("created"), Index: 0},
		{Verb: pb.TxnOp_DELETE, Key: k("del")},
		{Verb: pb.TxnOp_DELETE, Key: k("missing")},
		{Verb: pb.TxnOp_DELETE_CAS, Key: k("delcas"), Index: delCAS.GetIndex()},
		{Verb: pb.TxnOp_CHECK_INDEX, Key: k("check"), Index: check.GetIndex()},
		{Verb: pb.TxnOp_CHECK_INDEX, Key: k("absent"), Index: 0},
	})
	if err != nil {
		t.Fatalf("Txn: %v", err)
	}
	want := []struct{ key, value string }{{k("new"), "put"}, {k("cas"), "cas"}, {k("created"), "created"}}
	if len(res) != len(want) {
		t.Fatalf("Txn returned %d results, want %d (one per PUT and CAS)", len(res), len(want))
	}
	for i, w := range want {
		if res[i].GetKey() != w.key || string(res[i].GetValue()) != w.value || res[i].GetIndex() == 0 {
			t.Fatalf("Txn result %d = %s, want key %q, value %q and an index > 0", i, fmtKV(res[i]), w.key, w.value)
		}
		h.wantState(w.key, res[i])
	}
	if res[1].GetIndex() <= cas.GetIndex() {
		t.Fatalf("CAS result index %d, want more than %d", res[1].GetIndex(), cas.GetIndex())
	}
	h.wantState(k("del"), nil)
	h.wantState(k("delcas"), nil)
	h.wantState(k("check"), check)
	h.wantState(k("absent"), nil)
	h.wantState(k("missing"), nil)
}

// testTxnAllOrNothing puts a failing op in the middle of a transaction
// whose other ops would succeed, and checks that none of them applied.
func testTxnAllOrNothing(t *testing.T, h *harness) {
	for i, tc := range []struct {
		name string
		// failing prepares key k and returns the op that must fail.
		failing func(h *harness, k string) *pb.TxnOp
		want    error
	}{
		{"CAS with stale index", func(h *harness, k string) *pb.TxnOp {
			stale := h.put(k, []byte("f")).GetIndex()
			h.put(k, []byte("f2"))
			return &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: k, Value: []byte("no"), Index: stale}
		}, sdk.ErrConflict},
		{"CAS create on existing key", func(h *harness, k string) *pb.TxnOp {
			h.put(k, []byte("f"))
			return &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: k, Value: []byte("no"), Index: 0}
		}, sdk.ErrConflict},
		{"CAS on missing key", func(_ *harness, k string) *pb.TxnOp {
			return &pb.TxnOp{Verb: pb.TxnOp_CAS, Key: k, Value: []byte("no"), Index: 1}
		}, sdk.ErrConflict},
		{"DELETE_CAS with stale index", func(h *harness, k string) *pb.TxnOp {
			stale := h.put(k, []byte("f")).GetIndex()
			h.put(k, []byte("f2"))
			return &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: k, Index: stale}
		}, sdk.ErrConflict},
		{"DELETE_CAS on missing key", func(_ *harness, k string) *pb.TxnOp {
			return &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: k, Index: 1}
		}, sdk.ErrConflict},
		{"CHECK_INDEX with stale index", func(h *harness, k string) *pb.TxnOp {
			stale := h.put(k, []byte("f")).GetIndex()
			h.put(k, []byte("f2"))
			return &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: k, Index: stale}
		}, sdk.ErrConflict},
		{"CHECK_INDEX absent on existing key", func(h *harness, k string) *pb.TxnOp {
			h.put(k, []byte("f"))
			return &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: k, Index: 0}
		}, sdk.ErrConflict},
		{"CHECK_INDEX on missing key", func(_ *harness, k string) *pb.TxnOp {
			return &pb.TxnOp{Verb: pb.TxnOp_CHECK_INDEX, Key: k, Index: 1}
		}, sdk.ErrConflict},
		{"unknown verb", func(_ *harness, k string) *pb.TxnOp {
			return &pb.TxnOp{Verb: pb.TxnOp_VERB_UNSPECIFIED, Key: k, Value: []byte("no")}
		}, sdk.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			base := h.key(fmt.Sprintf("tan/%d/", i))
			x, z := base+"x", base+"z"
			y := h.put(base+"y", []byte("y"))
			w := h.put(base+"w", []byte("w"))
			bad := tc.failing(h, base+"f")
			f := h.state(base + "f")

			res, err := h.s.Txn(h.ctx, []*pb.TxnOp{
				{Verb: pb.TxnOp_PUT, Key: x, Value: []byte("x")},
				{Verb: pb.TxnOp_CAS, Key: y.GetKey(), Value: []byte("y2"), Index: y.GetIndex()},
				{Verb: pb.TxnOp_DELETE, Key: w.GetKey()},
				bad,
				{Verb: pb.TxnOp_PUT, Key: z, Value: []byte("z")},
			})
			wantErr(t, "Txn with "+tc.name, err, tc.want)
			if len(res) != 0 {
				t.Errorf("failed Txn returned results %v", keysOf(res))
			}
			h.wantState(x, nil)
			h.wantState(y.GetKey(), y)
			h.wantState(w.GetKey(), w)
			h.wantState(base+"f", f)
			h.wantState(z, nil)
		})
	}
}

// testConcurrentCAS runs 8 writers that each increment one counter n times
// with read, compare-and-swap, retry on conflict. A lost update shows as a
// final count below 8n, or as two writers that both wrote the same value.
func testConcurrentCAS(t *testing.T, h *harness) {
	const workers = 8
	n := 50
	if testing.Short() {
		n = 10
	}
	k := h.key("cas/counter")
	if _, err := h.s.AtomicPut(h.ctx, k, []byte("0"), 0); err != nil {
		t.Fatalf("creating counter: %v", err)
	}

	var (
		wg        sync.WaitGroup
		written   = make([][]int, workers)
		conflicts = make([]int, workers)
		errs      = make([]error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for range n {
				v, c, err := increment(h.ctx, h.s, k)
				conflicts[w] += c
				if err != nil {
					errs[w] = fmt.Errorf("writer %d: %w", w, err)
					return
				}
				written[w] = append(written[w], v)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	final := h.get(k)
	if string(final.GetValue()) != strconv.Itoa(workers*n) {
		t.Fatalf("counter is %q after %d writers × %d increments, want %d", final.GetValue(), workers, n, workers*n)
	}
	all := slices.Concat(written...)
	slices.Sort(all)
	for i, v := range all {
		if v != i+1 {
			t.Fatalf("successful CAS writes = %v…, want each of 1..%d exactly once", all[:i+1], workers*n)
		}
	}
	total := 0
	for _, c := range conflicts {
		total += c
	}
	t.Logf("%d increments, %d conflicts retried", workers*n, total)
}

// increment adds one to the decimal counter at k and returns the value it
// wrote and how many conflicts it retried.
func increment(ctx context.Context, s store.Store, k string) (value, conflicts int, err error) {
	const maxAttempts = 10000
	for range maxAttempts {
		kv, err := s.Get(ctx, k)
		if err != nil {
			return 0, conflicts, fmt.Errorf("reading counter: %w", err)
		}
		cur, err := strconv.Atoi(string(kv.GetValue()))
		if err != nil {
			return 0, conflicts, fmt.Errorf("counter holds %q: %w", kv.GetValue(), err)
		}
		next, err := s.AtomicPut(ctx, k, []byte(strconv.Itoa(cur+1)), kv.GetIndex())
		if errors.Is(err, sdk.ErrConflict) {
			conflicts++
			continue
		}
		if err != nil {
			return 0, conflicts, fmt.Errorf("AtomicPut(%q, prev %d): %w", k, kv.GetIndex(), err)
		}
		if next.GetIndex() <= kv.GetIndex() {
			return 0, conflicts, fmt.Errorf("AtomicPut(%q, prev %d) returned index %d", k, kv.GetIndex(), next.GetIndex())
		}
		return cur + 1, conflicts, nil
	}
	return 0, conflicts, fmt.Errorf("no CAS succeeded in %d attempts", maxAttempts)
}

func testValues(t *testing.T, h *harness) {
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	large := make([]byte, 256<<10)
	for i := range large {
		large[i] = byte(i*7 + i>>8)
	}

	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	base := h.key("v/")
	events := h.watch(ctx, base)

	var all []*pb.KVPair
	for i, tc := range []struct {
		name  string
		value []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"every byte", every},
		{"zero bytes", make([]byte, 16)},
		{"invalid UTF-8", []byte{0xff, 0xfe, 0xc3, 0x28, 0x00}},
		{"trailing newline", []byte("value\n")},
		{"large", large},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := h.sub(t)
			k := fmt.Sprintf("%s%d", base, i)

			kv := h.put(k, tc.value)
			h.wantState(k, kv)
			h.expectEvents(events, []*pb.WatchEvent{putEvent(kv)})

			cas, err := h.s.AtomicPut(h.ctx, k+"/cas", tc.value, 0)
			wantErr(t, "AtomicPut", err, nil)
			if !bytes.Equal(cas.GetValue(), tc.value) {
				t.Fatalf("AtomicPut returned %s, want value %q", fmtKV(cas), tc.value)
			}
			h.wantState(k+"/cas", cas)
			h.expectEvents(events, []*pb.WatchEvent{putEvent(cas)})

			res, err := h.s.Txn(h.ctx, []*pb.TxnOp{{Verb: pb.TxnOp_PUT, Key: k + "/txn", Value: tc.value}})
			wantErr(t, "Txn PUT", err, nil)
			if len(res) != 1 || !bytes.Equal(res[0].GetValue(), tc.value) {
				t.Fatalf("Txn PUT returned %d results, want one with value %q", len(res), tc.value)
			}
			h.wantState(k+"/txn", res[0])
			h.expectEvents(events, []*pb.WatchEvent{putEvent(res[0])})
			all = append(all, kv, cas, res[0])
		})
	}
	if t.Failed() {
		return
	}
	got := h.list(base)
	if len(got) != len(all) {
		t.Fatalf("List(%q) returned %d pairs, want %d", base, len(got), len(all))
	}
	byKey := map[string]*pb.KVPair{}
	for _, kv := range all {
		byKey[kv.GetKey()] = kv
	}
	for _, kv := range got {
		h.wantPair("List pair", kv, byKey[kv.GetKey()])
	}
}
