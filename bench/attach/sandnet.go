package main

import (
	"context"
	"fmt"
	"time"

	"github.com/sandnet/sandnet/bench/internal/benchagent"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
)

// agent is the sandnet agent the benchmark drives.
type agent struct {
	*benchagent.Agent
	c *api.Client
}

// startAgent runs `sandnet agent` with the bolt store and the bridge
// driver, everything under dir but the namespace keys (under keys).
func startAgent(dir, keys, bin, pluginDir string) (*agent, error) {
	a, err := benchagent.Start(dir, keys, bin, pluginDir, "driver \"bridge\" {}\n")
	if err != nil {
		return nil, err
	}
	return &agent{Agent: a, c: a.Client}, nil
}

func (a *agent) stop() { a.Stop() }

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
	cpu0 := cpuTime(a.Pid())
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
		t.create = append(t.create, time.Since(start))
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
		t.disconnect = append(t.disconnect, time.Since(start))
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
	t.cpu = (cpuTime(a.Pid()) - cpu0) / time.Duration(n)
	return t, a.c.DeleteNetwork(ctx, name)
}
