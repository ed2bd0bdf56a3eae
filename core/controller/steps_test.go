package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// An attach that fails after any of its named steps — as a store or
// driver failure right there would make it — leaves nothing behind: no
// endpoint record, no address, no interface in the sandbox, no link on
// the host; a create that listed the network leaves no sandbox either,
// and, given the runtime's namespace, leaves that namespace as it found
// it. The next attach works.
// docs/architecture.md lists the steps.
func TestAttachFailsAfterEachStep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.103.0.0/24")
	before := e.leaks()
	for i, s := range (&attachment{}).steps() {
		for _, how := range []string{"connect", "create", "create-in-runtime-netns"} {
			create := how != "connect"
			t.Run(s.name+"/"+how, func(t *testing.T) {
				container := fmt.Sprintf("fail-%d-%s", i, how)
				injected := errors.New("injected after " + s.name)
				e.c.afterStep = func(flow, step string) error {
					if flow == "attach" && step == s.name {
						return injected
					}
					return nil
				}
				var err error
				var key, runtimeKey string
				if how == "create-in-runtime-netns" {
					runtimeKey = nstest.NewNetns(t)
				}
				if create {
					_, err = e.c.NewSandbox(ctx, SandboxCreate{ContainerID: container, Netns: runtimeKey, Networks: []SandboxNetwork{{Network: "red"}}})
				} else {
					key = e.sandbox(container).Key
					_, err = e.c.Connect(ctx, "red", Connect{Container: container})
				}
				e.c.afterStep = nil
				if !errors.Is(err, injected) {
					t.Fatalf("attach failed with %v, want the injected failure", err)
				}
				n, err := e.c.Network(ctx, "red")
				if err != nil {
					t.Fatal(err)
				}
				if len(n.Endpoints) != 0 {
					t.Fatalf("endpoints left: %+v", n.Endpoints)
				}
				if create {
					if _, err := e.c.SandboxByContainer(ctx, container); !errors.Is(err, sdk.ErrNotFound) {
						t.Fatalf("the failed create left its sandbox (%v)", err)
					}
					if runtimeKey != "" {
						if got := fmt.Sprint(addresses(t, runtimeKey)); got != "map[]" {
							t.Fatalf("interfaces left in the runtime's namespace: %s", got)
						}
					}
				} else {
					if got := fmt.Sprint(addresses(t, key)); got != "map[]" {
						t.Fatalf("interfaces left in the sandbox: %s", got)
					}
					sb, err := e.c.SandboxByContainer(ctx, container)
					if err != nil || len(sb.Endpoints) != 0 {
						t.Fatalf("sandbox after the failed connect: %+v, %v", sb, err)
					}
					// Its first connect failed: nothing answers on
					// 127.0.0.11 in a sandbox without a network.
					if err := exchange(key, "127.0.0.11", "example.com"); err == nil || !strings.Contains(err.Error(), "refused") {
						t.Fatalf("a query in the sandbox after its only connect failed: %v, want it refused", err)
					}
					// The next attach works.
					e.connect("red", container)
					if err := e.c.DeleteSandbox(ctx, container); err != nil {
						t.Fatal(err)
					}
				}
				polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == before })
			})
		}
	}
}

// A create that fails after any of its named steps, with networks or
// without, leaves no sandbox, no namespace (at its key or in the scratch
// directory), no endpoint and no address.
func TestCreateFailsAfterEachStep(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.104.0.0/24")
	e.network("blue", "veth", "10.105.0.0/24")
	before := e.leaks()
	for i, s := range (&creation{}).steps() {
		for _, nets := range [][]SandboxNetwork{nil, {{Network: "red"}, {Network: "blue"}}} {
			t.Run(fmt.Sprintf("%s/%d-networks", s.name, len(nets)), func(t *testing.T) {
				container := fmt.Sprintf("cfail-%d-%d", i, len(nets))
				injected := errors.New("injected after " + s.name)
				e.c.afterStep = func(flow, step string) error {
					if flow == "create" && step == s.name {
						return injected
					}
					return nil
				}
				_, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: container, Networks: nets})
				e.c.afterStep = nil
				if !errors.Is(err, injected) {
					t.Fatalf("create failed with %v, want the injected failure", err)
				}
				if _, err := e.c.SandboxByContainer(ctx, container); !errors.Is(err, sdk.ErrNotFound) {
					t.Fatalf("the failed create left its sandbox (%v)", err)
				}
				for _, net := range []string{"red", "blue"} {
					if n, err := e.c.Network(ctx, net); err != nil || len(n.Endpoints) != 0 {
						t.Fatalf("network %s after the failed create: %+v, %v", net, n, err)
					}
				}
				polltest.Until(t, 15*time.Second, "nothing left behind", func() bool { return e.leaks() == before })
				// The container can be created again.
				e.sandbox(container, func(r *SandboxCreate) { r.Networks = nets })
				if err := e.c.DeleteSandbox(ctx, container); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}
