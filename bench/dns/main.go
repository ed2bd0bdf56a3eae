// Command dns measures sandnet's embedded resolver against dnsmasq, in one
// run on one machine: an agent with the bridge driver attaches 100
// containers to one network; dnsperf runs for 10 s inside the first
// container's namespace against the embedded resolver (127.0.0.11), then
// for 10 s against dnsmasq serving the same 100 names from a hosts file in
// the same namespace (127.0.0.12). It prints queries per second, lost
// queries, average and p99 latency, and the ratio. Run it as root under
// `unshare --net --mount --propagation private` (make bench does); it
// refuses to run elsewhere.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bench/internal/benchagent"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
)

func main() {
	names := flag.Int("names", 100, "containers, hence names")
	seconds := flag.Int("l", 10, "dnsperf run length in seconds")
	bin := flag.String("sandnet", "bin/sandnet", "the sandnet binary")
	plugins := flag.String("plugins", "bin/plugins", "sandnet plugin directory")
	flag.Parse()
	if err := run(*names, *seconds, *bin, *plugins); err != nil {
		fmt.Fprintln(os.Stderr, "dns:", err)
		os.Exit(1)
	}
}

func run(names, seconds int, bin, plugins string) error {
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			return fmt.Errorf("refusing to run in a namespace that has %s: run it under unshare --net --mount --propagation private", l.Attrs().Name)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "sandnet-dnsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a, err := benchagent.Start(dir, filepath.Join(dir, "netns"), bin, plugins, "driver \"bridge\" {}\n")
	if err != nil {
		return err
	}
	defer a.Stop()
	c := a.Client
	ctx := context.Background()
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "dns", Subnet: "10.230.0.0/16"}); err != nil {
		return err
	}
	var hosts, queries strings.Builder
	var key string
	for i := range names {
		name := fmt.Sprintf("c%03d", i)
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: name, Options: sandbox.Options{Hostname: name}})
		if err != nil {
			return err
		}
		ep, err := c.Connect(ctx, "dns", controller.Connect{Container: name})
		if err != nil {
			return err
		}
		if i == 0 {
			key = sb.Key
		}
		fmt.Fprintf(&hosts, "%s %s\n", ep.Address.Addr(), name)
		fmt.Fprintf(&queries, "%s A\n", name)
	}
	hostsFile, queryFile := filepath.Join(dir, "hosts"), filepath.Join(dir, "queries")
	if err := os.WriteFile(hostsFile, []byte(hosts.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(queryFile, []byte(queries.String()), 0o644); err != nil {
		return err
	}
	dnsmasq := exec.Command("nsenter", "--net="+key, "dnsmasq", "--no-daemon", "--listen-address=127.0.0.12",
		"--bind-interfaces", "--port=53", "--no-resolv", "--no-hosts", "--addn-hosts="+hostsFile, "--pid-file=", "--log-facility=-", "--quiet-dhcp")
	dnsmasq.Stdout, dnsmasq.Stderr = nil, nil
	if err := dnsmasq.Start(); err != nil {
		return fmt.Errorf("starting dnsmasq: %w", err)
	}
	defer func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() }()
	time.Sleep(500 * time.Millisecond)

	fmt.Printf("dnsperf, %d s each, from inside a sandbox, %d names (A)\n\n", seconds, names)
	ours, err := dnsperf(key, "127.0.0.11", queryFile, seconds)
	if err != nil {
		return fmt.Errorf("dnsperf against sandnet: %w", err)
	}
	theirs, err := dnsperf(key, "127.0.0.12", queryFile, seconds)
	if err != nil {
		return fmt.Errorf("dnsperf against dnsmasq: %w", err)
	}
	fmt.Printf("  %-20s %12s %8s %10s %10s\n", "server", "queries/s", "lost", "avg (ms)", "p99 (ms)")
	for _, r := range []struct {
		name string
		res  *result
	}{{"sandnet", ours}, {"dnsmasq", theirs}} {
		fmt.Printf("  %-20s %12.0f %8d %10.3f %10.3f\n", r.name, r.res.qps, r.res.lost, r.res.avg*1e3, r.res.p99*1e3)
	}
	fmt.Printf("\n  sandnet / dnsmasq queries per second: %.3f (target ≥ 1, with no lost queries)\n", ours.qps/theirs.qps)
	return nil
}

type result struct {
	qps      float64
	lost     int
	avg, p99 float64
}

// dnsperf runs dnsperf inside the namespace at key against server and
// reads its summary and, from -v, every query's latency.
func dnsperf(key, server, queries string, seconds int) (*result, error) {
	cmd := exec.Command("nsenter", "--net="+key, "dnsperf", "-s", server, "-d", queries, "-l", strconv.Itoa(seconds), "-v", "-b", "4096")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	res := &result{}
	var lat []float64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "> ") && len(f) == 5:
			if v, err := strconv.ParseFloat(f[4], 64); err == nil {
				lat = append(lat, v)
			}
		case strings.HasPrefix(strings.TrimSpace(line), "Queries per second:"):
			res.qps, _ = strconv.ParseFloat(f[len(f)-1], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Queries lost:"):
			res.lost, _ = strconv.Atoi(f[2])
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, err
	}
	if len(lat) == 0 || res.qps == 0 {
		return nil, fmt.Errorf("no answers from %s", server)
	}
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	slices.Sort(lat)
	res.avg, res.p99 = sum/float64(len(lat)), lat[len(lat)*99/100]
	return res, nil
}
