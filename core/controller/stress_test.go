package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
)

// TestConcurrentChurn runs 16 goroutines that create sandboxes, connect
// them to shared networks, disconnect and delete them, all at once, for
// 30 s (3 s with -short): no deadlock, no error but the ones concurrency
// makes legitimate, and nothing left behind.
func TestConcurrentChurn(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.100.0.0/20")
	e.network("blue", "veth", "10.101.0.0/20")
	e.network("empty", "none", "")
	d := 30 * time.Second
	if testing.Short() {
		d = 3 * time.Second
	}
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	var ops atomic.Int64
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := 0; time.Now().Before(deadline); i++ {
				container := fmt.Sprintf("g%d-%d", g, i)
				if err := churn(ctx, e.c, container, r); err != nil {
					select {
					case errs <- fmt.Errorf("%s: %w", container, err):
					default:
					}
					return
				}
				ops.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d + 2*time.Minute):
		t.Fatal("churn did not finish: deadlock")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d sandbox lifecycles in %s", ops.Load(), d)
	if l := e.leaks(); l != (leaks{}) {
		t.Fatalf("leaks after churn = %+v", l)
	}
	if sbs, _ := e.c.Sandboxes(ctx); len(sbs) != 0 {
		t.Fatalf("%d sandboxes left", len(sbs))
	}
}

// churn is one sandbox's life: create, connect to one or two networks,
// sometimes disconnect first, delete. It also races a delete of a network
// in use, which must be refused.
func churn(ctx context.Context, c *Controller, container string, r *rand.Rand) error {
	if _, err := c.NewSandbox(ctx, SandboxCreate{ContainerID: container}); err != nil {
		return err
	}
	nets := []string{"red", "blue", "empty"}
	r.Shuffle(len(nets), func(i, j int) { nets[i], nets[j] = nets[j], nets[i] })
	joined := nets[:1+r.IntN(2)]
	for _, n := range joined {
		if _, err := c.Connect(ctx, n, Connect{Container: container}); err != nil {
			return fmt.Errorf("connect %s: %w", n, err)
		}
	}
	if err := c.DeleteNetwork(ctx, joined[0]); !errors.Is(err, sdk.ErrConflict) {
		return fmt.Errorf("deleting network %s in use: err = %v, want conflict", joined[0], err)
	}
	if r.IntN(2) == 0 {
		if err := c.Disconnect(ctx, joined[0], container); err != nil {
			return fmt.Errorf("disconnect %s: %w", joined[0], err)
		}
	}
	return c.DeleteSandbox(ctx, container)
}

// TestRestartFiftySandboxes creates 50 sandboxes with endpoints, drops the
// controller as a crashed agent would and starts a new one on the same
// store: all 50 come back with their namespaces and addresses untouched;
// the 10 no container claims are deleted with no leak.
func TestRestartFiftySandboxes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.102.0.0/24")
	keys := map[string]string{}
	addrs := map[string]string{}
	for i := range 50 {
		container := fmt.Sprintf("c%02d", i)
		sb := e.sandbox(container)
		e.connect("red", container)
		keys[container] = sb.Key
		addrs[container] = fmt.Sprint(addresses(t, sb.Key))
	}
	before := e.leaks()
	c := e.start()
	e.c = c
	for i := range 40 {
		container := fmt.Sprintf("c%02d", i)
		sb, err := c.NewSandbox(ctx, SandboxCreate{ContainerID: container})
		if err != nil {
			t.Fatal(err)
		}
		if sb.Key != keys[container] {
			t.Fatalf("%s: key %s, was %s", container, sb.Key, keys[container])
		}
		if got := fmt.Sprint(addresses(t, sb.Key)); got != addrs[container] {
			t.Fatalf("%s: addresses %s, were %s", container, got, addrs[container])
		}
	}
	if after := e.leaks(); after != before {
		t.Fatalf("restart changed state: before %+v, after %+v", before, after)
	}
	c.reapStubs()
	want := leaks{mounts: 40, links: 40, allocations: 40}
	if got := e.leaks(); got != want {
		t.Fatalf("after reaping the 10 unclaimed: %+v, want %+v", got, want)
	}
	for i := 40; i < 50; i++ {
		if _, err := c.SandboxByContainer(ctx, fmt.Sprintf("c%02d", i)); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("unclaimed c%02d still there: %v", i, err)
		}
	}
}
