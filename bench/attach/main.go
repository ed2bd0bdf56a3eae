// Command attach measures, in one run on one machine, attaching fresh
// network namespaces to one bridge network three ways:
//
//   - sandnet, through its API as a runtime calls it: attach as one
//     request (a sandbox create that lists the network) and as two (sandbox
//     create + connect); detach as disconnect + sandbox delete;
//   - CNI's reference bridge + host-local plugins (and portmap for the
//     published-port case), exec'd with the CNI environment and config on
//     stdin as a runtime does;
//   - a floor: only the netlink work one attach needs (namespace, veth pair
//     created in place, bridge port, address, route), no bookkeeping.
//
// It prints medians and the ratios the benchmarks are judged by, and a
// scale line: 1000 containers kept on one network, for sandnet and, for
// reference, for the floor and CNI (medians of the first and last ten and
// of every hundred). It must
// run as root inside a throwaway network and mount namespace (make bench
// runs it under unshare --net --mount); it refuses to run in the machine's
// own namespace.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

func main() {
	n := flag.Int("n", 100, "containers per scenario")
	scale := flag.Int("scale", 1000, "containers for the scale scenario (0 skips it)")
	sandnetBin := flag.String("sandnet", "bin/sandnet", "the sandnet binary")
	pluginDir := flag.String("plugins", "bin/plugins", "sandnet plugin directory")
	cniDir := flag.String("cni", "/usr/lib/cni", "CNI plugin directory")
	only := flag.Bool("sandnet-only", false, "measure sandnet alone, by step (no peers, no ratios): for comparing changes")
	frontBin := flag.String("cni-front", "bin/cni/sandnet", "sandnet's CNI plugin")
	frontOnly := flag.Bool("front-only", false, "measure only sandnet's CNI plugin against CNI's bridge plugin")
	flag.Parse()
	if err := run(*n, *scale, *sandnetBin, *pluginDir, *cniDir, *frontBin, *only, *frontOnly); err != nil {
		fmt.Fprintln(os.Stderr, "attach:", err)
		os.Exit(1)
	}
}

func run(n, scale int, sandnetBin, pluginDir, cniDir, frontBin string, only, frontOnly bool) error {
	if err := requireIsolation(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sandnet-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	defer unmountAll(dir)
	if err := setupHost(); err != nil {
		return err
	}
	// Namespace keys live on a tmpfs, as under /run (sandnet's default
	// netns_dir, /run/netns for ip netns, /var/run/netns for runtimes); the
	// store and the resolution files stay on disk.
	run := filepath.Join(dir, "run")
	if err := mountTmpfs(run); err != nil {
		return err
	}

	fmt.Printf("attach benchmark: %d containers per scenario, one bridge network each\n\n", n)
	a, err := startAgent(filepath.Join(dir, "sandnet"), filepath.Join(run, "sandnet"), sandnetBin, pluginDir)
	if err != nil {
		return fmt.Errorf("sandnet agent: %w", err)
	}
	defer a.stop()
	front := func() error {
		f, b, err := a.frontVsBridge(filepath.Join(dir, "front"), filepath.Join(run, "front"), cniDir, frontBin, n)
		if err != nil {
			return fmt.Errorf("CNI front: %w", err)
		}
		printFront(f, b)
		return nil
	}
	if frontOnly {
		return front()
	}
	if only {
		sn, one, err := a.plain(n)
		if err != nil {
			return err
		}
		printSteps("sandnet", sn)
		row("sandnet: attach, two calls", median(sn.add))
		row("sandnet: attach, one call", median(one.add))
		row("sandnet: detach", median(sn.del))
		row("sandnet: detach (after one-call attach)", median(one.del))
		printStepMeans("two calls", sn.steps)
		printStepMeans("one call", one.steps)
		if scale > 0 {
			return a.scaleLine(scenario{name: "scale1", subnet: "10.212.0.0/16", n: scale, keep: true, oneCall: true})
		}
		return nil
	}
	floor, cni, err := peerRuns(dir, run, cniDir, "", n, false)
	if err != nil {
		return err
	}
	cniNAT, err := cniRun(filepath.Join(dir, "cni-nat"), filepath.Join(run, "cni-nat"), cniDir, n, true, false)
	if err != nil {
		return fmt.Errorf("cni with NAT and portmap: %w", err)
	}
	sn, one, err := a.plain(n)
	if err != nil {
		return err
	}
	snNAT, err := a.run(scenario{name: "nat", subnet: "10.211.0.0/16", n: n, nat: true})
	if err != nil {
		return fmt.Errorf("sandnet with NAT and a published port: %w", err)
	}
	oneNAT, err := a.run(scenario{name: "onenat", subnet: "10.214.0.0/16", n: n, nat: true, oneCall: true})
	if err != nil {
		return fmt.Errorf("sandnet with NAT and a published port, one call: %w", err)
	}

	fmt.Println("medians:")
	row("floor attach (netlink only)", median(floor.add))
	row("CNI bridge+host-local ADD", median(cni.add))
	row("CNI bridge+host-local DEL", median(cni.del))
	row("CNI bridge(ipMasq)+portmap ADD", median(cniNAT.add))
	row("CNI bridge(ipMasq)+portmap DEL", median(cniNAT.del))
	row("sandnet attach, one call (create with network)", median(one.add))
	row("sandnet attach, two calls (create + connect)", median(sn.add))
	row("sandnet detach (disconnect + sandbox rm)", median(sn.del))
	row("sandnet attach, NAT + published port, one call", median(oneNAT.add))
	row("sandnet attach, NAT + published port, two calls", median(snNAT.add))
	row("sandnet detach, NAT + published port", median(snNAT.del))
	fmt.Println("\nby step (medians), and CPU time of the agent and its plugins:")
	row("floor: namespace alone", median(floor.create))
	printSteps("sandnet", sn)
	printSteps("sandnet NAT", snNAT)
	row("sandnet one call: CPU per attach + detach", one.cpu)
	printStepMeans("sandnet, two calls", sn.steps)
	printStepMeans("sandnet, one call", one.steps)
	fmt.Println("\nratios (target):")
	ratio("sandnet attach / CNI ADD, one call", median(one.add), median(cni.add), "≤ 0.2")
	ratio("sandnet attach / CNI ADD, two calls", median(sn.add), median(cni.add), "≤ 0.2")
	ratio("sandnet attach / floor, one call", median(one.add), median(floor.add), "≤ 2")
	ratio("sandnet attach / floor, two calls", median(sn.add), median(floor.add), "≤ 2")
	ratio("sandnet detach / CNI DEL", median(sn.del), median(cni.del), "≤ 0.2")
	ratio("NAT+port attach / CNI ipMasq+portmap, one call", median(oneNAT.add), median(cniNAT.add), "≤ 0.1")
	ratio("NAT+port attach / CNI ipMasq+portmap, two calls", median(snNAT.add), median(cniNAT.add), "≤ 0.1")
	if err := front(); err != nil {
		return err
	}

	if scale > 0 {
		for _, sc := range []scenario{
			{name: "scale1", subnet: "10.212.0.0/16", n: scale, keep: true, oneCall: true},
			{name: "scale2", subnet: "10.215.0.0/16", n: scale, keep: true},
		} {
			if err := a.scaleLine(sc); err != nil {
				return err
			}
		}
		return scalePeers(dir, run, cniDir, scale)
	}
	return nil
}

// scalePeers prints, for reference, how the floor and CNI's plugins grow
// with the same number of containers kept on one bridge: the kernel's
// share of the growth, with the kernel's default settings.
func scalePeers(dir, run, cniDir string, n int) error {
	floor, cni, err := peerRuns(dir, run, cniDir, "-scale", n, true)
	if err != nil {
		return err
	}
	fmt.Printf("\nscale, for reference: %d containers on one bridge\n", n)
	growth("floor attach", floor.add)
	ratio("floor: last 10 / first 10", median(floor.add[n-10:]), median(floor.add[:10]), "reference")
	growth("floor namespace", floor.create)
	growth("CNI ADD", cni.add)
	ratio("CNI: last 10 / first 10", median(cni.add[n-10:]), median(cni.add[:10]), "reference")
	return nil
}

// peerRuns measures the floor and CNI's plain bridge plugins with n
// containers each (all kept on the bridge before any detach, with keep),
// their files under names ending in suffix.
func peerRuns(dir, run, cniDir, suffix string, n int, keep bool) (floor, cni *timings, err error) {
	if floor, err = floorAttach(filepath.Join(run, "floor"+suffix), n); err != nil {
		return nil, nil, fmt.Errorf("floor%s: %w", suffix, err)
	}
	if cni, err = cniRun(filepath.Join(dir, "cni"+suffix), filepath.Join(run, "cni"+suffix), cniDir, n, false, keep); err != nil {
		return nil, nil, fmt.Errorf("cni%s: %w", suffix, err)
	}
	return floor, cni, nil
}

// plain runs the plain bridge scenario twice: attach in two requests,
// then in one.
func (a *agent) plain(n int) (sn, one *timings, err error) {
	if sn, err = a.run(scenario{name: "plain", subnet: "10.210.0.0/16", n: n}); err != nil {
		return nil, nil, fmt.Errorf("sandnet: %w", err)
	}
	if one, err = a.run(scenario{name: "one", subnet: "10.213.0.0/16", n: n, oneCall: true}); err != nil {
		return nil, nil, fmt.Errorf("sandnet, one call: %w", err)
	}
	return sn, one, nil
}

// scaleLine attaches sc.n containers to one network before detaching any
// and prints the median attach of the last ten against the first ten
// (and, for two requests, each step's).
func (a *agent) scaleLine(sc scenario) error {
	t, err := a.run(sc)
	if err != nil {
		return fmt.Errorf("sandnet scale: %w", err)
	}
	n := sc.n
	how := map[bool]string{true: "one call", false: "two calls"}[sc.oneCall]
	fmt.Printf("\nscale: %d containers on one network, attach in %s\n", n, how)
	growth("attach", t.add)
	ratio("last 10 / first 10, "+how, median(t.add[n-10:]), median(t.add[:10]), "≤ 1.25")
	if !sc.oneCall {
		connects := make([]time.Duration, len(t.add))
		for i := range t.add {
			connects[i] = t.add[i] - t.create[i]
		}
		row("  sandbox create, 1-10", median(t.create[:10]))
		row(fmt.Sprintf("  sandbox create, %d-%d", n-9, n), median(t.create[n-10:]))
		row("  connect, 1-10", median(connects[:10]))
		row(fmt.Sprintf("  connect, %d-%d", n-9, n), median(connects[n-10:]))
	}
	return nil
}

// growth prints the median of the first and the last ten of ds and the
// medians of each hundred in order.
func growth(name string, ds []time.Duration) {
	n := len(ds)
	row(name+" median, containers 1-10", median(ds[:10]))
	row(fmt.Sprintf("%s median, containers %d-%d", name, n-9, n), median(ds[n-10:]))
	if n < 200 {
		return
	}
	fmt.Printf("  %s median by hundred (ms):", name)
	for i := 0; i+100 <= n; i += 100 {
		fmt.Printf(" %.2f", ms(median(ds[i:i+100])))
	}
	fmt.Println()
}

// row prints a named duration in milliseconds.
func row(name string, d time.Duration) { fmt.Printf("  %-48s %8.2f ms\n", name, ms(d)) }

// ratio prints x/y with the target it is judged by.
func ratio(name string, x, y time.Duration, target string) {
	fmt.Printf("  %-48s %6.3f   (%s)\n", name, float64(x)/float64(y), target)
}

// printSteps prints a sandnet scenario's medians by step.
func printSteps(name string, t *timings) {
	row(name+": sandbox create", median(t.create))
	row(name+": connect (attach - create)", median(t.add)-median(t.create))
	row(name+": disconnect", median(t.disconnect))
	row(name+": sandbox rm (detach - disconnect)", median(t.del)-median(t.disconnect))
	row(name+": CPU per attach + detach", t.cpu)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
