package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// tunnelDriver is a driver of networks that span hosts, as the overlay
// driver's capabilities say: it refuses a network without an advertise
// address, and records the networks it was given.
type tunnelDriver struct {
	noneDriver
	mu   sync.Mutex
	nets []*pb.Network
	// deleteGate, when set, holds DeleteNetwork (a slow host).
	deleteGate *callGate
}

func (*tunnelDriver) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_GLOBAL, ConnectivityScope: pb.Scope_SCOPE_GLOBAL, NeedsAddresses: true, Peers: true}, nil
}

func (d *tunnelDriver) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	if req.GetNetwork().GetAdvertiseAddr() == "" {
		return errors.New("no advertise address")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nets = append(d.nets, req.GetNetwork())
	return nil
}

// A driver of global connectivity makes global networks by default and
// no local ones, needs a store shared between hosts, and needs the agent's
// advertise address, which reaches the driver with the network; a host
// without one cannot attach to such a network another host made.
func TestTunnelNetworks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	td := &tunnelDriver{}
	tc, stop, err := driver.InProcess(sdk.Info{Name: "tunnel"}, td)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.plugins.drivers["tunnel"] = tc

	refused := func(req NetworkCreate, msg string) {
		t.Helper()
		_, err := e.c.CreateNetwork(ctx, req)
		if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Fatalf("CreateNetwork(%+v) = %v, want invalid, saying %q", req, err, msg)
		}
		if ns, _ := e.c.Networks(ctx); len(ns) != 0 {
			t.Fatalf("networks after a refused create = %d", len(ns))
		}
	}
	refused(NetworkCreate{Name: "ov", Driver: "tunnel"}, "scope: global networks need a store shared between hosts")
	e.plugins.global = true
	refused(NetworkCreate{Name: "ov", Driver: "tunnel"}, "advertise_addr: network ov (driver \"tunnel\") reaches across hosts")
	refused(NetworkCreate{Name: "ov", Driver: "tunnel", Scope: "local"}, "scope: driver \"tunnel\" makes global networks only")

	e.c.Close()
	e.advertise = netip.MustParseAddr("192.0.2.1")
	e.c = e.start()
	n, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "ov", Driver: "tunnel", Subnet: "10.90.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	if n.Scope != "global" {
		t.Fatalf("scope = %q, want global", n.Scope)
	}
	td.mu.Lock()
	got := td.nets[len(td.nets)-1]
	td.mu.Unlock()
	if got.GetAdvertiseAddr() != "192.0.2.1" || got.GetScope() != pb.Scope_SCOPE_GLOBAL {
		t.Fatalf("the driver got %v, want the advertise address 192.0.2.1 with a global network", got)
	}

	// The same store, seen from an agent without an advertise address.
	e.c.Close()
	e.advertise = netip.Addr{}
	e.c = e.start()
	e.sandbox("c1")
	_, err = e.c.Connect(ctx, "ov", Connect{Container: "c1"})
	if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "advertise_addr") {
		t.Fatalf("Connect on an agent without advertise_addr = %v, want invalid, naming advertise_addr", err)
	}
}

func (d *tunnelDriver) DeleteNetwork(_ context.Context, req *pb.DeleteNetworkRequest) error {
	d.mu.Lock()
	g := d.deleteGate
	d.mu.Unlock()
	g.pass()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.nets = slices.DeleteFunc(d.nets, func(n *pb.Network) bool { return n.GetId() == req.GetNetwork().GetId() })
	return nil
}

// holds reports whether the driver has set network id up.
func (d *tunnelDriver) holds(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.ContainsFunc(d.nets, func(n *pb.Network) bool { return n.GetId() == id })
}

// peerDriver is a tunnelDriver that takes peers, as the overlay does:
// it holds the peer set its host sent it.
type peerDriver struct {
	tunnelDriver
	peers map[string]*pb.Peer // by address; guarded by tunnelDriver.mu
	calls int                 // PeerAdd calls that replaced the set
}

func (d *peerDriver) PeerAdd(_ context.Context, req *pb.PeerRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if req.GetReplace() || d.peers == nil {
		d.peers = map[string]*pb.Peer{}
		d.calls++
	}
	for _, p := range req.GetPeers() {
		if p.GetVtep() != req.GetNetwork().GetAdvertiseAddr() {
			d.peers[p.GetAddress()] = p
		}
	}
	return nil
}

func (d *peerDriver) PeerDelete(_ context.Context, req *pb.PeerRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range req.GetPeers() {
		delete(d.peers, p.GetAddress())
	}
	return nil
}

// has reports whether the driver holds a peer at addr behind vtep.
func (d *peerDriver) has(addr netip.Prefix, vtep string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[addr.String()]
	return ok && p.GetVtep() == vtep
}

func (d *peerDriver) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.peers = nil
}

// twoHosts is an env whose controller is host A (advertise address
// 192.0.2.1) and a second controller, host B (192.0.2.2), on the same
// store, each with a peerDriver named "tunnel".
func twoHosts(t *testing.T) (e *env, dA *peerDriver, cB *Controller, dB *peerDriver) {
	t.Helper()
	e = newEnv(t)
	ctx := context.Background()
	add := func(p *testPlugins) *peerDriver {
		d := &peerDriver{}
		dc, stop, err := driver.InProcess(sdk.Info{Name: "tunnel"}, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		p.drivers["tunnel"] = dc
		return d
	}
	e.plugins.global = true
	dA = add(e.plugins)
	e.c.Close()
	e.advertise = netip.MustParseAddr("192.0.2.1")
	e.c = e.start()

	pB := &testPlugins{store: e.store, global: true, drivers: map[string]driver.Driver{}}
	dB = add(pB)
	alloc, err := ipam.New(ipam.Config{Store: pB.Store})
	if err != nil {
		t.Fatal(err)
	}
	dirB := t.TempDir()
	cB, err = New(hclog.NewNullLogger(), Config{HostID: "host-b", AdvertiseAddr: netip.MustParseAddr("192.0.2.2"),
		FilesDir: filepath.Join(dirB, "files"), NetnsDir: filepath.Join(dirB, "netns"), StubGracePeriod: time.Hour,
		IPAM: alloc, HostResolvConf: filepath.Join(dirB, "resolv.conf")}, pB)
	if err != nil {
		t.Fatal(err)
	}
	if err := cB.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, op := range cB.sortedSandboxes(true) {
			_ = cB.deleteSandbox(ctx, op)
		}
		cB.Close()
	})
	return e, dA, cB, dB
}

// Two hosts share a store: each host's driver of a global network is
// told of the other host's endpoints as they come and go (and never of
// its own), their names resolve on the other host, and a restarted
// driver gets the whole set again.
func TestPeersFromTheStore(t *testing.T) {
	ctx := context.Background()
	e, dA, cB, dB := twoHosts(t)

	n, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "ov", Driver: "tunnel", Subnet: "10.90.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	e.sandbox("c1")
	ep1, err := e.c.Connect(ctx, "ov", Connect{Container: "c1", Aliases: []string{"web"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cB.NewSandbox(ctx, SandboxCreate{ContainerID: "c2"}); err != nil {
		t.Fatal(err)
	}
	ep2, err := cB.Connect(ctx, "ov", Connect{Container: "c2"})
	if err != nil {
		t.Fatal(err)
	}
	// B's connect answers with A's endpoint already sent; A hears of B's
	// from the store's watch.
	if !dB.has(ep1.Address, "192.0.2.1") {
		t.Fatalf("host B's driver after its connect holds %v, want c1's %s behind 192.0.2.1", dB.peers, ep1.Address)
	}
	polltest.Until(t, 15*time.Second, "host A's driver told of c2", func() bool { return dA.has(ep2.Address, "192.0.2.2") })
	if dA.has(ep1.Address, "192.0.2.1") || dB.has(ep2.Address, "192.0.2.2") {
		t.Fatal("a driver was told of its own host's endpoint")
	}
	lookup := func(c *Controller, name string) []netip.Addr {
		v4, _, _ := view{x: c.names, nets: func() []string { return []string{n.ID} }}.Lookup(name)
		return v4
	}
	for _, name := range []string{"c1", "web", "c1.ov"} {
		if got := lookup(cB, name); len(got) != 1 || got[0] != ep1.Address.Addr() {
			t.Fatalf("host B resolves %s to %v, want %s", name, got, ep1.Address.Addr())
		}
	}
	polltest.Until(t, 15*time.Second, "host A resolving c2", func() bool { return len(lookup(e.c, "c2")) == 1 })
	if ptr, ok := (view{x: cB.names, nets: func() []string { return []string{n.ID} }}).ReverseLookup(ep1.Address.Addr()); !ok || ptr != "c1.ov." {
		t.Fatalf("host B's PTR for %s = %q, %v", ep1.Address.Addr(), ptr, ok)
	}

	// A restarted driver knows nothing; the replay tells it everything.
	dB.forget()
	if err := cB.Replay(ctx, "tunnel"); err != nil {
		t.Fatal(err)
	}
	if !dB.has(ep1.Address, "192.0.2.1") {
		t.Fatalf("host B's driver after a replay holds %v, want c1's peer", dB.peers)
	}

	// Gone from host A, gone from B's driver and names.
	if err := e.c.Disconnect(ctx, "ov", "c1"); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 15*time.Second, "host B's driver forgetting c1", func() bool { return !dB.has(ep1.Address, "192.0.2.1") })
	polltest.Until(t, 15*time.Second, "host B no longer resolving c1", func() bool { return len(lookup(cB, "c1")) == 0 && len(lookup(cB, "web")) == 0 })
}

// TestGlobalDeleteReachesEveryHost: a global network deleted on one host
// is torn down by the driver of every other host that set it up — the
// host that created it included (its driver kept the network, and an
// overlay its bridge and VXLAN device, whose VNI no later network could
// then have there).
func TestGlobalDeleteReachesEveryHost(t *testing.T) {
	ctx := context.Background()
	e, dA, cB, dB := twoHosts(t)
	for _, tc := range []struct {
		name             string
		creator, deleter *Controller
		other            *peerDriver // the creator's driver
	}{
		{"made on A, deleted on B", e.c, cB, dA},
		{"made on B, deleted on A", cB, e.c, dB},
	} {
		n, err := tc.creator.CreateNetwork(ctx, NetworkCreate{Name: "ov", Driver: "tunnel", Subnet: "10.93.0.0/24"})
		if err != nil {
			t.Fatal(err)
		}
		// The deleting host sets it up too, as a connect there would.
		if _, err := tc.deleter.Network(ctx, "ov"); err != nil {
			t.Fatal(err)
		}
		if !tc.other.holds(n.ID) {
			t.Fatalf("%s: the creating host's driver does not hold the network", tc.name)
		}
		if err := tc.deleter.DeleteNetwork(ctx, "ov"); err != nil {
			t.Fatal(err)
		}
		polltest.Until(t, 15*time.Second, tc.name+": the creating host's driver tearing the network down", func() bool { return !tc.other.holds(n.ID) })
	}
}

// TestGlobalDeletesRacing: two hosts delete one global network at once,
// and the one whose driver is slow loses the race: it answers not found
// (it retried a check that could never pass again, and answered 409),
// and clears no address of the network that took the subnet meanwhile
// (the next container was given the address of the first: its clear
// had deleted it).
func TestGlobalDeletesRacing(t *testing.T) {
	ctx := context.Background()
	e, _, cB, dB := twoHosts(t)
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "rx", Driver: "tunnel", Subnet: "10.94.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cB.Network(ctx, "rx"); err != nil { // B sets it up
		t.Fatal(err)
	}
	g := newCallGate()
	dB.mu.Lock()
	dB.deleteGate = g
	dB.mu.Unlock()
	slow := make(chan error, 1)
	go func() { slow <- cB.DeleteNetwork(ctx, "rx") }()
	<-g.enter // B's delete is in its driver
	if err := e.c.DeleteNetwork(ctx, "rx"); err != nil {
		t.Fatalf("A's delete while B's is in its driver: %v", err)
	}
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "ry", Driver: "tunnel", Subnet: "10.94.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	e.sandbox("y1")
	y1 := e.connect("ry", "y1")
	close(g.open)
	if err := <-slow; !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), "deleted meanwhile") {
		t.Fatalf("B's delete, which lost: %v, want not found (deleted meanwhile)", err)
	}
	if l := e.leaks(); l.allocations != 1 {
		t.Fatalf("%d addresses stored after B's late delete of rx, want y1's on ry (%s)", l.allocations, y1.Address)
	}
	e.sandbox("y2")
	if y2 := e.connect("ry", "y2"); y2.Address == y1.Address {
		t.Fatalf("y2 was given y1's address %s", y1.Address)
	}
}

// TestGlobalNameOfALocalNetwork: a global network cannot take the name
// of another host's local network, which would find the local one there
// (and the global one only by its ID); the reverse is refused already. A
// subnet another host's local network holds is refused naming it and
// its host.
func TestGlobalNameOfALocalNetwork(t *testing.T) {
	ctx := context.Background()
	e, _, cB, _ := twoHosts(t)
	e.network("br", "veth", "10.94.0.0/24")
	_, err := cB.CreateNetwork(ctx, NetworkCreate{Name: "br", Driver: "tunnel", Subnet: "10.95.0.0/24"})
	if !errors.Is(err, sdk.ErrExists) || !strings.Contains(err.Error(), `has a local network named "br"`) {
		t.Fatalf("a global network named as host A's local one = %v, want exists, naming the local one", err)
	}
	if _, err := cB.CreateNetwork(ctx, NetworkCreate{Name: "br2", Driver: "tunnel", Subnet: "10.95.0.0/24"}); err != nil {
		t.Fatalf("a global network of another name: %v", err)
	}
	// A subnet host A's local network holds is named, with whose it is:
	// B lists no such network.
	_, err = cB.CreateNetwork(ctx, NetworkCreate{Name: "ov", Driver: "tunnel", Subnet: "10.94.0.0/24"})
	if want := "overlaps 10.94.0.0/24 of network br, a local network of host " + e.c.cfg.HostID; !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), want) {
		t.Fatalf("a subnet host A's local network holds = %v, want a conflict saying %q", err, want)
	}
}

// Two hosts creating global networks at once never give two the same
// VNI; a VNI asked for is taken if free and refused, naming its holder,
// if not; a deleted network's VNI is free again.
func TestVNIsAcrossHosts(t *testing.T) {
	ctx := context.Background()
	e, _, cB, _ := twoHosts(t)
	var mu sync.Mutex
	got := map[uint32]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	// One creator per host, side by side (the IPAM's pool revision, not
	// the VNIs, is what bounds how many creates may race at once).
	for h, c := range []*Controller{e.c, cB} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := h; i < 12; i += 2 {
				name := fmt.Sprintf("ov%02d", i)
				n, err := c.CreateNetwork(ctx, NetworkCreate{Name: name, Driver: "tunnel", Subnet: fmt.Sprintf("10.91.%d.0/24", i)})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				if other, dup := got[n.VNI]; dup || n.VNI < firstVNI {
					errs <- fmt.Errorf("%s got VNI %d (also %s's)", name, n.VNI, other)
				}
				got[n.VNI] = name
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, err := cB.Network(ctx, "ov00")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.CreateNetwork(ctx, NetworkCreate{Name: "asks", Driver: "tunnel", Subnet: "10.92.0.0/24",
		Options: map[string]string{optVNI: fmt.Sprint(n.VNI)}})
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), short(n.ID)) {
		t.Fatalf("asking for ov00's VNI %d = %v, want a conflict naming %s", n.VNI, err, short(n.ID))
	}
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "bad", Driver: "tunnel", Options: map[string]string{optVNI: "16777216"}}); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("VNI 16777216 = %v, want invalid", err)
	}
	if err := e.c.DeleteNetwork(ctx, "ov00"); err != nil {
		t.Fatal(err)
	}
	asks, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "asks", Driver: "tunnel", Subnet: "10.92.0.0/24",
		Options: map[string]string{optVNI: fmt.Sprint(n.VNI)}})
	if err != nil || asks.VNI != n.VNI {
		t.Fatalf("asking for a deleted network's VNI %d = %+v, %v", n.VNI, asks, err)
	}
}

// An endpoint that takes over the address, and so the MAC, of one
// deleted may reach a host before the deletion does (Consul's watch
// gives a listing's PUTs before its DELETEs: a connect retried after a
// store outage, once the outage's half-written endpoint is rolled back,
// gets its address): the host's driver holds the new endpoint all the
// same, not a hole where the deletion took their shared entries.
func TestPeerTakingOverAnAddress(t *testing.T) {
	ctx := context.Background()
	e, dA, cB, _ := twoHosts(t)
	n, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "ov", Driver: "tunnel", Subnet: "10.91.0.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	e.sandbox("c1")
	e.connect("ov", "c1") // the network set up on host A
	joinB := func(id string) *Endpoint {
		t.Helper()
		if _, err := cB.NewSandbox(ctx, SandboxCreate{ContainerID: id}); err != nil {
			t.Fatal(err)
		}
		ep, err := cB.Connect(ctx, "ov", Connect{Container: id})
		if err != nil {
			t.Fatal(err)
		}
		polltest.Until(t, 15*time.Second, "host A's driver told of "+id, func() bool { return dA.has(ep.Address, "192.0.2.2") })
		return ep
	}
	old := joinB("c2")
	holder := func() string {
		dA.mu.Lock()
		defer dA.mu.Unlock()
		return dA.peers[old.Address.String()].GetEndpointId()
	}

	// The newcomer's record (old's, under another ID) is written, then
	// old's deleted: host A hears of them in that order.
	pair, err := e.store.Get(ctx, endpointKey(n.ID, old.ID))
	if err != nil {
		t.Fatal(err)
	}
	var rec Endpoint
	if err := json.Unmarshal(pair.GetValue(), &rec); err != nil {
		t.Fatal(err)
	}
	rec.ID = newID()
	b, _ := json.Marshal(&rec)
	if _, err := e.store.Put(ctx, endpointKey(n.ID, rec.ID), b); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 15*time.Second, "host A's driver holding the newcomer", func() bool { return holder() == rec.ID })
	if err := e.store.Delete(ctx, endpointKey(n.ID, old.ID)); err != nil {
		t.Fatal(err)
	}
	// Host A handles the store's changes in order: once it knows of a
	// later endpoint, it has handled the deletion.
	joinB("c3")
	if got := holder(); got != rec.ID {
		t.Fatalf("host A's driver holds %q at %s, want the newcomer %s", got, old.Address, rec.ID)
	}
	if err := e.store.Delete(ctx, endpointKey(n.ID, rec.ID)); err != nil {
		t.Fatal(err)
	}
}
