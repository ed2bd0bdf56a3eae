//go:build !linux

package resolver

import "net"

func tuneUDP(c *net.UDPConn) {}

// serveUDP answers UDP queries until the socket is closed.
func (r *Resolver) serveUDP(run *run) {
	defer run.wg.Done()
	r.serveUDPEach(run)
}
