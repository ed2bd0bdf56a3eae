package boltstore

import (
	"context"
	"strings"
	"sync"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// hub fans committed events out to watchers. Sends never block: a watcher
// whose buffer is full is closed, so one stalled reader cannot hold up the
// writers, and the reader is expected to watch again.
type hub struct {
	mu       sync.Mutex // guards watchers and every send on or close of a watcher's channel
	watchers map[*watcher]struct{}
}

type watcher struct {
	prefix string
	ch     chan *pb.WatchEvent
	// stop unregisters the context.AfterFunc that removes the watcher.
	stop func() bool
}

// add registers a watcher on prefix whose channel holds buffer events,
// READY the first of them, and removes it when ctx ends.
func (h *hub) add(ctx context.Context, prefix string, buffer int) <-chan *pb.WatchEvent {
	w := &watcher{prefix: prefix, ch: make(chan *pb.WatchEvent, max(buffer, 1))}
	w.ch <- &pb.WatchEvent{Type: pb.WatchEvent_READY}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watchers == nil {
		h.watchers = make(map[*watcher]struct{})
	}
	h.watchers[w] = struct{}{}
	// The function runs on its own goroutine, so it waits for h.mu and
	// finds w registered even when ctx is already done.
	w.stop = context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.drop(w)
	})
	return w.ch
}

// publish delivers evs, in order, to every watcher whose prefix they match.
// It reports how many watchers it closed because they were full.
func (h *hub) publish(evs []*pb.WatchEvent) (dropped int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		for _, ev := range evs {
			if !strings.HasPrefix(ev.GetKv().GetKey(), w.prefix) {
				continue
			}
			select {
			case w.ch <- ev:
				continue
			default:
			}
			h.drop(w)
			dropped++
			break
		}
	}
	return dropped
}

// closeAll closes every watcher, as the store closes.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		h.drop(w)
	}
}

// drop closes and forgets w if it is still registered. h.mu must be held.
func (h *hub) drop(w *watcher) {
	if _, ok := h.watchers[w]; !ok {
		return
	}
	delete(h.watchers, w)
	close(w.ch)
	w.stop()
}
