package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/controller"
)

// BenchmarkOverlay measures the overlay on two "hosts" of an underlay
// bridge sharing one Consul, in one run (make bench runs it once,
// -benchtime 1x), and reports ratios against peers measured in the same
// run:
//
//   - throughput: iperf3 TCP, 3 s, from a container on host A to one on B
//     over the overlay, against host A to host B straight over the
//     underlay (overlay/underlay);
//   - propagation: a container attached on A, then the time until a
//     container on B first completes a TCP connect to it, over 100
//     attaches (median, p99);
//   - attach cost: a sandbox created on A with the overlay network against
//     one with a bridge network, alternating, 30 each (ratio of medians).
func BenchmarkOverlay(b *testing.B) {
	hosts := overlayHostsWith(b, 2, "driver \"bridge\" {}\n")
	ha, hb := hosts[0], hosts[1]
	ctx := context.Background()
	if _, err := ha.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "ov", Driver: "overlay", Subnet: "10.70.0.0/16"}); err != nil {
		b.Fatal(err)
	}
	if _, err := ha.c().CreateNetwork(ctx, controller.NetworkCreate{Name: "br", Driver: "bridge", Subnet: "10.71.0.0/16"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { // every host's containers, then the networks
		for _, h := range hosts {
			sbs, _ := h.c().Sandboxes(ctx)
			for _, sb := range sbs {
				_ = h.c().DeleteSandbox(ctx, sb.ContainerID)
			}
		}
		removeAll(b, ha.c())
	})
	cA := attach(b, ha.c(), "ov", "iperf-a")
	cB := attach(b, hb.c(), "ov", "iperf-b")
	serve(b, cB.key, "b")
	reachable(b, cA.key, cB.addr.String(), "b")

	for range b.N {
		overlay := iperf(b, cA.key, cB.key, cB.addr.String())
		underlay := iperf(b, ha.key, hb.key, hb.vtep)
		b.ReportMetric(overlay/1e9, "overlay-Gbit/s")
		b.ReportMetric(underlay/1e9, "underlay-Gbit/s")
		b.ReportMetric(overlay/underlay, "throughput-ratio")

		var prop []time.Duration
		for i := range 100 {
			id := fmt.Sprintf("p%03d", i)
			sb, err := ha.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id, Networks: []controller.SandboxNetwork{{Network: "ov"}}})
			if err != nil {
				b.Fatal(err)
			}
			attached := time.Now()
			var l net.Listener
			in(b, sb.Key, func() (err error) { l, err = net.Listen("tcp", ":7778"); return err })
			addr := sb.Endpoints[0].Address.Addr().String() + ":7778"
			for {
				var c net.Conn
				in(b, cB.key, func() error { c, _ = net.DialTimeout("tcp", addr, 50*time.Millisecond); return nil })
				if c != nil {
					c.Close()
					break
				}
				if time.Since(attached) > 30*time.Second {
					b.Fatalf("%s not reached from host B within 30 s", id)
				}
				time.Sleep(5 * time.Millisecond)
			}
			prop = append(prop, time.Since(attached))
			l.Close()
			if err := ha.c().DeleteSandbox(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		slices.Sort(prop)
		b.ReportMetric(float64(prop[len(prop)/2].Microseconds())/1000, "propagation-median-ms")
		b.ReportMetric(float64(prop[len(prop)*99/100].Microseconds())/1000, "propagation-p99-ms")

		var ov, br []time.Duration
		for i := range 60 {
			nw := []string{"ov", "br"}[i%2]
			id := fmt.Sprintf("a%03d", i)
			start := time.Now()
			if _, err := ha.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id, Networks: []controller.SandboxNetwork{{Network: nw}}}); err != nil {
				b.Fatal(err)
			}
			d := time.Since(start)
			if nw == "ov" {
				ov = append(ov, d)
			} else {
				br = append(br, d)
			}
			if err := ha.c().DeleteSandbox(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
		slices.Sort(ov)
		slices.Sort(br)
		b.ReportMetric(float64(ov[len(ov)/2].Microseconds())/1000, "overlay-attach-ms")
		b.ReportMetric(float64(br[len(br)/2].Microseconds())/1000, "bridge-attach-ms")
		b.ReportMetric(float64(ov[len(ov)/2])/float64(br[len(br)/2]), "attach-ratio")
	}
}

// iperf runs an iperf3 server in the namespace at server and a 3 s TCP
// client in client against addr, and returns the bits per second received.
func iperf(b *testing.B, client, server, addr string) float64 {
	b.Helper()
	srv := exec.Command("nsenter", "--net="+server, "iperf3", "-s", "-B", addr) // until killed: a retried run finds it
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	var out []byte
	var err error
	for range 50 { // until the server listens and a run measures something
		out, err = exec.Command("nsenter", "--net="+client, "iperf3", "-c", addr, "-t", "3", "-J").Output()
		if err == nil {
			var bps float64
			if bps, err = iperfReceived(out); err == nil {
				return bps
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatalf("iperf3 -c %s: %v\n%s", addr, err, out)
	return 0
}

// iperfReceived reads the bits per second received from iperf3's JSON
// report; a report with an error, or of nothing received, is an error.
func iperfReceived(out []byte) (float64, error) {
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		return 0, err
	}
	if res.Error != "" {
		return 0, errors.New(res.Error)
	}
	if res.End.SumReceived.BitsPerSecond <= 0 {
		return 0, errors.New("nothing received")
	}
	return res.End.SumReceived.BitsPerSecond, nil
}
