package controller

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/sandnet/sandnet/core/resolver"
)

// hostView is what the host listener sees: "name.network" on every
// network of the index. A bare "name" is not answered: from the host it
// could be a container of any network. It implements resolver.Backend.
type hostView struct{ x *nameIndex }

// Lookup cuts the network's name off the end, as a sandbox's resolver
// does: names and networks may both have dots (db.local.my.net).
func (v hostView) Lookup(name string) (v4, v6 []netip.Addr, found bool) {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	for _, nn := range v.x.nets {
		base, ok := cutNetwork(name, nn.name)
		if !ok {
			continue
		}
		a4, ok4 := nn.v4[base]
		a6, ok6 := nn.v6[base]
		if ok4 || ok6 {
			v4, v6, found = appendClipped(v4, a4), appendClipped(v6, a6), true
		}
	}
	return v4, v6, found
}

func (v hostView) ReverseLookup(ip netip.Addr) (string, bool) {
	v.x.mu.RLock()
	defer v.x.mu.RUnlock()
	for _, nn := range v.x.nets {
		if p, ok := nn.ptr[ip]; ok {
			return p, true
		}
	}
	return "", false
}

// Forward is ForwardNone: the host has its own resolver for the rest, and
// a listener that forwarded would be an open resolver on the host.
func (hostView) Forward() resolver.Forwarding { return resolver.ForwardNone }

// startHostListener serves the container names on Config.HostListen, in
// the agent's namespace, when it is set.
func (c *Controller) startHostListener() error {
	r, err := c.listenHost(c.cfg.HostListen)
	if err != nil {
		return err
	}
	c.useHostDNS(r)
	return nil
}

// useHostDNS makes r (nil: none) the host listener and stops the one it
// replaces.
func (c *Controller) useHostDNS(r *resolver.Resolver) {
	c.mu.Lock()
	old := c.hostDNS
	c.hostDNS = r
	c.mu.Unlock()
	if old != nil {
		_ = old.Stop()
	}
}

// SetHostListen moves the host listener to ap (a reload of resolver {
// host_listen }); the zero ap turns it off. The new listener starts
// before the old one stops, so an address it cannot listen on is an
// error that leaves the old one serving.
func (c *Controller) SetHostListen(ap netip.AddrPort) error {
	r, err := c.listenHost(ap)
	if err != nil {
		return err
	}
	c.useHostDNS(r)
	if r == nil {
		c.log.Info("no longer answering container names for the host")
	}
	return nil
}

// listenHost starts a resolver answering the container names for the
// host on ap, UDP and TCP, in the agent's namespace; nil for the zero ap.
func (c *Controller) listenHost(ap netip.AddrPort) (*resolver.Resolver, error) {
	if !ap.IsValid() {
		return nil, nil
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("resolver host_listen %s: %w", ap, err)
	}
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("resolver host_listen %s: %w", ap, err)
	}
	c.dnsMu.Lock()
	cfg := c.cfg.Resolver
	c.dnsMu.Unlock()
	cfg.Logger = c.log.Named("dns-host")
	r := resolver.New(cfg, hostView{x: c.names})
	if err := r.StartWith(udp, tcp); err != nil {
		return nil, fmt.Errorf("resolver host_listen %s: %w", ap, err)
	}
	c.log.Info("answering container names for the host", "listen", ap)
	return r, nil
}
