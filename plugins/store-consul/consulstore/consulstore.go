// Package consulstore is a store.Store on Consul's KV store, for state that
// several sandnet hosts share (global scope).
//
// Every key lives in Consul at the configured prefix followed by the key;
// its index is Consul's ModifyIndex, the Raft index of the write that last
// changed it. That index grows with every write anywhere in the datacenter,
// so a key's index grows with each write to it and a key deleted and
// written again never gets an index it had before.
//
// Every write goes through Consul's transaction endpoint (/v1/txn), even a
// single Put: unlike the plain KV endpoint it answers with the ModifyIndex
// the write got, so Put and AtomicPut return the new pair without a second
// request that could see someone else's write. Compare-and-swap maps onto
// Consul's own checks (cas, check-index, check-not-exists), which run
// inside the Raft transaction and are atomic. Where Consul's verb differs
// from the store contract, the request adds a read in the same
// transaction: Consul's delete-cas succeeds on a missing key, so
// AtomicDelete reads the key first (get-or-empty) to answer
// sdk.ErrNotFound, and a Txn DELETE_CAS becomes check-index then delete.
// Reads use the plain KV endpoint with Consul's default consistency.
//
// Watches are Consul blocking queries on the prefix: each answer is a
// consistent listing, diffed against the previous one into PUT and DELETE
// events (see watch.go). Consul keeps no history, so changes made by
// other hosts between two answers of a blocking query are coalesced into
// the latest state of each key. Changes made through this Store are not:
// a write returns only once every watch it touched has seen it, so each
// of this process's writes reaches its watches as its own events, in
// order.
//
// Every request carries a deadline (the `timeout` setting), so an agent
// that is down or hung gives an error wrapping sdk.ErrUnavailable in
// about that time instead of hanging the host; the next call tries again,
// so the store recovers when the agent does, with no restart.
package consulstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Name is the plugin's name, the label of its `store` block.
const Name = "consul"

// Info describes the plugin, built as the given version, to the host. The
// store is shared between hosts: it declares sdk.CapabilityGlobalScope,
// and sdk.CapabilityLease (Consul sessions, see lease.go).
func Info(version string) sdk.Info {
	return sdk.Info{
		Name:         Name,
		Version:      version,
		Capabilities: []string{sdk.CapabilityGlobalScope, sdk.CapabilityLease},
		Config:       Config{},
	}
}

// MaxTxnOps is the most ops one Txn may hold. Consul 1.14 takes up to 128
// operations per transaction (its documentation still says 64), and this
// store turns each DELETE and DELETE_CAS into two, so 64 always fits.
const MaxTxnOps = 64

// DefaultWatchBuffer is how many undelivered events a watch may hold
// before it is closed.
const DefaultWatchBuffer = 1024

// errUnconfigured is returned by every operation before Configure and
// after Close.
var errUnconfigured = fmt.Errorf("consul store is not configured: %w", sdk.ErrUnavailable)

// Store is a store.Store on a Consul agent. Its methods are safe for
// concurrent use.
type Store struct {
	log         hclog.Logger
	watchBuffer int
	// retryMin and retryMax bound the backoff of a watch whose agent
	// does not answer.
	retryMin, retryMax time.Duration

	// mu guards c. Operations take the current conn and let go of mu
	// before they talk to the agent; Configure and Close swap it.
	mu sync.RWMutex
	c  *conn
}

var _ store.Store = (*Store)(nil)

// New returns a Store with no agent yet; Configure names it.
func New() *Store {
	return &Store{
		log:         sdk.NewLogger(Name),
		watchBuffer: DefaultWatchBuffer,
		retryMin:    100 * time.Millisecond,
		retryMax:    10 * time.Second,
	}
}

// Configure points the store at the agent the configuration names and
// reads token_file and the TLS files. It does not contact the agent, so
// a plugin whose Consul is down still starts, and its calls fail with
// sdk.ErrUnavailable until the agent answers. Called again with the same
// configuration (and the same token) it does nothing; with another one it
// closes the watches of the old one.
func (s *Store) Configure(_ context.Context, raw []byte) error {
	set, err := parse(raw)
	if err != nil {
		return fmt.Errorf("configuring consul store: %w", err)
	}
	token, err := readToken(set)
	if err != nil {
		return fmt.Errorf("configuring consul store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil && s.c.set == set && s.c.token == token {
		return nil
	}
	c, err := dial(set, token, s.log)
	if err != nil {
		return fmt.Errorf("configuring consul store: %w", err)
	}
	if s.c != nil {
		s.c.close()
	}
	s.c = c
	s.log.Info("configured", "agent", set.endpoint(), "datacenter", set.datacenter,
		"prefix", set.prefix, "token", token != "", "timeout", set.timeout)
	return nil
}

// Close ends every watch and drops the agent's connections. The store can
// be configured again.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	c := s.c
	s.c = nil
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
	return nil
}

func (s *Store) conn() (*conn, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.c == nil {
		return nil, errUnconfigured
	}
	return s.c, nil
}

// Get returns the pair at key.
func (s *Store) Get(ctx context.Context, key string) (*pb.KVPair, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if err := c.checkKey(key); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("get %q", key)
	var kv *api.KVPair
	err = c.call(ctx, what, c.set.timeout, func(ctx context.Context) (err error) {
		kv, _, err = c.kv.Get(c.set.prefix+key, query(ctx))
		return err
	})
	if err != nil {
		return nil, err
	}
	if kv == nil {
		return nil, fmt.Errorf("%s: %w", what, sdk.ErrNotFound)
	}
	return &pb.KVPair{Key: key, Value: kv.Value, Index: kv.ModifyIndex}, nil
}

// List returns the pairs whose key starts with prefix, ordered by key.
func (s *Store) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if err := c.checkPrefix(prefix); err != nil {
		return nil, err
	}
	kvs, _, err := c.list(ctx, fmt.Sprintf("list %q", prefix), c.set.prefix+prefix, 0, 0)
	if err != nil {
		return nil, err
	}
	out := make([]*pb.KVPair, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, &pb.KVPair{Key: c.strip(kv.Key), Value: kv.Value, Index: kv.ModifyIndex})
	}
	return out, nil
}

// Put writes key and returns the pair with the index Consul gave it.
func (s *Store) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	res, err := s.txn(ctx, fmt.Sprintf("put %q", key), []*pb.TxnOp{{Verb: pb.TxnOp_PUT, Key: key, Value: value}})
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// AtomicPut writes key if its index is prevIndex (0: if it does not
// exist), with Consul's check-and-set.
func (s *Store) AtomicPut(ctx context.Context, key string, value []byte, prevIndex uint64) (*pb.KVPair, error) {
	what := fmt.Sprintf("atomic put %q", key)
	res, err := s.txn(ctx, what, []*pb.TxnOp{{Verb: pb.TxnOp_CAS, Key: key, Value: value, Index: prevIndex}})
	var failed *txnError
	switch {
	case errors.As(err, &failed) && failed.conflict() && prevIndex == 0:
		return nil, fmt.Errorf("%s: key exists: %w", what, sdk.ErrExists)
	case errors.As(err, &failed) && failed.conflict():
		return nil, fmt.Errorf("%s: index is not %d (the key changed or is gone): %w", what, prevIndex, sdk.ErrConflict)
	case err != nil:
		return nil, err
	}
	return res[0], nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	_, err := s.txn(ctx, fmt.Sprintf("delete %q", key), []*pb.TxnOp{{Verb: pb.TxnOp_DELETE, Key: key}})
	return err
}

// AtomicDelete removes key if its index is prevIndex.
func (s *Store) AtomicDelete(ctx context.Context, key string, prevIndex uint64) error {
	c, err := s.conn()
	if err != nil {
		return err
	}
	if err := c.checkKey(key); err != nil {
		return err
	}
	what := fmt.Sprintf("atomic delete %q", key)
	full := c.set.prefix + key
	// Consul's delete-cas succeeds when the key is missing; the read in
	// the same transaction tells that case apart.
	resp, err := c.txn(ctx, what, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: full}},
		{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: full, Index: prevIndex}},
	}, nil)
	var failed *txnError
	switch {
	case errors.As(err, &failed) && failed.conflict():
		return fmt.Errorf("%s: index is not %d: %w", what, prevIndex, sdk.ErrConflict)
	case err != nil:
		return err
	}
	if len(resp.Results) != 1 || resp.Results[0].KV == nil {
		return fmt.Errorf("%s: consul answered %d results, want 1", what, len(resp.Results))
	}
	had := resp.Results[0].KV.ModifyIndex
	if had == 0 {
		return fmt.Errorf("%s: %w", what, sdk.ErrNotFound)
	}
	c.settle(ctx, change{dels: []deleted{{key, had}}})
	return nil
}

// DeleteTree removes every key that starts with prefix, in one Consul
// transaction that also reads them, so that watches can be told which.
func (s *Store) DeleteTree(ctx context.Context, prefix string) error {
	c, err := s.conn()
	if err != nil {
		return err
	}
	if err := c.checkPrefix(prefix); err != nil {
		return err
	}
	full := c.set.prefix + prefix
	resp, err := c.txn(ctx, fmt.Sprintf("delete tree %q", prefix), api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVGetTree, Key: full}},
		{KV: &api.KVTxnOp{Verb: api.KVDeleteTree, Key: full}},
	}, nil)
	if err != nil {
		return err
	}
	var ch change
	for _, r := range resp.Results {
		if r.KV != nil {
			ch.dels = append(ch.dels, deleted{c.strip(r.KV.Key), r.KV.ModifyIndex})
		}
	}
	c.settle(ctx, ch)
	return nil
}

// Txn applies ops in one Consul transaction. A failed check fails it with
// sdk.ErrConflict, an unknown verb or more than MaxTxnOps ops with
// sdk.ErrInvalid before anything is sent.
func (s *Store) Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	res, err := s.txn(ctx, "txn", ops)
	var failed *txnError
	if errors.As(err, &failed) && failed.conflict() {
		return nil, fmt.Errorf("%w: %w", err, sdk.ErrConflict)
	}
	return res, err
}

// txn runs ops and returns the pairs of its PUT and CAS ops. A rolled
// back transaction gives a *txnError.
func (s *Store) txn(ctx context.Context, what string, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if len(ops) > MaxTxnOps {
		return nil, fmt.Errorf("%s of %d ops: the consul store takes at most %d ops per transaction: %w",
			what, len(ops), MaxTxnOps, sdk.ErrInvalid)
	}
	p, err := c.plan(ops)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(ops) == 0 {
		return []*pb.KVPair{}, nil
	}
	resp, err := c.txn(ctx, what, p.ops, p.origin)
	if err != nil {
		return nil, err
	}
	res, ch, err := p.read(resp)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	c.settle(ctx, ch)
	return res, nil
}

// plan is a Txn turned into Consul operations.
type plan struct {
	ops api.TxnOps
	// origin is the caller's op of each Consul op, for error messages.
	origin []int
	// reads says what each result Consul returns means, in order: Consul
	// answers a result for set, cas, check-index and get-or-empty only.
	reads []txnRead
	// dels are the keys DELETE_CAS ops remove, with the index they had.
	dels []deleted
}

type txnRead struct {
	kind  readKind
	key   string
	value []byte
}

type readKind int

const (
	readPut     readKind = iota // the new pair of a PUT or CAS
	readDeleted                 // the pair a DELETE removes (index 0: none)
	readCheck                   // a check-index result, of no use
)

func (c *conn) plan(ops []*pb.TxnOp) (*plan, error) {
	p := &plan{}
	add := func(i int, op *api.KVTxnOp, r *txnRead) {
		p.ops = append(p.ops, &api.TxnOp{KV: op})
		p.origin = append(p.origin, i)
		if r != nil {
			p.reads = append(p.reads, *r)
		}
	}
	for i, op := range ops {
		key := op.GetKey()
		if err := c.checkKey(key); err != nil {
			return nil, fmt.Errorf("op %d: %w", i, err)
		}
		full, idx := c.set.prefix+key, op.GetIndex()
		switch op.GetVerb() {
		case pb.TxnOp_PUT:
			add(i, &api.KVTxnOp{Verb: api.KVSet, Key: full, Value: op.GetValue()}, &txnRead{readPut, key, op.GetValue()})
		case pb.TxnOp_CAS:
			// Consul's cas with index 0 writes only a missing key, as the
			// contract's CAS with index 0 does.
			add(i, &api.KVTxnOp{Verb: api.KVCAS, Key: full, Value: op.GetValue(), Index: idx}, &txnRead{readPut, key, op.GetValue()})
		case pb.TxnOp_DELETE:
			add(i, &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: full}, &txnRead{kind: readDeleted, key: key})
			add(i, &api.KVTxnOp{Verb: api.KVDelete, Key: full}, nil)
		case pb.TxnOp_DELETE_CAS, pb.TxnOp_CHECK_INDEX:
			if idx == 0 {
				// Index 0 asserts that the key is absent; deleting an
				// absent key changes nothing.
				add(i, &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: full}, nil)
				continue
			}
			// check-index fails on a missing key, where Consul's
			// delete-cas would succeed.
			add(i, &api.KVTxnOp{Verb: api.KVCheckIndex, Key: full, Index: idx}, &txnRead{kind: readCheck})
			if op.GetVerb() == pb.TxnOp_DELETE_CAS {
				add(i, &api.KVTxnOp{Verb: api.KVDelete, Key: full}, nil)
				p.dels = append(p.dels, deleted{key, idx})
			}
		default:
			return nil, fmt.Errorf("op %d: unknown verb %s on %q: %w", i, op.GetVerb(), key, sdk.ErrInvalid)
		}
	}
	return p, nil
}

// read turns Consul's answer into the pairs of the PUT and CAS ops and
// the change watches must see.
func (p *plan) read(resp *api.TxnResponse) ([]*pb.KVPair, change, error) {
	ch := change{dels: p.dels}
	if len(resp.Results) != len(p.reads) {
		return nil, ch, fmt.Errorf("consul answered %d results, want %d", len(resp.Results), len(p.reads))
	}
	out := []*pb.KVPair{}
	for i, r := range p.reads {
		kv := resp.Results[i].KV
		if kv == nil {
			return nil, ch, fmt.Errorf("consul answered no pair for result %d", i)
		}
		switch r.kind {
		case readPut:
			// Consul leaves values out of write results.
			out = append(out, &pb.KVPair{Key: r.key, Value: bytes.Clone(r.value), Index: kv.ModifyIndex})
			ch.index = kv.ModifyIndex
			ch.puts = append(ch.puts, r.key)
		case readDeleted:
			if kv.ModifyIndex != 0 {
				ch.dels = append(ch.dels, deleted{r.key, kv.ModifyIndex})
			}
		}
	}
	return out, ch, nil
}

// txnError is a transaction Consul rolled back.
type txnError struct {
	what   string
	errors []string
	denied bool
}

func (e *txnError) Error() string {
	return fmt.Sprintf("%s rolled back: %s", e.what, strings.Join(e.errors, "; "))
}

// Unwrap makes a transaction an ACL token may not run an
// sdk.ErrForbidden; the callers make the others sdk.ErrConflict.
func (e *txnError) Unwrap() error {
	if e.denied {
		return sdk.ErrForbidden
	}
	return nil
}

// conflict reports whether a check failed, rather than a permission.
func (e *txnError) conflict() bool { return !e.denied }

// conn is one configuration's client of the agent, and the watches opened
// through it.
type conn struct {
	set   settings
	token string
	log   hclog.Logger
	tr    *http.Transport
	api   *api.Client
	kv    *api.KV

	// ctx ends when the conn closes, which ends its watches.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watches' goroutines

	mu      sync.Mutex // guards watches and closed; never held with a watch's mu
	watches map[*watch]struct{}
	closed  bool
}

// dial builds the client for set. It loads the TLS files but sends
// nothing.
func dial(set settings, token string, log hclog.Logger) (*conn, error) {
	tr := &http.Transport{
		// No proxy from the environment: the agent is reached directly.
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: set.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   set.timeout,
		ExpectContinueTimeout: time.Second,
	}
	if set.tls() {
		tc, err := api.SetupTLSConfig(&api.TLSConfig{
			Address:            set.serverName,
			CAFile:             set.caFile,
			CertFile:           set.certFile,
			KeyFile:            set.keyFile,
			InsecureSkipVerify: set.insecure,
		})
		if err != nil {
			return nil, fmt.Errorf("loading TLS files: %v: %w", err, sdk.ErrInvalid)
		}
		tc.MinVersion = tls.VersionTLS12
		tr.TLSClientConfig = tc
	}
	client, err := api.NewClient(&api.Config{
		Address:    set.address,
		Scheme:     set.scheme,
		Datacenter: set.datacenter,
		Token:      token,
		HttpClient: &http.Client{Transport: &transport{base: tr, token: token}},
	})
	if err != nil {
		return nil, fmt.Errorf("consul client: %v: %w", err, sdk.ErrInvalid)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{
		set: set, token: token, log: log, tr: tr, api: client, kv: client.KV(),
		ctx: ctx, cancel: cancel, watches: map[*watch]struct{}{},
	}, nil
}

// close ends the watches, waits for their goroutines and drops idle
// connections.
func (c *conn) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.tr.CloseIdleConnections()
}

// readToken returns the ACL token the settings name: token, or the
// trimmed contents of token_file.
func readToken(set settings) (string, error) {
	if set.tokenFile == "" {
		return set.token, nil
	}
	b, err := os.ReadFile(set.tokenFile)
	if err != nil {
		return "", fmt.Errorf("config: reading token_file: %v: %w", err, sdk.ErrInvalid)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("config: token_file %s is empty: %w", set.tokenFile, sdk.ErrInvalid)
	}
	if !validToken(token) {
		return "", fmt.Errorf("config: token_file %s holds control characters: %w", set.tokenFile, sdk.ErrInvalid)
	}
	return token, nil
}

// validToken reports whether token can go in an HTTP header.
func validToken(token string) bool {
	return !strings.ContainsFunc(token, func(r rune) bool { return r < ' ' || r == 0x7f })
}

// transport is the only source of the ACL token, and it records each
// answer's status code for call.
//
// api.NewClient fills what its Config leaves empty from CONSUL_HTTP_TOKEN,
// CONSUL_NAMESPACE and the like; the plugin must not depend on the
// environment, so the token header is set here from the configuration
// alone and the namespace and partition parameters (Consul Enterprise
// only, never configured here) are dropped.
type transport struct {
	base  http.RoundTripper
	token string
}

// statusKey is the context key of the *int where transport stores the
// status code of a request's answer.
type statusKey struct{}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Header.Del("X-Consul-Token")
	if t.token != "" {
		r.Header.Set("X-Consul-Token", t.token)
	}
	if q := r.URL.Query(); q.Has("ns") || q.Has("partition") {
		q.Del("ns")
		q.Del("partition")
		r.URL.RawQuery = q.Encode()
	}
	resp, err := t.base.RoundTrip(r)
	if code, ok := req.Context().Value(statusKey{}).(*int); ok && resp != nil {
		*code = resp.StatusCode
	}
	return resp, err
}

// call runs fn, one request to the agent, with a deadline of timeout and
// turns its error into one that wraps the matching sdk sentinel.
func (c *conn) call(ctx context.Context, what string, timeout time.Duration, fn func(ctx context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code := 0
	err := fn(context.WithValue(rctx, statusKey{}, &code))
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, ctx.Err())
	case rctx.Err() != nil:
		return fmt.Errorf("%s: consul store unreachable: %s did not answer within %s: %w",
			what, c.set.endpoint(), timeout, sdk.ErrUnavailable)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case code == 0:
		return fmt.Errorf("%s: consul store unreachable at %s: %v: %w", what, c.set.endpoint(), err, sdk.ErrUnavailable)
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		return fmt.Errorf("%s: consul refused the request: %v: %w", what, err, sdk.ErrInvalid)
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return fmt.Errorf("%s: consul denied the request (check the ACL token): %v: %w", what, err, sdk.ErrForbidden)
	case code == http.StatusNotFound:
		return fmt.Errorf("%s: %v: %w", what, err, sdk.ErrNotFound)
	case code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("%s: consul store at %s unavailable: %v: %w", what, c.set.endpoint(), err, sdk.ErrUnavailable)
	case code >= 200 && code < 300:
		// The answer broke off, as when the agent stops mid-response.
		return fmt.Errorf("%s: reading the answer of %s: %v: %w", what, c.set.endpoint(), err, sdk.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// txn sends ops to /v1/txn. A rolled back transaction gives a *txnError
// naming the caller's ops (origin maps Consul ops to them; nil: same).
func (c *conn) txn(ctx context.Context, what string, ops api.TxnOps, origin []int) (*api.TxnResponse, error) {
	var (
		ok   bool
		resp *api.TxnResponse
	)
	err := c.call(ctx, what, c.set.timeout, func(ctx context.Context) (err error) {
		ok, resp, _, err = c.api.Txn().Txn(ops, query(ctx))
		return err
	})
	if err != nil {
		return nil, err
	}
	if ok {
		return resp, nil
	}
	failed := &txnError{what: what}
	for _, e := range resp.Errors {
		op := e.OpIndex
		if origin != nil && op >= 0 && op < len(origin) {
			op = origin[op]
		}
		failed.errors = append(failed.errors, fmt.Sprintf("op %d: %s", op, c.unprefix(e.What)))
		if strings.Contains(e.What, "Permission denied") || strings.Contains(e.What, "ACL not found") {
			failed.denied = true
		}
	}
	return nil, failed
}

// list lists the Consul keys under full, ordered by key. With a
// waitIndex it is a blocking query that answers once the prefix's index
// passes waitIndex, or after wait.
func (c *conn) list(ctx context.Context, what, full string, waitIndex uint64, wait time.Duration) (api.KVPairs, *api.QueryMeta, error) {
	var (
		kvs  api.KVPairs
		meta *api.QueryMeta
	)
	// Consul adds up to wait/16 to a blocking query's wait.
	timeout := c.set.timeout + wait + wait/16
	err := c.call(ctx, what, timeout, func(ctx context.Context) (err error) {
		q := query(ctx)
		q.WaitIndex, q.WaitTime = waitIndex, wait
		kvs, meta, err = c.kv.List(full, q)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(kvs, func(a, b *api.KVPair) int { return strings.Compare(a.Key, b.Key) })
	return kvs, meta, nil
}

func query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

// strip turns a Consul key back into the store's key.
func (c *conn) strip(full string) string { return strings.TrimPrefix(full, c.set.prefix) }

// unprefix removes the configured prefix from the keys in a Consul
// message, so that errors name the caller's keys.
func (c *conn) unprefix(msg string) string {
	if c.set.prefix == "" {
		return msg
	}
	return strings.ReplaceAll(msg, `"`+c.set.prefix, `"`)
}

// checkKey rejects keys that Consul's HTTP API cannot address.
func (c *conn) checkKey(key string) error {
	if key == "" {
		return fmt.Errorf("empty key: %w", sdk.ErrInvalid)
	}
	if err := checkPath(c.set.prefix + key); err != nil {
		return fmt.Errorf("key %q: %v: %w", key, err, sdk.ErrInvalid)
	}
	return nil
}

func (c *conn) checkPrefix(prefix string) error {
	if err := checkPath(c.set.prefix + prefix); err != nil {
		return fmt.Errorf("prefix %q: %v: %w", prefix, err, sdk.ErrInvalid)
	}
	return nil
}

// checkPath accepts the Consul keys that survive the trip through a URL
// path: the agent's HTTP router redirects a path with an empty, "." or
// ".." segment to its cleaned form, which names another key, and the JSON
// of a transaction would mangle invalid UTF-8.
func checkPath(p string) error {
	if !utf8.ValidString(p) {
		return errors.New("not valid UTF-8")
	}
	if strings.HasPrefix(p, "/") {
		return errors.New("starts with /")
	}
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		switch {
		case seg == "" && i < len(segs)-1:
			return errors.New("has an empty path segment (//)")
		case seg == "." || seg == "..":
			return fmt.Errorf("has a %q path segment", seg)
		}
	}
	return nil
}
