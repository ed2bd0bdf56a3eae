package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// TestMain runs the tests in a throwaway network namespace when root; it
// plays the host, whose "physical" link is one end of a veth pair.
func TestMain(m *testing.M) { nstest.Main(m) }

const (
	parentLink = "mvp0" // the host's end, the macvlans' parent
	outsideIP  = "10.231.9.254"
	subnet     = "10.231.9.0/24"
)

// segment makes the parent's segment: a veth pair whose host end is
// parentLink (up, no address) and whose other end is eth0 of a new
// "outside" namespace with outsideIP. It returns the outside namespace's
// key.
func segment(t *testing.T) string {
	t.Helper()
	outside := nstest.NewNetns(t)
	ns, err := netns.GetFromPath(outside)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: parentLink, Flags: net.FlagUp}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(veth) })
	nstest.WithHandle(t, outside, func(h *netlink.Handle) error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		return addrUp(h, eth0, outsideIP+"/24")
	})
	return outside
}

// outsideVLAN adds eth0.ID with 10.231.ID.254/24 to the outside namespace,
// or skips the test when the kernel has no 802.1q support.
func outsideVLAN(t *testing.T, outside string, id int) {
	t.Helper()
	nstest.WithHandle(t, outside, func(h *netlink.Handle) error {
		eth0, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("eth0.%d", id), ParentIndex: eth0.Attrs().Index}, VlanId: id}
		if err := h.LinkAdd(v); errors.Is(err, unix.EOPNOTSUPP) {
			t.Skipf("needs 802.1q VLAN support in the kernel (CONFIG_VLAN_8021Q), which this one lacks: %v", err)
		} else if err != nil {
			return err
		}
		return addrUp(h, v, fmt.Sprintf("10.231.%d.254/24", id))
	})
}

// addrUp adds addr to l and brings it up, as the host does with a
// sandbox's interface. Equivalent to: `ip addr add ADDR dev L; ip link set L up`.
func addrUp(h *netlink.Handle, l netlink.Link, addr string) error {
	a, err := netlink.ParseAddr(addr)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(l, a); err != nil {
		return err
	}
	return h.LinkSetUp(l)
}

func network(id, parent, cidr, gw string) *pb.Network {
	return &pb.Network{Id: id, Name: id, Options: map[string]string{"parent": parent},
		Ipv4: []*pb.IPAMData{{Pool: cidr, Gateway: gw}}, Scope: pb.Scope_SCOPE_LOCAL}
}

// attach attaches a new sandbox to n with addr and configures its end the
// way the host would; it returns the sandbox's key.
func attach(t *testing.T, d driver.Driver, n *pb.Network, id, addr string) string {
	t.Helper()
	key := nstest.NewNetns(t)
	ep := &pb.Endpoint{Id: id, Name: id, NetworkId: n.GetId(), Interface: &pb.EndpointInterface{Address: addr}}
	resp, err := driver.Attach(context.Background(), d, &pb.AttachRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: "eth0"})
	if err != nil {
		t.Fatalf("Attach %s: %v", id, err)
	}
	join := resp.GetJoin()
	if !join.GetInSandbox() || join.GetSrcName() != "eth0" {
		t.Fatalf("Attach %s = %v: want eth0 made inside the sandbox", id, join)
	}
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		l, err := h.LinkByName(join.GetSrcName())
		if err != nil {
			return err
		}
		if _, ok := l.(*netlink.Macvlan); !ok {
			return fmt.Errorf("%s is a %s, not a macvlan", l.Attrs().Name, l.Type())
		}
		return addrUp(h, l, addr)
	})
	t.Cleanup(func() {
		_ = driver.Detach(context.Background(), d, &pb.DetachRequest{Network: n, Endpoint: ep, SandboxKey: key})
	})
	return key
}

// echoServer answers one line on addr:7000 inside the namespace at key.
func echoServer(t *testing.T, key, addr string) {
	t.Helper()
	var l net.Listener
	if err := nstest.Do(key, func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(addr, "7000"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
}

// wantReach fails unless a TCP connection from the namespace at key to
// addr:7000 carries a message there and back.
func wantReach(t *testing.T, key, addr string) {
	t.Helper()
	err := nstest.Do(key, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, "7000"), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != "ping\n" {
			return fmt.Errorf("echo = %q", buf)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("from sandbox %s to %s: %v", filepath.Base(filepath.Dir(key)), addr, err)
	}
}

func inProcess(t *testing.T, config string) driver.Driver {
	t.Helper()
	c, stop, err := driver.InProcess(Info("test"), New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := c.Configure(context.Background(), []byte(config)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTwoSandboxesAndOutside: two sandboxes on a macvlan network reach
// each other and an address on the parent's segment, through the built
// plugin, directly on the parent and on a VLAN sub-interface the driver
// creates for the network and deletes with it.
func TestTwoSandboxesAndOutside(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	outside := segment(t)
	d := plugintest.LaunchDriver(t, plugintest.Build(t, "."), []byte(`{"parent":null}`))
	for _, tc := range []struct {
		parent, cidr, prefix string
		vlan                 int
	}{
		{parentLink, subnet, "10.231.9.", 0},
		{parentLink + ".42", "10.231.42.0/24", "10.231.42.", 42},
	} {
		t.Run(tc.parent, func(t *testing.T) {
			if tc.vlan != 0 {
				outsideVLAN(t, outside, tc.vlan)
			}
			n := network("net-"+tc.parent, tc.parent, tc.cidr, tc.prefix+"254/24")
			if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
				t.Fatal(err)
			}
			s1 := attach(t, d, n, "ep1", tc.prefix+"2/24")
			s2 := attach(t, d, n, "ep2", tc.prefix+"3/24")
			echoServer(t, s2, tc.prefix+"3")
			echoServer(t, outside, tc.prefix+"254")
			wantReach(t, s1, tc.prefix+"3")
			wantReach(t, s1, tc.prefix+"254")
			wantReach(t, s2, tc.prefix+"254")
			for _, key := range []string{s1, s2} {
				_ = driver.Detach(ctx, d, &pb.DetachRequest{Network: n, Endpoint: &pb.Endpoint{Id: map[string]string{s1: "ep1", s2: "ep2"}[key]}, SandboxKey: key})
				if links := nstest.Links(t, handleAt(t, key)); len(links) != 1 {
					t.Errorf("after Detach the sandbox holds %d links, want only lo", len(links))
				}
			}
			if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
				t.Fatal(err)
			}
			_, err := netlink.LinkByName(tc.parent)
			if strings.Contains(tc.parent, ".") && err == nil {
				t.Errorf("DeleteNetwork left the sub-interface %s it created", tc.parent)
			}
			if !strings.Contains(tc.parent, ".") && err != nil {
				t.Errorf("DeleteNetwork removed the host's parent %s: %v", tc.parent, err)
			}
		})
	}
}

func handleAt(t *testing.T, key string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// TestForeignVLANKept: a sub-interface that existed before the network is
// used and left in place when the network goes.
func TestForeignVLANKept(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	segment(t)
	base, err := netlink.LinkByName(parentLink)
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: parentLink + ".43", ParentIndex: base.Attrs().Index}, VlanId: 43}
	if err := netlink.LinkAdd(v); errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("needs 802.1q VLAN support in the kernel (CONFIG_VLAN_8021Q), which this one lacks: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(v) })
	d := inProcess(t, `{"parent":null}`)
	n := network("n43", parentLink+".43", "10.231.43.0/24", "10.231.43.1/24")
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(parentLink + ".43"); err != nil {
		t.Fatalf("DeleteNetwork removed a sub-interface it did not create: %v", err)
	}
}

// TestCollect: after an agent start the host names the networks its store
// holds; a sub-interface the driver made (its alias says so) for another
// is deleted, the listed network's and a link the driver did not make are
// kept. Bridges stand for the VLAN sub-interfaces, which Collect
// tells by their alias alone (and which some kernels cannot make).
func TestCollect(t *testing.T) {
	nstest.RequireRoot(t)
	segment(t)
	links := map[string]string{"mvl-kept": vlanAlias + "n45", "mvl-gone": vlanAlias + "n46", "mvl-other": ""}
	for name, alias := range links {
		l := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
		if err := netlink.LinkAdd(l); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = netlink.LinkDel(l) })
		if alias != "" {
			if err := netlink.LinkSetAlias(l, alias); err != nil {
				t.Fatal(err)
			}
		}
	}
	d := inProcess(t, `{"parent":null}`)
	if err := driver.Collect(context.Background(), d, &pb.CollectRequest{Networks: []string{"n45"}}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"mvl-kept": true, "mvl-gone": false, "mvl-other": true} {
		if _, err := netlink.LinkByName(name); (err == nil) != want {
			t.Errorf("%s after Collect: %v; want it there: %v", name, err, want)
		}
	}
}

// TestBadNetworks: options the driver cannot use are refused with
// sdk.ErrInvalid, and nothing is created.
func TestBadNetworks(t *testing.T) {
	nstest.RequireRoot(t)
	segment(t)
	d := inProcess(t, `{"parent":null}`)
	before := len(nstest.Links(t, nil))
	for _, opts := range []map[string]string{
		{},
		{"parent": "nosuchlink"},
		{"parent": parentLink + ".0"},
		{"parent": parentLink + ".4095"},
		{"parent": parentLink, "macvlan_mode": "vepa"},
		{"parent": parentLink, "mtu": "9000"},
	} {
		n := &pb.Network{Id: "bad", Name: "bad", Options: opts}
		if err := d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{Network: n}); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("CreateNetwork with options %v: %v, want ErrInvalid", opts, err)
		}
	}
	if after := len(nstest.Links(t, nil)); after != before {
		t.Errorf("refused networks left %d links behind", after-before)
	}
}

// TestVLANUnsupported: on a kernel without 802.1q, a network on a
// sub-interface is refused with sdk.ErrNotSupported naming the reason.
func TestVLANUnsupported(t *testing.T) {
	nstest.RequireRoot(t)
	segment(t)
	d := inProcess(t, `{"parent":null}`)
	n := network("n44", parentLink+".44", "10.231.44.0/24", "10.231.44.1/24")
	err := d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{Network: n})
	if err == nil {
		_ = d.DeleteNetwork(context.Background(), &pb.DeleteNetworkRequest{Network: n})
		t.Skip("this kernel supports 802.1q VLANs")
	}
	if !errors.Is(err, sdk.ErrNotSupported) || !strings.Contains(err.Error(), "802.1q") {
		t.Fatalf("CreateNetwork on a kernel without 802.1q: %v, want ErrNotSupported naming 802.1q", err)
	}
}

// TestConformance runs the SDK's driver suite in process and against the
// built plugin, with the config block's default parent.
func TestConformance(t *testing.T) {
	nstest.RequireRoot(t)
	segment(t)
	opts := func(newDriver func(t *testing.T) driver.Driver) drivertest.Options {
		return drivertest.Options{New: newDriver, SandboxKey: func(t *testing.T) string { return nstest.NewNetns(t) }}
	}
	cfg := fmt.Sprintf(`{"parent":%q}`, parentLink)
	t.Run("in process", func(t *testing.T) {
		drivertest.Run(t, opts(func(t *testing.T) driver.Driver { return inProcess(t, cfg) }))
	})
	t.Run("plugin process", func(t *testing.T) {
		bin := plugintest.Build(t, ".")
		drivertest.Run(t, opts(func(t *testing.T) driver.Driver { return plugintest.LaunchDriver(t, bin, []byte(cfg)) }))
	})
}

// TestPluginCheck runs `sandnet plugin check` on the built plugin, as CI
// does for an out-of-tree plugin.
func TestPluginCheck(t *testing.T) {
	nstest.RequireRoot(t)
	sandnet := plugintest.Sandnet(t)
	out, err := exec.Command(sandnet, "plugin", "check", "-o", "parent=sncheck0", plugintest.Build(t, ".")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `driver plugin "macvlan"`) || !strings.Contains(string(out), "6 passed, 0 failed, 0 skipped: ok") {
		t.Fatalf("plugin check: %v\n%s", err, out)
	}
}

// TestReadmeExamples decodes the README's HCL blocks against the plugin's
// schema as the host would, and configures the driver with each.
func TestReadmeExamples(t *testing.T) {
	for _, cfg := range plugintest.ReadmeConfigs(t, "README.md", "driver", "macvlan", plugintest.SchemaOf(t, Config{})) {
		if err := New().Configure(context.Background(), cfg); err != nil {
			t.Errorf("README config %s: %v", cfg, err)
		}
	}
}
