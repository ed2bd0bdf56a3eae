package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

var bins *agenttest.Bins

func TestMain(m *testing.M) {
	if name := os.Getenv(goLookupEnv); name != "" {
		os.Exit(goLookup(name))
	}
	nstest.Main(mainWithBins{m})
}

// mainWithBins builds the binaries once for the whole run, inside the
// isolated copy of the test process.
type mainWithBins struct{ m *testing.M }

func (w mainWithBins) Run() int {
	dir, err := os.MkdirTemp("", "sandnet-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if bins, err = agenttest.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := w.m.Run()
	os.RemoveAll(dir)
	left := leftLinks()
	// The kernel tears veth pairs of deleted namespaces down in the
	// background: give it time.
	for deadline := time.Now().Add(15 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = leftLinks() {
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		// Tests share this namespace one after another: a bridge left
		// behind takes the routes of a later test's network on the
		// same subnet (an agent's networks outlive it, so a test
		// removes what it made). One was seen once in a full -race
		// run and not since; until it is found, it fails the run only
		// with SANDNET_TEST_LEAKS=fail (go test -v shows the warning).
		fmt.Fprintf(os.Stderr, "WARNING: the tests left network state behind: %s\n", strings.Join(left, ", "))
		if code == 0 && os.Getenv("SANDNET_TEST_LEAKS") == "fail" {
			return 1
		}
	}
	return code
}

// leftLinks lists the bridges and veth ends of sandnet's drivers left in
// the test's own namespace (none when it is not isolated).
func leftLinks() []string {
	if !nstest.Isolated() {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		if !strings.HasPrefix(name, "sn") {
			continue
		}
		// Its addresses name the test: tests use subnets of their own.
		if addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL); err == nil && len(addrs) > 0 {
			var as []string
			for _, a := range addrs {
				if !a.IP.IsLinkLocalUnicast() {
					as = append(as, a.IPNet.String())
				}
			}
			name += " (" + strings.Join(as, " ") + ")"
		}
		out = append(out, name)
	}
	return out
}

// boltAndBridge is the config of an agent with the bolt store at
// dir/store.db, the bridge driver and namespace keys under dir/netns;
// sandboxExtra goes inside the sandbox block.
func boltAndBridge(dir, sandboxExtra string) string {
	return fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\ndriver \"bridge\" {}\nsandbox {\n  netns_dir = %q\n%s}\n",
		filepath.Join(dir, "store.db"), filepath.Join(dir, "netns"), sandboxExtra)
}

// boltAndNone is the store and driver blocks of a minimal agent.
func boltAndNone(dir string) string {
	return fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\ndriver \"none\" {}\n", filepath.Join(dir, "store.db"))
}

func plugins(t *testing.T, a *agenttest.Agent) map[string]plugin.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := a.Client.Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]plugin.Status{}
	for _, p := range ps {
		out[p.Kind+"/"+p.Name] = p
	}
	return out
}

// alive reports whether pid is a live process (a zombie counts as dead).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	return !strings.Contains(string(b), ") Z ")
}

func TestKilledStoreIsRestarted(t *testing.T) {
	a := agenttest.NewEnv(t, bins, boltAndNone(t.TempDir())).Start(t)
	before := plugins(t, a)["store/bolt"]
	if before.PID <= 0 || !before.Healthy {
		t.Fatalf("store before kill: %+v", before)
	}
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.UntilEmpty(t, 10*time.Second, "the store running again after kill -9", func() string {
		if now := plugins(t, a)["store/bolt"]; !now.Running || now.PID == before.PID {
			return fmt.Sprintf("%+v\nagent log:\n%s", now, a.Log())
		}
		return ""
	})
	if now := plugins(t, a)["store/bolt"]; now.Restarts != 1 {
		t.Fatalf("restarts = %d, want 1", now.Restarts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := a.Client.Health(ctx)
	if err != nil || h.Status != "ok" {
		t.Fatalf("health after restart = %+v, %v", h, err)
	}
}

// TestStoreBackEmptyIsReported: a store plugin that comes back from a
// crash without the data it held (here: its file deleted under it) is
// reported at once, loudly, with what the agent holds that the store
// lost; before, the agent carried on silently, listing sandboxes the
// store no longer had.
func TestStoreBackEmptyIsReported(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")).Start(t)
	ctx := context.Background()
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Client.DeleteSandbox(context.Background(), "c1") })
	files, _ := filepath.Glob(filepath.Join(dir, "store.db*"))
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	before := plugins(t, a)["store/bolt"]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 30*time.Second, "the agent reporting the store's loss", func() bool {
		return strings.Contains(a.Log(), "the store holds none of this host's sandboxes") && strings.Contains(a.Log(), "sandboxes=1")
	})
}

func TestNoPluginOutlivesTheAgent(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			a := agenttest.NewEnv(t, bins, boltAndNone(dir)).Start(t)
			ps := plugins(t, a)
			if len(ps) != 2 {
				t.Fatalf("plugins = %v", ps)
			}
			if err := a.Signal(sig); err != nil {
				t.Fatal(err)
			}
			code := a.Wait(10 * time.Second)
			if sig != syscall.SIGKILL && code != 0 {
				t.Fatalf("agent exit code after %v = %d, want 0\n%s", sig, code, a.Log())
			}
			for name, p := range ps {
				polltest.Until(t, 5*time.Second, fmt.Sprintf("plugin %s (pid %d) gone after the agent got %v", name, p.PID, sig), func() bool {
					return !alive(p.PID)
				})
			}
		})
	}
}

// refusedStart launches e's agent and returns its output once it has
// exited 1, as a start it refused; any other exit fails t.
func refusedStart(t *testing.T, e *agenttest.Env) string {
	t.Helper()
	a, err := e.Launch()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Terminate(5 * time.Second)
	if code := a.Wait(20 * time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1 (a refused start)\n%s", code, a.Log())
	}
	return a.Log()
}

func TestWrongChecksumRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	bad := strings.Repeat("0", 64)
	e := agenttest.NewEnv(t, bins, boltAndNone(dir)+"driver \"pinned\" {\n  command = "+strconv.Quote(filepath.Join(bins.PluginDir, "sandnet-driver-none"))+"\n  checksum = \"sha256:"+bad+"\"\n}\n")
	log := refusedStart(t, e)
	for _, want := range []string{`config.hcl:15:1: error: Plugin checksum mismatch`, `driver "pinned" {`, "sha256:" + bad, "has sha256:"} {
		if !strings.Contains(log, want) {
			t.Errorf("agent log does not contain %q:\n%s", want, log)
		}
	}
	if _, err := os.Stat(e.Socket); err == nil {
		t.Errorf("API socket %s left behind", e.Socket)
	}
}

// TestFailedStartRemovesWhatItMade: a start that fails once it has taken
// its directories — here the store plugin refuses its config (a bolt path
// that is a directory) — removes the directories, lock files and host-id
// it made; a directory that was there already stays.
func TestFailedStartRemovesWhatItMade(t *testing.T) {
	dir := t.TempDir()
	netns, files := filepath.Join(dir, "new", "netns"), filepath.Join(dir, "files")
	if err := os.Mkdir(files, 0o755); err != nil {
		t.Fatal(err)
	}
	e := agenttest.NewEnv(t, bins, fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\nsandbox {\n  netns_dir = %q\n  files_dir = %q\n}\n",
		dir, netns, files))
	if log := refusedStart(t, e); !strings.Contains(log, `bolt`) {
		t.Fatalf("the start did not fail on the store:\n%s", log)
	}
	for _, p := range []string{filepath.Join(dir, "new"), filepath.Join(files, agent.LockName), filepath.Join(e.DataDir, "host-id")} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			left, _ := os.ReadDir(p)
			t.Errorf("the failed start left %s (%v, holding %v)", p, err, left)
		}
	}
	if _, err := os.Stat(files); err != nil {
		t.Errorf("the failed start removed files_dir, which was there before: %v", err)
	}
}

// TestAgentConfigErrorsAtTheirBlock:// TestAgentConfigErrorsAtTheirBlock: a plugin block the agent cannot
// start — a driver no binary exists for, a command that is not there, a
// checksum the binary does not have, a config block the plugin's schema
// or the plugin itself refuses — is reported at its file:line:col, as
// `config validate` reports it, and the failed start makes nothing: no
// store, no lock file, no data directory.
func TestAgentConfigErrorsAtTheirBlock(t *testing.T) {
	none := filepath.Join(bins.PluginDir, "sandnet-driver-none")
	tests := []struct{ name, body, want string }{
		{"unknown driver", "driver \"zzz\" {}\n", "config.hcl:14:1: error: Plugin binary not usable; plugin binary " + filepath.Join(bins.PluginDir, "sandnet-driver-zzz") + " not found"},
		{"missing command", "driver \"x\" {\n  command = \"/nonexistent/sandnet-driver-x\"\n}\n", "config.hcl:14:1: error: Plugin binary not usable; plugin binary /nonexistent/sandnet-driver-x not found"},
		{"bad checksum", "driver \"pinned\" {\n  command = " + strconv.Quote(none) + "\n  checksum = \"sha256:" + strings.Repeat("0", 64) + "\"\n}\n",
			"config.hcl:14:1: error: Plugin checksum mismatch; checksum mismatch: config pins sha256:000"},
		{"config block the schema refuses", "driver \"none\" {\n  config {\n    mtu = 1500\n  }\n}\n", "config.hcl:16:5: error: Unsupported argument"},
		{"config the plugin refuses", "driver \"bridge\" {\n  config {\n    mtu = 10\n  }\n}\n", "config.hcl:14:1: error: Plugin failed to start; driver plugin \"bridge\": configuring: config mtu: MTU 10 out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data, netns, files := filepath.Join(dir, "data"), filepath.Join(dir, "netns"), filepath.Join(dir, "files")
			e := agenttest.NewEnv(t, bins, fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(data, "store.db"))+tt.body+
				fmt.Sprintf("sandbox {\n  netns_dir = %q\n  files_dir = %q\n}\n", netns, files))
			if log := refusedStart(t, e); !strings.Contains(log, tt.want) {
				t.Errorf("agent output does not contain %q:\n%s", tt.want, log)
			}
			for _, d := range []string{e.DataDir, data, netns, files} {
				if _, err := os.Stat(d); err == nil {
					left, _ := os.ReadDir(d)
					t.Errorf("the failed start made %s (holding %v)", d, left)
				}
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		args []string
		body string
		code int
		want []string
	}{
		{"valid", nil, "", 0, []string{"valid"}},
		{"valid, named by --config", []string{"--config"}, "", 0, []string{"valid"}},
		{"plugin config fails the plugin's schema", nil, "driver \"none\" {\n  config {\n    mtu = 1500\n  }\n}\n", 1,
			[]string{"config.hcl:16:5: error:", "mtu"}},
		{"misspelt block", nil, "resolvr {}\n", 1, []string{"config.hcl:14:1: error:", `Did you mean "resolver"?`}},
		{"core errors and a plugin config block's, in one run", nil, "resolvr {}\ndriver \"none\" {\n  config {\n    mtu = 1500\n  }\n}\n", 1,
			[]string{"config.hcl:14:1: error:", "config.hcl:17:5: error: Unsupported argument"}},
		{"checksum checked offline", []string{"-offline"}, "driver \"pinned\" {\n  command = " + strconv.Quote(filepath.Join(bins.PluginDir, "sandnet-driver-none")) +
			"\n  checksum = \"sha256:" + strings.Repeat("0", 64) + "\"\n}\n", 1, []string{"config.hcl:14:1: error: Plugin checksum mismatch"}},
		{"checksum that matches, offline", []string{"-offline"}, "driver \"pinned\" {\n  command = " + strconv.Quote(filepath.Join(bins.PluginDir, "sandnet-driver-none")) +
			"\n  checksum = \"sha256:" + sha256File(t, filepath.Join(bins.PluginDir, "sandnet-driver-none")) + "\"\n}\n", 0, []string{"valid"}},
		// A name that cannot name a binary in plugin_dir is refused,
		// and nothing is run: the path would be the name's, outside
		// plugin_dir (it ran /bin/true).
		{"plugin name outside plugin_dir", nil, "driver \"../../../../../../../../bin/true\" {}\n", 1,
			[]string{"config.hcl:14:8: error: Invalid plugin name", "!Plugin failed to start"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store := fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(dir, "store.db"))
			e := agenttest.NewEnv(t, bins, store+tt.body)
			out, err := exec.Command(bins.Sandnet, append(append([]string{"config", "validate"}, tt.args...), e.ConfigPath)...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Fatalf("exit code = %d, want %d\n%s", code, tt.code, out)
			}
			for _, w := range tt.want {
				if absent, ok := strings.CutPrefix(w, "!"); ok {
					if strings.Contains(string(out), absent) {
						t.Errorf("output contains %q:\n%s", absent, out)
					}
				} else if !strings.Contains(string(out), w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
		})
	}
}

// sha256File returns the SHA-256 of the file at path in hex.
func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
