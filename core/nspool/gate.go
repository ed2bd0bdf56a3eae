package nspool

import (
	"sync"
	"time"
)

// Gate tracks the attaches in flight (sandbox creates and connects), so
// that background kernel work waits for a moment without one. Making a
// network namespace is half a millisecond of kernel work that nothing
// preempts on a kernel without full preemption, whatever the priority of
// the thread doing it: run beside an attach, it holds up whichever of
// the attach's wake-ups lands on its CPU (measured: the driver received
// its request 0.4-0.5 ms later with spares refilled during attaches).
//
// A Gate is the Idle a Pool waits on. Its methods are safe for
// concurrent use.
type Gate struct {
	mu      sync.Mutex    // guards all following fields
	active  int           // attaches in flight
	last    time.Time     // when the last attach ended
	changed chan struct{} // closed and replaced on every Enter and Leave
}

// NewGate returns a gate with no attach in flight.
func NewGate() *Gate { return &Gate{changed: make(chan struct{})} }

// Enter marks an attach in flight; Leave, its end. Every Enter must be
// followed by one Leave.
func (g *Gate) Enter() { g.update(1) }

// Leave marks the end of an attach Enter marked.
func (g *Gate) Leave() { g.update(-1) }

func (g *Gate) update(d int) {
	g.mu.Lock()
	g.active += d
	if d < 0 {
		g.last = time.Now()
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// WaitIdle returns true once no attach has been in flight for d, or at
// once when wake fires (which it consumes: whoever sent on it wants the
// work done now), false when stop closes first.
func (g *Gate) WaitIdle(d time.Duration, stop, wake <-chan struct{}) bool {
	for {
		g.mu.Lock()
		active, left, changed := g.active, d-time.Since(g.last), g.changed
		g.mu.Unlock()
		if active == 0 && left <= 0 {
			return true
		}
		var timer <-chan time.Time
		if active == 0 {
			timer = time.After(left)
		}
		select {
		case <-stop:
			return false
		case <-wake:
			return true
		case <-changed:
		case <-timer:
		}
	}
}
