package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/examples/plugins/store-etcd/etcdstore"
	"github.com/sandnet/sandnet/examples/plugins/store-etcd/etcdtest"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/store"
	"github.com/sandnet/sandnet/sdk/storetest"
)

func config(endpoint, prefix string) []byte {
	return fmt.Appendf(nil, `{"endpoints":[%q],"prefix":%q,"dial_timeout":null,"timeout":null,"ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`, endpoint, prefix)
}

func open(t *testing.T, cfg []byte) *etcdstore.Store {
	t.Helper()
	s := etcdstore.New()
	if err := s.Configure(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// TestConformance runs the SDK's store suite against one real etcd, in
// process and through the built plugin, with and without a key prefix.
func TestConformance(t *testing.T) {
	srv := etcdtest.Start(t)
	t.Run("in process", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			return open(t, config(srv.Endpoint, "")), storetest.Prefix(t)
		})
	})
	t.Run("in process with key prefix", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			return open(t, config(srv.Endpoint, "tenant-a/")), storetest.Prefix(t)
		})
	})
	t.Run("plugin process", func(t *testing.T) {
		bin := plugintest.Build(t, "..")
		storetest.Run(t, func(t *testing.T) (store.Store, string) {
			return plugintest.LaunchStore(t, bin, config(srv.Endpoint, "")), storetest.Prefix(t)
		})
	})
}

// TestPrefixIsolates checks that two stores with different key prefixes
// on one cluster see only their own keys.
func TestPrefixIsolates(t *testing.T) {
	srv := etcdtest.Start(t)
	a, b := open(t, config(srv.Endpoint, "a/")), open(t, config(srv.Endpoint, "b/"))
	ctx := t.Context()
	if _, err := a.Put(ctx, "sandnet/v1/network/n1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "sandnet/v1/network/n1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("store b sees store a's key: %v", err)
	}
	kvs, err := a.List(ctx, "sandnet/")
	if err != nil || len(kvs) != 1 || kvs[0].GetKey() != "sandnet/v1/network/n1" {
		t.Fatalf("List = %v, %v; want the key without the prefix", kvs, err)
	}
}

// TestUnreachable checks that a store pointed at a port nobody serves
// says so at Configure, as ErrUnavailable, within the dial timeout.
func TestUnreachable(t *testing.T) {
	s := etcdstore.New()
	cfg := []byte(`{"endpoints":["127.0.0.1:1"],"prefix":null,"dial_timeout":"300ms","timeout":"300ms","ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`)
	if err := s.Configure(t.Context(), cfg); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Configure against a closed port: %v, want ErrUnavailable", err)
	}
	if _, err := s.Get(t.Context(), "k"); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Get before a successful Configure: %v, want ErrUnavailable", err)
	}
}

// TestFrozen: an etcd that stops answering (SIGSTOP) makes a request fail
// within the store's timeout, as ErrUnavailable naming the operation and
// its key, the etcd and the timeout, not a bare "context deadline
// exceeded".
func TestFrozen(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, fmt.Appendf(nil, `{"endpoints":[%q],"prefix":"","dial_timeout":null,"timeout":"500ms","ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`, srv.Endpoint))
	if _, err := s.Put(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	defer srv.Resume()
	_, err := s.Get(t.Context(), "k")
	if want := `get "k": etcd at ` + srv.Endpoint + " did not answer within 500ms"; !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), want) {
		t.Fatalf("Get with etcd frozen: %v; want ErrUnavailable saying %q", err, want)
	}
}

// TestReadmeExample decodes the README's HCL block against the plugin's
// schema, as the host would, and checks the store accepts it.
func TestReadmeExample(t *testing.T) {
	for _, cfg := range plugintest.ReadmeConfigs(t, filepath.Join("..", "README.md"), "store", "etcd", plugintest.SchemaOf(t, etcdstore.Config{})) {
		if _, err := etcdstore.ParseForTest(cfg); err != nil {
			t.Errorf("README config %s: %v", cfg, err)
		}
	}
}

// TestLeaseExpires: a key put with a lease that is not renewed is gone
// once the lease's ttl has passed (etcd deletes it), and a renewal of the
// expired lease, or a put with it, is sdk.ErrNotFound. The conformance
// suite checks the rest of the lease contract but not expiry, which takes
// a ttl.
func TestLeaseExpires(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, config(srv.Endpoint, "x/"))
	ctx := t.Context()
	lease, err := s.LeaseGrant(ctx, time.Second)
	if err != nil || lease.GetTtlMs() < 1000 {
		t.Fatalf("LeaseGrant(1s) = %v, %v", lease, err)
	}
	if _, err := s.LeasePut(ctx, "sandnet/v1/host/h1", []byte("live"), lease.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "sandnet/v1/host/h1"); err != nil {
		t.Fatalf("the leased key right after LeasePut: %v", err)
	}
	deadline := time.Now().Add(time.Duration(lease.GetTtlMs())*time.Millisecond + 15*time.Second)
	for {
		_, err := s.Get(ctx, "sandnet/v1/host/h1")
		if errors.Is(err, sdk.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leased key still there %s after its lease of %d ms was last renewed: %v", 15*time.Second, lease.GetTtlMs(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := s.LeaseRenew(ctx, lease.GetId()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeaseRenew of an expired lease: %v, want sdk.ErrNotFound", err)
	}
	if _, err := s.LeasePut(ctx, "sandnet/v1/host/h2", []byte("x"), lease.GetId()); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("LeasePut with an expired lease: %v, want sdk.ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "sandnet/v1/host/h2"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a LeasePut with an expired lease wrote its key: %v", err)
	}
	if _, err := s.LeaseGrant(ctx, 500*time.Millisecond); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("LeaseGrant(500ms): %v, want sdk.ErrInvalid", err)
	}
}

// TestWatchEndsWhenEtcdIsReplaced: an etcd started again with an empty
// data directory on the same address is another store, and a watch of
// the old one ends, so that its caller lists and watches again. Before,
// the etcd client resumed the watch from the old revision with no error,
// and nothing the new etcd committed below it arrived: a container made
// on another host never reached this one.
func TestWatchEndsWhenEtcdIsReplaced(t *testing.T) {
	srv := etcdtest.Start(t)
	s := open(t, config(srv.Endpoint, "w/"))
	for i := range 20 { // the old store's revision, well above the new one's
		if _, err := s.Put(t.Context(), fmt.Sprint("k", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := s.Watch(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.GetType().String() != "READY" {
		t.Fatalf("first event %v, want READY", ev)
	}
	srv.RestartEmpty(t)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			t.Logf("event after the restart: %v", ev)
		case <-deadline:
			t.Fatal("the watch of the old etcd still runs 30s after an empty one took its address")
		}
	}
}
