package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/resolver"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// withSpares restarts the env's controller with n namespaces made ahead
// of time.
func (e *env) withSpares(n int) {
	e.t.Helper()
	e.c.Close()
	e.spares = n
	e.c = e.start()
}

// A create that lists networks answers with the sandbox joined to all of
// them: interfaces with their addresses and routes in the namespace at its
// key, names in the hosts file, the embedded resolver in resolv.conf. With
// and without spare namespaces.
func TestCreateWithNetworks(t *testing.T) {
	for _, spares := range []int{0, 2} {
		t.Run(fmt.Sprintf("spares=%d", spares), func(t *testing.T) {
			e := newEnv(t)
			e.withSpares(spares)
			ctx := context.Background()
			e.network("red", "veth", "10.84.0.0/24")
			e.network("blue", "veth", "10.85.0.0/24")
			before := e.leaks()
			for i := range 3 { // the spares run out and come back
				container := fmt.Sprintf("c%d", i)
				sb, err := e.c.NewSandbox(ctx, SandboxCreate{
					ContainerID: container, Options: sandbox.Options{Hostname: container},
					Networks: []SandboxNetwork{{Network: "red"}, {Network: "blue", Connect: Connect{IP: fmt.Sprintf("10.85.0.%d", 10+i), Aliases: []string{"db"}}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(sb.Endpoints) != 2 || sb.Endpoints[0].IfName != "eth0" || sb.Endpoints[1].IfName != "eth1" {
					t.Fatalf("endpoints = %+v", sb.Endpoints)
				}
				if want := filepath.Join(e.dir, "netns", sb.ID); sb.Key != want {
					t.Fatalf("key = %s, want %s", sb.Key, want)
				}
				want := fmt.Sprintf("map[eth0:[10.84.0.%d/24] eth1:[10.85.0.%d/24]]", 2+i, 10+i)
				if got := fmt.Sprint(addresses(t, sb.Key)); got != want {
					t.Fatalf("addresses in the sandbox = %s, want %s", got, want)
				}
				if gw := defaultGateway(t, sb.Key); gw != "10.85.0.1 dev eth1" { // equal priorities: the first network by name
					t.Fatalf("default route = %q", gw)
				}
				if rc := readFile(t, sb.ResolvConf); !strings.Contains(rc, "nameserver 127.0.0.11") {
					t.Fatalf("resolv.conf has not the embedded resolver:\n%s", rc)
				}
				if hosts := readFile(t, sb.Hosts); !strings.Contains(hosts, fmt.Sprintf("10.84.0.%d\t%s", 2+i, container)) {
					t.Fatalf("hosts file:\n%s", hosts)
				}
				// Its embedded resolver answers (its sockets were bound in
				// the spare namespace, with spares).
				if got := resolve(t, sb.Key, container); !strings.Contains(got, fmt.Sprintf("10.84.0.%d", 2+i)) {
					t.Fatalf("%s resolves to %q in its sandbox, want 10.84.0.%d among them", container, got, 2+i)
				}
				insp, err := e.c.SandboxByContainer(ctx, container)
				if err != nil || len(insp.Endpoints) != 2 {
					t.Fatalf("inspect = %+v, %v", insp, err)
				}
				for _, ep := range insp.Endpoints {
					if got := fmt.Sprint(addresses(t, sb.Key)[ep.IfName]); got != "["+ep.Address.String()+"]" {
						t.Fatalf("inspect says %s has %s; the namespace has %s", ep.IfName, ep.Address, got)
					}
				}
			}
			if l := e.leaks(); l.allocations != before.allocations+6 {
				t.Fatalf("allocations = %d, want %d", l.allocations, before.allocations+6)
			}
			for i := range 3 {
				if err := e.c.DeleteSandbox(ctx, fmt.Sprintf("c%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			if after := e.leaks(); after != before {
				t.Fatalf("after the deletes: %+v, want %+v", after, before)
			}
		})
	}
}

// A create whose network list is wrong fails before anything is made,
// naming the entry.
func TestCreateWithBadNetworksChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.86.0.0/24")
	before := e.leaks()
	tests := []struct {
		name string
		nets []SandboxNetwork
		is   error
		msg  string
	}{
		{"unknown network", []SandboxNetwork{{Network: "red"}, {Network: "nope"}}, sdk.ErrNotFound, `networks[1].network: network "nope" not found`},
		{"no network", []SandboxNetwork{{}}, sdk.ErrInvalid, "networks[0].network: must not be empty"},
		{"twice", []SandboxNetwork{{Network: "red"}, {Network: "red"}}, sdk.ErrInvalid, "networks[1].network: network red is listed twice"},
		{"bad port", []SandboxNetwork{{Network: "red", Connect: Connect{Publish: []string{"80/sctp"}}}}, sdk.ErrInvalid, "networks[0].publish"},
		{"bad ip", []SandboxNetwork{{Network: "red", Connect: Connect{IP: "10.86.0.x"}}}, sdk.ErrInvalid, "networks[0].ip"},
		{"other container", []SandboxNetwork{{Network: "red", Connect: Connect{Container: "x"}}}, sdk.ErrInvalid, "networks[0].container"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1", Networks: tt.nets})
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v containing %q", err, tt.is, tt.msg)
			}
			if _, err := e.c.SandboxByContainer(ctx, "c1"); !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("the sandbox exists after a failed create: %v", err)
			}
			if after := e.leaks(); after != before {
				t.Fatalf("a failed create changed things: before %+v, after %+v", before, after)
			}
		})
	}
}

// A create with networks that fails on the way — the driver's join, a
// later network's pool, the store write carrying both records, an answer
// lost, a store that does not answer — leaves nothing: no sandbox, record, endpoint, address, interface
// or namespace (at its key or half-made).
func TestFailedCreateWithNetworksLeavesNothing(t *testing.T) {
	e := newEnv(t)
	e.withSpares(1)
	ctx := context.Background()
	e.network("red", "veth", "10.87.0.0/24")
	e.network("tiny", "veth", "10.88.0.0/30") // one address after the gateway
	e.sandbox("holder")
	e.connect("tiny", "holder")
	before := e.leaks()
	nothingLeft := func(t *testing.T, wait bool) {
		t.Helper()
		if wait {
			polltest.Until(t, 15*time.Second, "the rollback", func() bool { return e.leaks() == before })
		}
		if after := e.leaks(); after != before {
			t.Fatalf("a failed create left %+v (before %+v)", after, before)
		}
		if _, err := e.c.SandboxByContainer(ctx, "c1"); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("the sandbox exists after a failed create: %v", err)
		}
		recs, err := e.store.List(ctx, "sandnet/v1/sandbox/")
		if err != nil || len(recs) != 1 { // the holder's
			t.Fatalf("sandbox records = %d, %v; want only the holder's", len(recs), err)
		}
		left, _ := os.ReadDir(filepath.Join(e.dir, "netns", ".creating"))
		for _, l := range left {
			if !strings.HasPrefix(l.Name(), sparePrefix) {
				t.Fatalf("half-made namespace left: %s", l.Name())
			}
		}
		keys, _ := os.ReadDir(filepath.Join(e.dir, "netns"))
		if len(keys) != 2 { // .creating and the holder's key
			t.Fatalf("namespace keys: %v", keys)
		}
	}
	create := func(nets ...string) error {
		req := SandboxCreate{ContainerID: "c1"}
		for _, n := range nets {
			req.Networks = append(req.Networks, SandboxNetwork{Network: n})
		}
		_, err := e.c.NewSandbox(ctx, req)
		return err
	}

	t.Run("driver join fails", func(t *testing.T) {
		e.veth.mu.Lock()
		e.veth.failJoin = true
		e.veth.mu.Unlock()
		err := create("red")
		e.veth.mu.Lock()
		e.veth.failJoin = false
		e.veth.mu.Unlock()
		if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(err.Error(), "networks[0]") {
			t.Fatalf("err = %v, want ErrUnavailable naming networks[0]", err)
		}
		nothingLeft(t, false)
	})
	t.Run("second network exhausted", func(t *testing.T) {
		err := create("red", "tiny")
		if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "networks[1]") || !strings.Contains(err.Error(), "tiny") {
			t.Fatalf("err = %v, want ErrConflict naming networks[1] and tiny", err)
		}
		nothingLeft(t, false)
	})
	t.Run("store write fails", func(t *testing.T) {
		e.store.fail("sandnet/v1/sandbox/")
		err := create("red")
		e.store.fail("")
		if err == nil || !strings.Contains(err.Error(), "injected store failure") {
			t.Fatalf("err = %v", err)
		}
		nothingLeft(t, false)
	})
	t.Run("answer lost", func(t *testing.T) {
		e.store.lose("sandnet/v1/sandbox/")
		err := create("red")
		e.store.lose("")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		nothingLeft(t, true)
	})
	t.Run("store does not answer", func(t *testing.T) {
		e.store.hang("sandnet/v1/sandbox/")
		err := create("red")
		waits := e.store.hang("")
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		// The caller hears of it after one timeout: the undo does not
		// wait out a second one for the record's delete, which goes in
		// the background once the store answers.
		if waits != 1 {
			t.Fatalf("the create waited out the store's timeout %d times, want once", waits)
		}
		nothingLeft(t, true)
	})
	// And afterwards it works.
	if err := create("red"); err != nil {
		t.Fatal(err)
	}
}

// resolve asks the embedded resolver inside the namespace at key for the
// A records of name and returns them, space-separated.
func resolve(t *testing.T, key, name string) string {
	t.Helper()
	return resolveAt(t, key, "127.0.0.11", name)
}

// resolveAt asks the resolver at server:53 inside the namespace at key for
// name's addresses.
func resolveAt(t *testing.T, key, server, name string) string {
	t.Helper()
	ns, err := osl.OpenNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var answer *dns.Msg
	err = ns.Do(func() error {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		var err error
		answer, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, net.JoinHostPort(server, "53"))
		return err
	})
	if err != nil {
		t.Fatalf("asking for %s in %s: %v", name, key, err)
	}
	var out []string
	for _, rr := range answer.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return strings.Join(out, " ")
}

// TestCNIEndpointsGetResolverAddresses: each endpoint of a CNI front's
// sandbox is given an address of the embedded resolver of its own
// (127.0.0.11, then the lowest free from 127.0.0.12 on), on which the
// resolver answers while the endpoint is joined, also after a restart.
// podman writes resolv.conf from each attachment's result and takes an
// attachment's nameservers out of it by value when it goes: with
// 127.0.0.11 for all, a container disconnected from its first network
// was left with no nameserver for the others. The API's endpoints name
// none.
func TestCNIEndpointsGetResolverAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, name := range []string{"red", "blue", "green"} {
		e.network(name, "veth", fmt.Sprintf("10.%d.0.0/24", 86+i))
	}
	sb, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "pod", Front: "cni", Networks: []SandboxNetwork{{Network: "red"}}})
	if err != nil {
		t.Fatal(err)
	}
	given := func(net, want string) {
		t.Helper()
		ep, err := e.c.Connect(ctx, net, Connect{Container: "pod"})
		if err != nil {
			t.Fatal(err)
		}
		if ep.Resolver.String() != want {
			t.Fatalf("the endpoint on %s was given the resolver at %s, want %s", net, ep.Resolver, want)
		}
	}
	if got := sb.Endpoints[0].Resolver.String(); got != "127.0.0.11" {
		t.Fatalf("the first endpoint was given the resolver at %s, want 127.0.0.11", got)
	}
	given("blue", "127.0.0.12")
	answers := func(server string) bool {
		t.Helper()
		return strings.Contains(resolveAt(t, sb.Key, server, "pod"), "10.87.0.2")
	}
	// The first network goes: 127.0.0.12 answers still, and the next
	// endpoint is given the address it freed.
	if err := e.c.Disconnect(ctx, "red", "pod"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resolveAt(t, sb.Key, "127.0.0.12", "pod"), "10.87.0.2") {
		t.Fatal("no answer at 127.0.0.12 once the first network went")
	}
	given("green", "127.0.0.11")
	given("red", "127.0.0.13")

	e.c.Close()
	e.c = e.start()
	for _, server := range []string{"127.0.0.11", "127.0.0.12", "127.0.0.13"} {
		if !answers(server) {
			t.Fatalf("no answer at %s after a restart", server)
		}
	}
	if err := e.c.Disconnect(ctx, "blue", "pod"); err != nil {
		t.Fatal(err)
	}
	ns, err := osl.OpenNamespace(sb.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := ns.Do(func() error {
		l, err := net.ListenPacket("udp4", "127.0.0.12:53")
		if err == nil {
			l.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("127.0.0.12:53 still taken once its endpoint went: %v", err)
	}

	// The API's endpoints are given none: their sandbox's resolv.conf
	// names 127.0.0.11.
	e.sandbox("api")
	if ep := e.connect("blue", "api"); ep.Resolver.IsValid() {
		t.Fatalf("an API endpoint was given the resolver at %s", ep.Resolver)
	}
}

// A sandbox whose files an older agent kept under data_dir/sandboxes/<id>
// keeps them there after a restart: its container has them bind-mounted.
func TestRestoreKeepsLegacyFiles(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.89.0.0/24")
	sb := e.sandbox("c1", func(r *SandboxCreate) { r.Hostname = "web" })
	if want := filepath.Join(e.dir, "files", sb.ID, "hosts"); sb.Hosts != want {
		t.Fatalf("hosts at %s, want %s", sb.Hosts, want)
	}
	legacy := filepath.Join(e.dir, "data", "sandboxes", sb.ID)
	if err := os.MkdirAll(filepath.Dir(legacy), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Dir(sb.Hosts), legacy); err != nil {
		t.Fatal(err)
	}
	e.c = e.start() // an agent restart, the files where an older one put them
	claimed, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(legacy, "hosts"); claimed.Hosts != want {
		t.Fatalf("restored sandbox's hosts at %s, want %s", claimed.Hosts, want)
	}
	ep := e.connect("red", "c1")
	if hosts := readFile(t, claimed.Hosts); !strings.Contains(hosts, ep.Address.Addr().String()+"\tweb") {
		t.Fatalf("the legacy hosts file was not kept up to date:\n%s", hosts)
	}
}

// spareKeys lists the spare namespaces in the scratch directory.
func (e *env) spareKeys() []string {
	entries, _ := os.ReadDir(filepath.Join(e.dir, "netns", ".creating"))
	var out []string
	for _, en := range entries {
		if strings.HasPrefix(en.Name(), sparePrefix) {
			out = append(out, en.Name())
		}
	}
	return out
}

// Spare namespaces are made at start, a create takes one (its namespace
// is the spare, moved to the sandbox's key), the pool fills again once no
// attach is in flight, and a stop destroys what it holds.
func TestSpareNamespaces(t *testing.T) {
	e := newEnv(t)
	e.withSpares(2)
	polltest.Until(t, 15*time.Second, "two spares made", func() bool { return len(e.spareKeys()) == 2 })
	before := map[uint64]string{} // the spares' namespaces, by inode
	for _, name := range e.spareKeys() {
		before[inode(t, filepath.Join(e.dir, "netns", ".creating", name))] = name
	}
	sb := e.sandbox("c1")
	// The pool may make the next spare at once: what matters is that the
	// sandbox's namespace is one of those made before, gone from the pool.
	taken, ok := before[inode(t, sb.Key)]
	if !ok {
		t.Fatalf("the sandbox's namespace is none of the spares %v", slices.Collect(maps.Values(before)))
	}
	if slices.Contains(e.spareKeys(), taken) {
		t.Fatalf("the sandbox has the namespace of spare %s, which the pool still holds", taken)
	}
	polltest.Until(t, 15*time.Second, "the pool filled again", func() bool { return len(e.spareKeys()) == 2 })
	e.c.Close()
	if left := e.spareKeys(); len(left) != 0 {
		t.Fatalf("spares left after a stop: %v", left)
	}
	e.spares = 0
	e.c = e.start()
	if !osl.Exists(sb.Key) {
		t.Fatal("the sandbox's namespace went with the spares")
	}
}

// SetSpareNamespaces resizes the pool: the old one's spares are
// destroyed, the new size is made, and 0 keeps none.
func TestSetSpareNamespaces(t *testing.T) {
	e := newEnv(t)
	e.withSpares(1)
	polltest.Until(t, 15*time.Second, "one spare made", func() bool { return len(e.spareKeys()) == 1 })
	old := e.spareKeys()[0]
	e.c.SetSpareNamespaces(3)
	polltest.Until(t, 15*time.Second, "three spares made", func() bool { return len(e.spareKeys()) == 3 })
	if slices.Contains(e.spareKeys(), old) {
		t.Fatalf("the old pool's spare %s is still there", old)
	}
	e.c.SetSpareNamespaces(0)
	if left := e.spareKeys(); len(left) != 0 {
		t.Fatalf("spares left with spare_namespaces 0: %v", left)
	}
	e.sandbox("c1") // made fresh, with no pool
}

// A reload's stub_grace_period applies to the stubs waiting since the
// start: lengthened, they keep waiting; shortened below the time already
// waited, the unclaimed ones are deleted at once, leaving nothing behind.
func TestSetStubGracePeriod(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	before := e.leaks()
	e.network("red", "veth", "10.93.0.0/24")
	for _, c := range []string{"c1", "c2"} {
		e.sandbox(c)
		e.connect("red", c)
	}
	e.c.Close()
	e.c = e.start() // a grace period of an hour: c1 and c2 are stubs
	stub := func(c string) bool {
		sb, err := e.c.SandboxByContainer(ctx, c)
		return err == nil && sb.Stub
	}
	if !stub("c1") || !stub("c2") {
		t.Fatal("c1 and c2 are not stubs after the restart")
	}
	if !e.c.SetStubGracePeriod(50*time.Millisecond) || !e.c.SetStubGracePeriod(time.Hour) {
		t.Fatal("SetStubGracePeriod found no stubs waiting")
	}
	time.Sleep(200 * time.Millisecond) // past the short period, which was lengthened again
	if !stub("c1") || !stub("c2") {
		t.Fatal("the stubs were deleted within the lengthened grace period")
	}
	if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"}); err != nil { // claimed: it stays
		t.Fatal(err)
	}
	if !e.c.SetStubGracePeriod(0) {
		t.Fatal("SetStubGracePeriod(0) found no stubs waiting")
	}
	polltest.Until(t, 15*time.Second, "the unclaimed stub deleted", func() bool {
		_, err := e.c.SandboxByContainer(ctx, "c2")
		return errors.Is(err, sdk.ErrNotFound)
	})
	if sb, err := e.c.SandboxByContainer(ctx, "c1"); err != nil || sb.Stub {
		t.Fatalf("the claimed c1: %+v, %v", sb, err)
	}
	if e.c.SetStubGracePeriod(time.Minute) {
		t.Error("SetStubGracePeriod after the stubs were reaped said some were waiting")
	}
	if err := e.c.DeleteSandbox(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	if after := e.leaks(); after != before {
		t.Errorf("leaks: %+v, before %+v", after, before)
	}
}

// A claim racing the grace period's end: the reaper has begun deleting
// the stub (it waits for the sandbox's lock, held here as a long
// operation would) when the container's create comes. The create must
// not succeed with a sandbox the reaper then deletes: it is refused, or
// it wins and the sandbox stays.
func TestClaimRacingTheReaper(t *testing.T) {
	for _, how := range []string{"create", "restore"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.network("red", "veth", "10.94.0.0/24")
			e.sandbox("c1")
			e.connect("red", "c1")
			e.c.Close()
			e.c = e.start() // c1 is a stub
			op, err := e.c.byContainerID("c1")
			if err != nil {
				t.Fatal(err)
			}
			op.mu.Lock()
			reaped := make(chan struct{})
			go func() { e.c.reapStubs(); close(reaped) }()
			polltest.Until(t, 15*time.Second, "the reaper begun deleting c1", func() bool { return e.c.stateOf(op).deleting })
			claimed := make(chan error, 1)
			go func() {
				var err error
				if how == "create" {
					_, err = e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c1"})
				} else {
					_, err = e.c.RestoreSandbox(ctx, "c1")
				}
				claimed <- err
			}()
			answered := false
			select {
			case err = <-claimed: // refused at once
				answered = true
			case <-time.After(100 * time.Millisecond): // waits for the lock
			}
			op.mu.Unlock()
			<-reaped
			if !answered {
				err = <-claimed
			}
			_, lookErr := e.c.SandboxByContainer(ctx, "c1")
			switch {
			case err == nil && lookErr != nil:
				t.Fatalf("the %s succeeded, and the reaper deleted the sandbox it claimed: %v", how, lookErr)
			case err != nil && !errors.Is(err, sdk.ErrForbidden):
				t.Fatalf("the %s failed with %v, want forbidden (being deleted)", how, err)
			case err != nil && !errors.Is(lookErr, sdk.ErrNotFound):
				t.Fatalf("the %s was refused, and the sandbox is still there: %v", how, lookErr)
			}
		})
	}
}

// A delete that began after a create claimed the stub, and took the
// sandbox's lock first, leaves the create nothing to answer with: it is
// refused rather than answered with the deleted sandbox.
func TestClaimAfterTheDeleteWon(t *testing.T) {
	e := newEnv(t)
	e.sandbox("c1")
	e.c.Close()
	e.c = e.start()
	op, err := e.c.byContainerID("c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteSandbox(context.Background(), "c1"); err != nil { // the delete that won
		t.Fatal(err)
	}
	if sb, err := e.c.claimWithNetworks(context.Background(), op, nil); !errors.Is(err, sdk.ErrForbidden) || !strings.Contains(err.Error(), "was deleted while the create claimed it") {
		t.Fatalf("claiming a deleted stub: %+v, %v; want it refused", sb, err)
	}
}

// A stub claimed by a create that lists networks is connected to those it
// is not on yet; the one it is on is left as it is.
func TestClaimWithNetworks(t *testing.T) {
	e := newEnv(t)
	var nets []SandboxNetwork
	for i, name := range []string{"red", "blue"} {
		e.network(name, "veth", fmt.Sprintf("10.%d.0.0/24", 90+i))
		nets = append(nets, SandboxNetwork{Network: name})
	}
	sb := e.sandbox("c1")
	red := e.connect("red", "c1")
	e.c = e.start() // an agent restart: c1 is a stub
	claimed, err := e.c.NewSandbox(context.Background(), SandboxCreate{ContainerID: "c1", Networks: nets})
	if err != nil {
		t.Fatal(err)
	}
	if claimed.ID != sb.ID || len(claimed.Endpoints) != 2 {
		t.Fatalf("claimed = %+v, want sandbox %s on two networks", claimed, sb.ID)
	}
	got := addresses(t, sb.Key)
	if fmt.Sprint(got[red.IfName]) != "["+red.Address.String()+"]" || len(got) != 2 {
		t.Fatalf("interfaces after the claim: %v (red's endpoint %s %s)", got, red.IfName, red.Address)
	}
}

// TestFailedClaimChangesNothing: a create claiming a stub whose connect
// to a second network fails (its pool is full) leaves the stub as it was:
// a stub still, not on the first network, no address taken; a claim
// after that succeeds. It was left claimed (never to be reaped) and on
// the first network, and the retry was refused: the container already
// had a sandbox.
func TestFailedClaimChangesNothing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.92.0.0/24")
	e.network("full", "veth", "10.93.0.0/30") // one address besides the gateway
	e.sandbox("holder")
	e.connect("full", "holder")
	sb := e.sandbox("c6")
	e.c = e.start() // an agent restart: c6 is a stub
	before := e.leaks()
	_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c6", Networks: []SandboxNetwork{{Network: "red"}, {Network: "full"}}})
	if err == nil || !strings.Contains(err.Error(), "networks[1]") {
		t.Fatalf("claim with a second network whose pool is full: %v, want it refused naming networks[1]", err)
	}
	op, err := e.c.byContainerID("c6")
	if err != nil {
		t.Fatal(err)
	}
	if !e.c.stateOf(op).stub || len(op.sb.Endpoints()) != 0 {
		t.Fatalf("c6 after the failed claim: stub %v, endpoints %+v; want a stub on no network", e.c.stateOf(op).stub, op.sb.Endpoints())
	}
	if got := addresses(t, sb.Key); len(got) != 0 {
		t.Fatalf("c6's namespace after the failed claim: %v, want no interface", got)
	}
	if after := e.leaks(); after != before {
		t.Fatalf("after the failed claim: %+v, want %+v", after, before)
	}
	claimed, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: "c6", Networks: []SandboxNetwork{{Network: "red"}}})
	if err != nil || claimed.ID != sb.ID || len(claimed.Endpoints) != 1 {
		t.Fatalf("claiming c6 again on red: %+v, %v", claimed, err)
	}
}

// preparedSpares returns, by the ID of the endpoint it was prepared for,
// the key of each spare namespace the pool holds prepared for network
// netID.
func (e *env) preparedSpares(netID string) map[string]string {
	e.c.mu.Lock()
	pool := e.c.pool
	e.c.mu.Unlock()
	out := map[string]string{}
	for _, sp := range pool.Prepared() {
		if sp.prep.netID == netID {
			out[sp.prep.epID] = sp.ns.Path()
		}
	}
	return out
}

// After a create naming a network first, the pool keeps spares whose
// attach to that network the driver has prepared: the next such create
// takes one, and its sandbox is the prepared interface, configured. A
// create without networks still gets a plain spare, with no interface
// but loopback; deleting the network destroys what was prepared for it.
func TestPreparedSpares(t *testing.T) {
	// The driver's side of a prepared pair down, or up already (as the
	// bridge leaves it): then the sandbox side is set up, link waited for
	// and default route, before the driver answers.
	for _, up := range []bool{false, true} {
		t.Run(fmt.Sprintf("up=%v", up), func(t *testing.T) { testPreparedSpares(t, up) })
	}
}

func testPreparedSpares(t *testing.T, up bool) {
	e := newEnv(t)
	e.veth.prepareUp = up
	e.withSpares(2)
	ctx := context.Background()
	red := e.network("red", "veth", "10.92.0.0/24")
	before := e.leaks()
	create := func(container string, nets ...SandboxNetwork) *Sandbox {
		t.Helper()
		sb, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: container, Options: sandbox.Options{Hostname: container}, Networks: nets})
		if err != nil {
			t.Fatal(err)
		}
		return sb
	}
	create("c0", SandboxNetwork{Network: "red"}) // makes red the pool's target
	polltest.Until(t, 15*time.Second, "two spares prepared for red", func() bool { return len(e.preparedSpares(red.ID)) == 2 })
	// The pool may prepare more between the creates: the driver's record
	// says which pair each join took.
	for i := 1; i <= 3; i++ { // the third may run out of prepared spares
		sb := create(fmt.Sprintf("c%d", i), SandboxNetwork{Network: "red"})
		e.checkPreparedJoin(t, sb.ContainerID, sb.Key, &sb.Endpoints[0], i < 3, "10.92.0.1")
	}
	// A create without networks: a plain spare, loopback alone.
	plain := create("bare")
	if names := nstest.LinkNames(t, plain.Key); fmt.Sprint(names) != "[lo]" {
		t.Fatalf("interfaces of a sandbox created without networks: %v; want lo alone", names)
	}
	for _, c := range []string{"c0", "c1", "c2", "c3", "bare"} {
		if err := e.c.DeleteSandbox(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	keys := e.preparedSpares(red.ID)
	if err := e.c.DeleteNetwork(ctx, "red"); err != nil {
		t.Fatal(err)
	}
	for id, key := range keys {
		if osl.Exists(key) {
			t.Fatalf("the spare prepared for endpoint %s of the deleted network is still at %s", short(id), key)
		}
	}
	if n := len(e.preparedSpares(red.ID)); n != 0 {
		t.Fatalf("%d spares prepared for the deleted network", n)
	}
	polltest.Until(t, 15*time.Second, "the prepared pairs gone with their namespaces", func() bool {
		links := nstest.Links(t, nil)
		return !slices.ContainsFunc(links, func(l netlink.Link) bool { return strings.HasPrefix(l.Attrs().Name, "vh") })
	})
	if after := e.leaks(); after != before {
		t.Fatalf("after the deletes: %+v, want %+v", after, before)
	}
}

// A create that takes the last spare has the next made at once, without
// waiting for a quiet moment: creates in a burst keep finding one. With
// two spares the first create leaves the maker waiting for a quiet
// moment, and the one that takes the last must wake it there.
func TestSpareAfterTheLastIsMadeAtOnce(t *testing.T) {
	for _, spares := range []int{1, 2} {
		t.Run(fmt.Sprintf("spares=%d", spares), func(t *testing.T) {
			e := newEnv(t)
			e.withSpares(spares)
			polltest.Until(t, 15*time.Second, "the spares made", func() bool { return len(e.spareKeys()) == spares })
			e.c.quiet.Enter() // as if attaches were in flight all along
			defer e.c.quiet.Leave()
			for round := range 2 {
				for i := range spares { // the last of these takes the last spare
					e.sandbox(fmt.Sprintf("c%d-%d", round, i))
				}
				polltest.Until(t, 15*time.Second, "a spare made again, attaches in flight", func() bool { return len(e.spareKeys()) >= 1 })
			}
		})
	}
}

// shyDriver gives no interface and prepares nothing, counting the times
// it is asked to.
type shyDriver struct {
	noneDriver
	asked atomic.Int32
}

func (d *shyDriver) Prepare(context.Context, *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	d.asked.Add(1)
	return &pb.PrepareResponse{}, nil
}

// A network whose driver prepares nothing is asked once, and its creates
// get plain spares; the spare the asking took goes back to the pool's
// plain ones or is destroyed, never given out prepared.
func TestDriverThatPreparesNothing(t *testing.T) {
	e := newEnv(t)
	shy := &shyDriver{}
	sc, stop, err := driver.InProcess(sdk.Info{Name: "shy"}, shy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.plugins.drivers["shy"] = sc
	e.withSpares(2)
	ctx := context.Background()
	if _, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "quiet", Driver: "shy"}); err != nil {
		t.Fatal(err)
	}
	create := func(i int) {
		t.Helper()
		if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: fmt.Sprintf("c%d", i), Networks: []SandboxNetwork{{Network: "quiet"}}}); err != nil {
			t.Fatal(err)
		}
		polltest.Until(t, 15*time.Second, "the plain spares made again", func() bool { return len(e.spareKeys()) == 2 })
	}
	create(0)
	// The pool asks once its plain spares are all there.
	polltest.Until(t, 15*time.Second, "the driver asked to prepare", func() bool { return shy.asked.Load() > 0 })
	for i := 1; i < 4; i++ {
		create(i)
	}
	if n := shy.asked.Load(); n != 1 {
		t.Fatalf("the driver was asked to prepare %d times; want once", n)
	}
	e.c.mu.Lock()
	pool := e.c.pool
	e.c.mu.Unlock()
	target, n := pool.Target(), len(pool.Prepared())
	if target != "" {
		t.Fatalf("the pool still prepares for network %s", short(target))
	}
	if n != 0 {
		t.Fatalf("%d prepared spares for a driver that prepares nothing", n)
	}
}

// A sandbox disconnected from its last network has nothing on
// 127.0.0.11, as after a restart: a query is refused at once, and no
// name goes to the upstreams through it (a container without a network
// is as closed as one on an internal network). The next connect starts
// the resolver again.
func TestLastDisconnectStopsTheResolver(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	sb, _ := e.connected("red", "10.106.0.0/24", "c1")
	if got := resolve(t, sb.Key, "c1"); got != "10.106.0.2" {
		t.Fatalf("c1 resolved to %q while connected", got)
	}
	if err := e.c.Disconnect(ctx, "red", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := exchange(sb.Key, "127.0.0.11", "example.com"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("a query once c1 has no network: %v, want it refused", err)
	}
	if fw := (view{x: e.c.names, nets: func() []string { return nil }}).Forward(); fw != resolver.ForwardNone {
		t.Fatalf("a sandbox without networks forwards %v, want none", fw)
	}
	ep := e.connect("red", "c1")
	if got := resolve(t, sb.Key, "c1"); got != ep.Address.Addr().String() {
		t.Fatalf("c1 resolved to %q once connected again, at %s", got, ep.Address.Addr())
	}
}

// exchange asks server:53 inside the namespace at key for name, once.
func exchange(key, server, name string) error {
	ns, err := osl.OpenNamespace(key)
	if err != nil {
		return err
	}
	defer ns.Close()
	return ns.Do(func() error {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		_, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, net.JoinHostPort(server, "53"))
		return err
	})
}
