package nspool

// state is what the choice of the next spare depends on: a snapshot of
// the pool.
type state struct {
	size         int    // spares of each kind the pool keeps
	plain        int    // plain spares held
	prepared     int    // spares held prepared for target
	target       string // the network spares are prepared for; "" for none
	barren       string // a target whose driver prepared nothing
	wantPrepared bool   // the last create wanted a prepared spare
}

// effectiveTarget is the network to prepare spares for: "" when none, or
// when its driver prepared nothing when asked.
func (s state) effectiveTarget() string {
	if s.target == s.barren {
		return ""
	}
	return s.target
}

// want is a spare to make: plain, or prepared for network target; the
// zero want is none.
type want struct {
	plain  bool
	target string
}

func (w want) none() bool { return !w.plain && w.target == "" }

// next says what a pool in state s lacks most: a plain spare, or one
// prepared for its target (a plain one first, unless the last create
// wanted a prepared one); none when it is full.
func next(s state) want {
	target := s.effectiveTarget()
	needPlain := s.plain < s.size
	needPrepared := target != "" && s.prepared < s.size
	switch {
	case needPrepared && (!needPlain || s.wantPrepared):
		return want{target: target}
	case needPlain:
		return want{plain: true}
	}
	return want{}
}

// stateLocked is the pool's state; p.mu held.
func (p *Pool[S]) stateLocked() state {
	return state{
		size: p.size, plain: len(p.ready), prepared: len(p.prepared),
		target: p.target, barren: p.barren, wantPrepared: p.wantPrepared,
	}
}

// next is what the pool lacks most now.
func (p *Pool[S]) next() want {
	p.mu.Lock()
	defer p.mu.Unlock()
	return next(p.stateLocked())
}

// fill is the maker goroutine: woken by a take, it makes what the pool
// lacks, one spare at a time, each at a quiet moment unless hurried,
// until the pool is full or a spare could not be made or kept.
func (p *Pool[S]) fill() {
	defer p.done.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		for !p.next().none() {
			if !p.waitTurn() {
				return
			}
			w := p.next() // what a create took meanwhile counts
			if w.none() {
				continue
			}
			if !p.makeOne(w) {
				break
			}
		}
	}
}

// waitTurn waits for a quiet moment, or none when hurried; false when
// the pool is closing.
func (p *Pool[S]) waitTurn() bool {
	select {
	case <-p.hurry:
		return true
	default:
		return p.idle.WaitIdle(quietAfter, p.stop, p.hurry)
	}
}

// makeOne makes the spare w asks for and keeps it; false when it could
// not be made or kept, and the maker waits for the next take.
func (p *Pool[S]) makeOne(w want) bool {
	sp, err := p.maker.Make()
	if err != nil {
		p.log.Warn("making a namespace ahead of time", "error", err)
		return false
	}
	if w.plain {
		p.ready <- sp // only the maker adds: there is room
		return true
	}
	return p.prepare(sp, w.target)
}

// prepare has the attach to network target prepared in the plain spare
// sp and keeps it; false when it was of no use. A target whose driver
// prepares nothing (or fails) is marked barren: not asked again until
// another network is the target; the spare is kept as a plain one when
// nothing was prepared in it and there is room.
func (p *Pool[S]) prepare(sp S, target string) bool {
	ok, err := p.maker.Prepare(sp, target)
	if err != nil || !ok {
		p.mu.Lock()
		p.barren = target
		p.mu.Unlock()
		if err != nil {
			p.log.Warn("preparing an attach ahead of time", "network", shortID(target), "error", err)
		}
		if err == nil && len(p.ready) < cap(p.ready) {
			p.ready <- sp // nothing in it: a plain spare
			return true
		}
		sp.Destroy()
		return false
	}
	p.mu.Lock()
	keep := p.target == target && len(p.prepared) < p.size
	if keep {
		p.prepared = append(p.prepared, sp)
	}
	p.mu.Unlock()
	if !keep {
		sp.Destroy() // the target changed meanwhile
	}
	return keep
}

// shortID is an ID as logs show it.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
