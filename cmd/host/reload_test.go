package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// Reload, by SIGHUP and by `sandnet reload`: a changed driver block
// restarts that driver alone (its PID changes, the other driver's and the
// store's do not) with its state replayed, so sandboxes made before keep
// talking and new attaches work; a broken file and a changed store block
// are refused, change nothing, and say why.
// bridge1400 is a bridge block whose config differs from the default
// one's: a reload restarts the driver.
const bridge1400 = "driver \"bridge\" {\n  config {\n    mtu = 1400\n  }\n}"

// bridgeMTU1400 is cfg with its empty bridge block replaced by bridge1400.
func bridgeMTU1400(cfg string) string {
	return strings.Replace(cfg, "driver \"bridge\" {}", bridge1400, 1)
}

func TestReload(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	base := boltAndBridge(dir, "") + "driver \"none\" {}\n"
	e := agenttest.NewEnv(t, bins, base)
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(e.ConfigPath, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pids := func() map[string]int {
		out := map[string]int{}
		for k, p := range plugins(t, a) {
			out[k] = p.PID
		}
		return out
	}

	// A reload takes no fields: one it does not know is a 400, as on
	// every route (it was ignored).
	if err := a.Client.Do(ctx, "POST", "/v1/reload", map[string]int{"x": 1}, nil); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "x: unknown field") {
		t.Fatalf("reload with an unknown field: %v, want 400 naming it", err)
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "rl", Subnet: "10.49.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	server := attach(t, a.Client, "rl", "server")
	serve(t, server.key, "server")
	client := attach(t, a.Client, "rl", "client")
	addr := net.JoinHostPort(server.addr.String(), "7777")
	if got, err := talk(t, client.key, "tcp", addr); err != nil || !strings.HasPrefix(got, "hello from server") {
		t.Fatalf("before the reload: %q, %v", got, err)
	}
	sub, err := a.Client.Events(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seen := &eventReader{}
	go seen.read(sub.Next)

	// A changed bridge block, by SIGHUP.
	before := pids()
	write(bridgeMTU1400(string(head)))
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "the reload event", func() bool { return seen.types()[events.TypeReload] == 1 })
	after := pids()
	if after["driver/bridge"] == before["driver/bridge"] || !alive(after["driver/bridge"]) {
		t.Fatalf("bridge PID %d before the reload, %d after: not restarted", before["driver/bridge"], after["driver/bridge"])
	}
	if after["driver/none"] != before["driver/none"] || after["store/bolt"] != before["store/bolt"] {
		t.Fatalf("PIDs before %v, after %v: only the bridge's may change", before, after)
	}
	if got, err := talk(t, client.key, "tcp", addr); err != nil || !strings.HasPrefix(got, "hello from server") {
		t.Fatalf("after the reload, between sandboxes made before: %q, %v", got, err)
	}
	late := attach(t, a.Client, "rl", "late")
	if got, err := talk(t, late.key, "tcp", addr); err != nil || !strings.HasPrefix(got, "hello from server") {
		t.Fatalf("after the reload, from a sandbox made after: %q, %v", got, err)
	}
	reloaded := string(head)
	reloaded = bridgeMTU1400(reloaded)

	// The same file again, by `sandnet reload`: nothing to restart.
	out, code := sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 0 || !strings.Contains(out, "unchanged: bridge, none") {
		t.Fatalf("sandnet reload of an unchanged file: exit %d\n%s", code, out)
	}

	// A broken file: refused with its diagnostics, in the answer and the log.
	write(reloaded + "driver \"none\" {\n  confg {}\n}\nresolver {\n  timeout = \"soon\"\n}\n")
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 1 || !strings.Contains(out, "config.hcl:") || !strings.Contains(out, "the running config stays") {
		t.Fatalf("sandnet reload of a broken file: exit %d\n%s", code, out)
	}
	for _, want := range []string{"Duplicate driver block", "reload rejected"} {
		if !strings.Contains(a.Log(), want) {
			t.Errorf("the agent's log lacks %q", want)
		}
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "the SIGHUP with the broken file rejected", func() bool {
		return strings.Count(a.Log(), "reload rejected") == 2
	})

	// A changed store block: refused.
	write(strings.Replace(reloaded, "store.db", "other.db", 1))
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 1 || !strings.Contains(out, "the store block changed") || !strings.Contains(out, "sandnet store migrate") {
		t.Fatalf("sandnet reload with another store: exit %d\n%s", code, out)
	}
	if now := pids(); now["driver/bridge"] != after["driver/bridge"] || now["driver/none"] != after["driver/none"] || now["store/bolt"] != after["store/bolt"] {
		t.Fatalf("PIDs changed by rejected reloads: %v, then %v", after, now)
	}
	if got, err := talk(t, late.key, "tcp", addr); err != nil || !strings.HasPrefix(got, "hello from server") {
		t.Fatalf("after the rejected reloads: %q, %v", got, err)
	}
	if n := seen.types()[events.TypeReload]; n != 2 {
		t.Fatalf("%d reload events, want 2 (the two that were applied)", n)
	}

	// A new driver whose binary is missing: the file is refused whole, at
	// the block (the rest was applied), and `sandnet reload` exits 1.
	write(reloaded + "driver \"nosuch\" {}\n")
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 1 || !strings.Contains(out, "config.hcl:23:1: error: Plugin binary not usable") || !strings.Contains(out, "the running config stays") {
		t.Fatalf("sandnet reload with a driver whose binary is missing: exit %d\n%s", code, out)
	}

	// Top-level settings only a start applies are reported, not dropped.
	write(reloaded + "host_ttl = \"45s\"\nadvertise_addr = \"192.0.2.3\"\n")
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 0 || !strings.Contains(out, "advertise_addr, host_ttl") {
		t.Fatalf("sandnet reload with host_ttl and advertise_addr changed: exit %d, want 0 and both named\n%s", code, out)
	}

	// A removed block of a driver with networks: refused, naming both;
	// one without networks: its plugin stops.
	write(strings.Replace(reloaded, bridge1400, "", 1))
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 1 || !strings.Contains(out, `the file removes driver "bridge", which network "rl" still uses`) {
		t.Fatalf("sandnet reload without the bridge's block: exit %d, want 1 naming the driver and its network\n%s", code, out)
	}
	if now := pids(); now["driver/bridge"] != after["driver/bridge"] {
		t.Fatalf("the refused reload restarted the bridge: %v, then %v", after, now)
	}
	noneBefore := pids()["driver/none"]
	write(strings.Replace(reloaded, "driver \"none\" {}\n", "", 1))
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 0 || !strings.Contains(out, "stopped: none") {
		t.Fatalf("sandnet reload without the none driver's block: exit %d, want it stopped\n%s", code, out)
	}
	polltest.Until(t, 10*time.Second, "the none driver's plugin gone", func() bool { return !alive(noneBefore) })
	if _, ok := pids()["driver/none"]; ok {
		t.Fatalf("the none driver is still listed after its block went: %v", pids())
	}
}

// A reload applies the resolver's upstreams and the IPAM default pools
// at once: a running container's next forwarded question goes to the new
// upstream, and the next network created without a subnet gets one from
// the new pools; `sandnet reload` says both were applied.
func TestReloadAppliesUpstreamsAndPools(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	first := startFakeUpstream(t, "127.0.0.43:53")
	second := startFakeUpstream(t, "127.0.0.44:53")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	settings := func(upstream, pool, listen string) string {
		return boltAndBridge(dir, "  spare_namespaces = 1\n") + fmt.Sprintf("resolver {\n  upstreams = [%q]\n  cache_size = 0\n  timeout = \"3s\"\n}\nipam {\n  default_pools = [{ base = %q, size = 24 }]\n}\ntelemetry {\n  prometheus_listen = %q\n}\n", upstream, pool, listen)
	}
	e := agenttest.NewEnv(t, bins, settings("127.0.0.43", "10.120.0.0/16", "127.0.0.1:19386"))
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "before"}); err != nil {
		t.Fatal(err)
	}
	cli := attach(t, a.Client, "before", "cli")
	if got := dig(t, cli.key, "+short", "one.example"); got != "192.0.2.1" || first.asked("one.example.") != 1 {
		t.Fatalf("before the reload: %q, asked the first upstream %d times", got, first.asked("one.example."))
	}

	scrapes := func(addr string) bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !scrapes("127.0.0.1:19386") {
		t.Fatal("no metrics on prometheus_listen before the reload")
	}
	next := strings.Replace(string(head), settings("127.0.0.43", "10.120.0.0/16", "127.0.0.1:19386"), settings("127.0.0.44", "10.130.0.0/16", "127.0.0.1:19387"), 1)
	next = strings.Replace(next, "timeout = \"3s\"", "timeout = \"5s\"\n  max_inflight = 7", 1)
	next = strings.Replace(next, "spare_namespaces = 1", "spare_namespaces = 3\n  stub_grace_period = \"2m\"", 1)
	spares := func() float64 {
		text, err := a.Client.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return value(scrape(t, text), "sandnet_spare_namespaces_ready")
	}
	// One of each kind at most (plain, prepared for the network) with 1.
	agenttest.Eventually(t, "a spare namespace", func() bool { return spares() >= 1 })
	if n := spares(); n > 2 {
		t.Fatalf("%v spare namespaces with spare_namespaces = 1", n)
	}
	if err := os.WriteFile(e.ConfigPath, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 0 || !strings.Contains(out, "applied: resolver.upstreams, resolver.timeout, resolver.max_inflight, ipam.default_pools, sandbox.stub_grace_period, sandbox.spare_namespaces, telemetry.prometheus_listen") || strings.Contains(out, "next start") {
		t.Fatalf("sandnet reload: exit %d, want both settings applied and none left for the next start\n%s", code, out)
	}
	if !strings.Contains(a.Log(), `applied=["resolver.upstreams", "resolver.timeout"`) {
		t.Errorf("the agent's log does not say what the reload applied:\n%s", a.Log())
	}
	if got := dig(t, cli.key, "+short", "two.example"); got != "192.0.2.1" || second.asked("two.example.") != 1 || first.asked("two.example.") != 0 {
		t.Fatalf("after the reload: %q; the second upstream asked %d times, the first %d", got, second.asked("two.example."), first.asked("two.example."))
	}
	if !scrapes("127.0.0.1:19387") || scrapes("127.0.0.1:19386") {
		t.Fatalf("after the reload: metrics on the new address %v, on the old %v; want only the new", scrapes("127.0.0.1:19387"), scrapes("127.0.0.1:19386"))
	}
	agenttest.Eventually(t, "three spare namespaces or more after the reload", func() bool { return spares() >= 3 })
	// An address it cannot listen on: reported, and the metrics stay.
	busy, err := net.Listen("tcp", "127.0.0.1:19388")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(next, "127.0.0.1:19387", "127.0.0.1:19388", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = sandnetCmd(t, "reload", "--socket", e.Socket)
	if code != 1 || !strings.Contains(out, "failed: telemetry.prometheus_listen (") || !scrapes("127.0.0.1:19387") {
		t.Fatalf("sandnet reload onto a busy address: exit %d, metrics still on the old %v\n%s", code, scrapes("127.0.0.1:19387"), out)
	}
	n, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "after"})
	if err != nil {
		t.Fatal(err)
	}
	if s := n.IPv4[0].Subnet; !netip.MustParsePrefix("10.130.0.0/16").Contains(s.Addr()) {
		t.Fatalf("network created after the reload got %s, want a subnet of the new pool 10.130.0.0/16", s)
	}
}

// A reload applies the forwarding cache's settings to the running cache:
// shrunk to one answer, the cache keeps only the last one asked. Turning
// the cache off (or on) is left for the next start, and said so.
func TestReloadCache(t *testing.T) {
	nstest.RequireRoot(t)
	up := startFakeUpstream(t, "127.0.0.45:53")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	cache := func(size int) string {
		return fmt.Sprintf("resolver {\n  upstreams = [\"127.0.0.45\"]\n  cache_size = %d\n}\n", size)
	}
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+cache(100))
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(size int) (string, int) { return reloadReplacing(t, e, head, cache(100), cache(size)) }
	if _, err := a.Client.CreateNetwork(context.Background(), controller.NetworkCreate{Name: "rc"}); err != nil {
		t.Fatal(err)
	}
	cli := attach(t, a.Client, "rc", "cli")
	if out, code := reload(1); code != 0 || !strings.Contains(out, "applied: resolver.cache_size") || strings.Contains(out, "next start") {
		t.Fatalf("sandnet reload with cache_size 1: exit %d\n%s", code, out)
	}
	// a, then b (which takes a's place), then a again: asked upstream twice.
	for _, n := range []string{"a.example", "b.example", "a.example"} {
		if got := dig(t, cli.key, "+short", n); got != "192.0.2.1" {
			t.Fatalf("%s: %q", n, got)
		}
	}
	if n := up.asked("a.example."); n != 2 {
		t.Fatalf("a.example asked upstream %d times, want twice: the cache still holds more than one answer", n)
	}
	if out, code := reload(0); code != 0 || !strings.Contains(out, "next start: resolver") {
		t.Fatalf("sandnet reload turning the cache off: exit %d, want it left for the next start\n%s", code, out)
	}
}

// reloadReplacing writes the agent's config file head back with old
// replaced by new and has the agent reload it; it returns what
// `sandnet reload` printed and its exit code.
func reloadReplacing(t *testing.T, e *agenttest.Env, head []byte, old, new string) (string, int) {
	t.Helper()
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(head), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return sandnetCmd(t, "reload", "--socket", e.Socket)
}

// Reloads that restart the bridge driver (its block changed) while
// containers are created and deleted on a bridge network fail none of
// those requests: the ones under way finish on the old plugin, new ones
// wait for the new plugin's replay. Nothing is left afterwards.
func TestReloadUnderLoad(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  spare_namespaces = 2\n"))
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "load", Subnet: "10.48.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	errs := make(chan error, 4)
	var created atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				id := fmt.Sprintf("load%d-%d", w, i)
				if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id, Networks: []controller.SandboxNetwork{{Network: "load"}}}); err != nil {
					errs <- fmt.Errorf("create %s: %w", id, err)
					return
				}
				created.Add(1)
				if err := a.Client.DeleteSandbox(ctx, id); err != nil {
					errs <- fmt.Errorf("delete %s: %w", id, err)
					return
				}
			}
		}()
	}
	restarts := 0
	for r := range 16 {
		mtu := 1400 + 100*(r%2)
		body := strings.Replace(string(head), "driver \"bridge\" {}", fmt.Sprintf("driver \"bridge\" {\n  config {\n    mtu = %d\n  }\n}", mtu), 1)
		if err := os.WriteFile(e.ConfigPath, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := a.Client.Reload(ctx)
		if err != nil {
			t.Fatalf("reload %d: %v", r, err)
		}
		if slices.Contains(res.Restarted, "bridge") {
			restarts++
		}
		// The next reload once the clients have made a few more
		// containers, so that every restart falls among requests.
		next := created.Load() + 4
		polltest.Until(t, 30*time.Second, "four more creates", func() bool { return created.Load() >= next || len(errs) > 0 })
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if restarts < 15 {
		t.Fatalf("%d restarts of the bridge driver in 16 reloads, want one per changed block", restarts)
	}
	t.Logf("%d creates and deletes across %d restarts of the bridge driver", created.Load(), restarts)
	if err := a.Client.DeleteNetwork(ctx, "load"); err != nil {
		t.Fatal(err)
	}
	waitNoLeaks(t, "10.48.0.")
}

// TestReloadOutlivesItsCaller: a reload whose caller goes away while it
// restarts a driver (a client's timeout, Ctrl-C on `sandnet reload`)
// runs to its end, as SIGHUP's does: cut short, the driver's restart
// failed with the caller's canceled context, half the file applied.
func TestReloadOutlivesItsCaller(t *testing.T) {
	e, a := bridgeEnv(t)
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := a.Client.Events(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	seen := &eventReader{}
	go seen.read(sub.Next)
	before := plugins(t, a)["driver/bridge"].PID
	changed := bridgeMTU1400(string(head))
	if err := os.WriteFile(e.ConfigPath, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	_, _ = a.Client.Reload(ctx) // the caller gives up at once
	agenttest.Eventually(t, "the reload event", func() bool { return seen.types()[events.TypeReload] == 1 })
	got, _ := seen.snapshot()
	msg := ""
	for _, ev := range got {
		if ev.Type == events.TypeReload {
			msg = ev.Message
		}
	}
	if !strings.Contains(msg, "restarted: bridge") || strings.Contains(msg, "failed") {
		t.Fatalf("a reload whose caller went away: %q, want the bridge restarted and nothing failed", msg)
	}
	if after := plugins(t, a)["driver/bridge"].PID; after == before || !alive(after) {
		t.Fatalf("bridge PID %d before, %d after: not restarted", before, after)
	}
}

// TestReloadOfADriverThatDoesNotTakeItsState: a reload whose new block's
// plugin crashes on the state it is replayed reports it failed and runs
// the previous block again (it answered "restarted" while the driver
// crash-looped). A reload whose new block's plugin leaves a replayed call
// unanswered, begun by SIGHUP, holds no other up for ever: a reload asked
// for meanwhile is refused with 409 (queued behind it, it never ran), and
// SIGTERM, after a second SIGHUP, stops the agent (it was never heard).
func TestReloadOfADriverThatDoesNotTakeItsState(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	bin := fakePlugin(t)
	base := boltAndBridge(dir, "")
	block := func(mode string) string {
		return fmt.Sprintf("driver \"fake\" {\n  command = %q\n  args    = [%q]\n}\n", bin, mode)
	}
	e := agenttest.NewEnv(t, bins, base+block("ok"))
	a := e.Start(t)
	head, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	use := func(mode string) {
		t.Helper()
		if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(head), block("ok"), block(mode), 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "fk", Driver: "fake"}); err != nil {
		t.Fatal(err)
	}

	// A block pinning a checksum its binary does not have is refused
	// with the whole file, before the running plugin is touched.
	before := plugins(t, a)["driver/fake"]
	pinned := strings.Replace(block("ok"), "}\n", fmt.Sprintf("  checksum = %q\n}\n", "sha256:"+strings.Repeat("0", 64)), 1)
	if err := os.WriteFile(e.ConfigPath, []byte(strings.Replace(string(head), block("ok"), pinned, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Reload(ctx); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "config.hcl:") || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("reload to a block whose checksum the binary does not have: %v, want a 400 naming the mismatch at its position", err)
	}
	if after := plugins(t, a)["driver/fake"]; after.PID != before.PID || after.Restarts != before.Restarts {
		t.Fatalf("the refused reload touched the running plugin: %+v, then %+v", before, after)
	}

	use("crash")
	r, err := a.Client.Reload(ctx)
	if err != nil || len(r.Restarted) != 0 || len(r.Failed) != 1 || !strings.Contains(r.Failed[0], "fake (its new block's plugin did not take the state back") ||
		!strings.HasSuffix(r.Failed[0], "it runs its previous block again)") {
		t.Fatalf("reload to a block whose plugin crashes on the state: %+v, %v; want fake failed, its previous block running again", r, err)
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "fk2", Driver: "fake"}); err != nil {
		t.Fatalf("a network on the driver running its previous block again: %v", err)
	}

	pid := plugins(t, a)["driver/fake"].PID
	use("hang")
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 30*time.Second, "the SIGHUP's reload restarting the fake driver", func() bool {
		p, ok := plugins(t, a)["driver/fake"]
		return ok && p.PID != pid && p.PID != 0
	})
	if _, err := a.Client.Reload(ctx); !isStatus(err, http.StatusConflict) || !strings.Contains(err.Error(), "a reload is already running") {
		t.Fatalf("a reload while the SIGHUP's waits for the driver: %v, want 409", err)
	}
	if err := a.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.Wait(time.Minute); code == -1 {
		_ = a.Signal(syscall.SIGKILL)
		t.Fatalf("the agent still runs a minute after SIGTERM, its reload held up by a driver:\n%s", a.Log())
	}
}
