package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Leases are etcd leases: LeaseGrant grants one of ttl rounded up to the
// second (etcd counts in seconds, and may raise a short one to its
// minimum, which the answer's ttl then says), LeaseRenew is one
// keep-alive, and LeasePut attaches the key to the lease, so that etcd
// deletes it when the lease expires — ttl after the last keep-alive. A
// lease's ID is etcd's, in hex, as etcdctl prints it.

// MaxLeaseTTL is the longest lease etcd grants (its MaxLeaseTTL, 9e9 s).
const MaxLeaseTTL = 9_000_000_000 * time.Second

var _ store.Leaser = (*Store)(nil)

// LeaseGrant grants a lease of at least ttl.
func (s *Store) LeaseGrant(ctx context.Context, ttl time.Duration) (lease *pb.Lease, err error) {
	if ttl < time.Second || ttl > MaxLeaseTTL {
		return nil, fmt.Errorf("lease ttl %s: the etcd store keeps leases of 1s to %s: %w", ttl, MaxLeaseTTL, sdk.ErrInvalid)
	}
	secs := int64((ttl + time.Second - 1) / time.Second)
	err = s.op(ctx, "lease grant", func(ctx context.Context, cli *clientv3.Client, _ string) error {
		resp, err := cli.Grant(ctx, secs)
		if err != nil {
			return backendErr(err)
		}
		lease = &pb.Lease{Id: strconv.FormatInt(int64(resp.ID), 16), TtlMs: resp.TTL * 1000}
		return nil
	})
	return lease, err
}

// LeaseRenew sends one keep-alive for lease id.
func (s *Store) LeaseRenew(ctx context.Context, id string) (lease *pb.Lease, err error) {
	lid, err := leaseID(id)
	if err != nil {
		return nil, err
	}
	err = s.op(ctx, fmt.Sprintf("lease renew %s", id), func(ctx context.Context, cli *clientv3.Client, _ string) error {
		resp, err := cli.KeepAliveOnce(ctx, lid)
		if err != nil {
			return leaseErr(fmt.Sprintf("lease renew %q", id), err)
		}
		lease = &pb.Lease{Id: id, TtlMs: resp.TTL * 1000}
		return nil
	})
	return lease, err
}

// LeasePut writes key attached to lease id; an unknown or expired lease
// writes nothing.
func (s *Store) LeasePut(ctx context.Context, key string, value []byte, id string) (kv *pb.KVPair, err error) {
	lid, err := leaseID(id)
	if err != nil {
		return nil, err
	}
	err = s.op(ctx, fmt.Sprintf("put %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Put(ctx, p+key, string(value), clientv3.WithLease(lid))
		if err != nil {
			return leaseErr(fmt.Sprintf("put %q with lease %q", key, id), err)
		}
		kv = &pb.KVPair{Key: key, Value: value, Index: uint64(resp.Header.Revision)}
		return nil
	})
	return kv, err
}

// leaseID reads a lease ID LeaseGrant gave; anything else is a lease
// this store never granted.
func leaseID(id string) (clientv3.LeaseID, error) {
	n, err := strconv.ParseInt(id, 16, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("lease %q: not an etcd lease ID: %w", id, sdk.ErrNotFound)
	}
	return clientv3.LeaseID(n), nil
}

// leaseErr maps a lease call's error: a lease etcd does not know (never
// granted, or expired) is sdk.ErrNotFound.
func leaseErr(what string, err error) error {
	if errors.Is(err, rpctypes.ErrLeaseNotFound) || status.Code(err) == codes.NotFound {
		return fmt.Errorf("%s: no such lease (it expired): %w", what, sdk.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, backendErr(err))
}
