package nspool

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Spare is a namespace made ahead of time, as the caller's Maker made it.
type Spare interface {
	// Destroy destroys a spare no create took.
	Destroy()
}

// Maker makes spares and prepares attaches in them; the caller's. The
// pool calls it from one goroutine at a time.
type Maker[S Spare] interface {
	// Make makes a plain spare.
	Make() (S, error)
	// Prepare has the driver of network netID ready, in s, the attach of
	// an endpoint; false (and no error) when the driver prepares nothing.
	Prepare(s S, netID string) (bool, error)
}

// Idle says when background work may run.
type Idle interface {
	// WaitIdle returns true once the agent has been idle for d, or at once
	// when wake fires (consuming it), false when stop closes first.
	WaitIdle(d time.Duration, stop, wake <-chan struct{}) bool
}

// quietAfter is how long after the last attach a spare may be made: more
// than the pause between a runtime's sandbox create and its connect.
const quietAfter = time.Millisecond

// Pool keeps up to size plain spares and up to size prepared for its
// target network. A nil *Pool is an empty pool that makes nothing. Its
// methods are safe for concurrent use.
type Pool[S Spare] struct {
	log   hclog.Logger
	maker Maker[S]
	idle  Idle
	size  int
	ready chan S         // plain spares; cap size
	kick  chan struct{}  // wakes the maker: a spare was taken
	stop  chan struct{}  // closed by Close
	done  sync.WaitGroup // the maker goroutine
	// hurry: a create found no spare of the kind it wanted, or took the
	// last: the next is made without waiting for a quiet moment (a burst
	// of creates would otherwise find none at all), and wakes the maker
	// if it is waiting for one.
	hurry chan struct{}

	mu       sync.Mutex // guards all following fields; a leaf
	prepared []S        // at most size, all for target
	target   string     // network ID to prepare spares for; "" for none
	barren   string     // the target whose driver prepared nothing: not asked again
	// wantPrepared: the last create wanted a prepared spare; when both
	// kinds are short, one is made first.
	wantPrepared bool
	// guess: creates without networks have been followed by a connect to
	// the target (Expect), as in Docker's flow (create, then connect), and
	// none of their prepared attaches went unused since (Missed): such a
	// create gets a spare prepared for the target.
	guess bool
}

// New starts a pool of size spares of each kind, made by maker when idle
// says so; size 0 is no pool (nil).
func New[S Spare](log hclog.Logger, size int, maker Maker[S], idle Idle) *Pool[S] {
	if size <= 0 {
		return nil
	}
	p := &Pool[S]{
		log: log, maker: maker, idle: idle, size: size,
		ready: make(chan S, size),
		kick:  make(chan struct{}, 1), hurry: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	p.done.Add(1)
	go p.fill()
	p.kick <- struct{}{}
	return p
}

// Take hands out a spare, false when there is none, and has the pool
// refilled. With netID, the create names that network first: a spare
// prepared for it comes first, and the network becomes the target.
// Without, a spare prepared for the target comes first while the pool
// guesses that a connect to it follows (Expect); a plain one otherwise.
func (p *Pool[S]) Take(netID string) (S, bool) {
	var zero S
	if p == nil {
		return zero, false
	}
	sp, ok := zero, false
	p.mu.Lock()
	stale := p.retargetLocked(netID)
	wantOne := (netID != "" || p.guess) && p.target != ""
	if n := len(p.prepared); wantOne && n > 0 {
		sp, ok, p.prepared = p.prepared[n-1], true, p.prepared[:n-1]
	}
	p.wantPrepared = wantOne && p.target != p.barren
	if p.wantPrepared && len(p.prepared) == 0 {
		p.hurryUp()
	}
	p.mu.Unlock()
	if len(stale) > 0 {
		go destroyAll(stale)
	}
	if !ok {
		select {
		case sp = <-p.ready:
			ok = true
		default:
		}
		if len(p.ready) == 0 {
			p.hurryUp()
		}
	}
	p.refill()
	return sp, ok
}

// retargetLocked makes netID, unless "", the target, and returns the
// spares prepared for the one before (of no use any more); p.mu held.
func (p *Pool[S]) retargetLocked(netID string) (stale []S) {
	if netID != "" && p.target != netID {
		stale, p.prepared, p.target = p.prepared, nil, netID
	}
	return stale
}

// Expect says that a sandbox created without networks was connected to
// network netID first: the pool prepares spares for it and hands them to
// such creates (Take("")), guessing that the next connect goes there
// too.
func (p *Pool[S]) Expect(netID string) {
	if p == nil || netID == "" {
		return
	}
	p.mu.Lock()
	stale := p.retargetLocked(netID)
	p.guess = true
	p.mu.Unlock()
	if len(stale) > 0 {
		go destroyAll(stale)
	}
	p.refill()
}

// Missed says that a prepared spare a create without networks took went
// unused (the sandbox was deleted, or not connected in time): such
// creates get plain spares until the next Expect.
func (p *Pool[S]) Missed() {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.guess = false
	p.mu.Unlock()
}

// Forget stops preparing spares for network netID and destroys those
// prepared for it: the network is going away.
func (p *Pool[S]) Forget(netID string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	var gone []S
	if p.target == netID {
		gone, p.prepared, p.target, p.guess = p.prepared, nil, "", false
	}
	p.mu.Unlock()
	destroyAll(gone)
}

// Len is the number of spares the pool holds, of both kinds.
func (p *Pool[S]) Len() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.ready) + len(p.prepared)
}

// Prepared returns the spares held prepared for the target; the pool
// still owns them.
func (p *Pool[S]) Prepared() []S {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]S(nil), p.prepared...)
}

// Target is the network spares are prepared for: "" when none, or when
// its driver prepared nothing when asked.
func (p *Pool[S]) Target() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stateLocked().effectiveTarget()
}

// Close stops the pool and destroys the spares it holds.
func (p *Pool[S]) Close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
	for {
		select {
		case sp := <-p.ready:
			sp.Destroy()
		default:
			p.mu.Lock()
			prepared := p.prepared
			p.prepared = nil
			p.mu.Unlock()
			destroyAll(prepared)
			return
		}
	}
}

// hurryUp has the next spare made at once.
func (p *Pool[S]) hurryUp() {
	select {
	case p.hurry <- struct{}{}:
	default:
	}
}

// refill wakes the goroutine that makes spares.
func (p *Pool[S]) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// destroyAll destroys spares no create took.
func destroyAll[S Spare](sps []S) {
	for _, sp := range sps {
		sp.Destroy()
	}
}
