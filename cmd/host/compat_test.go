package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestProtocolV1Plugins keeps sdk/README's compatibility promise honest: a
// driver and a store built against the SDK as protocol v1 was first
// published (testdata/protocolv1: the old SDK as an archive, and a third
// party's module requiring it) pass today's conformance suites through
// `sandnet plugin check`, and run under today's agent. The driver, which
// predates Attach, Detach and JoinRequest.ifname, gives a container an
// interface that carries traffic and takes it away again; the store holds
// the network and the sandbox through a restart of the agent.
func TestProtocolV1Plugins(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	v1 := buildV1Plugins(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	storeHCL := fmt.Sprintf("store \"file\" {\n  command = %q\n  config {\n    path = %q\n  }\n}\n",
		filepath.Join(v1, "store-file"), filepath.Join(dir, "store.json"))

	for _, args := range [][]string{
		{"--config", writeFile(t, dir, "store.hcl", storeHCL), filepath.Join(v1, "store-file")},
		{filepath.Join(v1, "driver-ptp")},
	} {
		r := pluginCheck(t, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "(protocol 1; speaks 1; sdk before 0.1.0)") || !strings.Contains(r.stdout, " 0 failed, 0 skipped: ok") {
			t.Fatalf("plugin check %v: exit %d\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	// The check's cases wrote under prefixes of their own and removed
	// them; the agent starts on an empty store.
	_ = os.Remove(filepath.Join(dir, "store.json"))

	e := agenttest.NewEnv(t, bins, storeHCL+fmt.Sprintf("driver \"ptp\" {\n  command = %q\n}\nsandbox {\n  netns_dir = %q\n}\n",
		filepath.Join(v1, "driver-ptp"), filepath.Join(dir, "netns")))
	a := e.Start(t)
	first, restarted := a, false
	t.Cleanup(func() {
		if !restarted {
			removeAll(t, first.Client)
		}
	})
	for _, p := range []string{"store/file", "driver/ptp"} {
		if s := plugins(t, a)[p]; !s.Healthy || s.Protocol != 1 || s.SDKVersion != "" {
			t.Fatalf("%s under today's agent: %+v", p, s)
		}
	}
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "old", Driver: "ptp", Subnet: "10.47.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ct := attach(t, a.Client, "old", "c1")
	serve(t, ct.key, "c1")
	wantHello := func(when string) {
		t.Helper()
		got, err := talk(t, "", "tcp", net.JoinHostPort(ct.addr.String(), "7777"))
		if err != nil || !strings.HasPrefix(got, "hello from c1") {
			t.Fatalf("%s: host → c1 over the v1 driver's interface: %q, %v", when, got, err)
		}
	}
	wantHello("after the attach")

	a.Terminate(10 * time.Second)
	a, restarted = e.Start(t), true
	t.Cleanup(func() { removeAll(t, a.Client) })
	n, err := a.Client.Network(ctx, "old")
	if err != nil || len(n.Endpoints) != 1 {
		t.Fatalf("network after the restart, from the v1 store: %+v, %v", n, err)
	}
	sb, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"})
	if err != nil || sb.Key != ct.key {
		t.Fatalf("c1 claimed after the restart: %+v, %v; want key %s", sb, err, ct.key)
	}
	wantHello("after the restart")

	if err := a.Client.Disconnect(ctx, "old", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, l := range nstest.Links(t, nil) {
		if strings.HasPrefix(l.Attrs().Name, "v1h") {
			t.Errorf("after the disconnect the host still has the v1 driver's %s", l.Attrs().Name)
		}
	}
	ns, err := osl.OpenNamespace(ct.key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if links, err := ns.Links(); err != nil || len(links) != 1 {
		t.Errorf("after the disconnect the sandbox holds %d links (%v), want only lo", len(links), err)
	}
}

// buildV1Plugins unpacks the old SDK beside a copy of the plugins' module
// and builds both plugins, returning the directory holding them.
func buildV1Plugins(t *testing.T) string {
	t.Helper()
	src := filepath.Join("testdata", "protocolv1")
	work := t.TempDir()
	ar, err := txtar.ParseFile(filepath.Join(src, "sdk-v1.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	fsys, err := txtar.FS(ar)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(work, fsys); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(work, "plugins"), os.DirFS(filepath.Join(src, "plugins"))); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "bin")
	cmd := exec.Command("go", "build", "-o", out+"/", "./...")
	cmd.Dir = filepath.Join(work, "plugins")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the v1 plugins: %v\n%s", err, msg)
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
