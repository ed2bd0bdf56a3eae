package controller

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// Wait returns the one result to every caller, however many and however
// often; a resolved result needs no goroutine.
func TestAsyncWaitIsIdempotent(t *testing.T) {
	calls := 0
	a := start(func() (int, error) { calls++; return 7, errors.New("seven") })
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := a.Wait(); v != 7 || err == nil || err.Error() != "seven" {
				t.Errorf("Wait = %v, %v", v, err)
			}
		}()
	}
	wg.Wait()
	if err := a.Err(); err == nil || calls != 1 {
		t.Fatalf("Err = %v after %d calls of fn; want the error of one call", err, calls)
	}
	if v, err := resolved("x", nil).Wait(); v != "x" || err != nil {
		t.Fatalf("resolved: %v, %v", v, err)
	}
}

// An undo stack runs last first, every action even after one fails, logs
// each failure by name, and runs nothing once released or on success.
func TestUndoStack(t *testing.T) {
	var out bytes.Buffer
	u := newUndo(hclog.New(&hclog.LoggerOptions{Output: &out}), "endpoint", "e1")
	var order []string
	push := func(name string, err error) {
		u.Push(name, func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Errorf("%s ran with a canceled context", name)
			}
			order = append(order, name)
			return err
		})
	}
	push("record", nil)
	push("driver endpoint", errors.New("driver gone"))
	push("interface", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the request went away: the undo still runs
	failed := errors.New("the commit failed")
	u.RunIf(ctx, &failed)
	if got := strings.Join(order, ", "); got != "interface, driver endpoint, record" {
		t.Fatalf("undo order: %s", got)
	}
	if log := out.String(); !strings.Contains(log, "rolling back: driver endpoint") || !strings.Contains(log, "driver gone") ||
		!strings.Contains(log, "endpoint=e1") || strings.Count(log, "rolling back") != 1 {
		t.Fatalf("log: %q; want the one failed undo, named, with its error", log)
	}
	order = nil
	u.Run(ctx) // emptied by the first run
	push("kept", nil)
	var ok error
	u.RunIf(ctx, &ok)
	u.Release()
	u.Run(ctx)
	if len(order) != 0 {
		t.Fatalf("ran %v after success and release", order)
	}
}
