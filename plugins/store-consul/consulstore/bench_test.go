package consulstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/sandnet/sandnet/plugins/store-consul/consultest"

	"github.com/hashicorp/consul/api"

	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/store"
)

// The benchmarks measure one Put or Get on three peers against the same
// agent in the same run, so their ratios, not their absolute times, are
// the result:
//
//	consul-api  consul/api called directly (KV.Put, KV.Get): the floor
//	store       Store called directly: the cost of the store's own work
//	            (a Put is a one-op /v1/txn, so that it learns its index)
//	plugin      the plugin process through go-plugin with AutoMTLS, as the host sees it

const benchKeys = 1000

var benchValue = make([]byte, 128)

type benchPeer struct {
	name string
	put  func(ctx context.Context, key string, value []byte) error
	get  func(ctx context.Context, key string) error
}

// benchPeers starts an agent and sets up the peers, each under its own
// keys. It must run in the top-level benchmark, which runs once, not in a
// b.Run function, which runs again for every b.N.
func benchPeers(b *testing.B) []benchPeer {
	ctx := context.Background()
	a := consultest.Start(b)
	bin := plugintest.Build(b, pluginPkg)
	kv := rawClient(b, a.Addr())
	peers := []benchPeer{{
		name: "consul-api",
		put: func(_ context.Context, key string, value []byte) error {
			_, err := kv.Put(&api.KVPair{Key: key, Value: value}, nil)
			return err
		},
		get: func(_ context.Context, key string) error {
			p, _, err := kv.Get(key, nil)
			if err == nil && p == nil {
				err = fmt.Errorf("%s missing", key)
			}
			return err
		},
	}}
	cfg := agentConfig(b, a.Addr(), nil)
	for _, p := range []struct {
		name string
		s    store.Store
	}{{"store", openStore(b, cfg)}, {"plugin", plugintest.LaunchStore(b, bin, cfg)}} {
		peers = append(peers, benchPeer{
			name: p.name,
			put: func(ctx context.Context, key string, value []byte) error {
				_, err := p.s.Put(ctx, key, value)
				return err
			},
			get: func(ctx context.Context, key string) error {
				_, err := p.s.Get(ctx, key)
				return err
			},
		})
	}
	for _, p := range peers {
		for i := range benchKeys {
			if err := p.put(ctx, benchKey(p.name, i), benchValue); err != nil {
				b.Fatal(err)
			}
		}
	}
	return peers
}

func benchKey(peer string, i int) string {
	return fmt.Sprintf("bench/%s/sandnet/v1/endpoint/%06d", peer, i%benchKeys)
}

func BenchmarkPut(b *testing.B) {
	for _, p := range benchPeers(b) {
		b.Run(p.name, func(b *testing.B) {
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if err := p.put(ctx, benchKey(p.name, i), benchValue); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	for _, p := range benchPeers(b) {
		b.Run(p.name, func(b *testing.B) {
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if err := p.get(ctx, benchKey(p.name, i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
