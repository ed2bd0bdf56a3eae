package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// BenchmarkJoinLeave times attaching a sandbox (CreateEndpoint + Join) and
// detaching it (Leave + DeleteEndpoint). Sandbox namespaces are made
// before the timer starts. It reports attach-µs, detach-µs and, of the
// detach, leave-µs per op.
//
//   - live: Leave while the sandbox exists (the pair is deleted in Leave).
//   - sandbox-removed: the host removes the sandbox before Leave, as it can
//     when a container stops (the kernel deletes the pair with the
//     namespace, asynchronously).
//   - plugin: like live, through the built plugin over go-plugin gRPC.
//
// BenchmarkRawVeth is the floor: the same netlink requests, sent directly.
func BenchmarkJoinLeave(b *testing.B) {
	requireRoot(b)
	b.Run("live", func(b *testing.B) { benchJoinLeave(b, newDriverT(b, ""), false) })
	b.Run("sandbox-removed", func(b *testing.B) { benchJoinLeave(b, newDriverT(b, ""), true) })
	bin := plugintest.Build(b, "github.com/sandnet/sandnet/plugins/bridge")
	b.Run("plugin", func(b *testing.B) { benchJoinLeave(b, plugintest.LaunchDriver(b, bin, nil), false) })
}

func benchJoinLeave(b *testing.B, d driver.Driver, removeFirst bool) {
	n := testNet(30, nil)
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		b.Fatal(err)
	}
	defer d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n})
	// Sandboxes that survive Leave are reused round-robin, so the
	// kernel's teardown of removed namespaces does not run under the
	// timer; sandbox-removed needs a fresh one every time.
	keys := newNetnsBatch(b, min(b.N, 8))
	if removeFirst {
		keys = newNetnsBatch(b, b.N)
	}
	var attach, detach, leave time.Duration
	b.ResetTimer()
	for i := range b.N {
		key := keys[i%len(keys)]
		ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id,
			Interface: &pb.EndpointInterface{Address: fmt.Sprintf("10.30.0.%d/24", 2+i%250)}}
		t0 := time.Now()
		if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			b.Fatal(err)
		}
		attach += time.Since(t0)
		if removeFirst {
			b.StopTimer()
			nstest.Remove(key)
			b.StartTimer()
		}
		t1 := time.Now()
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			b.Fatal(err)
		}
		leave += time.Since(t1)
		if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
			b.Fatal(err)
		}
		detach += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs/op")
	b.ReportMetric(float64(detach.Microseconds())/float64(b.N), "detach-µs/op")
	b.ReportMetric(float64(leave.Microseconds())/float64(b.N), "leave-µs/op")
}

// BenchmarkRawVeth is the floor of an attach and a detach: one netlink
// request creating the pair (host end on the bridge, peer in the sandbox)
// and one deleting it, with no driver around them.
func BenchmarkRawVeth(b *testing.B) {
	requireRoot(b)
	d := newDriverT(b, "")
	n := testNet(31, nil)
	createNetwork(b, d, n)
	idx := d.bridgeIndex[n.Id]
	rt, err := newRtnl()
	if err != nil {
		b.Fatal(err)
	}
	keys := newNetnsBatch(b, min(b.N, 8))
	var attach, detach time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		fd, err := unix.Open(keys[i%len(keys)], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		err = rt.addVeth(vethSpec{host: "snbench", peer: "spbench", mtu: 1500, master: idx, peerNS: fd})
		unix.Close(fd)
		if err != nil {
			b.Fatal(err)
		}
		attach += time.Since(t0)
		t1 := time.Now()
		if err := rt.delLink("snbench"); err != nil {
			b.Fatal(err)
		}
		detach += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs/op")
	b.ReportMetric(float64(detach.Microseconds())/float64(b.N), "detach-µs/op")
}

// newNetnsBatch makes n sandbox namespaces up front, so that making them
// (and the kernel's asynchronous cleanup of removed ones) stays out of the
// timed loop as far as possible; they are removed after the benchmark.
func newNetnsBatch(b *testing.B, n int) []string {
	b.Helper()
	dir := b.TempDir()
	keys := make([]string, n)
	for i := range keys {
		keys[i] = filepath.Join(dir, fmt.Sprintf("ns%d", i))
		if err := os.WriteFile(keys[i], nil, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := nstest.BindNew(keys[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() {
		for _, k := range keys {
			nstest.Remove(k)
		}
	})
	// Let the kernel finish the cleanup of namespaces removed before.
	time.Sleep(200 * time.Millisecond)
	return keys
}
