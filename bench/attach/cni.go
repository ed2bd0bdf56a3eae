package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// timings are one scenario's attach and detach durations. For sandnet,
// create and disconnect are the first call of each (sandbox create;
// disconnect) and cpu the CPU time the agent and its plugins spent per
// attach and detach.
type timings struct {
	add, del, create, disconnect []time.Duration
	cpu                          time.Duration
	steps                        stepTimes // the agent's steps, sandnet's runs only
}

// cniRun attaches and detaches n namespaces with the reference plugins,
// invoked as libcni does: each plugin of the chain exec'd with CNI_COMMAND,
// CNI_NETNS, … in its environment and its config (with prevResult for
// chained plugins) on stdin; DEL in reverse order. With nat the network
// masquerades (ipMasq) and one port is published through portmap.
// Namespace creation is not timed: a runtime makes it before the ADD.
// Namespace keys go under keys. With keep, all n are attached before any
// is detached (the scale line); otherwise each is detached right after.
func cniRun(dir, keys, cniDir string, n int, nat, keep bool) (*timings, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	subnet, br := "10.221.0.0/16", "cni0"
	if nat {
		subnet, br = "10.222.0.0/16", "cni1"
	}
	bridgeConf := map[string]any{
		"cniVersion": "1.0.0", "name": "bench-" + br, "type": "bridge", "bridge": br,
		"isGateway": true, "ipMasq": nat,
		"ipam": map[string]any{"type": "host-local", "subnet": subnet, "dataDir": filepath.Join(dir, "ipam")},
	}
	t := &timings{}
	results := make([]json.RawMessage, n)
	key := func(i int) string { return filepath.Join(keys, fmt.Sprintf("c%d", i)) }
	id := func(i int) string { return fmt.Sprintf("bench%d", i) }
	add := func(i int) error {
		if err := newNetns(key(i)); err != nil {
			return err
		}
		start := time.Now()
		res, err := cniExec(cniDir, "bridge", "ADD", id(i), key(i), bridgeConf)
		if err == nil && nat {
			_, err = cniExec(cniDir, "portmap", "ADD", id(i), key(i), portmapConf(br, res, 20000+i))
		}
		if err != nil {
			return err
		}
		t.add = append(t.add, time.Since(start))
		results[i] = res
		return nil
	}
	del := func(i int) error {
		start := time.Now()
		if nat {
			if _, err := cniExec(cniDir, "portmap", "DEL", id(i), key(i), portmapConf(br, results[i], 20000+i)); err != nil {
				return err
			}
		}
		if _, err := cniExec(cniDir, "bridge", "DEL", id(i), key(i), bridgeConf); err != nil {
			return err
		}
		t.del = append(t.del, time.Since(start))
		return removeNetns(key(i))
	}
	if err := eachAttach(n, keep, add, del); err != nil {
		return nil, err
	}
	return t, nil
}

// eachAttach runs attach and detach for 0…n-1: with keep, every attach
// before the first detach; otherwise each detach right after its attach.
func eachAttach(n int, keep bool, attach, detach func(i int) error) error {
	for i := range n {
		if err := attach(i); err != nil {
			return err
		}
		if !keep {
			if err := detach(i); err != nil {
				return err
			}
		}
	}
	if keep {
		for i := range n {
			if err := detach(i); err != nil {
				return err
			}
		}
	}
	return nil
}

func portmapConf(br string, prev json.RawMessage, hostPort int) map[string]any {
	return map[string]any{
		"cniVersion": "1.0.0", "name": "bench-" + br, "type": "portmap",
		"capabilities":  map[string]bool{"portMappings": true},
		"runtimeConfig": map[string]any{"portMappings": []map[string]any{{"hostPort": hostPort, "containerPort": 80, "protocol": "tcp"}}},
		"prevResult":    prev,
	}
}

// cniExec runs one plugin command and returns its result.
func cniExec(cniDir, plugin, command, id, netnsPath string, conf map[string]any) (json.RawMessage, error) {
	stdin, err := json.Marshal(conf)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(cniDir, plugin))
	cmd.Env = []string{
		"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH=" + cniDir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %v: %s%s", plugin, command, err, out.String(), errOut.String())
	}
	return json.RawMessage(bytes.TrimSpace(out.Bytes())), nil
}
