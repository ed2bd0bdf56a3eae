package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Scopes: a local network belongs to one host, a global one to every host
// sharing the store. Names are unique per scope: a host's local names
// under its host ID, global names once for all hosts.

const (
	scopeLocal  = "local"
	scopeGlobal = "global"
)

// hostKey is the host ID as a key segment; a store shared with no other
// host may have an empty ID.
func (c *Controller) hostKey() string {
	if c.cfg.HostID == "" {
		return "-"
	}
	return c.cfg.HostID
}

// localNameKey and globalNameKey are where a network name is claimed.
func (c *Controller) localNameKey(name string) string {
	return namePrefix + scopeLocal + "/" + c.hostKey() + "/" + name
}

func globalNameKey(name string) string { return namePrefix + scopeGlobal + "/" + name }

// nameKeyOf is the name key a network holds.
func (c *Controller) nameKeyOf(n *Network) string {
	if n.Scope == scopeGlobal {
		return globalNameKey(n.Name)
	}
	return namePrefix + scopeLocal + "/" + hostKeyOf(n.HostID) + "/" + n.Name
}

func hostKeyOf(id string) string {
	if id == "" {
		return "-"
	}
	return id
}

// ensureOnHost makes sure this host's driver has set up a global network
// another host created (drivers are idempotent, so once per driver process
// suffices; Replay forgets what a restarted driver knew).
func (c *Controller) ensureOnHost(ctx context.Context, d driver.Driver, n *Network) error {
	if n.Scope != scopeGlobal {
		return nil
	}
	c.mu.Lock()
	_, done := c.onHost[n.ID]
	c.mu.Unlock()
	if done {
		return nil
	}
	if _, caps, err := c.driver(ctx, n.Driver); err != nil {
		return err
	} else if err := c.checkAdvertise(n.Name, n.Driver, n.Scope, caps); err != nil {
		return err
	}
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: c.netProto(n)}); err != nil {
		return fmt.Errorf("driver %q setting up global network %s on this host: %w", n.Driver, n.Name, err)
	}
	c.mu.Lock()
	c.onHost[n.ID] = n
	c.mu.Unlock()
	// The endpoints of other hosts, before the first container here
	// talks to them.
	c.peers.resync(ctx, n.ID)
	return nil
}

// checkAdvertise refuses a global network whose driver carries traffic
// between hosts (connectivity scope global) while this agent has no
// advertise address to carry it from.
func (c *Controller) checkAdvertise(name, driverName, scope string, caps *pb.Capabilities) error {
	if scope != scopeGlobal || caps.GetConnectivityScope() != pb.Scope_SCOPE_GLOBAL || c.cfg.AdvertiseAddr.IsValid() {
		return nil
	}
	return errorf(sdk.ErrInvalid, "advertise_addr: network %s (driver %q) reaches across hosts, and this agent has no advertise_addr: "+
		"set advertise_addr in the agent's config to this host's address on the network the hosts share", name, driverName)
}

// watchGlobal follows network deletions in the store: when another host
// deletes a global network this host's driver set up, the driver here
// tears it down too. It runs until ctx ends, watching again (after a
// pause) whenever the store's watch breaks.
func (c *Controller) watchGlobal(ctx context.Context) {
	for ctx.Err() == nil {
		s, err := c.plugins.Store()
		var events <-chan *pb.WatchEvent
		if err == nil {
			events, err = s.Watch(ctx, networkPrefix)
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for ev := range events {
			if ev.GetType() != pb.WatchEvent_DELETE {
				continue
			}
			id := strings.TrimPrefix(ev.GetKv().GetKey(), networkPrefix)
			c.kv.nets.forget(id)
			c.mu.Lock()
			n := c.onHost[id]
			delete(c.onHost, id)
			c.mu.Unlock()
			if n == nil {
				continue
			}
			if d, _, err := c.driver(ctx, n.Driver); err == nil {
				if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: c.netProto(n)}); err != nil {
					c.log.Error("tearing down a global network deleted by another host", "network", n.Name, "error", err)
				}
			}
		}
	}
}

// cleanupLater retries an undo (which must be idempotent) that failed
// because the store did not answer, in the background with backoff, until
// it has succeeded four times a second apart, or the controller closes (an
// agent restart then finds what is left: orphan endpoints are removed at
// start).
func (c *Controller) cleanupLater(what string, undo func(ctx context.Context) error) {
	go func() {
		pause := 100 * time.Millisecond
		settled := 0
		for {
			select {
			case <-c.bg.Done():
				return
			case <-time.After(pause):
			}
			ctx, cancel := context.WithTimeout(c.bg, 30*time.Second)
			err := undo(ctx)
			cancel()
			if err == nil {
				settled++
				// A write whose answer was lost may still be applied after
				// the undo ran (a frozen store works through its queue on
				// waking): undo again until the store has been quiet a while.
				if settled == 4 {
					c.log.Info("rolled back after the store came back", "what", what)
					return
				}
				pause = time.Second
				continue
			}
			settled = 0
			pause = min(2*pause, time.Second)
		}
	}()
}
