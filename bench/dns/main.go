// Command dns measures sandnet's embedded resolver against dnsmasq, in one
// run on one machine. An agent with the bridge driver attaches 100
// containers to one network; dnsperf runs inside the first container's
// namespace, 10 s per server:
//
//  1. container names: the embedded resolver (127.0.0.11) against dnsmasq
//     serving the same 100 names from a hosts file in the same namespace
//     (127.0.0.12);
//  2. external names: 100 names an upstream dnsmasq serves on the
//     network's gateway (in the agent's namespace, TTL 600), asked of the
//     embedded resolver with its forwarding cache (the container's own
//     --dns is the gateway) against dnsmasq forwarding to the same upstream
//     with a cache of the same size (127.0.0.13);
//  3. the same external names, the agent restarted with cache_size = 0.
//
// It prints queries per second, lost queries, average and p99 latency,
// and the ratios. With -plain N it runs only the container names, N rounds
// of dnsperf with its default options but the run length (-l), the two
// servers alternating (dnsmasq first in odd rounds), as a user would run
// it; dnsperf then gives no per-query latencies, so it prints the
// average. Run it as root under `unshare --net --mount
// --propagation private` (make bench does); it refuses to run elsewhere.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/bench/internal/benchagent"
	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
)

func main() {
	names := flag.Int("names", 100, "containers, hence names")
	seconds := flag.Int("l", 10, "dnsperf run length in seconds")
	bin := flag.String("sandnet", "bin/sandnet", "the sandnet binary")
	plugins := flag.String("plugins", "bin/plugins", "sandnet plugin directory")
	plain := flag.Int("plain", 0, "rounds of plain dnsperf (default options) on container names only; 0: the full comparison")
	flag.Parse()
	if err := run(*names, *seconds, *plain, *bin, *plugins); err != nil {
		fmt.Fprintln(os.Stderr, "dns:", err)
		os.Exit(1)
	}
}

func run(names, seconds, plain int, bin, plugins string) error {
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
	keys := filepath.Join(dir, "netns")
	a, err := benchagent.Start(dir, keys, bin, plugins, "driver \"bridge\" {}\n")
	if err != nil {
		return err
	}
	defer func() { a.Stop() }()
	c := a.Client
	ctx := context.Background()
	net, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "dns", Subnet: "10.230.0.0/16"})
	if err != nil {
		return err
	}
	var gw netip.Addr
	if len(net.IPv4) > 0 {
		gw = net.IPv4[0].Gateway
	}
	if !gw.IsValid() {
		return fmt.Errorf("network dns has no gateway")
	}
	var hosts, queries, extHosts, extQueries strings.Builder
	var key string
	for i := range names {
		name := fmt.Sprintf("c%03d", i)
		opts := sandbox.Options{Hostname: name}
		if i == 0 {
			opts.DNS = []netip.Addr{gw}
		}
		sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: name, Options: opts})
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
		fmt.Fprintf(&extHosts, "192.0.2.%d ext%03d.example\n", i%250+1, i)
		fmt.Fprintf(&extQueries, "ext%03d.example A\n", i)
	}
	files := map[string]string{"hosts": hosts.String(), "queries": queries.String(),
		"ext-hosts": extHosts.String(), "ext-queries": extQueries.String()}
	for f, content := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644); err != nil {
			return err
		}
	}
	queryFile, extQueryFile := filepath.Join(dir, "queries"), filepath.Join(dir, "ext-queries")
	// The hosts dnsmasq beside the embedded resolver; the upstream in the
	// agent's namespace on the gateway; the forwarding dnsmasq beside the
	// embedded resolver, with a cache the size of the agent's.
	if plain > 0 {
		stop, err := startDnsmasq([]string{"nsenter", "--net=" + key, "dnsmasq", "--listen-address=127.0.0.12", "--no-resolv", "--no-hosts", "--addn-hosts=" + filepath.Join(dir, "hosts")})
		if err != nil {
			return err
		}
		defer stop()
		time.Sleep(500 * time.Millisecond)
		return plainRounds(key, queryFile, names, seconds, plain)
	}
	for _, args := range [][]string{
		{"nsenter", "--net=" + key, "dnsmasq", "--listen-address=127.0.0.12", "--no-resolv", "--no-hosts", "--addn-hosts=" + filepath.Join(dir, "hosts")},
		{"dnsmasq", "--listen-address=" + gw.String(), "--no-resolv", "--no-hosts", "--addn-hosts=" + filepath.Join(dir, "ext-hosts"), "--local-ttl=600"},
		{"nsenter", "--net=" + key, "dnsmasq", "--listen-address=127.0.0.13", "--no-resolv", "--no-hosts", "--server=" + gw.String(),
			"--cache-size=" + strconv.Itoa(config.DefaultCacheSize)},
	} {
		stop, err := startDnsmasq(args)
		if err != nil {
			return err
		}
		defer stop()
	}
	time.Sleep(500 * time.Millisecond)

	fmt.Printf("dnsperf, %d s each, from inside a sandbox, %d names (A)\n\n", seconds, names)
	var rows []row
	measure := func(name, server, queries string) (*result, error) {
		res, err := dnsperf(key, server, queries, seconds)
		if err != nil {
			return nil, fmt.Errorf("dnsperf against %s: %w", name, err)
		}
		rows = append(rows, row{name, res})
		return res, nil
	}
	ours, err := measure("sandnet", "127.0.0.11", queryFile)
	if err != nil {
		return err
	}
	theirs, err := measure("dnsmasq", "127.0.0.12", queryFile)
	if err != nil {
		return err
	}
	cached, err := measure("sandnet cache, ext", "127.0.0.11", extQueryFile)
	if err != nil {
		return err
	}
	fwd, err := measure("dnsmasq fwd, ext", "127.0.0.13", extQueryFile)
	if err != nil {
		return err
	}

	// The same agent state, the cache off.
	a.Stop()
	if a, err = benchagent.Start(dir, keys, bin, plugins, "driver \"bridge\" {}\nresolver {\n  cache_size = 0\n}\n"); err != nil {
		return err
	}
	if err := waitResolver(key); err != nil {
		return err
	}
	uncached, err := measure("sandnet no cache, ext", "127.0.0.11", extQueryFile)
	if err != nil {
		return err
	}

	fmt.Printf("  %-22s %12s %8s %10s %10s\n", "server", "queries/s", "lost", "avg (ms)", "p99 (ms)")
	for _, r := range rows {
		fmt.Printf("  %-22s %12.0f %8d %10.3f %10.3f\n", r.name, r.res.qps, r.res.lost, r.res.avg*1e3, r.res.p99*1e3)
	}
	fmt.Printf("\n  container names, sandnet / dnsmasq queries per second: %.3f, p99 %.3f (targets ≥ 1.3 and ≤ 1, no lost queries)\n",
		ours.qps/theirs.qps, ours.p99/theirs.p99)
	fmt.Printf("  external names, sandnet cache / dnsmasq forwarding: %.3f (target ≥ 1)\n", cached.qps/fwd.qps)
	fmt.Printf("  external names, sandnet cache / sandnet without: %.3f\n", cached.qps/uncached.qps)
	return nil
}

type row struct {
	name string
	res  *result
}

// startDnsmasq runs dnsmasq in the foreground on port 53 with args (the
// command, possibly behind nsenter, and its own flags) and returns what
// stops it.
func startDnsmasq(args []string) (func(), error) {
	args = append(args, "--no-daemon", "--bind-interfaces", "--port=53", "--pid-file=", "--log-facility=-", "--quiet-dhcp")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // as the agent's
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting dnsmasq: %w", err)
	}
	return func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }, nil
}

// waitResolver waits until the embedded resolver inside key answers a
// container name (after an agent restart).
func waitResolver(key string) error {
	var out []byte
	var err error
	for range 100 {
		out, err = exec.Command("nsenter", "--net="+key, "dig", "@127.0.0.11", "+short", "+time=1", "+tries=1", "c000").Output()
		if err == nil && len(strings.TrimSpace(string(out))) > 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the embedded resolver did not answer after the restart: %v %s", err, out)
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

// plainRounds runs `dnsperf -s SERVER -d QUERIES -l SECONDS` inside key,
// rounds times per server, alternating, and prints each round's ratio.
func plainRounds(key, queries string, names, seconds, rounds int) error {
	fmt.Printf("plain dnsperf (-l %d, other options default), from inside a sandbox, %d names (A)\n\n", seconds, names)
	fmt.Printf("  %-6s %-10s %12s %8s %10s\n", "round", "server", "queries/s", "lost", "avg (ms)")
	var ratios []float64
	for round := range rounds {
		res := map[string]*result{}
		order := []string{"dnsmasq", "sandnet"}
		if round%2 == 1 {
			order = []string{"sandnet", "dnsmasq"}
		}
		for _, name := range order {
			server := map[string]string{"sandnet": "127.0.0.11", "dnsmasq": "127.0.0.12"}[name]
			r, err := dnsperfPlain(key, server, queries, seconds)
			if err != nil {
				return fmt.Errorf("dnsperf against %s: %w", name, err)
			}
			res[name] = r
			fmt.Printf("  %-6d %-10s %12.0f %8d %10.3f\n", round+1, name, r.qps, r.lost, r.avg*1e3)
		}
		ratio := res["sandnet"].qps / res["dnsmasq"].qps
		ratios = append(ratios, ratio)
		fmt.Printf("  %-6d sandnet / dnsmasq: %.3f q/s, average latency %.3f\n", round+1, ratio, res["sandnet"].avg/res["dnsmasq"].avg)
	}
	slices.Sort(ratios)
	fmt.Printf("\n  container names, sandnet / dnsmasq queries per second over %d rounds: %.2f–%.2f (target ≥ 1.3, no lost queries)\n",
		rounds, ratios[0], ratios[len(ratios)-1])
	return nil
}

// dnsperfPlain runs dnsperf with its default options but the run length
// and reads its summary.
func dnsperfPlain(key, server, queries string, seconds int) (*result, error) {
	out, err := exec.Command("nsenter", "--net="+key, "dnsperf", "-s", server, "-d", queries, "-l", strconv.Itoa(seconds)).Output()
	if err != nil {
		return nil, err
	}
	res := &result{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "Queries per second:"):
			res.qps, _ = strconv.ParseFloat(f[len(f)-1], 64)
		case strings.HasPrefix(strings.TrimSpace(line), "Queries lost:"):
			res.lost, _ = strconv.Atoi(f[2])
		case strings.HasPrefix(strings.TrimSpace(line), "Average Latency (s):"):
			res.avg, _ = strconv.ParseFloat(f[3], 64)
		}
	}
	if res.qps == 0 {
		return nil, fmt.Errorf("no answers from %s:\n%s", server, out)
	}
	return res, nil
}
