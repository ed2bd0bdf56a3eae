package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/examples/plugins/store-etcd/etcdtest"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

// TestMain runs the tests in a throwaway network namespace when root: the
// agent test below creates sandboxes and a bridge.
func TestMain(m *testing.M) { nstest.Main(m) }

// run runs a command and returns its stdout; a non-zero exit fails the
// test with everything it printed.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, &stdout, &stderr)
	}
	return stdout.String()
}

func etcdBlock(endpoint string) string {
	return fmt.Sprintf("store \"etcd\" {\n  config {\n    endpoints = [%q]\n    prefix    = \"sandnet-test/\"\n  }\n}\n", endpoint)
}

// TestPluginCheck runs `sandnet plugin check` on the built plugin, the
// way CI proves an out-of-tree plugin: every case must pass.
func TestPluginCheck(t *testing.T) {
	srv := etcdtest.Start(t)
	sandnet := plugintest.Sandnet(t)
	bin := plugintest.Build(t, ".")
	hcl := filepath.Join(t.TempDir(), "etcd.hcl")
	if err := os.WriteFile(hcl, []byte(etcdBlock(srv.Endpoint)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run(t, sandnet, "plugin", "check", "--config", hcl, bin)
	if !strings.Contains(out, `store plugin "etcd"`) || !strings.Contains(out, " passed, 0 failed, 0 skipped: ok") {
		t.Fatalf("plugin check:\n%s", out)
	}
}

// TestMigrateFromBolt moves an agent's state from the embedded bolt store
// to etcd with `sandnet store migrate`, changing nothing but the store
// block, and checks the agent on etcd has the network and sandbox it had
// on bolt and keeps allocating from the same IPAM state.
func TestMigrateFromBolt(t *testing.T) {
	nstest.RequireRoot(t)
	srv := etcdtest.Start(t)
	sandnet := plugintest.Sandnet(t)
	root := plugintest.SandnetRepo(t)
	dir := t.TempDir()
	t.Cleanup(func() { unmountUnder(dir) })
	plugins := filepath.Join(dir, "plugins")
	for name, pkg := range map[string]string{
		"sandnet-store-etcd":    ".",
		"sandnet-store-bolt":    filepath.Join(root, "plugins", "store-bolt"),
		"sandnet-driver-bridge": filepath.Join(root, "plugins", "bridge"),
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(plugins, name), ".")
		cmd.Dir = pkg
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", name, err, out)
		}
	}
	head := fmt.Sprintf("data_dir = %q\nplugin_dir = %q\napi {\n  socket = %q\n}\nsandbox {\n  netns_dir = %q\n}\ndriver \"bridge\" {}\n",
		filepath.Join(dir, "data"), plugins, filepath.Join(dir, "sandnet.sock"), filepath.Join(dir, "netns"))
	boltHCL, etcdHCL := filepath.Join(dir, "bolt.hcl"), filepath.Join(dir, "etcd.hcl")
	boltBlock := fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(dir, "store.db"))
	if err := os.WriteFile(boltHCL, []byte(head+boltBlock), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(etcdHCL, []byte(head+etcdBlock(srv.Endpoint)), 0o644); err != nil {
		t.Fatal(err)
	}

	agent := startAgent(t, sandnet, boltHCL)
	run(t, sandnet, "network", "create", "--config", boltHCL, "--subnet", "10.77.0.0/24", "net1")
	first := sandboxIP(t, run(t, sandnet, "sandbox", "create", "--config", boltHCL, "--format", "json", "--network", "net1", "c1"))
	agent.stop(t)

	out := run(t, sandnet, "store", "migrate", "--from", boltHCL, "--to", etcdHCL)
	if !strings.Contains(out, "copied and verified") {
		t.Fatalf("store migrate: %s", out)
	}

	agent = startAgent(t, sandnet, etcdHCL)
	// The agent's host record is live (the record migrated from bolt
	// would show so even without leases); what proves the store keeps
	// leases is `host rm` of a host the store does not know: "not found"
	// with leases, refused without them (liveness would be unknown).
	var hosts []struct {
		State string `json:"state"`
		Self  bool   `json:"self"`
	}
	if js := run(t, sandnet, "host", "ls", "--config", etcdHCL, "--format", "json"); json.Unmarshal([]byte(js), &hosts) != nil || len(hosts) != 1 || !hosts[0].Self || hosts[0].State != "live" {
		t.Fatalf("host ls on etcd: %s, want this host, live", js)
	}
	rm := exec.Command(sandnet, "host", "rm", "--config", etcdHCL, "0123456789abcdef0123456789abcdef")
	if out, err := rm.CombinedOutput(); err == nil || !strings.Contains(string(out), "no such host in the store") {
		t.Fatalf("host rm of an unknown host on etcd: %v\n%s\nwant it named unknown", err, out)
	}
	if got := sandboxIP(t, run(t, sandnet, "sandbox", "inspect", "--config", etcdHCL, "--format", "json", "c1")); got != first {
		t.Fatalf("on etcd, c1 has address %s; on bolt it had %s", got, first)
	}
	second := sandboxIP(t, run(t, sandnet, "sandbox", "create", "--config", etcdHCL, "--format", "json", "--network", "net1", "c2"))
	if second == first || !strings.HasPrefix(second, "10.77.0.") {
		t.Fatalf("c2 on etcd got %s, c1 has %s: want another address of net1", second, first)
	}
	run(t, sandnet, "sandbox", "rm", "--config", etcdHCL, "c1", "c2")
	run(t, sandnet, "network", "rm", "--config", etcdHCL, "net1")
	agent.stop(t)
}

// sandboxIP returns the IPv4 address of the first endpoint in a sandbox's
// JSON, as `sandnet sandbox create/inspect --format json` print it.
func sandboxIP(t *testing.T, js string) string {
	t.Helper()
	var sb struct {
		Endpoints []struct {
			Address string `json:"address"`
		} `json:"endpoints"`
	}
	if err := json.Unmarshal([]byte(js), &sb); err != nil || len(sb.Endpoints) == 0 || sb.Endpoints[0].Address == "" {
		t.Fatalf("sandbox JSON without an endpoint address (%v):\n%s", err, js)
	}
	addr, _, _ := strings.Cut(sb.Endpoints[0].Address, "/")
	return addr
}

type agentProc struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

// startAgent runs `sandnet agent` and waits until its API answers.
func startAgent(t *testing.T, sandnet, config string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: exec.Command(sandnet, "agent", "-config", config), log: &bytes.Buffer{}, done: make(chan struct{})}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = a.cmd.Wait(); close(a.done) }()
	t.Cleanup(func() { a.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for exec.Command(sandnet, "network", "ls", "--config", config).Run() != nil {
		select {
		case <-a.done:
			t.Fatalf("agent exited:\n%s", a.log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent API not up after 20s:\n%s", a.log)
		}
	}
	return a
}

// stop sends SIGTERM to the agent (by PID) and waits for it.
func (a *agentProc) stop(t *testing.T) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
		t.Errorf("agent did not stop on SIGTERM:\n%s", a.log)
	}
}

// unmountUnder unmounts the sandbox namespaces the agent left under dir
// (they outlive it by design), so the test's directory can be removed.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			nstest.Remove(f[4])
		}
	}
}
