// Package agenttest builds sandnet's binaries and runs a real agent process
// for end-to-end tests: the agent, its plugin processes and its API socket,
// each test in its own temporary directory.
package agenttest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// Bins are the built binaries.
type Bins struct {
	Sandnet   string
	PluginDir string
	// CNI is the CNI plugin, named sandnet in a directory of its own, as
	// a runtime's CNI plugin directory holds it.
	CNI string
}

// Build compiles bin/sandnet and every plugin under plugins/ into dir, the
// way `make build` lays them out: plugins/<name> becomes
// sandnet-driver-<name>, plugins/store-<name> sandnet-store-<name>.
func Build(dir string) (*Bins, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	b := &Bins{Sandnet: filepath.Join(dir, "sandnet"), PluginDir: filepath.Join(dir, "plugins"), CNI: filepath.Join(dir, "cni", "sandnet")}
	if err := goBuild(root, b.Sandnet, "./cmd/host"); err != nil {
		return nil, err
	}
	if err := goBuild(root, b.CNI, "./cmd/host/cni"); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(root, "plugins"))
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(root, "plugins", e.Name(), "main.go")); err != nil {
			continue
		}
		name := "sandnet-driver-" + e.Name()
		if strings.HasPrefix(e.Name(), "store-") {
			name = "sandnet-" + e.Name()
		}
		if err := goBuild(root, filepath.Join(b.PluginDir, name), "./plugins/"+e.Name()); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func goBuild(root, out, pkg string) error {
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, msg)
	}
	return nil
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Env is a directory holding one agent's config file, data directory and
// API socket.
type Env struct {
	Bins       *Bins
	Dir        string
	ConfigPath string
	Socket     string
	DataDir    string
	// Netns, when set, is the key of the network namespace the agent runs
	// in (a second "host" on the same machine); empty: the test's own.
	Netns string
	// Environ is added to the environment of the agents launched from
	// now on (say agent.EnvCrashAfter).
	Environ []string
}

// NewEnv writes a config into a fresh temporary directory: data_dir, the
// plugin dir of bins and an API socket inside that directory, then blocks
// (the test's store and driver blocks).
func NewEnv(t testing.TB, bins *Bins, blocks string) *Env {
	t.Helper()
	dir := t.TempDir()
	e := &Env{Bins: bins, Dir: dir, ConfigPath: filepath.Join(dir, "config.hcl"),
		Socket: filepath.Join(dir, "sandnet.sock"), DataDir: filepath.Join(dir, "data")}
	head := fmt.Sprintf("data_dir = %q\nplugin_dir = %q\napi {\n  socket = %q\n}\nlog {\n  level = \"debug\"\n}\n",
		e.DataDir, bins.PluginDir, e.Socket)
	if err := os.WriteFile(e.ConfigPath, []byte(head+blocks), 0o644); err != nil {
		t.Fatal(err)
	}
	CleanupMounts(t, dir)
	return e
}

// CleanupMounts unmounts, when the test ends, every namespace key a test
// left mounted below dir: sandbox namespaces outlive the agent by design,
// and a mounted key would keep the test's directory from being removed.
// Call it right after creating dir.
func CleanupMounts(t testing.TB, dir string) {
	t.Cleanup(func() { unmountUnder(dir) })
}

func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			_ = osl.Remove(f[4])
		}
	}
}

// Start runs `sandnet agent` on the env's config and waits until its API
// answers. The agent is stopped when the test ends.
func (e *Env) Start(t testing.TB) *Agent {
	t.Helper()
	a, err := e.Launch()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Terminate(10 * time.Second) })
	if err := a.WaitReady(15 * time.Second); err != nil {
		t.Fatalf("%v\nagent log:\n%s", err, a.Log())
	}
	return a
}

// Launch starts the agent process without waiting for it to be ready; the
// caller must Terminate it.
func (e *Env) Launch() (*Agent, error) {
	a := &Agent{Client: api.NewClient(e.Socket), Socket: e.Socket, log: &SyncBuffer{}, done: make(chan struct{})}
	a.Cmd = exec.Command(e.Bins.Sandnet, "agent", "-config", e.ConfigPath)
	if e.Netns != "" {
		// nsenter execs the agent in place: same PID, so signals and
		// waiting work as for a direct child.
		a.Cmd = exec.Command("nsenter", "--net="+e.Netns, e.Bins.Sandnet, "agent", "-config", e.ConfigPath)
	}
	a.Cmd.Stdout, a.Cmd.Stderr = a.log, a.log
	if len(e.Environ) > 0 {
		a.Cmd.Env = append(os.Environ(), e.Environ...)
	}
	if err := a.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		a.waitErr = a.Cmd.Wait()
		close(a.done)
	}()
	return a, nil
}

// Agent is a running agent process.
type Agent struct {
	Cmd    *exec.Cmd
	Client *api.Client
	// Socket is the API socket, for clients the test runs (the CLI, a
	// runtime's hooks).
	Socket  string
	log     *SyncBuffer
	done    chan struct{}
	waitErr error
}

// WaitReady waits until the API answers, or the agent exits, or timeout.
func (a *Agent) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-a.done:
			return fmt.Errorf("agent exited before it was ready: %v", a.waitErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.Client.Version(ctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("agent API not ready after %s", timeout)
}

// Wait waits for the agent to exit and returns its exit code (-1 when it
// did not exit within timeout).
func (a *Agent) Wait(timeout time.Duration) int {
	select {
	case <-a.done:
		return a.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

// Signal sends sig to the agent.
func (a *Agent) Signal(sig syscall.Signal) error { return a.Cmd.Process.Signal(sig) }

// Terminate sends SIGTERM and waits; if the agent does not exit in time it
// is killed.
func (a *Agent) Terminate(timeout time.Duration) {
	select {
	case <-a.done:
		return
	default:
	}
	_ = a.Signal(syscall.SIGTERM)
	if a.Wait(timeout) == -1 {
		_ = a.Signal(syscall.SIGKILL)
		<-a.done
	}
}

// Log returns everything the agent wrote so far.
func (a *Agent) Log() string { return a.log.String() }

// SyncBuffer is a bytes.Buffer safe to write from one goroutine (a
// process's output) while another reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually polls cond until it holds, for up to 20 s, and fails the test
// naming what did not happen: for work the agent finishes soon rather
// than at once (a plugin restarted, an event delivered).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	polltest.Until(t, 20*time.Second, what, cond)
}
