// Package store is the contract between the sandnet host and a store
// plugin: the Store interface, the gRPC adapters on both sides, and Serve.
//
// A store is a key/value map with a modify index per key. The index grows
// with every write (it need not be per key; bolt uses one store-wide
// revision, Consul its ModifyIndex), and compare-and-swap operations name
// the index they expect, so concurrent writers on one or many hosts never
// lose an update. What a store holds outlives its process: the host
// restarts a store plugin that dies and reads its state back from it, so
// a store that comes back empty loses every record while the networks
// and containers they describe remain (keep the data in a file or a
// server; an in-memory store is for tests only).
package store

import (
	"context"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Store is what a store plugin implements. Keys are '/'-separated paths;
// values are opaque bytes.
type Store interface {
	sdk.Configurer
	// Get returns the pair at key, or an error wrapping sdk.ErrNotFound.
	Get(ctx context.Context, key string) (*pb.KVPair, error)
	// Put writes key unconditionally and returns the pair with its new index.
	Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error)
	// AtomicPut writes key only if its index is prevIndex. prevIndex 0
	// means the key must not exist: an existing key gives sdk.ErrExists.
	// Any other mismatch, a missing key included, gives sdk.ErrConflict.
	AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (*pb.KVPair, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// AtomicDelete removes key only if its index is prevIndex: a missing
	// key gives sdk.ErrNotFound, a different index sdk.ErrConflict.
	AtomicDelete(ctx context.Context, key string, prevIndex uint64) error
	// List returns every pair whose key starts with prefix, ordered by key.
	// No match is an empty list, not an error.
	List(ctx context.Context, prefix string) ([]*pb.KVPair, error)
	// DeleteTree removes every key that starts with prefix.
	DeleteTree(ctx context.Context, prefix string) error
	// Txn applies ops all together or not at all. A failed CAS,
	// DELETE_CAS or CHECK_INDEX fails the whole transaction with
	// sdk.ErrConflict. It returns the new pair of every PUT and CAS op,
	// in order.
	Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error)
	// Watch streams the changes under prefix. The first event is READY;
	// every committed change after it follows in commit order. The channel
	// is closed when ctx ends or the watch breaks; the caller watches again.
	Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error)
	// Close flushes and releases the backend.
	Close(ctx context.Context) error
}

// Leaser is implemented by a store that can tie keys to a lease, and
// whose Info then lists sdk.CapabilityLease. It is optional: the host
// asks for it only of a store that lists the capability, and a store
// built before it answers the lease calls with sdk.ErrNotSupported.
//
// A lease lives while its holder renews it. Once renewals stop, the
// store deletes every key put with the lease (watchers see DELETE
// events) at the latest ttl after the last renewal, and not before
// ttl/2 after it; the holder renews at least every ttl/4. A store whose
// state never outlives this host (local scope) may keep leases forever.
type Leaser interface {
	// LeaseGrant makes a new lease of at least ttl. A ttl the store
	// cannot keep gives an error wrapping sdk.ErrInvalid.
	LeaseGrant(ctx context.Context, ttl time.Duration) (*pb.Lease, error)
	// LeaseRenew starts lease id's ttl again. A lease that expired, or
	// that the store never granted, gives an error wrapping
	// sdk.ErrNotFound: the holder grants a new one and puts its keys
	// again.
	LeaseRenew(ctx context.Context, id string) (*pb.Lease, error)
	// LeasePut writes key unconditionally, tied to lease id: it is
	// deleted when the lease ends. An unknown or expired lease gives an
	// error wrapping sdk.ErrNotFound and writes nothing.
	LeasePut(ctx context.Context, key string, value []byte, id string) (*pb.KVPair, error)
}

// Leases returns s as a Leaser when it is one, else nil. A *Client always
// implements the calls; whether its plugin serves them is in its Info
// (sdk.CapabilityLease).
func Leases(s Store) Leaser {
	l, _ := s.(Leaser)
	return l
}
