package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/sandnet/sandnet/core/controller"
)

// frontVsBridge measures sandnet's CNI plugin against CNI's reference
// bridge + host-local plugins, both exec'd as libcni execs a plugin (the
// CNI environment, the config on stdin), alternating which goes first in
// each round so that neither side always runs on a warmer machine. Both
// pay an exec; sandnet's plugin hands the work to the long-lived agent.
// Namespace creation is not timed: the runtime makes it before the ADD.
func (a *agent) frontVsBridge(dir, keys, cniDir, frontBin string, n int) (front, bridge *timings, err error) {
	ctx := context.Background()
	req := controller.NetworkCreate{Name: "front", Driver: "bridge", Subnet: "10.216.0.0/16",
		Options: map[string]string{"com.sandnet.bridge.enable_ip_masquerade": "false"}}
	if _, err := a.c.CreateNetwork(ctx, req); err != nil {
		return nil, nil, err
	}
	frontConf := map[string]any{"cniVersion": "1.0.0", "name": "front", "type": "sandnet", "network": "front", "socket": a.Socket}
	bridgeConf := map[string]any{
		"cniVersion": "1.0.0", "name": "bench-cnif", "type": "bridge", "bridge": "cnif",
		"isGateway": true, "ipMasq": false,
		"ipam": map[string]any{"type": "host-local", "subnet": "10.217.0.0/16", "dataDir": filepath.Join(dir, "ipam")},
	}
	frontDir, frontName := filepath.Dir(frontBin), filepath.Base(frontBin)
	front, bridge = &timings{}, &timings{}
	type side struct {
		t         *timings
		dir, name string
		conf      map[string]any
		prefix    string
	}
	sides := []side{{front, frontDir, frontName, frontConf, "f"}, {bridge, cniDir, "bridge", bridgeConf, "b"}}
	steps0, err := a.steps()
	if err != nil {
		return nil, nil, err
	}
	for i := range n {
		order := sides
		if i%2 == 1 {
			order = []side{sides[1], sides[0]}
		}
		for _, s := range order {
			key := filepath.Join(keys, fmt.Sprintf("%s%d", s.prefix, i))
			id := fmt.Sprintf("front%s%d", s.prefix, i)
			if err := newNetns(key); err != nil {
				return nil, nil, err
			}
			start := time.Now()
			if _, err := cniExec(s.dir, s.name, "ADD", id, key, s.conf); err != nil {
				return nil, nil, err
			}
			s.t.add = append(s.t.add, time.Since(start))
			start = time.Now()
			if _, err := cniExec(s.dir, s.name, "DEL", id, key, s.conf); err != nil {
				return nil, nil, err
			}
			s.t.del = append(s.t.del, time.Since(start))
			if err := removeNetns(key); err != nil {
				return nil, nil, err
			}
		}
	}
	steps, err := a.steps()
	if err != nil {
		return nil, nil, err
	}
	front.steps = steps.since(steps0)
	return front, bridge, a.c.DeleteNetwork(ctx, "front")
}

// printFront prints the CNI front's medians and ratios.
func printFront(front, bridge *timings) {
	fmt.Println("\nCNI front: the sandnet CNI plugin against CNI bridge+host-local, both exec'd (medians):")
	row("sandnet CNI plugin ADD", median(front.add))
	row("CNI bridge+host-local ADD", median(bridge.add))
	row("sandnet CNI plugin DEL", median(front.del))
	row("CNI bridge+host-local DEL", median(bridge.del))
	ratio("sandnet CNI ADD / bridge ADD", median(front.add), median(bridge.add), "≤ 0.5")
	ratio("sandnet CNI DEL / bridge DEL", median(front.del), median(bridge.del), "≤ 0.5")
	printStepMeans("sandnet CNI ADD", front.steps)
}
