package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// ociRuntime is an OCI runtime binary run with a state directory of the
// test's own (--root), so that it never sees the machine's containers.
type ociRuntime struct {
	name string
	argv []string // the command line up to the runtime's subcommand
	log  string   // the containers' stdout and stderr
}

// newOCIRuntime returns runc or crun, or skips the test saying why it
// cannot run here.
func newOCIRuntime(t *testing.T, name string) *ociRuntime {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian package %s)", name, name)
	}
	dir := t.TempDir()
	r := &ociRuntime{name: name, argv: []string{bin, "--root", filepath.Join(dir, "state")}, log: filepath.Join(dir, "log")}
	if name == "crun" && hybridCgroups() {
		// crun 1.8 refuses a hybrid cgroup layout whose v2 hierarchy has
		// controllers ("cgroups in hybrid mode not supported, drop all
		// controllers from cgroupv2"), as these VMs have (hugetlb). In a
		// mount namespace of its own with a tmpfs over the v2 mount, it
		// sees plain cgroup v1 and uses that; the machine's mounts are
		// untouched (the test's mount namespace is private too).
		r.argv = append([]string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount -t tmpfs sandnet-test /sys/fs/cgroup/unified && exec "$0" "$@"`}, r.argv...)
	}
	return r
}

// hybridCgroups reports whether cgroup v1 controllers sit beside a v2
// hierarchy that has controllers of its own.
func hybridCgroups() bool {
	b, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	return err == nil && strings.TrimSpace(string(b)) != ""
}

func (r *ociRuntime) command(ctx context.Context, args ...string) *exec.Cmd {
	argv := append(append([]string{}, r.argv...), args...)
	return exec.CommandContext(ctx, argv[0], argv[1:]...)
}

// run starts container id from bundle, detached; the runtime is asked to
// delete it, whatever its state, when the test ends.
func (r *ociRuntime) run(t *testing.T, bundle, id string) {
	t.Helper()
	log, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The container inherits the runtime's stdio: a file, not a pipe the
	// test would wait on.
	cmd := r.command(ctx, "run", "--detach", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = log, log
	t.Cleanup(func() { r.delete(t, id) })
	if err := cmd.Run(); err != nil {
		b, _ := os.ReadFile(r.log)
		t.Fatalf("%s run %s: %v\n%s", r.name, id, err, b)
	}
}

// exec runs a command in container id and returns its output.
func (r *ociRuntime) exec(id string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := r.command(ctx, append([]string{"exec", id}, args...)...).CombinedOutput()
	return string(out), err
}

// delete removes container id, killing it first; its poststop hook runs.
// A container already gone is no error.
func (r *ociRuntime) delete(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := r.command(ctx, "delete", "--force", id).CombinedOutput(); err != nil && !strings.Contains(string(out), "does not exist") && !strings.Contains(string(out), "not found") {
		t.Errorf("%s delete --force %s: %v\n%s", r.name, id, err, out)
	}
}

// busyboxRootfs makes a root file system of busybox-static and its applets,
// serving "<name>\n" under /www/<name>/ for each name.
func busyboxRootfs(t *testing.T, names ...string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (Debian package busybox-static)")
	}
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	// The mount points of sandnet's files: the root is mounted read-only.
	for _, f := range []string{"etc/resolv.conf", "etc/hosts"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		if err := os.MkdirAll(filepath.Join(root, "www", n), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "www", n, "index.html"), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// ociBundle writes a bundle whose config.json is the runtime's own
// `spec`, running args on the shared read-only rootfs, in a cgroup named
// for this test process so that runs in parallel do not meet.
func (r *ociRuntime) bundle(t *testing.T, rootfs, id string, args ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := r.command(ctx, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		t.Fatalf("%s spec: %v\n%s", r.name, err, out)
	}
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal, s.Process.Args = false, args
	s.Root = &specs.Root{Path: rootfs, Readonly: true}
	s.Linux.CgroupsPath = fmt.Sprintf("/sandnet-test-%d-%s", os.Getpid(), id)
	if raw, err = json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// prepare runs `sandnet oci prepare` against the agent at socket.
func prepare(t *testing.T, socket string, args ...string) {
	t.Helper()
	if out, code := sandnetCmd(t, append([]string{"oci", "prepare", "--socket", socket}, args...)...); code != 0 {
		t.Fatalf("sandnet oci prepare %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
}

// fetch is an HTTP GET from the test's namespace (the host's).
func fetch(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// wget fetches url from inside container id and reports whether the body
// is want; the last answer is kept in got for a failure's message.
func (r *ociRuntime) wget(id, url, want string, got *string) bool {
	// busybox-static 1.35's wget -T crashes; its timeout applet bounds it.
	out, err := r.exec(id, "timeout", "3", "wget", "-q", "-O", "-", url)
	*got = fmt.Sprintf("%q (%v)", out, err)
	return err == nil && out == want
}

// TestOCIRuntimes: runc and crun run plain bundles that `sandnet oci
// prepare` readied. Two containers on one network reach each other by
// name and by alias (their resolv.conf and hosts are sandnet's), a third
// serves on a published port reached from the host's namespace, and once
// the runtime has deleted them no sandbox, endpoint, interface or
// firewall rule is left.
func TestOCIRuntimes(t *testing.T) {
	for _, name := range []string{"runc", "crun"} {
		t.Run(name, func(t *testing.T) {
			a := bridgeAgent(t)
			r := newOCIRuntime(t, name)
			ctx := context.Background()
			socket := a.Socket
			if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "ocinet", Subnet: "10.71.0.0/24"}); err != nil {
				t.Fatal(err)
			}
			rootfs := busyboxRootfs(t, "web", "pub")
			web := r.bundle(t, rootfs, "web", "httpd", "-f", "-p", "80", "-h", "/www/web")
			cli := r.bundle(t, rootfs, "cli", "sleep", "3600")
			pub := r.bundle(t, rootfs, "pub", "httpd", "-f", "-p", "80", "-h", "/www/pub")
			prepare(t, socket, "--network", "ocinet", "--alias", "www", web, "web")
			prepare(t, socket, "--network", "ocinet", cli, "cli")
			// Prepared twice before it runs: the second replaces the
			// first's sandbox, and the bundle has each hook once.
			prepare(t, socket, "--network", "ocinet", "--publish", "8090:80", pub, "pub")
			prepare(t, socket, "--network", "ocinet", "--publish", "8091:80", "--hostname", "public", pub, "pub")
			s, _ := readSpec(t, pub)
			if len(s.Hooks.CreateRuntime) != 1 || len(s.Hooks.Poststop) != 1 || s.Hostname != "public" {
				t.Fatalf("pub's bundle after two prepares: createRuntime %+v, poststop %+v, hostname %q", s.Hooks.CreateRuntime, s.Hooks.Poststop, s.Hostname)
			}
			for _, id := range []string{"web", "cli", "pub"} {
				r.run(t, map[string]string{"web": web, "cli": cli, "pub": pub}[id], id)
			}

			var got string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("last answer: %s", got)
				}
			})
			agenttest.Eventually(t, "cli fetches web by name", func() bool { return r.wget("cli", "http://web/", "web\n", &got) })
			agenttest.Eventually(t, "cli fetches web by its alias", func() bool { return r.wget("cli", "http://www/", "web\n", &got) })
			agenttest.Eventually(t, "cli fetches pub by its hostname", func() bool { return r.wget("cli", "http://public/", "pub\n", &got) })
			agenttest.Eventually(t, "pub's published port answers on the host's loopback", func() bool {
				got = fetch("http://127.0.0.1:8091/")
				return got == "pub\n"
			})
			if out := fetch("http://127.0.0.1:8090/"); out == "pub\n" {
				t.Fatal("the port of pub's first, replaced prepare answers")
			}
			if out, err := r.exec("cli", "cat", "/etc/resolv.conf"); err != nil || !strings.Contains(out, "nameserver 127.0.0.11") {
				t.Fatalf("cli's resolv.conf: %q, %v", out, err)
			}
			sb, err := a.Client.Sandbox(ctx, "web")
			if err != nil {
				t.Fatal(err)
			}
			if sb.Front != "oci" || len(sb.Endpoints) != 1 {
				t.Fatalf("web's sandbox: front %q, %d endpoints", sb.Front, len(sb.Endpoints))
			}

			for _, id := range []string{"web", "cli", "pub"} {
				r.delete(t, id)
			}
			noOCILeaks(t, a, "ocinet", "10.71.0.", "8091")
		})
	}
}

// noOCILeaks waits until the runtimes' poststop hooks have removed every
// sandbox and checks that nothing of them is left: no endpoint on the
// network, no veth, no firewall rule naming the published port; then
// removes the network, after which nothing of its subnet is left either.
func noOCILeaks(t *testing.T, a *agenttest.Agent, network, prefix, port string) {
	t.Helper()
	ctx := context.Background()
	agenttest.Eventually(t, "the poststop hooks to delete every sandbox", func() bool {
		sbs, err := a.Client.Sandboxes(ctx)
		return err == nil && len(sbs) == 0
	})
	n, err := a.Client.Network(ctx, network)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Endpoints) != 0 {
		t.Fatalf("endpoints left on %s: %+v", network, n.Endpoints)
	}
	if out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput(); bytes.Contains(out, []byte(port)) {
		t.Fatalf("nft rules of the published port %s remain:\n%s", port, out)
	}
	if err := a.Client.DeleteNetwork(ctx, network); err != nil {
		t.Fatal(err)
	}
	waitNoLeaks(t, prefix)
	if out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput(); bytes.Contains(out, []byte(prefix)) {
		t.Fatalf("nft rules of the deleted network remain:\n%s", out)
	}
}

// TestOCIAgentRestart: the agent is killed with SIGKILL and started again
// while runc (and crun) containers run; past the stub grace period — an
// API sandbox nobody claimed is gone — the containers' sandboxes are
// still there and still serve names and traffic, and the poststop hooks
// then remove them, leaving nothing behind.
func TestOCIAgentRestart(t *testing.T) {
	for _, name := range []string{"runc", "crun"} {
		t.Run(name, func(t *testing.T) {
			nstest.RequireRoot(t)
			r := newOCIRuntime(t, name)
			ctx := context.Background()
			dir := t.TempDir()
			agenttest.CleanupMounts(t, dir)
			e := agenttest.NewEnv(t, bins, boltAndBridge(dir, "  stub_grace_period = \"2s\"\n"))
			a := e.Start(t)
			restarted := false // then the next agent's cleanup does it
			t.Cleanup(func() {
				if !restarted {
					removeAll(t, a.Client)
				}
			})
			if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "ocirs", Subnet: "10.72.0.0/24"}); err != nil {
				t.Fatal(err)
			}
			rootfs := busyboxRootfs(t, "web")
			web := r.bundle(t, rootfs, "web", "httpd", "-f", "-p", "80", "-h", "/www/web")
			cli := r.bundle(t, rootfs, "cli", "sleep", "3600")
			prepare(t, e.Socket, "--network", "ocirs", "--publish", "8092:80", web, "web")
			prepare(t, e.Socket, "--network", "ocirs", cli, "cli")
			r.run(t, web, "web")
			r.run(t, cli, "cli")
			var got string
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("last answer: %s", got)
				}
			})
			agenttest.Eventually(t, "cli fetches web by name", func() bool { return r.wget("cli", "http://web/", "web\n", &got) })
			// A sandbox of the API's, which no one claims after the
			// restart: its going says the grace period has passed.
			attach(t, a.Client, "ocirs", "unclaimed")

			if err := a.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			a.Wait(10 * time.Second)
			a, restarted = e.Start(t), true
			// Before this agent stops: the hooks need it.
			t.Cleanup(func() { removeAll(t, a.Client) })
			t.Cleanup(func() { r.delete(t, "web"); r.delete(t, "cli") })
			agenttest.Eventually(t, "the unclaimed API sandbox to be reaped", func() bool {
				_, err := a.Client.Sandbox(ctx, "unclaimed")
				return errors.Is(err, sdk.ErrNotFound)
			})
			for _, id := range []string{"web", "cli"} {
				if sb, err := a.Client.Sandbox(ctx, id); err != nil || len(sb.Endpoints) != 1 {
					t.Fatalf("%s's sandbox past the grace period: %+v, %v\n%s", id, sb, err, a.Log())
				}
			}
			if !r.wget("cli", "http://web/", "web\n", &got) {
				t.Fatalf("cli → web by name after the restart: %s", got)
			}
			if out := fetch("http://127.0.0.1:8092/"); out != "web\n" {
				t.Fatalf("web's published port after the restart: %q", out)
			}

			r.delete(t, "web")
			r.delete(t, "cli")
			noOCILeaks(t, a, "ocirs", "10.72.0.", "8092")
		})
	}
}

// TestOCIPoststopWhileAgentDown: a runc container removed while the agent
// is down, so that its poststop hook fails: the restarted agent sees its
// namespace with no process left and no longer at the hook's
// /proc/PID/ns/net, and removes the sandbox with its endpoint and port.
func TestOCIPoststopWhileAgentDown(t *testing.T) {
	nstest.RequireRoot(t)
	r := newOCIRuntime(t, "runc")
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
	a := e.Start(t)
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "ocidown", Subnet: "10.69.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	rootfs := busyboxRootfs(t, "web")
	web := r.bundle(t, rootfs, "web", "httpd", "-f", "-p", "80", "-h", "/www/web")
	prepare(t, e.Socket, "--network", "ocidown", "--publish", "8093:80", web, "web")
	r.run(t, web, "web")
	if sb, err := a.Client.Sandbox(ctx, "web"); err != nil || !strings.HasPrefix(sb.RuntimeNetns, "/proc/") {
		t.Fatalf("web's sandbox: %+v, %v; want the hook's /proc/PID/ns/net recorded", sb, err)
	}
	if err := a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait(10 * time.Second)
	r.delete(t, "web") // its poststop hook finds no agent
	a = e.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	noOCILeaks(t, a, "ocidown", "10.69.0.", "8093")
}

// TestOCIPrepareErrors: a prepare that fails says why and leaves no
// sandbox and the bundle as it was; the hooks report a missing sandbox
// clearly, and a poststop for a sandbox already gone succeeds.
func TestOCIPrepareErrors(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	socket := a.Socket
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "ocierr", Subnet: "10.73.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	good := writeBundle(t, `{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network"}]}}`)
	readOnly := writeBundle(t, `{"ociVersion": "1.0.2"}`)
	// A bundle sandnet cannot write to: the edit fails after the sandbox
	// was made, which must then go again.
	if err := syscall.Mount(readOnly, readOnly, "", syscall.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(readOnly, syscall.MNT_DETACH) })
	if err := syscall.Mount("", readOnly, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bundle string
		args         []string
		want         string
	}{
		{"no config.json", empty, nil, "no config.json"},
		{"unknown network", good, []string{"--network", "nope"}, "nope"},
		{"alias without a network", good, []string{"--alias", "x"}, "apply to the first -network"},
		{"bundle not writable", readOnly, []string{"--network", "ocierr"}, "read-only file system"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(tc.bundle, "config.json"))
			out, code := sandnetCmd(t, append(append([]string{"oci", "prepare", "--socket", socket}, tc.args...), tc.bundle, "failed")...)
			if code != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, output %q; want 1 and %q", code, out, tc.want)
			}
			if after, _ := os.ReadFile(filepath.Join(tc.bundle, "config.json")); !bytes.Equal(before, after) {
				t.Fatalf("config.json changed:\n%s", after)
			}
			sbs, err := a.Client.Sandboxes(ctx)
			if err != nil || len(sbs) != 0 {
				t.Fatalf("sandboxes after a failed prepare: %+v, %v", sbs, err)
			}
		})
	}
	hook := func(stage, state string) (string, int) {
		cmd := exec.Command(bins.Sandnet, "oci-hook", stage, "--socket", socket)
		cmd.Stdin = strings.NewReader(state)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	state := fmt.Sprintf(`{"ociVersion": "1.0.2", "id": "ghost", "status": "creating", "pid": %d, "bundle": "/b"}`, os.Getpid())
	if out, code := hook("create", state); code != 1 || !strings.Contains(out, "sandnet oci prepare /b ghost") {
		t.Fatalf("create hook without a sandbox: exit %d, %q; want 1 and the prepare to run", code, out)
	}
	if out, code := hook("delete", state); code != 0 {
		t.Fatalf("delete hook for a sandbox already gone: exit %d, %q", code, out)
	}
	if out, code := hook("create", `{"id": ""}`); code != 1 || !strings.Contains(out, "no id") {
		t.Fatalf("create hook with a state without id: exit %d, %q", code, out)
	}
	// The poststop of a container whose sandbox another client made
	// leaves that sandbox alone.
	attach(t, a.Client, "ocierr", "ghost")
	if out, code := hook("delete", state); code != 1 || !strings.Contains(out, "not made by `oci prepare`") {
		t.Fatalf("delete hook on an API sandbox: exit %d, %q", code, out)
	}
	if _, err := a.Client.Sandbox(ctx, "ghost"); err != nil {
		t.Fatalf("the API sandbox after the delete hook: %v", err)
	}
	gone := fmt.Sprintf(`{"ociVersion": "1.0.2", "id": "ghost", "pid": %d}`, exitedPid(t))
	if out, code := hook("create", gone); code != 1 || !strings.Contains(out, "is gone") {
		t.Fatalf("create hook for a process that exited: exit %d, %q; want it named gone", code, out)
	}

	// A createRuntime hook the agent refuses (the second container's
	// host port is the first's) removes the sandbox prepare made: the
	// runtime will not start the container, and crun runs no poststop
	// hook after a failed createRuntime one. It stayed, with its address.
	for _, id := range []string{"first", "second"} {
		prepare(t, socket, "--network", "ocierr", "--publish", "18181:80", writeBundle(t, `{"ociVersion": "1.0.2"}`), id)
	}
	hookState := func(id string) string {
		return fmt.Sprintf(`{"ociVersion": "1.0.2", "id": %q, "status": "creating", "pid": %d, "bundle": "/b"}`, id, containerProcess(t))
	}
	if out, code := hook("create", hookState("first")); code != 0 {
		t.Fatalf("create hook of the first container: exit %d, %q", code, out)
	}
	if out, code := hook("create", hookState("second")); code != 1 || !strings.Contains(out, "18181") || !strings.Contains(out, "its sandbox is removed") {
		t.Fatalf("create hook of the second container on the same host port: exit %d, %q; want the conflict and the sandbox removed", code, out)
	}
	if _, err := a.Client.Sandbox(ctx, "second"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the refused container's sandbox: %v, want it removed", err)
	}
	if out, code := hook("delete", hookState("first")); code != 0 {
		t.Fatalf("delete hook of the first container: exit %d, %q", code, out)
	}
}

// exitedPid is the PID of a process that has exited and been reaped.
func exitedPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// containerProcess starts a process in a network namespace of its own, as
// a runtime's container process before its start, and returns its PID;
// the test's cleanup ends it.
func containerProcess(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "the process in a namespace of its own", func() bool {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		return err == nil && ns != self
	})
	return cmd.Process.Pid
}
