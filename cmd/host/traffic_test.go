package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
)

// TestTrafficStats: what crosses a container's interface shows in
// `sandnet sandbox stats` (bytes and packets each way, as docker stats
// shows NET I/O) and in the endpoint counters of the metrics, and grows
// with more traffic.
func TestTrafficStats(t *testing.T) {
	_, a := metricsAgent(t, "")
	ctx := context.Background()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "tr", Subnet: "10.63.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	web := attach(t, a.Client, "tr", "web")
	cli := attach(t, a.Client, "tr", "cli")
	serve(t, web.key, "web")
	stats := func(container string) controller.EndpointTraffic {
		t.Helper()
		out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "stats", "--format", "json", container)
		var ts []controller.EndpointTraffic
		if err := json.Unmarshal([]byte(out), &ts); code != 0 || err != nil || len(ts) != 1 {
			t.Fatalf("sandbox stats %s: exit %d, %v\n%s", container, code, err, out)
		}
		return ts[0]
	}
	before := stats("web")
	if before.Network != "tr" || before.Interface != "eth0" || before.Container != "web" {
		t.Fatalf("sandbox stats web: %+v, want web's eth0 on tr", before)
	}
	for range 3 {
		if got, err := talk(t, cli.key, "tcp", net.JoinHostPort(web.addr.String(), "7777")); err != nil || !strings.HasPrefix(got, "hello from web") {
			t.Fatalf("cli → web: %q, %v", got, err)
		}
	}
	// Three connections: each at least a SYN, an ACK and a FIN in, and
	// the answer out.
	var after controller.EndpointTraffic
	agenttest.Eventually(t, "web's counters count the three connections", func() bool {
		after = stats("web")
		return after.RxPackets >= before.RxPackets+9 && after.TxPackets >= before.TxPackets+9 &&
			after.RxBytes > before.RxBytes && after.TxBytes >= before.TxBytes+3*uint64(len("hello from web"))
	})
	if c := stats("cli"); c.TxPackets < 9 || c.RxBytes < 3*uint64(len("hello from web")) {
		t.Errorf("cli's counters: %+v, want its three connections out", c)
	}
	out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "stats")
	for _, want := range []string{`(?m)^web +tr +eth0 +\d+(\.\d+)?k?B / \d+(\.\d+)?k?B +\d+ / \d+ +0 / 0 +0 / 0$`, `(?m)^cli +tr +eth0 `} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("sandbox stats: exit %d, want a line matching %s\n%s", code, want, out)
		}
	}
	if out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "stats", "nosuch"); code == 0 || !strings.Contains(out, "nosuch") {
		t.Errorf("sandbox stats nosuch: exit %d\n%s", code, out)
	}
	if status, msg := rawRequest(t, a.Socket, "GET", "/v1/traffic?container=web", nil); status != 400 || !strings.HasPrefix(msg, `"container": /v1/traffic takes no parameters`) {
		t.Errorf("GET /v1/traffic?container=web: %d %s, want 400 saying the route takes no parameters", status, msg)
	}
	text, err := a.Client.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, text)
	labels := []string{"container=web", "network=tr", "interface=eth0"}
	for name, least := range map[string]float64{
		"sandnet_endpoint_receive_packets_total":  float64(after.RxPackets),
		"sandnet_endpoint_transmit_packets_total": float64(after.TxPackets),
		"sandnet_endpoint_receive_bytes_total":    float64(after.RxBytes),
		"sandnet_endpoint_transmit_bytes_total":   float64(after.TxBytes),
	} {
		if got := value(fams, name, labels...); got < least {
			t.Errorf("%s%v = %v, want at least %v", name, labels, got, least)
		}
	}
	if got := value(fams, "sandnet_endpoint_receive_dropped_total", labels...); got != 0 {
		t.Errorf("web dropped %v packets", got)
	}
}

// `sandbox stats -watch` samples until interrupted: each sample a line
// per interface (-format json), the rates since the previous sample
// showing the traffic going on, and SIGINT ends it with exit 0; the table
// form has the rates' column.
func TestTrafficStatsWatch(t *testing.T) {
	_, a := metricsAgent(t, "")
	ctx := context.Background()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "tw", Subnet: "10.64.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	web := attach(t, a.Client, "tw", "web")
	cli := attach(t, a.Client, "tw", "cli")
	serve(t, web.key, "web")
	if out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "stats", "--watch", "1ns", "web"); code == 0 || !strings.Contains(out, "-watch: 1ns is shorter than 100ms, the least interval") {
		t.Errorf("stats --watch 1ns: exit %d\n%s", code, out)
	}
	cmd := exec.Command(bins.Sandnet, "--socket", a.Socket, "sandbox", "stats", "--watch", "100ms", "--format", "json", "web")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var samples []trafficSample
	deadline := time.After(30 * time.Second)
	for len(samples) < 2 || samples[len(samples)-1].RxBytesPerSecond == nil || *samples[len(samples)-1].RxBytesPerSecond == 0 {
		if got, err := talk(t, cli.key, "tcp", net.JoinHostPort(web.addr.String(), "7777")); err != nil || !strings.HasPrefix(got, "hello from web") {
			t.Fatalf("cli → web: %q, %v", got, err)
		}
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stats --watch ended after %d samples", len(samples))
			}
			var s trafficSample
			if err := json.Unmarshal([]byte(line), &s); err != nil || s.Container != "web" || s.Interface != "eth0" || s.Time.IsZero() {
				t.Fatalf("stats --watch printed %q (%v), want web's eth0 with its time", line, err)
			}
			samples = append(samples, s)
		case <-deadline:
			t.Fatalf("no sample with web receiving after 30 s: %+v", samples)
		}
	}
	if samples[0].RxBytesPerSecond != nil {
		t.Errorf("the first sample has a rate: %+v", samples[0])
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stats --watch after SIGINT: %v, want exit 0", err)
	}

	table := exec.Command(bins.Sandnet, "--socket", a.Socket, "sandbox", "stats", "--watch", "100ms")
	var out agenttest.SyncBuffer
	table.Stdout = &out
	if err := table.Start(); err != nil {
		t.Fatal(err)
	}
	header := regexp.MustCompile(`(?m)^CONTAINER +NETWORK +INTERFACE +RX / TX +RX/s / TX/s +PACKETS`)
	agenttest.Eventually(t, "two tables", func() bool { return len(header.FindAllString(out.String(), -1)) >= 2 })
	_ = table.Process.Signal(syscall.SIGINT)
	if err := table.Wait(); err != nil {
		t.Fatalf("stats --watch (table) after SIGINT: %v", err)
	}
	if !regexp.MustCompile(`(?m)^web +tw +eth0 +\S+ / \S+ +- / - +`).MatchString(out.String()) ||
		!regexp.MustCompile(`(?m)^web +tw +eth0 +\S+ / \S+ +\d+(\.\d+)?k?B / \d+(\.\d+)?k?B +`).MatchString(out.String()) {
		t.Errorf("stats --watch: want web's line without rates, then with them\n%s", out.String())
	}
	if out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "stats", "--watch", "-1s"); code == 0 || !strings.Contains(out, "-watch") {
		t.Errorf("stats --watch -1s: exit %d\n%s", code, out)
	}
}

// humanBytes shows sizes as docker stats does: decimal units, about three
// digits.
func TestHumanBytes(t *testing.T) {
	for n, want := range map[uint64]string{
		0: "0B", 999: "999B", 1000: "1.00kB", 1234: "1.23kB", 45_600: "45.6kB", 999_499: "999kB",
		1_234_567: "1.23MB", 12_000_000_000: "12.0GB", 1 << 62: "4.61EB",
	} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
