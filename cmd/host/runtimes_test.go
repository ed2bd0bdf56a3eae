package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/agent/agenttest/runtimetest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// busyboxImage is the image the podman tests import offline.
const busyboxImage = "localhost/sandnet-busybox:test"

// webScript serves "hello from NAME" over HTTP on port 80 with busybox's
// httpd, in the foreground (podman rm -f -t 0 kills it: httpd ignores
// SIGTERM).
func webScript(name string) string {
	return "echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www"
}

// fetchLoop fetches url from inside a container until it answers, at most
// 150 times: the server may still be starting. (busybox-static's wget
// crashes when given a timeout, -T.)
func fetchLoop(url string) string {
	return "(for i in $(seq 150); do wget -q -O- " + url + " && exit 0; sleep 0.2; done; exit 1)"
}

// podmanRig is a real agent with a bridge network, and podman 4.3 with
// its CNI backend whose only network config is a sandnet conflist for it.
type podmanRig struct {
	t       *testing.T
	env     *agenttest.Env
	agent   *agenttest.Agent
	podman  *runtimetest.Podman
	network string
	subnet  netip.Prefix
}

// newPodmanRig starts the agent (sandboxExtra goes in its sandbox block),
// creates network on subnet, and sets podman up with the busybox image.
// When the test ends the rig removes its containers through podman (CNI
// DEL), ends every process of podman's, unmounts its shadows and stops
// the agent.
func newPodmanRig(t *testing.T, network, subnet, sandboxExtra string) *podmanRig {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	r := &podmanRig{t: t, env: agenttest.NewEnv(t, bins, boltAndBridge(dir, sandboxExtra)), network: network, subnet: netip.MustParsePrefix(subnet)}
	r.start()
	t.Cleanup(func() {
		removeAll(t, r.agent.Client)
		r.agent.Terminate(10 * time.Second)
	})
	if _, err := r.agent.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: network, Subnet: subnet}); err != nil {
		t.Fatal(err)
	}
	// podman refuses a run root path longer than 50 characters, which a
	// test's TempDir exceeds.
	pdir, err := os.MkdirTemp("", "sn-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pdir) })
	p, err := runtimetest.NewPodman(pdir, filepath.Dir(bins.CNI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("cleaning podman up: %v", err)
		}
	})
	r.podman = p
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := p.ImportBusybox(ctx, busyboxImage); err != nil {
		t.Fatal(err)
	}
	plugin := runtimetest.SandnetPlugin(network, r.env.Socket)
	plugin["capabilities"] = map[string]bool{"portMappings": true, "aliases": true, "ips": true, "mac": true}
	if err := p.WriteConflist(network, plugin); err != nil {
		t.Fatal(err)
	}
	return r
}

// start starts the rig's agent and waits until it answers.
func (r *podmanRig) start() {
	r.t.Helper()
	a, err := r.env.Launch()
	if err != nil {
		r.t.Fatal(err)
	}
	r.agent = a
	if err := a.WaitReady(15 * time.Second); err != nil {
		r.t.Fatalf("%v\nagent log:\n%s", err, a.Log())
	}
}

// run runs podman ARGS and returns its output; a failure fails the test.
func (r *podmanRig) run(args ...string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(r.t.Context(), 2*time.Minute)
	defer cancel()
	out, err := r.podman.Run(ctx, args...)
	if err != nil {
		r.t.Fatalf("%v\nagent log:\n%s", err, r.agent.Log())
	}
	return strings.TrimSpace(out)
}

// container runs `podman run ARGS` in the rig's cgroup.
func (r *podmanRig) container(args ...string) string {
	r.t.Helper()
	return r.run(r.podman.RunArgs(args...)...)
}

// sandboxOf returns the agent's sandbox of the container with podman ID
// id, or nil.
func (r *podmanRig) sandboxOf(id string) *controller.Sandbox {
	r.t.Helper()
	sbs, err := r.agent.Client.Sandboxes(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	for _, sb := range sbs {
		if sb.ContainerID == id {
			return sb
		}
	}
	return nil
}

// requireGone fails the test unless, soon, the agent has no sandbox and
// the network no endpoint, the test's namespace holds no link but lo and
// the network's bridge, and no firewall rule names an address of the
// subnet or one of the host ports.
func (r *podmanRig) requireGone(hostPorts ...string) {
	r.t.Helper()
	requireNothingLeft(r.t, r.agent, r.network, r.subnet, hostPorts...)
}

func requireNothingLeft(t *testing.T, a *agenttest.Agent, network string, subnet netip.Prefix, hostPorts ...string) {
	t.Helper()
	ctx := t.Context()
	var why string
	polltest.Until(t, 15*time.Second, "the agent to drop every sandbox and endpoint", func() bool {
		sbs, err := a.Client.Sandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n, err := a.Client.Network(ctx, network)
		if err != nil {
			t.Fatal(err)
		}
		why = ""
		if len(sbs) > 0 || len(n.Endpoints) > 0 {
			why = "sandboxes " + jsonOf(sbs) + " endpoints " + jsonOf(n.Endpoints)
		}
		return why == ""
	})
	prefix := strings.TrimSuffix(subnet.Addr().String(), "0")
	polltest.UntilEmpty(t, 10*time.Second, "no link but lo and the bridge", func() string {
		var left []string
		for _, l := range nstest.Links(t, nil) {
			if name := l.Attrs().Name; name != "lo" && !strings.HasPrefix(name, "snbr-") {
				left = append(left, name+"("+l.Type()+")")
			}
		}
		return strings.Join(left, " ")
	})
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	// A port counts as a whole number (a network ID's hex may hold its
	// digits); the subnet's prefix, with its dots, as it is.
	names := []*regexp.Regexp{regexp.MustCompile(regexp.QuoteMeta(prefix))}
	for _, p := range hostPorts {
		names = append(names, regexp.MustCompile(`\b`+regexp.QuoteMeta(p)+`\b`))
	}
	for _, re := range names {
		for _, line := range strings.Split(string(out), "\n") {
			if re.MatchString(line) && !strings.Contains(line, prefix+"0/24") {
				t.Fatalf("a firewall rule naming %s remains: %q\n%s", re, line, out)
			}
		}
	}
}

// httpGet fetches url from the test's namespace; "" on any failure.
func httpGet(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestPodmanCNI: podman 4.3 on a sandnet network through the CNI plugin.
// Two containers reach each other by name and by network alias over TCP,
// a published port answers from the test's (the host's) namespace, the
// container's resolv.conf names the embedded resolver, and `podman rm`
// leaves no sandbox, endpoint, link or rule.
func TestPodmanCNI(t *testing.T) {
	r := newPodmanRig(t, "pnet", "10.70.0.0/24", "")
	id := r.container("-d", "--name", "web", "--network", "pnet", "--network-alias", "www", "-p", "8080:80",
		busyboxImage, "sh", "-c", webScript("web"))

	sb := r.sandboxOf(id)
	if sb == nil || sb.Front != "cni" || len(sb.Endpoints) != 1 || !r.subnet.Contains(sb.Endpoints[0].Address.Addr()) {
		t.Fatalf("the agent's sandbox of web (%s): %s; want one endpoint in %s made by the cni front", id, jsonOf(sb), r.subnet)
	}
	out := r.container("--rm", "--network", "pnet", busyboxImage, "sh", "-c",
		"cat /etc/resolv.conf; echo @@; "+fetchLoop("http://web/")+"; echo @@; wget -q -O- http://www/")
	parts := strings.Split(out, "@@")
	if len(parts) != 3 {
		t.Fatalf("client output: %q", out)
	}
	var nameservers []string
	for _, line := range strings.Split(parts[0], "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "nameserver" {
			nameservers = append(nameservers, f[1])
		}
	}
	if len(nameservers) == 0 || nameservers[0] != "127.0.0.11" {
		t.Errorf("the container's resolv.conf:\n%s\nwant 127.0.0.11 as its first nameserver", parts[0])
	}
	if got := strings.TrimSpace(parts[1]); got != "hello from web" {
		t.Errorf("wget http://web/ from another container: %q", got)
	}
	if got := strings.TrimSpace(parts[2]); got != "hello from web" {
		t.Errorf("wget http://www/ (web's network alias) from another container: %q", got)
	}
	polltest.Until(t, 30*time.Second, "web's published port 8080 from the host's namespace", func() bool {
		return httpGet("http://127.0.0.1:8080/") == "hello from web\n"
	})

	r.run("rm", "-f", "-t", "0", "web")
	if left := r.run("ps", "-a", "-q"); left != "" {
		t.Fatalf("podman still lists containers: %s", left)
	}
	r.requireGone("8080")
	if got := httpGet("http://127.0.0.1:8080/"); got != "" {
		t.Fatalf("the published port still answers after podman rm: %q", got)
	}
}

// TestPodmanAcrossAgentRestart: the agent killed with SIGKILL and started
// again while podman's containers run. Their sandboxes come back and are
// never reaped as unclaimed stubs (an API-made sandbox, reaped, shows the
// grace period passed); `podman rm -f` (CNI DEL) works before the grace
// period ends and after it, and leaves no sandbox, endpoint, link or rule.
func TestPodmanAcrossAgentRestart(t *testing.T) {
	const grace = 10 * time.Second
	r := newPodmanRig(t, "prestart", "10.71.0.0/24", "  stub_grace_period = \""+grace.String()+"\"\n")
	ctx := t.Context()
	early := r.container("-d", "--name", "early", "--network", "prestart", "-p", "8082:80", busyboxImage, "sh", "-c", webScript("early"))
	late := r.container("-d", "--name", "late", "--network", "prestart", "-p", "8083:80", busyboxImage, "sh", "-c", webScript("late"))
	if _, err := r.agent.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "control", Networks: []controller.SandboxNetwork{{Network: "prestart"}}}); err != nil {
		t.Fatal(err)
	}
	for port, who := range map[string]string{"8082": "early", "8083": "late"} {
		polltest.Until(t, 30*time.Second, who+"'s published port before the kill", func() bool {
			return httpGet("http://127.0.0.1:"+port+"/") == "hello from "+who+"\n"
		})
	}

	if err := r.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.agent.Wait(10 * time.Second)
	restarted := time.Now()
	r.start()
	for _, id := range []string{early, late} {
		if sb := r.sandboxOf(id); sb == nil || sb.Front != "cni" {
			t.Fatalf("after the restart the agent's sandbox of %s is %s", id, jsonOf(sb))
		}
	}

	r.run("rm", "-f", "-t", "0", "early")
	if time.Since(restarted) >= grace {
		t.Logf("podman rm took until %s after the restart, past the %s grace period: both removals ran after it", time.Since(restarted), grace)
	}
	if sb := r.sandboxOf(early); sb != nil {
		t.Fatalf("after podman rm early, the agent still has its sandbox: %s", jsonOf(sb))
	}

	polltest.Until(t, 3*grace, "the unclaimed API sandbox to be reaped after the grace period", func() bool {
		_, err := r.agent.Client.Sandbox(ctx, "control")
		return err != nil
	})
	if sb := r.sandboxOf(late); sb == nil || sb.Front != "cni" || len(sb.Endpoints) != 1 {
		t.Fatalf("past the grace period the sandbox of podman's running container is %s; a front's sandbox is never a stub", jsonOf(sb))
	}
	if got := httpGet("http://127.0.0.1:8083/"); got != "hello from late\n" {
		t.Fatalf("late's published port past the grace period: %q", got)
	}
	r.run("rm", "-f", "-t", "0", "late")
	r.requireGone("8082", "8083")
	if strings.Contains(r.agent.Log(), "level=ERROR") {
		t.Errorf("the agent logged errors:\n%s", r.agent.Log())
	}
}

// TestContainerdCNI: containerd 1.6 started by the test, `ctr run --cni
// --rootfs` with the sandnet conflist first in /etc/cni/net.d (a tmpfs of
// the test's). A container gets an address on the sandnet network, and a
// second one reaches it over TCP by its name in the embedded DNS
// (<namespace>-<id>: go-cni passes no pod name); when ctr ends them (CNI
// DEL) nothing is left.
func TestContainerdCNI(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := t.Context()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
	a := e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	subnet := netip.MustParsePrefix("10.72.0.0/24")
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "cnet", Subnet: subnet.String()}); err != nil {
		t.Fatal(err)
	}
	c, err := runtimetest.StartContainerd(t.TempDir(), bins.CNI, "/usr/lib/cni/loopback")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("cleaning containerd up: %v", err)
		}
	})
	if err := c.WriteConflist("10-sandnet.conflist", "1.0.0", "cnet", runtimetest.SandnetPlugin("cnet", e.Socket)); err != nil {
		t.Fatal(err)
	}
	rootfs := func(name string) string {
		d := filepath.Join(c.Dir, name)
		if err := runtimetest.BusyboxRootfs(d); err != nil {
			t.Fatal(err)
		}
		// ctr writes no resolv.conf: the container's names the embedded
		// resolver, as a bind mount of the sandbox's would.
		if err := os.WriteFile(filepath.Join(d, "etc", "resolv.conf"), []byte("nameserver 127.0.0.11\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}

	// The server runs in the foreground of its ctr, which runs CNI DEL
	// when the task ends.
	webRoot := rootfs("web")
	if err := os.WriteFile(filepath.Join(webRoot, "www", "index.html"), []byte("hello from ctr web\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	webOut, err := os.Create(filepath.Join(c.Dir, "web.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer webOut.Close()
	web := c.Command(context.Background(), c.RunArgs("web", webRoot, "/bin/httpd", "-f", "-p", "80", "-h", "/www")...)
	web.Stdout, web.Stderr = webOut, webOut
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	webDone := make(chan struct{})
	var webErr error
	go func() { webErr = web.Wait(); close(webDone) }()
	t.Cleanup(func() {
		select {
		case <-webDone:
		default:
			_ = web.Process.Kill()
			<-webDone
		}
	})
	var webAddr netip.Addr
	polltest.Until(t, 60*time.Second, "the agent's sandbox of ctr's web", func() bool {
		select {
		case <-webDone:
			t.Fatalf("ctr run web ended: %v\n%s", webErr, readFile(webOut.Name()))
		default:
		}
		sb, err := a.Client.Sandbox(ctx, "default-web")
		if err != nil || len(sb.Endpoints) != 1 {
			return false
		}
		webAddr = sb.Endpoints[0].Address.Addr()
		return true
	})
	if !subnet.Contains(webAddr) {
		t.Fatalf("web's address %s is not in cnet's subnet %s", webAddr, subnet)
	}

	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := c.Run(cctx, c.RunArgs("cli", rootfs("cli"), "/bin/sh", "-c",
		"/bin/ip -4 -o addr show dev eth0; echo @@; "+strings.ReplaceAll(fetchLoop("http://default-web/"), "wget", "/bin/wget"))...)
	if err != nil {
		t.Fatalf("%v\n%s\nagent log:\n%s", err, out, a.Log())
	}
	parts := strings.Split(out, "@@")
	if len(parts) != 2 {
		t.Fatalf("cli output: %q", out)
	}
	var cliAddr netip.Addr
	if f := strings.Fields(parts[0]); len(f) >= 4 {
		if p, err := netip.ParsePrefix(f[3]); err == nil {
			cliAddr = p.Addr()
		}
	}
	if !subnet.Contains(cliAddr) || cliAddr == webAddr {
		t.Errorf("cli's eth0: %q; want an address of %s other than web's %s", parts[0], subnet, webAddr)
	}
	if got := strings.TrimSpace(parts[1]); got != "hello from ctr web" {
		t.Errorf("wget http://default-web/ from cli: %q", got)
	}

	if _, err := c.Run(cctx, "task", "kill", "--signal", "SIGKILL", "web"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-webDone:
	case <-time.After(time.Minute):
		t.Fatalf("ctr run web did not end after its task was killed:\n%s", readFile(webOut.Name()))
	}
	if left, _ := c.Run(cctx, "containers", "list", "--quiet"); strings.TrimSpace(left) != "" {
		t.Fatalf("containerd still has containers: %s", left)
	}
	requireNothingLeft(t, a, "cnet", subnet)
}

// readFile is the content of path, or the error reading it.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestPodmanPortsOnTwoNetworks: podman passes a container's port mappings
// to the ADD of each of its networks. A container published with -p on
// two sandnet networks (`--network a,b`, and `podman network connect`)
// starts, its port answers from the host's namespace, a peer on the
// second network reaches it by name, disconnecting the second network
// keeps the port, disconnecting the first hands the port over to the
// second and leaves the second's resolver address in resolv.conf, and
// `podman rm` leaves nothing. (Before, the second ADD
// failed: the port was "already published" by the container's own first
// endpoint.)
func TestPodmanPortsOnTwoNetworks(t *testing.T) {
	r := newPodmanRig(t, "pfirst", "10.74.0.0/24", "")
	if _, err := r.agent.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "psecond", Subnet: "10.75.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	plugin := runtimetest.SandnetPlugin("psecond", r.env.Socket)
	plugin["capabilities"] = map[string]bool{"portMappings": true, "aliases": true}
	if err := r.podman.WriteConflist("psecond", plugin); err != nil {
		t.Fatal(err)
	}

	id := r.container("-d", "--name", "web", "--network", "pfirst,psecond", "-p", "8084:80", busyboxImage, "sh", "-c", webScript("web"))
	sb := r.sandboxOf(id)
	var publishing int
	for _, ep := range sb.Endpoints {
		for _, p := range ep.Ports {
			if p.HostPort == 8084 {
				publishing++
			}
		}
	}
	if len(sb.Endpoints) != 2 || publishing != 1 {
		t.Fatalf("web's sandbox: %s; want two endpoints, one of them publishing 8084", jsonOf(sb))
	}
	polltest.Until(t, 30*time.Second, "web's published port 8084 from the host's namespace", func() bool {
		return httpGet("http://127.0.0.1:8084/") == "hello from web\n"
	})
	if out := r.container("--rm", "--network", "psecond", busyboxImage, "sh", "-c", fetchLoop("http://web/")); out != "hello from web" {
		t.Fatalf("wget http://web/ from a container on the second network only: %q", out)
	}

	r.container("-d", "--name", "later", "--network", "pfirst", "-p", "8085:80", busyboxImage, "sh", "-c", webScript("later"))
	r.run("network", "connect", "psecond", "later")
	r.run("network", "disconnect", "psecond", "later")
	polltest.Until(t, 30*time.Second, "later's published port 8085 after connecting and disconnecting a second network", func() bool {
		return httpGet("http://127.0.0.1:8085/") == "hello from later\n"
	})

	before := r.sandboxOf(id)
	r.run("network", "disconnect", "pfirst", "web")
	sb = r.sandboxOf(id)
	if len(sb.Endpoints) != 1 || len(sb.Endpoints[0].Ports) != 1 || sb.Endpoints[0].Ports[0].HostPort != 8084 {
		t.Fatalf("web's sandbox after disconnecting its first network: %s; want its endpoint on the second publishing 8084", jsonOf(sb))
	}
	polltest.Until(t, 30*time.Second, "web's port 8084 through its second network, once the first is disconnected", func() bool {
		return httpGet("http://127.0.0.1:8084/") == "hello from web\n"
	})
	// podman took the first network's nameserver out of web's
	// resolv.conf by value; the second's, an address of its own, is left
	// and answers (before, both were 127.0.0.11 and none was left).
	// Which network got 127.0.0.11 is the order of podman's ADDs, which
	// it runs in no set order.
	kept, gone := sb.Endpoints[0].Resolver.String(), ""
	for _, ep := range before.Endpoints {
		if ep.ID != sb.Endpoints[0].ID {
			gone = ep.Resolver.String()
		}
	}
	rc := r.run("exec", "web", "cat", "/etc/resolv.conf")
	lines := strings.Split(rc, "\n")
	if !slices.Contains(lines, "nameserver "+kept) || slices.Contains(lines, "nameserver "+gone) {
		t.Fatalf("web's resolv.conf after disconnecting its first network:\n%s\nwant the second network's resolver address %s, not the first's %s", rc, kept, gone)
	}
	if out := r.run("exec", "web", "nslookup", "web"); !strings.Contains(out, "10.75.0.") {
		t.Fatalf("nslookup web inside web, on its second network only:\n%s", out)
	}

	r.run("rm", "-f", "-t", "0", "web", "later")
	r.requireGone("8084", "8085")
	requireNothingLeft(t, r.agent, "psecond", netip.MustParsePrefix("10.75.0.0/24"))
}

// TestPodmanRmWhileAgentDown: `podman rm` of a container while the agent
// is down succeeds though its CNI DEL fails, and podman deletes the
// container's namespace. The restarted agent finds its sandbox's
// namespace let go of and removes it with its endpoint and published
// port, so that the next container can publish the same port.
func TestPodmanRmWhileAgentDown(t *testing.T) {
	r := newPodmanRig(t, "pdown", "10.78.0.0/24", "")
	id := r.container("-d", "--name", "web", "--network", "pdown", "-p", "8086:80", busyboxImage, "sh", "-c", webScript("web"))
	if sb := r.sandboxOf(id); sb == nil || sb.RuntimeNetns == "" {
		t.Fatalf("web's sandbox %s: want the runtime's namespace path recorded", jsonOf(sb))
	}
	if err := r.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.agent.Wait(10 * time.Second)
	r.run("rm", "-f", "-t", "0", "web")
	r.start()
	r.requireGone("8086")
	r.container("-d", "--name", "web2", "--network", "pdown", "-p", "8086:80", busyboxImage, "sh", "-c", webScript("web2"))
	polltest.Until(t, 30*time.Second, "the next container's port 8086", func() bool {
		return httpGet("http://127.0.0.1:8086/") == "hello from web2\n"
	})
	r.run("rm", "-f", "-t", "0", "web2")
	r.requireGone("8086")
}

// TestPodmanStoreRestoredFromBackup: the bolt file is restored from a
// backup taken before a second container started (the agent stopped,
// the file put back, its log removed, as plugins/store-bolt/README.md
// says). At the next start the agent removes what the backup does not
// hold: the second container's interface and published port go, the
// first's stay. podman removes the second without error, and a third
// container publishes the same port.
func TestPodmanStoreRestoredFromBackup(t *testing.T) {
	r := newPodmanRig(t, "pbk", "10.79.0.0/24", "")
	cfg, err := os.ReadFile(r.env.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	storePath := regexp.MustCompile(`path = "([^"]+store\.db)"`).FindStringSubmatch(string(cfg))[1]
	answers := func(port, who string) {
		t.Helper()
		polltest.Until(t, 30*time.Second, who+" on port "+port, func() bool {
			return httpGet("http://127.0.0.1:"+port+"/") == "hello from "+who+"\n"
		})
	}
	r.container("-d", "--name", "web1", "--network", "pbk", "-p", "8096:80", busyboxImage, "sh", "-c", webScript("web1"))
	answers("8096", "web1")
	r.agent.Terminate(10 * time.Second)
	backup, err := os.ReadFile(storePath)
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	r.container("-d", "--name", "web2", "--network", "pbk", "-p", "8097:80", busyboxImage, "sh", "-c", webScript("web2"))
	answers("8097", "web2")
	r.agent.Terminate(10 * time.Second)
	if err := os.WriteFile(storePath, backup, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(storePath + ".wal"); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}

	r.start()
	answers("8096", "web1")
	if got := httpGet("http://127.0.0.1:8097/"); got != "" {
		t.Errorf("web2's port, which the backup does not hold, still answers: %q", got)
	}
	if out := r.run("exec", "web2", "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Errorf("web2 keeps its interface after the restore:\n%s", out)
	}
	r.run("rm", "-f", "-t", "0", "web2")
	r.container("-d", "--name", "web3", "--network", "pbk", "-p", "8097:80", busyboxImage, "sh", "-c", webScript("web3"))
	answers("8097", "web3")
	r.run("rm", "-f", "-t", "0", "web1", "web3")
	r.requireGone("8096", "8097")
}
