package etcdstore

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Watch streams the changes under prefix. It reads the cluster's current
// revision, which READY stands for, and watches from the revision after
// it: every change committed after READY arrives, in commit order, and
// none before. The channel closes when ctx ends or etcd ends the watch
// (a compaction past the watch's revision, say); the caller watches again.
// A reader that falls behind blocks nobody: the etcd client buffers the
// watch's events.
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
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := cli.Watch(wctx, key, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	out := make(chan *pb.WatchEvent, 64)
	go func() {
		defer close(out)
		defer wcancel()
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
		for wr := range wch {
			if wr.Err() != nil {
				return
			}
			for _, e := range wr.Events {
				ev := &pb.WatchEvent{Type: pb.WatchEvent_PUT, Kv: &pb.KVPair{
					Key: string(e.Kv.Key[len(set.prefix):]), Value: e.Kv.Value, Index: uint64(e.Kv.ModRevision),
				}}
				if e.Type == clientv3.EventTypeDelete {
					ev.Type, ev.Kv.Value = pb.WatchEvent_DELETE, nil
				}
				if !send(ev) {
					return
				}
			}
		}
	}()
	return out, nil
}
