package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// sandnetCmd runs the built sandnet binary and returns its combined
// output and exit code.
func sandnetCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bins.Sandnet, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// A second agent on the netns_dir of a running one refuses to start,
// naming the directory and the first agent's PID, and touches nothing:
// the first keeps its sandboxes (namespaces and addresses) and its spare
// namespaces, and its next creates work.
func TestSecondAgentOnSameNetnsDirRefuses(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dirA := t.TempDir()
	agenttest.CleanupMounts(t, dirA)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dirA, "  spare_namespaces = 2\n")).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "locked", Subnet: "10.46.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	first := attach(t, a.Client, "locked", "first")
	addrs := nsAddrs(t, first.key)
	netnsDir := filepath.Join(dirA, "netns")
	// Spare namespaces mounted: what the probe saw a second agent unmount.
	spares := func() int {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), filepath.Join(netnsDir, ".creating", "spare-"))
	}
	agenttest.Eventually(t, "the first agent's two spares made", func() bool { return spares() == 2 })

	dirB := t.TempDir()
	b := agenttest.NewEnv(t, bins, boltAndBridge(dirB, ""))
	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(dirB, "netns"), netnsDir, 1))
	if err := os.WriteFile(b.ConfigPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	second, err := b.Launch()
	if err != nil {
		t.Fatal(err)
	}
	defer second.Terminate(5 * time.Second)
	if code := second.Wait(20 * time.Second); code != 1 {
		t.Fatalf("second agent: exit code %d, want 1\n%s", code, second.Log())
	}
	want := fmt.Sprintf("sandbox netns_dir %s is in use by another sandnet agent (pid %d", netnsDir, a.Cmd.Process.Pid)
	if log := second.Log(); !strings.Contains(log, want) || strings.Count(strings.TrimSpace(log), "\n") != 0 {
		t.Fatalf("second agent's output is not the one line %q:\n%s", want, log)
	}
	if _, err := os.Stat(b.Socket); err == nil {
		t.Errorf("the refused agent left its socket %s", b.Socket)
	}

	if got := nsAddrs(t, first.key); got != addrs {
		t.Fatalf("first sandbox's addresses after the refused start: %s, before: %s", got, addrs)
	}
	if n := spares(); n != 2 {
		t.Fatalf("the first agent has %d spare namespaces after the refused start, want 2", n)
	}
	for i := range 4 {
		c := attach(t, a.Client, "locked", "next"+strconv.Itoa(i))
		if nsAddrs(t, c.key) == "" {
			t.Fatalf("sandbox next%d has no addresses", i)
		}
	}
}

// A client command with no agent behind its socket says so and how to
// start one, not a raw dial error.
func TestNoAgentRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	out, code := sandnetCmd(t, "network", "ls", "--socket", sock)
	if code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, out)
	}
	want := "sandnet: no sandnet agent is running at " + sock + "; start one with `sandnet agent --config FILE`"
	if !strings.HasPrefix(out, want) || strings.Contains(out, "unavailable") {
		t.Fatalf("output:\n%s\nwant it to start with %q and not end in a sentinel", out, want)
	}
}
