package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
)

// freeze is how long TestOverlayConsulFrozen keeps Consul stopped.
const freeze = 10 * time.Second

// TestOverlayConsulFrozen: two agents share Consul and an overlay
// network; Consul is frozen (SIGSTOP: its sockets stay open, nothing
// answers) for 10 s.
//
//   - Traffic between the containers already on A and B keeps flowing:
//     TCP connects both ways succeed throughout the freeze.
//   - A new attach answers 503 once the store's timeout passes, both kinds: a
//     connect of an existing sandbox on B, and a sandbox created with the
//     network on A. Neither leaves a link behind.
//   - Once Consul runs again (SIGCONT, nothing restarted), both attaches
//     succeed, each new container is reached from the other host and by
//     name, both hosts list the same endpoints and are live in each
//     other's `host ls`, and each holds neighbour and forwarding entries
//     for exactly the other's endpoints (none for its own, none for one
//     a 503 left half-written); every endpoint has its address and every
//     allocated address its endpoint.
//   - Once everything is deleted, nothing is left on either host and no
//     key of the network in Consul.
func TestOverlayConsulFrozen(t *testing.T) {
	hosts := overlayHosts(t, 2)
	a, b := hosts[0], hosts[1]
	consul := a.consul
	ctx := context.Background()
	if _, err := a.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "ov", Driver: "overlay", Subnet: "10.77.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ca := attach(t, a.c(), "ov", "ca")
	cb := attach(t, b.c(), "ov", "cb")
	serve(t, ca.key, "ca")
	serve(t, cb.key, "cb")
	reachable(t, ca.key, cb.addr.String(), "cb")
	reachable(t, cb.key, ca.addr.String(), "ca")
	sbF, err := b.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "cf"})
	if err != nil {
		t.Fatal(err)
	}
	linksA, linksB := hostLinks(t, a), hostLinks(t, b)

	consul.Pause()
	frozen := time.Now()
	t.Cleanup(consul.Resume) // a test failing mid-freeze must not leave the agents' cleanup hanging
	flowing := func(when string) {
		t.Helper()
		for _, x := range []struct{ from, to container }{{ca, cb}, {cb, ca}} {
			if out, err := talk(t, x.from.key, "tcp", x.to.addr.String()+":7777"); err != nil || !strings.HasPrefix(out, "hello from "+x.to.id) {
				t.Fatalf("%s, %s to %s over TCP: %q, %v", when, x.from.id, x.to.id, out, err)
			}
		}
	}
	flowing("Consul just frozen")

	// New attaches answer 503 once the store's timeout (2s, in
	// overlayHostsWith) passes, and leave nothing behind.
	const storeTimeout = 2 * time.Second
	for _, x := range []struct {
		what   string
		attach func(context.Context) error
	}{
		{"connecting cf on B", func(ctx context.Context) error {
			_, err := b.c().Connect(ctx, "ov", controller.Connect{Container: "cf"})
			return err
		}},
		{"creating cn on A with the network", func(ctx context.Context) error {
			_, err := a.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "cn", Networks: []controller.SandboxNetwork{{Network: "ov"}}})
			return err
		}},
	} {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second) // the test's bound, not the agent's
		start := time.Now()
		err := x.attach(cctx)
		took := time.Since(start)
		cancel()
		if !isStatus(err, http.StatusServiceUnavailable) {
			t.Fatalf("%s while Consul is frozen: %v after %s, want a 503", x.what, err, took.Round(time.Millisecond))
		}
		// About one store timeout; that it is not two is
		// TestFailedCreateWithNetworksLeavesNothing's to check, without
		// a clock: a loaded machine must not fail this test.
		t.Logf("%s while Consul is frozen: 503 after %s (store timeout %s): %v", x.what, took.Round(time.Millisecond), storeTimeout, err)
		flowing("Consul frozen, after " + x.what)
	}
	if now := hostLinks(t, a); !slices.Equal(now, linksA) {
		t.Errorf("host A's links after a failed attach: %v, want those before it: %v", now, linksA)
	}
	if now := hostLinks(t, b); !slices.Equal(now, linksB) {
		t.Errorf("host B's links after a failed attach: %v, want those before it: %v", now, linksB)
	}
	for time.Since(frozen) < freeze {
		flowing(fmt.Sprintf("Consul frozen %s", time.Since(frozen).Round(time.Second)))
		time.Sleep(500 * time.Millisecond) // pacing the checks over the freeze, not waiting for a condition
	}
	consul.Resume()
	t.Logf("Consul resumed after %s", time.Since(frozen).Round(time.Millisecond))

	// Converged, nothing restarted: the same attaches succeed.
	var last error
	var epF *controller.Endpoint
	agenttest.Eventually(t, "connecting cf on B once Consul runs again", func() bool {
		epF, last = b.c().Connect(ctx, "ov", controller.Connect{Container: "cf"})
		return last == nil
	})
	var sbN *controller.Sandbox
	agenttest.Eventually(t, "creating cn on A once Consul runs again", func() bool {
		sbN, last = a.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "cn", Networks: []controller.SandboxNetwork{{Network: "ov"}}})
		return last == nil
	})
	// Not from the network's listing: the record a 503 left half-written
	// may land when Consul wakes, naming cf's sandbox, until it is rolled
	// back in the background.
	cf := container{id: "cf", key: sbF.Key, addr: epF.Address.Addr()}
	cn := container{id: "cn", key: sbN.Key, addr: sbN.Endpoints[0].Address.Addr()}
	serve(t, cf.key, "cf")
	serve(t, cn.key, "cn")
	reachable(t, ca.key, cf.addr.String(), "cf")
	reachable(t, cb.key, cn.addr.String(), "cn")
	reachable(t, cf.key, cn.addr.String(), "cn")
	reachableByName(t, ca, "cf", "cf")
	reachableByName(t, cf, "cn", "cn")
	flowing("Consul running again")

	// The peers agree: the same four endpoints on both hosts (none left
	// half-written by a 503), both live, and each host's entries exactly
	// those of the other's endpoints.
	agenttest.Eventually(t, "hosts A and B listing the same endpoints of ov", func() bool {
		return slices.Equal(endpointsOf(t, a), endpointsOf(t, b)) && len(endpointsOf(t, a)) == 4
	})
	for _, h := range hosts {
		for _, other := range hosts {
			agenttest.Eventually(t, fmt.Sprintf("host %s live in the host ls of %s", other.vtep, h.vtep), func() bool {
				st, _ := hostState(t, h, selfID(t, other))
				return st == controller.HostLive
			})
		}
	}
	for _, h := range hosts {
		agenttest.Eventually(t, "host "+h.vtep+" holding entries for exactly the other host's endpoints", func() bool {
			return slices.Equal(entries(t, h.key), wantEntries(t, h))
		})
	}
	// Every endpoint has its address, every allocated address its
	// endpoint: nothing the 503s half-wrote lingers.
	withAddr := map[string]bool{}
	for _, ep := range endpointsOfNetwork(t, a) {
		if !ep.Address.IsValid() || ep.SandboxID == "" {
			t.Fatalf("half-written endpoint: %+v", ep)
		}
		withAddr[ep.Address.Addr().String()] = true
	}
	agenttest.Eventually(t, "the allocated addresses in Consul being the endpoints' (nothing the 503s left)", func() bool {
		keys := consulKeys(t, consul.Addr(), "sandnet/v1/ipam/addrs/")
		if len(keys) != len(withAddr) {
			return false
		}
		for _, k := range keys {
			if !withAddr[k[strings.LastIndexByte(k, '/')+1:]] {
				return false
			}
		}
		return true
	})

	// Teardown: nothing left on either host, nothing of the network in
	// Consul.
	for _, x := range []struct {
		h  *overlayHost
		id string
	}{{a, "ca"}, {a, "cn"}, {b, "cb"}, {b, "cf"}} {
		if err := x.h.c().DeleteSandbox(ctx, x.id); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.c().DeleteNetwork(ctx, "ov"); err != nil {
		t.Fatal(err)
	}
	requireOverlayGone(t, hosts...)
	if left := consulLeftovers(t, consul.Addr()); len(left) > 0 {
		t.Fatalf("keys left in Consul once everything was deleted: %v", left)
	}
}

// entries lists the permanent neighbour and forwarding entries in the
// namespace at key (as overlayLeftovers words them), sorted.
func entries(t *testing.T, key string) []string {
	t.Helper()
	var out []string
	for _, l := range overlayLeftovers(t, key) {
		if strings.HasPrefix(l, "entry ") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// wantEntries is what entries should list on h once it agrees with the
// store: for each endpoint of network ov on another host, a neighbour
// entry (its address → its MAC) and a forwarding entry (its MAC → its
// host's VTEP), sorted.
func wantEntries(t *testing.T, h *overlayHost) []string {
	t.Helper()
	var out []string
	for _, ep := range endpointsOfNetwork(t, h) {
		if ep.VTEP != h.vtep {
			out = append(out, fmt.Sprintf("entry %s → %s", ep.Address.Addr(), ep.MAC), fmt.Sprintf("entry %s → %s", ep.VTEP, ep.MAC))
		}
	}
	slices.Sort(out)
	return out
}

// hostLinks lists the names of the links in h's namespace, sorted.
func hostLinks(t *testing.T, h *overlayHost) []string {
	t.Helper()
	var names []string
	for _, l := range overlayLeftovers(t, h.key) {
		if strings.HasPrefix(l, "link ") {
			names = append(names, l)
		}
	}
	slices.Sort(names)
	return names
}

// endpointsOfNetwork is network ov's endpoints as h's agent lists them.
func endpointsOfNetwork(t *testing.T, h *overlayHost) []controller.Endpoint {
	t.Helper()
	n, err := h.c().Network(context.Background(), "ov")
	if err != nil {
		t.Fatal(err)
	}
	return n.Endpoints
}

// endpointsOf is the sorted IDs of network ov's endpoints as h's agent
// lists them.
func endpointsOf(t *testing.T, h *overlayHost) []string {
	t.Helper()
	var ids []string
	for _, ep := range endpointsOfNetwork(t, h) {
		ids = append(ids, ep.ID)
	}
	slices.Sort(ids)
	return ids
}
