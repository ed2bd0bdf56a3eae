package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Host liveness: every agent keeps a record of its host in the store,
// sandnet/v1/host/<host ID>, put with a lease of the store (store.Leaser)
// that the agent renews every HostTTL/4. When the agent stops for good,
// the lease lapses and the store deletes the record (Consul: its session
// ends, at the latest HostTTL after the last renewal). The other hosts
// watch the records (peers.go): the endpoints of a host without one are
// withdrawn from their drivers (FDB and neighbour entries) and from the
// name index (DNS). The endpoints' records, and so their addresses, stay:
// a host that comes back renews or takes a new lease, puts its record
// again and reconciles as after any restart; one that does not is removed
// by an operator with RemoveHost (`sandnet host rm`), which releases its
// addresses.
//
// A clean stop of the agent leaves its lease to lapse rather than ending
// it: an agent restarted within HostTTL finds its lease in its record and
// renews it, so a restart never withdraws its containers from the others.
//
// A store without leases (a plugin built before them answers
// sdk.ErrNotSupported) keeps no host records, and every host's endpoints
// count as live, as before.

const hostPrefix = prefix + "host/"

func hostRecordKey(id string) string { return hostPrefix + hostKeyOf(id) }

// DefaultHostTTL is the HostTTL of a Config that leaves it zero.
const DefaultHostTTL = 30 * time.Second

// HostRecord is a host's record in the store, alive as long as its lease.
type HostRecord struct {
	ID string `json:"id"`
	// AdvertiseAddr is the host's advertise_addr, when it has one.
	AdvertiseAddr netip.Addr `json:"advertise_addr,omitzero"`
	// Lease is the store's ID of the lease the record lives by.
	Lease string `json:"lease"`
	// Since is when the host took that lease.
	Since time.Time `json:"since"`
}

// Host states, as Hosts reports them.
const (
	// HostLive: the host's record is in the store; its lease is renewed.
	HostLive = "live"
	// HostExpired: endpoints name the host, and its record is gone: its
	// lease lapsed (or it never had one).
	HostExpired = "expired"
	// HostUnknown: the store has no leases, so liveness is not tracked.
	HostUnknown = "unknown"
)

// Host is a host as `GET /v1/hosts` shows it.
type Host struct {
	ID            string     `json:"id"`
	State         string     `json:"state"`
	Self          bool       `json:"self,omitempty"`
	AdvertiseAddr netip.Addr `json:"advertise_addr,omitzero"`
	Since         time.Time  `json:"since,omitzero"`
	// Endpoints counts the endpoint records that name the host.
	Endpoints int `json:"endpoints"`
	// Networks counts the host's local networks (their names and subnets
	// are kept from every host sharing the store while they exist).
	Networks int `json:"networks"`
}

// hostLease keeps this host's record and its lease alive. Only run
// touches lease; leasing is read by the peer goroutine and the API.
type hostLease struct {
	c       *Controller
	ttl     time.Duration
	leasing atomic.Bool // the store has leases: liveness is tracked
	lease   string      // the lease the record lives by; "" when none
}

// begin takes or renews this host's lease and puts its record, before
// the peer goroutine starts, so that the other hosts see this one live
// as soon as it reconciles. It reports whether the lease loop should run:
// false for a store without leases. A store that refuses the lease (an
// ACL without session rights) fails the start: without a lease the other
// hosts take this one for gone, and `host rm` would delete the records of
// its running containers. Another failure is logged and left to the loop
// to retry.
func (h *hostLease) begin(ctx context.Context) (bool, error) {
	err := h.renewOrTake(ctx)
	if errors.Is(err, sdk.ErrNotSupported) {
		h.c.log.Info("the store has no leases: host liveness is not tracked")
		return false, nil
	}
	if errors.Is(err, sdk.ErrForbidden) {
		return false, fmt.Errorf("taking this host's lease: %w; without one the other hosts take this host for gone (host rm would delete its containers' records): "+
			"give the store's credentials the right to hold leases (Consul: session_prefix \"\" { policy = \"write\" } beside the key_prefix rule)", err)
	}
	h.leasing.Store(true)
	if err != nil {
		h.c.log.Warn("taking this host's lease", "error", err)
	}
	return true, nil
}

// run renews the lease every ttl/4 (every second while the store fails)
// until ctx ends. It never ends the lease: see the package's note above.
func (h *hostLease) run(ctx context.Context) {
	every := h.ttl / 4
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := h.renewOrTake(ctx); err != nil {
			h.c.log.Warn("renewing this host's lease", "error", err)
			t.Reset(time.Second)
			continue
		}
		t.Reset(every)
	}
}

// renewOrTake renews the lease this host holds — the one in its record
// after an agent restart — and takes a new one, putting the record again,
// when there is none or it lapsed.
func (h *hostLease) renewOrTake(ctx context.Context) error {
	s, err := h.c.plugins.Store()
	if err != nil {
		return err
	}
	l := store.Leases(s)
	if l == nil {
		return fmt.Errorf("store: %w", sdk.ErrNotSupported)
	}
	key := hostRecordKey(h.c.cfg.HostID)
	if h.lease == "" {
		// After an agent restart, the record names the lease it held.
		var rec HostRecord
		_, err := h.c.kv.get(ctx, key, &rec)
		switch {
		case err == nil && rec.Lease != "":
			if _, err := l.LeaseRenew(ctx, rec.Lease); err == nil {
				h.lease = rec.Lease
				if rec.ID == h.c.cfg.HostID && rec.AdvertiseAddr == h.c.cfg.AdvertiseAddr {
					return nil
				}
				return h.put(ctx, l, key, rec.Since)
			} else if !errors.Is(err, sdk.ErrNotFound) {
				return err
			}
		case err != nil && !errors.Is(err, sdk.ErrNotFound):
			return err
		}
	} else {
		_, err := l.LeaseRenew(ctx, h.lease)
		if err == nil || !errors.Is(err, sdk.ErrNotFound) {
			return err
		}
		h.c.log.Info("this host's lease lapsed; taking a new one", "lease", h.lease)
		h.lease = ""
		defer h.c.CheckStoreHoldsSandboxes(ctx)
	}
	lease, err := l.LeaseGrant(ctx, h.ttl)
	if err != nil {
		return err
	}
	h.lease = lease.GetId()
	return h.put(ctx, l, key, time.Now().UTC())
}

func (h *hostLease) put(ctx context.Context, l store.Leaser, key string, since time.Time) error {
	b, err := json.Marshal(HostRecord{ID: h.c.cfg.HostID, AdvertiseAddr: h.c.cfg.AdvertiseAddr, Lease: h.lease, Since: since})
	if err != nil {
		return err
	}
	if _, err := l.LeasePut(ctx, key, b, h.lease); err != nil {
		if errors.Is(err, sdk.ErrNotFound) {
			h.lease = "" // lapsed in between: the next round takes another
		}
		return fmt.Errorf("putting this host's record: %w", err)
	}
	return nil
}

// Hosts lists the hosts the store knows: those with a record (live), and
// those only endpoint records or local networks name (expired). Without
// leases every such host is listed, in state unknown.
func (c *Controller) Hosts(ctx context.Context) ([]*Host, error) {
	byID := map[string]*Host{}
	host := func(id string) *Host {
		h := byID[id]
		if h == nil {
			h = &Host{ID: id, State: HostExpired, Self: id == c.cfg.HostID}
			if !c.lease.leasing.Load() {
				h.State = HostUnknown
			}
			byID[id] = h
		}
		return h
	}
	if err := c.kv.list(ctx, hostPrefix, func(_ string, _ uint64, raw []byte) error {
		var rec HostRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return err
		}
		h := host(rec.ID)
		h.State, h.AdvertiseAddr, h.Since = HostLive, rec.AdvertiseAddr, rec.Since
		return nil
	}); err != nil {
		return nil, err
	}
	if err := c.kv.list(ctx, endpointPrefix, func(_ string, _ uint64, raw []byte) error {
		var ep Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		h := host(ep.HostID)
		h.Endpoints++
		if !h.AdvertiseAddr.IsValid() && ep.VTEP != "" {
			h.AdvertiseAddr, _ = netip.ParseAddr(ep.VTEP)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	nets, err := c.localNetworksOf(ctx, "")
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		host(n.n.HostID).Networks++
	}
	if _, ok := byID[c.cfg.HostID]; !ok {
		host(c.cfg.HostID)
	}
	out := make([]*Host, 0, len(byID))
	for _, h := range byID {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b *Host) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RemoveHost forgets a host that is gone for good: the records of its
// endpoints go and their addresses are released, and so do the records
// of its sandboxes and of its local networks, whose names and subnets are
// free then. A live host (its record is in the store), this host,
// or any host while the store has no leases, is refused with
// sdk.ErrConflict; a host the store knows nothing of gives sdk.ErrNotFound.
// Each endpoint goes in a transaction that also checks the host has no
// record, so a host that comes back meanwhile keeps what is left.
func (c *Controller) RemoveHost(ctx context.Context, id string) error {
	if id == "" {
		return errorf(sdk.ErrInvalid, "host: a host ID is required")
	}
	if !validContainerID.MatchString(id) { // host IDs are hex; a key path must not come from it
		return errorf(sdk.ErrInvalid, "host: %q is not a host ID (see sandnet host ls)", clip(id))
	}
	if id == c.cfg.HostID {
		return errorf(sdk.ErrConflict, "host %s is this agent's own host, which is live", id)
	}
	if !c.lease.leasing.Load() {
		return errorf(sdk.ErrConflict, "host %s: the store has no leases, so whether the host is live is unknown; not removing it", id)
	}
	hostKey := hostRecordKey(id)
	var rec HostRecord
	if _, err := c.kv.get(ctx, hostKey, &rec); err == nil {
		return errorf(sdk.ErrConflict, "host %s is live (its lease is held since %s): stop its agent for good and wait host_ttl for the lease to lapse",
			id, rec.Since.Format(time.RFC3339))
	} else if !errors.Is(err, sdk.ErrNotFound) {
		return err
	}
	var eps []*Endpoint
	if err := c.kv.list(ctx, endpointPrefix, func(_ string, _ uint64, raw []byte) error {
		var ep Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		if ep.HostID == id {
			eps = append(eps, &ep)
		}
		return nil
	}); err != nil {
		return err
	}
	var sbs []string
	if err := c.kv.list(ctx, sandboxPrefix, func(key string, _ uint64, raw []byte) error {
		var s Sandbox
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		if s.HostID == id {
			sbs = append(sbs, key)
		}
		return nil
	}); err != nil {
		return err
	}
	nets, err := c.localNetworksOf(ctx, id)
	if err != nil {
		return err
	}
	if len(eps) == 0 && len(sbs) == 0 && len(nets) == 0 {
		return errorf(sdk.ErrNotFound, "host %s: no such host in the store", id)
	}
	for _, ep := range eps {
		if err := c.dropEndpointOf(ctx, ep, check(hostKey, 0)); err != nil {
			return fmt.Errorf("removing host %s: endpoint %s: %w", id, short(ep.ID), err)
		}
	}
	for _, key := range sbs {
		if err := c.kv.txn(ctx, check(hostKey, 0), del(key)); err != nil {
			return fmt.Errorf("removing host %s: %s: %w", id, key, err)
		}
	}
	for _, n := range nets {
		if err := c.removeNetwork(ctx, n.n, n.idx, check(hostKey, 0)); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("removing host %s: network %s: %w", id, n.n.Name, err)
		}
	}
	c.log.Info("host removed", "host", id, "endpoints", len(eps), "sandboxes", len(sbs), "networks", len(nets))
	return nil
}

// hostNetwork is a local network of a host, with its record's index.
type hostNetwork struct {
	n   *Network
	idx uint64
}

// localNetworksOf lists the local networks of host id (every host's with
// id ""), as the store has them.
func (c *Controller) localNetworksOf(ctx context.Context, id string) ([]hostNetwork, error) {
	var out []hostNetwork
	err := c.kv.list(ctx, networkPrefix, func(_ string, idx uint64, raw []byte) error {
		var n Network
		if json.Unmarshal(raw, &n) == nil && n.Scope != scopeGlobal && n.HostID != "" && (id == "" || n.HostID == id) {
			out = append(out, hostNetwork{&n, idx})
		}
		return nil
	})
	return out, err
}

// dropEndpointOf is dropEndpoint with more ops in its transaction.
func (c *Controller) dropEndpointOf(ctx context.Context, ep *Endpoint, extra ...*pb.TxnOp) error {
	n, err := c.stableNetwork(ctx, ep.NetworkID)
	if errors.Is(err, sdk.ErrNotFound) {
		// The network went; so did its addresses.
		return c.kv.txn(ctx, append(extra, del(endpointKey(ep.NetworkID, ep.ID)))...)
	}
	if err != nil {
		return err
	}
	return c.dropEndpointAtWith(ctx, n, ep.NetworkID, ep.ID, 0, nil, extra)
}

// CheckStoreHoldsSandboxes says so, loudly, when the store holds none of
// the sandboxes this agent runs: it lost its data while the agent ran (a
// Consul agent in -dev mode restarted empty, a store restored from an
// older backup, a store plugin that keeps nothing across its restart).
// Nothing is changed: the next start removes what the store does not
// hold, and a restore of the store's data avoids that. Called when the
// host's lease lapsed, which such a loss also brings, and when the store
// plugin was restarted.
func (c *Controller) CheckStoreHoldsSandboxes(ctx context.Context) {
	if n := c.sandboxesLost(ctx); n > 0 {
		c.log.Error("the store holds none of this host's sandboxes: it lost its data while the agent ran (restarted empty, or restored from an older backup). "+
			"Networks it no longer holds cannot be deleted, and the next start removes what it does not hold; restore the store's data first if it is to be kept",
			"sandboxes", n)
	}
}

// sandboxesLost is how many sandboxes this agent runs when the store
// holds the record of none of them, else 0: one listing, however many.
func (c *Controller) sandboxesLost(ctx context.Context) int {
	ops := c.sortedSandboxes(true)
	s, err := c.kv.store()
	if len(ops) == 0 || err != nil {
		return 0
	}
	known, err := recorded(ctx, s, c.cfg.HostID)
	if err != nil {
		return 0 // the store cannot say: no loss to report
	}
	for _, op := range ops {
		if known[op.sb.ID()] {
			return 0
		}
	}
	return len(ops)
}
