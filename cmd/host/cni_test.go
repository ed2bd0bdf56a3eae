package main

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// cnitoolPath is where .ci/deps installs the pinned cnitool.
func cnitoolPath(t *testing.T) string {
	t.Helper()
	p := filepath.Join(os.Getenv("HOME"), ".cache", "sandnet", "cnitool-v1.3.1")
	if _, err := os.Stat(p); err != nil {
		if p, err = exec.LookPath("cnitool"); err != nil {
			t.Fatal("cnitool v1.3.1 is not installed (make deps installs it into ~/.cache/sandnet)")
		}
	}
	return p
}

// cniRig is an agent, its CNI plugin in a plugin dir and a conf dir of
// the test's own, and cnitool to drive them as a runtime would.
type cniRig struct {
	t       *testing.T
	agent   *agenttest.Agent
	env     *agenttest.Env
	dir     string
	confDir string
	tool    string
}

func newCNIRig(t *testing.T, sandboxExtra string) *cniRig {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, sandboxExtra))
	r := &cniRig{t: t, env: e, dir: dir, confDir: filepath.Join(dir, "net.d"), tool: cnitoolPath(t)}
	r.start()
	t.Cleanup(func() {
		removeAll(t, r.agent.Client)
		r.agent.Terminate(10 * time.Second)
	})
	if err := os.MkdirAll(r.confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// network creates a network on the rig's agent.
func (r *cniRig) network(name, subnet string) {
	r.t.Helper()
	if _, err := r.agent.Client.CreateNetwork(context.Background(), controller.NetworkCreate{Name: name, Subnet: subnet}); err != nil {
		r.t.Fatal(err)
	}
}

// start starts the rig's agent; the rig's cleanup stops it.
func (r *cniRig) start() {
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

// conflist writes a network config list named name whose one plugin is
// sandnet's, joining network, with extra keys merged into the plugin conf.
func (r *cniRig) conflist(name, version, network string, extra map[string]any) {
	r.t.Helper()
	plugin := map[string]any{
		"type": "sandnet", "network": network, "socket": r.env.Socket,
		"capabilities": map[string]bool{"portMappings": true, "aliases": true, "ips": true, "mac": true},
	}
	for k, v := range extra {
		plugin[k] = v
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "name": name, "plugins": []any{plugin}})
	if err := os.WriteFile(filepath.Join(r.confDir, name+".conflist"), b, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// cnitool runs `cnitool VERB NAME NETNS` with env added to CNI's and
// returns its output and error.
func (r *cniRig) cnitool(env []string, args ...string) (string, error) {
	cmd := exec.Command(r.tool, args...)
	cmd.Env = append(os.Environ(), "NETCONFPATH="+r.confDir, "CNI_PATH="+filepath.Dir(bins.CNI))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// add runs cnitool add and parses the result as the current spec's.
func (r *cniRig) add(name, netns string, env ...string) *current.Result {
	r.t.Helper()
	out, err := r.cnitool(env, "add", name, netns)
	if err != nil {
		r.t.Fatalf("cnitool add %s %s: %v\n%s\nagent log:\n%s", name, netns, err, out, r.agent.Log())
	}
	res, err := current.NewResult([]byte(out))
	if err != nil {
		r.t.Fatalf("the result of add does not parse: %v\n%s", err, out)
	}
	cur, err := current.GetResult(res)
	if err != nil {
		r.t.Fatal(err)
	}
	return cur
}

// runtimeNamespace makes a namespace as a runtime would (the test plays
// the runtime): it outlives every sandbox on it, and only the test
// deletes it.
func runtimeNamespace(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "runtime")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ns, err := osl.NewNamespace(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Destroy() })
	key := ns.Path()
	_ = ns.Close()
	return key
}

// inNS runs a command inside the namespace at key.
func inNS(key string, args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"--net=" + key}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitOnlyLoopback polls until the namespace at key holds no interface but
// lo: the driver may delete a detached veth pair a moment after DEL
// answers, but it must.
func waitOnlyLoopback(t *testing.T, key string) {
	t.Helper()
	polltest.UntilEmpty(t, 10*time.Second, "no interface but lo in the runtime's namespace "+key, func() string {
		got, err := inNS(key, "ip", "-o", "link")
		if err != nil {
			t.Fatalf("ip link in %s: %v %s", key, err, got)
		}
		if strings.Count(got, "\n") == 0 && strings.Contains(got, ": lo:") {
			return ""
		}
		return "\n" + got
	})
}

// plugin runs the CNI plugin itself as a runtime execs it, with the CNI_*
// variables in env and conf on stdin; it returns stdout and whether it
// exited 0.
func (r *cniRig) plugin(env map[string]string, conf any) (string, bool) {
	r.t.Helper()
	b, _ := json.Marshal(conf)
	cmd := exec.Command(bins.CNI)
	cmd.Stdin = strings.NewReader(string(b))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.Output()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		r.t.Fatal(err)
	}
	return string(out), err == nil
}

// cniErr parses the CNI error object a failed plugin call printed.
func cniErr(t *testing.T, out string) *types.Error {
	t.Helper()
	var e types.Error
	if err := json.Unmarshal([]byte(out), &e); err != nil || e.Code == 0 {
		t.Fatalf("want a CNI error object on stdout, got %q (%v)", out, err)
	}
	return &e
}

func TestCNIAddCheckDel(t *testing.T) {
	r := newCNIRig(t, "")
	ctx := context.Background()
	c := r.agent.Client
	r.network("front", "10.61.0.0/24")
	r.network("back", "10.62.0.0/24")
	r.conflist("front", "1.0.0", "front", map[string]any{"aliases": []string{"www"}})
	r.conflist("back", "0.4.0", "back", map[string]any{"priority": 10, "driverOpts": map[string]string{"com.example.tier": "gold"}})
	web := runtimeNamespace(t, "web")
	cli := runtimeNamespace(t, "cli")

	res := r.add("front", web, "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web", `CAP_ARGS={"aliases":{"front":["api"]}}`)
	if len(res.Interfaces) != 2 || res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != web || res.Interfaces[0].Sandbox != "" || !strings.HasPrefix(res.Interfaces[0].Name, "sn") {
		t.Fatalf("interfaces: want the host end and eth0 in %s, got %s", web, jsonOf(res.Interfaces))
	}
	if len(res.IPs) != 1 || res.IPs[0].Interface == nil || *res.IPs[0].Interface != 1 || res.IPs[0].Gateway.String() != "10.61.0.1" ||
		!strings.HasPrefix(res.IPs[0].Address.String(), "10.61.0.") {
		t.Fatalf("ips: %s", jsonOf(res.IPs))
	}
	if len(res.Routes) == 0 || res.Routes[0].Dst.String() != "0.0.0.0/0" || res.Routes[0].GW.String() != "10.61.0.1" {
		t.Fatalf("routes: want the default route through 10.61.0.1, got %s", jsonOf(res.Routes))
	}
	if len(res.DNS.Nameservers) != 1 || res.DNS.Nameservers[0] != "127.0.0.11" {
		t.Fatalf("dns: want nameserver 127.0.0.11, got %s", jsonOf(res.DNS))
	}
	// The host interface the result names is eth0's peer.
	eth0, err := inNS(web, "ip", "-o", "link", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	_, peer, ok := strings.Cut(eth0, "eth0@if")
	peer, _, _ = strings.Cut(peer, ":")
	if !ok || peer == "" {
		t.Fatalf("eth0 in %s is not one end of a pair: %s", web, eth0)
	}
	// stdout only: ip may warn on stderr that it cannot name the peer's
	// namespace, which says nothing about the pair.
	if host, err := exec.Command("ip", "-o", "link", "show", "dev", res.Interfaces[0].Name).Output(); err != nil || !strings.HasPrefix(string(host), peer+": ") {
		t.Fatalf("result's host interface %s (%q, %v) is not eth0's peer (ifindex %s)", res.Interfaces[0].Name, host, err, peer)
	}
	webIP := res.IPs[0].Address.IP.String()
	if got, err := inNS(web, "ip", "-o", "-4", "addr", "show", "eth0"); err != nil || !strings.Contains(got, res.IPs[0].Address.String()) {
		t.Fatalf("eth0 in the runtime's namespace: %v %s", err, got)
	}

	// A second container; the embedded DNS inside the runtime's namespace
	// answers the first by its K8S_POD_NAME and by its own alias (podman's
	// aliases capability); the conf's alias names every container of it.
	resCli := r.add("front", cli, "CNI_ARGS=K8S_POD_NAME=cli", `CAP_ARGS={"mac":"02:00:00:00:00:42"}`)
	cliIP := resCli.IPs[0].Address.IP.String()
	if got, _ := inNS(cli, "ip", "-o", "link", "show", "eth0"); resCli.Interfaces[1].Mac != "02:00:00:00:00:42" || !strings.Contains(got, "link/ether 02:00:00:00:00:42 ") {
		t.Fatalf("mac capability: result %s, interface %s", resCli.Interfaces[1].Mac, got)
	}
	for _, name := range []string{"web", "api", "web.front"} {
		if got, err := inNS(cli, "dig", "@127.0.0.11", "+short", "+time=2", "+tries=2", name); err != nil || got != webIP {
			t.Fatalf("dig %s from cli = %q (%v), want %s", name, got, err, webIP)
		}
	}
	if got, err := inNS(web, "dig", "@127.0.0.11", "+short", "+time=2", "+tries=2", "www"); err != nil || !strings.Contains(got, webIP) || !strings.Contains(got, cliIP) {
		t.Fatalf("dig www from web = %q (%v), want both %s and %s", got, err, webIP, cliIP)
	}
	if got, err := inNS(cli, "busybox", "ping", "-c", "1", "-W", "2", webIP); err != nil {
		t.Fatalf("cli cannot reach web at %s: %v\n%s", webIP, err, got)
	}

	// A second ADD with another conf and ifname connects the same
	// sandbox to a second network; the 0.4.0 conf gets a 0.4.0 result.
	out, err := r.cnitool([]string{"CNI_IFNAME=net1"}, "add", "back", web)
	if err != nil {
		t.Fatalf("second add: %v\n%s", err, out)
	}
	if !strings.Contains(out, `"cniVersion": "0.4.0"`) || !strings.Contains(out, "net1") {
		t.Fatalf("second add: want a 0.4.0 result naming net1:\n%s", out)
	}
	// Its default route is in the result exactly when the namespace's
	// default route goes through net1 (it does: back's priority is higher).
	defRoute, err := inNS(web, "ip", "-4", "route", "show", "default")
	if err != nil {
		t.Fatal(err)
	}
	if inResult, inNS := strings.Contains(out, `"0.0.0.0/0"`), strings.Contains(defRoute, "dev net1"); !inResult || !inNS {
		t.Fatalf("second add: the result has a default route: %v; the namespace routes default through net1: %v (%q)\n%s", inResult, inNS, defRoute, out)
	}
	sb, err := c.Sandbox(ctx, "cnitool-"+containerHash(web))
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.Endpoints) != 2 || sb.Front != "cni" {
		t.Fatalf("web's sandbox: want 2 endpoints made by the cni front, got %d, front %q", len(sb.Endpoints), sb.Front)
	}
	// The conf's driverOpts are the endpoint's driver options.
	for _, ep := range sb.Endpoints {
		if want := map[string]string{"com.example.tier": "gold"}; ep.IfName == "net1" && !maps.Equal(ep.DriverOpts, want) || ep.IfName == "eth0" && ep.DriverOpts != nil {
			t.Fatalf("%s's driver options: %v (back's conf gives com.example.tier=gold, front's none)", ep.IfName, ep.DriverOpts)
		}
	}

	// CHECK passes, then names what differs once the namespace does.
	if out, err := r.cnitool(nil, "check", "front", web); err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	// The default route back's ADD result lists (through net1) goes:
	// CHECK names it (it checked the static routes only).
	if out, err := inNS(web, "ip", "route", "del", "default"); err != nil {
		t.Fatalf("deleting the default route: %v %s", err, out)
	}
	if out, err := r.cnitool([]string{"CNI_IFNAME=net1"}, "check", "back", web); err == nil || !strings.Contains(out, "route to 0.0.0.0/0 via") || !strings.Contains(out, "is missing on net1") {
		t.Fatalf("check after the default route went: want an error naming it, got %v\n%s", err, out)
	}
	if out, err := inNS(web, "ip", "addr", "flush", "dev", "eth0"); err != nil {
		t.Fatalf("flushing eth0: %v %s", err, out)
	}
	if out, err := r.cnitool(nil, "check", "front", web); err == nil || !strings.Contains(out, "lacks address") {
		t.Fatalf("check after the address went: want an error naming the address, got %v\n%s", err, out)
	}

	// DEL detaches; twice is fine; the namespace stays the runtime's.
	for _, conf := range []struct{ name, ifname string }{{"front", "eth0"}, {"back", "net1"}, {"back", "net1"}} {
		if out, err := r.cnitool([]string{"CNI_IFNAME=" + conf.ifname}, "del", conf.name, web); err != nil {
			t.Fatalf("del %s: %v\n%s", conf.name, err, out)
		}
	}
	if _, err := c.Sandbox(ctx, "cnitool-"+containerHash(web)); err == nil {
		t.Fatal("web's sandbox is still there after its last DEL")
	}
	if !osl.Exists(web) {
		t.Fatal("the runtime's namespace was deleted by DEL")
	}
	waitOnlyLoopback(t, web)
	if out, err := r.cnitool(nil, "del", "front", cli); err != nil {
		t.Fatalf("del cli: %v\n%s", err, out)
	}
	// DEL of a vanished namespace, and of a container the agent never saw.
	if out, err := r.cnitool(nil, "del", "front", "/nonexistent/netns"); err != nil {
		t.Fatalf("del with a vanished netns: %v\n%s", err, out)
	}
	for _, n := range []string{"front", "back"} {
		net, err := c.Network(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(net.Endpoints) != 0 {
			t.Fatalf("network %s keeps %d endpoints", n, len(net.Endpoints))
		}
		if err := c.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	waitNoLeaks(t, "10.8")
}

// containerHash is cnitool's container ID for a netns path, less its
// "cnitool-" prefix.
func containerHash(netns string) string {
	s := sha512.Sum512([]byte(netns))
	return fmt.Sprintf("%x", s[:10])
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestCNIErrors: bad input gets a CNI error object with its code on
// stdout and a non-zero exit, and a failed ADD leaves nothing behind.
func TestCNIErrors(t *testing.T) {
	r := newCNIRig(t, "")
	ctx := context.Background()
	c := r.agent.Client
	r.network("n1", "10.63.0.0/24")
	ns := runtimeNamespace(t, "c1")
	env := func(cmd string) map[string]string {
		return map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": "c1", "CNI_NETNS": ns, "CNI_IFNAME": "eth0", "CNI_PATH": filepath.Dir(bins.CNI)}
	}
	conf := func(extra map[string]any) map[string]any {
		m := map[string]any{"cniVersion": "1.0.0", "name": "n1", "type": "sandnet", "network": "n1", "socket": r.env.Socket}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	for _, tc := range []struct {
		name string
		conf map[string]any
		code uint
		says string
	}{
		{"agent unreachable", conf(map[string]any{"socket": filepath.Join(r.dir, "nothing.sock")}), types.ErrTryAgainLater, "nothing.sock"},
		{"unknown network", conf(map[string]any{"network": "nosuch"}), types.ErrInvalidNetworkConfig, "nosuch"},
		{"no network key", conf(map[string]any{"network": nil}), types.ErrInvalidNetworkConfig, "network"},
		{"priority of the wrong type", conf(map[string]any{"priority": "high"}), types.ErrDecodingFailure, "priority"},
		{"address outside the subnet", conf(map[string]any{"runtimeConfig": map[string]any{"ips": []string{"10.99.9.9/24"}}}), types.ErrInvalidNetworkConfig, "10.99.9.9"},
		{"port mapping of another protocol", conf(map[string]any{"runtimeConfig": map[string]any{"portMappings": []any{map[string]any{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}}}}), types.ErrInvalidNetworkConfig, "portMappings[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := r.plugin(env("ADD"), tc.conf)
			if ok {
				t.Fatalf("ADD succeeded: %s", out)
			}
			e := cniErr(t, out)
			if e.Code != tc.code || !strings.Contains(e.Msg, tc.says) {
				t.Fatalf("want code %d naming %q, got %d: %s", tc.code, tc.says, e.Code, e.Msg)
			}
		})
	}
	// Nothing of the failed ADDs is left: no sandbox, no endpoint, no
	// interface in the namespace.
	if sbs, err := c.Sandboxes(ctx); err != nil || len(sbs) != 0 {
		t.Fatalf("sandboxes after failed ADDs: %d (%v)", len(sbs), err)
	}
	if n, err := c.Network(ctx, "n1"); err != nil || len(n.Endpoints) != 0 {
		t.Fatalf("network n1 after failed ADDs: %v endpoints (%v)", n, err)
	}
	waitOnlyLoopback(t, ns)
	// DEL and STATUS of an unreachable agent say so with their codes.
	bad := conf(map[string]any{"socket": filepath.Join(r.dir, "nothing.sock")})
	if out, ok := r.plugin(env("DEL"), bad); ok || cniErr(t, out).Code != types.ErrTryAgainLater {
		t.Fatalf("DEL with the agent unreachable: want code 11, got %s", out)
	}
	bad["cniVersion"] = "1.1.0"
	if out, ok := r.plugin(env("STATUS"), bad); ok || cniErr(t, out).Code != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS with the agent unreachable: want code 50, got %s", out)
	}
	status := conf(map[string]any{"cniVersion": "1.1.0"})
	if out, ok := r.plugin(env("STATUS"), status); !ok {
		t.Fatalf("STATUS with the agent and the network there: %s", out)
	}
	status["network"] = "gone"
	if out, ok := r.plugin(env("STATUS"), status); ok || cniErr(t, out).Code != types.ErrPluginNotAvailable || !strings.Contains(out, "gone") {
		t.Fatalf("STATUS of a missing network: want code 50 naming it, got %s", out)
	}
	out, _ := r.plugin(map[string]string{"CNI_COMMAND": "VERSION"}, map[string]any{"cniVersion": "1.0.0"})
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		if !strings.Contains(out, `"`+v+`"`) {
			t.Fatalf("VERSION does not list %s: %s", v, out)
		}
	}
}

// TestCNIGC: GC removes the CNI plugin's attachments that the runtime no
// longer lists, and never a sandbox made through sandnet's own API.
func TestCNIGC(t *testing.T) {
	r := newCNIRig(t, "")
	ctx := context.Background()
	c := r.agent.Client
	r.network("gc", "10.64.0.0/24")
	r.conflist("gc", "1.1.0", "gc", nil)
	keep, drop := runtimeNamespace(t, "keep"), runtimeNamespace(t, "drop")
	r.add("gc", keep)
	r.add("gc", drop)
	attach(t, c, "gc", "api-made")
	valid := []types.GCAttachment{{ContainerID: "cnitool-" + containerHash(keep), IfName: "eth0"}}
	out, ok := r.plugin(map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": filepath.Dir(bins.CNI)},
		map[string]any{"cniVersion": "1.1.0", "name": "gc", "type": "sandnet", "network": "gc", "socket": r.env.Socket, "cni.dev/valid-attachments": valid})
	if !ok {
		t.Fatalf("GC: %s", out)
	}
	left := map[string]bool{}
	sbs, err := c.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range sbs {
		left[sb.ContainerID] = true
	}
	if !left["cnitool-"+containerHash(keep)] || left["cnitool-"+containerHash(drop)] || !left["api-made"] || len(left) != 2 {
		t.Fatalf("after GC: want the listed attachment and the API's sandbox, got %v", left)
	}
	// cnitool's gc lists no valid attachment: every CNI attachment goes,
	// the API's stays.
	if out, err := r.cnitool(nil, "gc", "gc", keep); err != nil {
		t.Fatalf("cnitool gc: %v\n%s", err, out)
	}
	if sbs, err = c.Sandboxes(ctx); err != nil || len(sbs) != 1 || sbs[0].ContainerID != "api-made" {
		t.Fatalf("after cnitool gc: want only api-made, got %s (%v)", jsonOf(sbs), err)
	}
}

// TestCNIAcrossAgentRestart: the agent killed with -9 and started again
// while containers run; CHECK and DEL still work, also once the stub
// grace period has passed — a CNI sandbox is never reaped as a stub —
// and nothing is left once they are gone.
func TestCNIAcrossAgentRestart(t *testing.T) {
	r := newCNIRig(t, "  stub_grace_period = \"1s\"\n")
	ctx := context.Background()
	r.network("rs", "10.65.0.0/24")
	r.conflist("rs", "1.0.0", "rs", nil)
	a, b := runtimeNamespace(t, "a"), runtimeNamespace(t, "b")
	r.add("rs", a, "CNI_ARGS=K8S_POD_NAME=a")
	resB := r.add("rs", b, "CNI_ARGS=K8S_POD_NAME=b")
	if err := r.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.agent.Wait(10 * time.Second)
	r.start()
	c := r.agent.Client
	// Past the grace period the sandboxes are still there, and claimed.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		sbs, err := c.Sandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(sbs) != 2 {
			t.Fatalf("a CNI sandbox was reaped as a stub: %d left\nagent log:\n%s", len(sbs), r.agent.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := r.cnitool(nil, "check", "rs", a); err != nil {
		t.Fatalf("check after the restart: %v\n%s", err, out)
	}
	if got, err := inNS(a, "dig", "@127.0.0.11", "+short", "+time=2", "+tries=2", "b"); err != nil || got != resB.IPs[0].Address.IP.String() {
		t.Fatalf("dig b from a after the restart = %q (%v)", got, err)
	}
	for _, ns := range []string{a, b} {
		if out, err := r.cnitool(nil, "del", "rs", ns); err != nil {
			t.Fatalf("del after the restart: %v\n%s", err, out)
		}
	}
	if sbs, err := c.Sandboxes(ctx); err != nil || len(sbs) != 0 {
		t.Fatalf("sandboxes after DEL: %d (%v)", len(sbs), err)
	}
	if err := c.DeleteNetwork(ctx, "rs"); err != nil {
		t.Fatal(err)
	}
	waitNoLeaks(t, "10.65.")
	waitOnlyLoopback(t, a)
}

// TestCNIOrphanReaped: a runtime whose DEL never reached the agent (podman
// removes a container, and its namespace, when the DEL finds the agent
// down) leaves a sandbox only our key holds, with its interface, address
// and published port. Once the runtime's path no longer names the
// namespace and no process lives in it, the agent removes the sandbox:
// within the stub grace period while it runs, and at once when it starts.
// A namespace a process still lives in stays, whatever became of its
// path, and one whose path is there is never touched.
func TestCNIOrphanReaped(t *testing.T) {
	r := newCNIRig(t, "  stub_grace_period = \"1s\"\n")
	ctx := t.Context()
	r.network("orph", "10.68.0.0/24")
	r.conflist("orph", "1.0.0", "orph", nil)
	kept, gone, held, down := runtimeNamespace(t, "kept"), runtimeNamespace(t, "gone"), runtimeNamespace(t, "held"), runtimeNamespace(t, "down")
	for _, ns := range []string{kept, gone, held, down} {
		r.add("orph", ns)
	}
	// has reports whether the agent has a sandbox on the runtime's path.
	has := func(path string) bool {
		sbs, err := r.agent.Client.Sandboxes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, sb := range sbs {
			if sb.RuntimeNetns == path {
				return true
			}
		}
		return false
	}
	for _, ns := range []string{kept, gone, held, down} {
		if !has(ns) {
			t.Fatalf("no sandbox names %s as its runtime's namespace", ns)
		}
	}
	out, code := sandnetCmd(t, "sandbox", "inspect", "--socket", r.env.Socket, "cnitool-"+containerHash(kept))
	if want := "(?m)^Front: +cni\nRuntime netns: +" + regexp.QuoteMeta(kept) + "$"; code != 0 || !regexp.MustCompile(want).MatchString(out) {
		t.Errorf("sandnet sandbox inspect: exit %d, want a match of %s:\n%s", code, want, out)
	}
	sleeper := exec.Command("nsenter", "--net="+held, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	polltest.Until(t, 10*time.Second, "the sleeper to enter the namespace", func() bool {
		same, err := osl.Same(fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid), held)
		return err == nil && same
	})
	for _, ns := range []string{gone, held} {
		if err := osl.Remove(ns); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Until(t, 15*time.Second, "the sandbox whose runtime removed its namespace to go", func() bool { return !has(gone) })
	// Three more looks (one a second): the others stay.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if !has(held) || !has(kept) || !has(down) {
			t.Fatalf("a sandbox its runtime still holds was removed (held: %v, kept: %v, down: %v)\nagent log:\n%s", has(held), has(kept), has(down), r.agent.Log())
		}
	}
	_ = sleeper.Process.Kill()
	_ = sleeper.Wait()
	polltest.Until(t, 15*time.Second, "the sandbox whose last process ended to go", func() bool { return !has(held) })

	// The runtime removes a container while the agent is down.
	if err := r.agent.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r.agent.Wait(10 * time.Second)
	if err := osl.Remove(down); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	r.start()
	polltest.Until(t, 15*time.Second, "the sandbox removed while the agent was down to go", func() bool { return !has(down) })
	evCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	evs, err := r.agent.Client.Events(evCtx, url.Values{"type": {"sandbox.delete"}, "since": {restarted.Format(time.RFC3339Nano)}})
	if err != nil {
		t.Fatal(err)
	}
	defer evs.Close()
	if ev, err := evs.Next(); err != nil || !strings.Contains(ev.Message, "let go of its namespace") || ev.SandboxID == "" {
		t.Fatalf("the removal's sandbox.delete event: %+v, %v", ev, err)
	}
	if !has(kept) {
		t.Fatal("the sandbox whose runtime keeps its namespace went too")
	}
	if out, err := r.cnitool(nil, "del", "orph", kept); err != nil {
		t.Fatalf("del: %v\n%s", err, out)
	}
	if err := r.agent.Client.DeleteNetwork(ctx, "orph"); err != nil {
		t.Fatal(err)
	}
	waitNoLeaks(t, "10.68.")
	if n := strings.Count(r.agent.Log(), "deleting a sandbox its runtime has let go of"); n != 1 {
		t.Errorf("the restarted agent logged %d removals of a let-go sandbox, want 1:\n%s", n, r.agent.Log())
	}
}

// TestCNIParallelAddsOfOneContainer: three ADDs of one container to three
// networks at once (the spec asks runtimes not to, but one may): all
// succeed, each while another may be creating the container's sandbox,
// and the container's port mapping, passed to each, is published once.
// Three DELs at once then leave nothing. (Before, the ADDs that found
// the sandbox being created failed: "already has a sandbox being
// created".)
func TestCNIParallelAddsOfOneContainer(t *testing.T) {
	r := newCNIRig(t, "")
	nets := []string{"par1", "par2", "par3"}
	for i, n := range nets {
		r.network(n, fmt.Sprintf("10.8%d.0.0/24", 6+i))
		r.conflist(n, "1.0.0", n, map[string]any{"capabilities": map[string]bool{"portMappings": true}})
	}
	caps := `CAP_ARGS={"portMappings":[{"hostPort":8096,"containerPort":80,"protocol":"tcp"}]}`
	for round := range 3 {
		ns := runtimeNamespace(t, fmt.Sprintf("r%d", round))
		run := func(verb string) {
			t.Helper()
			errs := make(chan string, len(nets))
			for i, n := range nets {
				go func() {
					out, err := r.cnitool([]string{fmt.Sprintf("CNI_IFNAME=eth%d", i), caps}, verb, n, ns)
					if err != nil {
						out = fmt.Sprintf("%s %s: %v\n%s", verb, n, err, out)
					} else {
						out = ""
					}
					errs <- out
				}()
			}
			for range nets {
				if e := <-errs; e != "" {
					t.Errorf("round %d: %s", round, e)
				}
			}
			if t.Failed() {
				t.Fatalf("agent log:\n%s", r.agent.Log())
			}
		}
		run("add")
		sbs, err := r.agent.Client.Sandboxes(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		published := 0
		for _, ep := range sbs[0].Endpoints {
			published += len(ep.Ports)
		}
		if len(sbs) != 1 || len(sbs[0].Endpoints) != 3 || published != 1 {
			t.Fatalf("round %d: after three ADDs at once: %s; want one sandbox, three endpoints, one published port", round, jsonOf(sbs))
		}
		got, err := inNS(ns, "ip", "-o", "link")
		if err != nil || strings.Count(got, " eth") != 3 {
			t.Fatalf("round %d: the runtime's namespace: %v\n%s", round, err, got)
		}
		run("del")
		waitOnlyLoopback(t, ns)
	}
	if sbs, err := r.agent.Client.Sandboxes(t.Context()); err != nil || len(sbs) != 0 {
		t.Fatalf("sandboxes after the DELs: %s (%v)", jsonOf(sbs), err)
	}
	for _, n := range nets {
		if err := r.agent.Client.DeleteNetwork(t.Context(), n); err != nil {
			t.Fatal(err)
		}
	}
	waitNoLeaks(t, "10.8")
}

// TestCNIRelativeNetns: a CNI_NETNS relative to the runtime's working
// directory names the namespace there: the plugin hands the agent the
// absolute path (the agent's working directory is its own), which the
// sandbox records; the agent itself refuses a relative path
// (TestHostileRequests).
func TestCNIRelativeNetns(t *testing.T) {
	r := newCNIRig(t, "")
	r.network("rel", "10.89.0.0/24")
	ns := runtimeNamespace(t, "rel")
	rel := relativeToWD(t, ns)
	conf := map[string]any{"cniVersion": "1.0.0", "name": "rel", "type": "sandnet", "network": "rel", "socket": r.env.Socket}
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "relc", "CNI_NETNS": rel, "CNI_IFNAME": "eth0", "CNI_PATH": filepath.Dir(bins.CNI)}
	if out, ok := r.plugin(env, conf); !ok {
		t.Fatalf("ADD with CNI_NETNS=%s: %s", rel, out)
	}
	if sb, err := r.agent.Client.Sandbox(t.Context(), "relc"); err != nil || sb.RuntimeNetns != ns {
		t.Fatalf("the sandbox: %+v, %v; want its runtime_netns %s", sb, err, ns)
	}
	env["CNI_COMMAND"] = "DEL"
	if out, ok := r.plugin(env, conf); !ok {
		t.Fatalf("DEL: %s", out)
	}
	waitOnlyLoopback(t, ns)
}

// TestSetKeyCLIRelativePath: `sandnet sandbox set-key C PATH` with a path
// relative to where it runs names the namespace there (the CLI hands the
// agent the absolute path).
func TestSetKeyCLIRelativePath(t *testing.T) {
	a := bridgeAgent(t)
	ns := runtimeNamespace(t, "setkey")
	if _, err := a.Client.CreateSandbox(t.Context(), controller.SandboxCreate{ContainerID: "ext", Options: sandbox.Options{ExternalKey: true}}); err != nil {
		t.Fatal(err)
	}
	rel := relativeToWD(t, ns)
	if out, code := sandnetCmd(t, "sandbox", "set-key", "--socket", a.Socket, "ext", rel); code != 0 {
		t.Fatalf("sandnet sandbox set-key ext %s: exit %d\n%s", rel, code, out)
	}
	sb, err := a.Client.Sandbox(t.Context(), "ext")
	if err != nil {
		t.Fatal(err)
	}
	if same, err := osl.Same(sb.Key, ns); err != nil || !same {
		t.Fatalf("the sandbox's key %s after set-key of %s: same namespace %v (%v)", sb.Key, rel, same, err)
	}
}

// relativeToWD is path relative to the test's working directory, where
// the commands it runs start.
func relativeToWD(t *testing.T, path string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

// TestCNIDelOfAnotherIfname: CNI keys an attachment by container, network
// and ifname. A runtime whose second ADD of a network failed (the
// container is on it already, as eth0) cleans that ADD up with a DEL of
// its ifname; that DEL must leave eth0's attachment. It deleted the
// container's sandbox. Once the DEL of eth0 answers, the name eth0 is
// free in the runtime's namespace for the next plugin (CNI's bridge
// plugin's ADD failed: the link lingered until the driver deleted it).
func TestCNIDelOfAnotherIfname(t *testing.T) {
	r := newCNIRig(t, "")
	ctx := context.Background()
	r.network("k", "10.66.0.0/24")
	ns := runtimeNamespace(t, "m")
	env := func(cmd, ifname string) map[string]string {
		return map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": "pod-m", "CNI_NETNS": ns, "CNI_IFNAME": ifname, "CNI_PATH": filepath.Dir(bins.CNI)}
	}
	conf := map[string]any{"cniVersion": "1.0.0", "name": "k", "type": "sandnet", "network": "k", "socket": r.env.Socket}
	if out, ok := r.plugin(env("ADD", "eth0"), conf); !ok {
		t.Fatalf("ADD eth0: %s", out)
	}
	if out, ok := r.plugin(env("ADD", "net1"), conf); ok {
		t.Fatalf("a second ADD of network k as net1 succeeded: %s", out)
	}
	if out, ok := r.plugin(env("DEL", "net1"), conf); !ok {
		t.Fatalf("DEL net1: %s", out)
	}
	sb, err := r.agent.Client.Sandbox(ctx, "pod-m")
	if err != nil || len(sb.Endpoints) != 1 || sb.Endpoints[0].IfName != "eth0" {
		t.Fatalf("after DEL net1: sandbox %s, %v; want its eth0 on k", jsonOf(sb), err)
	}
	if out, err := inNS(ns, "ip", "-o", "addr", "show", "eth0"); err != nil || !strings.Contains(out, "10.66.0.") {
		t.Fatalf("eth0 in the container after DEL net1: %v %s", err, out)
	}
	if out, ok := r.plugin(env("DEL", "eth0"), conf); !ok {
		t.Fatalf("DEL eth0: %s", out)
	}
	if out, err := inNS(ns, "ip", "-o", "link", "show", "eth0"); err == nil {
		t.Errorf("eth0 is still taken in the runtime's namespace when DEL has answered: %s", out)
	}
	if _, err := r.agent.Client.Sandbox(ctx, "pod-m"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the sandbox after DEL eth0: %v, want not found", err)
	}
	waitOnlyLoopback(t, ns)
}

// TestCNIAddOfAnExistingAttachment: an ADD of the attachment a container
// has already (the same network and ifname) answers with that attachment
// rather than refusing it: podman, whose disconnect failed while the
// agent was down, connects again, and on a refusal sent the DEL of its
// failed ADD, which took the working attachment away. An ADD asking that
// attachment for another address is still refused, and a second
// container's ADD into the same namespace is refused (two sandboxes in one
// namespace tear down each other's routes).
func TestCNIAddOfAnExistingAttachment(t *testing.T) {
	r := newCNIRig(t, "")
	ctx := context.Background()
	r.network("ex", "10.67.0.0/24")
	ns := runtimeNamespace(t, "x")
	env := func(cmd, container string) map[string]string {
		return map[string]string{"CNI_COMMAND": cmd, "CNI_CONTAINERID": container, "CNI_NETNS": ns, "CNI_IFNAME": "eth0", "CNI_PATH": filepath.Dir(bins.CNI)}
	}
	conf := map[string]any{"cniVersion": "1.0.0", "name": "ex", "type": "sandnet", "network": "ex", "socket": r.env.Socket}
	first, ok := r.plugin(env("ADD", "pod-x"), conf)
	if !ok {
		t.Fatalf("ADD: %s", first)
	}
	again, ok := r.plugin(env("ADD", "pod-x"), conf)
	if !ok {
		t.Fatalf("the ADD of the existing attachment: %s", again)
	}
	if again != first {
		t.Errorf("the ADD of the existing attachment answered\n%s\nwhere the first answered\n%s", again, first)
	}
	other := map[string]any{"cniVersion": "1.0.0", "name": "ex", "type": "sandnet", "network": "ex", "socket": r.env.Socket,
		"runtimeConfig": map[string]any{"ips": []string{"10.67.0.99/24"}}}
	if out, ok := r.plugin(env("ADD", "pod-x"), other); ok {
		t.Errorf("an ADD asking the attachment for another address succeeded: %s", out)
	}
	if out, ok := r.plugin(env("ADD", "pod-y"), conf); ok {
		t.Errorf("a second container's ADD into pod-x's namespace succeeded: %s", out)
	} else if e := cniErr(t, out); e.Code != types.ErrInvalidNetNS || !strings.Contains(e.Msg, "is the namespace of sandbox") {
		t.Errorf("a second container's ADD into pod-x's namespace: %+v", e)
	}
	// The host's own namespace as CNI_NETNS is an invalid netns too.
	own := env("ADD", "pod-z")
	own["CNI_NETNS"] = "/proc/self/ns/net"
	if out, ok := r.plugin(own, conf); ok {
		t.Errorf("an ADD into the host's namespace succeeded: %s", out)
	} else if e := cniErr(t, out); e.Code != types.ErrInvalidNetNS {
		t.Errorf("an ADD into the host's namespace: %+v, want code 8", e)
	}
	sb, err := r.agent.Client.Sandbox(ctx, "pod-x")
	if err != nil || len(sb.Endpoints) != 1 || sb.Endpoints[0].IfName != "eth0" {
		t.Fatalf("pod-x after the ADDs: %s, %v; want its eth0 on ex", jsonOf(sb), err)
	}
	if out, ok := r.plugin(env("DEL", "pod-x"), conf); !ok {
		t.Fatalf("DEL: %s", out)
	}
	waitOnlyLoopback(t, ns)
}
