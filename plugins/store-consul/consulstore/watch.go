package consulstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// watchWait is how long one blocking query waits for a change. Consul
// caps it at 10 minutes; an answer with no change costs one listing.
const watchWait = 5 * time.Minute

// A watch follows one prefix with blocking queries. Its goroutine (poll)
// is the only sender on ch; it lists the prefix, diffs the listing against
// view and sends the differences, and closes ch when it ends.
//
// The events of one listing come as PUTs in ModifyIndex order, then
// DELETEs in key order: Consul does not say when a key was deleted, so a
// DELETE carries the index of the listing that first missed the key, which
// is at or after the delete.
type watch struct {
	prefix string // the caller's prefix
	full   string // the prefix in Consul
	ch     chan *pb.WatchEvent
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards the fields below. Writers wait on changed (see settle).
	mu      sync.Mutex
	view    map[string]uint64 // key → ModifyIndex, as last sent
	index   uint64            // X-Consul-Index of the listing view is from
	changed chan struct{}     // closed and replaced when view changes or the watch ends
	failing bool              // the last query failed: writers do not wait for the watch
	done    bool
}

// Watch lists prefix, sends READY, and then sends the changes every
// later listing shows. The listing before READY sets the baseline: a
// change committed before it is not sent.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	if err := c.checkPrefix(prefix); err != nil {
		return nil, err
	}
	what := fmt.Sprintf("watch %q", prefix)
	full := c.set.prefix + prefix
	kvs, meta, err := c.list(ctx, what, full, 0, 0)
	if err != nil {
		return nil, err
	}
	w := &watch{
		prefix:  prefix,
		full:    full,
		ch:      make(chan *pb.WatchEvent, max(s.watchBuffer, 1)),
		view:    make(map[string]uint64, len(kvs)),
		index:   meta.LastIndex,
		changed: make(chan struct{}),
	}
	for _, kv := range kvs {
		w.view[c.strip(kv.Key)] = kv.ModifyIndex
	}
	w.ch <- &pb.WatchEvent{Type: pb.WatchEvent_READY}
	w.ctx, w.cancel = context.WithCancel(ctx)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		w.cancel()
		return nil, errUnconfigured
	}
	c.watches[w] = struct{}{}
	c.wg.Add(1)
	c.mu.Unlock()
	// Closing the conn (Configure, Close) ends the watch too.
	stop := context.AfterFunc(c.ctx, w.cancel)
	go func() {
		defer c.wg.Done()
		defer stop()
		c.poll(w, s.retryMin, s.retryMax)
	}()
	return w.ch, nil
}

// poll runs w's blocking queries until its context ends, the watch falls
// behind or the agent refuses it for good, and then ends the watch.
//
// It follows Consul's rules for blocking queries: an index that goes
// backwards (a snapshot restore, an agent that restarted, tombstones
// reaped) resets the next query to index 0, an index of 0 is waited on as
// 1, and after an error the next query does not block either, since the
// agent that answers may be a new one with lower indexes. An agent that
// does not answer is retried with jittered exponential backoff between
// retryMin and retryMax; the listing after it recovers brings the watch
// up to date.
func (c *conn) poll(w *watch, retryMin, retryMax time.Duration) {
	defer c.drop(w)
	waitIndex := max(w.index, 1)
	var backoff time.Duration
	what := fmt.Sprintf("watch %q", w.prefix)
	for {
		kvs, meta, err := c.list(w.ctx, what, w.full, waitIndex, watchWait)
		if w.ctx.Err() != nil {
			return
		}
		if err != nil {
			if !errors.Is(err, sdk.ErrUnavailable) {
				c.log.Error("watch ended", "prefix", w.prefix, "error", err)
				return
			}
			if backoff == 0 {
				c.log.Warn("watch lost the consul agent; retrying", "prefix", w.prefix, "error", err)
				w.mu.Lock()
				w.failing = true
				w.signal()
				w.mu.Unlock()
			}
			backoff = min(max(2*backoff, retryMin), retryMax)
			// Full jitter, so the watches of many hosts do not return at once.
			t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
			select {
			case <-w.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			waitIndex = 0
			continue
		}
		if backoff != 0 {
			c.log.Info("watch reached the consul agent again", "prefix", w.prefix)
			backoff = 0
		}
		if !c.apply(w, kvs, meta.LastIndex) {
			c.log.Warn("closed a watch that fell behind; its reader must watch again",
				"prefix", w.prefix, "buffer", cap(w.ch))
			return
		}
		if meta.LastIndex < waitIndex {
			waitIndex = 0
		} else {
			waitIndex = max(meta.LastIndex, 1)
		}
	}
}

// apply diffs a listing taken at index against w.view and sends the
// differences. It reports false when w's buffer is full, after sending
// what fit.
func (c *conn) apply(w *watch, kvs api.KVPairs, index uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Writers waiting for this listing wake up once its events are sent.
	defer w.signal()
	var puts, dels []*pb.WatchEvent
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs {
		key := c.strip(kv.Key)
		seen[key] = true
		if old, ok := w.view[key]; ok && old == kv.ModifyIndex {
			continue
		}
		w.view[key] = kv.ModifyIndex
		puts = append(puts, &pb.WatchEvent{
			Type: pb.WatchEvent_PUT,
			Kv:   &pb.KVPair{Key: key, Value: kv.Value, Index: kv.ModifyIndex},
		})
	}
	for key := range w.view {
		if !seen[key] {
			delete(w.view, key)
			dels = append(dels, &pb.WatchEvent{Type: pb.WatchEvent_DELETE, Kv: &pb.KVPair{Key: key, Index: index}})
		}
	}
	slices.SortFunc(puts, func(a, b *pb.WatchEvent) int {
		return cmp.Or(cmp.Compare(a.Kv.Index, b.Kv.Index), strings.Compare(a.Kv.Key, b.Kv.Key))
	})
	slices.SortFunc(dels, func(a, b *pb.WatchEvent) int { return strings.Compare(a.Kv.Key, b.Kv.Key) })
	w.index = index
	w.failing = false
	for _, ev := range slices.Concat(puts, dels) {
		select {
		case w.ch <- ev:
		default:
			return false
		}
	}
	return true
}

// drop ends w: writers stop waiting for it, the conn forgets it, and its
// channel closes. Only w's own goroutine calls it, after its last send.
func (c *conn) drop(w *watch) {
	w.cancel()
	w.mu.Lock()
	w.done = true
	w.signal()
	w.mu.Unlock()
	c.mu.Lock()
	delete(c.watches, w)
	c.mu.Unlock()
	close(w.ch)
}

// signal wakes the writers waiting on w. w.mu must be held.
func (w *watch) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// change is what a write did, as far as watches care: the keys it put at
// index, and the keys it deleted with the index each had.
type change struct {
	index uint64
	puts  []string
	dels  []deleted
}

type deleted struct {
	key   string
	index uint64
}

// touches reports whether ch changed a key under prefix.
func (ch change) touches(prefix string) bool {
	for _, k := range ch.puts {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	for _, d := range ch.dels {
		if strings.HasPrefix(d.key, prefix) {
			return true
		}
	}
	return false
}

// seen reports whether w's view shows ch. w.mu must be held.
func (w *watch) seen(ch change) bool {
	for _, k := range ch.puts {
		// A listing at index ch.index or later was taken after the write.
		if strings.HasPrefix(k, w.prefix) && w.index < ch.index {
			return false
		}
	}
	for _, d := range ch.dels {
		if i, ok := w.view[d.key]; ok && i <= d.index && strings.HasPrefix(d.key, w.prefix) {
			return false
		}
	}
	return true
}

// settle waits until every watch that ch touched has sent its events for
// it, so that a caller who writes again cannot make a watch miss this
// write by coalescing the two. It waits for the watches' blocking queries,
// never for their readers (a full watch is closed), not for a watch whose
// agent does not answer, and at most the request timeout: the write is
// done either way.
func (c *conn) settle(ctx context.Context, ch change) {
	c.mu.Lock()
	var ws []*watch
	for w := range c.watches {
		if ch.touches(w.prefix) {
			ws = append(ws, w)
		}
	}
	c.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	timer := time.NewTimer(c.set.timeout)
	defer timer.Stop()
	for _, w := range ws {
		for {
			w.mu.Lock()
			ok := w.done || w.failing || w.ctx.Err() != nil || w.seen(ch)
			changed := w.changed
			w.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-changed:
			case <-ctx.Done():
				return
			case <-w.ctx.Done():
			case <-timer.C:
				c.log.Debug("a watch did not see a write in time", "prefix", w.prefix)
				return
			}
		}
	}
}
