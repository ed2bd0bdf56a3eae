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

// scenario is one run of the sandnet side.
type scenario struct {
	name, subnet string
	n            int
	// nat publishes a port per container (masquerade is on either way
	// unless plain, where it is turned off to match CNI's plain bridge).
	nat bool
	// keep attaches all containers before any detaches.
	keep bool
	// oneCall attaches with one request, a sandbox create that lists the
	// network, rather than a create and a connect.
	oneCall bool
}

// run creates a bridge network and attaches n containers to it through the
// API, each attach timed as sandbox create + connect (or the one create
// with the network) and each detach as disconnect + sandbox delete.
func (a *agent) run(sc scenario) (*timings, error) {
	ctx := context.Background()
	name, n, nat := sc.name, sc.n, sc.nat
	req := controller.NetworkCreate{Name: name, Driver: "bridge", Subnet: sc.subnet}
	if !nat {
		req.Options = map[string]string{"com.sandnet.bridge.enable_ip_masquerade": "false"}
	}
	if _, err := a.c.CreateNetwork(ctx, req); err != nil {
		return nil, err
	}
	t := &timings{}
	steps0, err := a.steps()
	if err != nil {
		return nil, err
	}
	cpu0 := cpuTime(a.Pid())
	attach := func(i int) error {
		container := fmt.Sprintf("%s-%d", name, i)
		conn := controller.Connect{Container: container}
		if nat {
			conn.Publish = []string{"80/tcp"}
		}
		start := time.Now()
		if sc.oneCall {
			conn.Container = ""
			req := controller.SandboxCreate{ContainerID: container, Networks: []controller.SandboxNetwork{{Network: name, Connect: conn}}}
			if _, err := a.c.CreateSandbox(ctx, req); err != nil {
				return err
			}
			t.create = append(t.create, time.Since(start))
			t.add = append(t.add, time.Since(start))
			return nil
		}
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
	if err := eachAttach(n, sc.keep, attach, detach); err != nil {
		return nil, err
	}
	t.cpu = (cpuTime(a.Pid()) - cpu0) / time.Duration(n)
	steps, err := a.steps()
	if err != nil {
		return nil, err
	}
	t.steps = steps.since(steps0)
	return t, a.c.DeleteNetwork(ctx, name)
}
