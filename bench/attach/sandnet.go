package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
)

type agent struct {
	cmd *exec.Cmd
	c   *api.Client
	log *os.File
}

// startAgent runs `sandnet agent` with the bolt store and the bridge
// driver, everything under dir but the namespace keys (under keys), and
// waits for its API.
func startAgent(dir, keys, bin, pluginDir string) (*agent, error) {
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
driver "bridge" {}
`, filepath.Join(dir, "data"), pluginDir, sock, keys, filepath.Join(dir, "store.db"), os.Getenv("BENCH_NO_SYNC") != "")
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return nil, err
	}
	a := &agent{cmd: exec.Command(bin, "agent", "-config", path), c: api.NewClient(sock), log: logf}
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return nil, err
	}
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = a.c.Version(ctx)
		cancel()
		if err == nil {
			return a, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	a.stop()
	b, _ := os.ReadFile(logf.Name())
	return nil, fmt.Errorf("agent not ready: %v\n%s", err, b)
}

func (a *agent) stop() {
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

// run creates a bridge network and attaches n containers to it through the
// API, each attach timed as sandbox create + connect and each detach as
// disconnect + sandbox delete. nat publishes a port per container
// (masquerade is on either way unless plain, where it is turned off to
// match CNI's plain bridge). With keep, all attach before any detaches.
func (a *agent) run(name, subnet string, n int, nat bool, keep ...bool) (*timings, error) {
	ctx := context.Background()
	req := controller.NetworkCreate{Name: name, Driver: "bridge", Subnet: subnet}
	if !nat {
		req.Options = map[string]string{"com.sandnet.bridge.enable_ip_masquerade": "false"}
	}
	if _, err := a.c.CreateNetwork(ctx, req); err != nil {
		return nil, err
	}
	t := &timings{}
	attach := func(i int) error {
		container := fmt.Sprintf("%s-%d", name, i)
		conn := controller.Connect{Container: container}
		if nat {
			conn.Publish = []string{"80/tcp"}
		}
		start := time.Now()
		if _, err := a.c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: container}); err != nil {
			return err
		}
		if _, err := a.c.Connect(ctx, name, conn); err != nil {
			return err
		}
		t.add = append(t.add, time.Since(start))
		return nil
	}
	detach := func(i int) error {
		container := fmt.Sprintf("%s-%d", name, i)
		start := time.Now()
		if err := a.c.Disconnect(ctx, name, container); err != nil {
			return err
		}
		if err := a.c.DeleteSandbox(ctx, container); err != nil {
			return err
		}
		t.del = append(t.del, time.Since(start))
		return nil
	}
	if len(keep) > 0 && keep[0] {
		for i := range n {
			if err := attach(i); err != nil {
				return nil, err
			}
		}
		for i := range n {
			if err := detach(i); err != nil {
				return nil, err
			}
		}
	} else {
		for i := range n {
			if err := attach(i); err != nil {
				return nil, err
			}
			if err := detach(i); err != nil {
				return nil, err
			}
		}
	}
	return t, a.c.DeleteNetwork(ctx, name)
}
