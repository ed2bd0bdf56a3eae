package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// reachableByName polls until the container from resolves name with its
// embedded resolver and gets an answer from who at that address over TCP
// and over UDP.
func reachableByName(t *testing.T, from container, name, who string) {
	t.Helper()
	agenttest.Eventually(t, fmt.Sprintf("TCP and UDP from %s to %s by the name %s", from.id, who, name), func() bool {
		addr := dig(t, from.key, "+short", name)
		if net.ParseIP(addr) == nil {
			return false
		}
		out, err := talk(t, from.key, "tcp", addr+":7777")
		if err != nil || !strings.HasPrefix(out, "hello from "+who) {
			return false
		}
		out, err = talk(t, from.key, "udp", addr+":7777")
		return err == nil && out == "hello from "+who
	})
}

// onLink routes subnet straight out of the container's eth0, so that
// the container tries the addresses of subnet on its own network's
// segment (it asks for them by ARP there) rather than failing at once
// for want of a route.
func onLink(t *testing.T, c container, subnet string) {
	t.Helper()
	nstest.WithHandle(t, c.key, func(h *netlink.Handle) error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		return h.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: mustNet(subnet), Scope: netlink.SCOPE_LINK})
	})
}

// probe is a try that must get no answer: from the container from to
// addr, port 7777.
type probe struct {
	from container
	addr string
	what string
}

// cannotReach asserts, for every probe at once, that a TCP connect fails
// or times out within a second and a UDP datagram draws no answer within
// a second. The caller shows first, with positive controls, that each
// probe's container reaches its own network's peers and that each addr
// answers its own: without that this would pass for nothing.
func cannotReach(t *testing.T, probes ...probe) {
	t.Helper()
	errs := make(chan error, len(probes))
	for _, p := range probes {
		go func() {
			errs <- nstest.Do(p.from.key, func() error {
				if c, err := net.DialTimeout("tcp", p.addr+":7777", time.Second); err == nil {
					c.Close()
					return fmt.Errorf("%s: a TCP connect from %s to %s succeeded", p.what, p.from.id, p.addr)
				}
				c, err := net.Dial("udp", p.addr+":7777")
				if err != nil {
					return nil // no way out at all: no answer either
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Second))
				if _, err := c.Write([]byte("hi")); err != nil {
					return nil
				}
				buf := make([]byte, 512)
				if n, err := c.Read(buf); err == nil {
					return fmt.Errorf("%s: %s got %q from %s over UDP", p.what, p.from.id, buf[:n], p.addr)
				}
				return nil
			})
		}()
	}
	for range probes {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestOverlayThreeHosts: three agents on three "hosts" share Consul and
// an overlay network ov1; host A also has a local bridge network br and
// A and B a second overlay network ov2.
//
//   - The containers of ov1 on A, B and C reach each other over TCP and
//     UDP by name and by alias (each name resolved by the asking
//     container's embedded resolver), and PTR of each one's address
//     answers its name.network on the other hosts.
//   - Isolation, each negative checked after positive controls on the
//     same paths (the asking container reaches its own network's peers,
//     the target answers its own): a container of ov1 on B, routed to
//     br's subnet through its ov1 interface, gets no answer from A's
//     container on br (and B neither lists br nor attaches to it); a
//     container of ov1, routed to ov2's subnet the same way, gets no
//     answer from ov2's containers on its own host and on the other, nor
//     the other way; names of one overlay do not resolve on the other.
//   - Once everything is deleted, nothing is left on any host (links,
//     neighbour and forwarding entries, nft rules), and no key of a
//     network, endpoint, sandbox or allocation is left in Consul.
func TestOverlayThreeHosts(t *testing.T) {
	hosts := overlayHostsWith(t, 3, "driver \"bridge\" {}\n")
	a, b, c := hosts[0], hosts[1], hosts[2]
	ctx := context.Background()
	for _, n := range []controller.NetworkCreate{
		{Name: "ov1", Driver: "overlay", Subnet: "10.74.0.0/24"},
		{Name: "ov2", Driver: "overlay", Subnet: "10.75.0.0/24"},
		// No container anywhere: set up on host A alone, by its create.
		{Name: "ov3", Driver: "overlay", Subnet: "10.77.0.0/24"},
		{Name: "br", Driver: "bridge", Subnet: "10.76.0.0/24"},
	} {
		if _, err := a.c().CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	ca := attachWith(t, a.c(), "ov1", "ca", controller.Connect{Aliases: []string{"alpha"}})
	cb := attachWith(t, b.c(), "ov1", "cb", controller.Connect{Aliases: []string{"bravo"}})
	cc := attachWith(t, c.c(), "ov1", "cc", controller.Connect{Aliases: []string{"charlie"}})
	da := attach(t, a.c(), "ov2", "da")
	db := attach(t, b.c(), "ov2", "db")
	abr := attach(t, a.c(), "br", "abr")
	for _, x := range []container{ca, cb, cc, da, db, abr} {
		serve(t, x.key, x.id)
	}

	// Names, aliases and PTR across the three hosts.
	ov1 := []struct {
		c     container
		alias string
	}{{ca, "alpha"}, {cb, "bravo"}, {cc, "charlie"}}
	for _, from := range ov1 {
		for _, to := range ov1 {
			if from.c.id == to.c.id {
				continue
			}
			reachableByName(t, from.c, to.c.id, to.c.id)
			reachableByName(t, from.c, to.alias, to.c.id)
			if got, want := dig(t, from.c.key, "+short", "-x", to.c.addr.String()), to.c.id+".ov1."; got != want {
				t.Errorf("PTR of %s (%s) from %s = %q, want %q", to.c.addr, to.c.id, from.c.id, got, want)
			}
		}
	}

	// Positive controls: each container below reaches a peer of its own
	// network over the interface the negatives go out of, and each
	// target answers on its own network.
	reachable(t, cb.key, ca.addr.String(), "ca")  // B's ov1 container, out of its eth0
	reachable(t, ca.key, cb.addr.String(), "cb")  // A's ov1 container, across
	reachable(t, ca.key, cc.addr.String(), "cc")  // and to the third host
	reachable(t, db.key, da.addr.String(), "da")  // ov2 works across hosts,
	reachable(t, da.key, db.addr.String(), "db")  // both ways
	reachable(t, a.key, abr.addr.String(), "abr") // A's bridge container answers (from A's own namespace, via the bridge)

	// A's bridge network is A's alone.
	if _, err := b.c().Network(ctx, "br"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("host B's network br: %v, want not found (a local network of A's)", err)
	}
	onLink(t, cb, "10.76.0.0/24")

	// The two overlay networks, on one host and across hosts.
	for _, x := range []container{ca, cb} {
		onLink(t, x, "10.75.0.0/24")
	}
	for _, x := range []container{da, db} {
		onLink(t, x, "10.74.0.0/24")
	}
	cannotReach(t,
		probe{cb, abr.addr.String(), "ov1 on B to A's bridge network"},
		probe{ca, da.addr.String(), "ov1 to ov2 on host A"},
		probe{cb, da.addr.String(), "ov1 on B to ov2 on A"},
		probe{da, ca.addr.String(), "ov2 to ov1 on host A"},
		probe{db, ca.addr.String(), "ov2 on B to ov1 on A"},
	)
	for _, x := range []struct {
		from container
		name string
	}{{ca, "da"}, {cb, "da"}, {da, "ca"}, {db, "cb"}, {db, "alpha"}} {
		if got := dig(t, x.from.key, "+short", x.name); got != "" {
			t.Errorf("%s resolves %s, a container of another network, to %q", x.from.id, x.name, got)
		}
	}
	// The controls again: the negatives were not a path gone down.
	reachable(t, cb.key, ca.addr.String(), "ca")
	reachable(t, da.key, db.addr.String(), "db")
	reachable(t, a.key, abr.addr.String(), "abr")

	// Teardown: every container, then the networks; nothing left on any
	// host, nothing of the networks in Consul.
	for _, h := range hosts {
		sbs, err := h.c().Sandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sb := range sbs {
			if err := h.c().DeleteSandbox(ctx, sb.ContainerID); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The global networks go from host B: host A, which created them,
	// tears them down on the store's word, as host C does.
	for _, n := range []string{"ov1", "ov2", "ov3"} {
		if err := b.c().DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.c().DeleteNetwork(ctx, "br"); err != nil {
		t.Fatal(err)
	}
	requireOverlayGone(t, hosts...)
	if left := consulLeftovers(t, a.consul.Addr()); len(left) > 0 {
		t.Fatalf("keys left in Consul once everything was deleted: %v", left)
	}
}
