package consulstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/plugins/store-consul/consultest"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
	"github.com/sandnet/sandnet/sdk/storetest"
)

const pluginPkg = "github.com/sandnet/sandnet/plugins/store-consul"

// newTestStore returns an unconfigured Store that logs nothing.
func newTestStore() *Store {
	s := New()
	s.log = hclog.NewNullLogger()
	return s
}

// agentConfig is the config of a store on agent a, with the attributes in
// set on top.
func agentConfig(t testing.TB, addr string, set map[string]cty.Value) []byte {
	t.Helper()
	all := map[string]cty.Value{"address": cty.StringVal(addr)}
	for k, v := range set {
		all[k] = v
	}
	return configJSON(t, all)
}

// openStore returns a Store configured with raw, closed when the test ends.
func openStore(t testing.TB, raw []byte) *Store {
	t.Helper()
	s := newTestStore()
	if err := s.Configure(context.Background(), raw); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// rawClient is a plain consul/api client of the agent, standing for
// another host or an operator with the consul CLI.
func rawClient(t testing.TB, addr string) *api.KV {
	t.Helper()
	c, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	return c.KV()
}

// TestConsul runs everything that needs an agent on one agent, each part
// under keys of its own.
func TestConsul(t *testing.T) {
	a := consultest.Start(t)
	kv := rawClient(t, a.Addr())

	t.Run("Conformance", func(t *testing.T) {
		// Through the gRPC adapters, a store per subtest, with a prefix
		// in the config, so the suite also checks the key mapping.
		t.Run("InProcess", func(t *testing.T) {
			cfg := agentConfig(t, a.Addr(), map[string]cty.Value{"prefix": cty.StringVal("sandnet-test/")})
			storetest.Run(t, func(t *testing.T) (store.Store, string) {
				impl := newTestStore()
				c, stop, err := store.InProcess(Info("test"), impl)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(stop)
				t.Cleanup(func() { impl.Close(context.Background()) })
				if err := c.Configure(t.Context(), cfg); err != nil {
					t.Fatalf("Configure: %v", err)
				}
				return c, storetest.Prefix(t)
			})
		})
		// The real plugin process, shared by every subtest, with the
		// default (empty) prefix.
		t.Run("Plugin", func(t *testing.T) {
			if testing.Short() {
				t.Skip("builds and launches the plugin binary")
			}
			c := plugintest.LaunchStore(t, plugintest.Build(t, pluginPkg), agentConfig(t, a.Addr(), nil))
			info, err := c.Info(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if info.GetName() != Name || info.GetKind() != sdk.KindStore || info.GetVersion() == "" ||
				!slices.Equal(info.GetCapabilities(), []string{sdk.CapabilityGlobalScope, sdk.CapabilityLease}) {
				t.Fatalf("Info = %v, want a consul store with a version, global scope and leases", info)
			}
			storetest.Run(t, func(t *testing.T) (store.Store, string) { return c, storetest.Prefix(t) })
		})
		// The suite keeps to its prefixes, and the config prefix keeps
		// the in-process stores' keys under it.
		keys, _, err := kv.Keys("", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "sandnet-test/storetest/") && !strings.HasPrefix(k, "storetest/") {
				t.Errorf("the suite left %q in Consul, outside the prefixes it was given", k)
			}
		}
	})

	t.Run("Prefix", func(t *testing.T) { testPrefix(t, a, kv) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, a) })
	t.Run("TxnLimit", func(t *testing.T) { testTxnLimit(t, a) })
	t.Run("ValueTooLarge", func(t *testing.T) { testValueTooLarge(t, a) })
	t.Run("OtherHost", func(t *testing.T) { testOtherHost(t, a, kv) })
	t.Run("SlowWatcher", func(t *testing.T) { testSlowWatcher(t, a) })
	t.Run("Reconfigure", func(t *testing.T) { testReconfigure(t, a) })
	t.Run("Token", func(t *testing.T) { testToken(t, a) })
	t.Run("LeaseExpires", func(t *testing.T) { testLeaseExpires(t, a) })
}

// testPrefix checks that the config prefix is where keys live in Consul
// and that the store sees nothing outside it.
func testPrefix(t *testing.T, a *consultest.Agent, kv *api.KV) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	s := openStore(t, agentConfig(t, a.Addr(), map[string]cty.Value{"prefix": cty.StringVal(base + "cluster-a/")}))

	mine, err := s.Put(ctx, "sandnet/v1/network/n1", []byte("n1"))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := kv.Get(base+"cluster-a/sandnet/v1/network/n1", nil)
	if err != nil || got == nil || string(got.Value) != "n1" || got.ModifyIndex != mine.GetIndex() {
		t.Fatalf("Consul holds %+v, %v at the prefixed key; want n1 at index %d", got, err, mine.GetIndex())
	}
	for _, k := range []string{base + "cluster-a/sandnet/v1/network/n2", base + "cluster-b/sandnet/v1/network/n3", base + "cluster-ab"} {
		if _, err := kv.Put(&api.KVPair{Key: k, Value: []byte("x")}, nil); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"sandnet/v1/network/n1", "sandnet/v1/network/n2"}; !slices.Equal(keysOf(list), want) {
		t.Fatalf("List(\"\") = %q, want the keys under the prefix only, without it: %q", keysOf(list), want)
	}
	if err := s.DeleteTree(ctx, ""); err != nil {
		t.Fatal(err)
	}
	left, _, err := kv.Keys(base, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{base + "cluster-ab", base + "cluster-b/sandnet/v1/network/n3"}; !slices.Equal(left, want) {
		t.Fatalf("after DeleteTree(\"\"), Consul holds %q, want %q", left, want)
	}
}

// testKeys round-trips keys with characters that need escaping in a URL
// and refuses those Consul's HTTP API cannot address.
func testKeys(t *testing.T, a *consultest.Agent) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	events := mustWatch(t, s, base)
	for _, k := range []string{"sp ace", "q?uery", "h#ash", "per%25cent", "pl+us", "ü/日本", "trailing/", "a.b/.hidden"} {
		kv, err := s.Put(ctx, base+k, []byte(k))
		if err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
		got, err := s.Get(ctx, base+k)
		if err != nil || string(got.GetValue()) != k || got.GetIndex() != kv.GetIndex() {
			t.Fatalf("Get(%q) = %v, %v; want %v", k, got, err, kv)
		}
		list, err := s.List(ctx, base+k)
		if err != nil || len(list) != 1 || list[0].GetKey() != base+k {
			t.Fatalf("List(%q) = %q, %v; want the key alone", k, keysOf(list), err)
		}
		if ev := next(t, events); ev.GetType() != pb.WatchEvent_PUT || ev.GetKv().GetKey() != base+k {
			t.Fatalf("event for Put(%q) = %v", k, ev)
		}
	}
	for _, k := range []string{"", "/abs", "a//b", "a/./b", "a/../b", "a/..", "dot/.", string([]byte{0xff, 'k'})} {
		if _, err := s.Put(ctx, k, nil); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("Put(%q): %v, want sdk.ErrInvalid", k, err)
		}
		if _, err := s.Get(ctx, k); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("Get(%q): %v, want sdk.ErrInvalid", k, err)
		}
	}
	if _, err := s.List(ctx, "a//"); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("List(\"a//\"): %v, want sdk.ErrInvalid", err)
	}
	if _, err := s.Txn(ctx, []*pb.TxnOp{{Verb: pb.TxnOp_PUT, Key: base + "ok"}, {Verb: pb.TxnOp_DELETE, Key: "x//y"}}); !errors.Is(err, sdk.ErrInvalid) {
		t.Errorf("Txn with a bad key: %v, want sdk.ErrInvalid", err)
	}
}

// testTxnLimit checks the documented limit: 64 ops, DELETE_CAS ops that
// become two Consul ops each included, and a clear sdk.ErrInvalid above.
func testTxnLimit(t *testing.T, a *consultest.Agent) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	var puts, dels []*pb.TxnOp
	for i := range MaxTxnOps {
		puts = append(puts, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: fmt.Sprintf("%s%02d", base, i), Value: []byte("v")})
	}
	res, err := s.Txn(ctx, puts)
	if err != nil || len(res) != MaxTxnOps {
		t.Fatalf("Txn of %d PUTs: %d results, %v", MaxTxnOps, len(res), err)
	}
	for _, kv := range res {
		dels = append(dels, &pb.TxnOp{Verb: pb.TxnOp_DELETE_CAS, Key: kv.GetKey(), Index: kv.GetIndex()})
	}
	if _, err := s.Txn(ctx, dels); err != nil {
		t.Fatalf("Txn of %d DELETE_CAS: %v", MaxTxnOps, err)
	}
	if left, err := s.List(ctx, base); err != nil || len(left) != 0 {
		t.Fatalf("after deleting them all, List = %q, %v", keysOf(left), err)
	}
	over := append(puts, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: base + "one-too-many"})
	_, err = s.Txn(ctx, over)
	if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "at most 64 ops") {
		t.Fatalf("Txn of %d ops: %v, want sdk.ErrInvalid saying the limit", len(over), err)
	}
	if left, err := s.List(ctx, base); err != nil || len(left) != 0 {
		t.Fatalf("the refused Txn wrote %q, %v", keysOf(left), err)
	}
}

// testValueTooLarge checks that Consul's refusal of a value above its
// limits (512 KiB per request by default) comes back as sdk.ErrInvalid.
func testValueTooLarge(t *testing.T, a *consultest.Agent) {
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	_, err := s.Put(t.Context(), storetest.Prefix(t)+"big", make([]byte, 600<<10))
	if !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("Put of 600 KiB: %v, want sdk.ErrInvalid", err)
	}
}

// testOtherHost checks that a watch sees writes that do not go through
// the store (another host, an operator), and that AtomicPut sees them.
func testOtherHost(t *testing.T, a *consultest.Agent, kv *api.KV) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	events := mustWatch(t, s, base)

	if _, err := kv.Put(&api.KVPair{Key: base + "remote", Value: []byte("r1")}, nil); err != nil {
		t.Fatal(err)
	}
	got, _, err := kv.Get(base+"remote", nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := next(t, events)
	if ev.GetType() != pb.WatchEvent_PUT || ev.GetKv().GetKey() != base+"remote" ||
		string(ev.GetKv().GetValue()) != "r1" || ev.GetKv().GetIndex() != got.ModifyIndex {
		t.Fatalf("event for another host's write = %v, want PUT of r1 at %d", ev, got.ModifyIndex)
	}
	if _, err := s.AtomicPut(ctx, base+"remote", []byte("mine"), got.ModifyIndex-1); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("AtomicPut with a stale index: %v, want sdk.ErrConflict", err)
	}
	if _, err := s.AtomicPut(ctx, base+"remote", []byte("mine"), got.ModifyIndex); err != nil {
		t.Fatalf("AtomicPut with the other host's index: %v", err)
	}
	if ev := next(t, events); ev.GetType() != pb.WatchEvent_PUT || string(ev.GetKv().GetValue()) != "mine" {
		t.Fatalf("event for the AtomicPut = %v", ev)
	}
	if _, err := kv.Delete(base+"remote", nil); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.GetType() != pb.WatchEvent_DELETE || ev.GetKv().GetKey() != base+"remote" {
		t.Fatalf("event for another host's delete = %v, want DELETE", ev)
	}
}

// testSlowWatcher checks that a watch nobody reads is closed once its
// buffer is full, without holding up writers, while other watches go on.
func testSlowWatcher(t *testing.T, a *consultest.Agent) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	s := openStore(t, agentConfig(t, a.Addr(), nil))
	s.watchBuffer = 4
	slow := mustWatch(t, s, base)
	s.watchBuffer = DefaultWatchBuffer
	fast := mustWatch(t, s, base)

	start := time.Now()
	for i := range 10 {
		if _, err := s.Put(ctx, fmt.Sprintf("%s%d", base, i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if ev := next(t, fast); ev.GetKv().GetKey() != fmt.Sprintf("%s%d", base, i) {
			t.Fatalf("fast watcher event %d = %v", i, ev)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("10 writes took %s with a watcher that does not read", d)
	}
	var got []string
	for ev := range slow {
		got = append(got, strings.TrimPrefix(ev.GetKv().GetKey(), base))
	}
	// The buffer held READY (read by mustWatch) and four events.
	if want := []string{"0", "1", "2", "3"}; !slices.Equal(got, want) {
		t.Fatalf("slow watcher got %q before it was closed, want %q", got, want)
	}
}

// testReconfigure checks that the same config again changes nothing and
// keeps the watches, and that another one ends them.
func testReconfigure(t *testing.T, a *consultest.Agent) {
	ctx := t.Context()
	base := storetest.Prefix(t)
	cfg := agentConfig(t, a.Addr(), nil)
	s := openStore(t, cfg)
	events := mustWatch(t, s, base)
	if err := s.Configure(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, base+"k", nil); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.GetType() != pb.WatchEvent_PUT {
		t.Fatalf("after the same Configure, event = %v", ev)
	}
	if err := s.Configure(ctx, agentConfig(t, a.Addr(), map[string]cty.Value{"timeout": cty.StringVal("2s")})); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, events)
	if _, err := s.Get(ctx, base+"k"); err != nil {
		t.Fatalf("Get after a new Configure: %v", err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, base+"k"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get after Close: %v, want sdk.ErrUnavailable", err)
	}
}

// testToken puts a proxy between the store and the agent (-dev has no
// ACLs, so the agent would take any token) and checks that every request
// carries the token of the config, and none from the environment.
func testToken(t *testing.T, a *consultest.Agent) {
	target, err := url.Parse("http://" + a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	// What the consul CLI and consul/api would pick up.
	t.Setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")

	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("3f2a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  map[string]cty.Value
		want string
	}{
		{"token_file", map[string]cty.Value{"token_file": cty.StringVal(tokenFile)}, "3f2a-token"},
		{"token", map[string]cty.Value{"token": cty.StringVal("inline-token")}, "inline-token"},
		{"none", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				seen = map[string]int{}
			)
			proxy := httputil.NewSingleHostReverseProxy(target)
			// Canceled blocking queries are expected.
			proxy.ErrorLog = log.New(io.Discard, "", 0)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				seen[r.Header.Get("X-Consul-Token")]++
				mu.Unlock()
				proxy.ServeHTTP(w, r)
			}))
			t.Cleanup(srv.Close)

			ctx := t.Context()
			base := storetest.Prefix(t)
			s := openStore(t, agentConfig(t, strings.TrimPrefix(srv.URL, "http://"), tc.set))
			events := mustWatch(t, s, base)
			if _, err := s.Put(ctx, base+"k", []byte("v")); err != nil {
				t.Fatal(err)
			}
			next(t, events)
			if _, err := s.Get(ctx, base+"k"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, base+"k"); err != nil {
				t.Fatal(err)
			}
			next(t, events)
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 || seen[tc.want] < 5 {
				t.Fatalf("tokens the agent got (token: requests) = %v, want only %q, on every request", seen, tc.want)
			}
		})
	}
}

// TestOutage stops and pauses the agent under a running plugin process:
// calls fail within the timeout with sdk.ErrUnavailable saying the store
// is unreachable, and work again once the agent is back, with no restart
// of the plugin. A watch open through it all catches up with the agent
// that came back (empty, with lower indexes).
func TestOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and launches the plugin binary")
	}
	a := consultest.Start(t)
	const timeout = time.Second
	c := plugintest.LaunchStore(t, plugintest.Build(t, pluginPkg),
		agentConfig(t, a.Addr(), map[string]cty.Value{"timeout": cty.StringVal(timeout.String())}))
	ctx := t.Context()
	before, err := c.Put(ctx, "k/before", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	events := mustWatch(t, c, "k/")

	unreachable := func(what string, call func() error) {
		t.Helper()
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("%s: %v after %s, want sdk.ErrUnavailable saying the store is unreachable (agent: %s)", what, err, took, a.State())
		}
		if took > timeout+time.Second {
			t.Fatalf("%s failed after %s, want within the %s timeout and a second", what, took, timeout)
		}
		t.Logf("%s: failed in %s: %v", what, took.Round(time.Millisecond), err)
	}

	a.Pause()
	unreachable("Get from a hung agent", func() error { _, err := c.Get(ctx, "k/before"); return err })
	// Outside the watched prefix: the hung agent still holds this request
	// and applies it once it runs again, as any store may apply a write
	// whose caller gave up waiting.
	unreachable("Put to a hung agent", func() error { _, err := c.Put(ctx, "elsewhere", nil); return err })
	a.Resume()
	if kv, err := c.Get(ctx, "k/before"); err != nil || kv.GetIndex() != before.GetIndex() {
		t.Fatalf("Get once the agent answers again: %v, %v", kv, err)
	}

	a.Stop()
	unreachable("Get from a stopped agent", func() error { _, err := c.Get(ctx, "k/before"); return err })
	unreachable("Watch on a stopped agent", func() error { _, err := c.Watch(ctx, "k/"); return err })
	a.Start()
	after, err := c.Put(ctx, "k/after", []byte("2"))
	if err != nil {
		t.Fatalf("Put once the agent is back: %v", err)
	}
	if _, err := c.Get(ctx, "k/before"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get of a key the restarted (in-memory) agent lost: %v, want sdk.ErrNotFound", err)
	}

	// The watch resyncs after the agent's indexes went backwards: the
	// lost key is deleted, the new one put, in either order.
	want := map[string]bool{"DELETE k/before": true, fmt.Sprintf("PUT k/after @%d", after.GetIndex()): true}
	deadline := time.After(30 * time.Second)
	for len(want) > 0 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("watch closed; still waiting for %v", want)
			}
			got := fmt.Sprintf("%s %s", ev.GetType(), ev.GetKv().GetKey())
			if ev.GetType() == pb.WatchEvent_PUT {
				got += fmt.Sprintf(" @%d", ev.GetKv().GetIndex())
			}
			if !want[got] {
				t.Fatalf("unexpected event %s; waiting for %v", got, want)
			}
			delete(want, got)
		case <-deadline:
			t.Fatalf("the watch did not catch up with the restarted agent: still waiting for %v", want)
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
	for range 2 {
		if err := s.Close(ctx); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// TestUnreachable checks the error of an agent that is not there at all,
// which needs no agent binary: nothing listens on the port.
func TestUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", consultest.FreePorts(t, "none")["none"])
	s := openStore(t, agentConfig(t, addr, map[string]cty.Value{"timeout": cty.StringVal("1s")}))
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"Get":        func() error { _, err := s.Get(ctx, "k"); return err },
		"Put":        func() error { _, err := s.Put(ctx, "k", nil); return err },
		"List":       func() error { _, err := s.List(ctx, ""); return err },
		"DeleteTree": func() error { return s.DeleteTree(ctx, "k/") },
		"Watch":      func() error { _, err := s.Watch(ctx, ""); return err },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "consul store unreachable at http://"+addr) {
			t.Errorf("%s: %v, want sdk.ErrUnavailable naming the agent", name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s took %s to fail", name, d)
		}
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
	if ev := next(t, ch); ev.GetType() != pb.WatchEvent_READY {
		t.Fatalf("first event %v, want READY", ev)
	}
	return ch
}

// next returns the next event, failing the test if none comes in 10s.
func next(t testing.TB, ch <-chan *pb.WatchEvent) *pb.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return nil
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

func keysOf(kvs []*pb.KVPair) []string {
	keys := make([]string, len(kvs))
	for i, kv := range kvs {
		keys[i] = kv.GetKey()
	}
	return keys
}
