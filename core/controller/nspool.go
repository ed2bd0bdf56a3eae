package controller

import (
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/resolver"
)

// nsPool keeps a few namespaces made ahead of time in the scratch
// directory, so that a create takes one instead of waiting for the
// kernel to make it, each with its embedded resolver's sockets already
// bound inside. They are made one at a time by a background goroutine,
// each once no attach has been in flight for quietAfter (see quietGate);
// Start (which empties the scratch directory) discards those an agent
// stopped with.
type nsPool struct {
	log   hclog.Logger
	dir   string
	gate  *quietGate
	ready chan *spare
	kick  chan struct{}
	stop  chan struct{}
	done  sync.WaitGroup
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
func newNSPool(log hclog.Logger, dir string, size int, gate *quietGate) *nsPool {
	if size <= 0 {
		return nil
	}
	p := &nsPool{log: log, dir: dir, gate: gate, ready: make(chan *spare, size), kick: make(chan struct{}, 1), stop: make(chan struct{})}
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
// the pool refilled.
func (p *nsPool) take() *spare {
	if p == nil {
		return nil
	}
	var sp *spare
	select {
	case sp = <-p.ready:
	default:
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return sp
}

func (p *nsPool) fill() {
	defer p.done.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		for len(p.ready) < cap(p.ready) {
			if !p.gate.wait(quietAfter, p.stop) {
				return
			}
			sockets := &dnsSockets{}
			ns, err := osl.NewSpareNamespace(filepath.Join(p.dir, spareName(newID()[:16])), func() (err error) {
				sockets.udp, sockets.tcp, err = resolver.Listen()
				return err
			})
			if err != nil {
				p.log.Warn("making a namespace ahead of time", "error", err)
				break
			}
			p.ready <- &spare{ns: ns, sockets: sockets}
		}
	}
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
			sp.sockets.close()
			_ = sp.ns.Destroy()
		default:
			return
		}
	}
}
