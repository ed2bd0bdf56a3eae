package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/plugins/store-consul/consultest"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

func consulBlock(addr string) string {
	return fmt.Sprintf("store \"consul\" {\n  config {\n    address = %q\n    timeout = \"1s\"\n  }\n}\n", addr)
}

// TestSwapStores: the store block alone decides where state lives. An
// agent on bolt, then on Consul, then on bolt again, each time with the
// built binaries; then `store migrate` copies bolt's state to Consul and
// the agent started on Consul has every network, sandbox and endpoint.
// The run on Consul, whose store does not hold bolt's sandbox, removed
// its namespace (what a store does not hold goes at a start), so back on
// bolt the sandbox is gone and is made again before the migration.
func TestSwapStores(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	consul := consultest.Start(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	rest := fmt.Sprintf("driver \"none\" {}\nsandbox {\n  netns_dir = %q\n}\n", filepath.Join(dir, "netns"))
	onBolt := agenttest.NewEnv(t, bins, fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(dir, "bolt.db"))+rest)
	onConsul := agenttest.NewEnv(t, bins, consulBlock(consul.Addr())+rest)

	a := onBolt.Start(t)
	sameHost(t, onBolt, onConsul)
	for _, n := range []string{"alpha", "beta"} {
		if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: n, Driver: "none"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Connect(ctx, "alpha", controller.Connect{Container: "c1"}); err != nil {
		t.Fatal(err)
	}
	c1, err := a.Client.Sandbox(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	a.Terminate(10 * time.Second)

	b := onConsul.Start(t)
	if ns, err := b.Client.Networks(ctx); err != nil || len(ns) != 0 {
		t.Fatalf("a fresh Consul store shows networks: %v, %v", ns, err)
	}
	if _, err := os.Stat(c1.Key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c1's namespace, which the Consul store does not hold, after the start on it: %v; want it removed", err)
	}
	if _, err := b.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "gamma", Driver: "none"}); err != nil {
		t.Fatal(err)
	}
	b.Terminate(10 * time.Second)

	a = onBolt.Start(t)
	if ns, err := a.Client.Networks(ctx); err != nil || len(ns) != 2 {
		t.Fatalf("back on bolt: networks %v, %v; want alpha and beta", ns, err)
	}
	if sb, err := a.Client.Sandbox(ctx, "c1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("back on bolt, c1 whose namespace went: %+v, %v; want it deleted", sb, err)
	}
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Connect(ctx, "alpha", controller.Connect{Container: "c1"}); err != nil {
		t.Fatal(err)
	}
	a.Terminate(10 * time.Second)

	out, err := exec.Command(bins.Sandnet, "store", "migrate", "-from", onBolt.ConfigPath, "-to", onConsul.ConfigPath, "-force").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "copied and verified") {
		t.Fatalf("store migrate bolt → consul: %v\n%s", err, out)
	}
	b = onConsul.Start(t)
	ns, err := b.Client.Networks(ctx)
	if err != nil || len(ns) != 2 || ns[0].Name != "alpha" || ns[1].Name != "beta" {
		t.Fatalf("networks on Consul after migration: %v, %v", ns, err)
	}
	sb, err := b.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"})
	if err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("sandbox c1 on Consul after migration: %+v, %v", sb, err)
	}
}

// TestConsulOutage freezes Consul (SIGSTOP: its sockets stay open and
// nothing answers — an in-memory -dev agent that exits would forget
// everything) for 10 s while attaches run: calls fail fast with 503 saying
// the store is unreachable, nothing half-written remains (every endpoint
// has its address and every allocated address its endpoint), and the
// agent recovers by itself when Consul is back.
func TestConsulOutage(t *testing.T) {
	ctx := context.Background()
	consul, e, a := consulBridgeAgent(t, "10.47.0.0/24")
	c := a.Client
	var mu sync.Mutex
	attached := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var slowest time.Duration
	var failures, unreachable int
	for g := range 2 {
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
				start := time.Now()
				_, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
				if err == nil {
					_, err = c.Connect(ctx, "net", controller.Connect{Container: id})
				}
				took := time.Since(start)
				mu.Lock()
				if err == nil {
					attached[id] = true
				} else {
					failures++
					var ae *api.Error
					if errors.As(err, &ae) && ae.Status == 503 && strings.Contains(ae.Message, "unreachable") {
						unreachable++
					}
					if took > slowest {
						slowest = took
					}
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	time.Sleep(time.Second)
	consul.Pause()
	// doctor, asking the running agent, says its store does not answer:
	// the plugin is up, its backend is not.
	paused := time.Now()
	out, _ := sandnetCmd(t, "doctor", "--config", e.ConfigPath)
	if want := `FAIL  store "consul": the running agent at ` + e.Socket + " cannot read it:"; !strings.Contains(out, want) {
		t.Errorf("doctor with Consul frozen: want %q:\n%s", want, out)
	}
	time.Sleep(10*time.Second - time.Since(paused))
	consul.Resume()
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	if failures == 0 || unreachable == 0 {
		t.Fatalf("during the outage: %d failed calls, %d of them 503 'unreachable'; want some", failures, unreachable)
	}
	if slowest > 5*time.Second {
		t.Fatalf("a failing call took %s: calls must fail fast", slowest)
	}
	// Recovered: a new attach works.
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "after"}); err != nil {
		t.Fatalf("after Consul came back: %v", err)
	}
	if _, err := c.Connect(ctx, "net", controller.Connect{Container: "after"}); err != nil {
		t.Fatalf("after Consul came back: %v", err)
	}
	n, err := c.Network(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	withAddr := map[string]bool{}
	for _, ep := range n.Endpoints {
		if !ep.Address.IsValid() || ep.SandboxID == "" {
			t.Fatalf("half-written endpoint: %+v", ep)
		}
		withAddr[ep.Address.Addr().String()] = true
	}
	keys := consulKeys(t, consul.Addr(), "sandnet/v1/ipam/addrs/")
	if len(keys) != len(withAddr) {
		t.Fatalf("%d allocated addresses, %d endpoints with addresses: %v", len(keys), len(withAddr), keys)
	}
	for _, k := range keys {
		if !withAddr[k[strings.LastIndexByte(k, '/')+1:]] {
			t.Fatalf("address %s allocated with no endpoint", k)
		}
	}
	t.Logf("%d attaches succeeded, %d failed (%d with 503 unreachable), slowest failure %s", len(attached), failures, unreachable, slowest)
}

// consulKeys lists the keys under prefix straight from Consul's HTTP API.
func consulKeys(t *testing.T, addr, prefix string) []string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/v1/kv/" + prefix + "?keys")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return nil
	}
	var keys []string
	if err := json.NewDecoder(resp.Body).Decode(&keys); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestDriverReplayWaitsForTheStore: a driver that restarts while the
// store does not answer cannot be given its state back then; the agent
// tries the replay again until the store answers, rather than leaving
// the driver without its networks and endpoints until its next restart.
func TestDriverReplayWaitsForTheStore(t *testing.T) {
	ctx := context.Background()
	consul, _, a := consulBridgeAgent(t, "10.48.0.0/24")
	c := a.Client
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1", Networks: []controller.SandboxNetwork{{Network: "net"}}}); err != nil {
		t.Fatal(err)
	}
	before := plugins(t, a)["driver/bridge"]
	consul.Pause()
	resumed := false
	defer func() {
		if !resumed {
			consul.Resume()
		}
	}()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.UntilEmpty(t, 20*time.Second, "the replay to fail for want of the store", func() string {
		if !strings.Contains(a.Log(), "the store did not answer a replay; trying again until it does") {
			return a.Log()
		}
		return ""
	})
	consul.Resume()
	resumed = true
	polltest.UntilEmpty(t, 20*time.Second, "the replay once the store answers", func() string {
		if !strings.Contains(a.Log(), "replayed state to the driver once the store answered") {
			return a.Log()
		}
		return ""
	})
	// The endpoint works with the replayed driver: its host end is
	// there, and its disconnect removes it. (The log line above is what
	// tells a replay from none: the bridge's Leave needs no state.)
	sb, err := c.Sandbox(ctx, "c1")
	if err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("c1 after the replay: %+v, %v", sb, err)
	}
	if _, err := netlink.LinkByName(sb.Endpoints[0].HostIfName); err != nil {
		t.Fatalf("c1's host end %q after the replay: %v", sb.Endpoints[0].HostIfName, err)
	}
	if err := c.Disconnect(ctx, "net", "c1"); err != nil {
		t.Fatal(err)
	}
	polltest.UntilEmpty(t, 10*time.Second, "c1's host end to go", func() string {
		if _, err := netlink.LinkByName(sb.Endpoints[0].HostIfName); err == nil {
			return sb.Endpoints[0].HostIfName + " is still there"
		}
		return ""
	})
}

// consulBridgeAgent starts a Consul and an agent on it with the bridge
// driver, and makes a network "net" of subnet.
func consulBridgeAgent(t *testing.T, subnet string) (*consultest.Agent, *agenttest.Env, *agenttest.Agent) {
	t.Helper()
	nstest.RequireRoot(t)
	consul := consultest.Start(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, consulBlock(consul.Addr())+fmt.Sprintf("driver \"bridge\" {}\nsandbox {\n  netns_dir = %q\n}\n", filepath.Join(dir, "netns")))
	a := e.Start(t)
	// Networks outlive the agent: the bridge and its address would stay
	// in the way of a later test's network on the same subnet.
	t.Cleanup(func() { removeAll(t, a.Client) })
	if _, err := a.Client.CreateNetwork(context.Background(), controller.NetworkCreate{Name: "net", Subnet: subnet}); err != nil {
		t.Fatal(err)
	}
	return consul, e, a
}
