package controller

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// Peers: the drivers of global networks that carry traffic between hosts
// (the overlay) stay stateless, so the host tells them where the other
// hosts' endpoints are. One goroutine, peerSync.run, owns that: it
// watches the store's endpoint records, keeps those of other hosts, and
// for every global network set up on this host (Controller.onHost) makes
// the driver's peer set match them with PeerAdd and PeerDelete. Being the
// only caller of the peer methods, it sends them in the order the store
// changed. The same records feed the name index, so the embedded DNS
// answers for containers on every host.
//
// The driver is sent the whole set, replacing what it holds
// (PeerRequest.replace), whenever its set may be off: a network set up on
// this host (ensureOnHost, a replay after the driver's restart or the
// agent's), the watch started again after it broke, and a network whose
// last call failed (retried every second).

// peerSync is the state of the peer goroutine. Only run and the methods
// it calls touch the fields below reqs.
type peerSync struct {
	c    *Controller
	reqs chan peerReq

	remote map[string]map[string]*Endpoint // network ID → endpoint ID → an endpoint of another host
	sent   map[string]map[string]*pb.Peer  // network ID → endpoint ID → the peer its driver holds
	named  map[string]map[string]bool      // network ID → endpoint IDs in the name index
	failed map[string]bool                 // network IDs whose last sync failed
	live   map[string]bool                 // IDs of the hosts with a record (hosts.go)
}

// peerReq asks run to send a network's whole peer set to its driver
// ("" for every network on this host); done is closed once it has.
type peerReq struct {
	netID string
	done  chan struct{}
}

func newPeerSync(c *Controller) *peerSync {
	return &peerSync{c: c, reqs: make(chan peerReq),
		remote: map[string]map[string]*Endpoint{}, sent: map[string]map[string]*pb.Peer{},
		named: map[string]map[string]bool{}, failed: map[string]bool{}, live: map[string]bool{}}
}

// resyncWait bounds how long a caller of resync waits: the peers are
// sent later all the same, and a connect must not hang on a slow store.
const resyncWait = 5 * time.Second

// resync has run send network netID's whole peer set ("" for every
// network on this host) and waits until it has, or ctx ends, or the
// controller closes, or resyncWait has passed.
func (p *peerSync) resync(ctx context.Context, netID string) {
	ctx, cancel := context.WithTimeout(ctx, resyncWait)
	defer cancel()
	r := peerReq{netID: netID, done: make(chan struct{})}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return
	case <-p.c.bg.Done():
		return
	}
	select {
	case <-r.done:
	case <-ctx.Done():
	case <-p.c.bg.Done():
	}
}

// run follows the store's endpoint records until ctx ends, watching
// again (after a pause) whenever the watch breaks.
func (p *peerSync) run(ctx context.Context) {
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for ctx.Err() == nil {
		events, err := p.follow(ctx)
		if err != nil {
			p.c.log.Debug("watching endpoints for peers", "error", err)
			p.idle(ctx, retry.C, time.After(time.Second))
			continue
		}
		for open := true; open; {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					open = false
					break
				}
				switch netID, changed := p.apply(ev); {
				case changed && netID == "":
					p.syncAllChanged(ctx)
				case changed:
					p.sync(ctx, netID, false)
				}
			case r := <-p.reqs:
				p.serve(ctx, r)
			case <-retry.C:
				p.retryFailed(ctx)
			}
		}
	}
}

// idle serves requests and retries until ctx ends or until fires.
func (p *peerSync) idle(ctx context.Context, tick <-chan time.Time, until <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-until:
			return
		case r := <-p.reqs:
			p.serve(ctx, r)
		case <-tick:
			p.retryFailed(ctx)
		}
	}
}

// follow starts a watch of the endpoint records and one of the host
// records, reads them all once both are in place (so no change falls
// between the listing and the watch), takes the listing as the new
// remote and live sets and sends every network on this host its whole
// peer set. Events of the watches that the listing already holds are
// applied again later, which changes nothing.
func (p *peerSync) follow(ctx context.Context) (<-chan *pb.WatchEvent, error) {
	s, err := p.c.plugins.Store()
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	var buffered []*pb.WatchEvent
	var streams []<-chan *pb.WatchEvent
	for _, prefix := range []string{endpointPrefix, hostPrefix} {
		events, early, err := watchReady(wctx, s, prefix)
		if err != nil {
			cancel()
			return nil, err
		}
		streams = append(streams, events)
		buffered = append(buffered, early...)
	}
	remote := map[string]map[string]*Endpoint{}
	err = p.c.kv.list(ctx, endpointPrefix, func(_ string, _ uint64, raw []byte) error {
		var ep Endpoint
		if err := json.Unmarshal(raw, &ep); err != nil {
			return err
		}
		if ep.HostID != p.c.cfg.HostID {
			if remote[ep.NetworkID] == nil {
				remote[ep.NetworkID] = map[string]*Endpoint{}
			}
			remote[ep.NetworkID][ep.ID] = &ep
		}
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	live := map[string]bool{}
	err = p.c.kv.list(ctx, hostPrefix, func(key string, _ uint64, _ []byte) error {
		live[strings.TrimPrefix(key, hostPrefix)] = true
		return nil
	})
	if err != nil {
		cancel()
		return nil, err
	}
	p.remote, p.live = remote, live
	for _, ev := range buffered {
		p.apply(ev)
	}
	p.syncAll(ctx)
	// Both streams feed out; when either breaks, the other is stopped
	// and out closes, and run watches both again.
	out := make(chan *pb.WatchEvent)
	var wg sync.WaitGroup
	wg.Add(len(streams))
	for _, events := range streams {
		go func() {
			defer wg.Done()
			defer cancel()
			for ev := range events {
				select {
				case out <- ev:
				case <-wctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer cancel()
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// watchReady starts a watch of prefix and waits for its READY event,
// returning the events that came before it.
func watchReady(ctx context.Context, s store.Store, prefix string) (<-chan *pb.WatchEvent, []*pb.WatchEvent, error) {
	events, err := s.Watch(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	var early []*pb.WatchEvent
	for {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return nil, nil, errWatchBroke
			}
			if ev.GetType() == pb.WatchEvent_READY {
				return events, early, nil
			}
			early = append(early, ev)
		}
	}
}

// errWatchBroke is a watch that closed before it was ready.
var errWatchBroke = errors.New("the store's watch closed")

// apply takes a watch event into the remote or live set and returns the
// network whose peers it changed; "" and true for a host that came or
// went, which may change any network's.
func (p *peerSync) apply(ev *pb.WatchEvent) (string, bool) {
	if id, ok := strings.CutPrefix(ev.GetKv().GetKey(), hostPrefix); ok {
		was := p.live[id]
		switch ev.GetType() {
		case pb.WatchEvent_PUT:
			p.live[id] = true
		case pb.WatchEvent_DELETE:
			delete(p.live, id)
		}
		if was != p.live[id] {
			p.c.log.Info("host liveness changed", "host", id, "live", p.live[id])
			return "", true
		}
		return "", false
	}
	rest, ok := strings.CutPrefix(ev.GetKv().GetKey(), endpointPrefix)
	if !ok {
		return "", false
	}
	netID, epID, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	switch ev.GetType() {
	case pb.WatchEvent_PUT:
		var ep Endpoint
		if err := json.Unmarshal(ev.GetKv().GetValue(), &ep); err != nil {
			p.c.log.Warn("an endpoint record that does not decode", "key", ev.GetKv().GetKey(), "error", err)
			return "", false
		}
		if ep.HostID == p.c.cfg.HostID {
			return "", false
		}
		if p.remote[netID] == nil {
			p.remote[netID] = map[string]*Endpoint{}
		}
		p.remote[netID][epID] = &ep
		if p.c.ipam != nil {
			// Its addresses are taken: the next attach here picks
			// others rather than losing its commit to that host.
			p.c.ipam.Observe(ep.Address.Addr())
			p.c.ipam.Observe(ep.AddressV6.Addr())
		}
		return netID, true
	case pb.WatchEvent_DELETE:
		if _, ok := p.remote[netID][epID]; !ok {
			return "", false
		}
		delete(p.remote[netID], epID)
		if len(p.remote[netID]) == 0 {
			delete(p.remote, netID)
		}
		return netID, true
	}
	return "", false
}

func (p *peerSync) serve(ctx context.Context, r peerReq) {
	if r.netID == "" {
		p.syncAll(ctx)
	} else {
		p.sync(ctx, r.netID, true)
	}
	close(r.done)
}

// syncAll sends every network this host has set up, or had peers sent
// for, its whole peer set.
func (p *peerSync) syncAll(ctx context.Context) {
	for id := range p.networks() {
		p.sync(ctx, id, true)
	}
}

// networks are the IDs of the networks this host has set up, or had
// peers or names sent for.
func (p *peerSync) networks() map[string]bool {
	ids := map[string]bool{}
	p.c.mu.Lock()
	for id := range p.c.onHost {
		ids[id] = true
	}
	p.c.mu.Unlock()
	for id := range p.sent {
		ids[id] = true
	}
	for id := range p.named {
		ids[id] = true
	}
	return ids
}

// syncAllChanged sends every network this host has set up, or had peers
// sent for, what changed in its peer set (after a host came or went).
func (p *peerSync) syncAllChanged(ctx context.Context) {
	for id := range p.networks() {
		p.sync(ctx, id, false)
	}
}

// alive reports whether the endpoints of host id are to be peers and
// names here: it has a record, or liveness is not tracked.
func (p *peerSync) alive(id string) bool {
	return p.live[hostKeyOf(id)] || !p.c.lease.leasing.Load()
}

func (p *peerSync) retryFailed(ctx context.Context) {
	for id := range p.failed {
		p.sync(ctx, id, true)
	}
}

// sync makes the driver of network netID hold the peers the remote set
// has for it, and the name index their names: with whole, in one
// replacing PeerAdd; otherwise by sending what changed since the last
// call. A network not set up on this host holds nothing (its driver tore
// it down, or never made it).
func (p *peerSync) sync(ctx context.Context, netID string, whole bool) {
	c := p.c
	c.mu.Lock()
	n := c.onHost[netID]
	c.mu.Unlock()
	if n == nil {
		delete(p.sent, netID)
		delete(p.failed, netID)
		p.syncNames(nil, netID)
		return
	}
	d, caps, err := c.driver(ctx, n.Driver)
	if err != nil {
		p.failed[netID] = true
		return
	}
	if caps.GetConnectivityScope() == pb.Scope_SCOPE_GLOBAL {
		p.syncNames(n, netID)
	}
	peerer := driver.Peers(d, caps)
	if peerer == nil {
		return
	}
	want := p.wanted(netID)
	np := c.netProto(n)
	if sent := p.sent[netID]; !whole && sent != nil {
		if err := p.sendChanges(ctx, peerer, n, np, sent, want); err != nil {
			p.failed[netID] = true
			return
		}
		p.sent[netID] = want
		return
	}
	var all []*pb.Peer
	for _, pp := range want {
		all = append(all, pp)
	}
	if err := peerer.PeerAdd(ctx, &pb.PeerRequest{Network: np, Peers: all, Replace: true}); err != nil {
		c.log.Error("sending a network's peers to its driver", "network", n.Name, "peers", len(all), "error", err)
		p.failed[netID] = true
		return
	}
	p.sent[netID] = want
	delete(p.failed, netID)
}

// wanted is the peers the driver of network netID should hold: the
// remote endpoints on live hosts, by endpoint ID.
func (p *peerSync) wanted(netID string) map[string]*pb.Peer {
	want := map[string]*pb.Peer{}
	for id, ep := range p.remote[netID] {
		if !p.alive(ep.HostID) {
			continue
		}
		if pp := peerOf(ep); pp != nil {
			want[id] = pp
		}
	}
	return want
}

// sendChanges withdraws from the driver of network n (np, as drivers see
// it) the peers of sent that want no longer has, or has otherwise, and
// sends those of want it lacks.
func (p *peerSync) sendChanges(ctx context.Context, peerer driver.Peerer, n *Network, np *pb.Network, sent, want map[string]*pb.Peer) error {
	var gone, added []*pb.Peer
	for id, pp := range sent {
		if w, ok := want[id]; !ok || !proto.Equal(w, pp) {
			gone = append(gone, pp)
		}
	}
	for id, pp := range want {
		// A peer holding an address or MAC of one withdrawn goes again
		// after the withdrawal, which takes the driver's entries for
		// them: an endpoint that took over the address of one deleted
		// (the same MAC, since MACs follow addresses) may come before
		// the deletion, as the store's watch gives one listing's PUTs
		// before its DELETEs.
		if s, ok := sent[id]; !ok || !proto.Equal(s, pp) || slices.ContainsFunc(gone, func(g *pb.Peer) bool { return sharesEntries(pp, g) }) {
			added = append(added, pp)
		}
	}
	if len(gone) > 0 {
		if err := peerer.PeerDelete(ctx, &pb.PeerRequest{Network: np, Peers: gone}); err != nil {
			p.c.log.Error("withdrawing peers from a driver", "network", n.Name, "peers", len(gone), "error", err)
			return err
		}
	}
	if len(added) > 0 {
		if err := peerer.PeerAdd(ctx, &pb.PeerRequest{Network: np, Peers: added}); err != nil {
			p.c.log.Error("sending peers to a driver", "network", n.Name, "peers", len(added), "error", err)
			return err
		}
	}
	return nil
}

// syncNames makes the name index hold the names of network n's remote
// endpoints that are joined to a sandbox; n nil removes them all.
func (p *peerSync) syncNames(n *Network, netID string) {
	had := p.named[netID]
	now := map[string]bool{}
	if n != nil {
		for id, ep := range p.remote[netID] {
			if ep.SandboxID == "" || !p.alive(ep.HostID) {
				continue
			}
			p.c.names.add(n, ep, "")
			now[id] = true
		}
	}
	for id := range had {
		if !now[id] {
			p.c.names.remove(id)
		}
	}
	if len(now) == 0 {
		delete(p.named, netID)
	} else {
		p.named[netID] = now
	}
	if n == nil {
		p.c.names.forgetNetwork(netID) // not (or no longer) on this host
	}
}

// sharesEntries reports whether peers a and b name the same MAC or an
// address in common: a driver's entries for one are the other's.
func sharesEntries(a, b *pb.Peer) bool {
	return a.GetMac() == b.GetMac() ||
		a.GetAddress() != "" && a.GetAddress() == b.GetAddress() ||
		a.GetAddressV6() != "" && a.GetAddressV6() == b.GetAddressV6()
}

// peerOf is the peer an endpoint of another host is, or nil when its
// record says too little to reach it (no VTEP, MAC or address).
func peerOf(ep *Endpoint) *pb.Peer {
	if ep.VTEP == "" || ep.MAC == "" || !ep.Address.IsValid() && !ep.AddressV6.IsValid() {
		return nil
	}
	pp := &pb.Peer{EndpointId: ep.ID, Mac: ep.MAC, Vtep: ep.VTEP, HostId: ep.HostID}
	if ep.Address.IsValid() {
		pp.Address = ep.Address.String()
	}
	if ep.AddressV6.IsValid() {
		pp.AddressV6 = ep.AddressV6.String()
	}
	return pp
}
