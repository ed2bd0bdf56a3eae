package boltstore

import (
	"context"
	"fmt"
	"testing"

	"github.com/zclconf/go-cty/cty"
	bolt "go.etcd.io/bbolt"

	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/store"
)

// The benchmarks measure one Put or Get on four peers in the same run, so
// their ratios, not their absolute times, are the result:
//
//	bbolt      a bare bbolt Update or View: the floor
//	store      Store called directly: the cost of the revision and watches
//	inprocess  Store through the gRPC adapters on an in-memory connection
//	plugin     the plugin process through go-plugin with AutoMTLS, as the host sees it
//
// Put runs with fsync (the default) and with no_sync; the no_sync numbers
// show the overhead of each layer without the disk's flush time.

const benchKeys = 1000

var benchValue = make([]byte, 128)

type benchPeer struct {
	name string
	put  func(ctx context.Context, key string, value []byte) error
	get  func(ctx context.Context, key string) error
}

// benchPeers sets up the four peers, each on its own file. It must run in
// the top-level benchmark, which runs once, not in a b.Run function,
// which runs again for every b.N.
func benchPeers(b *testing.B, bin string, noSync bool) []benchPeer {
	ctx := context.Background()
	set := map[string]cty.Value{"no_sync": cty.BoolVal(noSync)}

	db, err := bolt.Open(dbPath(b), 0o600, &bolt.Options{NoSync: noSync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket(dataBucket); return err }); err != nil {
		b.Fatal(err)
	}
	peers := []benchPeer{{
		name: "bbolt",
		put: func(_ context.Context, key string, value []byte) error {
			return db.Update(func(tx *bolt.Tx) error { return tx.Bucket(dataBucket).Put([]byte(key), value) })
		},
		get: func(_ context.Context, key string) error {
			return db.View(func(tx *bolt.Tx) error {
				if v := tx.Bucket(dataBucket).Get([]byte(key)); v == nil {
					return fmt.Errorf("%s missing", key)
				}
				return nil
			})
		},
	}}

	direct := newTestStore()
	if err := direct.Configure(ctx, configJSON(b, dbPath(b), set)); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { direct.Close(ctx) })

	impl := newTestStore()
	inproc, stop, err := store.InProcess(Info("test"), impl)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(stop)
	b.Cleanup(func() { impl.Close(ctx) })
	if err := inproc.Configure(ctx, configJSON(b, dbPath(b), set)); err != nil {
		b.Fatal(err)
	}

	plugin := plugintest.LaunchStore(b, bin, configJSON(b, dbPath(b), set))

	for _, p := range []struct {
		name string
		s    store.Store
	}{{"store", direct}, {"inprocess", inproc}, {"plugin", plugin}} {
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
			if err := p.put(ctx, benchKey(i), benchValue); err != nil {
				b.Fatal(err)
			}
		}
	}
	return peers
}

func benchKey(i int) string { return fmt.Sprintf("sandnet/v1/bench/%06d", i%benchKeys) }

func BenchmarkPut(b *testing.B) {
	bin := plugintest.Build(b, pluginPkg)
	for _, mode := range []struct {
		name   string
		noSync bool
	}{{"fsync", false}, {"no_sync", true}} {
		for _, p := range benchPeers(b, bin, mode.noSync) {
			b.Run(mode.name+"/"+p.name, func(b *testing.B) {
				ctx := context.Background()
				i := 0
				for b.Loop() {
					if err := p.put(ctx, benchKey(i), benchValue); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

func BenchmarkGet(b *testing.B) {
	bin := plugintest.Build(b, pluginPkg)
	for _, p := range benchPeers(b, bin, true) {
		b.Run(p.name, func(b *testing.B) {
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if err := p.get(ctx, benchKey(i)); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
