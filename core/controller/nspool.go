package controller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// nsPool keeps a few namespaces made ahead of time in the scratch
// directory, so that a create takes one instead of waiting for the
// kernel to make it, each with its embedded resolver's sockets already
// bound inside. They are made one at a time by a background goroutine,
// each once no attach has been in flight for quietAfter (see quietGate),
// or at once after a create found none of the kind it wanted or took the
// last (creates in a burst); Start (which empties the scratch directory)
// discards those an agent stopped with.
//
// Besides those, it keeps as many prepared for the network the last
// create with networks named first (its target): the network's driver
// has readied the attach of an endpoint whose ID the spare holds (for the
// bridge, the veth pair is made, its sandbox end inside as eth0 and its
// host end on the bridge), so that a create naming that network first
// finishes the attach instead of doing it all. A prepared spare is only
// given to such a create: one without networks, or naming another
// network first, takes a plain one. Prepared spares of another network
// than the target are destroyed (their namespace takes what was prepared
// with it).
type nsPool struct {
	log   hclog.Logger
	dir   string
	gate  *quietGate
	ready chan *spare
	kick  chan struct{}
	stop  chan struct{}
	done  sync.WaitGroup
	// prepare readies an attach to network netID in sp (sets sp.prep) or
	// reports why not; the controller's.
	prepare func(sp *spare, netID string) error

	// hurry: a create found no spare of the kind it wanted, or took the
	// last: the next is made without waiting for a quiet moment (a burst
	// of creates would otherwise find none at all), and wakes the maker
	// if it is waiting for one.
	hurry chan struct{}

	mu       sync.Mutex
	prepared []*spare // at most cap(ready), all for target
	target   string   // network ID to prepare spares for; "" for none
	barren   string   // the target whose driver prepared nothing: not asked again
	// wantPrepared: the last create wanted a prepared spare; when both
	// kinds are short, one is made first.
	wantPrepared bool
}

// spareName is the file name of a spare namespace in the scratch
// directory.
func spareName(id string) string { return sparePrefix + id }

// sparePrefix starts the names of spare namespaces.
const sparePrefix = "spare-"

// quietAfter is how long after the last attach a spare may be made: more
// than the pause between a runtime's sandbox create and its connect.
const quietAfter = time.Millisecond

// newNSPool starts a pool of size namespaces under dir; size 0 is no pool.
func newNSPool(log hclog.Logger, dir string, size int, gate *quietGate, prepare func(sp *spare, netID string) error) *nsPool {
	if size <= 0 {
		return nil
	}
	p := &nsPool{
		log: log, dir: dir, gate: gate, prepare: prepare,
		ready: make(chan *spare, size),
		kick:  make(chan struct{}, 1), hurry: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	p.done.Add(1)
	go p.fill()
	p.kick <- struct{}{}
	return p
}

// spare is a namespace made ahead of time, with the sockets of the
// resolver that will serve it bound inside.
type spare struct {
	ns      *osl.Namespace
	sockets *dnsSockets
	prep    *preparedAttach // nil: a plain spare
}

// preparedAttach is what a driver readied in a spare: the attach of
// endpoint epID to network netID, whose interface src is in the namespace.
type preparedAttach struct {
	netID, epID, src string
	up               bool // the driver's side is up already
}

// destroy destroys a spare no create took.
func (sp *spare) destroy() {
	sp.sockets.close()
	_ = sp.ns.Destroy()
}

// dnsSockets are a resolver's sockets, bound before it starts.
type dnsSockets struct {
	udp *net.UDPConn
	tcp *net.TCPListener
}

// close closes sockets a resolver never took.
func (d *dnsSockets) close() {
	if d != nil {
		d.udp.Close()
		d.tcp.Close()
	}
}

// take returns a spare from the pool, or nil when it is empty, and has
// the pool refilled. With netID, the create names that network first:
// a spare prepared for it comes first, and the network becomes the one
// spares are prepared for.
func (p *nsPool) take(netID string) *spare {
	if p == nil {
		return nil
	}
	var sp *spare
	var stale []*spare // prepared for another network: of no use any more
	p.mu.Lock()
	if netID != "" && p.target != netID {
		stale, p.prepared, p.target = p.prepared, nil, netID
	}
	if n := len(p.prepared); netID != "" && n > 0 {
		sp, p.prepared = p.prepared[n-1], p.prepared[:n-1]
	}
	p.wantPrepared = netID != "" && p.target != p.barren
	if p.wantPrepared && len(p.prepared) == 0 {
		p.hurryUp()
	}
	p.mu.Unlock()
	if len(stale) > 0 {
		go destroyAll(stale)
	}
	if sp == nil {
		select {
		case sp = <-p.ready:
		default:
		}
		if len(p.ready) == 0 {
			p.hurryUp()
		}
	}
	p.refill()
	return sp
}

// hurryUp has the next spare made at once.
func (p *nsPool) hurryUp() {
	select {
	case p.hurry <- struct{}{}:
	default:
	}
}

// refill wakes the goroutine that makes spares.
func (p *nsPool) refill() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// targetLocked is the network to prepare spares for, "" when none or
// when its driver prepared nothing when asked; p.mu held.
func (p *nsPool) targetLocked() string {
	if p.target == p.barren {
		return ""
	}
	return p.target
}

// next says what the pool lacks most: a plain spare, or one prepared
// for network target (a plain one first, unless the last create wanted
// a prepared one); neither when it is full.
func (p *nsPool) next() (plain bool, target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	target = p.targetLocked()
	needPlain := len(p.ready) < cap(p.ready)
	needPrepared := target != "" && len(p.prepared) < cap(p.ready)
	switch {
	case needPrepared && (!needPlain || p.wantPrepared):
		return false, target
	case needPlain:
		return true, ""
	}
	return false, ""
}

// forget stops preparing spares for network netID and destroys those
// prepared for it: the network is going away.
func (p *nsPool) forget(netID string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	var gone []*spare
	if p.target == netID {
		gone, p.prepared, p.target = p.prepared, nil, ""
	}
	p.mu.Unlock()
	destroyAll(gone)
}

// destroyAll destroys spares no create took.
func destroyAll(sps []*spare) {
	for _, sp := range sps {
		sp.destroy()
	}
}

func (p *nsPool) fill() {
	defer p.done.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		for {
			if plain, target := p.next(); !plain && target == "" {
				break
			}
			select {
			case <-p.hurry:
			default:
				if !p.gate.wait(quietAfter, p.stop, p.hurry) {
					return
				}
			}
			plain, target := p.next() // what a create took meanwhile counts
			if !plain && target == "" {
				continue
			}
			sp, err := p.make()
			if err != nil {
				p.log.Warn("making a namespace ahead of time", "error", err)
				break
			}
			if plain {
				p.ready <- sp
				continue
			}
			if err := p.prepare(sp, target); err != nil || sp.prep == nil {
				// Not asked again until another network is the target.
				p.mu.Lock()
				p.barren = target
				p.mu.Unlock()
				if err != nil {
					p.log.Warn("preparing an attach ahead of time", "network", short(target), "error", err)
				}
				if err == nil && sp.prep == nil && len(p.ready) < cap(p.ready) {
					p.ready <- sp // nothing in it: a plain spare
					continue
				}
				sp.destroy()
				break
			}
			p.mu.Lock()
			keep := p.target == target && len(p.prepared) < cap(p.ready)
			if keep {
				p.prepared = append(p.prepared, sp)
			}
			p.mu.Unlock()
			if !keep {
				sp.destroy() // the network changed meanwhile
				break
			}
		}
	}
}

// make makes a plain spare.
func (p *nsPool) make() (*spare, error) {
	sockets := &dnsSockets{}
	ns, err := osl.NewSpareNamespace(filepath.Join(p.dir, spareName(newID()[:16])), func() (err error) {
		sockets.udp, sockets.tcp, err = resolver.Listen()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &spare{ns: ns, sockets: sockets}, nil
}

// close stops the pool and destroys the namespaces it holds.
func (p *nsPool) close() {
	if p == nil {
		return
	}
	close(p.stop)
	p.done.Wait()
	for {
		select {
		case sp := <-p.ready:
			sp.destroy()
		default:
			p.mu.Lock()
			prepared := p.prepared
			p.prepared = nil
			p.mu.Unlock()
			destroyAll(prepared)
			return
		}
	}
}

// prepareTimeout bounds a driver's Prepare.
const prepareTimeout = 10 * time.Second

// prepareSpare has the driver of network netID ready, in sp, the attach
// of an endpoint whose ID it picks now (sp.prep, left nil when the driver
// prepares nothing). The interface is prepared under the name a sandbox's
// first interface gets.
func (c *Controller) prepareSpare(sp *spare, netID string) error {
	ctx, cancel := context.WithTimeout(c.bg, prepareTimeout)
	defer cancel()
	n, _, _, err := c.cachedNetwork(ctx, netID)
	if err != nil {
		return err
	}
	d, caps, err := c.driver(ctx, n.Driver)
	if err != nil {
		return err
	}
	if n.InDelete || caps.GetUsesHostNamespace() {
		return nil
	}
	if err := c.ensureOnHost(ctx, d, n); err != nil {
		return err
	}
	id := newID()
	resp, err := driver.Prepare(ctx, d, &pb.PrepareRequest{
		Network: c.netProto(n), EndpointId: id, SandboxKey: sp.ns.Path(), Ifname: sandbox.DefaultIfPrefix + "0",
	})
	if err != nil {
		return fmt.Errorf("driver %q: %w", n.Driver, err)
	}
	if src := resp.GetSrcName(); src != "" {
		sp.prep = &preparedAttach{netID: n.ID, epID: id, src: src, up: resp.GetUp()}
	}
	return nil
}
