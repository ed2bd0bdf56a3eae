package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// env is one controller over an in-process bolt store (through the gRPC
// adapters, as over the wire) and in-process drivers: "veth" makes a real
// veth pair with its peer inside the sandbox, "none" gives no interface.
type env struct {
	t       testing.TB
	dir     string
	store   *faultyStore
	veth    *vethDriver
	plugins *testPlugins
	c       *Controller
	spares  int // namespaces made ahead of time by controllers started from now on
	// advertise is the advertise address of controllers started from now on.
	advertise netip.Addr
}

func newEnv(t testing.TB) *env {
	t.Helper()
	nstest.RequireRoot(t)
	dir := t.TempDir()
	bolt := boltstore.New()
	cfg := fmt.Sprintf(`{"path":%q,"timeout":null,"no_sync":true}`, filepath.Join(dir, "store.db"))
	if err := bolt.Configure(context.Background(), []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close(context.Background()) })
	sc, stop, err := store.InProcess(boltstore.Info("test"), bolt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e := &env{t: t, dir: dir, store: &faultyStore{Store: sc}, veth: &vethDriver{}}
	vc, stop, err := driver.InProcess(sdk.Info{Name: "veth"}, e.veth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	nc, stop, err := driver.InProcess(sdk.Info{Name: "none"}, noneDriver{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	hc, stop, err := driver.InProcess(sdk.Info{Name: "host"}, noneDriver{host: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.plugins = &testPlugins{store: e.store, drivers: map[string]driver.Driver{"veth": vc, "none": nc, "host": hc}}
	e.c = e.start()
	t.Cleanup(func() { e.cleanup() })
	return e
}

// start makes a controller over the env's store and directories, as an
// agent (re)start does.
func (e *env) start() *Controller {
	e.t.Helper()
	alloc, err := ipam.New(ipam.Config{Store: e.plugins.Store})
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := New(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}), Config{
		DataDir: filepath.Join(e.dir, "data"), FilesDir: filepath.Join(e.dir, "files"), NetnsDir: filepath.Join(e.dir, "netns"),
		StubGracePeriod: time.Hour, IPAM: alloc, HostResolvConf: filepath.Join(e.dir, "resolv.conf"),
		SpareNamespaces: e.spares, AdvertiseAddr: e.advertise,
	}, e.plugins)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return c
}

// cleanup deletes every sandbox and network so nothing outlives the test.
func (e *env) cleanup() {
	ctx := context.Background()
	for _, op := range e.c.sortedSandboxes(true) {
		_ = e.c.deleteSandbox(ctx, op)
	}
	ns, _ := e.c.Networks(ctx)
	for _, n := range ns {
		_ = e.c.DeleteNetwork(ctx, n.ID)
	}
	e.c.Close()
	// The host namespace of host-mode sandboxes stays mounted by design.
	_ = unmountDefault(filepath.Join(e.dir, "netns", "default"))
	// Pairs made ahead of time go with their spare namespaces, which the
	// kernel tears down in the background: wait, so that the next test
	// does not count them.
	polltest.Until(e.t, 15*time.Second, "the prepared pairs gone with their namespaces", func() bool {
		links := nstest.Links(e.t, nil)
		return !slices.ContainsFunc(links, func(l netlink.Link) bool {
			e.veth.mu.Lock()
			defer e.veth.mu.Unlock()
			_, ok := e.veth.prepared[l.Attrs().Name]
			return ok
		})
	})
}

func (e *env) network(name, driver, subnet string) *Network {
	e.t.Helper()
	n, err := e.c.CreateNetwork(context.Background(), NetworkCreate{Name: name, Driver: driver, Subnet: subnet})
	if err != nil {
		e.t.Fatalf("creating network %s: %v", name, err)
	}
	return n
}

func (e *env) sandbox(container string, o ...func(*SandboxCreate)) *Sandbox {
	e.t.Helper()
	req := SandboxCreate{ContainerID: container}
	for _, f := range o {
		f(&req)
	}
	sb, err := e.c.NewSandbox(context.Background(), req)
	if err != nil {
		e.t.Fatalf("creating sandbox of %s: %v", container, err)
	}
	return sb
}

func (e *env) connect(network, container string) *Endpoint {
	e.t.Helper()
	ep, err := e.c.Connect(context.Background(), network, Connect{Container: container})
	if err != nil {
		e.t.Fatalf("connecting %s to %s: %v", container, network, err)
	}
	return ep
}

// addresses lists the global addresses inside the namespace at key.
// connected makes network name (driver veth) on subnet and a sandbox of
// container connected to it, and returns the sandbox with the addresses
// in its namespace.
func (e *env) connected(name, subnet, container string) (*Sandbox, map[string][]string) {
	e.t.Helper()
	e.network(name, "veth", subnet)
	sb := e.sandbox(container)
	e.connect(name, container)
	return sb, addresses(e.t, sb.Key)
}

func addresses(t testing.TB, key string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	nstest.WithHandle(t, key, func(h *netlink.Handle) error {
		for _, l := range nstest.Links(t, h) {
			if l.Attrs().Name == "lo" {
				continue
			}
			var as []string
			for _, a := range nstest.Addrs(t, h, l) {
				if a.IP.IsGlobalUnicast() {
					as = append(as, a.IPNet.String())
				}
			}
			out[l.Attrs().Name] = as
		}
		return nil
	})
	return out
}

// leaks counts what the tests must leave nothing of: namespace mounts
// under the env's netns dir (the host-mode default and spare namespaces
// made ahead of time excluded), veth links
// in the test's host namespace, and stored address allocations.
type leaks struct{ mounts, links, allocations int }

func (e *env) leaks() leaks {
	e.t.Helper()
	var l leaks
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		e.t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, filepath.Join(e.dir, "netns")+"/") && !strings.Contains(line, "/netns/default ") &&
			!strings.Contains(line, "/.creating/"+sparePrefix) {
			l.mounts++
		}
	}
	for _, ln := range nstest.Links(e.t, nil) {
		// Pairs made for spare namespaces ahead of time are not leaks.
		if strings.HasPrefix(ln.Attrs().Name, "vh") && !e.veth.preparedUnjoined(ln) {
			l.links++
		}
	}
	pairs, err := e.store.List(context.Background(), "sandnet/v1/ipam/addrs/")
	if err != nil {
		e.t.Fatal(err)
	}
	l.allocations = len(pairs)
	return l
}

// testPlugins serves in-process plugins to the controller.
type testPlugins struct {
	store   store.Store
	drivers map[string]driver.Driver
	global  bool // the store says it is shared between hosts
}

func (p *testPlugins) Store() (store.Store, error) { return p.store, nil }
func (p *testPlugins) StoreGlobal() bool           { return p.global }
func (p *testPlugins) Drivers() []string {
	return slices.Sorted(maps.Keys(p.drivers))
}
func (p *testPlugins) Driver(name string) (driver.Driver, error) {
	d, ok := p.drivers[name]
	if !ok {
		return nil, fmt.Errorf("driver %q: %w", name, sdk.ErrNotFound)
	}
	return d, nil
}

// faultyStore fails the Txn that writes a key containing failOn.
type faultyStore struct {
	store.Store
	mu     sync.Mutex
	failOn string
	// downUntil: until then, listings fail as a store not up yet does.
	downUntil time.Time
	loseOn    string // writes to matching keys are applied, their answer lost
	hangOn    string // transactions on matching keys wait out hangFor, then fail as unanswered
	hangs     int    // how many of those waited hangFor in full
	// holdOn: transactions on matching keys say so on held, then wait
	// until release is closed, and run (see hold).
	holdOn        string
	held, release chan struct{}
}

// hold makes the next transactions touching a key containing substr
// wait until the returned function is called, each first sending on the
// returned channel; then they run as usual.
func (f *faultyStore) hold(substr string) (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdOn, f.held, f.release = substr, make(chan struct{}, 8), make(chan struct{})
	release := f.release
	return f.held, func() {
		f.mu.Lock()
		f.holdOn = ""
		f.mu.Unlock()
		close(release)
	}
}

// hangFor is how long a transaction hang makes wait: a store's timeout.
const hangFor = 300 * time.Millisecond

// hang makes every transaction touching a key containing substr wait
// hangFor (less if its context ends first) and then fail with
// sdk.ErrUnavailable, as a store that stopped answering does past its
// timeout ("" stops it); it returns how many waited in full since the
// last call.
func (f *faultyStore) hang(substr string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hangOn = substr
	n := f.hangs
	f.hangs = 0
	return n
}

// lose makes the compare-and-swap writes to keys containing substr land
// in the store while their callers are told the call was canceled, as
// when the client goes away mid-call, and plain puts to them land while
// their callers are told the store did not answer in time, as when it
// applies the write once it resumes ("" stops it).
func (f *faultyStore) lose(substr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loseOn = substr
}

// List is the store's, but fails as unavailable before downUntil.
func (f *faultyStore) List(ctx context.Context, prefix string) ([]*pb.KVPair, error) {
	f.mu.Lock()
	down := time.Now().Before(f.downUntil)
	f.mu.Unlock()
	if down {
		return nil, fmt.Errorf("list %q: dial tcp 127.0.0.1:8500: connection refused: %w", prefix, sdk.ErrUnavailable)
	}
	return f.Store.List(ctx, prefix)
}

// Put is the store's, but see lose.
func (f *faultyStore) Put(ctx context.Context, key string, value []byte) (*pb.KVPair, error) {
	f.mu.Lock()
	loseOn := f.loseOn
	f.mu.Unlock()
	kv, err := f.Store.Put(ctx, key, value)
	if err == nil && loseOn != "" && strings.Contains(key, loseOn) {
		return nil, fmt.Errorf("store did not answer within %s: %w", hangFor, sdk.ErrUnavailable)
	}
	return kv, err
}

func (f *faultyStore) fail(substr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOn = substr
}

func (f *faultyStore) Txn(ctx context.Context, ops []*pb.TxnOp) ([]*pb.KVPair, error) {
	f.mu.Lock()
	failOn, loseOn, hangOn := f.failOn, f.loseOn, f.hangOn
	holdOn, held, release := f.holdOn, f.held, f.release
	f.mu.Unlock()
	if holdOn != "" && slices.ContainsFunc(ops, func(op *pb.TxnOp) bool { return strings.Contains(op.GetKey(), holdOn) }) {
		held <- struct{}{}
		<-release
	}
	lost := false
	for _, op := range ops {
		if hangOn != "" && strings.Contains(op.GetKey(), hangOn) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(hangFor):
			}
			f.mu.Lock()
			f.hangs++
			f.mu.Unlock()
			return nil, fmt.Errorf("store did not answer within %s: %w", hangFor, sdk.ErrUnavailable)
		}
		if failOn != "" && strings.Contains(op.GetKey(), failOn) && op.GetVerb() == pb.TxnOp_CAS {
			return nil, errors.New("injected store failure")
		}
		lost = lost || loseOn != "" && strings.Contains(op.GetKey(), loseOn) && op.GetVerb() == pb.TxnOp_CAS
	}
	res, err := f.Store.Txn(ctx, ops)
	if lost && err == nil {
		return nil, fmt.Errorf("answer lost: %w", context.Canceled)
	}
	return res, err
}

// callGate holds the veth driver's calls that come to it until it is
// opened; enter says that one has come (buffered: the calls after the
// first need no reader).
type callGate struct{ open, enter chan struct{} }

func newCallGate() *callGate {
	return &callGate{open: make(chan struct{}), enter: make(chan struct{}, 8)}
}

// pass is a call's wait at the gate; a nil gate lets it through.
func (g *callGate) pass() {
	if g != nil {
		g.enter <- struct{}{}
		<-g.open
	}
}

// setGate sets the veth driver's gate *at (&e.veth.joinGate or
// &e.veth.leaveGate) to g; nil lifts it for the calls from now on.
func (e *env) setGate(at **callGate, g *callGate) {
	e.veth.mu.Lock()
	*at = g
	e.veth.mu.Unlock()
}

// cutShort runs call and cancels its context once the call has come to
// the veth driver's gate at, then lifts the gate; it returns call's
// error. As an HTTP client's timeout does, mid-call to the driver.
func (e *env) cutShort(at **callGate, call func(context.Context) error) error {
	g := newCallGate()
	e.setGate(at, g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	<-g.enter
	cancel()
	e.setGate(at, nil)
	close(g.open)
	return <-done
}

// vethDriver makes a veth pair per joined endpoint, the peer created in
// the sandbox's namespace, the host end up in the test's namespace.
type vethDriver struct {
	mu        sync.Mutex
	collected []*pb.CollectRequest // every Collect the driver got
	leaveGate *callGate            // when set, Leave waits at it
	joinGate  *callGate            // when set, Join waits at it before it makes its pair
	failJoin  bool                 // when set, Join makes its pair and then fails
	// rejoinGate, when set, holds a Join of a pair that exists (a
	// replay's); failRejoin fails it.
	rejoinGate *callGate
	failRejoin bool
	// prepared maps the host end of each pair Prepare made to its
	// sandbox end; joined holds those a join took.
	prepared map[string]preparedEnd
	joined   map[string]bool
	// prepareUp: Prepare brings the host end up (and says so), as the
	// bridge driver does.
	prepareUp bool
	// nets are the networks set up (CreateNetwork) and not deleted;
	// failCreate makes CreateNetwork set its network up and then fail,
	// as a call the request's end cut short does.
	nets       map[string]bool
	failCreate bool
	// published: how many ports each endpoint publishes, by ID, as
	// ProgramExternalConnectivity and RevokeExternalConnectivity left it.
	published map[string]int
}

// Prepare makes an endpoint's pair ahead of its join: the sandbox end
// named as asked and down, the host end down or, with prepareUp, up.
func (d *vethDriver) Collect(_ context.Context, req *pb.CollectRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.collected = append(d.collected, req)
	return nil
}

func (d *vethDriver) Prepare(_ context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	host, _ := names(req.GetEndpointId())
	ns, err := netns.GetFromPath(req.GetSandboxKey())
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: req.GetIfname(), PeerNamespace: netlink.NsFd(ns)}
	// Known as prepared before it exists, so that leaks never counts a
	// pair this call is still making.
	d.mu.Lock()
	if d.prepared == nil {
		d.prepared, d.joined = map[string]preparedEnd{}, map[string]bool{}
	}
	d.prepared[host] = preparedEnd{name: req.GetIfname()}
	d.mu.Unlock()
	if err := netlink.LinkAdd(veth); err != nil {
		d.mu.Lock()
		delete(d.prepared, host)
		d.mu.Unlock()
		return nil, err
	}
	index, err := netlink.VethPeerIndex(veth)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.prepareUp {
		if err := netlink.LinkSetUp(veth); err != nil {
			return nil, err
		}
	}
	d.prepared[host] = preparedEnd{name: req.GetIfname(), index: index}
	return &pb.PrepareResponse{SrcName: req.GetIfname(), Up: d.prepareUp}, nil
}

// preparedEnd is the sandbox end of a pair Prepare made.
type preparedEnd struct {
	name  string
	index int // its ifindex in the sandbox's namespace
}

// preparedJoin says whether a join took the pair prepared for endpoint
// epID, and the ifindex its sandbox end was given.
func (d *vethDriver) preparedJoin(epID string) (index int, ok bool) {
	host, _ := names(epID)
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prepared[host].index, d.joined[host]
}

// preparedUnjoined says whether link is the host end of a pair Prepare
// made that no join has taken yet.
func (d *vethDriver) preparedUnjoined(link netlink.Link) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.prepared[link.Attrs().Name]
	return ok && !d.joined[link.Attrs().Name]
}

func (*vethDriver) Configure(context.Context, []byte) error { return nil }
func (*vethDriver) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, NeedsAddresses: true}, nil
}
func (d *vethDriver) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nets == nil {
		d.nets = map[string]bool{}
	}
	d.nets[req.GetNetwork().GetId()] = true
	if d.failCreate {
		return fmt.Errorf("set up, then cut short: %w", sdk.ErrUnavailable)
	}
	return nil
}

func (d *vethDriver) DeleteNetwork(_ context.Context, req *pb.DeleteNetworkRequest) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.nets, req.GetNetwork().GetId())
	return nil
}
func (*vethDriver) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}

// DeleteEndpoint removes whatever is left of the endpoint: its pair, if a
// Leave did not take it.
func (*vethDriver) DeleteEndpoint(_ context.Context, req *pb.EndpointRequest) error {
	host, _ := names(req.GetEndpoint().GetId())
	if l, err := netlink.LinkByName(host); err == nil {
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return err
		}
	}
	return nil
}

func names(epID string) (host, peer string) { return "vh" + epID[:10], "vp" + epID[:10] }

func (d *vethDriver) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	host, peer := names(req.GetEndpoint().GetId())
	gw := ""
	if ps := req.GetNetwork().GetIpv4(); len(ps) > 0 && !req.GetNetwork().GetInternal() {
		p, _ := netip.ParsePrefix(ps[0].GetGateway())
		gw = p.Addr().String()
	}
	resp := &pb.JoinResponse{SrcName: peer, InSandbox: true, DstPrefix: "eth", Gateway: gw}
	d.mu.Lock()
	end, prepared := d.prepared[host]
	d.mu.Unlock()
	if l, err := netlink.LinkByName(host); err == nil {
		if !prepared { // a replay
			d.mu.Lock()
			g, fail := d.rejoinGate, d.failRejoin
			d.mu.Unlock()
			g.pass()
			if fail {
				return nil, errors.New("rejoin failed, as asked")
			}
			return resp, nil
		}
		if !req.GetPrepared() {
			return nil, fmt.Errorf("join of prepared endpoint %s not told so", req.GetEndpoint().GetId())
		}
		resp.SrcName = end.name
		d.mu.Lock()
		d.joined[host] = true
		d.mu.Unlock()
		return resp, netlink.LinkSetUp(l)
	}
	d.mu.Lock()
	g := d.joinGate
	d.mu.Unlock()
	g.pass()
	ns, err := netns.GetFromPath(req.GetSandboxKey())
	if err != nil {
		return nil, fmt.Errorf("opening sandbox %s: %w", req.GetSandboxKey(), err)
	}
	defer ns.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return nil, err
	}
	d.mu.Lock()
	fail := d.failJoin
	d.mu.Unlock()
	if fail {
		// As a driver that fails midway would: what it made stays for
		// the host's rollback (Leave, DeleteEndpoint) to remove.
		return nil, fmt.Errorf("injected join failure: %w", sdk.ErrUnavailable)
	}
	return resp, nil
}

func (d *vethDriver) Leave(_ context.Context, req *pb.LeaveRequest) error {
	d.mu.Lock()
	g := d.leaveGate
	d.mu.Unlock()
	g.pass()
	host, _ := names(req.GetEndpoint().GetId())
	if l, err := netlink.LinkByName(host); err == nil {
		// The pair may vanish meanwhile with its sandbox's namespace.
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return err
		}
	}
	return nil
}

func (d *vethDriver) ProgramExternalConnectivity(_ context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	d.setPublished(req.GetEndpoint().GetId(), len(req.GetEndpoint().GetPortBindings()))
	return &pb.ExternalConnectivityResponse{}, nil
}
func (d *vethDriver) RevokeExternalConnectivity(_ context.Context, req *pb.ExternalConnectivityRequest) error {
	d.setPublished(req.GetEndpoint().GetId(), 0)
	return nil
}

// setPublished records that endpoint id publishes n ports.
func (d *vethDriver) setPublished(id string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.published == nil {
		d.published = map[string]int{}
	}
	if n == 0 {
		delete(d.published, id)
	} else {
		d.published[id] = n
	}
}

// publishedBy is how many ports endpoint id publishes.
func (d *vethDriver) publishedBy(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.published[id]
}
func (*vethDriver) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}

// noneDriver gives endpoints no interface; with host set it is the host
// driver.
type noneDriver struct{ host bool }

func (noneDriver) Configure(context.Context, []byte) error { return nil }
func (d noneDriver) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, UsesHostNamespace: d.host}, nil
}
func (noneDriver) CreateNetwork(context.Context, *pb.CreateNetworkRequest) error { return nil }
func (noneDriver) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error { return nil }
func (noneDriver) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}
func (noneDriver) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return nil }
func (noneDriver) Join(context.Context, *pb.JoinRequest) (*pb.JoinResponse, error) {
	return &pb.JoinResponse{}, nil
}
func (noneDriver) Leave(context.Context, *pb.LeaveRequest) error { return nil }
func (noneDriver) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}
func (noneDriver) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}
func (noneDriver) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}
