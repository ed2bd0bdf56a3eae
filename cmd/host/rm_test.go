package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestRemoveEach: `sandbox rm` and `network rm` go on past a name that
// fails, as docker rm does: every other name is removed and printed, the
// failure is printed on stderr naming its name, and the exit status is 1.
func TestRemoveEach(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndNone(dir)).Start(t)
	c := a.Client
	t.Cleanup(func() { removeAll(t, c) })
	for _, id := range []string{"c1", "c3"} {
		if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"n1", "n3"} {
		if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: n, Driver: "none"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"sandbox", "rm", "c1", "missing", "c3"}, {"network", "rm", "n1", "missing", "n3"}} {
		cmd := exec.Command(bins.Sandnet, append(args, "--socket", a.Socket)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1\n%s%s", strings.Join(args, " "), err, &stdout, &stderr)
		}
		if want := args[2] + "\n" + args[4] + "\n"; stdout.String() != want {
			t.Errorf("%s printed %q, want the two removed: %q", strings.Join(args, " "), &stdout, want)
		}
		if !strings.Contains(stderr.String(), `missing`) || strings.Count(stderr.String(), "\n") != 1 {
			t.Errorf("%s: stderr %q, want one line naming the missing one", strings.Join(args, " "), &stderr)
		}
	}
	sbs, err := c.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nets, err := c.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sbs) != 0 || len(nets) != 0 {
		t.Fatalf("left %d sandboxes and %d networks, want none", len(sbs), len(nets))
	}
	// With -format json the removed names are one JSON array.
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "j1"}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.Sandnet, "sandbox", "rm", "--format", "json", "--socket", a.Socket, "j1", "missing")
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	err = cmd.Run()
	var removed []string
	if jerr := json.Unmarshal(stdout.Bytes(), &removed); jerr != nil || len(removed) != 1 || removed[0] != "j1" || err == nil {
		t.Errorf("sandbox rm --format json j1 missing: %q (%v), exit %v; want [\"j1\"] and exit 1", &stdout, jerr, err)
	}
}
