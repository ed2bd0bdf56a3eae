package etcdstore

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Watch streams the changes under prefix. It reads the cluster's current
// revision, which READY stands for, and watches from the revision after
// it: every change committed after READY arrives, in commit order, and
// none before. The channel closes when ctx ends or etcd ends the watch
// (a compaction past the watch's revision, say), and when etcd is another
// store than the one the watch began on (watchReplaced): the caller
// watches again. A reader that falls behind blocks nobody: the etcd
// client buffers the watch's events.
func (s *Store) Watch(ctx context.Context, prefix string) (<-chan *pb.WatchEvent, error) {
	cli, set, err := s.client()
	if err != nil {
		return nil, err
	}
	key := set.prefix + prefix
	rctx, cancel := context.WithTimeout(ctx, set.timeout)
	resp, err := cli.Get(rctx, key, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("starting watch on %q: %w", prefix, backendErr(err))
	}
	w := &watch{cli: cli, set: set, key: key, cluster: resp.Header.ClusterId, last: resp.Header.Revision}
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := cli.Watch(wctx, key, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	out := make(chan *pb.WatchEvent, 64)
	go func() {
		defer close(out)
		defer wcancel()
		w.run(ctx, wch, out)
	}()
	return out, nil
}

// watchCheckInterval is how often a watch asks etcd whether it is still
// the store the watch began on.
var watchCheckInterval = 5 * time.Second

// watch is one Watch's stream: what it began on, and the last revision
// it saw.
type watch struct {
	cli     *clientv3.Client
	set     settings
	key     string
	cluster uint64 // the cluster ID at the start
	last    int64  // the highest revision seen
}

// run sends READY, then the events of wch, until one of them ends.
func (w *watch) run(ctx context.Context, wch clientv3.WatchChan, out chan<- *pb.WatchEvent) {
	send := func(ev *pb.WatchEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !send(&pb.WatchEvent{Type: pb.WatchEvent_READY}) {
		return
	}
	tick := time.NewTicker(watchCheckInterval)
	defer tick.Stop()
	for {
		var wr clientv3.WatchResponse
		var ok bool
		select {
		case wr, ok = <-wch:
		case <-tick.C:
			if w.replaced(ctx) {
				return
			}
			continue
		case <-ctx.Done():
			return
		}
		if !ok || wr.Err() != nil {
			return
		}
		for _, e := range wr.Events {
			w.last = max(w.last, e.Kv.ModRevision)
			ev := &pb.WatchEvent{Type: pb.WatchEvent_PUT, Kv: &pb.KVPair{
				Key: string(e.Kv.Key[len(w.set.prefix):]), Value: e.Kv.Value, Index: uint64(e.Kv.ModRevision),
			}}
			if e.Type == clientv3.EventTypeDelete {
				ev.Type, ev.Kv.Value = pb.WatchEvent_DELETE, nil
			}
			if !send(ev) {
				return
			}
		}
	}
}

// replaced reports whether etcd is now another store than the one the
// watch began on: another cluster (an etcd started again with an empty
// data directory), or a revision below one the watch saw (restored from
// an older backup). The etcd client resumes a watch from its next
// revision on reconnecting, with no error; on such a store, nothing it
// commits until its revision passes that one would ever arrive. An etcd
// that does not answer is not replaced: the watch itself waits for it.
func (w *watch) replaced(ctx context.Context) bool {
	rctx, cancel := context.WithTimeout(ctx, w.set.timeout)
	defer cancel()
	resp, err := w.cli.Get(rctx, w.key, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return false
	}
	return resp.Header.ClusterId != w.cluster || resp.Header.Revision < w.last
}
