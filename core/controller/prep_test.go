package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// checkPreparedJoin checks the sandbox of container at key after its
// attach made endpoint ep on a network with gateway gw: eth0 is the pair
// the driver prepared, if a join took one (it must have when mustPrepared),
// with ep's address, the default route through gw, and the container's
// name resolving to ep's address inside.
func (e *env) checkPreparedJoin(t *testing.T, container, key string, ep *Endpoint, mustPrepared bool, gw string) {
	t.Helper()
	if want, ok := e.veth.preparedJoin(ep.ID); ok {
		var index int
		nstest.WithHandle(t, key, func(h *netlink.Handle) error {
			l, err := h.LinkByName("eth0")
			if err == nil {
				index = l.Attrs().Index
			}
			return err
		})
		if index != want {
			t.Fatalf("%s took the pair prepared for endpoint %s but its eth0 is ifindex %d, not the prepared %d", container, short(ep.ID), index, want)
		}
	} else if mustPrepared {
		t.Fatalf("%s: endpoint %s did not finish a prepared attach", container, short(ep.ID))
	}
	if got, want := fmt.Sprint(addresses(t, key)), fmt.Sprintf("map[eth0:[%s]]", ep.Address); got != want {
		t.Fatalf("%s: addresses in the sandbox = %s, want %s", container, got, want)
	}
	if got := defaultGateway(t, key); got != gw+" dev eth0" {
		t.Fatalf("%s: default route = %q, want via %s", container, got, gw)
	}
	if got := resolve(t, key, container); !strings.Contains(got, ep.Address.Addr().String()) {
		t.Fatalf("%s resolves to %q in its sandbox, want %s", container, got, ep.Address.Addr())
	}
}

// pendingPrep is the prepared attach container's sandbox holds for its
// first connect, or nil.
func (e *env) pendingPrep(container string) *preparedAttach {
	op, err := e.c.byContainerID(container)
	if err != nil {
		e.t.Fatal(err)
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.prep
}

// hostEndGone says whether the host end of the pair prepared for
// endpoint epID is gone.
func hostEndGone(t *testing.T, epID string) bool {
	host, _ := names(epID)
	return !slices.ContainsFunc(nstest.Links(t, nil), func(l netlink.Link) bool { return l.Attrs().Name == host })
}

// Docker's flow, a create without networks and then a connect, goes
// through the same prepared attach as a create naming its network: once
// a sandbox created without networks was connected to red, such creates
// get spares prepared for red, and the connect finishes the prepared
// pair. A connect to another network discards the prepared interface
// (the container has that network's alone); one no connect reaches in
// time loses it, and creates get plain spares again until the next
// connect; a delete leaves nothing behind.
func TestTwoRequestAttachUsesPreparedSpare(t *testing.T) {
	e := newEnv(t)
	e.veth.prepareUp = true
	e.withSpares(2)
	ctx := context.Background()
	red := e.network("red", "veth", "10.93.0.0/24")
	blue := e.network("blue", "veth", "10.94.0.0/24")
	before := e.leaks()

	e.sandbox("c0")
	if p := e.pendingPrep("c0"); p != nil {
		t.Fatalf("before any connect, a create without networks holds an attach prepared for %s", short(p.netID))
	}
	e.connect("red", "c0") // such creates go to red next
	polltest.Until(t, 15*time.Second, "two spares prepared for red", func() bool { return len(e.preparedSpares(red.ID)) == 2 })
	for i := 1; i <= 3; i++ { // the third may run out of prepared spares
		c := fmt.Sprintf("c%d", i)
		sb := e.sandbox(c)
		ep := e.connect("red", c)
		e.checkPreparedJoin(t, c, sb.Key, ep, i < 3, "10.93.0.1")
	}

	// A connect that claims the prepared attach and fails before the
	// driver takes the pair (the address asked for is c1's): the next
	// connect still gets eth0.
	polltest.Until(t, 15*time.Second, "a spare prepared for red", func() bool { return len(e.preparedSpares(red.ID)) > 0 })
	retry := e.sandbox("retry")
	if p := e.pendingPrep("retry"); p == nil || p.netID != red.ID {
		t.Fatalf("a create without networks after connects to red holds %+v; want an attach prepared for red", p)
	}
	c1, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Connect(ctx, "red", Connect{Container: "retry", IP: c1.Endpoints[0].Address.Addr().String()}); err == nil {
		t.Fatal("a connect asking for c1's address succeeded")
	}
	ep := e.connect("red", "retry")
	polltest.Until(t, 15*time.Second, "the failed claim's interface deleted", func() bool {
		return fmt.Sprint(nstest.LinkNames(t, retry.Key)) == "[eth0 lo]"
	})
	if got, want := fmt.Sprint(addresses(t, retry.Key)), fmt.Sprintf("map[eth0:[%s]]", ep.Address); got != want {
		t.Fatalf("after a failed connect, connected to red: addresses in the sandbox = %s, want %s", got, want)
	}

	// A connect to blue instead: the container has blue's interface alone.
	polltest.Until(t, 15*time.Second, "a spare prepared for red", func() bool { return len(e.preparedSpares(red.ID)) > 0 })
	sb := e.sandbox("other")
	p := e.pendingPrep("other")
	if p == nil || p.netID != red.ID {
		t.Fatalf("a create without networks after connects to red holds %+v; want an attach prepared for red", p)
	}
	ep = e.connect("blue", "other")
	polltest.Until(t, 15*time.Second, "the discarded interface deleted", func() bool {
		return fmt.Sprint(nstest.LinkNames(t, sb.Key)) == "[eth0 lo]" && hostEndGone(t, p.epID)
	})
	if got, want := fmt.Sprint(addresses(t, sb.Key)), fmt.Sprintf("map[eth0:[%s]]", ep.Address); got != want {
		t.Fatalf("connected to blue: addresses in the sandbox = %s, want %s", got, want)
	}
	if gw := defaultGateway(t, sb.Key); gw != "10.94.0.1 dev eth0" {
		t.Fatalf("connected to blue: default route = %q", gw)
	}

	// No connect in time: the prepared interface goes, and so does the
	// guess: the next create gets a plain spare.
	polltest.Until(t, 15*time.Second, "a spare prepared for blue", func() bool { return len(e.preparedSpares(blue.ID)) > 0 })
	idle := e.sandbox("idle")
	p = e.pendingPrep("idle")
	if p == nil || p.netID != blue.ID {
		t.Fatalf("after a connect to blue, a create without networks holds %+v; want an attach prepared for blue", p)
	}
	polltest.Until(t, 15*time.Second, "the unclaimed interface deleted", func() bool {
		return fmt.Sprint(nstest.LinkNames(t, idle.Key)) == "[lo]" && hostEndGone(t, p.epID)
	})
	if got := e.pendingPrep("idle"); got != nil {
		t.Fatalf("after %s, the sandbox still holds the prepared attach", unclaimedPrep)
	}
	bare := e.sandbox("bare")
	if got := fmt.Sprint(nstest.LinkNames(t, bare.Key)); got != "[lo]" || e.pendingPrep("bare") != nil {
		t.Fatalf("after a prepared attach went unused, a create without networks has %s (prepared %v); want lo alone", got, e.pendingPrep("bare") != nil)
	}
	// A late connect still works, the ordinary way.
	ep = e.connect("blue", "idle")
	if got, want := fmt.Sprint(addresses(t, idle.Key)), fmt.Sprintf("map[eth0:[%s]]", ep.Address); got != want {
		t.Fatalf("a late connect: addresses in the sandbox = %s, want %s", got, want)
	}

	// A sandbox deleted with its prepared attach pending.
	e.connect("blue", "bare") // the guess is back
	polltest.Until(t, 15*time.Second, "a spare prepared for blue", func() bool { return len(e.preparedSpares(blue.ID)) > 0 })
	e.sandbox("gone")
	if p = e.pendingPrep("gone"); p == nil {
		t.Fatal("after a connect to blue, a create without networks holds no prepared attach")
	}
	if err := e.c.DeleteSandbox(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 15*time.Second, "the prepared pair gone with the deleted sandbox", func() bool { return hostEndGone(t, p.epID) })

	// The agent stops with a prepared attach pending: the next start
	// deletes the interface, which no endpoint owns.
	e.sandbox("warm")
	e.connect("blue", "warm") // the guess is back again
	polltest.Until(t, 15*time.Second, "a spare prepared for blue", func() bool { return len(e.preparedSpares(blue.ID)) > 0 })
	cut := e.sandbox("cut")
	if p = e.pendingPrep("cut"); p == nil {
		t.Fatal("after a connect to blue, a create without networks holds no prepared attach")
	}
	e.c.Close()
	e.c = e.start()
	if _, err := e.c.RestoreSandbox(ctx, "cut"); err != nil { // claimed, as its runtime would
		t.Fatal(err)
	}
	polltest.Until(t, 15*time.Second, "the prepared interface deleted after the restart", func() bool {
		return fmt.Sprint(nstest.LinkNames(t, cut.Key)) == "[lo]" && hostEndGone(t, p.epID)
	})
	for _, c := range []string{"cut", "warm", "retry", "c0", "c1", "c2", "c3", "other", "idle", "bare"} {
		if err := e.c.DeleteSandbox(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"red", "blue"} {
		if err := e.c.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Until(t, 15*time.Second, "every pair gone", func() bool {
		return !slices.ContainsFunc(nstest.Links(t, nil), func(l netlink.Link) bool { return strings.HasPrefix(l.Attrs().Name, "vh") })
	})
	if after := e.leaks(); after != before {
		t.Fatalf("after the deletes: %+v, want %+v", after, before)
	}
}
