package controller

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// tunnelDriver is a driver of networks that span hosts, as the overlay
// driver's capabilities say: it refuses a network without an advertise
// address, and records the networks it was given.
type tunnelDriver struct {
	noneDriver
	mu   sync.Mutex
	nets []*pb.Network
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
