// Command podman measures `podman run --rm busybox true` on a sandnet
// network (the CNI plugin, bin/cni/sandnet) against podman's own CNI
// bridge network (`podman network create`: the reference bridge,
// host-local, portmap, firewall and tuning plugins from /usr/lib/cni), in
// one run on one machine, alternating the two run by run (which goes first
// alternates too), and prints both medians and their ratio. Everything
// else is equal: one podman, one image, one storage.
//
// It must run as root inside a throwaway network and mount namespace
// (make bench runs it under unshare --net --mount); it refuses to run in
// the machine's own namespace. podman's writes outside its own
// directories land on tmpfs shadows (core/agent/agenttest/runtimetest).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bench/internal/benchagent"
	"github.com/sandnet/sandnet/core/agent/agenttest/runtimetest"
	"github.com/sandnet/sandnet/core/controller"
)

const image = "localhost/sandnet-busybox:bench"

func main() {
	rounds := flag.Int("rounds", 15, "runs per network (alternating)")
	sandnetBin := flag.String("sandnet", "bin/sandnet", "the sandnet binary")
	pluginDir := flag.String("plugins", "bin/plugins", "sandnet plugin directory")
	cniBin := flag.String("cni", "bin/cni/sandnet", "sandnet's CNI plugin")
	flag.Parse()
	if err := run(*rounds, *sandnetBin, *pluginDir, *cniBin); err != nil {
		fmt.Fprintln(os.Stderr, "podman:", err)
		os.Exit(1)
	}
}

func run(rounds int, sandnetBin, pluginDir, cniBin string) error {
	if err := requireIsolation(); err != nil {
		return err
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sn-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cniBin, err = filepath.Abs(cniBin)
	if err != nil {
		return err
	}
	a, err := benchagent.Start(filepath.Join(dir, "sandnet"), filepath.Join(dir, "keys"), sandnetBin, pluginDir, "driver \"bridge\" {}\n")
	if err != nil {
		return fmt.Errorf("sandnet agent: %w", err)
	}
	defer a.Stop()
	ctx := context.Background()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "sn", Subnet: "10.73.0.0/24"}); err != nil {
		return err
	}
	p, err := runtimetest.NewPodman(filepath.Join(dir, "p"), filepath.Dir(cniBin), "/usr/lib/cni")
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.ImportBusybox(ctx, image); err != nil {
		return err
	}
	if err := p.WriteConflist("sn", runtimetest.SandnetPlugin("sn", filepath.Join(dir, "sandnet", "sandnet.sock"))); err != nil {
		return err
	}
	if _, err := p.Run(ctx, "network", "create", "--subnet", "10.74.0.0/24", "ref"); err != nil {
		return err
	}
	once := func(network string) (time.Duration, error) {
		start := time.Now()
		_, err := p.Run(ctx, p.RunArgs("--rm", "--network", network, image, "true")...)
		return time.Since(start), err
	}
	// One warm-up each: the first run pays for caches.
	for _, n := range []string{"sn", "ref"} {
		if _, err := once(n); err != nil {
			return err
		}
	}
	fmt.Printf("podman run --rm busybox true: %d runs per network, alternating\n", rounds)
	times := map[string][]time.Duration{}
	for i := range rounds {
		order := []string{"sn", "ref"}
		if i%2 == 1 {
			order = []string{"ref", "sn"}
		}
		for _, n := range order {
			d, err := once(n)
			if err != nil {
				return err
			}
			times[n] = append(times[n], d)
		}
	}
	sn, ref := median(times["sn"]), median(times["ref"])
	fmt.Printf("%-40s %8.1f ms  (min %.1f, max %.1f)\n", "sandnet network (CNI plugin sandnet)", ms(sn), ms(slices.Min(times["sn"])), ms(slices.Max(times["sn"])))
	fmt.Printf("%-40s %8.1f ms  (min %.1f, max %.1f)\n", "podman CNI bridge network", ms(ref), ms(slices.Min(times["ref"])), ms(slices.Max(times["ref"])))
	verdict := "not slower"
	if sn > ref {
		verdict = "SLOWER"
	}
	fmt.Printf("%-40s %8.2f ×  (sandnet/bridge; must be ≤ 1: %s)\n", "ratio", float64(sn)/float64(ref), verdict)
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// requireIsolation refuses to run unless the network namespace holds
// nothing but lo: the benchmark creates bridges and firewall rules.
func requireIsolation() error {
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			return fmt.Errorf("refusing to run in a namespace that has %s: run it under `unshare --net --mount --propagation private` (make bench does)", l.Attrs().Name)
		}
	}
	return nil
}
