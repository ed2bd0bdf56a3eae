package osl

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/vishvananda/netlink"
)

// BenchmarkNamespaceCreateDestroy measures NewNamespace followed by Destroy:
// unshare, bind mount, netlink socket, lo up, unmount. The kernel frees the
// namespace itself later, off this path.
func BenchmarkNamespaceCreateDestroy(b *testing.B) {
	nstest.RequireRoot(b)
	key := filepath.Join(b.TempDir(), "sb")
	for b.Loop() {
		n, err := NewNamespace(key)
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Destroy(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVethInPlace measures creating a veth pair with its peer made
// directly inside the sandbox, the fast path drivers should use.
func BenchmarkVethInPlace(b *testing.B) {
	host, sb := newTestNamespace(b), newTestNamespace(b)
	for b.Loop() {
		if err := sb.CreateVethPair(host.Handle(), "vh0", "vs0", 1500, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := sb.RemoveInterface("vs0"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkVethMoveIn is the peer of BenchmarkVethInPlace: create both ends
// in the host namespace, then move one into the sandbox.
func BenchmarkVethMoveIn(b *testing.B) {
	host, sb := newTestNamespace(b), newTestNamespace(b)
	for b.Loop() {
		if err := host.CreateVethPair(host.Handle(), "vh0", "vs0", 1500, nil); err != nil {
			b.Fatal(err)
		}
		if err := sb.MoveLinkIn(host.Handle(), "vs0"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := sb.RemoveInterface("vs0"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkAttach measures a whole sandbox join as osl sees it: a veth pair
// in place, the host end set up (the driver's part), the sandbox end renamed,
// addressed (IPv4 and IPv6) and up, a default gateway, and waiting until the
// interface is ready — the work CNI's bridge plugin does for one ADD.
func BenchmarkAttach(b *testing.B) {
	host, sb := newTestNamespace(b), newTestNamespace(b)
	cfg := InterfaceConfig{
		SrcName:   "vs0",
		DstName:   "eth0",
		Addresses: []*net.IPNet{mustCIDR(b, "10.99.0.2/24"), mustCIDR(b, "fd00:99::2/64")},
	}
	gw := net.ParseIP("10.99.0.1")
	ctx := context.Background()
	for b.Loop() {
		if err := sb.CreateVethPair(host.Handle(), "vh0", "vs0", 1500, nil); err != nil {
			b.Fatal(err)
		}
		// A fresh Device each time: netlink caches the ifindex in it.
		if err := host.Handle().LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "vh0"}}); err != nil {
			b.Fatal(err)
		}
		if err := sb.ConfigureInterface(cfg); err != nil {
			b.Fatal(err)
		}
		if err := sb.SetDefaultGateway(gw, "eth0"); err != nil {
			b.Fatal(err)
		}
		if err := sb.WaitInterfaceReady(ctx, "eth0"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := sb.RemoveInterface("eth0"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkDo measures one round trip through Do: a fresh goroutine on a
// locked thread, setns in, setns back. Netlink calls through Handle skip it.
func BenchmarkDo(b *testing.B) {
	n := newTestNamespace(b)
	for b.Loop() {
		if err := n.Do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
