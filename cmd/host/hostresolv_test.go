package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// hostResolvConf bind-mounts a file the test owns over /etc/resolv.conf in
// the test's own mount namespace (nstest made it private), for the agent
// the test starts, and returns the file's path.
func hostResolvConf(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(path, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting over /etc/resolv.conf: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount("/etc/resolv.conf", unix.MNT_DETACH) })
	return path
}

// TestUpstreamsFollowHostResolvConf: editing the host's resolv.conf moves
// forwarding to the new server with no restart and no rewrite of the
// sandbox's resolv.conf; a sandbox with its own --dns keeps its server.
func TestUpstreamsFollowHostResolvConf(t *testing.T) {
	nstest.RequireRoot(t)
	if !nstest.Isolated() {
		t.Skip("needs the test's own mount namespace (nstest)")
	}
	first := startFakeUpstream(t, "127.0.0.21:53")
	second := startFakeUpstream(t, "127.0.0.22:53")
	hostFile := hostResolvConf(t, "nameserver 127.0.0.21\nsearch example.org\n")

	a := bridgeAgent(t)
	ctx := t.Context()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "follow"}); err != nil {
		t.Fatal(err)
	}
	cli := attach(t, a.Client, "follow", "cli")
	own, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "own",
		Options: sandbox.Options{DNS: []netip.Addr{netip.MustParseAddr("127.0.0.21")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Client.Connect(ctx, "follow", controller.Connect{Container: "own"}); err != nil {
		t.Fatal(err)
	}

	if got := dig(t, cli.key, "+short", "before.example"); got != "192.0.2.1" || first.asked("before.example.") != 1 {
		t.Fatalf("dig before.example = %q, first upstream asked %d times; want 192.0.2.1 from it", got, first.asked("before.example."))
	}
	sb, err := a.Client.Sandbox(ctx, "cli")
	if err != nil {
		t.Fatal(err)
	}
	rcBefore, err := os.ReadFile(sb.ResolvConf)
	if err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(hostFile, []byte("nameserver 127.0.0.22\nsearch example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	var moved time.Duration
	for i := 0; ; i++ {
		name := fmt.Sprintf("after%d.example", i)
		dig(t, cli.key, "+short", name)
		if second.asked(name+".") == 1 {
			moved = time.Since(edited)
			break
		}
		if time.Since(edited) > 10*time.Second {
			t.Fatalf("after 10 s, queries still go to the first upstream (asked for %s: %d times)", name, first.asked(name+"."))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("forwarding moved %s after the edit", moved.Round(time.Millisecond))

	if rc, err := os.ReadFile(sb.ResolvConf); err != nil || string(rc) != string(rcBefore) {
		t.Fatalf("the sandbox's resolv.conf changed:\n%s\nwas:\n%s (%v)", rc, rcBefore, err)
	}
	if got := dig(t, own.Key, "+short", "own.example"); got != "192.0.2.1" || first.asked("own.example.") != 1 {
		t.Fatalf("the sandbox with --dns 127.0.0.21: dig own.example = %q, its server asked %d times; want its own server still",
			got, first.asked("own.example."))
	}
}
