package main

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestSandboxLsAll: after an agent restart the sandboxes are stubs until
// their containers claim them; `sandbox ls` leaves them out and `sandbox
// ls --all` (GET /v1/sandboxes?all=true) lists them, STATE stub; a
// misspelt query parameter is refused.
func TestSandboxLsAll(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndNone(dir))
	a := e.Start(t)
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(10 * time.Second)
	a = e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })

	out, code := sandnetCmd(t, "sandbox", "ls", "--socket", a.Socket)
	if code != 0 || strings.Contains(out, "c1") {
		t.Fatalf("sandbox ls after a restart: exit %d, want c1 (a stub) left out\n%s", code, out)
	}
	out, code = sandnetCmd(t, "sandbox", "ls", "-a", "--socket", a.Socket)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code != 0 || len(lines) != 2 || !strings.Contains(lines[1], "c1") || !strings.HasSuffix(lines[1], "stub") {
		t.Fatalf("sandbox ls -a after a restart: exit %d, want c1 with STATE stub\n%s", code, out)
	}
	out, code = sandnetCmd(t, "sandbox", "ls", "--all", "--format", "json", "--socket", a.Socket)
	var sbs []controller.Sandbox
	if err := json.Unmarshal([]byte(out), &sbs); code != 0 || err != nil || len(sbs) != 1 || !sbs[0].Stub {
		t.Fatalf("sandbox ls --all --format json: exit %d, %v, want one sandbox marked stub\n%s", code, err, out)
	}
	if status, msg := rawRequest(t, a.Socket, "GET", "/v1/sandboxes?al=true", nil); status != 400 || !strings.HasPrefix(msg, `"al": not a parameter`) {
		t.Fatalf("GET /v1/sandboxes?al=true = %d %q, want 400 naming al", status, msg)
	}
	if status, msg := rawRequest(t, a.Socket, "GET", "/v1/sandboxes?all=maybe", nil); status != 400 || !strings.HasPrefix(msg, "all: ") {
		t.Fatalf("GET /v1/sandboxes?all=maybe = %d %q, want 400 naming all", status, msg)
	}
	// Claimed, it is listed as any other.
	if _, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	out, _ = sandnetCmd(t, "sandbox", "ls", "--socket", a.Socket)
	if !strings.Contains(out, "c1") || !strings.Contains(out, "ready") {
		t.Fatalf("sandbox ls after the claim:\n%s", out)
	}
}
