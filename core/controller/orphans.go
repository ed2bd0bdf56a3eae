package controller

import (
	"context"
	"time"

	"github.com/sandnet/sandnet/core/osl"
)

// A front's sandbox lives until its front removes it (CNI DEL or GC, the
// OCI poststop hook); it is never reaped as an unclaimed stub, since its
// runtime will not create it again. But a runtime goes on when that
// removal fails: podman removes a container whose CNI DEL found the agent
// down, and deletes its namespace. Our key then holds the namespace
// alone, with the container's interfaces, addresses and published ports,
// which nobody would ever remove. Such an orphan is known by the
// runtime's path for its namespace (Sandbox.RuntimeNetns): once the path
// no longer names the namespace and no process lives in it
// (osl.Abandoned), the sandbox goes as its front's removal would have
// done it. The agent looks at start and then every orphanInterval.

// orphanInterval is how often the front's sandboxes are looked at after
// the first time at start: the stub grace period, within a second and a
// minute.
func (c *Controller) orphanInterval() time.Duration {
	return min(max(c.cfg.StubGracePeriod, time.Second), time.Minute)
}

// watchOrphans removes abandoned front sandboxes now and every
// orphanInterval until ctx ends.
func (c *Controller) watchOrphans(ctx context.Context) {
	t := time.NewTicker(c.orphanInterval())
	defer t.Stop()
	for {
		c.reapOrphans(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reapOrphans deletes the front sandboxes whose runtime has let go of
// their namespace.
func (c *Controller) reapOrphans(ctx context.Context) {
	for _, op := range c.sortedSandboxes(false) {
		if ctx.Err() != nil {
			return
		}
		if op.front == "" || !c.orphaned(op) {
			continue
		}
		if op.front == "oci" {
			// The normal end of a container whose process exits
			// before its runtime deletes it (runc run -d): the
			// poststop hook, when it runs, finds the sandbox gone.
			c.log.Info("deleting the sandbox of a container whose process ended (its namespace has no process left)",
				"sandbox", short(op.sb.ID()), "container", op.sb.ContainerID(), "front", op.front)
		} else {
			c.log.Warn("deleting a sandbox its runtime has let go of: its namespace is no longer at the runtime's path and no process is in it (its front never removed it: the agent was down, or the removal failed)",
				"sandbox", short(op.sb.ID()), "container", op.sb.ContainerID(), "front", op.front)
		}
		// Should the runtime have taken it up again meanwhile (a set-key
		// of its new namespace), the delete keeps it.
		keep := func() bool { return !c.orphanedLocked(op) }
		if err := c.deleteSandboxUnless(c.bg, op, keep, c.announceDelete("its runtime let go of its namespace")); err != nil {
			c.log.Error("deleting a sandbox its runtime has let go of", "sandbox", short(op.sb.ID()), "error", err)
		}
	}
}

// orphaned reports whether op's runtime has let go of its namespace. A
// sandbox an operation holds is in use: it is looked at again next time,
// and a hung operation holds up no other sandbox's look.
func (c *Controller) orphaned(op *sandboxOp) bool {
	if !op.mu.TryLock() {
		return false
	}
	defer op.mu.Unlock()
	return c.orphanedLocked(op)
}

// orphanedLocked is orphaned with op.mu held.
func (c *Controller) orphanedLocked(op *sandboxOp) bool {
	path := op.runtimePath()
	if op.deleted || path == "" || op.sb.Namespace() == nil {
		return false
	}
	gone, err := osl.Abandoned(path, op.sb.Key())
	if err != nil {
		c.log.Debug("looking at a runtime's namespace", "sandbox", short(op.sb.ID()), "path", path, "error", err)
	}
	return gone
}
