// Package plugintest builds a plugin binary and launches it the way the
// sandnet host does (go-plugin, gRPC, AutoMTLS, no inherited environment),
// so a plugin author can run the sdk conformance suites against the real
// process.
package plugintest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/store"
)

// Build compiles the main package pkg (an import path or a directory) into
// a temporary directory and returns the binary's path.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	name := filepath.Base(pkg)
	if name == "." || name == ".." {
		// A directory relative to the test's: name the binary after it.
		abs, err := filepath.Abs(pkg)
		if err != nil {
			t.Fatal(err)
		}
		name = filepath.Base(abs)
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("building %s: %v", pkg, err)
	}
	return out
}

// Launch starts the plugin binary at path as a plugin of the given kind
// and returns the dispensed client (a *driver.Client or *store.Client) and
// the go-plugin client. The process is killed when the test ends.
func Launch(t testing.TB, kind, path string, args ...string) (any, *plugin.Client) {
	t.Helper()
	sets := map[int]plugin.PluginSet{}
	switch kind {
	case sdk.KindDriver:
		sets = driver.PluginSets(sdk.Info{}, nil)
	case sdk.KindStore:
		sets = store.PluginSets(sdk.Info{}, nil)
	default:
		t.Fatalf("unknown plugin kind %q", kind)
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake(),
		VersionedPlugins: sets,
		Cmd:              exec.Command(path, args...),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		GRPCDialOptions:  sdk.GRPCDialOptions(),
		SkipHostEnv:      true,
		StartTimeout:     10 * time.Second,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: filepath.Base(path), Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(c.Kill)
	rpc, err := c.Client()
	if err != nil {
		t.Fatalf("starting plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(kind)
	if err != nil {
		t.Fatalf("dispensing %s from %s: %v", kind, path, err)
	}
	return raw, c
}

// LaunchStore launches a store plugin, sends it config (the cty JSON a
// host would send; nil for none) and returns its client.
func LaunchStore(t testing.TB, path string, config []byte) *store.Client {
	t.Helper()
	raw, _ := Launch(t, sdk.KindStore, path)
	c := raw.(*store.Client)
	if err := c.Configure(context.Background(), config); err != nil {
		t.Fatalf("configuring store plugin %s: %v", path, err)
	}
	return c
}

// LaunchDriver launches a driver plugin, sends it config and returns its
// client.
func LaunchDriver(t testing.TB, path string, config []byte) *driver.Client {
	t.Helper()
	raw, _ := Launch(t, sdk.KindDriver, path)
	c := raw.(*driver.Client)
	if err := c.Configure(context.Background(), config); err != nil {
		t.Fatalf("configuring driver plugin %s: %v", path, err)
	}
	return c
}
