package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestStorePluginKilledDuringAttaches kills the store plugin with SIGKILL
// while attaches run. The plugin is restarted; every attach that reported
// success is stored once with its address, every stored address belongs
// to a stored endpoint, and attaches work again.
func TestStorePluginKilledDuringAttaches(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	db := filepath.Join(dir, "store.db")
	e := agenttest.NewEnv(t, bins, fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\ndriver \"bridge\" {}\nsandbox {\n  netns_dir = %q\n}\n", db, filepath.Join(dir, "netns")))
	a := e.Start(t)
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "net", Subnet: "10.48.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ok := map[string]string{} // container → address
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("g%d-%d", g, i)
				if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				ep, err := c.Connect(ctx, "net", controller.Connect{Container: id})
				if err == nil {
					mu.Lock()
					ok[id] = ep.Address.Addr().String()
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	store := plugins(t, a)["store/bolt"]
	if err := syscall.Kill(store.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if got := plugins(t, a)["store/bolt"]; got.PID == store.PID || got.Restarts != 1 {
		t.Fatalf("store plugin after kill: %+v", got)
	}
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "after"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(ctx, "net", controller.Connect{Container: "after"}); err != nil {
		t.Fatalf("attach after the store plugin came back: %v", err)
	}
	n, err := c.Network(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]string{}
	for _, ep := range n.Endpoints {
		if !ep.Address.IsValid() {
			t.Fatalf("endpoint without address: %+v", ep)
		}
		if _, dup := stored[ep.Address.Addr().String()]; dup {
			t.Fatalf("address %s stored twice", ep.Address.Addr())
		}
		stored[ep.Address.Addr().String()] = ep.Name
	}
	for id, addr := range ok {
		if stored[addr] != id {
			t.Fatalf("attach of %s reported %s but the store has %q there", id, addr, stored[addr])
		}
	}
	a.Terminate(10 * time.Second)
	// Every allocated address belongs to a stored endpoint.
	s := boltstore.New()
	if err := s.Configure(ctx, []byte(fmt.Sprintf(`{"path":%q,"timeout":null,"no_sync":null}`, db))); err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	pairs, err := s.List(ctx, "sandnet/v1/ipam/addrs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != len(stored) {
		t.Fatalf("%d allocations for %d endpoints", len(pairs), len(stored))
	}
	for _, p := range pairs {
		if _, ok := stored[p.GetKey()[strings.LastIndexByte(p.GetKey(), '/')+1:]]; !ok {
			t.Fatalf("allocation %s has no endpoint", p.GetKey())
		}
	}
	t.Logf("%d attaches succeeded around the kill", len(ok))
}
