package controller

import (
	"testing"
	"time"
)

// The gate opens a moment after the last attach ends, stays shut while
// one is in flight unless woken, and gives up when told to stop.
func TestQuietGate(t *testing.T) {
	g := newQuietGate()
	stop := make(chan struct{})
	if !g.wait(time.Millisecond, stop, nil) {
		t.Fatal("an idle gate did not open")
	}
	g.enter()
	opened := make(chan bool, 1)
	go func() { opened <- g.wait(time.Millisecond, stop, nil) }()
	select {
	case <-opened:
		t.Fatal("the gate opened with an attach in flight")
	case <-time.After(20 * time.Millisecond):
	}
	left := time.Now()
	g.leave()
	if !<-opened {
		t.Fatal("the gate did not open after the attach")
	}
	if waited := time.Since(left); waited < time.Millisecond {
		t.Fatalf("the gate opened %v after the attach, before the quiet period", waited)
	}
	g.enter()
	wake := make(chan struct{}, 1)
	go func() { opened <- g.wait(time.Millisecond, stop, wake) }()
	select {
	case <-opened:
		t.Fatal("the gate opened with an attach in flight")
	case <-time.After(20 * time.Millisecond):
	}
	wake <- struct{}{}
	if !<-opened {
		t.Fatal("a woken wait did not open")
	}
	if len(wake) != 0 {
		t.Fatal("the wake-up was not consumed")
	}
	go func() { opened <- g.wait(time.Millisecond, stop, wake) }()
	close(stop)
	if <-opened {
		t.Fatal("a stopped wait reported the gate open")
	}
}
