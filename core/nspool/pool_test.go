package nspool

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakeSpare is a spare with no namespace behind it.
type fakeSpare struct {
	id        int
	net       string // prepared for; "" for plain
	m         *fakeMaker
	destroyed bool
}

func (s *fakeSpare) Destroy() {
	s.m.mu.Lock()
	defer s.m.mu.Unlock()
	if s.destroyed {
		panic("destroyed twice")
	}
	s.destroyed = true
	s.m.live--
}

// fakeMaker makes fake spares and counts them; its driver prepares
// attaches unless told otherwise.
type fakeMaker struct {
	mu       sync.Mutex
	made     int
	live     int             // made and not destroyed
	asked    map[string]int  // Prepare calls by network
	shy      map[string]bool // networks whose driver prepares nothing
	failMake bool
}

func newFakeMaker() *fakeMaker {
	return &fakeMaker{asked: map[string]int{}, shy: map[string]bool{}}
}

func (m *fakeMaker) Make() (*fakeSpare, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failMake {
		return nil, errors.New("no namespaces today")
	}
	m.made++
	m.live++
	return &fakeSpare{id: m.made, m: m}, nil
}

func (m *fakeMaker) Prepare(s *fakeSpare, netID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked[netID]++
	if m.shy[netID] {
		return false, nil
	}
	s.net = netID
	return true, nil
}

func (m *fakeMaker) counts() (made, live int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.made, m.live
}

// poolTest runs f in a bubble with a pool of size 2 over a fake maker,
// and checks that closing the pool destroys every spare it made.
func poolTest(t *testing.T, f func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, g *Gate)) {
	t.Helper()
	poolTestWith(t, newFakeMaker(), f)
}

// poolTestWith is poolTest over m, set up as the test needs before the
// pool's maker starts (it starts making at once).
func poolTestWith(t *testing.T, m *fakeMaker, f func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, g *Gate)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		g := NewGate()
		p := New(hclog.NewNullLogger(), 2, m, g)
		defer func() { // also after a failure: the bubble must end
			p.Close()
			if _, live := m.counts(); live != 0 {
				t.Errorf("%d spares left after Close", live)
			}
		}()
		f(t, p, m, g)
	})
}

// settle lets the maker run until it is blocked, time moving on.
func settle() {
	time.Sleep(time.Second)
	synctest.Wait()
}

func take(t *testing.T, p *Pool[*fakeSpare], netID string) *fakeSpare {
	t.Helper()
	sp, ok := p.Take(netID)
	if !ok {
		t.Fatalf("Take(%q): the pool was empty", netID)
	}
	return sp
}

func TestPoolFillsAndRefills(t *testing.T) {
	poolTest(t, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, _ *Gate) {
		settle()
		if n := p.Len(); n != 2 {
			t.Fatalf("%d spares after start; want 2", n)
		}
		sp := take(t, p, "")
		if sp.net != "" {
			t.Fatalf("a create without networks got a spare prepared for %s", sp.net)
		}
		sp.Destroy() // as a create would use it
		settle()
		if made, _ := m.counts(); made != 3 || p.Len() != 2 {
			t.Fatalf("after one take: %d made, %d held; want 3, 2", made, p.Len())
		}
		if tgt := p.Target(); tgt != "" {
			t.Fatalf("target %q without a create naming a network", tgt)
		}
	})
}

// A create naming a network first makes it the target: the next such
// create gets a prepared spare, one without networks a plain one, and a
// create naming another network has the first's prepared spares
// destroyed.
func TestPoolPreparesForTarget(t *testing.T) {
	poolTest(t, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, _ *Gate) {
		settle()
		take(t, p, "red").Destroy() // none prepared yet: a plain one
		settle()
		if got := len(p.Prepared()); got != 2 || p.Len() != 4 {
			t.Fatalf("%d prepared of %d held; want 2 of 4", got, p.Len())
		}
		if sp := take(t, p, "red"); sp.net != "red" {
			t.Fatalf("a create naming red first got a spare prepared for %q", sp.net)
		} else {
			sp.Destroy()
		}
		if sp := take(t, p, ""); sp.net != "" {
			t.Fatalf("a create without networks got a spare prepared for %s", sp.net)
		} else {
			sp.Destroy()
		}
		settle()
		old := p.Prepared()
		sp := take(t, p, "blue")
		if sp.net != "" {
			t.Fatalf("the first create naming blue got a spare prepared for %q", sp.net)
		}
		sp.Destroy()
		settle()
		for _, s := range old {
			if !s.destroyed {
				t.Fatalf("spare %d prepared for red kept after blue became the target", s.id)
			}
		}
		for _, s := range p.Prepared() {
			if s.net != "blue" {
				t.Fatalf("spare %d prepared for %q; want blue", s.id, s.net)
			}
		}
		if tgt := p.Target(); tgt != "blue" {
			t.Fatalf("target %q; want blue", tgt)
		}
		p.Forget("blue")
		if n := len(p.Prepared()); n != 0 {
			t.Fatalf("%d spares prepared for a forgotten network", n)
		}
	})
}

// Creates without networks get spares prepared for the network their
// sandboxes were connected to first (Expect), until one goes unused
// (Missed); a create naming a network still gets its own.
func TestPoolGuessesTheConnect(t *testing.T) {
	poolTest(t, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, _ *Gate) {
		settle()
		if sp := take(t, p, ""); sp.net != "" {
			t.Fatalf("before any connect, a create without networks got a spare prepared for %s", sp.net)
		} else {
			sp.Destroy()
		}
		p.Expect("red")
		settle()
		if got, tgt := len(p.Prepared()), p.Target(); got != 2 || tgt != "red" {
			t.Fatalf("after a connect to red: %d prepared for %q; want 2 for red", got, tgt)
		}
		for i := range 3 {
			sp := take(t, p, "")
			if sp.net != "red" {
				t.Fatalf("create %d without networks, after connects to red, got a spare prepared for %q", i, sp.net)
			}
			sp.Destroy()
			p.Expect("red")
			settle()
		}
		p.Expect("blue") // a create went to another network: the guess follows it
		settle()
		if sp := take(t, p, ""); sp.net != "blue" {
			t.Fatalf("after a connect to blue, a create without networks got a spare prepared for %q", sp.net)
		} else {
			sp.Destroy()
		}
		p.Missed() // its spare went unused
		settle()
		if sp := take(t, p, ""); sp.net != "" {
			t.Fatalf("after a miss, a create without networks got a spare prepared for %s", sp.net)
		} else {
			sp.Destroy()
		}
		if sp := take(t, p, "blue"); sp.net != "blue" {
			t.Fatalf("a create naming blue got a spare prepared for %q", sp.net)
		} else {
			sp.Destroy()
		}
		p.Expect("blue")
		p.Forget("blue") // the network goes: no target, no guess
		settle()
		if sp := take(t, p, ""); sp.net != "" {
			t.Fatalf("after its network went, a create without networks got a spare prepared for %s", sp.net)
		} else {
			sp.Destroy()
		}
	})
}

// A driver that prepares nothing is asked once: its spare becomes a
// plain one and the network is no target any more.
func TestPoolBarrenTarget(t *testing.T) {
	shy := newFakeMaker()
	shy.shy["host"] = true
	poolTestWith(t, shy, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, _ *Gate) {
		settle()
		for range 4 {
			take(t, p, "host").Destroy()
			settle()
		}
		if n := m.asked["host"]; n != 1 {
			t.Fatalf("the driver was asked to prepare %d times; want once", n)
		}
		if tgt, n := p.Target(), len(p.Prepared()); tgt != "" || n != 0 {
			t.Fatalf("target %q with %d prepared; want none", tgt, n)
		}
		if n := p.Len(); n != 2 {
			t.Fatalf("%d plain spares; want 2", n)
		}
	})
}

// Spares are made only once no attach has been in flight for a moment,
// unless a create found the pool empty: then the next is made at once.
func TestPoolWaitsForQuiet(t *testing.T) {
	poolTest(t, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, g *Gate) {
		settle()
		g.Enter()
		take(t, p, "").Destroy()
		settle()
		if made, _ := m.counts(); made != 2 {
			t.Fatalf("%d spares made during an attach with one left; want none made", made-2)
		}
		take(t, p, "").Destroy() // the last: hurry
		settle()
		if made, _ := m.counts(); made != 3 {
			t.Fatalf("%d spares made after the pool ran dry during an attach; want 1", made-2)
		}
		g.Leave()
		time.Sleep(quietAfter / 2)
		synctest.Wait()
		if made, _ := m.counts(); made != 3 {
			t.Fatal("a spare made before the quiet period")
		}
		settle()
		if made, _ := m.counts(); made != 4 || p.Len() != 2 {
			t.Fatalf("after the attach: %d made, %d held; want 4, 2", made, p.Len())
		}
	})
}

// A failing Make stops the maker until the next take, without a spin.
func TestPoolMakeFails(t *testing.T) {
	failing := newFakeMaker()
	failing.failMake = true // before the maker's first try
	poolTestWith(t, failing, func(t *testing.T, p *Pool[*fakeSpare], m *fakeMaker, _ *Gate) {
		settle()
		if _, ok := p.Take(""); ok {
			t.Fatal("a spare from a maker that fails")
		}
		settle() // the take had it try again, and fail
		m.mu.Lock()
		m.failMake = false
		m.mu.Unlock()
		settle()
		if p.Len() != 0 {
			t.Fatal("the maker ran again without a take")
		}
		if _, ok := p.Take(""); ok {
			t.Fatal("a spare nobody made")
		}
		settle()
		if n := p.Len(); n != 2 {
			t.Fatalf("%d spares after a take; want 2", n)
		}
	})
}

func TestNilPool(t *testing.T) {
	var p *Pool[*fakeSpare]
	if New(hclog.NewNullLogger(), 0, newFakeMaker(), NewGate()) != nil {
		t.Fatal("a pool of size 0")
	}
	if _, ok := p.Take("n"); ok || p.Len() != 0 || p.Target() != "" || p.Prepared() != nil {
		t.Fatal("a nil pool holds something")
	}
	p.Forget("n")
	p.Expect("n")
	p.Missed()
	p.Close()
}
