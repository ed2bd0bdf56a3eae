package events

import (
	"context"
	"testing"
	"time"
)

func TestFilter(t *testing.T) {
	e := Event{Type: TypeConnect, Network: "web", NetworkID: "abc", Container: "c1"}
	tests := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{Types: []string{TypeConnect}}, true},
		{Filter{Types: []string{"endpoint"}}, true},
		{Filter{Types: []string{"endpoint.conn"}}, false},
		{Filter{Types: []string{"end"}}, false},
		{Filter{Types: []string{TypeNetworkCreate, TypeConnect}}, true},
		{Filter{Networks: []string{"abc"}}, true},
		{Filter{Networks: []string{"db"}}, false},
		{Filter{Types: []string{TypeConnect}, Containers: []string{"c2"}}, false},
	}
	// The 12-character ID that network ls and events print.
	long := Event{Type: TypeConnect, Network: "web", NetworkID: "0123456789abcdef0123"}
	for _, tt := range []struct {
		f    Filter
		want bool
	}{
		{Filter{Networks: []string{"0123456789ab"}}, true},
		{Filter{Networks: []string{"0123456789a"}}, false}, // under 12: a name, which it is not
		{Filter{Networks: []string{"123456789abc"}}, false},
	} {
		if got := tt.f.Match(long); got != tt.want {
			t.Errorf("%+v.Match(ID %s) = %v, want %v", tt.f, long.NetworkID, got, tt.want)
		}
	}
	for _, tt := range tests {
		if got := tt.f.Match(e); got != tt.want {
			t.Errorf("%+v.Match = %v, want %v", tt.f, got, tt.want)
		}
	}
}

// A subscriber that does not read costs the publisher nothing: its
// events beyond the buffer are dropped, counted for metrics, and reported
// to it (and only it) once it reads again; another subscriber gets all.
func TestStalledSubscriber(t *testing.T) {
	var counted int
	b := NewBus(func(n int) { counted += n })
	stalled := b.Subscribe(Filter{}, time.Time{}, 4)
	live := b.Subscribe(Filter{}, time.Time{}, 100)
	for range 10 {
		b.Publish(Event{Type: TypeSandboxCreate})
	}
	ctx := context.Background()
	for i := range 10 {
		if e, ok := live.Next(ctx); !ok || e.Type != TypeSandboxCreate {
			t.Fatalf("live subscriber's event %d: %+v, %v", i, e, ok)
		}
	}
	var got []Event
	for range 5 {
		e, ok := stalled.Next(ctx)
		if !ok {
			t.Fatal("stalled subscription ended")
		}
		got = append(got, e)
	}
	if got[4].Type != TypeDropped || got[4].Dropped != 6 || got[3].Type != TypeSandboxCreate {
		t.Fatalf("stalled subscriber read %+v; want 4 events then dropped=6", got)
	}
	if counted != 6 {
		t.Fatalf("drops counted: %d, want 6", counted)
	}
	b.Close()
	if _, ok := stalled.Next(ctx); ok {
		t.Fatal("Next after Close returned an event")
	}
}

func TestSince(t *testing.T) {
	b := NewBus(nil)
	t0 := time.Now()
	b.Publish(Event{Type: TypeNetworkCreate, Time: t0.Add(-time.Hour)})
	b.Publish(Event{Type: TypeNetworkDelete, Time: t0.Add(-time.Minute)})
	s := b.Subscribe(Filter{}, t0.Add(-10*time.Minute), 0)
	b.Publish(Event{Type: TypeSandboxCreate})
	ctx := context.Background()
	for _, want := range []string{TypeNetworkDelete, TypeSandboxCreate} {
		if e, _ := s.Next(ctx); e.Type != want {
			t.Fatalf("got %s, want %s", e.Type, want)
		}
	}
	s.Close()
	s.Close()
}

// The bus keeps the last historySize events and replays them oldest
// first, however many went by.
func TestHistoryKeepsTheLast(t *testing.T) {
	b := NewBus(nil)
	t0 := time.Now().Add(-time.Hour)
	const extra = 37
	for i := range historySize + extra {
		b.Publish(Event{Type: TypeReload, PID: i, Time: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	s := b.Subscribe(Filter{}, t0, MaxBuffer)
	defer s.Close()
	ctx := context.Background()
	for i := extra; i < historySize+extra; i++ {
		if e, _ := s.Next(ctx); e.PID != i {
			t.Fatalf("replayed event %d, want %d", e.PID, i)
		}
	}
}

// TestReplayLongerThanTheBuffer: a replay of more kept events than the
// subscriber's buffer gives every one of them, the newest included, and
// still leaves the buffer for what comes next: the replay was cut to the
// buffer (256) with the newest dropped.
func TestReplayLongerThanTheBuffer(t *testing.T) {
	b := NewBus(nil)
	t0 := time.Now().Add(-time.Hour)
	const kept = 400
	for i := range kept {
		b.Publish(Event{Type: TypeReload, PID: i, Time: t0.Add(time.Duration(i) * time.Millisecond)})
	}
	s := b.Subscribe(Filter{}, t0, 0) // DefaultBuffer, 256
	defer s.Close()
	for i := range DefaultBuffer {
		b.Publish(Event{Type: TypeReload, PID: kept + i})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i := range kept + DefaultBuffer {
		e, ok := s.Next(ctx)
		if !ok || e.Type != TypeReload || e.PID != i {
			t.Fatalf("event %d: %+v (ok %v), want the reload numbered %d", i, e, ok, i)
		}
	}
}
