package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

func testWatch(t *testing.T, h *harness) {
	k := func(s string) string { return h.key(s) }
	// A change made before the watch is not delivered.
	h.put(k("w/pre"), []byte("before the watch"))

	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	w1 := h.watch(ctx, k("w/"))
	w2 := h.watch(ctx, k("w/"))
	other := h.watch(ctx, k("o/"))

	var want, wantOther [][]*pb.WatchEvent
	step := func(evs ...*pb.WatchEvent) { want = append(want, evs) }

	step(putEvent(h.put(k("w/a"), []byte("1"))))
	h.put(k("wx"), []byte("sibling prefix"))
	h.put(k("w"), []byte("the prefix without its slash"))
	wantOther = append(wantOther, []*pb.WatchEvent{putEvent(h.put(k("o/a"), []byte("o1")))})
	step(putEvent(h.put(k("w/b"), []byte("2"))))
	step(putEvent(h.put(k("w/a"), []byte("3"))))
	h.del(k("w/b"))
	step(deleteEvent(k("w/b")))
	step(putEvent(h.put(k("w/d/deep"), []byte("4"))))

	// The events of one transaction come in any order among themselves.
	res, err := h.s.Txn(h.ctx, []*pb.TxnOp{
		{Verb: pb.TxnOp_PUT, Key: k("w/c"), Value: []byte("5")},
		{Verb: pb.TxnOp_DELETE, Key: k("w/a")},
		{Verb: pb.TxnOp_PUT, Key: k("o/b"), Value: []byte("o2")},
	})
	if err != nil || len(res) != 2 {
		t.Fatalf("Txn = %d results, %v; want 2 results", len(res), err)
	}
	step(putEvent(res[0]), deleteEvent(k("w/a")))
	wantOther = append(wantOther, []*pb.WatchEvent{putEvent(res[1])})

	if err := h.s.DeleteTree(h.ctx, k("w/d/")); err != nil {
		t.Fatalf("DeleteTree: %v", err)
	}
	step(deleteEvent(k("w/d/deep")))
	h.put(k("wx/after"), []byte("sibling again"))
	// The last event proves nothing for another prefix came before it.
	step(putEvent(h.put(k("w/end"), []byte("end"))))
	wantOther = append(wantOther, []*pb.WatchEvent{putEvent(h.put(k("o/end"), []byte("end")))})

	h.expectEvents(w1, want...)
	h.expectEvents(w2, want...)
	h.expectEvents(other, wantOther...)
}

func testWatchCancel(t *testing.T, h *harness) {
	base := h.key("wc/")
	ctx, cancel := context.WithCancel(h.ctx)
	events := h.watch(ctx, base)
	h.put(base+"a", []byte("1"))
	cancel()
	waitClosed(t, events)

	// A watch that is gone holds up no writer.
	for i := range 100 {
		h.put(fmt.Sprintf("%safter/%d", base, i), []byte("x"))
	}

	// Watching with a context already done fails or closes at once.
	done, cancelDone := context.WithCancel(h.ctx)
	cancelDone()
	if ch, err := h.s.Watch(done, base); err == nil {
		waitClosed(t, ch)
	}
}

// testWatchSlowConsumer opens a watch that nobody reads while writing
// more events than a small buffer holds. Writers must not block on it; the
// watch then either holds every event in order or is closed after an
// in-order prefix of them, and the reader is expected to watch again.
func testWatchSlowConsumer(t *testing.T, h *harness) {
	const writes = 300
	base := h.key("ws/")
	ctx, cancel := context.WithCancel(h.ctx)
	defer cancel()
	events := h.watch(ctx, base)

	// The writes run on their own goroutine so that a store whose writers
	// block on the watch fails here instead of hanging the test binary.
	want := make([]*pb.WatchEvent, writes)
	wrote := make(chan error, 1)
	go func() {
		for i := range writes {
			k := fmt.Sprintf("%s%03d", base, i)
			kv, err := h.s.Put(h.ctx, k, []byte("x"))
			if err != nil {
				wrote <- fmt.Errorf("Put(%q): %w", k, err)
				return
			}
			want[i] = putEvent(kv)
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(writeTimeout):
		t.Fatalf("%d writes did not finish within %s while a watch was not being read: writers must not block on a watcher", writes, writeTimeout)
	}

	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for i := range want {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Logf("watch closed after %d of %d events", i, writes)
				return
			}
			if !eventMatches(ev, want[i]) {
				t.Fatalf("event %d = %s, want %s", i, fmtEvent(ev), fmtEvent(want[i]))
			}
		case <-timer.C:
			t.Fatalf("watch neither delivered event %d of %d nor closed within %s", i, writes, eventTimeout)
		}
	}
}

// watch starts a watch on prefix and consumes its READY event.
func (h *harness) watch(ctx context.Context, prefix string) <-chan *pb.WatchEvent {
	h.t.Helper()
	ch, err := h.s.Watch(ctx, prefix)
	if err != nil {
		h.t.Fatalf("Watch(%q): %v", prefix, err)
	}
	select {
	case ev, ok := <-ch:
		if !ok {
			h.t.Fatalf("Watch(%q) closed before READY", prefix)
		}
		if ev.GetType() != pb.WatchEvent_READY {
			h.t.Fatalf("Watch(%q) first event = %s, want READY", prefix, fmtEvent(ev))
		}
	case <-time.After(eventTimeout):
		h.t.Fatalf("Watch(%q) sent no READY within %s", prefix, eventTimeout)
	}
	return ch
}

// expectEvents receives the events of each step in turn; the events of
// one step may arrive in any order among themselves.
func (h *harness) expectEvents(ch <-chan *pb.WatchEvent, steps ...[]*pb.WatchEvent) {
	h.t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	n := 0
	for _, step := range steps {
		pending := append([]*pb.WatchEvent(nil), step...)
		for len(pending) > 0 {
			var ev *pb.WatchEvent
			select {
			case e, ok := <-ch:
				if !ok {
					h.t.Fatalf("watch closed after %d events, want %s next", n, fmtEvents(pending))
				}
				ev = e
			case <-timer.C:
				h.t.Fatalf("no event within %s after %d events, want %s next", eventTimeout, n, fmtEvents(pending))
			}
			i := slices.IndexFunc(pending, func(want *pb.WatchEvent) bool { return eventMatches(ev, want) })
			if i < 0 {
				h.t.Fatalf("event %d = %s, want one of %s", n, fmtEvent(ev), fmtEvents(pending))
			}
			pending = append(pending[:i], pending[i+1:]...)
			n++
		}
	}
}

// waitClosed drains ch and fails unless it is closed in time.
func waitClosed(t *testing.T, ch <-chan *pb.WatchEvent) {
	t.Helper()
	timer := time.NewTimer(eventTimeout)
	defer timer.Stop()
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timer.C:
			t.Fatalf("watch channel not closed within %s of its context ending", eventTimeout)
		}
	}
}

func putEvent(kv *pb.KVPair) *pb.WatchEvent {
	return &pb.WatchEvent{Type: pb.WatchEvent_PUT, Kv: kv}
}

func deleteEvent(key string) *pb.WatchEvent {
	return &pb.WatchEvent{Type: pb.WatchEvent_DELETE, Kv: &pb.KVPair{Key: key}}
}

// eventMatches reports whether got is want: same type and key, and for a
// PUT the same value and index; a DELETE carries no value.
func eventMatches(got, want *pb.WatchEvent) bool {
	if got.GetType() != want.GetType() || got.GetKv().GetKey() != want.GetKv().GetKey() {
		return false
	}
	if want.GetType() == pb.WatchEvent_DELETE {
		return len(got.GetKv().GetValue()) == 0
	}
	return bytes.Equal(got.GetKv().GetValue(), want.GetKv().GetValue()) && got.GetKv().GetIndex() == want.GetKv().GetIndex()
}

func fmtEvent(ev *pb.WatchEvent) string {
	if ev == nil {
		return "<nil>"
	}
	return ev.GetType().String() + fmtKV(ev.GetKv())
}

func fmtEvents(evs []*pb.WatchEvent) string {
	s := make([]string, len(evs))
	for i, ev := range evs {
		s[i] = fmtEvent(ev)
	}
	return "[" + strings.Join(s, " ") + "]"
}
