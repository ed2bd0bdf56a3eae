// Package polltest waits, in a test, for a condition to hold: the one way
// sandnet's tests wait for work done in the background (a reaper, a
// rollback retried until the store answers, a pool refilled, a process
// that starts serving). A test never sleeps a fixed time and then asserts;
// it polls for what it expects, with a timeout generous enough for a
// loaded machine, and fails with what it was waiting for.
//
//	polltest.Until(t, 5*time.Second, "the veth pair gone", func() bool {
//		return !linkExists("vh0123")
//	})
package polltest

import (
	"testing"
	"time"
)

// Interval bounds the pause between two checks: the first checks follow
// each other quickly (most conditions hold within milliseconds), later
// ones back off to Interval.
const Interval = 50 * time.Millisecond

// Until calls cond until it returns true, and fails the test (t.Fatalf,
// naming what) if it has not within timeout. cond is called at least once,
// from the test's goroutine.
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Wait(timeout, cond) {
		t.Fatalf("not within %s: %s", timeout, what)
	}
}

// Wait calls cond until it returns true or timeout passes, and reports
// whether it held: for a test that has something to add to the failure
// (or for a helper without a testing.TB).
func Wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, Interval)
	}
	return true
}

// UntilEmpty calls left until it returns "", and fails the test if it has
// not within timeout, naming what and left's last answer: for waiting
// until nothing of something is left (links, mounts, processes), with what
// is still there in the failure.
func UntilEmpty(t testing.TB, timeout time.Duration, what string, left func() string) {
	t.Helper()
	var last string
	if !Wait(timeout, func() bool { last = left(); return last == "" }) {
		t.Fatalf("not within %s: %s; still: %s", timeout, what, last)
	}
}
