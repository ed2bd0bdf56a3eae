// Package etcdstore is a sandnet store plugin on etcd v3: sandnet's keys
// live in an etcd cluster (optionally under a key prefix), shared by every
// host pointed at it.
//
// The index of a pair is the key's mod revision. etcd's revision is
// cluster-wide and grows with every write, so a key written again after a
// delete always gets a larger index than it ever had. Compare-and-swap,
// conditional deletes and multi-key transactions are etcd transactions
// comparing mod (or create) revisions; List and DeleteTree are prefix
// ranges; Watch is an etcd watch started at the revision after the one
// READY stands for, so it delivers every change committed after READY and
// none before.
//
// It works against etcd 3.4 and later servers: it uses only the KV, Txn,
// Watch and Lease RPCs of the v3 API, unchanged since 3.0.
package etcdstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Info describes the plugin: an etcd cluster is shared between hosts, so
// the store has global scope, and it keeps leases (etcd's own; lease.go)
// for host liveness.
func Info(version string) sdk.Info {
	return sdk.Info{Name: "etcd", Version: version, Capabilities: []string{sdk.CapabilityGlobalScope, sdk.CapabilityLease}, Config: Config{}}
}

// Store is the etcd store. Its methods are safe for concurrent use.
type Store struct {
	mu  sync.Mutex // guards all following fields
	set settings
	cli *clientv3.Client
}

// New returns a store that is not connected until Configure.
func New() *Store { return &Store{} }

// Configure connects to the cluster the config names and checks that it
// answers, within the dial timeout. Configuring again with the same
// settings keeps the connection; other settings replace it.
func (s *Store) Configure(ctx context.Context, raw []byte) error {
	set, err := parse(raw)
	if err != nil {
		return err
	}
	s.mu.Lock()
	same := s.cli != nil && s.set.equal(set)
	s.mu.Unlock()
	if same {
		return nil
	}
	cfg := clientv3.Config{Endpoints: set.endpoints, DialTimeout: set.dialTimeout, Logger: zap.NewNop(), Context: context.WithoutCancel(ctx)}
	if set.tls() {
		if cfg.TLS, err = tlsConfig(set); err != nil {
			return err
		}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return fmt.Errorf("connecting to etcd at %s: %v: %w", strings.Join(set.endpoints, ", "), err, sdk.ErrUnavailable)
	}
	pctx, cancel := context.WithTimeout(ctx, set.dialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, set.prefix+"sandnet/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return fmt.Errorf("etcd at %s does not answer: %w", strings.Join(set.endpoints, ", "), backendErr(err))
	}
	s.mu.Lock()
	old := s.cli
	s.cli, s.set = cli, set
	s.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

func tlsConfig(set settings) (*tls.Config, error) {
	c := &tls.Config{ServerName: set.serverName, MinVersion: tls.VersionTLS12}
	if set.caFile != "" {
		pem, err := os.ReadFile(set.caFile)
		if err != nil {
			return nil, fmt.Errorf("config: ca_file: %v: %w", err, sdk.ErrInvalid)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("config: ca_file %s holds no PEM certificate: %w", set.caFile, sdk.ErrInvalid)
		}
	}
	if set.certFile != "" {
		cert, err := tls.LoadX509KeyPair(set.certFile, set.keyFile)
		if err != nil {
			return nil, fmt.Errorf("config: cert_file and key_file: %v: %w", err, sdk.ErrInvalid)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// client returns the connection and its settings, or ErrUnavailable
// before Configure.
func (s *Store) client() (*clientv3.Client, settings, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cli == nil {
		return nil, settings{}, fmt.Errorf("etcd store is not configured: %w", sdk.ErrUnavailable)
	}
	return s.cli, s.set, nil
}

// op runs fn, the operation what (`get "KEY"`, named in its errors as
// the Consul store names its), with the connection, a context bounded by
// the request timeout, and the key prefix.
func (s *Store) op(ctx context.Context, what string, fn func(ctx context.Context, cli *clientv3.Client, prefix string) error) error {
	cli, set, err := s.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, set.timeout)
	defer cancel()
	err = fn(ctx, cli, set.prefix)
	if errors.Is(err, sdk.ErrUnavailable) {
		// Say which etcd, and whether it was the timeout, as the
		// Consul store does: "context deadline exceeded" alone does not.
		at := strings.Join(set.endpoints, ", ")
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s: etcd at %s did not answer within %s: %w", what, at, set.timeout, sdk.ErrUnavailable)
		}
		return fmt.Errorf("%s: etcd at %s: %w", what, at, err)
	}
	return err
}

// backendErr maps an etcd client error to the sdk sentinels.
func backendErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("etcd: %v: %w", err, sdk.ErrUnavailable)
	case errors.Is(err, rpctypes.ErrDuplicateKey), errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("etcd: %v: %w", err, sdk.ErrInvalid)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("etcd: %v: %w", err, sdk.ErrUnavailable)
	case codes.InvalidArgument, codes.FailedPrecondition:
		return fmt.Errorf("etcd: %v: %w", err, sdk.ErrInvalid)
	}
	return fmt.Errorf("etcd: %w", err)
}

// indexIs compares key's index: 0 means the key must not exist.
func indexIs(key string, index uint64) clientv3.Cmp {
	if index == 0 {
		return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	return clientv3.Compare(clientv3.ModRevision(key), "=", int64(index))
}

// Get returns the pair at key.
func (s *Store) Get(ctx context.Context, key string) (kv *pb.KVPair, err error) {
	err = s.op(ctx, fmt.Sprintf("get %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Get(ctx, p+key)
		if err != nil {
			return backendErr(err)
		}
		if len(resp.Kvs) == 0 {
			return fmt.Errorf("key %q: %w", key, sdk.ErrNotFound)
		}
		kv = &pb.KVPair{Key: key, Value: resp.Kvs[0].Value, Index: uint64(resp.Kvs[0].ModRevision)}
		return nil
	})
	return kv, err
}

// Put writes key unconditionally.
func (s *Store) Put(ctx context.Context, key string, value []byte) (kv *pb.KVPair, err error) {
	err = s.op(ctx, fmt.Sprintf("put %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Put(ctx, p+key, string(value))
		if err != nil {
			return backendErr(err)
		}
		kv = &pb.KVPair{Key: key, Value: value, Index: uint64(resp.Header.Revision)}
		return nil
	})
	return kv, err
}

// AtomicPut writes key if its index is prevIndex (0: it must not exist).
func (s *Store) AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (kv *pb.KVPair, err error) {
	err = s.op(ctx, fmt.Sprintf("put %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Txn(ctx).If(indexIs(p+key, prevIndex)).Then(clientv3.OpPut(p+key, string(value))).Commit()
		if err != nil {
			return backendErr(err)
		}
		if !resp.Succeeded {
			if prevIndex == 0 {
				return fmt.Errorf("key %q: %w", key, sdk.ErrExists)
			}
			return fmt.Errorf("key %q is not at index %d: %w", key, prevIndex, sdk.ErrConflict)
		}
		kv = &pb.KVPair{Key: key, Value: value, Index: uint64(resp.Header.Revision)}
		return nil
	})
	return kv, err
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	return s.op(ctx, fmt.Sprintf("delete %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		_, err := cli.Delete(ctx, p+key)
		return backendErr(err)
	})
}

// AtomicDelete removes key if its index is prevIndex.
func (s *Store) AtomicDelete(ctx context.Context, key string, prevIndex uint64) error {
	return s.op(ctx, fmt.Sprintf("delete %q", key), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Txn(ctx).If(indexIs(p+key, prevIndex)).Then(clientv3.OpDelete(p + key)).Else(clientv3.OpGet(p+key, clientv3.WithCountOnly())).Commit()
		if err != nil {
			return backendErr(err)
		}
		if !resp.Succeeded {
			if resp.Responses[0].GetResponseRange().GetCount() == 0 {
				return fmt.Errorf("key %q: %w", key, sdk.ErrNotFound)
			}
			return fmt.Errorf("key %q is not at index %d: %w", key, prevIndex, sdk.ErrConflict)
		}
		if resp.Responses[0].GetResponseDeleteRange().GetDeleted() == 0 {
			return fmt.Errorf("key %q: %w", key, sdk.ErrNotFound)
		}
		return nil
	})
}

// List returns every pair under prefix, ordered by key.
func (s *Store) List(ctx context.Context, prefix string) (kvs []*pb.KVPair, err error) {
	err = s.op(ctx, fmt.Sprintf("list %q", prefix), func(ctx context.Context, cli *clientv3.Client, p string) error {
		resp, err := cli.Get(ctx, p+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		if err != nil {
			return backendErr(err)
		}
		kvs = make([]*pb.KVPair, 0, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			kvs = append(kvs, &pb.KVPair{Key: string(kv.Key[len(p):]), Value: kv.Value, Index: uint64(kv.ModRevision)})
		}
		return nil
	})
	return kvs, err
}

// DeleteTree removes every key under prefix.
func (s *Store) DeleteTree(ctx context.Context, prefix string) error {
	return s.op(ctx, fmt.Sprintf("delete tree %q", prefix), func(ctx context.Context, cli *clientv3.Client, p string) error {
		_, err := cli.Delete(ctx, p+prefix, clientv3.WithPrefix())
		return backendErr(err)
	})
}

// Txn applies ops in one etcd transaction: the CAS, DELETE_CAS and
// CHECK_INDEX ops are its conditions, the writes its success branch.
// etcd refuses a transaction that writes one key twice (sdk.ErrInvalid).
func (s *Store) Txn(ctx context.Context, ops []*pb.TxnOp) (res []*pb.KVPair, err error) {
	err = s.op(ctx, fmt.Sprintf("txn of %d ops", len(ops)), func(ctx context.Context, cli *clientv3.Client, p string) error {
		var cmps []clientv3.Cmp
		var writes []clientv3.Op
		var puts []*pb.TxnOp
		for i, op := range ops {
			k := p + op.GetKey()
			switch op.GetVerb() {
			case pb.TxnOp_PUT:
				writes = append(writes, clientv3.OpPut(k, string(op.GetValue())))
				puts = append(puts, op)
			case pb.TxnOp_CAS:
				cmps = append(cmps, indexIs(k, op.GetIndex()))
				writes = append(writes, clientv3.OpPut(k, string(op.GetValue())))
				puts = append(puts, op)
			case pb.TxnOp_DELETE:
				writes = append(writes, clientv3.OpDelete(k))
			case pb.TxnOp_DELETE_CAS:
				cmps = append(cmps, indexIs(k, op.GetIndex()))
				writes = append(writes, clientv3.OpDelete(k))
			case pb.TxnOp_CHECK_INDEX:
				cmps = append(cmps, indexIs(k, op.GetIndex()))
			default:
				return fmt.Errorf("txn op %d: unknown verb %v: %w", i, op.GetVerb(), sdk.ErrInvalid)
			}
		}
		resp, err := cli.Txn(ctx).If(cmps...).Then(writes...).Commit()
		if err != nil {
			return backendErr(err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("transaction: a key is not at the index an op expects: %w", sdk.ErrConflict)
		}
		res = make([]*pb.KVPair, len(puts))
		for i, op := range puts {
			res[i] = &pb.KVPair{Key: op.GetKey(), Value: op.GetValue(), Index: uint64(resp.Header.Revision)}
		}
		return nil
	})
	return res, err
}

// Close closes the connection.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	cli := s.cli
	s.cli = nil
	s.mu.Unlock()
	if cli == nil {
		return nil
	}
	return cli.Close()
}
