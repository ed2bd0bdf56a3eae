package sandbox

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// newNS makes a namespace that the test destroys at the end.
func newNS(t *testing.T, name string) *osl.Namespace {
	t.Helper()
	ns, err := osl.NewNamespace(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Destroy() })
	return ns
}

// addVeth joins a new veth pair to sb, as a driver's Join and the
// controller do: host end hostName up in host, the other end created in
// the sandbox and handed to AddInterface.
func addVeth(t *testing.T, sb *Sandbox, host *osl.Namespace, hostName, id, addr string) Endpoint {
	t.Helper()
	peer := "p" + hostName
	if err := sb.Namespace().CreateVethPair(host.Handle(), hostName, peer, 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := host.ConfigureInterface(osl.InterfaceConfig{SrcName: hostName}); err != nil {
		t.Fatal(err)
	}
	ep, err := sb.AddInterface(context.Background(), Endpoint{ID: id, NetworkID: "n", Addr: netip.MustParsePrefix(addr)}, host.Handle(), peer, true, "eth")
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func linkNames(t *testing.T, ns *osl.Namespace) []string {
	t.Helper()
	links, err := ns.Links()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

// TestRemoveInterfaceRetires: removing an interface takes it out of
// service at once; its name is free for the next join right away, and the
// interface itself is deleted soon after.
func TestRemoveInterfaceRetires(t *testing.T) {
	nstest.RequireRoot(t)
	host := newNS(t, "host")
	sb := New("sb1", "c1", Options{}, t.TempDir(), ResolvConf{})
	ns := newNS(t, "sb")
	sb.SetNamespace(ns.Path(), ns)

	first := addVeth(t, sb, host, "h0", "a", "10.1.0.2/24")
	if first.IfName != "eth0" {
		t.Fatalf("first interface named %s, want eth0", first.IfName)
	}
	if err := sb.RemoveInterface("a"); err != nil {
		t.Fatal(err)
	}
	old, err := ns.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatalf("eth0 right after RemoveInterface: %v; want it retired, not yet deleted", err)
	}
	if addrs, _ := ns.Handle().AddrList(old, netlink.FAMILY_V4); len(addrs) != 0 || old.Attrs().OperState == netlink.OperUp {
		t.Fatalf("removed eth0 still in service: addresses %v, state %s", addrs, old.Attrs().OperState)
	}

	// The next interface gets eth0 although the old one still exists.
	second := addVeth(t, sb, host, "h1", "b", "10.1.0.3/24")
	if second.IfName != "eth0" {
		t.Fatalf("second interface named %s, want eth0", second.IfName)
	}
	cur, err := ns.Handle().LinkByName("eth0")
	if err != nil || cur.Attrs().Index == old.Attrs().Index {
		t.Fatalf("eth0 after the second join: %v, %v; want the new interface", cur, err)
	}

	// The old one, and its host end, are deleted within retiredDelay.
	polltest.Until(t, retiredDelay+5*time.Second, "the retired interface and its host end deleted", func() bool {
		names, hostNames := linkNames(t, ns), linkNames(t, host)
		return len(names) == 2 && !strings.Contains(strings.Join(hostNames, " "), "h0")
	})
}

// While AddInterface waits for a link to carry packets, the sandbox
// answers listings (its lock is not held across the wait), and the
// caller's context ends the wait: a request that goes away does not hold
// the sandbox for readyTimeout.
func TestAddInterfaceWaitsOutsideTheLock(t *testing.T) {
	nstest.RequireRoot(t)
	host := newNS(t, "host")
	sb := New("sb1", "c1", Options{}, t.TempDir(), ResolvConf{})
	ns := newNS(t, "sb")
	sb.SetNamespace(ns.Path(), ns)
	// The host end stays down: the sandbox end never gets a carrier.
	if err := ns.CreateVethPair(host.Handle(), "h0", "ph0", 0, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	added := make(chan error, 1)
	go func() {
		_, err := sb.AddInterface(ctx, Endpoint{ID: "a", NetworkID: "n", Addr: netip.MustParsePrefix("10.1.0.2/24")}, host.Handle(), "ph0", true, "eth")
		added <- err
	}()
	// eth0 is configured (up, addressed) once AddInterface waits for it.
	polltest.Until(t, 10*time.Second, "eth0 configured in the sandbox", func() bool {
		l, err := ns.Handle().LinkByName("eth0")
		if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
			return false
		}
		addrs, _ := ns.Handle().AddrList(l, netlink.FAMILY_V4)
		return len(addrs) == 1
	})
	_, _ = sb.Endpoints(), sb.Key()
	_ = sb.WriteFiles()
	select {
	case err := <-added:
		t.Fatalf("AddInterface returned (%v) before the listing did: the listing waited for it", err)
	default:
	}
	cancel()
	if err := <-added; !errors.Is(err, context.Canceled) {
		t.Fatalf("AddInterface after its context ended: %v, want context.Canceled", err)
	}
	if eps := sb.Endpoints(); len(eps) != 0 {
		t.Fatalf("a failed AddInterface left endpoints %v", eps)
	}
	if names := linkNames(t, ns); slices.Contains(names, "eth0") {
		t.Fatalf("a failed AddInterface left eth0: %v", names)
	}
}
