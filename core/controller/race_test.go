package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// One sandbox connected, deleted and listed (its traffic counters read
// too) at once, over and over: under
// -race, every field of the sandbox that these touch is read under the lock
// that guards it; each connect either lands before the delete or is
// refused, and nothing is left behind.
func TestConnectDeleteListOneSandbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.102.0.0/24")
	for i := range 20 {
		container := fmt.Sprintf("race-%d", i)
		e.sandbox(container)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, err := e.c.Connect(ctx, "red", Connect{Container: container})
			if errors.Is(err, sdk.ErrForbidden) || errors.Is(err, sdk.ErrNotFound) {
				err = nil // the delete came first
			}
			errs[0] = err
		}()
		go func() {
			defer wg.Done()
			errs[1] = e.c.DeleteSandbox(ctx, container)
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := e.c.Sandboxes(ctx); err != nil && !errors.Is(err, sdk.ErrNotFound) {
					errs[2] = err
					return
				}
				e.c.WalkSandboxes(func(*sandbox.Sandbox) bool { return false })
				if _, err := e.c.Traffic(ctx, ""); err != nil {
					errs[2] = err
					return
				}
			}
		}()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if _, err := e.c.SandboxByContainer(ctx, container); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("round %d: the deleted sandbox is still there (%v)", i, err)
		}
	}
	polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == leaks{} })
}
