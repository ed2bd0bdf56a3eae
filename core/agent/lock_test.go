package agent

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestOneAgentPerNamespace: the network namespace's lock is taken once; a
// second taker is refused naming the holder's PID, and once released it
// is free again.
func TestOneAgentPerNamespace(t *testing.T) {
	l, err := lockNamespace()
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockNamespace()
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another sandnet agent (pid "+strconv.Itoa(os.Getpid())+") runs in this network namespace") {
		t.Fatalf("a second lock = %v, want ErrLocked naming pid %d", err, os.Getpid())
	}
	l.Close()
	l, err = lockNamespace()
	if err != nil {
		t.Fatalf("the lock once released: %v", err)
	}
	l.Close()
}
