package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// deadDriver answers every call on the way out as a driver plugin that is
// not running does.
type deadDriver struct{ driver.Driver }

func (deadDriver) Leave(context.Context, *pb.LeaveRequest) error {
	return fmt.Errorf("driver plugin %q is not running: %w", "veth", sdk.ErrUnavailable)
}

func (deadDriver) DeleteEndpoint(context.Context, *pb.EndpointRequest) error {
	return fmt.Errorf("driver plugin %q is not running: %w", "veth", sdk.ErrUnavailable)
}

// TestDeleteWhileDriverDown: a sandbox delete or a disconnect that fails
// because the driver is down leaves no endpoint without a sandbox; once
// the driver is back, a retry finishes it — or, for the delete, the
// driver's replay does by itself — and the network can go.
func TestDeleteWhileDriverDown(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.71.0.0/24")
	for _, finish := range []string{"retry", "replay", "disconnect"} {
		t.Run(finish, func(t *testing.T) {
			e.sandbox("c1")
			e.connect("red", "c1")
			veth := e.plugins.drivers["veth"]
			e.plugins.drivers["veth"] = deadDriver{veth}
			var err error
			if finish == "disconnect" {
				err = e.c.Disconnect(ctx, "red", "c1")
			} else {
				err = e.c.DeleteSandbox(ctx, "c1")
			}
			if !errors.Is(err, sdk.ErrUnavailable) {
				t.Fatalf("%s with the driver down = %v, want unavailable", finish, err)
			}
			n, err := e.c.Network(ctx, "red")
			if err != nil {
				t.Fatal(err)
			}
			if len(n.Endpoints) != 1 || n.Endpoints[0].SandboxID == "" {
				t.Fatalf("after the failed %s: endpoints %+v, want the one, still naming its sandbox", finish, n.Endpoints)
			}
			e.plugins.drivers["veth"] = veth
			switch finish {
			case "retry":
				err = e.c.DeleteSandbox(ctx, "c1")
			case "replay":
				err = e.c.Replay(ctx, "veth")
			case "disconnect":
				if err = e.c.Disconnect(ctx, "red", "c1"); err == nil {
					err = e.c.DeleteSandbox(ctx, "c1")
				}
			}
			if err != nil {
				t.Fatalf("finishing by %s: %v", finish, err)
			}
			if n, err := e.c.Network(ctx, "red"); err != nil || len(n.Endpoints) != 0 {
				t.Fatalf("after the %s: endpoints %+v, %v; want none", finish, n.Endpoints, err)
			}
			if _, err := e.c.SandboxByContainer(ctx, "c1"); !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("sandbox of c1 after the %s: %v, want not found", finish, err)
			}
			if l := e.leaks(); l != (leaks{}) {
				t.Fatalf("leaks after the %s: %+v", finish, l)
			}
		})
	}
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatalf("network rm: %v", err)
	}
}

// TestDriverNotLoaded: with a network's driver block gone from the config
// (the agent restarted without it), what is on the network can be
// neither used nor removed, and each refusal says so, with the remedy,
// as a 503. A connect or create changes nothing; a delete goes as far as
// it can, as with a driver that is down (TestDeleteWhileDriverDown), and
// once the driver is back, the delete finishes and leaves nothing.
func TestDriverNotLoaded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.72.0.0/24")
	e.sandbox("c1")
	e.connect("red", "c1")
	e.sandbox("c2")
	before := e.leaks()
	veth := e.plugins.drivers["veth"]
	delete(e.plugins.drivers, "veth")
	notLoaded := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), `driver "veth" is not loaded`) || !strings.Contains(err.Error(), "sandnet reload") {
			t.Errorf("%s without the driver = %v, want unavailable saying the driver is not loaded and how to load it", what, err)
		}
	}
	_, err := e.c.Connect(ctx, "red", Connect{Container: "c2"})
	notLoaded("connect", err)
	_, err = e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c3", Networks: []SandboxNetwork{{Network: "red"}}})
	notLoaded("create with the network", err)
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "blue", Driver: "veth"}); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), `no driver "veth" is loaded`) {
		t.Errorf("network create on the driver = %v, want invalid naming it", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "c3"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("the failed create left sandbox c3: %v", err)
	}
	if after := e.leaks(); after != before {
		t.Fatalf("the refusals changed state: before %+v, after %+v", before, after)
	}
	notLoaded("disconnect", e.c.Disconnect(ctx, "red", "c1"))
	notLoaded("delete", e.c.DeleteSandbox(ctx, "c1"))
	if n, err := e.c.Network(ctx, "red"); err != nil || len(n.Endpoints) != 1 {
		t.Fatalf("after the failed delete, network red = %+v, %v; want its endpoint", n, err)
	}
	e.plugins.drivers["veth"] = veth
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatalf("delete with the driver back: %v", err)
	}
	if err := e.c.DeleteSandbox(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == leaks{} })
}

// blockingCreate holds CreateNetwork until release is closed, saying on
// entered that one has begun.
type blockingCreate struct {
	driver.Driver
	entered chan struct{}
	release chan struct{}
}

func (b blockingCreate) CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) error {
	b.entered <- struct{}{}
	<-b.release
	return b.Driver.CreateNetwork(ctx, req)
}

// TestRetireDriverRacingCreate: a reload removing a driver's block
// (RetireDriver) while a network create on that driver is under way
// waits for the create and then refuses, naming the new network — it
// never stops a driver a network was just created on; a create that
// comes once the retirement has begun is refused; with no network, the
// retirement goes through, and EndRetire allows creates again.
func TestRetireDriverRacingCreate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	veth := e.plugins.drivers["veth"]
	b := blockingCreate{Driver: veth, entered: make(chan struct{}), release: make(chan struct{})}
	e.plugins.drivers["veth"] = b
	created := make(chan error, 1)
	go func() {
		_, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "late", Driver: "veth", Subnet: "10.73.0.0/24"})
		created <- err
	}()
	<-b.entered
	retired := make(chan error, 1)
	go func() { retired <- e.c.RetireDriver(ctx, "veth", time.Minute) }()
	polltest.Until(t, 10*time.Second, "the retirement begun", func() bool {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		return e.c.retiring["veth"]
	})
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "later", Driver: "veth", Subnet: "10.74.0.0/24"}); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "being removed by a reload") {
		t.Fatalf("a create once the retirement began = %v, want a conflict saying why", err)
	}
	select {
	case err := <-retired:
		t.Fatalf("the retirement answered (%v) before the create under way finished", err)
	default:
	}
	close(b.release)
	if err := <-created; err != nil {
		t.Fatalf("the create under way: %v", err)
	}
	if err := <-retired; !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), `network "late" still uses`) {
		t.Fatalf("the retirement after the create = %v, want a conflict naming network late", err)
	}
	e.plugins.drivers["veth"] = veth
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "again", Driver: "veth", Subnet: "10.75.0.0/24"}); err != nil {
		t.Fatalf("a create after the refused retirement: %v", err)
	}
	// Every network in the way is named, not only the first.
	if err := e.c.RetireDriver(ctx, "veth", time.Minute); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), `which 2 networks still use ("again", "late")`) {
		t.Fatalf("retiring a driver with two networks = %v, want a conflict naming both", err)
	}
	for _, n := range []string{"late", "again"} {
		if err := e.c.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.c.RetireDriver(ctx, "veth", time.Minute); err != nil {
		t.Fatalf("retiring a driver with no network: %v", err)
	}
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "refused", Driver: "veth", Subnet: "10.76.0.0/24"}); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("a create on a retired driver = %v, want a conflict", err)
	}
	e.c.EndRetire("veth")
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "back", Driver: "veth", Subnet: "10.76.0.0/24"}); err != nil {
		t.Fatalf("a create after EndRetire: %v", err)
	}

	// A create that does not finish within the bound: the retirement
	// gives up, saying so, and takes its mark back.
	stuck := blockingCreate{Driver: veth, entered: make(chan struct{}), release: make(chan struct{})}
	e.plugins.drivers["veth"] = stuck
	go func() {
		_, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "stuck", Driver: "veth", Subnet: "10.77.0.0/24"})
		created <- err
	}()
	<-stuck.entered
	if err := e.c.RetireDriver(ctx, "veth", 100*time.Millisecond); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "still under way") {
		t.Fatalf("retiring with a create stuck past the bound = %v, want a conflict saying creates are under way", err)
	}
	e.c.mu.Lock()
	retiring := e.c.retiring["veth"]
	e.c.mu.Unlock()
	if retiring {
		t.Fatal("the retirement that gave up kept its mark")
	}
	close(stuck.release)
	if err := <-created; err != nil {
		t.Fatalf("the create that outlasted the retirement: %v", err)
	}
	e.plugins.drivers["veth"] = veth
}
