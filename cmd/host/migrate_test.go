package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/plugins/store-consul/consultest"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/store"
)

func boltStore(t *testing.T) store.Store {
	t.Helper()
	s := openBolt(t, filepath.Join(t.TempDir(), "store.db"))
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

// openBolt opens the bolt store file at path in the test's process (an
// agent using it must be stopped: bolt locks its file); the caller closes it.
func openBolt(t *testing.T, path string) store.Store {
	t.Helper()
	s := boltstore.New()
	cfg := fmt.Sprintf(`{"path":%q,"timeout":null,"no_sync":true}`, path)
	if err := s.Configure(context.Background(), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	src, dst := boltStore(t), boltStore(t)
	// An empty source is a wrong --from: nothing is "copied and
	// verified".
	if _, err := migrate(ctx, src, dst, false, func(int, int) {}); !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "holds no sandnet keys") {
		t.Fatalf("migrating an empty store: %v, want refused", err)
	}
	for i := range 150 {
		if _, err := src.Put(ctx, fmt.Sprintf("sandnet/v1/network/n%03d", i), []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := src.Put(ctx, "other/key", []byte("not ours")); err != nil {
		t.Fatal(err)
	}
	var last int
	n, err := migrate(ctx, src, dst, false, func(done, total int) { last = done })
	if err != nil || n != 150 || last != 150 {
		t.Fatalf("migrate = %d, %v (progress ended at %d); want 150 keys", n, err, last)
	}
	if _, err := dst.Get(ctx, "other/key"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a key outside sandnet/ was copied: %v", err)
	}
	kv, err := dst.Get(ctx, "sandnet/v1/network/n042")
	if err != nil || string(kv.GetValue()) != `{"n":42}` {
		t.Fatalf("copied value = %q, %v", kv.GetValue(), err)
	}
	if _, err := migrate(ctx, src, dst, false, func(int, int) {}); !errors.Is(err, sdk.ErrExists) {
		t.Fatalf("migrating into a non-empty target without force: %v, want refused", err)
	}
	if _, err := dst.Put(ctx, "sandnet/v1/network/stale", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if n, err := migrate(ctx, src, dst, true, func(int, int) {}); err != nil || n != 150 {
		t.Fatalf("forced migrate = %d, %v", n, err)
	}
	if _, err := dst.Get(ctx, "sandnet/v1/network/stale"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("forced migrate kept a stale target key: %v", err)
	}

	// A host's record is tied to its lease, which does not move: it is
	// not copied (a copied record kept a stopped host live for ever).
	if _, err := src.Put(ctx, "sandnet/v1/host/h1", []byte(`{"id":"h1"}`)); err != nil {
		t.Fatal(err)
	}
	if n, err := migrate(ctx, src, dst, true, func(int, int) {}); err != nil || n != 150 {
		t.Fatalf("migrate with a host record = %d, %v; want the 150 other keys", n, err)
	}
	if _, err := dst.Get(ctx, "sandnet/v1/host/h1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("a host's record was copied: %v", err)
	}

	// One store as both (two configs naming one Consul or etcd): refused
	// before anything changes, with force too (it cleared the source and
	// verified an empty copy).
	if _, err := migrate(ctx, src, src, true, func(int, int) {}); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "name the same store") {
		t.Fatalf("migrating a store into itself with force: %v, want refused", err)
	}
	if kvs, _ := src.List(ctx, migratePrefix); len(kvs) != 151 {
		t.Fatalf("the source holds %d sandnet keys after the refused migration, want 151", len(kvs))
	}
	if kvs, _ := src.List(ctx, "sandnet-migrate-probe/"); len(kvs) != 0 {
		t.Fatalf("the probe key stayed: %v", kvs)
	}
}

// TestSwapStoreByMigration fills a bolt store through an agent, migrates it
// with `sandnet store migrate` to a second bolt file, and starts the agent
// on the new config: networks, sandboxes and endpoints are all there.
func TestSwapStoreByMigration(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	sandboxBlock := fmt.Sprintf("sandbox {\n  netns_dir = %q\n}\ndriver \"none\" {}\n", filepath.Join(dir, "netns"))
	boltBlock := func(file string) string {
		return fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(dir, file))
	}
	old := agenttest.NewEnv(t, bins, boltBlock("old.db")+sandboxBlock)
	a := old.Start(t)
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "quiet", Driver: "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Connect(ctx, "quiet", controller.Connect{Container: "c1"}); err != nil {
		t.Fatal(err)
	}
	a.Terminate(10 * time.Second)
	neu := agenttest.NewEnv(t, bins, boltBlock("new.db")+sandboxBlock)
	sameHost(t, old, neu)
	out, err := exec.Command(bins.Sandnet, "store", "migrate", "-from", old.ConfigPath, "-to", neu.ConfigPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "copied and verified") {
		t.Fatalf("store migrate: %v\n%s", err, out)
	}
	b := neu.Start(t)
	if n, err := b.Client.Network(ctx, "quiet"); err != nil || len(n.Endpoints) != 1 {
		t.Fatalf("network on the migrated store = %+v, %v; want quiet with 1 endpoint", n, err)
	}
	sb, err := b.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"})
	if err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("claiming c1 on the migrated store = %+v, %v", sb, err)
	}
	b.Terminate(10 * time.Second)
	out, err = exec.Command(bins.Sandnet, "store", "migrate", "-from", old.ConfigPath, "-to", neu.ConfigPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-force") {
		t.Fatalf("migrating into a non-empty store: %v\n%s", err, out)
	}
	// One store as both: its lock held by the source, the target says
	// what that may mean.
	out, err = exec.Command(bins.Sandnet, "store", "migrate", "-from", old.ConfigPath, "-to", old.ConfigPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "do --from and --to name the same store?") {
		t.Fatalf("migrating a store into itself: %v\n%s", err, out)
	}
	// A source whose bolt file is not there (a wrong --from) is refused,
	// and not made.
	missing := agenttest.NewEnv(t, bins, boltBlock("missing.db")+sandboxBlock)
	out, err = exec.Command(bins.Sandnet, "store", "migrate", "-from", missing.ConfigPath, "-to", neu.ConfigPath, "-force").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "missing.db (of "+missing.ConfigPath+") does not exist: nothing to migrate") {
		t.Fatalf("migrating from a store that is not there: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused migration made the source's file: %v", err)
	}
}

// sameHost gives env b the host ID of env a: the two configs stand for one
// host whose store block changed (its data_dir, and so its ID, would stay).
func sameHost(t *testing.T, a, b *agenttest.Env) {
	t.Helper()
	id, err := os.ReadFile(filepath.Join(a.DataDir, "host-id"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(b.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.DataDir, "host-id"), id, 0o644); err != nil {
		t.Fatal(err)
	}
}

// `store migrate` without both files, or with a stray argument, says what
// it needs, exit 2.
func TestMigrateUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"--from", "a.hcl"}, {"--to", "b.hcl"}, {"--from", "a.hcl", "--to", "b.hcl", "c.hcl"}} {
		out, code := sandnetCmd(t, append([]string{"store", "migrate"}, args...)...)
		if code != 2 || !strings.Contains(out, "store migrate needs --from and --to") {
			t.Errorf("store migrate %v: exit %d, want 2 and what it needs\n%s", args, code, out)
		}
	}
}

// `sandnet agent FILE` (the flag forgotten) does not start on the
// default file: it says what was meant, exit 2.
func TestAgentTakesNoArguments(t *testing.T) {
	out, code := sandnetCmd(t, "agent", "my.hcl")
	if code != 2 || !strings.Contains(out, "agent takes no arguments (did you mean --config my.hcl?)") {
		t.Fatalf("sandnet agent my.hcl: exit %d\n%s", code, out)
	}
}

// TestStoreReplacedWithoutMigration: an agent whose store block now names
// an empty store (replaced without `store migrate`, or emptied) removes,
// at start, what the old store's networks and sandboxes left on the host
// — their namespaces, the bridge, the published port, the firewall
// chains — so that a network made again on the same subnet carries
// traffic and its sandbox can publish the same port. sandnet doctor warns
// of it before the start.
func TestStoreReplacedWithoutMigration(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := t.Context()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	blocks := func(file string) string {
		return strings.Replace(boltAndBridge(dir, ""), filepath.Join(dir, "store.db"), filepath.Join(dir, file), 1)
	}
	old := agenttest.NewEnv(t, bins, blocks("old.db"))
	a := old.Start(t)
	create := func(c *api.Client, container string) *controller.Sandbox {
		t.Helper()
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: container, Networks: []controller.SandboxNetwork{
			{Network: "web", Connect: controller.Connect{Publish: []string{"8093:7777/tcp"}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "web", Subnet: "10.93.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	n1, err := a.Client.Network(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	sb1 := create(a.Client, "c1")
	a.Terminate(10 * time.Second)

	neu := agenttest.NewEnv(t, bins, blocks("new.db"))
	sameHost(t, old, neu)
	// doctor, before the start, says what it will remove and why.
	out, code := sandnetCmd(t, "doctor", "--config", neu.ConfigPath)
	newFile := filepath.Join(dir, "new.db")
	if want := `warn  store "bolt": no store file at ` + newFile + " (a mistyped path?), so no sandbox of this host for the 1 namespace(s) in " + filepath.Join(dir, "netns") + " (" + sb1.ID[:12] + "…): made with another store?"; code != 0 || !strings.Contains(out, want) {
		t.Errorf("doctor on the new store: exit %d, want 0 and %q:\n%s", code, want, out)
	}
	if _, err := os.Stat(newFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("doctor made the new store's file: %v", err)
	}
	// Without its host-id, the data_dir would make this a new host.
	hostIDFile := filepath.Join(old.DataDir, "host-id")
	id, err := os.ReadFile(hostIDFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(hostIDFile); err != nil {
		t.Fatal(err)
	}
	if out, _ := sandnetCmd(t, "doctor", "--config", old.ConfigPath); !strings.Contains(out, "has no host-id, so the next start makes this host a new one") {
		t.Errorf("doctor on the old store without the data_dir's host-id:\n%s", out)
	}
	if err := os.WriteFile(hostIDFile, id, 0o644); err != nil {
		t.Fatal(err)
	}
	b := neu.Start(t)
	if _, err := os.Stat(sb1.Key); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("c1's namespace key %s after the start on a new store: %v; want it gone", sb1.Key, err)
	}
	for _, l := range nstest.Links(t, nil) {
		if name := l.Attrs().Name; name != "lo" {
			t.Errorf("link %s (%s) left from the old store's network", name, l.Type())
		}
	}
	if out, err := exec.Command("nft", "list", "ruleset").CombinedOutput(); err != nil || strings.Contains(string(out), n1.ID) || strings.Contains(string(out), "8093") {
		t.Errorf("nft list ruleset (%v) still names the old network %s or port 8093:\n%s", err, short(n1.ID), out)
	}
	if !strings.Contains(b.Log(), "removing the namespace of a sandbox no record of this host names") {
		t.Errorf("the agent's log does not say why c1's namespace went:\n%s", b.Log())
	}

	if _, err := b.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "web", Subnet: "10.93.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	sb2 := create(b.Client, "c2")
	serve(t, sb2.Key, "c2")
	if got, err := talk(t, "", "tcp", "127.0.0.1:8093"); err != nil || !strings.HasPrefix(got, "hello from c2") {
		t.Errorf("port 8093 published again, from the host: %q, %v", got, err)
	}
	if got, err := talk(t, "", "tcp", net.JoinHostPort(sb2.Endpoints[0].Address.Addr().String(), "7777")); err != nil || !strings.HasPrefix(got, "hello from c2") {
		t.Errorf("c2 through the new bridge, from the host: %q, %v", got, err)
	}
	removeAll(t, b.Client)
}

// `store migrate` beside a running agent is refused, naming the agent's
// PID, for either side: it would copy a moving store (Consul's went on
// changing under it) or fail on bolt's file lock with no word of why.
func TestMigrateRefusedBesideAgent(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	blocks := func(file string) string {
		return strings.Replace(boltAndNone(dir), filepath.Join(dir, "store.db"), filepath.Join(dir, file), 1) +
			fmt.Sprintf("sandbox {\n  netns_dir = %q\n  files_dir = %q\n}\n", filepath.Join(dir, file+".netns"), filepath.Join(dir, file+".files"))
	}
	running := agenttest.NewEnv(t, bins, blocks("a.db"))
	a := running.Start(t)
	other := agenttest.NewEnv(t, bins, blocks("b.db"))
	pid := fmt.Sprint(a.Cmd.Process.Pid)
	for _, args := range [][]string{{"-from", running.ConfigPath, "-to", other.ConfigPath}, {"-from", other.ConfigPath, "-to", running.ConfigPath}} {
		out, err := exec.Command(bins.Sandnet, append([]string{"store", "migrate"}, args...)...).CombinedOutput()
		want := "config " + running.ConfigPath + ": an agent (pid " + pid + ") is running on it, holding its data_dir " + running.DataDir
		if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "stop the agent before migrating") {
			t.Errorf("store migrate %v beside a running agent: %v\n%s\nwant %q", args, err, out, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "b.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused migration made the other store's file: %v", err)
	}

	// On Consul, which has no file lock, the copy went ahead before.
	a.Terminate(10 * time.Second)
	consul := consultest.Start(t)
	onConsul := agenttest.NewEnv(t, bins, consulBlock(consul.Addr())+"driver \"none\" {}\n"+
		fmt.Sprintf("sandbox {\n  netns_dir = %q\n  files_dir = %q\n}\n", filepath.Join(dir, "c.netns"), filepath.Join(dir, "c.files")))
	c := onConsul.Start(t)
	out, err := exec.Command(bins.Sandnet, "store", "migrate", "-from", onConsul.ConfigPath, "-to", other.ConfigPath).CombinedOutput()
	if want := "an agent (pid " + fmt.Sprint(c.Cmd.Process.Pid) + ") is running on it"; err == nil || !strings.Contains(string(out), want) {
		t.Errorf("store migrate from Consul beside its agent: %v\n%s\nwant %q", err, out, want)
	}
}
