package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
	"github.com/sandnet/sandnet/sdk/storetest"
)

const pluginPkg = "github.com/sandnet/sandnet/plugins/store-bolt"

// newTestStore returns an unopened Store that logs nothing.
func newTestStore() *Store {
	s := New()
	s.log = hclog.NewNullLogger()
	return s
}

// openStore returns a Store open on path, closed when the test ends.
func openStore(t testing.TB, path string) *Store {
	t.Helper()
	s := newTestStore()
	if err := s.Configure(context.Background(), configJSON(t, path, nil)); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "store.db") }

func TestConformance(t *testing.T) {
	t.Run("Direct", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			return openStore(t, dbPath(t)), ""
		})
	})
	// Through the gRPC adapters, as the host sees a plugin, without the
	// process.
	t.Run("InProcess", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			impl := newTestStore()
			c, stop, err := store.InProcess(Info("test"), impl)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
			t.Cleanup(func() { impl.Close(context.Background()) })
			if err := c.Configure(t.Context(), configJSON(t, dbPath(t), nil)); err != nil {
				t.Fatalf("Configure: %v", err)
			}
			return c, ""
		})
	})
}

// TestPlugin runs the real plugin binary as the host does.
func TestPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and launches the plugin binary")
	}
	bin := plugintest.Build(t, pluginPkg)

	t.Run("Info", func(t *testing.T) {
		c := plugintest.LaunchStore(t, bin, configJSON(t, dbPath(t), nil))
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.GetName() != "bolt" || info.GetKind() != sdk.KindStore || info.GetVersion() == "" ||
			!slices.Equal(info.GetCapabilities(), []string{sdk.CapabilityLease}) {
			t.Fatalf("Info = %v, want a bolt store with a version and only the lease capability (local scope)", info)
		}
	})

	// One process shared by every subtest, each under its own prefix:
	// the suite's shared-backend mode.
	t.Run("Conformance", func(t *testing.T) {
		c := plugintest.LaunchStore(t, bin, configJSON(t, dbPath(t), nil))
		storetest.Run(t, func(t *testing.T) (store.Store, string) { return c, storetest.Prefix(t) })
	})

	t.Run("ConfigureTwice", func(t *testing.T) {
		cfg := configJSON(t, dbPath(t), nil)
		c := plugintest.LaunchStore(t, bin, cfg)
		kv, err := c.Put(t.Context(), "k", []byte("v"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Configure(t.Context(), cfg); err != nil {
			t.Fatalf("second Configure with the same config: %v", err)
		}
		wantGet(t, c, kv)
	})

	t.Run("BadConfig", func(t *testing.T) {
		raw, _ := plugintest.Launch(t, sdk.KindStore, bin)
		err := raw.(*store.Client).Configure(t.Context(), configJSON(t, "relative/store.db", nil))
		if !errors.Is(err, sdk.ErrInvalid) {
			t.Fatalf("Configure with a relative path: %v, want sdk.ErrInvalid", err)
		}
	})

	// The host restarts a plugin that died: the new process opens the same
	// file, and data and revision survive.
	t.Run("Restart", func(t *testing.T) {
		cfg := configJSON(t, dbPath(t), nil)
		raw, pc := plugintest.Launch(t, sdk.KindStore, bin)
		c := raw.(*store.Client)
		if err := c.Configure(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
		kv, err := c.Put(t.Context(), "k", []byte("before"))
		if err != nil {
			t.Fatal(err)
		}
		events, err := c.Watch(t.Context(), "")
		if err != nil {
			t.Fatal(err)
		}
		pc.Kill()
		waitClosed(t, events)

		c2 := plugintest.LaunchStore(t, bin, cfg)
		wantGet(t, c2, kv)
		kv2, err := c2.Put(t.Context(), "k2", []byte("after"))
		if err != nil {
			t.Fatal(err)
		}
		if kv2.GetIndex() <= kv.GetIndex() {
			t.Fatalf("index after restart %d, want above %d", kv2.GetIndex(), kv.GetIndex())
		}
	})

	// A second host pointed at a file in use gets a clear error, in time.
	t.Run("Locked", func(t *testing.T) {
		path := dbPath(t)
		openStore(t, path)
		raw, _ := plugintest.Launch(t, sdk.KindStore, bin)
		start := time.Now()
		err := raw.(*store.Client).Configure(t.Context(),
			configJSON(t, path, map[string]cty.Value{"timeout": cty.StringVal("300ms")}))
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "lock") {
			t.Fatalf("Configure on a locked file: %v, want sdk.ErrUnavailable naming the lock", err)
		}
		wantAbout(t, time.Since(start), 300*time.Millisecond)
	})
}

// TestReopen closes the store and opens the same file again, in the same
// Store and in a new one, as after a restart of the plugin.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "state", "sandnet")
	path := filepath.Join(dir, "store.db")
	cfg := configJSON(t, path, nil)

	s := newTestStore()
	if err := s.Configure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	a := mustPut(t, s, "a", "1")
	b := mustPut(t, s, "b", "2")
	c := mustPut(t, s, "c", "3")
	if err := s.Delete(ctx, "c"); err != nil { // advances the revision to c+1
		t.Fatal(err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "a"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get after Close: %v, want sdk.ErrUnavailable", err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Fatalf("stat %s: %v, %v; want mode %v", p, fi.Mode(), err, want)
		}
	}

	next := c.GetIndex() + 2
	for _, tc := range []struct {
		name string
		s    *Store
	}{{"same store", s}, {"new store", newTestStore()}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.s.Configure(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			defer tc.s.Close(ctx)
			wantGet(t, tc.s, a)
			wantGet(t, tc.s, b)
			if _, err := tc.s.Get(ctx, "c"); !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("Get deleted key: %v, want sdk.ErrNotFound", err)
			}
			// The revision counter survived, the delete's step included.
			if d := mustPut(t, tc.s, "d", "4"); d.GetIndex() != next {
				t.Fatalf("first write after reopening has index %d, want %d", d.GetIndex(), next)
			}
			next++
		})
	}
}

func TestConfigure(t *testing.T) {
	ctx := t.Context()
	path := dbPath(t)
	s := openStore(t, path)
	kv := mustPut(t, s, "k", "v")
	events := mustWatch(t, s, "")

	// The same configuration again changes nothing, not even the watch.
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatalf("Configure again: %v", err)
	}
	kv2 := mustPut(t, s, "k", "v2")
	if ev := <-events; ev.GetType() != pb.WatchEvent_PUT || ev.GetKv().GetIndex() != kv2.GetIndex() {
		t.Fatalf("event after reconfiguring = %v, want the PUT at %d", ev, kv2.GetIndex())
	}

	// A bad configuration leaves the open store alone.
	if err := s.Configure(ctx, []byte(`{"path":"x"}`)); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("Configure with a bad config: %v, want sdk.ErrInvalid", err)
	}
	wantGet(t, s, kv2)

	// Another file: the watch on the old one ends, the new one is empty.
	if err := s.Configure(ctx, configJSON(t, dbPath(t), nil)); err != nil {
		t.Fatalf("Configure with another path: %v", err)
	}
	waitClosed(t, events)
	if _, err := s.Get(ctx, kv.GetKey()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get on the new file: %v, want sdk.ErrNotFound", err)
	}
}

// TestLocked opens a file another Store holds, in the same process (flock
// locks conflict between open files, not only between processes).
func TestLocked(t *testing.T) {
	path := dbPath(t)
	holder := openStore(t, path)

	s := newTestStore()
	cfg := configJSON(t, path, map[string]cty.Value{"timeout": cty.StringVal("300ms")})
	start := time.Now()
	err := s.Configure(t.Context(), cfg)
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Configure on a locked file: %v, want sdk.ErrUnavailable naming the file", err)
	}
	wantAbout(t, time.Since(start), 300*time.Millisecond)

	if err := holder.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Configure(t.Context(), cfg); err != nil {
		t.Fatalf("Configure once the lock is free: %v", err)
	}
	s.Close(t.Context())
}

// TestSlowWatcher checks that a watcher that stops reading is closed once
// its buffer is full, that writers never wait for it, and that other
// watchers keep going.
func TestSlowWatcher(t *testing.T) {
	s := openStore(t, dbPath(t))
	s.watchBuffer = 4
	slow := mustWatch(t, s, "a/")
	s.watchBuffer = DefaultWatchBuffer
	fast := mustWatch(t, s, "")

	done := make(chan error)
	go func() {
		for i := range 10 {
			if _, err := s.Put(context.Background(), fmt.Sprintf("a/%d", i), []byte("x")); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// fast keeps up, so it sees all ten.
	for i := range 10 {
		if ev := <-fast; ev.GetKv().GetKey() != fmt.Sprintf("a/%d", i) {
			t.Fatalf("fast watcher event %d = %v", i, ev)
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writers blocked on a watcher that does not read")
	}

	var got []string
	for ev := range slow {
		got = append(got, ev.GetKv().GetKey())
	}
	if want := []string{"a/0", "a/1", "a/2", "a/3"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("slow watcher got %q before it was closed, want %q", got, want)
	}
	mustPut(t, s, "b", "still watched")
	if ev := <-fast; ev.GetKv().GetKey() != "b" {
		t.Fatalf("fast watcher after the slow one was dropped: %v", ev)
	}
}

// TestRevision checks the store-wide revision: all writes of a Txn share
// one, DELETE events carry the revision of the delete, and failed or
// no-op writes do not advance it.
func TestRevision(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, dbPath(t))
	events := mustWatch(t, s, "")

	first := mustPut(t, s, "x", "1")
	<-events
	if _, err := s.AtomicPut(ctx, "x", []byte("2"), 0); !errors.Is(err, sdk.ErrExists) {
		t.Fatalf("AtomicPut create on existing key: %v", err)
	}
	if err := s.Delete(ctx, "missing"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Txn(ctx, []*pb.TxnOp{
		{Verb: pb.TxnOp_PUT, Key: "y", Value: []byte("y")},
		{Verb: pb.TxnOp_DELETE, Key: "x"},
		{Verb: pb.TxnOp_CAS, Key: "z", Value: []byte("z")},
	})
	if err != nil {
		t.Fatal(err)
	}
	rev := first.GetIndex() + 1
	if res[0].GetIndex() != rev || res[1].GetIndex() != rev {
		t.Fatalf("Txn results at %d and %d, want both at %d", res[0].GetIndex(), res[1].GetIndex(), rev)
	}
	for _, want := range []string{"PUT y", "DELETE x", "PUT z"} {
		ev := <-events
		if got := fmt.Sprintf("%s %s", ev.GetType(), ev.GetKv().GetKey()); got != want || ev.GetKv().GetIndex() != rev {
			t.Fatalf("event %s at %d, want %s at %d", got, ev.GetKv().GetIndex(), want, rev)
		}
	}
}

func TestInvalid(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, dbPath(t))
	long := strings.Repeat("k", 40000)
	for name, err := range map[string]error{
		"Get empty key":        second(s.Get(ctx, "")),
		"Put empty key":        second(s.Put(ctx, "", []byte("v"))),
		"Put long key":         second(s.Put(ctx, long, []byte("v"))),
		"AtomicPut empty key":  second(s.AtomicPut(ctx, "", nil, 0)),
		"Delete empty key":     s.Delete(ctx, ""),
		"AtomicDelete empty":   s.AtomicDelete(ctx, "", 1),
		"Txn op with no key":   second(s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_PUT}})),
		"Txn op with long key": second(s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: long}})),
	} {
		if !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("%s: %v, want sdk.ErrInvalid", name, err)
		}
	}
}

func TestUnconfigured(t *testing.T) {
	ctx := t.Context()
	s := newTestStore()
	if _, err := s.Get(ctx, "k"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get before Configure: %v, want sdk.ErrUnavailable", err)
	}
	if _, err := s.Watch(ctx, ""); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Watch before Configure: %v, want sdk.ErrUnavailable", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close before Configure: %v", err)
	}

	// A watch open when the store closes ends; the store can be opened again.
	path := dbPath(t)
	if err := s.Configure(ctx, configJSON(t, path, nil)); err != nil {
		t.Fatal(err)
	}
	events := mustWatch(t, s, "")
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, events)
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// wantAbout checks that waiting for a lock with the given timeout gave up
// after about that long. bbolt polls the lock every 50ms and gives up one
// poll early, so the wait can fall short by that much.
func wantAbout(t testing.TB, waited, timeout time.Duration) {
	t.Helper()
	if waited < timeout-100*time.Millisecond || waited > timeout+5*time.Second {
		t.Fatalf("gave up on the lock after %s, want about the %s timeout", waited, timeout)
	}
}

func second[T any](_ T, err error) error { return err }

func mustPut(t testing.TB, s store.Store, k, v string) *pb.KVPair {
	t.Helper()
	kv, err := s.Put(context.Background(), k, []byte(v))
	if err != nil {
		t.Fatalf("Put(%q): %v", k, err)
	}
	return kv
}

func wantGet(t testing.TB, s store.Store, want *pb.KVPair) {
	t.Helper()
	got, err := s.Get(context.Background(), want.GetKey())
	if err != nil || string(got.GetValue()) != string(want.GetValue()) || got.GetIndex() != want.GetIndex() {
		t.Fatalf("Get(%q) = %v, %v; want %v", want.GetKey(), got, err, want)
	}
}

// mustWatch watches prefix for the rest of the test and consumes READY.
func mustWatch(t testing.TB, s store.Store, prefix string) <-chan *pb.WatchEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, err := s.Watch(ctx, prefix)
	if err != nil {
		t.Fatalf("Watch(%q): %v", prefix, err)
	}
	if ev := <-ch; ev.GetType() != pb.WatchEvent_READY {
		t.Fatalf("first event %v, want READY", ev)
	}
	return ch
}

func waitClosed(t testing.TB, ch <-chan *pb.WatchEvent) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("watch not closed")
		}
	}
}
