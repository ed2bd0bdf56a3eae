package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/plugins/store-consul/consultest"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// underlay makes a bridge in the test's namespace, 10.97.0.254/24 on it
// (where the test's Consul listens), and n "hosts": namespaces whose eth0
// (10.97.0.1, .2, …) is a port of that bridge. It returns their keys;
// everything goes when the test ends.
func underlay(t testing.TB, n int) []string {
	t.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "ovul0"}}
	if err := netlink.LinkAdd(br); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(br) })
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: mustNet("10.97.0.254/24")}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i := 1; i <= n; i++ {
		key := filepath.Join(t.TempDir(), fmt.Sprintf("host%d", i))
		ns, err := osl.NewNamespace(key)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Destroy() })
		here := fmt.Sprintf("ovul%d", i)
		if err := ns.CreateVethPair(nil, here, "eth0tmp", 0, nil); err != nil {
			t.Fatal(err)
		}
		l, err := netlink.LinkByName(here)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(l) })
		if err := netlink.LinkSetMaster(l, br); err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		if err := ns.ConfigureInterface(osl.InterfaceConfig{SrcName: "eth0tmp", DstName: "eth0",
			Addresses: []*net.IPNet{mustNet(fmt.Sprintf("10.97.0.%d/24", i))}}); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	return keys
}

// overlayHost is one agent of the overlay tests, in the namespace of a
// "host" of the underlay.
type overlayHost struct {
	consul *consultest.Agent // the one Consul of every host
	env    *agenttest.Env
	a      *agenttest.Agent
	key    string
	vtep   string
}

func (h *overlayHost) c() *api.Client { return h.a.Client }

// overlayHosts starts one Consul on the underlay and an agent with the
// overlay driver on each of n hosts.
func overlayHosts(t testing.TB, n int) []*overlayHost {
	t.Helper()
	return overlayHostsWith(t, n, "")
}

// overlayHostsWith is overlayHosts with more blocks in every agent's
// config (other drivers).
func overlayHostsWith(t testing.TB, n int, extra string) []*overlayHost {
	t.Helper()
	nstest.RequireRoot(t)
	keys := underlay(t, n)
	consul := consultest.StartOn(t, "127.0.0.1 10.97.0.254")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	var hosts []*overlayHost
	for i, key := range keys {
		h := &overlayHost{consul: consul, key: key, vtep: fmt.Sprintf("10.97.0.%d", i+1)}
		h.env = agenttest.NewEnv(t, bins, fmt.Sprintf("advertise_addr = %q\n"+
			"store \"consul\" {\n  config {\n    address = \"10.97.0.254:%d\"\n    timeout = \"2s\"\n  }\n}\n"+
			"driver \"overlay\" {}\nsandbox {\n  netns_dir = %q\n  stub_grace_period = \"1m\"\n}\n%s",
			h.vtep, consul.Port(), filepath.Join(dir, fmt.Sprint(i), "netns"), extra))
		h.env.Netns = key
		h.a = h.env.Start(t)
		hosts = append(hosts, h)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, h := range hosts {
				t.Logf("agent %d log:\n%s", i, h.a.Log())
			}
		}
	})
	return hosts
}

// overlayLeftovers lists what the overlay left in a host's namespace:
// links other than lo and eth0, permanent neighbour and forwarding
// entries, nft rules.
func overlayLeftovers(t testing.TB, key string) []string {
	t.Helper()
	var out []string
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		for _, l := range nstest.Links(t, h) {
			if name := l.Attrs().Name; name != "lo" && name != "eth0" {
				out = append(out, fmt.Sprintf("link %s (%s)", name, l.Type()))
			}
		}
		for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
			neighs, err := h.NeighList(0, fam)
			if err != nil {
				return err
			}
			for _, nb := range neighs {
				if nb.State&netlink.NUD_PERMANENT != 0 && nb.HardwareAddr != nil && nb.IP != nil {
					out = append(out, fmt.Sprintf("entry %s → %s", nb.IP, nb.HardwareAddr))
				}
			}
		}
		return nil
	})
	rules, err := exec.Command("nsenter", "--net="+key, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, rules)
	}
	if s := strings.TrimSpace(string(rules)); s != "" {
		out = append(out, "nft: "+s)
	}
	return out
}

// requireOverlayGone waits until no overlay link, forwarding or
// neighbour entry or rule is left on any of hosts (overlayLeftovers).
func requireOverlayGone(t testing.TB, hosts ...*overlayHost) {
	t.Helper()
	for i, h := range hosts {
		agenttest.Eventually(t, fmt.Sprintf("nothing left on host %d", i), func() bool {
			return len(overlayLeftovers(t, h.key)) == 0
		})
	}
}

// reachable polls until the container at key gets an answer from who at
// addr:7777 over TCP and over UDP.
func reachable(t testing.TB, key, addr, who string) {
	t.Helper()
	agenttest.Eventually(t, fmt.Sprintf("TCP and UDP from %s to %s (%s)", key, who, addr), func() bool {
		out, err := talk(t, key, "tcp", addr+":7777")
		if err != nil || !strings.HasPrefix(out, "hello from "+who) {
			return false
		}
		out, err = talk(t, key, "udp", addr+":7777")
		return err == nil && out == "hello from "+who
	})
}

// attachWith is attach with a Connect of the caller's (aliases, …).
func attachWith(t testing.TB, c *api.Client, network, id string, req controller.Connect) container {
	t.Helper()
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	req.Container = id
	ep, err := c.Connect(ctx, network, req)
	if err != nil {
		t.Fatal(err)
	}
	return container{id: id, key: sb.Key, addr: ep.Address.Addr()}
}

// hasEntryFor reports whether the host at key has a neighbour entry for
// addr.
func hasEntryFor(t testing.TB, key string, addr string) bool {
	t.Helper()
	return strings.Contains(strings.Join(overlayLeftovers(t, key), "\n"), "entry "+addr+" ")
}

// TestOverlayPeersFromTheStore: two agents on two "hosts" share Consul,
// and nothing but the agents tells the overlay driver about peers.
// Containers on either host reach each other over TCP and UDP; after a
// kill -9 of host B's overlay plugin, B's agent restarts it and replays
// the peers (one attached on A while it was down included); after a kill
// -9 of agent B and a restart, B's containers keep working, it learns of
// what changed on A while it was down (a peer gone, a peer new); once
// everything is deleted, nothing is left on either host.
func TestOverlayPeersFromTheStore(t *testing.T) {
	hosts := overlayHosts(t, 2)
	a, b := hosts[0], hosts[1]
	ctx := context.Background()
	// No VNI given: host A allocates one in the store, and both hosts'
	// drivers take it from the network's record. Made with the CLI as
	// the README's walkthrough does: no --scope, so the driver's (global).
	if out, code := sandnetCmd(t, "network", "create", "--socket", a.a.Socket, "--driver", "overlay", "--subnet", "10.70.0.0/24", "ov"); code != 0 {
		t.Fatalf("sandnet network create --driver overlay: exit %d\n%s", code, out)
	}
	n, err := a.c().Network(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if n.VNI < 4096 || n.Scope != "global" {
		t.Fatalf("network ov has VNI %d and scope %q, want one the host allocated (4096 on) and global", n.VNI, n.Scope)
	}
	c1 := attachWith(t, a.c(), "ov", "c1", controller.Connect{Aliases: []string{"web"}})
	c2 := attach(t, b.c(), "ov", "c2")
	serve(t, c1.key, "c1")
	serve(t, c2.key, "c2")
	reachable(t, c2.key, c1.addr.String(), "c1")
	reachable(t, c1.key, c2.addr.String(), "c2")

	// Names across hosts: B's resolver answers A's container by name,
	// alias and name.network, and PTR for its address; and back.
	for _, name := range []string{"c1", "web", "c1.ov"} {
		agenttest.Eventually(t, "host B's container resolving "+name, func() bool {
			return dig(t, c2.key, "+short", name) == c1.addr.String()
		})
	}
	if got := dig(t, c2.key, "+short", "-x", c1.addr.String()); got != "c1.ov." {
		t.Fatalf("PTR of %s from host B = %q, want c1.ov.", c1.addr, got)
	}
	agenttest.Eventually(t, "host A's container resolving c2", func() bool {
		return dig(t, c1.key, "+short", "c2") == c2.addr.String()
	})

	// kill -9 the overlay plugin on B; a container attached on A
	// meanwhile is reached from B once B's agent restarted it.
	before := plugins(t, b.a)["driver/overlay"]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c3 := attach(t, a.c(), "ov", "c3")
	serve(t, c3.key, "c3")
	agenttest.Eventually(t, "host B's overlay plugin running again", func() bool {
		now := plugins(t, b.a)["driver/overlay"]
		return now.Running && now.PID != before.PID
	})
	reachable(t, c2.key, c3.addr.String(), "c3")
	reachable(t, c2.key, c1.addr.String(), "c1")
	reachable(t, c3.key, c2.addr.String(), "c2")

	// kill -9 agent B; while it is down c3 goes and c4 comes on A.
	if err := b.a.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	b.a.Wait(10 * time.Second)
	reachable(t, c1.key, c2.addr.String(), "c2") // B's containers keep working
	if err := a.c().DeleteSandbox(ctx, "c3"); err != nil {
		t.Fatal(err)
	}
	c4 := attach(t, a.c(), "ov", "c4")
	serve(t, c4.key, "c4")
	b.a = b.env.Start(t)
	if _, err := b.c().CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c2"}); err != nil { // the runtime claims it
		t.Fatal(err)
	}
	reachable(t, c2.key, c4.addr.String(), "c4")
	reachable(t, c4.key, c2.addr.String(), "c2")
	agenttest.Eventually(t, "host B withdrawing c3, which went while its agent was down", func() bool {
		return !hasEntryFor(t, b.key, c3.addr.String())
	})
	if !hasEntryFor(t, b.key, c1.addr.String()) {
		t.Fatalf("host B has no entry for c1: %v", overlayLeftovers(t, b.key))
	}

	// Teardown: B's container, then A's; the network goes on both hosts.
	if err := b.c().DeleteSandbox(ctx, "c2"); err != nil {
		t.Fatal(err)
	}
	agenttest.Eventually(t, "host A withdrawing c2", func() bool { return !hasEntryFor(t, a.key, c2.addr.String()) })
	for _, id := range []string{"c1", "c4"} {
		if err := a.c().DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.c().DeleteNetwork(ctx, "ov"); err != nil {
		t.Fatal(err)
	}
	requireOverlayGone(t, hosts...)
}
