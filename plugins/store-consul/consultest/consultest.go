// Package consultest runs a real Consul agent (`consul agent -dev`, the
// version .ci/consul pins) on loopback for tests: store-consul's own and
// the agent-level tests that swap stores or share one between hosts.
package consultest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// consulVersion is the agent the tests run against: the one .ci/consul
// pins and `make consul` builds.
const consulVersion = "1.14.11"

// Binary returns the Consul agent binary: $SANDNET_CONSUL, or the one
// `make consul` caches. When it is missing the test is skipped, unless
// SANDNET_REQUIRE_CONSUL=1 (as in CI), which makes it fail.
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SANDNET_CONSUL")
	if bin == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		bin = filepath.Join(home, ".cache", "sandnet", "consul-"+consulVersion)
	}
	if _, err := os.Stat(bin); err != nil {
		msg := fmt.Sprintf("no Consul agent at %s (run `make consul`, or set SANDNET_CONSUL): %v", bin, err)
		if os.Getenv("SANDNET_REQUIRE_CONSUL") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// Agent is a `consul agent -dev` that a test started: a one-node
// datacenter, in memory, on loopback ports nobody else uses.
type Agent struct {
	client string // -client addresses
	t      testing.TB
	bin    string
	dir    string
	ports  map[string]int // flag name → port
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// Start starts an agent, waits until it has elected itself leader,
// and stops it when the test ends.
func Start(t testing.TB) *Agent {
	t.Helper()
	return StartOn(t, "127.0.0.1")
}

// StartOn is Start with the HTTP API on the client addresses given (a
// space-separated list, as consul's -client takes), for agents of other
// namespaces to reach; the rest stays on loopback.
func StartOn(t testing.TB, client string) *Agent {
	t.Helper()
	a := &Agent{t: t, bin: Binary(t), dir: t.TempDir(), ports: map[string]int{}, client: client}
	for name, port := range FreePorts(t, "http-port", "server-port", "serf-lan-port", "serf-wan-port") {
		a.ports[name] = port
	}
	t.Cleanup(func() {
		a.Stop()
		if t.Failed() {
			if b, err := os.ReadFile(a.log); err == nil && len(b) > 0 {
				t.Logf("consul agent log:\n%s", b)
			}
		}
	})
	a.Start()
	return a
}

// Port is the agent's HTTP API port, on every client address.
func (a *Agent) Port() int { return a.ports["http-port"] }

// Addr is the agent's HTTP API address on loopback.
func (a *Agent) Addr() string { return "127.0.0.1:" + strconv.Itoa(a.ports["http-port"]) }

// Start runs the agent on its ports and waits for a leader.
func (a *Agent) Start() {
	a.t.Helper()
	args := []string{"agent", "-dev",
		"-bind", "127.0.0.1", "-client", a.client,
		"-node", "sandnet-test",
		"-dns-port", "-1", "-grpc-port", "-1", "-grpc-tls-port", "-1",
		"-log-level", "warn",
		// No calls home to checkpoint-api.hashicorp.com: traffic stays on
		// loopback.
		"-hcl", "disable_update_check = true",
	}
	for name, port := range a.ports {
		args = append(args, "-"+name, strconv.Itoa(port))
	}
	a.log = filepath.Join(a.dir, "agent.log")
	out, err := os.OpenFile(a.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		a.t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(a.bin, args...)
	cmd.Dir = a.dir
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, so a terminal's ^C reaches the test binary
	// first and the agent is stopped by the cleanup; and killed with the
	// test binary if that dies without cleaning up (a test timeout).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		a.t.Fatalf("starting consul agent: %v", err)
	}
	a.cmd = cmd
	a.exited = make(chan struct{})
	go func() { cmd.Wait(); close(a.exited) }()
	if err := a.waitLeader(30 * time.Second); err != nil {
		b, _ := os.ReadFile(a.log)
		a.t.Fatalf("consul agent at %s: %v\n%s", a.Addr(), err, b)
	}
}

// waitLeader polls /v1/status/leader until the agent names a leader.
func (a *Agent) waitLeader(timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-a.exited:
			return errors.New("exited while starting")
		default:
		}
		resp, err := client.Get("http://" + a.Addr() + "/v1/status/leader")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Trim(strings.TrimSpace(string(b)), `"`) != "" {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader after %s (last error: %v)", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the agent by its PID: SIGTERM, then SIGKILL if it has not
// exited within 10 seconds. A stopped agent can be started again on the
// same ports, empty.
func (a *Agent) Stop() {
	if a.cmd == nil {
		return
	}
	p := a.cmd.Process
	// A paused agent cannot act on SIGTERM.
	_ = p.Signal(syscall.SIGCONT)
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		_ = p.Kill()
		<-a.exited
	}
	a.cmd = nil
}

// Pause freezes the agent (SIGSTOP): its sockets stay open but nothing
// answers, like a hung agent. It returns once every thread has stopped,
// which on a busy VM can be milliseconds after the signal.
func (a *Agent) Pause() {
	a.t.Helper()
	a.signal(syscall.SIGSTOP)
	deadline := time.Now().Add(5 * time.Second)
	for !a.stopped() {
		if time.Now().After(deadline) {
			a.t.Fatalf("consul agent not stopped 5s after SIGSTOP (%s)", a.State())
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume thaws the agent (SIGCONT).
func (a *Agent) Resume() { a.signal(syscall.SIGCONT) }

// stopped reports whether every thread of the agent is stopped.
func (a *Agent) stopped() bool {
	dir := fmt.Sprintf("/proc/%d/task", a.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			return false
		}
		// The state follows the parenthesized command name.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
			return false
		}
	}
	return true
}

func (a *Agent) signal(sig syscall.Signal) {
	a.t.Helper()
	if err := a.cmd.Process.Signal(sig); err != nil {
		a.t.Fatalf("signalling consul agent: %v", err)
	}
}

// State is the agent process's State line from /proc, for messages.
func (a *Agent) State() string {
	if a.cmd == nil {
		return "not running"
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "State:") {
			return fmt.Sprintf("pid %d %s", a.cmd.Process.Pid, line)
		}
	}
	return "unknown"
}

// FreePorts returns a loopback TCP port for each name that was free a
// moment ago, all different: each stays bound until all are picked.
func FreePorts(t testing.TB, names ...string) map[string]int {
	t.Helper()
	ports := map[string]int{}
	for _, name := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[name] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}
