package controller

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// A request that needs a driver marked down waits for the driver's
// replay; one whose context ends first fails with ErrUnavailable naming
// the driver; one that outwaits Config.DriverRestartWait goes on to the
// driver's own answer.
func TestRequestsWaitForDriverReplay(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.97.0.0/24")

	e.c.DriverDown("veth")
	done := make(chan error, 1)
	go func() {
		_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1", Networks: []SandboxNetwork{{Network: "red"}}})
		done <- err
	}()
	polltest.Until(t, 15*time.Second, "the create waiting for the driver", func() bool { return e.c.driverWaiters.Load() == 1 })
	select {
	case err := <-done:
		t.Fatalf("the create finished while its driver was down: %v", err)
	default:
	}
	if err := e.c.Replay(ctx, "veth"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("create waiting for the driver's replay: %v", err)
	}
	if sb, err := e.c.SandboxByContainer(ctx, "c1"); err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("sandbox of c1 after the replay: %+v, %v", sb, err)
	}

	e.c.DriverDown("veth")
	short, cancel := context.WithCancel(ctx)
	cancel()
	_, err := e.c.NewSandbox(short, SandboxCreate{ContainerID: "c2", Networks: []SandboxNetwork{{Network: "red"}}})
	if !errors.Is(err, sdk.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("create whose context ended while the driver was down: %v, want unavailable and canceled", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "c2"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the failed create left a sandbox: %v", err)
	}

	e.c.cfg.DriverRestartWait = time.Millisecond // the driver never comes back
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c3", Networks: []SandboxNetwork{{Network: "red"}}}); err != nil {
		t.Fatalf("create after the wait's bound, the (running) driver answering: %v", err)
	}
	e.c.EndDriverWait("veth")
}

// DrainDriver waits for the requests that hold the driver (Hold) and
// not for others: a held request goes on using the driver while the
// drain waits for it (a second use does not wait on the drain), a request
// that had not used it waits for the replay, and a holder that never ends
// lets the drain give up after its bound.
func TestDrainDriverWaitsForHolders(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.98.0.0/24")
	hctx, done := e.c.Hold(ctx)
	if _, _, err := e.c.driver(hctx, "veth"); err != nil {
		t.Fatal(err)
	}
	drained := make(chan bool, 1)
	go func() { drained <- e.c.DrainDriver("veth", time.Minute) }()
	polltest.Until(t, 15*time.Second, "the drain begun", func() bool {
		e.c.mu.Lock()
		defer e.c.mu.Unlock()
		return e.c.driverDown["veth"] != nil
	})
	if _, _, err := e.c.driver(hctx, "veth"); err != nil { // would wait forever were it gated
		t.Fatalf("a second use by the holder during the drain: %v", err)
	}
	other := make(chan error, 1)
	go func() {
		octx, odone := e.c.Hold(ctx)
		defer odone()
		_, err := e.c.NewSandbox(octx, SandboxCreate{ContainerID: "c1", Networks: []SandboxNetwork{{Network: "red"}}})
		other <- err
	}()
	polltest.Until(t, 15*time.Second, "the other request waiting for the driver", func() bool { return e.c.driverWaiters.Load() == 1 })
	select {
	case ok := <-drained:
		t.Fatalf("the drain ended (%v) while a request held the driver", ok)
	default:
	}
	done()
	if ok := <-drained; !ok {
		t.Fatal("the drain gave up though the holder ended")
	}
	if err := e.c.Replay(ctx, "veth"); err != nil {
		t.Fatal(err)
	}
	if err := <-other; err != nil {
		t.Fatalf("the request that waited for the replay: %v", err)
	}

	stuck, never := e.c.Hold(ctx)
	defer never()
	if _, _, err := e.c.driver(stuck, "veth"); err != nil {
		t.Fatal(err)
	}
	if e.c.DrainDriver("veth", 50*time.Millisecond) {
		t.Fatal("the drain reported none holding the driver while one did")
	}
	e.c.EndDriverWait("veth")
}

// Background work that does not wait (a spare's prepared attach) gets
// ErrUnavailable at once from a driver that is down, and is not counted
// among the requests waiting for it.
func TestBackgroundWorkDoesNotWaitForDriver(t *testing.T) {
	e := newEnv(t)
	red := e.network("red", "veth", "10.99.0.0/24")
	e.c.DriverDown("veth")
	defer e.c.EndDriverWait("veth")
	_, _, err := e.c.driver(context.WithValue(context.Background(), noWaitKey{}, true), "veth")
	if !errors.Is(err, sdk.ErrUnavailable) || e.c.driverWaiters.Load() != 0 {
		t.Fatalf("background use of a driver that is down = %v with %d waiting, want unavailable at once", err, e.c.driverWaiters.Load())
	}
	sp := &spare{}
	if err := e.c.prepareSpare(sp, red.ID); !errors.Is(err, sdk.ErrUnavailable) || sp.prep != nil {
		t.Fatalf("preparing a spare for a network whose driver is down = %v (prep %v), want unavailable and nothing prepared", err, sp.prep)
	}
}

// TestReplayOfAHungDriver: a restarted driver that leaves a replay's call
// unanswered (its process alive) holds the replay for the call's bound
// only, not for ever (a reload waiting for it never finished, nor did
// any later one): Replay says so, the requests waiting for the driver go
// on, and the other endpoints' calls are not sent to it. A driver that
// answers with a failure is named with the endpoint.
func TestReplayOfAHungDriver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.98.0.0/24")
	for _, c := range []string{"c1", "c2"} {
		e.sandbox(c)
		e.connect("red", c)
	}
	e.c.replayCallTimeout = 300 * time.Millisecond
	g := newCallGate()
	e.setGate(&e.veth.rejoinGate, g)
	e.c.DriverDown("veth")
	start := time.Now()
	err := e.c.Replay(ctx, "veth")
	took := time.Since(start)
	e.setGate(&e.veth.rejoinGate, nil)
	close(g.open)
	if !errors.Is(err, errNoAnswer) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("Replay of a driver that hangs in Join: %v, want no answer within 300ms", err)
	}
	if n := len(g.enter); n != 1 {
		t.Fatalf("%d Joins reached the hung driver, want 1: the rest are not sent", n)
	}
	t.Logf("the replay gave up after %s", took.Round(time.Millisecond))
	if _, err := e.c.Network(ctx, "red"); err != nil { // the driver is up again for requests
		t.Fatal(err)
	}

	e.veth.mu.Lock()
	e.veth.failRejoin = true
	e.veth.mu.Unlock()
	err = e.c.Replay(ctx, "veth")
	e.veth.mu.Lock()
	e.veth.failRejoin = false
	e.veth.mu.Unlock()
	if err == nil || errors.Is(err, errNoAnswer) || !strings.Contains(err.Error(), "2 calls failed") || !strings.Contains(err.Error(), "on network red") {
		t.Fatalf("Replay of a driver whose Joins fail: %v, want both endpoints' failures counted, the first named", err)
	}
}
