package polltest

import (
	"fmt"
	"testing"
	"time"
)

func TestWait(t *testing.T) {
	n := 0
	if !Wait(time.Minute, func() bool { n++; return n == 3 }) {
		t.Fatal("a condition that comes to hold was not seen")
	}
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
	if Wait(5*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported to hold")
	}
}

// Until fails the test with what it waited for.
func TestUntilFails(t *testing.T) {
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		Until(ft, time.Millisecond, "the impossible", func() bool { return false })
	}()
	if want := "not within 1ms: the impossible"; ft.msg != want {
		t.Fatalf("failure message %q, want %q", ft.msg, want)
	}
}

type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic("fatal")
}

// UntilEmpty returns once nothing is left, and fails with what is.
func TestUntilEmpty(t *testing.T) {
	n := 0
	UntilEmpty(t, time.Minute, "n to reach 3", func() string {
		if n++; n < 3 {
			return fmt.Sprint(n)
		}
		return ""
	})
	ft := &fakeT{TB: t}
	func() {
		defer func() { _ = recover() }()
		UntilEmpty(ft, time.Millisecond, "no links", func() string { return "veth0 veth1" })
	}()
	if want := "not within 1ms: no links; still: veth0 veth1"; ft.msg != want {
		t.Fatalf("failure message %q, want %q", ft.msg, want)
	}
}
