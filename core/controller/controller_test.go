package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/ipam"
	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

func TestNewSandboxErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{}); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "container_id") {
		t.Fatalf("empty container ID: err = %v, want invalid naming container_id", err)
	}
	sb := e.sandbox("c1")
	_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"})
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), sb.ID[:12]) {
		t.Fatalf("second sandbox for c1: err = %v, want forbidden naming %s", err, sb.ID[:12])
	}
	if got, _ := e.c.Sandboxes(ctx); len(got) != 1 {
		t.Fatalf("sandboxes after the refused create = %d, want 1", len(got))
	}
	if !osl.Exists(sb.Key) {
		t.Fatalf("key %s is not a namespace", sb.Key)
	}
	if _, err := e.c.SandboxByID(ctx, ""); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("SandboxByID(\"\") = %v, want invalid", err)
	}
	if _, err := e.c.SandboxByID(ctx, "nope"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("SandboxByID(nope) = %v, want not found", err)
	}
	if err := e.c.SandboxDestroy(ctx, "unknown-container"); err != nil {
		t.Fatalf("SandboxDestroy of an unknown container = %v, want nil", err)
	}
}

func TestConnectGivesInterfaceAddressAndGateway(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.50.0.0/24")
	e.network("blue", "veth", "10.60.0.0/24")
	sb := e.sandbox("c1", func(r *SandboxCreate) { r.Hostname = "web" })
	ep := e.connect("red", "c1")
	if ep.IfName != "eth0" || ep.Address.String() != "10.50.0.2/24" || ep.Gateway.String() != "10.50.0.1" {
		t.Fatalf("endpoint = %+v, want eth0 10.50.0.2/24 via 10.50.0.1", ep)
	}
	if _, err := e.c.Connect(ctx, "blue", Connect{Container: "c1", IP: "10.60.0.77", Priority: 10}); err != nil {
		t.Fatal(err)
	}
	got := addresses(t, sb.Key)
	if fmt.Sprint(got["eth0"]) != "[10.50.0.2/24]" || fmt.Sprint(got["eth1"]) != "[10.60.0.77/24]" {
		t.Fatalf("addresses in the sandbox = %v", got)
	}
	// The higher-priority endpoint gives the default route.
	if gw := defaultGateway(t, sb.Key); gw != "10.60.0.1 dev eth1" {
		t.Fatalf("default route = %q, want via 10.60.0.1 dev eth1", gw)
	}
	if err := e.c.Disconnect(ctx, "blue", "c1"); err != nil {
		t.Fatal(err)
	}
	if gw := defaultGateway(t, sb.Key); gw != "10.50.0.1 dev eth0" {
		t.Fatalf("default route after disconnect = %q, want via 10.50.0.1 dev eth0", gw)
	}
	hosts := readFile(t, sb.Hosts)
	if !strings.Contains(hosts, "10.50.0.2\tweb") || strings.Contains(hosts, "10.60.0.77") {
		t.Fatalf("hosts file:\n%s", hosts)
	}
	insp, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil || len(insp.Endpoints) != 1 || insp.Endpoints[0].IfName != "eth0" {
		t.Fatalf("inspect = %+v, %v", insp, err)
	}
}

func TestBadConnectChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.50.0.0/29")
	e.sandbox("c1")
	e.sandbox("c2")
	e.connect("red", "c1")
	before := e.leaks()
	tests := []struct {
		name string
		net  string
		req  Connect
		is   error
		msg  string
	}{
		{"unknown network", "nope", Connect{Container: "c2"}, sdk.ErrNotFound, `network "nope" not found`},
		{"unknown container", "red", Connect{Container: "ghost"}, sdk.ErrNotFound, "container ghost has no sandbox"},
		{"bad ip", "red", Connect{Container: "c2", IP: "10.50.0.x"}, sdk.ErrInvalid, "ip:"},
		{"ip in use", "red", Connect{Container: "c2", IP: "10.50.0.2"}, sdk.ErrConflict, "10.50.0.2"},
		{"ip outside", "red", Connect{Container: "c2", IP: "10.99.0.2"}, sdk.ErrInvalid, "10.99.0.2"},
		{"twice", "red", Connect{Container: "c1"}, sdk.ErrExists, "already connected"},
		{"bad port", "red", Connect{Container: "c2", Publish: []string{"80/sctp"}}, sdk.ErrInvalid, "publish"},
		{"host network", "hostnet", Connect{Container: "c2"}, sdk.ErrForbidden, "host-mode"},
	}
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "hostnet", Driver: "host"}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.Connect(ctx, tt.net, tt.req)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.is, tt.msg)
			}
			if after := e.leaks(); after != before {
				t.Fatalf("a failed connect changed things: before %+v, after %+v", before, after)
			}
		})
	}
	// A failing store write after the driver's join rolls everything back.
	e.store.fail("sandnet/v1/endpoint/")
	_, err := e.c.Connect(ctx, "red", Connect{Container: "c2"})
	e.store.fail("")
	if err == nil {
		t.Fatal("connect with a failing store succeeded")
	}
	if after := e.leaks(); after != before {
		t.Fatalf("a failed connect changed things: before %+v, after %+v", before, after)
	}
}

func TestPoolExhaustedNamesNetwork(t *testing.T) {
	e := newEnv(t)
	e.network("tiny", "veth", "10.70.0.0/30") // one usable address after the gateway
	e.sandbox("c1")
	e.sandbox("c2")
	e.connect("tiny", "c1")
	_, err := e.c.Connect(context.Background(), "tiny", Connect{Container: "c2"})
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "tiny") {
		t.Fatalf("err = %v, want a conflict naming network tiny", err)
	}
}

// A subnet overlapping another network's is refused naming that network
// as its user knows it.
func TestOverlapNamesNetwork(t *testing.T) {
	e := newEnv(t)
	e.network("big", "veth", "10.72.0.0/16")
	_, err := e.c.CreateNetwork(context.Background(), NetworkCreate{Name: "small", Driver: "veth", Subnet: "10.72.3.0/24"})
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "subnet 10.72.3.0/24 overlaps 10.72.0.0/16 of network big") {
		t.Fatalf("err = %v, want a conflict naming network big", err)
	}
}

// TestNetworkByIDPrefix: a network is found by the 12 characters of its
// ID that listings print (or more), as Docker finds it; a shorter prefix,
// or one that is no network's, is not found, and one two IDs share is
// refused as ambiguous.
func TestNetworkByIDPrefix(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	red := e.network("red", "veth", "10.83.0.0/24")
	for _, ref := range []string{red.ID[:12], red.ID[:20]} {
		if n, err := e.c.Network(ctx, ref); err != nil || n.ID != red.ID {
			t.Fatalf("network %q = %v, %v; want red", ref, n, err)
		}
	}
	if err := e.c.DeleteNetwork(ctx, red.ID[:12]); err != nil {
		t.Fatalf("deleting red by its short ID: %v", err)
	}
	for _, ref := range []string{red.ID[:12], "0123456789ab"} {
		if _, err := e.c.Network(ctx, ref); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("network %q once gone = %v, want not found", ref, err)
		}
	}
	blue := e.network("blue", "veth", "10.84.0.0/24")
	if _, err := e.c.Network(ctx, blue.ID[:11]); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("network by an 11-character prefix = %v, want not found", err)
	}
	// Two IDs sharing 12 characters: one made to, through the store.
	twin := *blue
	twin.ID, twin.Name = blue.ID[:12]+strings.Repeat("0", 52), "twin"
	if twin.ID == blue.ID {
		twin.ID = blue.ID[:12] + strings.Repeat("1", 52)
	}
	raw, err := json.Marshal(&twin)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.kv.txn(ctx, &pb.TxnOp{Verb: pb.TxnOp_PUT, Key: networkKey(twin.ID), Value: raw}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Network(ctx, blue.ID[:12]); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), "ambiguous") {
		t.Fatalf("a prefix two networks share = %v, want invalid, ambiguous", err)
	}
}

func TestNetworkRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "")
	tests := []struct {
		name string
		req  NetworkCreate
		is   error
		msg  string
	}{
		{"duplicate name", NetworkCreate{Name: "red", Driver: "veth"}, sdk.ErrExists, `"red" already exists`},
		{"bad name", NetworkCreate{Name: "-x", Driver: "veth"}, sdk.ErrInvalid, "name:"},
		{"driver not loaded", NetworkCreate{Name: "x", Driver: "macvlan"}, sdk.ErrInvalid, `driver: no driver "macvlan"`},
		{"bad subnet", NetworkCreate{Name: "x", Driver: "veth", Subnet: "10.0.0.0/33"}, sdk.ErrInvalid, "subnet:"},
		{"global on a local store", NetworkCreate{Name: "x", Driver: "veth", Scope: "global"}, sdk.ErrInvalid, "scope:"},
		{"subnet for none", NetworkCreate{Name: "x", Driver: "none", Subnet: "10.1.0.0/24"}, sdk.ErrInvalid, "does not use addresses"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.CreateNetwork(ctx, tt.req)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.is, tt.msg)
			}
			if ns, _ := e.c.Networks(ctx); len(ns) != 1 {
				t.Fatalf("networks = %d after a refused create, want 1", len(ns))
			}
		})
	}
	e.sandbox("c1")
	e.connect("red", "c1")
	if err := e.c.DeleteNetwork(ctx, "red"); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "1 endpoint") {
		t.Fatalf("deleting a network with an endpoint: err = %v", err)
	}
	n, err := e.c.Network(ctx, "red")
	if err != nil || n.InDelete {
		t.Fatalf("network after refused delete = %+v, %v: must not stay in-delete", n, err)
	}
	if err := e.c.Disconnect(ctx, "red", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	if l := e.leaks(); l.allocations != 0 {
		t.Fatalf("allocations after network delete = %d", l.allocations)
	}
}

func TestStubReuseAndRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, before := e.connected("red", "10.80.0.0/24", "c1")
	if err := e.c.DeleteNetwork(ctx, "red"); err == nil || err.Error() != "network red has 1 endpoint(s) (containers c1); disconnect them first: conflict" {
		t.Fatalf("deleting a network in use: %v", err)
	}
	// An agent crash: the controller is dropped without Close, a new one
	// reads the store back.
	e.c = e.start()
	stubs, _ := e.c.Sandboxes(ctx)
	if len(stubs) != 0 {
		t.Fatalf("stubs listed by Sandboxes: %d", len(stubs))
	}
	// A network a stub holds says which container holds it, and that it
	// is a stub, which the listing leaves out.
	err := e.c.DeleteNetwork(ctx, "red")
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "network red has 1 endpoint(s) (containers c1 (stub); a stub is a sandbox not claimed since the agent restarted") {
		t.Fatalf("deleting a network a stub holds: %v", err)
	}
	claimed, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if claimed.ID != sb.ID || len(claimed.Endpoints) != 1 || claimed.Stub {
		t.Fatalf("claimed stub = %+v, want sandbox %s with its endpoint", claimed, sb.ID)
	}
	if after := addresses(t, sb.Key); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("addresses changed across restart: %v → %v", before, after)
	}
	// The restored sandbox works as before: disconnect and delete.
	if err := e.c.Disconnect(ctx, "red", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if l := e.leaks(); l != (leaks{}) {
		t.Fatalf("leaks = %+v", l)
	}
}

func TestIngressIsUnique(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.sandbox("lb1", func(r *SandboxCreate) { r.Ingress = true })
	_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "lb2", Options: sandbox.Options{Ingress: true}})
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), "ingress") {
		t.Fatalf("second ingress: err = %v", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "lb2"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("refused ingress sandbox exists: %v", err)
	}
	if err := e.c.DeleteSandbox(ctx, "lb1"); err != nil {
		t.Fatal(err)
	}
	e.sandbox("lb2", func(r *SandboxCreate) { r.Ingress = true })
}

func TestHostMode(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "host", Driver: "host"}); err != nil {
		t.Fatal(err)
	}
	a := e.sandbox("h1", func(r *SandboxCreate) { r.HostMode = true })
	b := e.sandbox("h2", func(r *SandboxCreate) { r.HostMode = true })
	if a.Key != b.Key || !osl.Exists(a.Key) {
		t.Fatalf("host-mode keys %q and %q: want one shared namespace", a.Key, b.Key)
	}
	if !sameNamespace(t, a.Key, "/proc/self/ns/net") {
		t.Fatal("host-mode key is not the host's namespace")
	}
	// No interface of its own: a MAC or a name for one is refused,
	// naming the field, and nothing is connected.
	for field, c := range map[string]Connect{"mac: ": {Container: "h1", MAC: "02:42:ac:11:00:09"}, "interface: ": {Container: "h1", Interface: "eth3"}} {
		if _, err := e.c.Connect(ctx, "host", c); !errors.Is(err, sdk.ErrInvalid) || !strings.HasPrefix(err.Error(), field) {
			t.Errorf("a host-network connect with %s: %v, want a 400 naming it", field, err)
		}
	}
	e.connect("host", "h1")
	if err := e.c.DeleteSandbox(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if !osl.Exists(b.Key) {
		t.Fatal("deleting a host-mode sandbox destroyed the host's namespace key")
	}
}

func TestExternalKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.90.0.0/24")
	sb := e.sandbox("c1", func(r *SandboxCreate) { r.ExternalKey = true })
	if sb.Key != "" {
		t.Fatalf("external-key sandbox has key %q before SetKey", sb.Key)
	}
	// The endpoint joins before the runtime made the namespace.
	e.connect("red", "c1")
	runtimeNS, err := osl.NewNamespace(e.dir + "/runtime-ns")
	if err != nil {
		t.Fatal(err)
	}
	defer runtimeNS.Destroy()
	if _, err := e.c.SetKey(ctx, "c1", e.dir+"/not-a-namespace"); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("SetKey to a non-namespace: %v", err)
	}
	got, err := e.c.SetKey(ctx, "c1", runtimeNS.Path())
	if err != nil {
		t.Fatal(err)
	}
	if !sameNamespace(t, got.Key, runtimeNS.Path()) {
		t.Fatal("the sandbox key is not the runtime's namespace")
	}
	if a := addresses(t, runtimeNS.Path()); fmt.Sprint(a["eth0"]) != "[10.90.0.2/24]" {
		t.Fatalf("runtime namespace after SetKey: %v", a)
	}
	if _, err := e.c.SetKey(ctx, "c1", runtimeNS.Path()); !errors.Is(err, sdk.ErrForbidden) {
		t.Fatalf("second SetKey: %v", err)
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if !osl.Exists(runtimeNS.Path()) {
		t.Fatal("deleting the sandbox destroyed the runtime's own namespace")
	}
}

// A runtime's namespace handed over with lo down (as `ip netns add` and
// unshare make it) gets lo up with its key: the sandbox's embedded
// resolver, which listens on 127.0.0.11, answers inside.
func TestSetKeyBringsLoopbackUp(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.93.0.0/24")
	e.sandbox("c1", func(r *SandboxCreate) { r.ExternalKey = true })
	ep := e.connect("red", "c1")
	runtimeNS, err := osl.NewNamespace(e.dir + "/runtime-ns")
	if err != nil {
		t.Fatal(err)
	}
	defer runtimeNS.Destroy()
	if err := runtimeNS.Handle().LinkSetDown(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1}}); err != nil {
		t.Fatal(err)
	}
	sb, err := e.c.SetKey(ctx, "c1", runtimeNS.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, sb.Key, "c1"); got != ep.Address.Addr().String() {
		t.Fatalf("c1 resolved inside its runtime's namespace: %q, want %s", got, ep.Address.Addr())
	}
}

// A SetKey whose join fails leaves the sandbox as it was before it, its
// endpoint still its own: deleting the sandbox then removes the endpoint
// and its address, and the network can go.
func TestSetKeyFailureKeepsEndpoints(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.94.0.0/24")
	e.sandbox("c1", func(r *SandboxCreate) { r.ExternalKey = true })
	e.connect("red", "c1")
	runtimeNS, err := osl.NewNamespace(e.dir + "/runtime-ns")
	if err != nil {
		t.Fatal(err)
	}
	defer runtimeNS.Destroy()
	e.veth.mu.Lock()
	e.veth.failJoin = true
	e.veth.mu.Unlock()
	if _, err := e.c.SetKey(ctx, "c1", runtimeNS.Path()); err == nil {
		t.Fatal("SetKey succeeded with a failing join")
	}
	e.veth.mu.Lock()
	e.veth.failJoin = false
	e.veth.mu.Unlock()
	sb, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if sb.Key != "" || len(sb.Endpoints) != 1 {
		t.Fatalf("sandbox after the failed SetKey: key %q, %d endpoints; want no key and its endpoint", sb.Key, len(sb.Endpoints))
	}
	// The record says the same: a restart finds the sandbox still
	// waiting for its key, not one whose namespace is gone.
	e.c.Close()
	e.c = e.start()
	if sb, err = e.c.SandboxByContainer(ctx, "c1"); err != nil || sb.Key != "" || len(sb.Endpoints) != 1 {
		t.Fatalf("sandbox after a restart: %+v, %v; want no key and its endpoint", sb, err)
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatalf("deleting the network after the sandbox: %v", err)
	}
}

// A SetKey whose second join fails takes the first out of the runtime's
// namespace again (it stayed there, its host end with it, and a retry
// then failed too); a retry then joins both.
func TestSetKeyFailureUndoesEarlierJoins(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.94.0.0/24")
	e.network("blue", "veth", "10.95.0.0/24")
	e.sandbox("c1", func(r *SandboxCreate) { r.ExternalKey = true })
	red := e.connect("red", "c1")
	e.connect("blue", "c1")
	runtimeNS, err := osl.NewNamespace(e.dir + "/runtime-ns")
	if err != nil {
		t.Fatal(err)
	}
	defer runtimeNS.Destroy()
	e.store.fail(red.ID) // the second join's record (blue's comes first)
	_, err = e.c.SetKey(ctx, "c1", runtimeNS.Path())
	e.store.fail("")
	if err == nil {
		t.Fatal("SetKey succeeded with a failing second join")
	}
	if a := addresses(t, runtimeNS.Path()); len(a) != 0 {
		t.Fatalf("the runtime's namespace after the failed SetKey: %v, want no interface of ours", a)
	}
	if l := e.leaks(); l.links != 0 {
		t.Fatalf("host ends after the failed SetKey: %d, want none", l.links)
	}
	sb, err := e.c.SetKey(ctx, "c1", runtimeNS.Path())
	if err != nil {
		t.Fatalf("SetKey again: %v", err)
	}
	if a := addresses(t, runtimeNS.Path()); len(a) != 2 || len(sb.Endpoints) != 2 {
		t.Fatalf("after SetKey again: interfaces %v, %d endpoints; want both", a, len(sb.Endpoints))
	}
}

func TestRenameRollsBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.91.0.0/24")
	e.network("blue", "veth", "10.92.0.0/24")
	e.sandbox("c1")
	red := e.connect("red", "c1")
	e.connect("blue", "c1")
	if err := e.c.Rename(ctx, "c1", "web"); err != nil {
		t.Fatal(err)
	}
	names := func() string {
		sb, err := e.c.SandboxByContainer(ctx, "c1")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, ep := range sb.Endpoints {
			out = append(out, ep.Name)
		}
		return strings.Join(out, ",")
	}
	if got := names(); got != "web,web" {
		t.Fatalf("names after rename = %s", got)
	}
	// Endpoints are ordered by network name, blue first: red's write fails
	// after blue's succeeded, and blue must be renamed back.
	e.store.fail(red.ID)
	err := e.c.Rename(ctx, "c1", "api")
	e.store.fail("")
	if err == nil {
		t.Fatal("rename with a failing store succeeded")
	}
	if got := names(); got != "web,web" {
		t.Fatalf("names after failed rename = %s, want web,web", got)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.93.0.0/24")
	sb := e.sandbox("c1", func(r *SandboxCreate) { r.Hostname = "old" })
	e.connect("red", "c1")
	got, err := e.c.Refresh(ctx, "c1", sandbox.Options{Hostname: "new", DNSSearch: []string{"example.test"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Endpoints) != 1 || got.Endpoints[0].IfName != "eth0" {
		t.Fatalf("endpoints after refresh = %+v", got.Endpoints)
	}
	if a := addresses(t, sb.Key); fmt.Sprint(a["eth0"]) != "[10.93.0.2/24]" {
		t.Fatalf("addresses after refresh = %v", a)
	}
	if h := readFile(t, sb.Hosts); !strings.Contains(h, "\tnew") || strings.Contains(h, "old") {
		t.Fatalf("hosts after refresh:\n%s", h)
	}
	if rc := readFile(t, sb.ResolvConf); !strings.Contains(rc, "search example.test") {
		t.Fatalf("resolv.conf after refresh:\n%s", rc)
	}
	if _, err := e.c.Refresh(ctx, "c1", sandbox.Options{HostMode: true}); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("refresh into host mode: %v", err)
	}
}

func TestDeleteInProgress(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.94.0.0/24")
	e.sandbox("c1")
	e.connect("red", "c1")
	g := newCallGate()
	e.setGate(&e.veth.leaveGate, g)
	done := make(chan error, 1)
	go func() { done <- e.c.DeleteSandbox(ctx, "c1") }()
	<-g.enter // the first delete is inside the driver's Leave
	err := e.c.DeleteSandbox(ctx, "c1")
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), "delete in progress") {
		t.Fatalf("concurrent delete: err = %v, want forbidden: delete in progress", err)
	}
	e.setGate(&e.veth.leaveGate, nil)
	close(g.open)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := e.leaks(); l != (leaks{}) {
		t.Fatalf("leaks = %+v", l)
	}
}

func TestUnclaimedStubsAreCleaned(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.95.0.0/24")
	for i := range 5 {
		e.sandbox(fmt.Sprintf("c%d", i))
		e.connect("red", fmt.Sprintf("c%d", i))
	}
	c := e.start()
	e.c = c
	for i := range 2 {
		if _, err := c.RestoreSandbox(ctx, fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var reaped, disconnected []string
	c.cfg.OnEvent = func(ev events.Event) {
		switch {
		case ev.Type == events.TypeSandboxDelete && strings.Contains(ev.Message, "grace period"):
			reaped = append(reaped, ev.Container)
		case ev.Type == events.TypeDisconnect && ev.Network == "red" && ev.EndpointID != "":
			disconnected = append(disconnected, ev.Container)
		}
	}
	c.reapStubs() // what the grace timer does
	if !slices.Equal(reaped, []string{"c2", "c3", "c4"}) {
		t.Fatalf("reported as reaped: %v, want c2 c3 c4", reaped)
	}
	if !slices.Equal(disconnected, reaped) {
		t.Fatalf("endpoints reported disconnected from red: %v, want those of c2 c3 c4", disconnected)
	}
	sbs, _ := c.Sandboxes(ctx)
	if len(sbs) != 2 {
		t.Fatalf("sandboxes after reaping = %d, want the 2 claimed", len(sbs))
	}
	l := e.leaks()
	if l.mounts != 2 || l.links != 2 || l.allocations != 2 {
		t.Fatalf("after reaping 3 stubs: %+v, want 2 of each", l)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := osReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// defaultGateway returns "GW dev DEV" of the IPv4 default route in the
// namespace at key.
func defaultGateway(t *testing.T, key string) string {
	t.Helper()
	ns, err := osl.OpenNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	routes, err := ns.Handle().RouteList(nil, 2 /* AF_INET */)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			l, err := ns.Handle().LinkByIndex(r.LinkIndex)
			if err != nil {
				t.Fatal(err)
			}
			return r.Gw.String() + " dev " + l.Attrs().Name
		}
	}
	return ""
}

func sameNamespace(t *testing.T, a, b string) bool {
	t.Helper()
	return inode(t, a) == inode(t, b)
}

// A connect writes its record while the interface is made: an agent that
// stops between the two leaves one without the other. The next start
// removes an endpoint whose interface is missing (with its address) and
// deletes an interface no endpoint owns; a namespace mounted by a create
// whose record never landed is unmounted, an interface whose
// configuration was cut short is set up again (interfaces the container
// made for itself are left alone), a namespace named as a sandbox that no
// record names (made with another store) is removed, and one named
// otherwise (the operator's) is left alone.
// TestUnopenedNamespaceKept: a sandbox whose namespace cannot be opened
// when the store is read back (too many open files) is kept, not
// forgotten: listed as a stub, its name still its own on its network, a
// claim that still cannot open it fails and leaves it a stub, one that
// can gets it whole, and it deletes leaving nothing. It was dropped: its
// record, address, name and interface stayed, beyond inspect and rm, and
// a create made the container a second endpoint under the same name.
func TestUnopenedNamespaceKept(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, before := e.connected("red", "10.82.0.0/24", "c1")
	var fail atomic.Bool
	fail.Store(true)
	openNamespace = func(path string) (*osl.Namespace, error) {
		if fail.Load() && path == sb.Key {
			return nil, fmt.Errorf("opening namespace %s: %w", path, syscall.EMFILE)
		}
		return osl.OpenNamespace(path)
	}
	t.Cleanup(func() { openNamespace = osl.OpenNamespace })
	e.c = e.start()

	all, err := e.c.ListSandboxes(ctx, true)
	if err != nil || len(all) != 1 || all[0].ID != sb.ID || !all[0].Stub || len(all[0].Endpoints) != 1 {
		t.Fatalf("sandboxes after a start that could not open c1's namespace: %+v, %v; want c1 as a stub with its endpoint", all, err)
	}
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"}); !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("a claim while the namespace still cannot be opened = %v, want unavailable saying why", err)
	}
	if v, err := e.c.SandboxByContainer(ctx, "c1"); err != nil || !v.Stub {
		t.Fatalf("after the failed claim: %+v, %v; want c1 a stub still", v, err)
	}
	fail.Store(false)
	claimed, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"})
	if err != nil || claimed.ID != sb.ID || len(claimed.Endpoints) != 1 || claimed.Stub {
		t.Fatalf("claim once the namespace opens = %+v, %v; want sandbox %s with its endpoint", claimed, err, sb.ID)
	}
	if after := addresses(t, sb.Key); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("addresses changed: %v → %v", before, after)
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if l := e.leaks(); l != (leaks{}) {
		t.Fatalf("left behind: %+v", l)
	}
}

func TestStartCleansInterruptedCreates(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.81.0.0/24")
	sb1 := e.sandbox("c1")
	e.connect("red", "c1")
	sb2 := e.sandbox("c2")
	e.connect("red", "c2")

	// c1: the record landed, the interface did not.
	nstest.WithHandle(t, sb1.Key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		return h.LinkDel(l)
	})
	// c3: the interface was made, its configuration cut short: down, no
	// address, no default route.
	sb3 := e.sandbox("c3")
	e.connect("red", "c3")
	nstest.WithHandle(t, sb3.Key, func(h *netlink.Handle) error {
		l, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		addrs, _ := h.AddrList(l, netlink.FAMILY_V4)
		for _, a := range addrs {
			if err := h.AddrDel(l, &a); err != nil {
				return err
			}
		}
		return h.LinkSetDown(l)
	})
	// c2: an interface whose record never landed (made by a driver: its
	// other end on the host), and two the container made for itself.
	ns2, err := netns.GetFromPath(sb2.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns2.Close()
	made := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vhstray"}, PeerName: "eth1", PeerNamespace: netlink.NsFd(ns2)}
	if err := netlink.LinkAdd(made); err != nil {
		t.Fatal(err)
	}
	nstest.WithHandle(t, sb2.Key, func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "own0"}, PeerName: "own1"})
	})
	// A namespace whose sandbox record never landed.
	stray, err := osl.NewNamespace(filepath.Join(e.dir, "netns", ".creating", newID()))
	if err != nil {
		t.Fatal(err)
	}
	stray.Close()
	other, err := osl.NewNamespace(filepath.Join(e.dir, "netns", newID()))
	if err != nil {
		t.Fatal(err)
	}
	other.Close()
	operators, err := osl.NewNamespace(filepath.Join(e.dir, "netns", "operator"))
	if err != nil {
		t.Fatal(err)
	}
	operators.Close()

	e.c = e.start()
	if l := e.leaks(); l != (leaks{mounts: 4, links: 2, allocations: 2}) {
		t.Fatalf("after restart: %+v, want the three sandboxes' and the operator's namespaces, c2's and c3's links and addresses", l)
	}
	if _, err := os.Stat(other.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the namespace of a sandbox no record names: %v; want it removed", err)
	}
	if err := operators.Destroy(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		container string
		key       string
		want      string
	}{{"c1", sb1.Key, "map[]"}, {"c2", sb2.Key, "map[eth0:[10.81.0.3/24] own0:[] own1:[]]"}, {"c3", sb3.Key, "map[eth0:[10.81.0.4/24]]"}} {
		claimed, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: c.container})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(addresses(t, c.key)); got != c.want {
			t.Errorf("%s's interfaces = %s, want %s", c.container, got, c.want)
		}
		if want := strings.Count(c.want, "eth0"); len(claimed.Endpoints) != want {
			t.Errorf("%s has %d endpoints, want %d", c.container, len(claimed.Endpoints), want)
		}
	}
	if gw := defaultGateway(t, sb3.Key); gw != "10.81.0.1 dev eth0" {
		t.Errorf("c3's default gateway after the repair = %q, want 10.81.0.1 dev eth0", gw)
	}
	// The address c1 lost is free again.
	ep := e.connect("red", "c1")
	if got := ep.Address.String(); got == "10.81.0.3/24" || got == "10.81.0.4/24" {
		t.Errorf("c1 reconnected with %s, an address in use", got)
	}
}

// A create or connect whose store write fails, or whose driver fails,
// leaves nothing: no namespace (at its key or half-made), no interface, no
// address; the write and the work run side by side, so this is the undo
// of whichever finished.
func TestFailedCreateAndConnectLeaveNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.82.0.0/24")
	e.sandbox("c1")
	before := e.leaks()

	e.store.fail("sandnet/v1/sandbox/")
	_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c2"})
	e.store.fail("")
	if err == nil || !strings.Contains(err.Error(), "injected store failure") {
		t.Fatalf("create with a failing store: %v", err)
	}
	if after := e.leaks(); after != before {
		t.Fatalf("a failed create left %+v (before %+v)", after, before)
	}
	if left, _ := os.ReadDir(filepath.Join(e.dir, "netns", ".creating")); len(left) != 0 {
		t.Fatalf("half-made namespaces left: %v", left)
	}

	e.veth.mu.Lock()
	e.veth.failJoin = true
	e.veth.mu.Unlock()
	_, err = e.c.Connect(ctx, "red", Connect{Container: "c1"})
	e.veth.mu.Lock()
	e.veth.failJoin = false
	e.veth.mu.Unlock()
	if !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("connect with a failing driver: %v, want ErrUnavailable", err)
	}
	if after := e.leaks(); after != before {
		t.Fatalf("a failed connect left %+v (before %+v)", after, before)
	}
	n, err := e.c.Network(ctx, "red")
	if err != nil || len(n.Endpoints) != 0 {
		t.Fatalf("endpoints after the failed connect: %v, %v", n, err)
	}
	// Connecting works afterwards, with one address stored and on the
	// interface.
	ep := e.connect("red", "c1")
	sb, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(addresses(t, sb.Key)), fmt.Sprintf("map[eth0:[%s]]", ep.Address); got != want {
		t.Fatalf("c1's interfaces = %s, want %s", got, want)
	}
	if l := e.leaks(); l.allocations != 1 {
		t.Fatalf("allocations = %d, want 1", l.allocations)
	}
}

// A connect whose endpoint write lands but whose answer is lost (the
// caller went away mid-call) fails, and the record and its address are
// rolled back in the background: nothing stays allocated.
func TestConnectWithLostAnswerRollsBack(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.83.0.0/24")
	e.sandbox("c1")
	before := e.leaks()
	e.store.lose("sandnet/v1/endpoint/")
	_, err := e.c.Connect(ctx, "red", Connect{Container: "c1"})
	e.store.lose("")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("connect with a lost answer: %v, want context.Canceled", err)
	}
	polltest.Until(t, 15*time.Second, "the rollback", func() bool { return e.leaks() == before })
	if ep := e.connect("red", "c1"); !ep.Address.IsValid() {
		t.Fatalf("connect afterwards: %+v", ep)
	}
}

// TestFailedNetworkCreateUndoneInDriver: a driver's CreateNetwork that
// fails after setting its network up (as a call the request's end cut
// short does) is followed by the driver's DeleteNetwork, and the record
// and pools go: nothing is left in the driver or the store, and the
// subnet can be had again.
func TestFailedNetworkCreateUndoneInDriver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.veth.mu.Lock()
	e.veth.failCreate = true
	e.veth.mu.Unlock()
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "red", Driver: "veth", Subnet: "10.71.0.0/24"}); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("create with a driver that fails: %v", err)
	}
	e.veth.mu.Lock()
	left := len(e.veth.nets)
	e.veth.failCreate = false
	e.veth.mu.Unlock()
	if left != 0 {
		t.Fatalf("the driver still has %d network(s) after the failed create", left)
	}
	if ns, err := e.c.Networks(ctx); err != nil || len(ns) != 0 {
		t.Fatalf("networks after the failed create: %v, %v", ns, err)
	}
	e.network("red", "veth", "10.71.0.0/24")
}

// Every sandbox and endpoint change a request makes is announced once,
// naming the network by ID and name and the container — whatever name
// the endpoint answers to and however the request named the network —
// and nothing is announced for a request that failed.
func TestEventsNameNetworkAndContainer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	red := e.network("red", "veth", "10.96.0.0/24")
	var got []string
	e.c.cfg.OnEvent = func(ev events.Event) {
		if ev.Type == events.TypeConnect || ev.Type == events.TypeDisconnect {
			if ev.NetworkID != red.ID || ev.EndpointID == "" || ev.SandboxID == "" {
				t.Errorf("%s lacks an ID: %+v", ev.Type, ev)
			}
		}
		got = append(got, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", ev.Type, ev.Container, ev.Network, ev.Message)))
	}
	expect := func(step string, want ...string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s announced %q, want %q", step, got, want)
		}
		got = nil
	}
	e.sandbox("c1", func(r *SandboxCreate) { r.Networks = []SandboxNetwork{{Network: red.ID}} })
	expect("a create with a network", "sandbox.create c1", "endpoint.connect c1 red")
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"}); err == nil {
		t.Fatal("a second sandbox for c1 was made")
	}
	expect("a refused create")
	e.sandbox("c2")
	if _, err := e.c.Connect(ctx, red.ID, Connect{Container: "c2", Name: "web"}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Disconnect(ctx, red.ID, "c2"); err != nil {
		t.Fatal(err)
	}
	expect("a connect by ID under another name, and a disconnect by ID",
		"sandbox.create c2", "endpoint.connect c2 red", "endpoint.disconnect c2 red")
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	expect("a delete", "endpoint.disconnect c1 red", "sandbox.delete c1")
	e.sandbox("c3", func(r *SandboxCreate) { r.Front = "cni"; r.Networks = []SandboxNetwork{{Network: "red"}} })
	got = nil
	if err := e.c.Release(ctx, "red", "c3", ""); err != nil {
		t.Fatal(err)
	}
	expect("a front's release of its last endpoint", "endpoint.disconnect c3 red", "sandbox.delete c3")
	if err := e.c.Release(ctx, "red", "c3", ""); err != nil {
		t.Fatal(err)
	}
	expect("a second release")
}

// An endpoint's name is its own on a network, as libnetwork has it: a
// connect under a name another endpoint there has, a container whose ID
// is another endpoint's name, or a rename onto one, is refused with
// ErrExists naming the network, and changes nothing. An alias may be
// anyone's name; a name is free again once its endpoint goes; a CNI
// runtime's pod name may repeat (Kubernetes namespaces).
func TestEndpointNamesAreUnique(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.98.0.0/24")
	e.sandbox("c1", func(r *SandboxCreate) { r.Networks = []SandboxNetwork{{Network: "red"}} })
	e.sandbox("c2")
	_, err := e.c.Connect(ctx, "red", Connect{Container: "c2", Name: "C1"})
	if !errors.Is(err, sdk.ErrExists) || !strings.Contains(err.Error(), "name: network red already has an endpoint named C1") {
		t.Fatalf("connect under c1's name: %v, want exists", err)
	}
	if _, err := e.c.Connect(ctx, "red", Connect{Container: "c2", Name: "web", Aliases: []string{"c1"}}); err != nil {
		t.Fatalf("connect with c1's name as an alias: %v", err)
	}
	_, err = e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "web", Networks: []SandboxNetwork{{Network: "red"}}})
	if !errors.Is(err, sdk.ErrExists) || !strings.Contains(err.Error(), "container web: network red already has an endpoint named web") {
		t.Fatalf("container web on a network where c2 is named web: %v, want exists", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "web"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the refused create left a sandbox: %v", err)
	}
	if err := e.c.Rename(ctx, "c2", "c1"); !errors.Is(err, sdk.ErrExists) {
		t.Fatalf("rename onto c1's name: %v, want exists", err)
	}
	c1, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if got := resolve(t, c1.Key, "web"); got == "" {
		t.Fatal("the refused rename changed c2's name")
	}
	if err := e.c.Rename(ctx, "c2", "c2"); err != nil {
		t.Fatalf("rename to a free name: %v", err)
	}
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "web", Networks: []SandboxNetwork{{Network: "red"}}}); err != nil {
		t.Fatalf("container web once the name is free: %v", err)
	}
	for _, id := range []string{"p1", "p2"} {
		if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: id, Front: "cni",
			Networks: []SandboxNetwork{{Network: "red", Connect: Connect{Name: "pod-0"}}}}); err != nil {
			t.Fatalf("CNI pod %s named pod-0: %v", id, err)
		}
	}
	testNameRaces(t, e)
}

// testNameRaces: while a connect under a name is inside the driver, a
// second connect or a rename under that name is refused (both were let
// through: two endpoints named alike when connects raced).
func testNameRaces(t *testing.T, e *env) {
	ctx := context.Background()
	for _, c := range []string{"c3", "c4", "c5"} {
		e.sandbox(c)
	}
	e.connect("red", "c5")
	g := newCallGate()
	e.setGate(&e.veth.joinGate, g)
	first := make(chan error, 1)
	go func() {
		_, err := e.c.Connect(ctx, "red", Connect{Container: "c3", Name: "racy"})
		first <- err
	}()
	<-g.enter // c3's connect is inside the driver, its name not indexed yet
	second := make(chan error, 1)
	go func() {
		_, err := e.c.Connect(ctx, "red", Connect{Container: "c4", Name: "racy"})
		second <- err
	}()
	var err error
	select {
	case err = <-second:
	case <-g.enter:
		err = errors.New("it went on to the driver")
	}
	rerr := e.c.Rename(ctx, "c5", "racy")
	e.setGate(&e.veth.joinGate, nil)
	close(g.open)
	if ferr := <-first; ferr != nil {
		t.Fatalf("the first connect named racy: %v", ferr)
	}
	if !errors.Is(err, sdk.ErrExists) || !strings.Contains(err.Error(), "already has an endpoint named racy (being connected)") {
		t.Fatalf("a second connect named racy while the first is under way: %v, want exists", err)
	}
	if !errors.Is(rerr, sdk.ErrExists) {
		t.Fatalf("a rename to racy while a connect under it is under way: %v, want exists", rerr)
	}
	// Once the first has indexed it, the name is the first's alone.
	if _, err := e.c.Connect(ctx, "red", Connect{Container: "c4", Name: "racy"}); !errors.Is(err, sdk.ErrExists) {
		t.Fatalf("a connect named racy after the first: %v, want exists", err)
	}
}

// TestChangesOutliveTheirCaller: a delete or a disconnect whose caller
// goes away (an HTTP client's timeout) while the driver works finishes
// all the same. Cut short, a delete left the sandbox listed with its
// endpoints, its namespace gone and the rest of its links removed or
// not: a state that looked alive and was not. A connect cut short in
// the driver's join left the pair the driver made after the caller
// had gone, which no undo knew of.
func TestChangesOutliveTheirCaller(t *testing.T) {
	e := newEnv(t)
	e.network("red", "veth", "10.96.0.0/24")
	blue := e.network("blue", "veth", "10.97.0.0/24")
	for _, c := range []string{"c1", "c2"} {
		e.sandbox(c)
		e.connect("red", c)
		e.connect("blue", c)
	}
	leave, join := &e.veth.leaveGate, &e.veth.joinGate
	finished := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s whose caller went away: %v, want it finished", what, err)
		}
	}
	finished("a delete", e.cutShort(leave, func(ctx context.Context) error { return e.c.DeleteSandbox(ctx, "c1") }))
	if _, err := e.c.byContainerID("c1"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("c1 after its delete: %v, want not found", err)
	}
	finished("a disconnect", e.cutShort(leave, func(ctx context.Context) error { return e.c.Disconnect(ctx, "red", "c2") }))
	sb, err := e.c.SandboxByContainer(context.Background(), "c2")
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.Endpoints) != 1 || sb.Endpoints[0].NetworkID != blue.ID {
		t.Fatalf("c2's endpoints after the disconnect from red: %+v, want blue's alone", sb.Endpoints)
	}
	// A connect whose caller goes away while the driver joins: the
	// driver's work is seen whole, and undone.
	err = e.cutShort(join, func(ctx context.Context) error {
		_, err := e.c.Connect(ctx, "red", Connect{Container: "c2"})
		return err
	})
	sb, serr := e.c.SandboxByContainer(context.Background(), "c2")
	if serr != nil {
		t.Fatal(serr)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a connect whose caller went away: %v, want it undone (canceled)", err)
	}
	if len(sb.Endpoints) != 1 || e.leaks().links != 1 {
		t.Fatalf("a connect cut short: %d endpoints and %d links, want 1 of each (blue's)", len(sb.Endpoints), e.leaks().links)
	}
	// A refresh whose caller goes away while it rejoins: its leaves are
	// done, so it runs to its end (cut short, the container was left
	// without its network).
	finished("a refresh", e.cutShort(join, func(ctx context.Context) error {
		_, err := e.c.Refresh(ctx, "c2", sandbox.Options{Hostname: "h2"})
		return err
	}))
	sb, err = e.c.SandboxByContainer(context.Background(), "c2")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(sb.Endpoints); n != e.leaks().links || n == 0 || sb.Endpoints[0].IfName == "" {
		t.Fatalf("after a refresh cut short: %+v, %d links, want every endpoint joined", sb.Endpoints, e.leaks().links)
	}
	if err := e.c.DeleteSandbox(context.Background(), "c2"); err != nil {
		t.Fatal(err)
	}
	// A store write the caller's end cut short is undone in the
	// background once the store answers (outcomeUnknown).
	polltest.Until(t, 10*time.Second, "nothing left", func() bool { return e.leaks() == (leaks{}) })
}

// Unrecorded (sandnet doctor's view of what a start will remove) counts a
// namespace as recorded only by a sandbox record of the host asking: one
// of another host's, or none, is what that host's start removes; a name
// that is not a sandbox ID is never counted.
func TestUnrecorded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb := e.sandbox("c1")
	hostID := sb.HostID
	other := newID()
	rec, err := json.Marshal(Sandbox{ID: other, ContainerID: "c2", HostID: "another-host"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Put(ctx, sandboxKey(other), rec); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	none := newID()
	for _, name := range []string{sb.ID, other, none, "operator"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Unrecorded(ctx, e.store, dir, hostID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{filepath.Join(dir, other), filepath.Join(dir, none)}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Unrecorded = %v, want %v", got, want)
	}
}

// After an agent start every driver hears of every network and endpoint
// the store holds, of every driver: the same plugin loaded under two
// names must not take the other's networks for forgotten ones.
func TestCollectListsEveryNetwork(t *testing.T) {
	e := newEnv(t)
	red := e.network("red", "veth", "10.84.0.0/24")
	quiet := e.network("quiet", "none", "")
	e.sandbox("c1")
	eps := []string{e.connect("red", "c1").ID, e.connect("quiet", "c1").ID}
	e.c = e.start()
	e.veth.mu.Lock()
	defer e.veth.mu.Unlock()
	if len(e.veth.collected) == 0 {
		t.Fatal("the driver got no Collect at the start")
	}
	got := e.veth.collected[len(e.veth.collected)-1]
	nets := got.GetNetworks()
	slices.Sort(nets)
	want := []string{red.ID, quiet.ID}
	slices.Sort(want)
	gotEps := got.GetEndpoints()
	slices.Sort(gotEps)
	slices.Sort(eps)
	if !slices.Equal(nets, want) || !slices.Equal(gotEps, eps) {
		t.Errorf("Collect = %v, want networks %v and endpoints %v", got, want, eps)
	}
}

// TestFileLimitError: a start refuses an open-file limit the stored
// sandboxes cannot fit in (as 146 sandboxes under a limit of 600 did:
// namespaces failed to open and the API accepted nothing), saying what to
// raise; a limit with room passes.
func TestFileLimitError(t *testing.T) {
	if err := fileLimitError(146, 600); err == nil || !strings.Contains(err.Error(), "the open-file limit (RLIMIT_NOFILE) is 600, and the store's 146 sandboxes need about 940") ||
		!strings.Contains(err.Error(), "LimitNOFILE=") {
		t.Fatalf("146 sandboxes under 600 files: %v", err)
	}
	for _, tc := range []struct {
		sandboxes int
		limit     uint64
	}{{0, 1024}, {146, 1024}, {1000, 1 << 20}} {
		if err := fileLimitError(tc.sandboxes, tc.limit); err != nil {
			t.Errorf("%d sandboxes under %d files: %v", tc.sandboxes, tc.limit, err)
		}
	}
}

// deniedLeases is a store whose credentials may not hold leases (a
// Consul ACL token without session rights).
type deniedLeases struct{ store.Store }

func (deniedLeases) LeaseGrant(context.Context, time.Duration) (*pb.Lease, error) {
	return nil, fmt.Errorf("consul denied the request (check the ACL token): 403 (Permission denied: lacks permission 'session:write'): %w", sdk.ErrForbidden)
}
func (deniedLeases) LeaseRenew(context.Context, string) (*pb.Lease, error) {
	return nil, fmt.Errorf("lease: %w", sdk.ErrNotFound)
}
func (deniedLeases) LeasePut(context.Context, string, []byte, string) (*pb.KVPair, error) {
	return nil, fmt.Errorf("lease: %w", sdk.ErrNotFound)
}

// TestLeaseRefusedFailsStart: a store that refuses this host a lease
// fails the start, saying what right is missing: the agent ran without
// one (a warning), the other hosts took it for gone, and a `host rm`
// from one of them deleted its running containers' records.
func TestLeaseRefusedFailsStart(t *testing.T) {
	e := newEnv(t)
	e.c.Close()
	plugins := &testPlugins{store: deniedLeases{e.store}, drivers: e.plugins.drivers}
	alloc, err := ipam.New(ipam.Config{Store: plugins.Store})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(hclog.NewNullLogger(), Config{HostID: "host-a", FilesDir: filepath.Join(e.dir, "files"), NetnsDir: filepath.Join(e.dir, "netns"),
		StubGracePeriod: time.Hour, IPAM: alloc, HostResolvConf: filepath.Join(e.dir, "resolv.conf")}, plugins)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Start(context.Background())
	if !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), `session_prefix "" { policy = "write" }`) {
		t.Fatalf("Start with leases refused = %v, want forbidden naming the right to give", err)
	}
}

// TestDeleteMarkOfUnknownOutcome: a delete whose in-delete mark the store
// may have written without answering (a timeout; the write lands once the
// store resumes) fails, and the sandbox is listed in-delete and refuses
// connects, as its record may say; a delete again finishes it. It stayed
// "ready" and took connects, and the next start deleted it.
func TestDeleteMarkOfUnknownOutcome(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.connected("red", "10.85.0.0/24", "c1")
	e.store.lose("sandnet/v1/sandbox/")
	err := e.c.DeleteSandbox(ctx, "c1")
	e.store.lose("")
	if err == nil || !strings.Contains(err.Error(), "marking sandbox") {
		t.Fatalf("delete with its mark's answer lost = %v, want it to fail marking", err)
	}
	v, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil || !v.InDelete {
		t.Fatalf("after the failed delete: %+v, %v; want it listed in-delete", v, err)
	}
	if _, err := e.c.Connect(ctx, "red", Connect{Container: "c1", Aliases: []string{"again"}}); err == nil {
		t.Fatal("a connect to a sandbox whose delete may have been marked succeeded")
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatalf("the delete again: %v", err)
	}
	if l := e.leaks(); l != (leaks{}) {
		t.Fatalf("left behind: %+v", l)
	}
}

// TestSandboxesLost: the store holding none of the sandboxes the agent
// runs (it lost its data while the agent ran) is told from one that
// holds some of them.
func TestSandboxesLost(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if n := e.c.sandboxesLost(ctx); n != 0 {
		t.Fatalf("no sandbox: %d lost", n)
	}
	a, _ := e.connected("red", "10.86.0.0/24", "c1")
	b := e.sandbox("c2")
	if n := e.c.sandboxesLost(ctx); n != 0 {
		t.Fatalf("both recorded: %d lost", n)
	}
	if err := e.store.Delete(ctx, sandboxKey(a.ID)); err != nil {
		t.Fatal(err)
	}
	if n := e.c.sandboxesLost(ctx); n != 0 {
		t.Fatalf("one recorded: %d lost, want 0 (not a lost store)", n)
	}
	if err := e.store.Delete(ctx, sandboxKey(b.ID)); err != nil {
		t.Fatal(err)
	}
	if n := e.c.sandboxesLost(ctx); n != 2 {
		t.Fatalf("none recorded: %d lost, want 2", n)
	}
}

// TestStartWaitsForTheStore: a start whose store does not answer yet (a
// Consul coming up beside the agent at boot) waits for it, rather than
// failing at once.
func TestStartWaitsForTheStore(t *testing.T) {
	e := newEnv(t)
	e.sandbox("c1")
	e.c.Close()
	e.store.mu.Lock()
	e.store.downUntil = time.Now().Add(700 * time.Millisecond)
	e.store.mu.Unlock()
	e.c = e.start() // fails the test if the start fails
	if _, err := e.c.SandboxByContainer(context.Background(), "c1"); err != nil {
		t.Fatalf("c1 after a start that waited for the store: %v", err)
	}
}

// A namespace that is a sandbox's already — its key, a process's
// /proc/PID/ns/net in it, a runtime namespace another create was given —
// or one of the agent's spares is refused, naming the field, for a new
// sandbox and for a set-key: two sandboxes in one namespace configure
// and, on delete, tear down each other's interfaces and routes. The
// first sandbox keeps its interface and default route.
func TestNamespaceOfAnotherSandboxRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.104.0.0/24")
	e.network("blue", "veth", "10.105.0.0/24")
	web := e.sandbox("web")
	e.connect("red", "web")
	runtimeKey := nstest.NewNetns(t)
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "front", Netns: runtimeKey, Networks: []SandboxNetwork{{Network: "red"}}}); err != nil {
		t.Fatal(err)
	}
	// A process living in web's namespace names it too.
	sleeper := exec.Command("nsenter", "--net="+web.Key, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() }()
	procPath := fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid)
	if !polltest.Wait(5*time.Second, func() bool { return sameNamespace(t, procPath, web.Key) }) {
		t.Fatal("the sleeper never entered web's namespace")
	}
	// A namespace the agent made ahead, as the spare pool makes them.
	spare, err := osl.NewNamespace(filepath.Join(e.c.creatingDir(), "spare-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer spare.Destroy()
	for _, path := range []string{web.Key, procPath, runtimeKey, spare.Path()} {
		_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "thief", Netns: path, Networks: []SandboxNetwork{{Network: "blue", Connect: Connect{Interface: "eth5"}}}})
		if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "netns: ") {
			t.Errorf("create in %s: %v, want a conflict naming netns", path, err)
		}
	}
	e.sandbox("late", func(r *SandboxCreate) { r.ExternalKey = true })
	if _, err := e.c.SetKey(ctx, "late", procPath); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "path: ") {
		t.Errorf("set-key to web's namespace: %v, want a conflict naming path", err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "thief"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("a refused create left sandbox thief: %v", err)
	}
	if a := addresses(t, web.Key); fmt.Sprint(a) != "map[eth0:[10.104.0.2/24]]" {
		t.Errorf("web's namespace after the refusals: %v", a)
	}
	// Each namespace is still free for a sandbox of its own once its
	// sandbox is gone.
	if err := e.c.DeleteSandbox(ctx, "front"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "again", Netns: runtimeKey, Networks: []SandboxNetwork{{Network: "blue"}}}); err != nil {
		t.Fatalf("a create in a namespace its sandbox left: %v", err)
	}
}

// A runtime's DEL (Release with its ifname) retried after one whose
// store write failed part-way finishes the removal: the endpoint, whose
// interface went with the first try, is still the ifname's attachment
// (its record names it). The retry answered success and left the
// endpoint, its address and its ports until the agent restarted.
func TestReleaseRetriedAfterAFailedRemoval(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.107.0.0/24")
	key := nstest.NewNetns(t)
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "pod", Netns: key, Front: "cni",
		Networks: []SandboxNetwork{{Network: "red", Connect: Connect{Interface: "eth0"}}}}); err != nil {
		t.Fatal(err)
	}
	e.store.hang("endpoint/") // the removal's store write does not answer
	if err := e.c.Release(ctx, "red", "pod", "eth0"); err == nil {
		t.Fatal("a release whose store write failed succeeded")
	}
	e.store.hang("")
	if err := e.c.Release(ctx, "red", "pod", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "pod"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the retried release left the sandbox: %v", err)
	}
	if n, err := e.c.Network(ctx, "red"); err != nil || len(n.Endpoints) != 0 {
		t.Fatalf("the retried release left the network's endpoints: %v, %v", n, err)
	}
}

// A driver's replay (its restart) finishes a disconnect that failed
// part-way, rather than joining the endpoint again: it made the sandbox a
// new interface, down and without addresses, that no endpoint owned.
func TestReplayFinishesAFailedDisconnect(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, _ := e.connected("red", "10.108.0.0/24", "c1")
	e.store.hang("endpoint/") // the disconnect's store write does not answer
	if err := e.c.Disconnect(ctx, "red", "c1"); err == nil {
		t.Fatal("a disconnect whose store write failed succeeded")
	}
	e.store.hang("")
	if err := e.c.Replay(ctx, "veth"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(addresses(t, sb.Key)); got != "map[]" {
		t.Errorf("interfaces in the sandbox after the replay: %s", got)
	}
	ns, err := osl.OpenNamespace(sb.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if links := nstest.Links(t, ns.Handle()); len(links) != 1 {
		t.Errorf("links in the sandbox after the replay: %d, want only lo", len(links))
	}
	if n, err := e.c.Network(ctx, "red"); err != nil || len(n.Endpoints) != 0 {
		t.Errorf("the network's endpoints after the replay: %v, %v", n, err)
	}
}

// A driver's replay keeps the endpoints that have no interface at all (a
// host network's): only an endpoint whose removal failed part-way is
// finished. The first cut of that took every endpoint without an
// interface for one, and a restart of the host or none driver
// disconnected all their containers.
func TestReplayKeepsEndpointsWithoutInterfaces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "host", Driver: "host"}); err != nil {
		t.Fatal(err)
	}
	e.sandbox("h1", func(r *SandboxCreate) { r.HostMode = true })
	e.connect("host", "h1")
	if err := e.c.Replay(ctx, "host"); err != nil {
		t.Fatal(err)
	}
	if sb, err := e.c.SandboxByContainer(ctx, "h1"); err != nil || len(sb.Endpoints) != 1 {
		t.Fatalf("h1 after the host driver's replay: %+v, %v; want its endpoint", sb, err)
	}
	if err := e.c.Disconnect(ctx, "host", "h1"); err != nil {
		t.Fatalf("disconnecting h1 after the replay: %v", err)
	}
}

// The replay finishing a CNI DEL that failed part-way hands the
// container's published ports over to its other endpoint, as the DEL
// would have; they were lost.
func TestReplayFinishingAReleaseHandsPortsOver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.109.0.0/24")
	blue := e.network("blue", "veth", "10.110.0.0/24")
	e.sandbox("pod", func(r *SandboxCreate) {
		r.Front = "cni"
		r.Networks = []SandboxNetwork{{Network: "red", Connect: Connect{Publish: []string{"8090:80"}}}}
	})
	e.connect("blue", "pod")
	e.store.hang("endpoint/") // the DEL's store write does not answer
	if err := e.c.Release(ctx, "red", "pod", ""); err == nil {
		t.Fatal("a release whose store write failed succeeded")
	}
	e.store.hang("")
	if err := e.c.Replay(ctx, "veth"); err != nil {
		t.Fatal(err)
	}
	sb, err := e.c.SandboxByContainer(ctx, "pod")
	if err != nil || len(sb.Endpoints) != 1 || sb.Endpoints[0].NetworkID != blue.ID || len(sb.Endpoints[0].Ports) != 1 {
		t.Fatalf("pod after the replay: %+v, %v; want its blue endpoint publishing 8090", sb, err)
	}
}

// A runtime's DEL retried after one whose store write landed but whose
// answer was lost (the record gone, the endpoint still the sandbox's,
// leaving) releases it, and the front's sandbox, empty, goes: every DEL
// after answered success and left the sandbox, and every ADD of the
// container was refused as connected already.
func TestReleaseAfterALostAnswer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	red := e.network("red", "veth", "10.111.0.0/24")
	key := nstest.NewNetns(t)
	sb, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "pod", Netns: key, Front: "cni",
		Networks: []SandboxNetwork{{Network: "red", Connect: Connect{Interface: "eth0"}}}})
	if err != nil {
		t.Fatal(err)
	}
	e.store.hang("endpoint/")
	if err := e.c.Release(ctx, "red", "pod", "eth0"); err == nil {
		t.Fatal("a release whose store write failed succeeded")
	}
	e.store.hang("")
	// The write had landed after all.
	if err := e.store.Store.Delete(ctx, endpointKey(red.ID, sb.Endpoints[0].ID)); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Release(ctx, "red", "pod", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.SandboxByContainer(ctx, "pod"); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("the retried release left the sandbox: %v", err)
	}
}
