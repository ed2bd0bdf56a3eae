// Package events is the agent's event stream: what happened to networks,
// sandboxes, endpoints, plugins and the store, published by the agent
// and read by any number of subscribers (GET /v1/events, `sandnet
// events`).
//
// A publisher never waits for a subscriber: each subscriber has a bounded
// buffer, and an event that finds it full is dropped for that subscriber
// alone and counted; the subscriber is told how many it missed (an event
// of type TypeDropped) before the next one it gets. The bus keeps the
// last events it published, so a subscriber may start in the past.
package events

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// Event types.
const (
	TypeNetworkCreate    = "network.create"
	TypeNetworkDelete    = "network.delete"
	TypeSandboxCreate    = "sandbox.create"
	TypeSandboxDelete    = "sandbox.delete"
	TypeConnect          = "endpoint.connect"
	TypeDisconnect       = "endpoint.disconnect"
	TypePluginExit       = "plugin.exit"
	TypePluginRestart    = "plugin.restart"
	TypeStoreUnreachable = "store.unreachable"
	TypeStoreBack        = "store.back"
	TypeReload           = "agent.reload"
	// TypeDropped tells a subscriber how many events it missed because
	// it read too slowly; only that subscriber gets it.
	TypeDropped = "events.dropped"
)

// Types lists every event type, for filters and documentation.
var Types = []string{TypeNetworkCreate, TypeNetworkDelete, TypeSandboxCreate, TypeSandboxDelete,
	TypeConnect, TypeDisconnect, TypePluginExit, TypePluginRestart, TypeStoreUnreachable, TypeStoreBack,
	TypeReload, TypeDropped}

// Event is one thing that happened. Fields that do not apply are empty.
type Event struct {
	Time       time.Time `json:"time"`
	Type       string    `json:"type"`
	NetworkID  string    `json:"network_id,omitempty"`
	Network    string    `json:"network,omitempty"`
	SandboxID  string    `json:"sandbox_id,omitempty"`
	Container  string    `json:"container,omitempty"`
	EndpointID string    `json:"endpoint_id,omitempty"`
	// PluginKind and Plugin name a plugin (plugin.* and store.* events).
	PluginKind string `json:"plugin_kind,omitempty"`
	Plugin     string `json:"plugin,omitempty"`
	PID        int    `json:"pid,omitempty"`
	// Message says why, in words (a plugin's exit, a store's error).
	Message string `json:"message,omitempty"`
	// Dropped is, in an events.dropped event, how many events this
	// subscriber missed.
	Dropped int `json:"dropped,omitempty"`
}

// Filter selects events: an event passes when, for every field the
// filter sets, it matches one of the values. A type value matches that
// type or, without a dot, every type of that group ("network" matches
// network.create and network.delete). TypeDropped always passes.
type Filter struct {
	Types      []string
	Networks   []string // name, ID, or the first 12 or more characters of the ID
	Containers []string
	Plugins    []string
}

// Match reports whether e passes f.
func (f Filter) Match(e Event) bool {
	if e.Type == TypeDropped {
		return true
	}
	typeOK := len(f.Types) == 0 || slices.ContainsFunc(f.Types, func(t string) bool {
		return t == e.Type || !strings.Contains(t, ".") && strings.HasPrefix(e.Type, t+".")
	})
	in := func(vals []string, have ...string) bool {
		return len(vals) == 0 || slices.ContainsFunc(vals, func(v string) bool { return v != "" && slices.Contains(have, v) })
	}
	netOK := in(f.Networks, e.Network, e.NetworkID) || e.NetworkID != "" && slices.ContainsFunc(f.Networks, func(v string) bool {
		return len(v) >= 12 && strings.HasPrefix(e.NetworkID, v) // as network ls and events print it
	})
	return typeOK && netOK && in(f.Containers, e.Container) && in(f.Plugins, e.Plugin)
}

// DefaultBuffer is a subscriber's buffer when Subscribe is given none;
// MaxBuffer bounds what one may ask for.
const (
	DefaultBuffer = 256
	MaxBuffer     = 65536
	// historySize is how many past events the bus keeps for subscribers
	// that start in the past.
	historySize = 1024
)

// Bus delivers events to subscribers. Its methods are safe for concurrent
// use; Publish never blocks on a subscriber.
type Bus struct {
	onDrop func(n int) // counts drops for metrics; may be nil

	mu   sync.Mutex // guards the fields below
	subs map[*Subscription]struct{}
	// history is a ring of the last historySize events: the oldest is
	// at next once the ring is full.
	history []Event
	next    int
	closed  bool
}

// NewBus returns a bus; onDrop, when not nil, is called with the number
// of events each drop cost a subscriber (for metrics).
func NewBus(onDrop func(n int)) *Bus {
	return &Bus{onDrop: onDrop, subs: map[*Subscription]struct{}{}}
}

// Publish sends e to every subscriber whose filter it passes, stamping
// its time when it has none.
func (b *Bus) Publish(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	dropped := 0
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	if len(b.history) < historySize {
		b.history = append(b.history, e)
	} else {
		b.history[b.next] = e
		b.next = (b.next + 1) % historySize
	}
	for s := range b.subs {
		if s.filter.Match(e) && !s.offer(e) {
			dropped++
		}
	}
	b.mu.Unlock()
	if dropped > 0 && b.onDrop != nil {
		b.onDrop(dropped)
	}
}

// Subscribe returns a subscription to the events f passes, starting with
// those the bus kept from since on (none when since is zero), with a
// buffer of size events (DefaultBuffer when 0, at most MaxBuffer).
func (b *Bus) Subscribe(f Filter, since time.Time, size int) *Subscription {
	if size <= 0 {
		size = DefaultBuffer
	}
	size = min(size, MaxBuffer)
	b.mu.Lock()
	defer b.mu.Unlock()
	// The kept events a replay starts with are all queued at once, before
	// the reader can take any: the buffer holds them beside its own size,
	// or a replay longer than the buffer lost its newest events.
	var replay []Event
	if !since.IsZero() {
		for _, e := range append(b.history[b.next:len(b.history):len(b.history)], b.history[:b.next]...) {
			if !e.Time.Before(since) && f.Match(e) {
				replay = append(replay, e)
			}
		}
	}
	s := &Subscription{bus: b, filter: f, c: make(chan Event, size+len(replay)), done: make(chan struct{})}
	if b.closed {
		s.ended = true
		close(s.done)
		return s
	}
	for _, e := range replay {
		s.offer(e)
	}
	b.subs[s] = struct{}{}
	return s
}

// Close ends every subscription; later publishes go nowhere.
func (b *Bus) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.closeLocked()
	}
}

// Subscription is one subscriber's view of the bus.
type Subscription struct {
	bus    *Bus
	filter Filter
	c      chan Event
	done   chan struct{} // closed when the subscription or the bus ends

	mu      sync.Mutex // guards the fields below
	dropped int        // events missed since the last TypeDropped
	since   time.Time  // when the first of them was missed
	ended   bool
}

// offer queues e without waiting; false: the buffer was full and e is
// counted as dropped.
func (s *Subscription) offer(e Event) bool {
	select {
	case s.c <- e:
		return true
	default:
	}
	s.mu.Lock()
	if s.dropped == 0 {
		s.since = e.Time
	}
	s.dropped++
	s.mu.Unlock()
	return false
}

// Next returns the next event, waiting for one until ctx ends or the
// subscription is closed (false). Once events were dropped, a TypeDropped
// event with their count comes as soon as the buffer is empty, so the
// subscriber learns of the gap before reading on.
func (s *Subscription) Next(ctx context.Context) (Event, bool) {
	select {
	case e := <-s.c:
		return e, true
	default:
	}
	if e, ok := s.dropNotice(); ok {
		return e, true
	}
	select {
	case e := <-s.c:
		return e, true
	case <-ctx.Done():
		return Event{}, false
	case <-s.done:
		// Deliver what was queued before the end.
		select {
		case e := <-s.c:
			return e, true
		default:
		}
		return s.dropNotice()
	}
}

func (s *Subscription) dropNotice() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dropped == 0 {
		return Event{}, false
	}
	e := Event{Time: s.since, Type: TypeDropped, Dropped: s.dropped}
	s.dropped = 0
	return e, true
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.closeLocked()
}

func (s *Subscription) closeLocked() {
	delete(s.bus.subs, s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.ended = true
		close(s.done)
	}
}
