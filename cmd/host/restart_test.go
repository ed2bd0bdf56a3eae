package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// TestKillAgentWithFiftySandboxes: 50 sandboxes on a bridge network, the
// agent killed with SIGKILL and started again. All 50 come back with
// their namespaces and addresses untouched; the 10 no container claims
// within the grace period are deleted, and namespace mounts, veth links
// and address allocations drop by exactly 10 — nothing leaks.
func TestKillAgentWithFiftySandboxes(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	netnsDir := filepath.Join(dir, "netns")
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  stub_grace_period = \"3s\"\n"))
	a := e.Start(t)
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "fifty", Subnet: "10.45.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	type sbox struct{ key, addrs string }
	before := map[string]sbox{}
	for i := range 50 {
		ct := attach(t, a.Client, "fifty", fmt.Sprintf("c%02d", i))
		before[ct.id] = sbox{ct.key, nsAddrs(t, ct.key)}
	}
	var linkNames []string
	count := func() (mounts, links, allocs int) {
		linkNames = nil
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		// Sandboxes' namespaces; the spares the agent keeps made ahead of
		// time are not theirs.
		mounts = strings.Count(string(b), netnsDir+"/") - strings.Count(string(b), netnsDir+"/.creating/spare-")
		// Host ends of veth pairs: those of pairs prepared in spares
		// are not the sandboxes' either.
		for {
			var complete bool
			if linkNames, complete = hostEnds(t, netnsDir); complete {
				break
			}
		}
		links = len(linkNames)
		n, err := a.Client.Network(ctx, "fifty")
		if err != nil {
			t.Fatal(err)
		}
		return mounts, links, len(n.Endpoints)
	}
	var m0, l0, a0 int
	if !polltest.Wait(20*time.Second, func() bool { // a spare may be being prepared
		m0, l0, a0 = count()
		return m0 == 50 && l0 == 50 && a0 == 50
	}) {
		t.Fatalf("before the kill: %d mounts, %d links, %d allocations; want 50 each; links %v", m0, l0, a0, linkNames)
	}

	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(10 * time.Second)
	restarted := time.Now()
	a = e.Start(t)
	// Networks outlive the agent: leave none in the way of a later test.
	t.Cleanup(func() { removeAll(t, a.Client) })
	for i := range 40 {
		id := fmt.Sprintf("c%02d", i)
		sb, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		if sb.Key != before[id].key || nsAddrs(t, sb.Key) != before[id].addrs {
			t.Fatalf("%s after restart: key %s addresses %s; before: %+v", id, sb.Key, nsAddrs(t, sb.Key), before[id])
		}
	}
	polltest.UntilEmpty(t, 20*time.Second, "40 mounts, links and allocations left after the restart", func() string {
		if m, l, al := count(); m != 40 || l != 40 || al != 40 {
			return fmt.Sprintf("%d mounts, %d links, %d allocations\n%s", m, l, al, a.Log())
		}
		return ""
	})
	for i := 40; i < 50; i++ {
		if osl.Exists(before[fmt.Sprintf("c%02d", i)].key) {
			t.Fatalf("unclaimed c%02d's namespace is still there", i)
		}
	}
	// Each reaped stub was announced as a sandbox.delete event.
	evCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	evs, err := a.Client.Events(evCtx, url.Values{"type": {"sandbox.delete"}, "since": {restarted.Format(time.RFC3339Nano)}})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()
	var reaped []string
	for len(reaped) < 10 {
		ev, err := evs.Next()
		if err != nil {
			t.Fatalf("reading events after %v: %v", reaped, err)
		}
		if !strings.Contains(ev.Message, "unclaimed stub") || ev.SandboxID == "" {
			t.Fatalf("sandbox.delete event of a reaped stub: %+v", ev)
		}
		reaped = append(reaped, ev.Container)
	}
	slices.Sort(reaped)
	if want := []string{"c40", "c41", "c42", "c43", "c44", "c45", "c46", "c47", "c48", "c49"}; !slices.Equal(reaped, want) {
		t.Fatalf("reaped stubs announced: %v, want %v", reaped, want)
	}
}

// nsAddrs lists the interfaces and addresses inside the namespace at key.
func nsAddrs(t *testing.T, key string) string {
	t.Helper()
	ns, err := osl.OpenNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	links, err := ns.Links()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		addrs, _ := ns.Handle().AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			out = append(out, l.Attrs().Name+"="+a.IPNet.String())
		}
	}
	return strings.Join(out, ",")
}
