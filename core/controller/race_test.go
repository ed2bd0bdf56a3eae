package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// One sandbox connected, deleted and listed (its traffic counters read
// too) at once, over and over: under
// -race, every field of the sandbox that these touch is read under the lock
// that guards it; each connect either lands before the delete or is
// refused, and nothing is left behind.
func TestConnectDeleteListOneSandbox(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.102.0.0/24")
	for i := range 20 {
		container := fmt.Sprintf("race-%d", i)
		e.sandbox(container)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		wg.Add(3)
		go func() {
			defer wg.Done()
			_, err := e.c.Connect(ctx, "red", Connect{Container: container})
			if errors.Is(err, sdk.ErrForbidden) || errors.Is(err, sdk.ErrNotFound) {
				err = nil // the delete came first
			}
			errs[0] = err
		}()
		go func() {
			defer wg.Done()
			errs[1] = e.c.DeleteSandbox(ctx, container)
		}()
		go func() {
			defer wg.Done()
			for range 5 {
				if _, err := e.c.Sandboxes(ctx); err != nil && !errors.Is(err, sdk.ErrNotFound) {
					errs[2] = err
					return
				}
				e.c.WalkSandboxes(func(*sandbox.Sandbox) bool { return false })
				if _, err := e.c.Traffic(ctx, ""); err != nil {
					errs[2] = err
					return
				}
			}
		}()
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if _, err := e.c.SandboxByContainer(ctx, container); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("round %d: the deleted sandbox is still there (%v)", i, err)
		}
	}
	polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == leaks{} })
}

// A change to a sandbox that waited for its lock while a delete held it
// finds the sandbox gone and changes nothing: a set-key or a refresh
// after the delete wrote the deleted sandbox's record back to the store
// (after a restart, a stub of a container the user had removed), and the
// set-key left its namespace bound at the key.
func TestNoChangeAfterTheDelete(t *testing.T) {
	for _, change := range []string{"set-key", "refresh", "rename", "connect"} {
		t.Run(change, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.network("red", "veth", "10.103.0.0/24")
			before := e.leaks()
			runtimeNS, err := osl.NewNamespace(e.dir + "/runtime-ns")
			if err != nil {
				t.Fatal(err)
			}
			defer runtimeNS.Destroy()
			sb := e.sandbox("c1", func(r *SandboxCreate) { r.ExternalKey = change == "set-key" })
			op, err := e.c.byContainerID("c1")
			if err != nil {
				t.Fatal(err)
			}
			op.mu.Lock() // a long operation on c1
			deleted := make(chan error, 1)
			go func() { deleted <- e.c.DeleteSandbox(ctx, "c1") }()
			polltest.Until(t, 15*time.Second, "the delete waiting for the sandbox", func() bool { return e.c.stateOf(op).deleting })
			changed := make(chan error, 1)
			go func() {
				var err error
				switch change {
				case "set-key":
					_, err = e.c.SetKey(ctx, "c1", runtimeNS.Path())
				case "refresh":
					_, err = e.c.Refresh(ctx, "c1", sandbox.Options{Hostname: "h2"})
				case "rename":
					err = e.c.Rename(ctx, "c1", "c1b")
				case "connect":
					_, err = e.c.Connect(ctx, "red", Connect{Container: "c1"})
				}
				changed <- err
			}()
			time.Sleep(50 * time.Millisecond) // the change queues behind the delete (if not, it finds c1 gone: the same outcome)
			op.mu.Unlock()
			if err := <-deleted; err != nil {
				t.Fatal(err)
			}
			if err := <-changed; err == nil {
				t.Errorf("the %s after the delete succeeded", change)
			}
			var rec Sandbox
			if _, err := e.c.kv.get(ctx, sandboxKey(sb.ID), &rec); !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("the deleted sandbox's record is in the store again after the %s: %+v, %v", change, rec, err)
			}
			if after := e.leaks(); after != before {
				t.Errorf("leaks after the %s: %+v, before %+v", change, after, before)
			}
		})
	}
}

// A connect and a delete of the network it joins, at once, over and over,
// with and without spare namespaces (whose attaches to the network are
// prepared ahead): either the connect lands and the delete is refused, or
// the delete wins and the connect is refused; never both, and an endpoint
// never outlives its network.
func TestConnectRacingNetworkDelete(t *testing.T) {
	for _, spares := range []int{0, 2} {
		for _, how := range []string{"connect", "create"} {
			t.Run(fmt.Sprintf("%s/spares=%d", how, spares), func(t *testing.T) {
				e := newEnv(t)
				e.withSpares(spares)
				ctx := context.Background()
				for i := range 15 {
					net := fmt.Sprintf("tmp%d", i)
					e.network(net, "veth", fmt.Sprintf("10.104.%d.0/24", i))
					container := fmt.Sprintf("race-%d", i)
					if how == "connect" {
						e.sandbox(container)
					}
					var wg sync.WaitGroup
					var connectErr, deleteErr error
					wg.Add(2)
					go func() {
						defer wg.Done()
						if how == "connect" {
							_, connectErr = e.c.Connect(ctx, net, Connect{Container: container})
							return
						}
						_, connectErr = e.c.NewSandbox(ctx, SandboxCreate{ContainerID: container, Networks: []SandboxNetwork{{Network: net}}})
					}()
					go func() {
						defer wg.Done()
						deleteErr = e.c.DeleteNetwork(ctx, net)
					}()
					wg.Wait()
					switch {
					case connectErr == nil && errors.Is(deleteErr, sdk.ErrConflict):
						if err := e.c.DeleteSandbox(ctx, container); err != nil {
							t.Fatal(err)
						}
						if err := e.c.DeleteNetwork(ctx, net); err != nil {
							t.Fatalf("round %d: deleting the network once empty: %v", i, err)
						}
					case connectErr != nil && deleteErr == nil:
						if !errors.Is(connectErr, sdk.ErrNotFound) && !errors.Is(connectErr, sdk.ErrForbidden) && !errors.Is(connectErr, sdk.ErrConflict) {
							t.Fatalf("round %d: the delete won; the connect's error %v is not one of not-found, forbidden, or conflict (being deleted)", i, connectErr)
						}
						if !strings.Contains(connectErr.Error(), net) {
							t.Fatalf("round %d: the error %q does not name the network %s", i, connectErr, net)
						}
						if _, err := e.c.Network(ctx, net); !errors.Is(err, sdk.ErrNotFound) {
							t.Fatalf("round %d: the network is still there: %v", i, err)
						}
						if how == "connect" {
							if err := e.c.DeleteSandbox(ctx, container); err != nil {
								t.Fatal(err)
							}
						} else if _, err := e.c.SandboxByContainer(ctx, container); !errors.Is(err, sdk.ErrNotFound) {
							t.Fatalf("round %d: a failed create left its sandbox: %v", i, err)
						}
					default:
						t.Fatalf("round %d: connect %v, network delete %v: want exactly one to win", i, connectErr, deleteErr)
					}
				}
				polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == leaks{} })
			})
		}
	}
}

// Deletes of one network racing with connects to it: of the deletes, at
// most one removes the network, and only when no connect landed; a
// network that stays is not left marked in-delete; every sandbox can be
// deleted afterwards. A delete that found the mark of another delete
// finished it while that one withdrew its mark for a connect that
// landed: the network went with endpoints on it, and their sandboxes
// could not be deleted until the agent restarted.
func TestNetworkDeletesRacingConnects(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for round := range 30 {
		e.network("dn", "veth", "10.103.0.0/24")
		var containers []string
		for i := range 4 {
			id := fmt.Sprintf("r%d-%d", round, i)
			e.sandbox(id)
			containers = append(containers, id)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var deleted, connected int
		var unexpected []error
		for i := range 4 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, err := e.c.Connect(ctx, "dn", Connect{Container: containers[i]})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					connected++
				case !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrForbidden) && !errors.Is(err, sdk.ErrConflict):
					unexpected = append(unexpected, err)
				}
			}()
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i*round%7) * 300 * time.Microsecond)
				err := e.c.DeleteNetwork(ctx, "dn")
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					deleted++
				case !errors.Is(err, sdk.ErrNotFound) && !errors.Is(err, sdk.ErrConflict):
					unexpected = append(unexpected, err)
				}
			}()
		}
		wg.Wait()
		if len(unexpected) > 0 {
			t.Fatalf("round %d: %v", round, errors.Join(unexpected...))
		}
		n, err := e.c.Network(ctx, "dn")
		switch {
		case deleted > 1:
			t.Fatalf("round %d: %d deletes of one network succeeded", round, deleted)
		case deleted == 1 && (err == nil || connected > 0):
			t.Fatalf("round %d: the network was deleted with %d connects landed (network now: %v, %v)", round, connected, n, err)
		case deleted == 0 && (err != nil || n.InDelete):
			t.Fatalf("round %d: no delete succeeded, and the network is %+v, %v", round, n, err)
		}
		for _, id := range containers {
			if err := e.c.DeleteSandbox(ctx, id); err != nil {
				t.Fatalf("round %d: deleting sandbox %s: %v", round, id, err)
			}
		}
		if deleted == 0 {
			if err := e.c.DeleteNetwork(ctx, "dn"); err != nil {
				t.Fatalf("round %d: deleting the network once its containers went: %v", round, err)
			}
		}
	}
}

// An attach whose record's transaction loses its race to a network
// delete's mark, while its join fails (the delete's driver call took its
// interface away), answers as a connect to a network being deleted does:
// 409, not the join's 500 ("waiting for eth0: Link not found").
func TestAttachLosingToADeleteSaysSo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	red := e.network("red", "veth", "10.104.0.0/24")
	e.sandbox("c1")
	held, release := e.store.hold("sandnet/v1/endpoint/")
	e.veth.mu.Lock()
	e.veth.failJoin = true
	e.veth.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Connect(ctx, "red", Connect{Container: "c1"})
		done <- err
	}()
	<-held // the endpoint's record is on its way; the delete's mark lands first
	var n Network
	kv, err := e.store.Get(ctx, networkKey(red.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(kv.GetValue(), &n); err != nil {
		t.Fatal(err)
	}
	n.InDelete = true
	b, _ := json.Marshal(&n)
	if _, err := e.store.Put(ctx, networkKey(n.ID), b); err != nil {
		t.Fatal(err)
	}
	release()
	err = <-done
	e.veth.mu.Lock()
	e.veth.failJoin = false
	e.veth.mu.Unlock()
	if !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "is being deleted") {
		t.Fatalf("connect that lost to a delete's mark: %v; want 409, the network being deleted", err)
	}
	n.InDelete = false
	b, _ = json.Marshal(&n)
	if _, err := e.store.Put(ctx, networkKey(n.ID), b); err != nil {
		t.Fatal(err)
	}
}
