// Package benchagent starts a sandnet agent for the benchmark programs:
// the bolt store and the given drivers, everything in one directory.
package benchagent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sandnet/sandnet/core/api"
)

// Agent is a running agent process.
type Agent struct {
	cmd    *exec.Cmd
	log    *os.File
	Client *api.Client
	// Socket is the agent's API socket.
	Socket string
}

// Start runs `bin agent` with the bolt store (fsync on, as deployed, unless
// $BENCH_NO_SYNC is set) and drivers (HCL driver blocks), with data and
// socket under dir and namespace keys under keys (as under /run, a tmpfs
// is what production has), and waits for its API.
func Start(dir, keys, bin, pluginDir, drivers string) (*Agent, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pluginDir, err := filepath.Abs(pluginDir)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "sandnet.sock")
	conf := fmt.Sprintf(`data_dir = %q
plugin_dir = %q
api {
  socket = %q
}
log {
  level = "warn"
}
sandbox {
  netns_dir = %q
}
store "bolt" {
  config {
    path = %q
    no_sync = %v
  }
}
%s`, filepath.Join(dir, "data"), pluginDir, sock, keys, filepath.Join(dir, "store.db"), os.Getenv("BENCH_NO_SYNC") != "", drivers)
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	a := &Agent{cmd: exec.Command(bin, "agent", "-config", path), Client: api.NewClient(sock), Socket: sock, log: logf}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// A benchmark killed midway (its output piped into head, say) takes
	// its agent, and with it the plugins, along.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	for range 400 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = a.Client.Version(ctx)
		cancel()
		if err == nil {
			return a, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	a.Stop()
	b, _ := os.ReadFile(logf.Name())
	return nil, fmt.Errorf("agent not ready: %v\n%s", err, b)
}

// Stop interrupts the agent and waits for it (killing it after 10 s).
func (a *Agent) Stop() {
	_ = a.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = a.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = a.cmd.Process.Kill()
		<-done
	}
	a.log.Close()
}

// Pid is the agent's process ID.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }
