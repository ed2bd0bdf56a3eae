package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// The named steps of docs/architecture.md, in order. A step renamed in
// the code and not here fails the test: the agent does not crash.
var (
	attachSteps = []string{"reserve", "await-namespace", "start-side-work", "call-driver", "join-sandbox", "await-commit", "reconcile"}
	createSteps = []string{"acquire-namespace", "persist", "commit-namespace", "connect-rest", "register"}
)

// TestCrashAfterEachStep kills the agent (SIGKILL, from inside, through
// agent.EnvCrashAfter) right after each named step of an attach — through
// a connect and through a create that lists its networks — and of a
// create, with networks and without; starts it again; and checks what
// docs/architecture.md's crash-point table promises once Start's repairs
// have run: the container's sandbox is either whole (a stub whose
// namespace holds exactly its endpoints' interfaces, up, with their
// addresses) or gone; no endpoint names a missing sandbox; no namespace
// is left in the scratch directory or mounted without a sandbox; no host
// end of a veth pair is left without its endpoint; and, the agent
// stopped, every allocated address belongs to a stored endpoint.
func TestCrashAfterEachStep(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	db, netnsDir := filepath.Join(dir, "store.db"), filepath.Join(dir, "netns")
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  stub_grace_period = \"1h\"\n"))
	a := e.Start(t)
	for i, name := range []string{"red", "blue"} {
		if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: name, Subnet: fmt.Sprintf("10.55.%d.0/24", i)}); err != nil {
			t.Fatal(err)
		}
	}
	a.Terminate(10 * time.Second)

	connect := func(c *api.Client, id string) error {
		if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
			return fmt.Errorf("the create before the connect failed: %w", err)
		}
		_, err := c.Connect(ctx, "red", controller.Connect{Container: id})
		return err
	}
	createWith := func(c *api.Client, id string) error {
		_, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id,
			Networks: []controller.SandboxNetwork{{Network: "red"}, {Network: "blue"}}})
		return err
	}
	createWithout := func(c *api.Client, id string) error {
		_, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
		return err
	}
	type crashCase struct {
		name, after string // after: flow:step
		run         func(c *api.Client, id string) error
	}
	var cases []crashCase
	for _, s := range attachSteps {
		cases = append(cases, crashCase{"connect/" + s, "attach:" + s, connect},
			crashCase{"create-with-networks/attach-" + s, "attach:" + s, createWith})
	}
	for _, s := range createSteps {
		cases = append(cases, crashCase{"create-with-networks/" + s, "create:" + s, createWith},
			crashCase{"create/" + s, "create:" + s, createWithout})
	}
	var ids []string   // the containers of every case so far
	t.Cleanup(func() { // no link left in the namespace the package's tests share
		a, err := e.Launch()
		if err != nil {
			t.Error(err)
			return
		}
		defer a.Terminate(10 * time.Second)
		if err := a.WaitReady(15 * time.Second); err != nil {
			t.Error(err)
			return
		}
		for _, id := range ids { // stubs after the restart: claimed, then deleted
			_, _ = a.Client.RestoreSandbox(ctx, id)
		}
		removeAll(t, a.Client)
	})
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("crash-%d", i)
			ids = append(ids, id)
			e.Environ = []string{agent.EnvCrashAfter + "=" + tc.after}
			a, err := e.Launch()
			e.Environ = nil
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { a.Terminate(10 * time.Second) })
			if err := a.WaitReady(15 * time.Second); err != nil {
				t.Fatalf("%v\nagent log:\n%s", err, a.Log())
			}
			err = tc.run(a.Client, id)
			a.Wait(15 * time.Second)
			if ps := a.Cmd.ProcessState; ps == nil || !ps.Sys().(syscall.WaitStatus).Signaled() {
				t.Fatalf("the agent did not crash after %s (the request answered %v)", tc.after, err)
			}
			if err == nil {
				t.Fatalf("the request succeeded though the agent crashed after %s", tc.after)
			}

			a = e.Start(t)
			checkAfterCrash(t, a.Client, netnsDir, ids)
			a.Terminate(10 * time.Second)
			checkAllocations(t, db, storedEndpoints(t, db))
		})
	}
}

// checkAfterCrash checks, with the agent started again after a crash,
// that the sandbox of each container of ids (the last: the one the crash
// cut short) is whole or gone, and that nothing is left that no record
// owns (see TestCrashAfterEachStep). After a restart every sandbox is a
// stub: each is claimed, as its runtime would. The repairs of the host's
// side (the bridge's reaper) run in the background: they are polled for.
func checkAfterCrash(t *testing.T, c *api.Client, netnsDir string, ids []string) {
	t.Helper()
	ctx := context.Background()
	var sbs []*controller.Sandbox
	byID := map[string]*controller.Sandbox{}
	whole := false
	for _, id := range ids {
		sb, err := c.RestoreSandbox(ctx, id)
		if errors.Is(err, sdk.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("claiming the sandbox of %s: %v", id, err)
		}
		sbs = append(sbs, sb)
		byID[sb.ID] = sb
		whole = id == ids[len(ids)-1]
	}
	if listed, err := c.Sandboxes(ctx); err != nil || len(listed) != len(sbs) {
		t.Fatalf("%d sandboxes listed (%v) after %d claimed", len(listed), err, len(sbs))
	}
	var eps []controller.Endpoint
	for _, net := range []string{"red", "blue"} {
		n, err := c.Network(ctx, net)
		if err != nil {
			t.Fatal(err)
		}
		for _, ep := range n.Endpoints {
			if byID[ep.SandboxID] == nil {
				t.Fatalf("endpoint %s on %s names sandbox %q, which is not stored", ep.Name, net, ep.SandboxID)
			}
			eps = append(eps, ep)
		}
	}
	// Every namespace is a stored sandbox's, holding exactly the
	// interfaces of its endpoints; the scratch directory holds only the
	// new agent's spares.
	entries, err := os.ReadDir(netnsDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if en.Name() == ".creating" {
			left, _ := os.ReadDir(filepath.Join(netnsDir, en.Name()))
			for _, l := range left {
				if !strings.HasPrefix(l.Name(), "spare-") {
					t.Fatalf("half-made namespace left: %s", l.Name())
				}
			}
			continue
		}
		if strings.HasPrefix(en.Name(), ".") {
			continue // the agent's lock file
		}
		sb := byID[en.Name()]
		if sb == nil {
			t.Fatalf("namespace %s has no sandbox", en.Name())
		}
		var want []string
		for _, ep := range sb.Endpoints {
			want = append(want, fmt.Sprintf("%s up %s", ep.IfName, ep.Address))
		}
		if got := interfaceSet(t, filepath.Join(netnsDir, en.Name())); !slices.Equal(got, sorted(want)) {
			t.Fatalf("sandbox of %s: interfaces %v, want those of its endpoints %v", sb.ContainerID, got, sorted(want))
		}
	}
	for _, sb := range sbs {
		if _, err := os.Stat(sb.Key); err != nil {
			t.Fatalf("sandbox of %s is listed but its namespace is missing: %v", sb.ContainerID, err)
		}
	}
	// Nothing mounted below the namespace directory but sandboxes' keys
	// and spares.
	for _, m := range mountsUnder(t, netnsDir) {
		if rel, _ := filepath.Rel(netnsDir, m); byID[rel] == nil && !strings.HasPrefix(rel, ".creating/spare-") {
			t.Fatalf("mount %s belongs to no sandbox", m)
		}
	}
	// The host end of every veth pair is an endpoint's.
	var want []string
	for _, ep := range eps {
		want = append(want, "sn"+ep.ID[:11])
	}
	want = sorted(want)
	var got []string
	ok := polltest.Wait(30*time.Second, func() bool {
		var complete bool
		got, complete = hostEnds(t, netnsDir)
		return complete && slices.Equal(got, want)
	})
	if !ok {
		t.Fatalf("host ends of veth pairs %v; want those of the endpoints %v", got, want)
	}
	t.Logf("after the restart: the sandbox is %s; %d sandboxes, %d endpoints", map[bool]string{true: "whole", false: "gone"}[whole], len(sbs), len(eps))
}

// interfaceSet lists the links of the namespace at key other than lo as
// "name up|down addr", sorted.
func interfaceSet(t *testing.T, key string) []string {
	t.Helper()
	var out []string
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		for _, l := range nstest.Links(t, h) {
			if l.Attrs().Name == "lo" {
				continue
			}
			state := "down"
			if l.Attrs().Flags&net.FlagUp != 0 {
				state = "up"
			}
			addrs, err := h.AddrList(l, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			var as []string
			for _, a := range addrs {
				as = append(as, a.IPNet.String())
			}
			out = append(out, fmt.Sprintf("%s %s %s", l.Attrs().Name, state, strings.Join(as, " ")))
		}
		return nil
	})
	return sorted(out)
}

// hostEnds lists the bridge driver's host ends of veth pairs in the
// test's namespace that belong to endpoints, sorted: those of pairs
// prepared in the agent's spare namespaces (below netnsDir) are left
// out. nil and false when the links changed during the listing (the
// reaper deleting some), to be asked again.
func hostEnds(t testing.TB, netnsDir string) ([]string, bool) {
	t.Helper()
	spare := spareHostEnds(t, netnsDir)
	links, err := netlink.LinkList()
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if name := l.Attrs().Name; l.Type() == "veth" && strings.HasPrefix(name, "sn") && !strings.HasPrefix(name, "snbr-") && !spare[l.Attrs().Index] {
			out = append(out, name)
		}
	}
	return sorted(out), true
}

// spareHostEnds returns the ifindexes, in the test's namespace, of the
// host ends of the pairs a driver prepared in the agent's spare
// namespaces (netnsDir/.creating/spare-…), which no endpoint owns yet: the
// parent of each veth inside a spare. A spare destroyed meanwhile is
// skipped.
func spareHostEnds(t testing.TB, netnsDir string) map[int]bool {
	t.Helper()
	out := map[int]bool{}
	dir := filepath.Join(netnsDir, ".creating")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "spare-") {
			continue
		}
		ns, err := netns.GetFromPath(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		h, err := netlink.NewHandleAt(ns)
		ns.Close()
		if err != nil {
			continue
		}
		links := nstest.Links(t, h)
		h.Close()
		for _, l := range links {
			if l.Type() == "veth" && l.Attrs().ParentIndex > 0 {
				out[l.Attrs().ParentIndex] = true
			}
		}
	}
	return out
}

// mountsUnder lists the mount points below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
