package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// agentWithDrivers starts an agent with the bolt store and the none and
// host drivers, sandbox keys under its own directory.
func agentWithDrivers(t *testing.T, grace string) (*agenttest.Env, *agenttest.Agent) {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	blocks := boltAndNone(dir) + "driver \"host\" {}\n" +
		fmt.Sprintf("sandbox {\n  netns_dir = %q\n  stub_grace_period = %q\n}\n", filepath.Join(dir, "netns"), grace)
	e := agenttest.NewEnv(t, bins, blocks)
	return e, e.Start(t)
}

func TestAPIErrorsNameTheField(t *testing.T) {
	_, a := agentWithDrivers(t, "1m")
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "quiet", Driver: "none"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		status int
		msg    string
	}{
		{"empty container", func() error { _, err := c.CreateSandbox(ctx, controller.SandboxCreate{}); return err }, 400, "container_id"},
		{"duplicate sandbox", func() error {
			_, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1"})
			return err
		}, 403, "already has sandbox"},
		{"bad subnet", func() error {
			_, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "x", Driver: "none", Subnet: "banana"})
			return err
		}, 400, "subnet"},
		{"unknown driver", func() error {
			_, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "x", Driver: "vxlan"})
			return err
		}, 400, "driver"},
		{"duplicate network", func() error {
			_, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "quiet", Driver: "none"})
			return err
		}, 409, "name"},
		{"unknown network", func() error { _, err := c.Network(ctx, "nope"); return err }, 404, "nope"},
		{"unknown sandbox", func() error { _, err := c.Sandbox(ctx, "ghost"); return err }, 404, "ghost"},
		{"unknown field", func() error {
			return c.Do(ctx, "POST", "/v1/networks", map[string]any{"name": "x", "drvier": "none"}, nil)
		}, 400, `drvier: unknown field`},
		{"connect to host network without host mode", func() error {
			if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "host", Driver: "host"}); err != nil {
				return err
			}
			_, err := c.Connect(ctx, "host", controller.Connect{Container: "c1"})
			return err
		}, 403, "host-mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Status != tt.status || !strings.Contains(ae.Message, tt.msg) {
				t.Fatalf("err = %v, want status %d naming %q", err, tt.status, tt.msg)
			}
		})
	}
	ns, err := c.Networks(ctx)
	if err != nil || len(ns) != 2 {
		t.Fatalf("networks after the bad requests = %d, %v; want quiet and host", len(ns), err)
	}
	sbs, err := c.Sandboxes(ctx)
	if err != nil || len(sbs) != 1 {
		t.Fatalf("sandboxes after the bad requests = %d, %v; want 1", len(sbs), err)
	}
}

// TestAgentKilledSandboxesSurvive: sandboxes outlive a kill -9 of the
// agent; after a restart the claimed ones keep their namespaces, and the
// unclaimed one is deleted when the grace period ends.
func TestAgentKilledSandboxesSurvive(t *testing.T) {
	e, a := agentWithDrivers(t, "2s")
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "quiet", Driver: "none"}); err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, id := range []string{"keep1", "keep2", "gone"} {
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Connect(ctx, "quiet", controller.Connect{Container: id}); err != nil {
			t.Fatal(err)
		}
		keys[id] = sb.Key
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(10 * time.Second)
	for id, key := range keys {
		if !osl.Exists(key) {
			t.Fatalf("namespace of %s gone after the agent was killed", id)
		}
	}
	a = e.Start(t)
	c = a.Client
	for _, id := range []string{"keep1", "keep2"} {
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		if sb.Key != keys[id] || len(sb.Endpoints) != 1 {
			t.Fatalf("claimed %s = key %s with %d endpoints; want key %s with 1", id, sb.Key, len(sb.Endpoints), keys[id])
		}
	}
	polltest.UntilEmpty(t, 10*time.Second, "the unclaimed sandbox's namespace gone after the restart", func() string {
		if osl.Exists(keys["gone"]) {
			return keys["gone"] + "\n" + a.Log()
		}
		return ""
	})
	if err := c.DeleteNetwork(ctx, "quiet"); err == nil {
		t.Fatal("network with the claimed sandboxes' endpoints was deleted")
	}
	for _, id := range []string{"keep1", "keep2"} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteNetwork(ctx, "quiet"); err != nil {
		t.Fatalf("deleting the network once empty: %v", err)
	}
}
