package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// getent runs `getent ahostsv4 name` inside the namespace at key with
// resolvConf bind-mounted over /etc/resolv.conf in a mount namespace of
// its own, as a container sees it: glibc's stub resolver, with its search
// list and ndots. It returns the first address, or "" when the name does
// not resolve.
func getent(t *testing.T, key, resolvConf, name string) string {
	t.Helper()
	script := `mount --bind "$1" /etc/resolv.conf && exec getent ahostsv4 "$2"`
	out, err := exec.Command("nsenter", "--net="+key, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, "sh", resolvConf, name).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 2 { // not found
		return ""
	} else if err != nil {
		t.Fatalf("getent ahostsv4 %s: %v\n%s", name, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("getent ahostsv4 %s printed nothing", name)
	}
	return f[0]
}

// TestNdots: with the embedded resolver, a sandbox's resolv.conf drops the
// host's ndots for ndots:0 unless the container gives its own; an A or
// AAAA question for a single-label name that is not a container's gets
// NXDOMAIN without reaching the upstream, unless its network forwards
// single labels; glibc then goes on to the search domains.
func TestNdots(t *testing.T) {
	nstest.RequireRoot(t)
	if !nstest.Isolated() {
		t.Skip("needs the test's own mount namespace (nstest)")
	}
	up := startFakeUpstream(t, "127.0.0.41:53")
	hostResolvConf(t, "nameserver 127.0.0.41\nsearch example.org\noptions ndots:5 timeout:1\n")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	env := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+"resolver {\n  cache_size = 0\n}\n")
	a := env.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	ctx := t.Context()
	c := a.Client

	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "plain"}); err != nil {
		t.Fatal(err)
	}
	if out, code := sandnetCmd(t, "network", "create", "--socket", env.Socket, "--dns-forward-single-label", "fwd"); code != 0 {
		t.Fatalf("sandnet network create --dns-forward-single-label: exit %d\n%s", code, out)
	}
	if out, code := sandnetCmd(t, "network", "inspect", "--socket", env.Socket, "fwd"); code != 0 || !regexp.MustCompile(`single labels: +true`).MatchString(out) {
		t.Fatalf("sandnet network inspect fwd: exit %d\n%s", code, out)
	}
	web := attach(t, c, "plain", "web")
	cli := attach(t, c, "plain", "cli")
	fcli := attach(t, c, "fwd", "fcli")
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "own",
		Options: sandbox.Options{DNSOptions: []string{"ndots:3", "edns0"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(ctx, "plain", controller.Connect{Container: "own"}); err != nil {
		t.Fatal(err)
	}

	// resolv.conf: the host's ndots:5 is not copied; the container's wins.
	rcOf := func(id string) string {
		t.Helper()
		sb, err := c.Sandbox(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(sb.ResolvConf)
		if err != nil {
			t.Fatal(err)
		}
		return sb.ResolvConf + "\x00" + string(b)
	}
	cliRC, cliBody, _ := strings.Cut(rcOf("cli"), "\x00")
	if !strings.Contains(cliBody, "options timeout:1 ndots:0\n") || !strings.Contains(cliBody, "search example.org\n") {
		t.Fatalf("cli's resolv.conf: want the host's search and options with ndots:0 for the host's ndots:5:\n%s", cliBody)
	}
	if _, body, _ := strings.Cut(rcOf("own"), "\x00"); !strings.Contains(body, "options ndots:3 edns0\n") {
		t.Fatalf("own's resolv.conf: want its own options, ndots:3 as given:\n%s", body)
	}

	// dig: a single label that is no container's is NXDOMAIN, not forwarded.
	if got := dig(t, cli.key, "registry"); !strings.Contains(got, "status: NXDOMAIN") {
		t.Fatalf("cli: dig registry:\n%s", got)
	}
	if got := dig(t, cli.key, "AAAA", "registry"); !strings.Contains(got, "status: NXDOMAIN") {
		t.Fatalf("cli: dig AAAA registry:\n%s", got)
	}
	if got := dig(t, cli.key, "+tcp", "registry"); !strings.Contains(got, "status: NXDOMAIN") {
		t.Fatalf("cli: dig +tcp registry:\n%s", got)
	}
	if got := dig(t, cli.key, "+short", "web"); got != web.addr.String() {
		t.Fatalf("cli: dig web = %q, want %s", got, web.addr)
	}
	if got := dig(t, cli.key, "+short", "registry.example.com"); got != "192.0.2.1" {
		t.Fatalf("cli: dig registry.example.com = %q, want the upstream's 192.0.2.1", got)
	}
	if n := up.asked("registry."); n != 0 {
		t.Fatalf("the upstream was asked for registry. %d times; single labels must not be forwarded", n)
	}
	if n := up.asked("registry.example.com."); n != 1 {
		t.Fatalf("the upstream was asked for registry.example.com. %d times, want 1", n)
	}

	// glibc, with the sandbox's resolv.conf: a container name at once; a
	// single label tried as it is (NXDOMAIN, kept here), then with the
	// search domain (forwarded).
	if got := getent(t, cli.key, cliRC, "web"); got != web.addr.String() {
		t.Fatalf("cli: getent web = %q, want %s", got, web.addr)
	}
	if n := up.asked("web.example.org."); n != 0 {
		t.Fatalf("a container name was sent upstream with the search domain (%d times): ndots:0 must have it asked as it is first", n)
	}
	if got := getent(t, cli.key, cliRC, "mirror"); got != "192.0.2.1" {
		t.Fatalf("cli: getent mirror = %q, want 192.0.2.1 through the search domain", got)
	}
	if up.asked("mirror.") != 0 || up.asked("mirror.example.org.") == 0 {
		t.Fatalf("getent mirror: upstream asked mirror. %d times, mirror.example.org. %d; want 0 and some",
			up.asked("mirror."), up.asked("mirror.example.org."))
	}

	// A network that forwards single labels.
	if got := dig(t, fcli.key, "+short", "registry"); got != "192.0.2.1" {
		t.Fatalf("fcli on a network with --dns-forward-single-label: dig registry = %q, want the upstream's answer", got)
	}
	if n := up.asked("registry."); n != 1 {
		t.Fatalf("the upstream was asked for registry. %d times from fcli, want 1", n)
	}
}

// TestAddHostGateway: an extra host NAME:host-gateway names the host as
// the container reaches it — the gateway of its default route — in the
// hosts file glibc reads, follows the sandbox to a network with a higher
// priority, and reaches a server the host runs on that address.
func TestAddHostGateway(t *testing.T) {
	nstest.RequireRoot(t)
	if !nstest.Isolated() {
		t.Skip("needs the test's own mount namespace (nstest)")
	}
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	for _, n := range []controller.NetworkCreate{{Name: "low", Subnet: "10.47.0.0/24"}, {Name: "high", Subnet: "10.48.0.0/24"}} {
		if _, err := c.CreateNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	out, code := sandnetCmd(t, "sandbox", "create", "--socket", a.Socket, "--network", "low", "--add-host", "host.sandnet.internal:host-gateway", "c1")
	if code != 0 {
		t.Fatalf("sandbox create --add-host NAME:host-gateway: exit %d\n%s", code, out)
	}
	sb, err := c.Sandbox(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func() string {
		t.Helper()
		script := `mount --bind "$1" /etc/hosts && exec getent hosts "$2"`
		out, err := exec.Command("nsenter", "--net="+sb.Key, "unshare", "--mount", "--propagation", "private",
			"sh", "-c", script, "sh", sb.Hosts, "host.sandnet.internal").CombinedOutput()
		if err != nil {
			t.Fatalf("getent hosts host.sandnet.internal: %v\n%s", err, out)
		}
		return strings.Fields(string(out))[0]
	}
	if got := lookup(); got != "10.47.0.1" {
		t.Fatalf("host.sandnet.internal = %s, want 10.47.0.1 (low's gateway)", got)
	}
	ln, err := net.Listen("tcp", "10.47.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("hello from the host"))
			conn.Close()
		}
	}()
	if got, err := talk(t, sb.Key, "tcp", ln.Addr().String()); err != nil || got != "hello from the host" {
		t.Fatalf("the container to the host at host-gateway: %q, %v", got, err)
	}
	if _, err := c.Connect(ctx, "high", controller.Connect{Container: "c1", Priority: 10}); err != nil {
		t.Fatal(err)
	}
	if got := lookup(); got != "10.48.0.1" {
		t.Fatalf("after a connect with a higher priority, host.sandnet.internal = %s, want 10.48.0.1", got)
	}
	removeAll(t, c)
}
