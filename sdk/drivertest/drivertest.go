// Package drivertest is a conformance suite for network driver plugins.
// A driver author runs it against an in-process driver (driver.InProcess)
// and against the built plugin process (plugintest.LaunchDriver):
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, drivertest.Options{
//			New: func(t *testing.T) driver.Driver { return launch(t) },
//		})
//	}
//
// It checks the host's expectations of every driver: capabilities are
// declared, and every call is idempotent — the host replays networks and
// endpoints after a driver restart and retries after its own crash, so
// creating what exists, deleting what is gone, joining twice and leaving
// twice must all succeed — and, given real sandboxes (Options.SandboxKey),
// the interface a Join or Attach hands over exists where the host will
// look for it, can carry traffic once the host brings it up, and is gone
// from the sandbox soon after a Detach.
package drivertest

import (
	"cmp"
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Options configure the suite.
type Options struct {
	// New returns a configured driver, fresh for each subtest.
	New func(t *testing.T) driver.Driver
	// SandboxKey returns the path of a network namespace for Join (and
	// removes it when the test ends). Drivers that give sandboxes no
	// interface may leave it nil; the suite then passes a path that does
	// not exist.
	SandboxKey func(t *testing.T) string
	// Network, when set, returns the network the suite creates (with the
	// options and addresses the driver needs). The default has ID
	// "drivertest-net", one IPv4 pool 10.231.0.0/24 with gateway
	// 10.231.0.1/24, and no options.
	Network func() *pb.Network
}

func (o Options) network() *pb.Network {
	if o.Network != nil {
		return o.Network()
	}
	return DefaultNetwork()
}

// DefaultNetwork returns the network the suite creates when
// Options.Network is nil; an Options.Network that only adds driver
// options starts from it.
func DefaultNetwork() *pb.Network {
	return &pb.Network{
		Id: "drivertest-net", Name: "drivertest",
		Ipv4:  []*pb.IPAMData{{Pool: "10.231.0.0/24", Gateway: "10.231.0.1/24"}},
		Scope: pb.Scope_SCOPE_LOCAL,
	}
}

func (o Options) sandboxKey(t *testing.T) string {
	if o.SandboxKey != nil {
		return o.SandboxKey(t)
	}
	return "/nonexistent/drivertest-sandbox"
}

func endpoint(caps *pb.Capabilities, n *pb.Network) *pb.Endpoint {
	ep := &pb.Endpoint{Id: "drivertest-ep", Name: "drivertest-ep", NetworkId: n.GetId(), Interface: &pb.EndpointInterface{}}
	if caps.GetNeedsAddresses() {
		ep.Interface.Address = "10.231.0.2/24"
	}
	return ep
}

// setup returns a fresh driver with the suite's network created (and
// deleted when the test ends) and the endpoint the suite uses on it.
func (o Options) setup(t *testing.T) (driver.Driver, *pb.Network, *pb.Endpoint) {
	t.Helper()
	ctx := context.Background()
	d := o.New(t)
	caps, err := d.GetCapabilities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := o.network()
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatalf("CreateNetwork: %v", err)
	}
	t.Cleanup(func() {
		if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
			t.Errorf("DeleteNetwork, once the case ended: %v", err)
		}
	})
	return d, n, endpoint(caps, n)
}

// Run runs the suite.
func Run(t *testing.T, o Options) {
	ctx := context.Background()
	t.Run("Capabilities", func(t *testing.T) {
		d := o.New(t)
		caps, err := d.GetCapabilities(ctx)
		if err != nil {
			t.Fatalf("GetCapabilities: %v", err)
		}
		if caps.GetDataScope() == pb.Scope_SCOPE_UNSPECIFIED || caps.GetConnectivityScope() == pb.Scope_SCOPE_UNSPECIFIED {
			t.Fatalf("GetCapabilities = %v: data and connectivity scope must be set", caps)
		}
	})
	t.Run("NetworkIdempotent", func(t *testing.T) {
		d := o.New(t)
		n := o.network()
		for i := range 2 {
			if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
				t.Fatalf("CreateNetwork #%d: %v", i+1, err)
			}
		}
		for i := range 2 {
			if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
				t.Fatalf("DeleteNetwork #%d: %v", i+1, err)
			}
		}
	})
	t.Run("EndpointLifecycleIdempotent", func(t *testing.T) {
		d, n, ep := o.setup(t)
		for i := range 2 {
			if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
				t.Fatalf("CreateEndpoint #%d: %v", i+1, err)
			}
		}
		key := o.sandboxKey(t)
		var first *pb.JoinResponse
		for i := range 2 {
			resp, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key})
			if err != nil {
				t.Fatalf("Join #%d: %v", i+1, err)
			}
			if i == 0 {
				first = resp
			} else if resp.GetSrcName() != first.GetSrcName() {
				t.Fatalf("second Join named interface %q, first %q: a replayed Join must hand over the same interface", resp.GetSrcName(), first.GetSrcName())
			}
		}
		if first.GetSrcName() != "" && first.GetDstPrefix() == "" {
			t.Errorf("Join hands over interface %q but no dst_prefix to name it in the sandbox", first.GetSrcName())
		}
		o.wantInterface(t, "Join", key, first)
		if _, err := d.EndpointOperInfo(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Errorf("EndpointOperInfo: %v", err)
		}
		for i := range 2 {
			if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
				t.Fatalf("Leave #%d: %v", i+1, err)
			}
		}
		for i := range 2 {
			if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
				t.Fatalf("DeleteEndpoint #%d: %v", i+1, err)
			}
		}
	})
	t.Run("AttachDetachIdempotent", func(t *testing.T) {
		d, n, ep := o.setup(t)
		key := o.sandboxKey(t)
		req := &pb.AttachRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: "eth0"}
		var first *pb.AttachResponse
		for i := range 2 {
			resp, err := driver.Attach(ctx, d, req)
			if err != nil {
				t.Fatalf("Attach #%d: %v", i+1, err)
			}
			if i == 0 {
				first = resp
			} else if resp.GetJoin().GetSrcName() != first.GetJoin().GetSrcName() {
				t.Fatalf("second Attach named interface %q, first %q", resp.GetJoin().GetSrcName(), first.GetJoin().GetSrcName())
			}
		}
		o.wantInterface(t, "Attach", key, first.GetJoin())
		handed := o.handOver(t, key, first.GetJoin())
		if handed {
			wantUp(t, key, cmp.Or(first.GetJoin().GetDstPrefix(), "eth")+"0")
			// The replay after the driver's restart: the interface is in
			// the sandbox under the host's name by now.
			if _, err := driver.Attach(ctx, d, req); err != nil {
				t.Fatalf("Attach again once the host had moved the interface into the sandbox and renamed it, as the replay after a driver restart does: %v", err)
			}
		}
		for i := range 2 {
			if err := driver.Detach(ctx, d, &pb.DetachRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
				t.Fatalf("Detach #%d: %v", i+1, err)
			}
		}
		if handed {
			wantGone(t, key)
		}
	})
	t.Run("CollectKeepsWhatIsListed", func(t *testing.T) {
		// After an agent start the host lists what its store holds; a
		// driver that implements Collect removes only the rest.
		d, n, ep := o.setup(t)
		key := o.sandboxKey(t)
		req := &pb.AttachRequest{Network: n, Endpoint: ep, SandboxKey: key}
		first, err := driver.Attach(ctx, d, req)
		if err != nil {
			t.Fatalf("Attach: %v", err)
		}
		if err := driver.Collect(ctx, d, &pb.CollectRequest{Networks: []string{n.GetId()}, Endpoints: []string{ep.GetId()}}); err != nil {
			t.Fatalf("Collect listing the network and the endpoint: %v", err)
		}
		o.wantInterface(t, "Attach, after a Collect listing it,", key, first.GetJoin())
		again, err := driver.Attach(ctx, d, req)
		if err != nil {
			t.Fatalf("Attach after Collect: %v", err)
		}
		if again.GetJoin().GetSrcName() != first.GetJoin().GetSrcName() {
			t.Fatalf("Attach after a Collect listing the endpoint named interface %q, before it %q", again.GetJoin().GetSrcName(), first.GetJoin().GetSrcName())
		}
		if err := driver.Detach(ctx, d, &pb.DetachRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			t.Fatalf("Detach: %v", err)
		}
	})
	t.Run("ExternalConnectivityIdempotent", func(t *testing.T) {
		d, n, ep := o.setup(t)
		if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
			t.Fatalf("CreateEndpoint: %v", err)
		}
		t.Cleanup(func() { _ = d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}) })
		req := &pb.ExternalConnectivityRequest{Network: n, Endpoint: ep}
		for i := range 2 {
			if _, err := d.ProgramExternalConnectivity(ctx, req); err != nil {
				t.Fatalf("ProgramExternalConnectivity #%d: %v", i+1, err)
			}
		}
		for i := range 2 {
			if err := d.RevokeExternalConnectivity(ctx, req); err != nil {
				t.Fatalf("RevokeExternalConnectivity #%d: %v", i+1, err)
			}
		}
	})
}

// wantInterface checks that the interface a Join (or Attach) handed over
// exists where the host will look for it: in the sandbox when the answer
// says in_sandbox, else in the driver's own namespace (where the suite
// runs, and a plugin process it started), from which the host moves it
// into the sandbox. It checks only real sandboxes (Options.SandboxKey
// set), on Linux.
func (o Options) wantInterface(t *testing.T, call, key string, j *pb.JoinResponse) {
	t.Helper()
	name := j.GetSrcName()
	if o.SandboxKey == nil || name == "" || runtime.GOOS != "linux" {
		return
	}
	if j.GetInSandbox() {
		nstest.WithHandle(t, key, func(h *netlink.Handle) error {
			if _, err := h.LinkByName(name); err != nil {
				t.Errorf("%s hands over interface %q in the sandbox, but the sandbox has no such link: %v", call, name, err)
			}
			return nil
		})
		return
	}
	if _, err := netlink.LinkByName(name); err != nil {
		t.Errorf("%s hands over interface %q for the host to move into the sandbox, but the driver's namespace has no such link: %v", call, name, err)
	}
}

// readyWait is how long the host waits for an interface it brought up to
// carry traffic, and how long the suite gives a detached one to go.
const readyWait = 5 * time.Second

// wantUp brings the handed-over interface, named name in the sandbox at
// key, up as the host does, and fails unless it can carry traffic within
// readyWait (operstate up, or unknown with the link running): the host
// gives up on an attach then. A veth pair carries nothing until its other
// end is up: a driver that hands over one end brings the other up.
func wantUp(t *testing.T, key, name string) {
	t.Helper()
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(link); err != nil {
			return err
		}
		var state string
		if !polltest.Wait(readyWait, func() bool {
			if link, err = h.LinkByName(name); err != nil {
				return true
			}
			a := link.Attrs()
			state = a.OperState.String()
			return a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown && a.RawFlags&unix.IFF_RUNNING != 0
		}) {
			t.Errorf("the interface handed over, brought up in the sandbox as the host does, cannot carry traffic %s later (its state is %s): the host gives up on the attach then; bring up the other end of a veth pair (the host brings up only the sandbox's)", readyWait, state)
		}
		return err
	})
}

// wantGone fails unless, within readyWait of a Detach, the sandbox at key
// holds no interface but lo: the driver removes what it handed over (now
// or soon after, as the bridge driver's reaper does). The host takes the
// interface down and renames it, but deletes nothing: a driver that does
// not leaves one more interface in the container at every disconnect.
func wantGone(t *testing.T, key string) {
	t.Helper()
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		var left []string
		var err error
		if !polltest.Wait(readyWait, func() bool {
			var links []netlink.Link
			if links, err = h.LinkList(); err != nil {
				return true
			}
			left = left[:0]
			for _, l := range links {
				if l.Attrs().Name != "lo" {
					left = append(left, l.Attrs().Name+" ("+l.Type()+")")
				}
			}
			return len(left) == 0
		}) {
			t.Errorf("the sandbox still holds %v %s after Detach: a driver removes the interface it handed over", left, readyWait)
		}
		return err
	})
}

// handOver does to the interface a Join (or Attach) handed over what the
// host does: moves it into the sandbox unless it is there (in_sandbox),
// and names it there dst_prefix ("eth" if none) plus 0. It reports
// whether it did, which it does only with real sandboxes
// (Options.SandboxKey set), on Linux.
//
// Equivalent to: `ip link set SRC netns KEY` (unless in_sandbox), then
// inside the sandbox `ip link set SRC down name eth0`.
func (o Options) handOver(t *testing.T, key string, j *pb.JoinResponse) bool {
	t.Helper()
	name := j.GetSrcName()
	if o.SandboxKey == nil || name == "" || runtime.GOOS != "linux" || t.Failed() {
		return false
	}
	if !j.GetInSandbox() {
		link, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatalf("finding %s to move it into the sandbox: %v", name, err)
		}
		f, err := os.Open(key)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := netlink.LinkSetNsFd(link, int(f.Fd())); err != nil {
			t.Fatalf("moving %s into the sandbox as the host does: %v", name, err)
		}
	}
	dst := cmp.Or(j.GetDstPrefix(), "eth") + "0"
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil || name == dst {
			return err
		}
		if err := h.LinkSetDown(link); err != nil {
			return err
		}
		return h.LinkSetName(link, dst)
	})
	return true
}
