package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// dig runs dig inside the namespace at key against the sandbox's embedded
// resolver and returns its short answer.
func dig(t *testing.T, key string, args ...string) string {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + key, "dig", "@127.0.0.11", "+time=2", "+tries=1"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestEmbeddedDNS(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is not installed (make deps installs bind9-dnsutils)")
	}
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	for _, n := range []string{"front", "back"} {
		if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: n, EnableIPv6: n == "front"}); err != nil {
			t.Fatal(err)
		}
	}
	// network ls shows a network's IPv6 subnet beside its IPv4 one.
	if out, code := sandnetCmd(t, "network", "ls", "--socket", a.Socket); code != 0 || !regexp.MustCompile(`(?m)\bfront\s.*\d+\.\d+\.\d+\.\d+/\d+, [0-9a-f:]+/64`).MatchString(out) {
		t.Fatalf("network ls: exit %d, want front with both subnets\n%s", code, out)
	}
	web := attach(t, c, "front", "web")
	cli := attach(t, c, "front", "cli")
	if _, err := c.Connect(ctx, "back", controller.Connect{Container: "web", Aliases: []string{"api"}}); err != nil {
		t.Fatal(err)
	}
	lone := attach(t, c, "back", "lone")

	if got := dig(t, cli.key, "+short", "WEB"); got != web.addr.String() {
		t.Fatalf("cli: dig web = %q, want %s (names are case-insensitive)", got, web.addr)
	}
	sbWeb, err := c.Sandbox(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var web6 string
	for _, ep := range sbWeb.Endpoints {
		if ep.AddressV6.IsValid() {
			web6 = ep.AddressV6.Addr().String()
		}
	}
	if got := dig(t, cli.key, "+short", "AAAA", "web"); web6 == "" || got != web6 {
		t.Fatalf("cli: dig AAAA web = %q, want %q", got, web6)
	}
	if got := dig(t, cli.key, "+short", "AAAA", "api"); got != "" {
		t.Fatalf("cli: dig AAAA api = %q", got)
	}
	if got := dig(t, lone.key, "AAAA", "api"); !strings.Contains(got, "status: NOERROR") || strings.Contains(got, "ANSWER: 1") {
		t.Fatalf("lone: AAAA of api, which has only IPv4 on back, must be NOERROR with no answer:\n%s", got)
	}
	if got := dig(t, cli.key, "+short", "web.front"); got != web.addr.String() {
		t.Fatalf("cli: dig web.front = %q", got)
	}
	if got := dig(t, cli.key, "+short", "+tcp", "web"); got != web.addr.String() {
		t.Fatalf("cli: dig +tcp web = %q", got)
	}
	if got := dig(t, cli.key, "+short", "-x", web.addr.String()); got != "web.front." {
		t.Fatalf("cli: dig -x %s = %q, want web.front.", web.addr, got)
	}
	if got := dig(t, cli.key, "lone"); !strings.Contains(got, "NXDOMAIN") && !strings.Contains(got, "SERVFAIL") && !strings.Contains(got, "REFUSED") {
		t.Fatalf("cli resolved lone, which shares no network with it:\n%s", got)
	}
	if got := dig(t, cli.key, "+short", "api"); got != "" {
		t.Fatalf("cli resolved web's alias on back, a network cli is not on: %q", got)
	}
	if got := dig(t, lone.key, "+short", "api"); got == "" {
		t.Fatal("lone cannot resolve web's alias api on their shared network")
	}

	// resolv.conf names the embedded resolver and keeps the host's search.
	sb, err := c.Sandbox(ctx, "cli")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := os.ReadFile(sb.ResolvConf)
	if err != nil || !strings.Contains(string(rc), "nameserver 127.0.0.11") {
		t.Fatalf("resolv.conf:\n%s (%v)", rc, err)
	}

	// The Go resolver, in a process inside the sandbox (goroutines of this
	// process could run on threads outside it).
	cmd := exec.Command("nsenter", "--net="+cli.key, os.Args[0])
	cmd.Env = append(os.Environ(), goLookupEnv+"=web")
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != web.addr.String()+" "+web6 {
		t.Fatalf("Go resolver: web = %q, %v; want %s and %s", out, err, web.addr, web6)
	}

	// glibc, through the sandbox's resolv.conf as a container sees it.
	if got := getent(t, cli.key, sb.ResolvConf, "web"); got != web.addr.String() {
		t.Fatalf("getent ahostsv4 web = %q, want %s", got, web.addr)
	}

	// Records follow disconnect and rename with no restart.
	if out, code := sandnetCmd(t, "sandbox", "rename", "--socket", a.Socket, "web", "www"); code != 0 {
		t.Fatalf("sandbox rename web www: exit %d\n%s", code, out)
	}
	if out, code := sandnetCmd(t, "sandbox", "rename", "--socket", a.Socket, "web", "no good"); code != 1 || !strings.Contains(out, `name: "no good" is not a valid name`) {
		t.Fatalf("sandbox rename to a bad name: exit %d, want 1 naming it\n%s", code, out)
	}
	if got := dig(t, cli.key, "+short", "www"); got != web.addr.String() {
		t.Fatalf("after rename: dig www = %q", got)
	}
	if got := dig(t, cli.key, "+short", "web"); got != "" {
		t.Fatalf("after rename: the old name web still answers %q", got)
	}
	if err := c.Disconnect(ctx, "front", "web"); err != nil {
		t.Fatal(err)
	}
	if got := dig(t, cli.key, "+short", "www"); got != "" {
		t.Fatalf("after disconnect: dig www = %q, want nothing", got)
	}
}

// TestDNSNamesWithDots: a container answers to its own name even when it
// has a hostname, to the hostname beside it, and to aliases and
// hostnames that have dots of their own, also on a network whose name
// has one (the resolver once read the first dot as the start of
// ".network" and forwarded such names; the hostname once replaced the
// container's name).
func TestDNSNamesWithDots(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "my.net"}); err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{
		ContainerID: "api1", Options: sandbox.Options{Hostname: "api.example.com"},
		Networks: []controller.SandboxNetwork{{Network: "my.net", Connect: controller.Connect{Aliases: []string{"Db.Local"}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.Endpoints) != 1 {
		t.Fatalf("endpoints = %+v", sb.Endpoints)
	}
	addr := sb.Endpoints[0].Address.Addr().String()
	cli := attach(t, c, "my.net", "cli")
	for _, name := range []string{"api1", "API1.my.net", "api.example.com", "db.local", "db.local.my.net", "api.example.com.my.net"} {
		if got := dig(t, cli.key, "+short", name); got != addr {
			t.Errorf("dig %s = %q, want %s", name, got, addr)
		}
	}
	if got := dig(t, cli.key, "+short", "-x", addr); got != "api1.my.net." {
		t.Errorf("dig -x %s = %q, want api1.my.net. (the container's name)", addr, got)
	}
	if got := dig(t, cli.key, "api.net"); !strings.Contains(got, "NXDOMAIN") && !strings.Contains(got, "SERVFAIL") {
		t.Errorf("dig api.net answered:\n%s", got)
	}
}

// goLookupEnv makes the test binary, run as a plain process, resolve the
// name it holds with Go's own resolver against 127.0.0.11 and print the
// addresses.
const goLookupEnv = "SANDNET_TEST_GO_LOOKUP"

func goLookup(name string) int {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, "127.0.0.11:53")
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(strings.Join(addrs, " "))
	return 0
}

// TestNoDeadResolverSockets: a sandbox created without networks, on a
// spare namespace that came with the resolver's sockets bound, has
// nothing listening on 127.0.0.11:53 (a query there is refused at once
// instead of timing out); its first network's join starts a resolver
// that answers.
func TestNoDeadResolverSockets(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  spare_namespaces = 2\n")).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	c := a.Client
	spares := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "netns", ".creating", "spare-*"))
		return len(m)
	}
	agenttest.Eventually(t, "the agent has its spare namespaces", func() bool { return spares() == 2 })
	listening := func(key string) string {
		return strings.TrimSpace(inHost(t, key, "ss", "-Hlnut", "src", "127.0.0.11"))
	}
	var keys []string
	for _, id := range []string{"none1", "none2", "none3"} {
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, sb.Key)
		if got := listening(sb.Key); got != "" {
			t.Fatalf("sandbox %s, without networks, listens on 127.0.0.11:\n%s", id, got)
		}
	}
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "dnsnet", Subnet: "10.53.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	ep, err := c.Connect(ctx, "dnsnet", controller.Connect{Container: "none1"})
	if err != nil {
		t.Fatal(err)
	}
	if got := dig(t, keys[0], "+short", "none1"); got != ep.Address.Addr().String() {
		t.Fatalf("after its first network: dig none1 = %q, want %s", got, ep.Address.Addr())
	}
}
