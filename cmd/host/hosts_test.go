package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// hostTTL is the agents' host_ttl in TestOverlayHostGone: the least
// Consul can keep, so that the test waits as little as it can.
const hostTTL = 20 * time.Second

// hostState returns the state host id has in h's `host ls`, "" when it
// is not listed.
func hostState(t *testing.T, h *overlayHost, id string) (string, int) {
	t.Helper()
	if x := hostOf(t, h, id); x != nil {
		return x.State, x.Endpoints
	}
	return "", 0
}

// hostOf returns host id as h's `host ls` has it, or nil.
func hostOf(t *testing.T, h *overlayHost, id string) *controller.Host {
	t.Helper()
	hs, err := h.c().Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range hs {
		if x.ID == id {
			return x
		}
	}
	return nil
}

// selfID is the ID of the host h's agent runs on.
func selfID(t *testing.T, h *overlayHost) string {
	t.Helper()
	hs, err := h.c().Hosts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range hs {
		if x.Self {
			return x.ID
		}
	}
	t.Fatalf("host ls lists no host as this one: %+v", hs)
	return ""
}

// TestOverlayHostGone: three agents on three "hosts" share Consul and an
// overlay network, with host_ttl at 20s. Agent C is killed for good:
// within host_ttl + 5 s, A and B hold no neighbour or forwarding entry
// for C's container and no longer resolve its name; `host ls` shows C
// expired with its endpoint; `host rm` of a live host, or of the agent's
// own, answers 409 and changes nothing; `host rm C` releases C's address
// (a new container on A can take it) and endpoint, and C's local network
// with its subnet (listed in `host ls` until then). Traffic between A's
// and B's containers works throughout. Once everything is deleted,
// nothing is left on A or B, and no key of a network, endpoint, sandbox
// or address allocation is left in Consul.
func TestOverlayHostGone(t *testing.T) {
	hosts := overlayHostsWith(t, 3, fmt.Sprintf("host_ttl = %q\ndriver \"bridge\" {}\n", hostTTL))
	a, b, c := hosts[0], hosts[1], hosts[2]
	ctx := context.Background()
	if _, err := a.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "ov", Driver: "overlay", Subnet: "10.71.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ca := attach(t, a.c(), "ov", "ca")
	cb := attach(t, b.c(), "ov", "cb")
	cc := attach(t, c.c(), "ov", "cc")
	for _, x := range []container{ca, cb, cc} {
		serve(t, x.key, x.id)
	}
	reachable(t, ca.key, cb.addr.String(), "cb")
	reachable(t, cb.key, ca.addr.String(), "ca")
	reachable(t, ca.key, cc.addr.String(), "cc")
	reachable(t, cb.key, cc.addr.String(), "cc")
	for _, x := range []container{ca, cb} {
		agenttest.Eventually(t, x.id+" resolving cc", func() bool { return dig(t, x.key, "+short", "cc") == cc.addr.String() })
	}
	idA, idB, idC := selfID(t, a), selfID(t, b), selfID(t, c)
	for _, id := range []string{idA, idB, idC} {
		if st, _ := hostState(t, a, id); st != controller.HostLive {
			t.Fatalf("host %s is %q in host ls, want live", id, st)
		}
	}

	// A live host, and the agent's own, are refused.
	for _, id := range []string{idC, idA} {
		if err := a.c().RemoveHost(ctx, id); !isStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "live") {
			t.Fatalf("host rm %s (live) = %v, want a 409 saying it is live", id, err)
		}
	}
	// A container on A asking for C's container's address is refused
	// while C's endpoint holds it.
	sbN, err := a.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "cn"})
	if err != nil {
		t.Fatal(err)
	}
	takeC := func() error {
		_, err := a.c().Connect(ctx, "ov", controller.Connect{Container: "cn", IP: cc.addr.String()})
		return err
	}
	if err := takeC(); !isStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("connect asking for %s, which C's container holds = %v, want a 409 saying it is in use", cc.addr, err)
	}

	// C has a local network, whose subnet the other hosts may not take.
	if _, err := c.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "lc", Driver: "bridge", Subnet: "10.73.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	takeSubnet := func() error {
		_, err := a.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "la", Driver: "bridge", Subnet: "10.73.0.0/24"})
		return err
	}
	if err := takeSubnet(); !isStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "of network lc, a local network of host "+idC) {
		t.Fatalf("a network on A on the subnet of C's local network = %v, want a 409 naming lc and C", err)
	}

	// Agent C stops for good.
	if err := c.a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.a.Wait(10 * time.Second)
	killed := time.Now()
	reachable(t, ca.key, cb.addr.String(), "cb")
	gone := func() bool {
		for _, x := range []*overlayHost{a, b} {
			if hasEntryFor(t, x.key, cc.addr.String()) {
				return false
			}
		}
		return dig(t, ca.key, "+short", "cc") == "" && dig(t, cb.key, "+short", "cc") == ""
	}
	polltest.Until(t, 3*hostTTL, "A and B withdrawing C's container", gone)
	if took := time.Since(killed); took > hostTTL+5*time.Second {
		t.Errorf("C's peers were withdrawn %s after its agent died, want within host_ttl + 5s (%s)", took.Round(time.Millisecond), hostTTL+5*time.Second)
	} else {
		t.Logf("C's peers withdrawn %s after its agent died (host_ttl %s)", took.Round(time.Millisecond), hostTTL)
	}
	reachable(t, ca.key, cb.addr.String(), "cb")
	reachable(t, cb.key, ca.addr.String(), "ca")
	if st, eps := hostState(t, a, idC); st != controller.HostExpired || eps != 1 {
		t.Fatalf("host C in host ls: %q with %d endpoints, want expired with 1", st, eps)
	}
	if h := hostOf(t, a, idC); h == nil || h.Networks != 1 {
		t.Fatalf("host C in host ls: %+v, want its local network counted", h)
	}
	// Its address stays allocated until host rm.
	if err := takeC(); !isStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("connect asking for %s, which C's expired endpoint holds = %v, want a 409 saying it is in use", cc.addr, err)
	}
	if err := a.c().RemoveHost(ctx, idB); !isStatus(err, http.StatusConflict) {
		t.Fatalf("host rm B (live) = %v, want a 409", err)
	}

	// host rm releases C's address and endpoint.
	n, err := a.c().Network(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	before := len(n.Endpoints)
	if err := a.c().RemoveHost(ctx, idC); err != nil {
		t.Fatalf("host rm C: %v", err)
	}
	if st, _ := hostState(t, a, idC); st != "" {
		t.Fatalf("host C still in host ls after host rm, as %q", st)
	}
	if err := a.c().RemoveHost(ctx, idC); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("host rm C again = %v, want a 404", err)
	}
	// C's local network went with it: its subnet is free.
	if err := takeSubnet(); err != nil {
		t.Fatalf("a network on A on the subnet of C's local network, after host rm C: %v", err)
	}
	if err := a.c().DeleteNetwork(ctx, "la"); err != nil {
		t.Fatal(err)
	}
	if n, err = a.c().Network(ctx, "ov"); err != nil {
		t.Fatal(err)
	} else if len(n.Endpoints) != before-1 {
		t.Fatalf("network ov has %d endpoints after host rm C, want %d", len(n.Endpoints), before-1)
	}
	if err := takeC(); err != nil {
		t.Fatalf("connect asking for %s once host rm released it: %v", cc.addr, err)
	}
	cn := container{id: "cn", key: sbN.Key, addr: cc.addr}
	serve(t, cn.key, "cn")
	// cn has C's container's address, so its MAC too (02:42 and the
	// address): B, whose neighbour cache still holds it, reaches cn
	// without asking, and A's bridge must not send cn's frames to C.
	reachable(t, cb.key, cn.addr.String(), "cn")
	reachable(t, cb.key, ca.addr.String(), "ca")

	// Teardown: nothing left on A and B, nothing of the network in Consul.
	for _, x := range []struct {
		h  *overlayHost
		id string
	}{{a, "ca"}, {a, "cn"}, {b, "cb"}} {
		if err := x.h.c().DeleteSandbox(ctx, x.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.c().DeleteNetwork(ctx, "ov"); err != nil {
		t.Fatal(err)
	}
	requireOverlayGone(t, a, b)
	if hs := consulKeys(t, a.consul.Addr(), "sandnet/v1/host/"); len(hs) != 2 {
		t.Errorf("host records in Consul: %v, want A's and B's", hs)
	}
	if left := consulLeftovers(t, a.consul.Addr()); len(left) > 0 {
		t.Fatalf("keys left in Consul once everything was deleted: %v", left)
	}
}

// consulLeftovers lists the keys in the Consul at addr that should be
// gone once every network and sandbox is: all of sandnet's but, left by
// design, the hosts' records and IPAM's fence of pool creation per family
// (core/ipam: releasing a pool does not touch it).
func consulLeftovers(t *testing.T, addr string) []string {
	t.Helper()
	var left []string
	for _, k := range consulKeys(t, addr, "sandnet/v1/") {
		if !strings.HasPrefix(k, "sandnet/v1/host/") && !strings.HasPrefix(k, "sandnet/v1/ipam/pools-rev/") {
			left = append(left, k)
		}
	}
	return left
}
