package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/sdk"
)

// A driver plugin that crashed, or that a reload restarts with a new
// block, is down until it runs again and Replay has sent it the
// networks, endpoints and joins it owns. A request that needs it
// meanwhile waits for that (Config.DriverRestartWait at most) instead of
// failing at once with a 503, or reaching a driver that does not know its
// network yet — as Docker's plugin client retries a plugin that is not
// reachable. Replay itself, which runs while the driver is down, does
// not wait (its context says so).

// DefaultDriverRestartWait is Config.DriverRestartWait's default: a
// restart with its replay takes well under a second; a plugin that cannot
// start again is reported after this long.
const DefaultDriverRestartWait = 10 * time.Second

// DriverDown marks driver name as down until the next Replay of it ends
// (or EndDriverWait): requests that need it wait. The agent calls it when
// the plugin exits and before a reload replaces it.
func (c *Controller) DriverDown(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.driverDown[name] == nil {
		c.driverDown[name] = make(chan struct{})
	}
}

// EndDriverWait ends the wait for a driver that will not be replayed: a
// reload that could start neither its new block nor its old one (the
// requests waiting fail at once, saying the plugin is not running), or
// that stopped or started the driver (no networks to replay).
func (c *Controller) EndDriverWait(name string) { c.driverUp(name) }

// driverUp lets the requests waiting for driver name go on.
func (c *Controller) driverUp(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch := c.driverDown[name]; ch != nil {
		close(ch)
		delete(c.driverDown, name)
	}
}

// noWaitKey marks the context of background work that does not wait for
// a driver that is down (a spare's prepared attach): it fails at once
// with sdk.ErrUnavailable and tries again another time.
type noWaitKey struct{}

// replayingKey marks the context of a Replay: the driver it names is
// down, and the replay is what brings it back.
type replayingKey struct{}

// awaitDriver waits until down (driver name's gate) closes, the request's
// context ends, or Config.DriverRestartWait passes. Only the context's end
// is an error; after the bound the caller goes on and gets the plugin's
// own answer (not running: a 503).
func (c *Controller) awaitDriver(ctx context.Context, name string, down <-chan struct{}) error {
	if ctx.Value(replayingKey{}) == name {
		return nil
	}
	wait := c.cfg.DriverRestartWait
	if wait <= 0 {
		wait = DefaultDriverRestartWait
	}
	c.driverWaiters.Add(1)
	defer c.driverWaiters.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-down:
	case <-t.C:
		c.log.Warn("driver plugin still restarting; giving up waiting", "driver", name, "waited", wait)
	case <-ctx.Done():
		return fmt.Errorf("waiting for driver %q to restart: %w: %w", name, sdk.ErrUnavailable, ctx.Err())
	}
	return nil
}

// RetireDriver readies driver name to be stopped, its block gone from the
// config at a reload: from now on a network create on it is refused
// (409), the creates already past their driver check finish first (for
// at most d; creates still under way then are a conflict), and then,
// should a network use the driver, the mark is taken back and the answer
// is a conflict naming the network. The agent calls EndRetire once it has
// stopped the plugin (or gave up stopping it).
func (c *Controller) RetireDriver(ctx context.Context, name string, d time.Duration) error {
	c.mu.Lock()
	c.retiring[name] = true
	c.mu.Unlock()
	if !c.waitIdle(d, func() bool { return c.netCreates[name] == 0 }) {
		c.EndRetire(name)
		return errorf(sdk.ErrConflict, "network creates on driver %q are still under way after %s; try the reload again", name, d)
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		c.EndRetire(name)
		return fmt.Errorf("listing the networks of driver %q: %w", name, err)
	}
	var using []string
	for _, n := range nets {
		if n.Driver == name {
			using = append(using, strconv.Quote(n.Name))
		}
	}
	if len(using) > 0 {
		c.EndRetire(name)
		slices.Sort(using)
		if len(using) == 1 {
			return errorf(sdk.ErrConflict, "the file removes driver %q, which network %s still uses; delete its networks first", name, using[0])
		}
		return errorf(sdk.ErrConflict, "the file removes driver %q, which %d networks still use (%s); delete its networks first", name, len(using), strings.Join(using, ", "))
	}
	return nil
}

// EndRetire takes back RetireDriver's mark.
func (c *Controller) EndRetire(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.retiring, name)
}

// beginNetCreate counts a network create on driver name until done is
// called, so that RetireDriver waits for it; a driver being retired is a
// conflict.
func (c *Controller) beginNetCreate(name string) (done func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.retiring[name] {
		return nil, errorf(sdk.ErrConflict, "driver: %q is being removed by a reload", name)
	}
	c.netCreates[name]++
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.releaseLocked(c.netCreates, name)
	}, nil
}

// releaseLocked takes one off counts[name], waking the waits on idle when
// it reaches zero. c.mu is held.
func (c *Controller) releaseLocked(counts map[string]int, name string) {
	if counts[name]--; counts[name] <= 0 {
		delete(counts, name)
		c.idle.Broadcast()
	}
}

// waitIdle waits until done, called with c.mu held, reports true, for at
// most d; it reports whether it did. sync.Cond has no timed wait: a timer
// wakes the waits at the deadline.
func (c *Controller) waitIdle(d time.Duration, done func() bool) bool {
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.idle.Broadcast()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	for !done() {
		if !time.Now().Before(deadline) {
			return false
		}
		c.idle.Wait()
	}
	return true
}

// A reload that replaces a driver's plugin (its block changed) first
// drains it: the requests already using the driver finish on the old
// plugin, new ones wait (as for any restart) until the new plugin has
// been replayed. A request holds each driver it uses from its first use
// to its end (Hold), so that a call it makes after the drain began does
// not reach a plugin being stopped.

type heldKey struct{}

// held is the drivers a request holds; guarded by Controller.mu.
type held struct {
	names map[string]bool
	done  bool // the request ended: later uses (a goroutine it left) hold nothing
}

func (h *held) has(name string) bool { return h != nil && !h.done && h.names[name] }

// Hold marks ctx, a request's, so that the drivers the request uses are
// held until done is called (DrainDriver waits for them).
func (c *Controller) Hold(ctx context.Context) (context.Context, func()) {
	h := &held{names: map[string]bool{}}
	return context.WithValue(ctx, heldKey{}, h), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for name := range h.names {
			c.releaseLocked(c.driverUsers, name)
		}
		h.names, h.done = nil, true
	}
}

// holdLocked counts h (nil: a request not held, background work) as a
// user of driver name. c.mu is held.
func (c *Controller) holdLocked(h *held, name string) {
	if h == nil || h.done || h.names[name] {
		return
	}
	h.names[name] = true
	c.driverUsers[name]++
}

// DrainDriver marks driver name down, as DriverDown does, and waits, for
// at most d, until no request holds it; it reports whether none does.
// A request that holds the driver and waits on one that waits for the
// drain is why the wait is bounded: past d, the plugin is replaced
// anyway and such a request's call fails as after a crash.
func (c *Controller) DrainDriver(name string, d time.Duration) bool {
	c.DriverDown(name)
	return c.waitIdle(d, func() bool { return c.driverUsers[name] == 0 })
}
