package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// bridgeAgent starts an agent with the bolt store and the bridge driver;
// the test process's own (throwaway) namespace plays the host.
func bridgeAgent(t *testing.T) *agenttest.Agent {
	t.Helper()
	_, a := bridgeEnv(t)
	return a
}

// bridgeEnv is bridgeAgent with its env, for a test that rewrites the
// config or starts the agent again.
func bridgeEnv(t *testing.T) (*agenttest.Env, *agenttest.Agent) {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
	a := e.Start(t)
	// Networks outlive the agent (bridges, addresses, routes): a test
	// that ran before in this namespace (-count) must not leave its
	// routes in the way of the next one's, which reuses the subnets.
	t.Cleanup(func() { removeAll(t, a.Client) })
	return e, a
}

// removeAll deletes every sandbox, stubs included, and every network of
// the agent.
func removeAll(t testing.TB, c *api.Client) {
	ctx := context.Background()
	sbs, err := c.AllSandboxes(ctx)
	if err != nil {
		t.Errorf("listing sandboxes: %v", err)
		return
	}
	for _, sb := range sbs {
		if err := c.DeleteSandbox(ctx, sb.ContainerID); err != nil {
			t.Errorf("deleting sandbox of %s: %v", sb.ContainerID, err)
		}
	}
	ns, err := c.Networks(ctx)
	if err != nil {
		t.Errorf("listing networks: %v", err)
		return
	}
	for _, n := range ns {
		if err := c.DeleteNetwork(ctx, n.Name); err != nil {
			t.Errorf("deleting network %s: %v", n.Name, err)
		}
	}
}

type container struct {
	id   string
	key  string
	addr netip.Addr
}

func attach(t testing.TB, c *api.Client, network, id string, publish ...string) container {
	t.Helper()
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := c.Connect(ctx, network, controller.Connect{Container: id, Publish: publish})
	if err != nil {
		t.Fatal(err)
	}
	return container{id: id, key: sb.Key, addr: ep.Address.Addr()}
}

// in runs fn inside the namespace at key.
func in(t testing.TB, key string, fn func() error) {
	t.Helper()
	ns, err := osl.OpenNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// serve listens on TCP and UDP port 7777 inside key (all addresses) and
// answers every connection or datagram with "hello from <who>"; it stops
// when the test ends.
func serve(t testing.TB, key, who string) {
	t.Helper()
	var l net.Listener
	var pc net.PacketConn
	in(t, key, func() (err error) {
		if l, err = net.Listen("tcp", ":7777"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", ":7777")
		return err
	})
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); pc.Close(); wg.Wait() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from %s via %s", who, c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte("hello from "+who), from)
		}
	}()
}

// talk sends one TCP and one UDP exchange from inside key (the host's own
// namespace when key is "") to addr and returns the TCP answer, or the
// error.
func talk(t testing.TB, key string, proto, addr string) (string, error) {
	t.Helper()
	var out string
	var callErr error
	do := func() error {
		c, err := net.DialTimeout(proto, addr, 2*time.Second)
		if err != nil {
			callErr = err
			return nil
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("hi")); err != nil {
				callErr = err
				return nil
			}
		}
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		out, callErr = string(buf[:n]), err
		return nil
	}
	if key == "" {
		_ = do()
	} else {
		in(t, key, do)
	}
	return out, callErr
}

func TestBridgeTraffic(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "front", Subnet: "10.40.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "back", Subnet: "10.41.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	// web is created with its network in one request, the others with a
	// create and a connect.
	sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "web", Networks: []controller.SandboxNetwork{
		{Network: "front", Connect: controller.Connect{Publish: []string{"8080:7777/tcp", "8081:7777/udp", "8090-8091:7776-7777", "8100-8109:7777"}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	web := container{id: "web", key: sb.Key, addr: sb.Endpoints[0].Address.Addr()}
	cli := attach(t, c, "front", "cli")
	other := attach(t, c, "back", "other")
	// The sandbox's view names the host's end of each interface, which
	// the record does not keep: the end the create's answer named.
	if host := sb.Endpoints[0].HostIfName; !strings.HasPrefix(host, "sn") {
		t.Fatalf("the create's answer names host end %q", host)
	} else if got, err := c.Sandbox(ctx, "web"); err != nil || len(got.Endpoints) != 1 || got.Endpoints[0].HostIfName != host {
		t.Fatalf("the sandbox's view: %+v, %v; want host end %s", got, err, host)
	}
	serve(t, web.key, "web")
	serve(t, other.key, "other")

	for _, proto := range []string{"tcp", "udp"} {
		got, err := talk(t, cli.key, proto, net.JoinHostPort(web.addr.String(), "7777"))
		if err != nil || !strings.HasPrefix(got, "hello from web") {
			t.Fatalf("%s cli → web on one network: %q, %v", proto, got, err)
		}
		if got, err := talk(t, cli.key, proto, net.JoinHostPort(other.addr.String(), "7777")); err == nil && got != "" {
			t.Fatalf("%s cli reached a container on another network: %q", proto, got)
		}
		// Published ports from the host and from its loopback.
		hostPort := map[string]string{"tcp": "8080", "udp": "8081"}[proto]
		if got, err := talk(t, "", proto, "127.0.0.1:"+hostPort); err != nil || !strings.HasPrefix(got, "hello from web") {
			t.Fatalf("%s published port from the host's loopback: %q, %v", proto, got, err)
		}
	}
	// A range publishes each port: 8091 is the range's second, 7777.
	if got, err := talk(t, "", "tcp", "127.0.0.1:8091"); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Fatalf("the second port of a published range: %q, %v", got, err)
	}
	// A host range onto one port publishes it on a free port of the
	// range, which the answer names.
	var picked uint16
	for _, p := range sb.Endpoints[0].Ports {
		if p.HostPort >= 8100 && p.HostPort <= 8109 && p.ContainerPort == 7777 && p.HostPortEnd == 0 {
			picked = p.HostPort
		}
	}
	if picked == 0 {
		t.Fatalf("published ports %+v: none picked from 8100-8109 for 7777", sb.Endpoints[0].Ports)
	}
	if got, err := talk(t, "", "tcp", fmt.Sprintf("127.0.0.1:%d", picked)); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Fatalf("the port picked from a host range: %q, %v", got, err)
	}
	// Hairpin: another container reaches the published port on the gateway.
	if got, err := talk(t, cli.key, "tcp", "10.40.0.1:8080"); err != nil || !strings.HasPrefix(got, "hello from web") {
		t.Fatalf("hairpin from cli to the published port: %q, %v", got, err)
	}

	// Tear everything down: nothing may remain.
	for _, ct := range []struct {
		net string
		container
	}{{"front", web}, {"front", cli}, {"back", other}} {
		if err := c.Disconnect(ctx, ct.net, ct.id); err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteSandbox(ctx, ct.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"front", "back"} {
		if err := c.DeleteNetwork(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := talk(t, "", "tcp", "127.0.0.1:8080"); err == nil {
		t.Fatalf("published port still answers after teardown: %q", got)
	}
	waitNoLeaks(t, "10.40.0.")
	if out, _ := exec.Command("nft", "list", "ruleset").CombinedOutput(); strings.Contains(string(out), "10.40.0.") || strings.Contains(string(out), ":8080") || strings.Contains(string(out), "8091") {
		t.Fatalf("nft rules of the deleted network remain:\n%s", out)
	}
	if out, _ := exec.Command("conntrack", "-L", "-s", "10.40.0.0/24").CombinedOutput(); strings.Contains(string(out), "src=10.40.0.") {
		t.Fatalf("conntrack entries of the deleted network remain:\n%s", out)
	}
}

// waitNoLeaks polls until no link of sandnet's bridge driver (snbr-…, sn…
// veth ends) and no address starting with prefix is left in the host's
// namespace: a detach may return before the kernel has finished tearing
// veth pairs down, but it must finish.
func waitNoLeaks(t *testing.T, prefix string) {
	t.Helper()
	polltest.UntilEmpty(t, 10*time.Second, "nothing left behind after teardown", func() string {
		var left []string
		for _, l := range nstest.Links(t, nil) {
			name := l.Attrs().Name
			addrs, _ := netlink.AddrList(l, netlink.FAMILY_ALL)
			for _, a := range addrs {
				if strings.HasPrefix(a.IP.String(), prefix) {
					left = append(left, name+" "+a.IP.String())
				}
			}
			if strings.HasPrefix(name, "sn") && l.Type() == "veth" {
				left = append(left, name)
			}
		}
		return strings.Join(left, ", ")
	})
}

// TestBridgeSmallMTU: an IPv4 network with an MTU below IPv6's minimum
// (1280) attaches, by one request and by two: the kernel gives such links
// no IPv6, and the bridge port and the sandbox end, set up asking for no
// IPv6 link-local address, must do without (every attach failed with
// "address family not supported by protocol"). Its containers talk over
// TCP with that MTU.
func TestBridgeSmallMTU(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "small", Subnet: "10.44.0.0/24",
		Options: map[string]string{"com.sandnet.bridge.mtu": "576"}}); err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "server", Networks: []controller.SandboxNetwork{{Network: "small"}}})
	if err != nil {
		t.Fatalf("one-request attach: %v", err)
	}
	serve(t, sb.Key, "server")
	client := attach(t, c, "small", "client")
	addr := net.JoinHostPort(sb.Endpoints[0].Address.Addr().String(), "7777")
	if got, err := talk(t, client.key, "tcp", addr); err != nil || !strings.HasPrefix(got, "hello from server") {
		t.Fatalf("client → server on MTU 576: %q, %v", got, err)
	}
	in(t, client.key, func() error {
		l, err := netlink.LinkByName("eth0")
		if err == nil && l.Attrs().MTU != 576 {
			err = fmt.Errorf("eth0 has MTU %d, want 576", l.Attrs().MTU)
		}
		return err
	})
}

func TestBridgeNATAndInternal(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	outside := outsideHost(t)
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "out", Subnet: "10.42.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "sealed", Subnet: "10.43.0.0/24", Internal: true}); err != nil {
		t.Fatal(err)
	}
	open := attach(t, c, "out", "open")
	sealed := attach(t, c, "sealed", "sealed")
	serve(t, outside, "outside")
	got, err := talk(t, open.key, "tcp", "203.0.113.2:7777")
	if err != nil || got != "hello from outside via 203.0.113.1" {
		t.Fatalf("container → outside through NAT: %q, %v; want the host's address as source", got, err)
	}
	if got, err := talk(t, sealed.key, "tcp", "203.0.113.2:7777"); err == nil {
		t.Fatalf("a container on an internal network reached the outside: %q", got)
	}
	// A port published on the internal network would reach nothing: it
	// is refused, naming the field, and the refused create leaves no
	// sandbox behind.
	_, err = c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "pub",
		Networks: []controller.SandboxNetwork{{Network: "sealed", Connect: controller.Connect{Publish: []string{"8080:80"}}}}})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "publish: network sealed is internal") {
		t.Fatalf("create publishing on an internal network: %v, want a 400 naming publish", err)
	}
	if _, err := c.Sandbox(ctx, "pub"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the refused create left its sandbox: %v", err)
	}
	_, err = c.Connect(ctx, "sealed", controller.Connect{Container: "open", Publish: []string{"8080:80"}})
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "publish: network sealed is internal") {
		t.Fatalf("connect publishing on an internal network: %v, want a 400 naming publish", err)
	}
}

// outsideHost makes a namespace standing for the world outside the host:
// linked to the host's (the test's) namespace by a veth, 203.0.113.1 on
// the host side and 203.0.113.2 outside (documentation addresses, only
// inside namespaces the test made). It returns its key.
func outsideHost(t *testing.T) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "outside")
	ns, err := osl.NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Destroy() })
	if err := ns.CreateVethPair(nil, "out0", "world0", 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName("out0"); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	host, err := netlink.LinkByName("out0")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(host, &netlink.Addr{IPNet: mustNet("203.0.113.1/24")}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		t.Fatal(err)
	}
	if err := ns.ConfigureInterface(osl.InterfaceConfig{SrcName: "world0", DstName: "eth0", Addresses: []*net.IPNet{mustNet("203.0.113.2/24")}}); err != nil {
		t.Fatal(err)
	}
	return key
}

func mustNet(s string) *net.IPNet {
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	n.IP = ip
	return n
}

// TestBridgeChurn: 500 connect/disconnect cycles from 8 goroutines on one
// network. No address is ever held by two endpoints at once, and nothing
// is left afterwards.
func TestBridgeChurn(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	c := a.Client
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "churn", Subnet: "10.44.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	inUse := map[netip.Addr]string{}
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("churn%d", g)
			if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
				errs <- err
				return
			}
			for range 500 / 8 {
				ep, err := c.Connect(ctx, "churn", controller.Connect{Container: id})
				if err != nil {
					errs <- err
					return
				}
				a := ep.Address.Addr()
				mu.Lock()
				if other, dup := inUse[a]; dup {
					mu.Unlock()
					errs <- fmt.Errorf("%s got %s, which %s holds", id, a, other)
					return
				}
				inUse[a] = id
				mu.Unlock()
				// While connected, the sandbox shows the address.
				sb, err := c.Sandbox(ctx, id)
				if err != nil || len(sb.Endpoints) != 1 || sb.Endpoints[0].Address.Addr() != a {
					errs <- fmt.Errorf("%s connected with %s: inspect = %+v, %v", id, a, sb, err)
					return
				}
				// Forgotten before the disconnect can free the address.
				mu.Lock()
				delete(inUse, a)
				mu.Unlock()
				if err := c.Disconnect(ctx, "churn", id); err != nil {
					errs <- err
					return
				}
			}
			errs <- c.DeleteSandbox(ctx, id)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteNetwork(ctx, "churn"); err != nil {
		t.Fatal(err)
	}
	waitNoLeaks(t, "10.44.0.")
}
