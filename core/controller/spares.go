package controller

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// The spares of the namespace pool (core/nspool) are made here: each is
// a namespace in the scratch directory with its embedded resolver's
// sockets bound inside, and, maybe, an attach to the pool's target
// network prepared by that network's driver (Prepare). Start (which
// empties the scratch directory) discards those an agent stopped with.

// spareName is the file name of a spare namespace in the scratch
// directory.
func spareName(id string) string { return sparePrefix + id }

// sparePrefix starts the names of spare namespaces.
const sparePrefix = "spare-"

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

// Destroy destroys a spare no create took.
func (sp *spare) Destroy() {
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

// spareMaker is the pool's nspool.Maker: it makes spares in the
// controller's scratch directory and has drivers prepare attaches in
// them.
type spareMaker struct{ c *Controller }

// Make makes a plain spare.
func (m spareMaker) Make() (*spare, error) {
	sockets := &dnsSockets{}
	ns, err := osl.NewSpareNamespace(filepath.Join(m.c.creatingDir(), spareName(newID()[:16])), func() (err error) {
		sockets.udp, sockets.tcp, err = resolver.Listen()
		return err
	})
	if err != nil {
		return nil, err
	}
	return &spare{ns: ns, sockets: sockets}, nil
}

// Prepare has the driver of network netID ready an attach in sp.
func (m spareMaker) Prepare(sp *spare, netID string) (bool, error) {
	err := m.c.prepareSpare(sp, netID)
	return sp.prep != nil, err
}

// prepareTimeout bounds a driver's Prepare.
const prepareTimeout = 10 * time.Second

// prepareSpare has the driver of network netID ready, in sp, the attach
// of an endpoint whose ID it picks now (sp.prep, left nil when the driver
// prepares nothing). The interface is prepared under the name a sandbox's
// first interface gets.
func (c *Controller) prepareSpare(sp *spare, netID string) error {
	// Background work: a restarting driver is not waited for (the spare
	// goes unprepared), nor counted among the requests waiting for it.
	ctx, cancel := context.WithTimeout(context.WithValue(c.bg, noWaitKey{}, true), prepareTimeout)
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
