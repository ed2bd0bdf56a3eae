package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/plugins/store-consul/consultest"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// host makes a namespace standing for another machine, linked to the
// test's namespace by a veth: 10.98.N.1 on the test's side, 10.98.N.2 on
// the host's. It returns the namespace's key.
func host(t *testing.T, n int) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), fmt.Sprintf("host%d", n))
	ns, err := osl.NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Destroy() })
	here, there := fmt.Sprintf("toh%d", n), fmt.Sprintf("fromt%d", n)
	if err := ns.CreateVethPair(nil, here, there, 0, nil); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(here)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(l) })
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: mustNet(fmt.Sprintf("10.98.%d.1/24", n))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := ns.ConfigureInterface(osl.InterfaceConfig{SrcName: there, DstName: "eth0", Addresses: []*net.IPNet{mustNet(fmt.Sprintf("10.98.%d.2/24", n))}}); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestGlobalNetworkAcrossHosts runs two agents, each in its own network
// namespace, sharing one Consul agent. A global network created on A
// appears on B; 100 attaches split across both at once get 100 distinct
// addresses; deleting it on B is refused while A has endpoints; a local
// network stays private to its host.
func TestGlobalNetworkAcrossHosts(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	keyA, keyB := host(t, 1), host(t, 2)
	consul := consultest.StartOn(t, "127.0.0.1 10.98.1.1 10.98.2.1")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	env := func(name, netns, consulIP string) *agenttest.Env {
		e := agenttest.NewEnv(t, bins, fmt.Sprintf("store \"consul\" {\n  config {\n    address = \"%s:%d\"\n  }\n}\ndriver \"bridge\" {}\nsandbox {\n  netns_dir = %q\n}\n",
			consulIP, consul.Port(), filepath.Join(dir, name, "netns"))) // files_dir beside it: each agent its own
		e.Netns = netns
		return e
	}
	a := env("a", keyA, "10.98.1.1").Start(t)
	b := env("b", keyB, "10.98.2.1").Start(t)

	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "shared", Scope: "global", Subnet: "10.61.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "mine", Subnet: "10.62.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	n, err := b.Client.Network(ctx, "shared")
	if err != nil || n.Scope != "global" {
		t.Fatalf("host B: network shared = %+v, %v", n, err)
	}
	if _, err := b.Client.Network(ctx, "mine"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("host B sees host A's local network: %v", err)
	}

	var mu sync.Mutex
	seen := map[string]string{}
	jobs := make(chan string, 100)
	for i := range 100 {
		jobs <- fmt.Sprintf("c%03d", i)
	}
	close(jobs)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for i := range 8 {
		ag := []*agenttest.Agent{a, b}[i%2] // half the workers on each host
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				if _, err := ag.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
					errs <- err
					return
				}
				ep, err := ag.Client.Connect(ctx, "shared", controller.Connect{Container: id})
				if err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
					return
				}
				mu.Lock()
				if other, dup := seen[ep.Address.Addr().String()]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("%s and %s both got %s", other, id, ep.Address.Addr())
					return
				}
				seen[ep.Address.Addr().String()] = id
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct addresses, want 100", len(seen))
	}
	if err := b.Client.DeleteNetwork(ctx, "shared"); !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("deleting the global network on B while A has endpoints: %v, want refused", err)
	}

	// Once empty, deleting it on B tears it down on A too.
	for _, ag := range []*agenttest.Agent{a, b} {
		sbs, err := ag.Client.Sandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sb := range sbs {
			if err := ag.Client.DeleteSandbox(ctx, sb.ContainerID); err != nil {
				t.Fatal(err)
			}
		}
	}
	bridge := "snbr-" + n.ID[:8]
	nsA, err := osl.OpenNamespace(keyA)
	if err != nil {
		t.Fatal(err)
	}
	defer nsA.Close()
	if _, err := nsA.Handle().LinkByName(bridge); err != nil {
		t.Fatalf("host A has no bridge %s for the global network: %v", bridge, err)
	}
	if err := b.Client.DeleteNetwork(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "host A's bridge "+bridge+" gone after B deleted the global network", func() bool {
		_, err := nsA.Handle().LinkByName(bridge)
		return err != nil
	})
}
