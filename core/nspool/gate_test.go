package nspool

import (
	"testing"
	"testing/synctest"
	"time"
)

// waitIdle starts g.WaitIdle(d) and returns where its answer comes.
func waitIdle(g *Gate, d time.Duration, stop, wake <-chan struct{}) <-chan bool {
	out := make(chan bool, 1)
	go func() { out <- g.WaitIdle(d, stop, wake) }()
	return out
}

// returned says whether a WaitIdle has answered, once everything else in
// the bubble is blocked.
func returned(c <-chan bool) (answer, ok bool) {
	synctest.Wait()
	select {
	case answer = <-c:
		return answer, true
	default:
		return false, false
	}
}

// The gate opens exactly d after the last attach ends, stays shut while
// one is in flight however long, starts over when another begins within
// d, opens at once when woken (consuming the wake-up), and gives up when
// told to stop.
func TestGate(t *testing.T) {
	const d = time.Millisecond
	synctest.Test(t, func(t *testing.T) {
		g := NewGate()
		stop := make(chan struct{})
		if open, ok := returned(waitIdle(g, d, stop, nil)); !ok || !open {
			t.Fatal("an idle gate did not open at once")
		}

		g.Enter()
		opened := waitIdle(g, d, stop, nil)
		time.Sleep(time.Hour)
		if _, ok := returned(opened); ok {
			t.Fatal("the gate opened with an attach in flight")
		}
		g.Leave()
		left := time.Now()
		time.Sleep(d / 2)
		if _, ok := returned(opened); ok {
			t.Fatal("the gate opened before the quiet period")
		}
		g.Enter() // another attach within d
		g.Leave()
		again := time.Now()
		time.Sleep(d - d/4) // past d after the first leave, not after the second
		if _, ok := returned(opened); ok {
			t.Fatalf("the gate opened %v after an attach ended", time.Since(again))
		}
		if open := <-opened; !open {
			t.Fatal("the gate did not open after the attaches")
		}
		if waited := time.Since(again); waited != d {
			t.Fatalf("the gate opened %v after the last attach (%v after the first); want %v", waited, time.Since(left), d)
		}

		g.Enter()
		wake := make(chan struct{}, 1)
		opened = waitIdle(g, d, stop, wake)
		if _, ok := returned(opened); ok {
			t.Fatal("the gate opened with an attach in flight")
		}
		wake <- struct{}{}
		if open, ok := returned(opened); !ok || !open {
			t.Fatal("a woken wait did not open")
		}
		if len(wake) != 0 {
			t.Fatal("the wake-up was not consumed")
		}

		opened = waitIdle(g, d, stop, wake)
		close(stop)
		if open, ok := returned(opened); !ok || open {
			t.Fatalf("a stopped wait answered %v, %v; want false", open, ok)
		}
		g.Leave()
	})
}
