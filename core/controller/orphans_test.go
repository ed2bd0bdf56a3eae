package controller

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk"
)

// TestReapOrphans: a front's sandbox whose runtime removed its namespace's
// path (no process in it) is deleted by reapOrphans, with its endpoint;
// one whose path is there stays, as does an API sandbox; and a front's
// sandbox whose connect hangs in the driver holds up no other's look.
func TestReapOrphans(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.94.0.0/24")
	runtimeNS := func(name string) string {
		t.Helper()
		ns, err := osl.NewNamespace(filepath.Join(e.dir, "runtime", name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ns.Destroy() })
		_ = ns.Close()
		return ns.Path()
	}
	paths := map[string]string{}
	// busy first: reapOrphans looks at sandboxes oldest first.
	for _, c := range []string{"busy", "gone", "kept"} {
		paths[c] = runtimeNS(c)
		e.sandbox(c, func(r *SandboxCreate) {
			r.Front, r.Netns = "cni", paths[c]
			if c != "busy" {
				r.Networks = []SandboxNetwork{{Network: "red"}}
			}
		})
	}
	e.sandbox("api", func(r *SandboxCreate) { r.Networks = []SandboxNetwork{{Network: "red"}} })

	// busy's connect waits in the driver, holding its sandbox.
	g := newCallGate()
	e.setGate(&e.veth.joinGate, g)
	connected := make(chan error, 1)
	go func() {
		_, err := e.c.Connect(ctx, "red", Connect{Container: "busy"})
		connected <- err
	}()
	<-g.enter
	t.Cleanup(func() {
		select {
		case <-g.open:
		default:
			close(g.open)
		}
	})
	if err := osl.Remove(paths["gone"]); err != nil {
		t.Fatal(err)
	}
	if err := osl.Remove(paths["busy"]); err != nil {
		t.Fatal(err)
	}
	reaped := make(chan struct{})
	go func() {
		e.c.reapOrphans(ctx)
		close(reaped)
	}()
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Fatal("reapOrphans still waits, 10 s on, for the sandbox whose connect hangs")
	}
	if _, err := e.c.SandboxByContainer(ctx, "gone"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the let-go sandbox after reapOrphans: %v, want it gone", err)
	}
	for _, c := range []string{"kept", "api", "busy"} {
		if _, err := e.c.SandboxByContainer(ctx, c); err != nil {
			t.Fatalf("%s after reapOrphans: %v, want it kept", c, err)
		}
	}
	e.setGate(&e.veth.joinGate, nil)
	close(g.open)
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
	e.c.reapOrphans(ctx) // busy is let go of too, now that nothing holds it
	if _, err := e.c.SandboxByContainer(ctx, "busy"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("busy after its connect and reapOrphans: %v, want it gone", err)
	}
	n, err := e.c.Network(ctx, "red")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Endpoints) != 2 { // kept's and api's
		t.Fatalf("red's endpoints after the reaping: %d, want 2 (kept, api)", len(n.Endpoints))
	}
}
