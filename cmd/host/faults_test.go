package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	"golang.org/x/sys/unix"
)

// TestStorePluginKilledDuringAttaches kills the store plugin with SIGKILL
// while attaches run. The plugin is restarted; every attach that reported
// success is stored once with its address, the endpoints of those that
// failed are rolled back, every stored address belongs to a stored
// endpoint, and attaches work again.
func TestStorePluginKilledDuringAttaches(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	db := filepath.Join(dir, "store.db")
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
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
	succeeded := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(ok)
	}
	polltest.Until(t, time.Minute, "five attaches before the kill", func() bool { return succeeded() >= 5 })
	store := plugins(t, a)["store/bolt"]
	if err := syscall.Kill(store.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, time.Minute, "the store plugin restarted", func() bool {
		got := plugins(t, a)["store/bolt"]
		return got.PID != store.PID && got.Restarts == 1
	})
	// Attaches go on while those the kill cut off are rolled back in the
	// background, once the store answers again.
	before := succeeded()
	polltest.Until(t, time.Minute, "three attaches after the restart", func() bool { return succeeded() >= before+3 })
	close(stop)
	wg.Wait()
	if got := plugins(t, a)["store/bolt"]; got.PID == store.PID || got.Restarts != 1 {
		t.Fatalf("store plugin after kill: %+v", got)
	}
	// An attach that failed may have left its endpoint (and its address)
	// in the store, its outcome unknown to the agent: it goes once the
	// background rollback runs. Until then, the store holds more than the
	// attaches that succeeded, which is why the counts below wait for it.
	listed := func() map[string]string { // address → endpoint name
		n, err := c.Network(ctx, "net")
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, ep := range n.Endpoints {
			if !ep.Address.IsValid() {
				t.Fatalf("endpoint without address: %+v", ep)
			}
			if _, dup := out[ep.Address.Addr().String()]; dup {
				t.Fatalf("address %s stored twice", ep.Address.Addr())
			}
			out[ep.Address.Addr().String()] = ep.Name
		}
		return out
	}
	strays := len(listed()) - len(ok)
	polltest.Until(t, time.Minute, "the endpoints of the failed attaches rolled back", func() bool {
		return len(listed()) == len(ok)
	})
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "after"}); err != nil {
		t.Fatal(err)
	}
	after, err := c.Connect(ctx, "net", controller.Connect{Container: "after"})
	if err != nil {
		t.Fatalf("attach after the store plugin came back: %v", err)
	}
	ok["after"] = after.Address.Addr().String()
	stored := listed()
	for id, addr := range ok {
		if stored[addr] != id {
			t.Fatalf("attach of %s reported %s but the store has %q there", id, addr, stored[addr])
		}
	}
	if len(stored) != len(ok) {
		t.Fatalf("%d endpoints stored for %d attaches that succeeded: %v", len(stored), len(ok), stored)
	}
	a.Terminate(10 * time.Second)
	if final := storedEndpoints(t, db); !maps.Equal(final, stored) {
		t.Fatalf("endpoints changed after the rollbacks: %v, then %v", stored, final)
	}
	checkAllocations(t, db, stored)
	t.Logf("%d attaches succeeded around the kill; %d endpoints of failed attaches rolled back after it", len(ok), max(strays, 0))
	// Networks outlive the agent: leave none in the way of a later test.
	a = e.Start(t)
	removeAll(t, a.Client)
}

// TestAgentKilledDuringAttaches kills the agent with SIGKILL, three times,
// while attaches run: a connect writes its record while the driver and
// the namespace do their work, and a sandbox's record while its namespace
// is made, so a kill lands between the halves. After each restart: every
// attach that reported success is there, with its interface up in its
// sandbox holding its address (one goroutine of three attaches with one
// request, a create that lists the network); a sandbox's namespace has no interface
// that no endpoint owns; no half-made namespace is left; and every
// allocated address belongs to a stored endpoint.
func TestAgentKilledDuringAttaches(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	db, netnsDir := filepath.Join(dir, "store.db"), filepath.Join(dir, "netns")
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  stub_grace_period = \"1h\"\n"))
	a := e.Start(t)
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "net", Subnet: "10.49.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	ok := map[string]string{} // container → address, of attaches that succeeded
	for round := range 3 {
		var mu sync.Mutex
		var wg sync.WaitGroup
		c := a.Client
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					id := fmt.Sprintf("r%d-g%d-%d", round, g, i)
					var ep *controller.Endpoint
					if g == 0 { // the create that lists its network
						sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id, Networks: []controller.SandboxNetwork{{Network: "net"}}})
						if err != nil {
							return // the agent is gone
						}
						ep = &sb.Endpoints[0]
					} else {
						if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
							return
						}
						var err error
						if ep, err = c.Connect(ctx, "net", controller.Connect{Container: id}); err != nil {
							return
						}
					}
					mu.Lock()
					ok[id] = ep.Address.String()
					mu.Unlock()
				}
			}()
		}
		// Each round kills the agent a little further into the attaches.
		mu.Lock()
		before := len(ok)
		mu.Unlock()
		polltest.Until(t, time.Minute, fmt.Sprintf("round %d: %d attaches before the kill", round, 2+3*round), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(ok) >= before+2+3*round
		})
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		a.Wait(10 * time.Second)
		wg.Wait()
		a = e.Start(t)

		n, err := a.Client.Network(ctx, "net")
		if err != nil {
			t.Fatal(err)
		}
		bySandbox := map[string]controller.Endpoint{}
		byName := map[string]string{}
		for _, ep := range n.Endpoints {
			bySandbox[ep.SandboxID] = ep
			byName[ep.Name] = ep.Address.String()
		}
		for id, addr := range ok {
			if byName[id] != addr {
				t.Fatalf("round %d: the attach of %s reported %s; after the restart it has %q", round, id, addr, byName[id])
			}
		}
		// Every namespace holds what its endpoint says, nothing else.
		entries, err := os.ReadDir(netnsDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range entries {
			if en.Name() == ".creating" {
				left, _ := os.ReadDir(filepath.Join(netnsDir, en.Name()))
				for _, l := range left {
					if !strings.HasPrefix(l.Name(), "spare-") { // the new agent's own
						t.Fatalf("round %d: half-made namespaces left: %v", round, left)
					}
				}
				continue
			}
			if strings.HasPrefix(en.Name(), ".") {
				continue // the agent's lock file, not a sandbox
			}
			got := fmt.Sprint(interfaceSet(t, filepath.Join(netnsDir, en.Name())))
			want := "[]"
			if ep, has := bySandbox[en.Name()]; has {
				want = fmt.Sprintf("[eth0 up %s]", ep.Address)
			}
			if got != want {
				t.Fatalf("round %d: sandbox %s has interfaces %s, want %s", round, en.Name()[:12], got, want)
			}
		}
		var repaired []string
		for _, l := range strings.Split(a.Log(), "\n") {
			for _, what := range []string{"connect did not finish", "no endpoint owns", "unfinished sandbox create", "finishing sandbox delete", "deleting unclaimed"} {
				if strings.Contains(l, what) {
					repaired = append(repaired, what)
				}
			}
		}
		t.Logf("round %d: %d attaches succeeded so far, %d endpoints stored; repaired at start: %v", round, len(ok), len(n.Endpoints), repaired)
	}
	n, err := a.Client.Network(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	a.Terminate(10 * time.Second)
	stored := map[string]string{}
	for _, ep := range n.Endpoints {
		stored[ep.Address.Addr().String()] = ep.Name
	}
	checkAllocations(t, db, stored)
	// Networks outlive the agent: leave none in the way of a later test.
	a = e.Start(t)
	removeAll(t, a.Client)
}

// checkAllocations checks, with the agent stopped, that the bolt store at
// db allocates exactly the addresses of stored (address → endpoint name):
// no allocation without its endpoint.
func checkAllocations(t *testing.T, db string, stored map[string]string) {
	t.Helper()
	ctx := context.Background()
	s := openBolt(t, db)
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
}

// storedEndpoints reads, from the bolt store at db (its agent stopped),
// the name of every stored endpoint by its IPv4 address.
func storedEndpoints(t *testing.T, db string) map[string]string {
	t.Helper()
	ctx := context.Background()
	s := openBolt(t, db)
	defer s.Close(ctx)
	pairs, err := s.List(ctx, "sandnet/v1/endpoint/")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range pairs {
		var ep controller.Endpoint
		if err := json.Unmarshal(p.GetValue(), &ep); err != nil {
			t.Fatalf("endpoint record %s: %v", p.GetKey(), err)
		}
		out[ep.Address.Addr().String()] = ep.Name
	}
	return out
}

// ownHost makes a network namespace standing for the machine an agent
// runs on (Env.Netns), so that what the agent leaves in it (links,
// nftables rules) is seen apart from every other test's. It returns the
// namespace's key; the namespace goes when the test ends.
func ownHost(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "host")
	ns, err := osl.NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Destroy() })
	return key
}

// inHost runs argv inside the network namespace at key and returns its
// output.
func inHost(t *testing.T, key string, argv ...string) string {
	t.Helper()
	out, err := exec.Command("nsenter", append([]string{"--net=" + key}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// assertHostClean checks that the agent's namespace at key holds no link
// but lo and no nftables rule, and that nothing is mounted below dir but,
// while the agent runs, its spare namespaces.
func assertHostClean(t *testing.T, key, dir string, running bool) {
	t.Helper()
	if out := inHost(t, key, "ip", "-o", "link", "show"); strings.Count(out, "\n") != 1 || !strings.Contains(out, ": lo:") {
		t.Errorf("links left besides lo:\n%s", out)
	}
	if out := inHost(t, key, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
		t.Errorf("nft list ruleset is not empty:\n%s", out)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") &&
			!(running && strings.Contains(f[4], "/.creating/spare-")) {
			t.Errorf("still mounted: %s", f[4])
		}
	}
}

// TestLastNetworkRemovesRules: once the last network is deleted, the
// agent's machine holds no nftables rule and no link of sandnet's, and
// stays so after a clean stop; a stop with no network also removes a
// table an earlier run left.
func TestLastNetworkRemovesRules(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	key := ownHost(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
	e.Netns = key
	a := e.Start(t)
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "web", Subnet: "10.51.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "back", Subnet: "10.52.0.0/24", Internal: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1", Networks: []controller.SandboxNetwork{
		{Network: "web", Connect: controller.Connect{Publish: []string{"8080:80"}}}, {Network: "back"}}}); err != nil {
		t.Fatal(err)
	}
	if out := inHost(t, key, "nft", "list", "ruleset"); !strings.Contains(out, "8080") {
		t.Fatalf("no rule for the published port before the deletes: the checks below would prove nothing\n%s", out)
	}
	if err := c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteNetwork(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if out := inHost(t, key, "nft", "list", "ruleset"); !strings.Contains(out, "table inet sandnet") {
		t.Fatalf("with network back left, no table:\n%s", out)
	}
	if err := c.DeleteNetwork(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "the last network's links are gone", func() bool {
		return strings.Count(inHost(t, key, "ip", "-o", "link", "show"), "\n") == 1
	})
	assertHostClean(t, key, dir, true)
	a.Terminate(10 * time.Second)
	assertHostClean(t, key, dir, false)

	// A table left by an earlier run (one stopped with a network, say,
	// whose network was removed by hand since).
	inHost(t, key, "nft", "add table inet sandnet; add chain inet sandnet prerouting { type nat hook prerouting priority dstnat; }")
	a = e.Start(t)
	a.Terminate(10 * time.Second)
	assertHostClean(t, key, dir, false)
}

// TestPluginKilledDuringDeletes kills the bridge driver, or the store
// plugin, with SIGKILL while sandbox deletes run four at a time, each
// sandbox attached with one request (some with a published port), half
// of them to be deleted and half to survive. Deletes that fail answer
// 503 naming the plugin. Then, before any retry and again after it: no
// endpoint without a sandbox, and every listed sandbox not in the middle
// of a delete has its namespace. Retried, every failed delete finishes;
// the survivors keep their interface and address, through the plugin's
// restart and the agent's; every allocation has its endpoint; the network
// goes; and the agent's machine is left with no link, no nftables rule
// and nothing mounted.
func TestPluginKilledDuringDeletes(t *testing.T) {
	nstest.RequireRoot(t)
	for _, victim := range []string{"driver/bridge", "store/bolt"} {
		t.Run(strings.ReplaceAll(victim, "/", "-"), func(t *testing.T) {
			ctx := context.Background()
			key := ownHost(t)
			dir := t.TempDir()
			agenttest.CleanupMounts(t, dir)
			e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  stub_grace_period = \"1h\"\n"))
			e.Netns = key
			a := e.Start(t)
			c := a.Client
			if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "net", Subnet: "10.54.0.0/24"}); err != nil {
				t.Fatal(err)
			}
			const n = 32
			var doomed []string
			survivors := map[string]string{} // container → address
			for i := range n {
				id := fmt.Sprintf("c%02d", i)
				var publish []string
				if i%4 < 2 {
					publish = []string{"80"}
				}
				sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id,
					Networks: []controller.SandboxNetwork{{Network: "net", Connect: controller.Connect{Publish: publish}}}})
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					doomed = append(doomed, id)
				} else {
					survivors[id] = sb.Endpoints[0].Address.String()
				}
			}

			jobs := make(chan string, len(doomed))
			for _, id := range doomed {
				jobs <- id
			}
			close(jobs)
			var mu sync.Mutex
			failed := map[string]error{}
			var answered atomic.Int32
			var wg sync.WaitGroup
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for id := range jobs {
						if err := c.DeleteSandbox(ctx, id); err != nil {
							mu.Lock()
							failed[id] = err
							mu.Unlock()
						}
						answered.Add(1)
					}
				}()
			}
			agenttest.Eventually(t, "a first delete answers", func() bool { return answered.Load() > 0 })
			old := plugins(t, a)[victim]
			if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			t.Logf("%d of %d deletes failed around the kill of %s", len(failed), len(doomed), victim)
			name := victim[strings.IndexByte(victim, '/')+1:]
			for id, err := range failed {
				var ae *api.Error
				if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
					t.Errorf("delete of %s failed with %v (%+v); want a 503 naming plugin %q", id, err, ae, name)
				}
			}
			agenttest.Eventually(t, victim+" restarted", func() bool {
				p := plugins(t, a)[victim]
				return p.PID != old.PID && p.Running
			})
			checkSandboxes(t, c)

			for id := range failed {
				agenttest.Eventually(t, "a retried delete of "+id+" finishes", func() bool {
					err := c.DeleteSandbox(ctx, id)
					return err == nil || errors.Is(err, sdk.ErrNotFound)
				})
			}
			checkSandboxes(t, c)
			for _, id := range doomed {
				if _, err := c.Sandbox(ctx, id); !errors.Is(err, sdk.ErrNotFound) {
					t.Errorf("sandbox of %s after its delete: %v; want not found", id, err)
				}
			}
			checkSurvivors(t, c, survivors)

			// Allocations are read from the store file with the agent
			// stopped; the survivors come back after the restart.
			a.Terminate(10 * time.Second)
			stored := map[string]string{}
			for id, addr := range survivors {
				stored[strings.Split(addr, "/")[0]] = id
			}
			checkAllocations(t, filepath.Join(dir, "store.db"), stored)
			a = e.Start(t)
			c = a.Client
			checkSurvivors(t, c, survivors)
			for id := range survivors {
				if err := c.DeleteSandbox(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.DeleteNetwork(ctx, "net"); err != nil {
				t.Fatalf("network rm: %v", err)
			}
			a.Terminate(10 * time.Second)
			checkAllocations(t, filepath.Join(dir, "store.db"), nil)
			agenttest.Eventually(t, "no link but lo is left", func() bool {
				return strings.Count(inHost(t, key, "ip", "-o", "link", "show"), "\n") == 1
			})
			assertHostClean(t, key, dir, false)
		})
	}
}

// checkSandboxes checks what the agent lists: every endpoint names a
// listed sandbox, and every listed sandbox not in the middle of a delete
// has its namespace at its key.
func checkSandboxes(t *testing.T, c *api.Client) {
	t.Helper()
	ctx := context.Background()
	sbs, err := c.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, sb := range sbs {
		listed[sb.ID] = true
		if sb.InDelete {
			continue
		}
		if !isNamespace(sb.Key) {
			t.Errorf("sandbox %s of %s is listed, but %s holds no namespace", sb.ID[:12], sb.ContainerID, sb.Key)
		}
	}
	n, err := c.Network(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range n.Endpoints {
		if !listed[ep.SandboxID] {
			t.Errorf("endpoint %s (%s) has no sandbox: it names %q", ep.Name, ep.Address, ep.SandboxID)
		}
	}
}

// checkSurvivors checks that each sandbox of survivors (container →
// address) is listed with its endpoint, and that its namespace holds
// exactly its interface, up, with its address; and that the network has
// no other endpoint.
func checkSurvivors(t *testing.T, c *api.Client, survivors map[string]string) {
	t.Helper()
	ctx := context.Background()
	for id, addr := range survivors {
		sb, err := c.Sandbox(ctx, id)
		if err != nil {
			t.Fatalf("survivor %s: %v", id, err)
		}
		if got, want := fmt.Sprint(interfaceSet(t, sb.Key)), fmt.Sprintf("[eth0 up %s]", addr); got != want {
			t.Errorf("survivor %s has interfaces %s, want %s", id, got, want)
		}
	}
	n, err := c.Network(ctx, "net")
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Endpoints) != len(survivors) {
		t.Errorf("network has %d endpoints for %d survivors", len(n.Endpoints), len(survivors))
	}
}

// isNamespace reports whether path is a bind mount of a network namespace.
func isNamespace(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// TestRequestsWaitForRestartingPlugin: a create made while the bridge
// driver's plugin, or the store's, is down — killed, and unable to start
// again for a while (its binary made non-executable) — waits for it to
// come back (a driver: and be replayed), then succeeds, instead of
// failing with a 503; the new container reaches the one made before the
// crash.
func TestRequestsWaitForRestartingPlugin(t *testing.T) {
	nstest.RequireRoot(t)
	for _, tc := range []struct {
		victim, block string
		subnet        string
	}{
		{"driver/bridge", "driver \"bridge\" {", "10.58.0.0/24"},
		{"store/bolt", "store \"bolt\" {", "10.59.0.0/24"},
	} {
		t.Run(strings.ReplaceAll(tc.victim, "/", "-"), func(t *testing.T) {
			kind, name, _ := strings.Cut(tc.victim, "/")
			ctx := context.Background()
			dir := t.TempDir()
			agenttest.CleanupMounts(t, dir)
			bin := filepath.Join(dir, "sandnet-"+kind+"-"+name)
			b, err := os.ReadFile(filepath.Join(bins.PluginDir, filepath.Base(bin)))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			blocks := strings.Replace(strings.Replace(boltAndBridge(dir, ""), "driver \"bridge\" {}", "driver \"bridge\" {\n}", 1),
				tc.block+"\n", tc.block+"\n  command = "+strconv.Quote(bin)+"\n", 1)
			// Longer than the test's steps can take on a loaded machine:
			// the create must still be waiting when the plugin can start.
			blocks = "plugin_restart_wait = \"2m\"\n" + blocks
			a := agenttest.NewEnv(t, bins, blocks).Start(t)
			c := a.Client
			t.Cleanup(func() { removeAll(t, c) })
			if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "net", Subnet: tc.subnet}); err != nil {
				t.Fatal(err)
			}
			create := func(id string) (*controller.Sandbox, error) {
				return c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id, Networks: []controller.SandboxNetwork{{Network: "net"}}})
			}
			first, err := create("c0")
			if err != nil {
				t.Fatal(err)
			}

			if err := os.Chmod(bin, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(bin, 0o755) }) // before removeAll, which needs the plugin
			old := plugins(t, a)[tc.victim]
			if err := syscall.Kill(old.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			agenttest.Eventually(t, "the plugin's exit noticed", func() bool { return !plugins(t, a)[tc.victim].Running })
			done := make(chan error, 1)
			go func() {
				_, err := create("c1")
				done <- err
			}()
			agenttest.Eventually(t, "a restart of the plugin failed", func() bool { return plugins(t, a)[tc.victim].LastError != "" })
			if kind == "driver" { // a scrape reads the store: not while it is down
				// Only requests wait (the spare maker does not): the one
				// waiting is the create.
				agenttest.Eventually(t, "the create counted as waiting for the driver", func() bool {
					text, err := c.Metrics(ctx)
					return err == nil && value(scrape(t, text), "sandnet_driver_restart_waiters") == 1
				})
			}
			select {
			case err := <-done:
				t.Fatalf("the create answered while the plugin could not start: %v", err)
			default:
			}
			if err := os.Chmod(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("the create that waited for the plugin: %v", err)
			}
			sb, err := c.Sandbox(ctx, "c1")
			if err != nil || len(sb.Endpoints) != 1 {
				t.Fatalf("sandbox of c1: %+v, %v", sb, err)
			}
			serve(t, first.Key, "c0")
			reachable(t, sb.Key, first.Endpoints[0].Address.Addr().String(), "c0")
		})
	}
}
