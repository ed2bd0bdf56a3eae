package controller

import (
	"sync"
	"time"
)

// quietGate tracks the attaches in flight (sandbox creates and connects),
// so that background kernel work waits for a moment without one. Making a
// network namespace is half a millisecond of kernel work that nothing
// preempts on a kernel without full preemption, whatever the priority of
// the thread doing it: run beside an attach, it holds up whichever of
// the attach's wake-ups lands on its CPU (measured: the driver received
// its request 0.4-0.5 ms later with spares refilled during attaches).
type quietGate struct {
	mu      sync.Mutex
	active  int
	last    time.Time     // when the last attach ended
	changed chan struct{} // closed and replaced on every enter and leave
}

func newQuietGate() *quietGate { return &quietGate{changed: make(chan struct{})} }

// enter marks an attach in flight; leave, its end.
func (g *quietGate) enter() { g.update(1) }
func (g *quietGate) leave() { g.update(-1) }

func (g *quietGate) update(d int) {
	g.mu.Lock()
	g.active += d
	if d < 0 {
		g.last = time.Now()
	}
	close(g.changed)
	g.changed = make(chan struct{})
	g.mu.Unlock()
}

// wait returns true once no attach has been in flight for d, or at once
// when wake fires (which it consumes: whoever sent on it wants the work
// done now), false when stop closes first.
func (g *quietGate) wait(d time.Duration, stop <-chan struct{}, wake <-chan struct{}) bool {
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
