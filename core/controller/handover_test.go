package controller

import (
	"context"
	"testing"
)

// TestReleaseHandsPortsOver: a CNI front's release (DEL) of the endpoint
// that publishes the container's ports, while the container stays on
// other networks, hands the ports over to the endpoint of one that can
// publish (not an internal one), whose record and driver then have them.
// A store that refuses the hand-over's record leaves the driver as the
// record says. An API sandbox's disconnect hands nothing over.
func TestReleaseHandsPortsOver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	ids := map[string]string{"red": e.network("red", "veth", "10.91.0.0/24").ID}
	blue := e.network("blue", "veth", "10.92.0.0/24")
	grey, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "grey", Driver: "veth", Subnet: "10.93.0.0/24", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	ids["blue"], ids["grey"] = blue.ID, grey.ID
	// onRed makes container c's sandbox (made by front) on red, publishing
	// two ports, and connects it to the other networks; it returns the
	// endpoints by network name.
	onRed := func(c, front string, others ...string) map[string]*Endpoint {
		t.Helper()
		e.sandbox(c, func(r *SandboxCreate) {
			r.Front = front
			r.Networks = []SandboxNetwork{{Network: "red", Connect: Connect{Publish: []string{"8080:80", "127.0.0.1:5353:53/udp"}}}}
		})
		eps := map[string]*Endpoint{}
		for _, n := range others {
			eps[n] = e.connect(n, c)
		}
		return eps
	}
	ports := func(c, network string) int {
		t.Helper()
		sb, err := e.c.SandboxByContainer(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range sb.Endpoints {
			if ep.NetworkID == ids[network] {
				if len(ep.Ports) > 0 && !ep.External {
					t.Fatalf("%s's endpoint on %s has ports but is not external: %+v", c, network, ep)
				}
				return len(ep.Ports)
			}
		}
		t.Fatalf("%s has no endpoint on %s", c, network)
		return 0
	}

	eps := onRed("c1", "cni", "grey", "blue")
	if err := e.c.Release(ctx, "red", "c1", ""); err != nil {
		t.Fatal(err)
	}
	if got, drv := ports("c1", "blue"), e.veth.publishedBy(eps["blue"].ID); got != 2 || drv != 2 {
		t.Fatalf("after releasing red: blue's endpoint has %d ports in its record and %d in the driver, want 2 and 2", got, drv)
	}
	if got := ports("c1", "grey"); got != 0 {
		t.Fatalf("the internal network's endpoint took %d ports", got)
	}

	eps = onRed("c2", "cni", "blue")
	e.store.fail(blue.ID)
	err = e.c.Release(ctx, "red", "c2", "")
	e.store.fail("")
	if err != nil {
		t.Fatalf("the release failed with its hand-over: %v", err)
	}
	if got, drv := ports("c2", "blue"), e.veth.publishedBy(eps["blue"].ID); got != 0 || drv != 0 {
		t.Fatalf("a hand-over whose record failed: %d ports in the record, %d in the driver, want none", got, drv)
	}

	eps = onRed("c3", "", "blue")
	if err := e.c.Disconnect(ctx, "red", "c3"); err != nil {
		t.Fatal(err)
	}
	if got, drv := ports("c3", "blue"), e.veth.publishedBy(eps["blue"].ID); got != 0 || drv != 0 {
		t.Fatalf("an API sandbox's disconnect handed %d ports over (driver: %d)", got, drv)
	}

	onRed("c4", "cni", "grey")
	if err := e.c.Release(ctx, "red", "c4", ""); err != nil {
		t.Fatal(err)
	}
	if got := ports("c4", "grey"); got != 0 {
		t.Fatalf("the internal network's endpoint took %d ports", got)
	}
}
