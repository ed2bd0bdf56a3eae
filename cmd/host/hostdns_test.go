package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

const hostListen = "127.0.0.1:5353"

// digHost runs dig in the test's own namespace against the host listener.
func digHost(t *testing.T, args ...string) string {
	t.Helper()
	out, err := digAt("5353", args...)
	if err != nil {
		t.Fatalf("dig @127.0.0.1 -p 5353 %v: %v\n%s", args, err, out)
	}
	return out
}

// digAt runs dig in the test's own namespace against 127.0.0.1:port.
func digAt(port string, args ...string) (string, error) {
	out, err := exec.Command("dig", append([]string{"@127.0.0.1", "-p", port, "+time=2", "+tries=1"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestHostListener: with resolver { host_listen }, the host resolves
// name.network of its containers (A, PTR, UDP and TCP) and nothing else:
// a bare name and outside names get NXDOMAIN and nothing is forwarded.
// Without it, nothing listens there. All in the test's own namespace.
func TestHostListener(t *testing.T) {
	nstest.RequireRoot(t)
	if !nstest.Isolated() {
		t.Skip("binds 127.0.0.1:5353: needs the test's own network namespace (nstest)")
	}
	up := startFakeUpstream(t, "127.0.0.1:0")
	resolverBlock := fmt.Sprintf("resolver {\n  upstreams = [%q]\n%%s}\n", up.addr)

	t.Run("off by default", func(t *testing.T) {
		dir := t.TempDir()
		agenttest.CleanupMounts(t, dir)
		a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+fmt.Sprintf(resolverBlock, "")).Start(t)
		t.Cleanup(func() { removeAll(t, a.Client) })
		if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "hl"}); err != nil {
			t.Fatal(err)
		}
		attach(t, a.Client, "hl", "web")
		if c, err := net.DialTimeout("tcp", hostListen, 2*time.Second); err == nil {
			c.Close()
			t.Fatalf("something listens on %s over TCP without host_listen", hostListen)
		}
		pc, err := net.ListenPacket("udp4", hostListen)
		if err != nil {
			t.Fatalf("%s over UDP is taken without host_listen: %v", hostListen, err)
		}
		pc.Close()
	})

	t.Run("on", func(t *testing.T) {
		dir := t.TempDir()
		agenttest.CleanupMounts(t, dir)
		a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+
			fmt.Sprintf(resolverBlock, fmt.Sprintf("  host_listen = %q\n", hostListen))).Start(t)
		t.Cleanup(func() { removeAll(t, a.Client) })
		if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "hl"}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "other", Internal: true}); err != nil {
			t.Fatal(err)
		}
		web := attach(t, a.Client, "hl", "web")
		db := attach(t, a.Client, "other", "db")

		if got := digHost(t, "+short", "web.hl"); got != web.addr.String() {
			t.Fatalf("dig web.hl = %q, want %s", got, web.addr)
		}
		if got := digHost(t, "+short", "+tcp", "DB.other"); got != db.addr.String() {
			t.Fatalf("dig +tcp DB.other = %q, want %s", got, db.addr)
		}
		if got := digHost(t, "+short", "-x", web.addr.String()); got != "web.hl." {
			t.Fatalf("dig -x %s = %q, want web.hl.", web.addr, got)
		}
		for _, name := range []string{"web", "web.other", "outside.example"} {
			if got := digHost(t, name); !strings.Contains(got, "status: NXDOMAIN") {
				t.Fatalf("dig %s: want NXDOMAIN:\n%s", name, got)
			}
		}
		if n := up.asked("outside.example."); n != 0 {
			t.Fatalf("the host listener forwarded outside.example %d times; it must answer container names only", n)
		}
		// Records follow the containers.
		if err := a.Client.DeleteSandbox(t.Context(), "web"); err != nil {
			t.Fatal(err)
		}
		if got := digHost(t, "web.hl"); !strings.Contains(got, "status: NXDOMAIN") {
			t.Fatalf("dig web.hl after web's delete:\n%s", got)
		}
	})

	// A reload moves the listener (the new one first: an address taken
	// leaves the old one answering) and turns it off.
	t.Run("moved by a reload", func(t *testing.T) {
		dir := t.TempDir()
		agenttest.CleanupMounts(t, dir)
		listen := func(addr string) string { return fmt.Sprintf(resolverBlock, fmt.Sprintf("  host_listen = %q\n", addr)) }
		e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+listen(hostListen))
		a := e.Start(t)
		t.Cleanup(func() { removeAll(t, a.Client) })
		head, err := os.ReadFile(e.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		reload := func(block string) (string, int) { return reloadReplacing(t, e, head, listen(hostListen), block) }
		if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "hl"}); err != nil {
			t.Fatal(err)
		}
		web := attach(t, a.Client, "hl", "web")
		answers := func(port string) bool {
			out, err := digAt(port, "+short", "web.hl")
			return err == nil && out == web.addr.String()
		}
		if !answers("5353") {
			t.Fatal("no answer on 5353 before the reload")
		}
		if out, code := reload(listen("127.0.0.1:5354")); code != 0 || !strings.Contains(out, "applied: resolver.host_listen") {
			t.Fatalf("sandnet reload to 5354: exit %d\n%s", code, out)
		}
		if !answers("5354") || answers("5353") {
			t.Fatalf("after the move: 5354 answers %v, 5353 %v; want only 5354", answers("5354"), answers("5353"))
		}
		busy, err := net.ListenPacket("udp4", "127.0.0.1:5355")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		if out, code := reload(listen("127.0.0.1:5355")); code != 1 || !strings.Contains(out, "failed: resolver.host_listen (") || !answers("5354") {
			t.Fatalf("sandnet reload onto a taken address: exit %d, 5354 answers %v\n%s", code, answers("5354"), out)
		}
		if out, code := reload(fmt.Sprintf(resolverBlock, "")); code != 0 || !strings.Contains(out, "applied: resolver.host_listen") || answers("5354") {
			t.Fatalf("sandnet reload without host_listen: exit %d, 5354 answers %v\n%s", code, answers("5354"), out)
		}
	})
}
