package controller

import (
	"context"
	"errors"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// optsDriver is the none driver declaring endpoint options, recording
// the options of each call about an endpoint.
type optsDriver struct {
	noneDriver
	mu   sync.Mutex
	seen map[string][]map[string]string // by call
}

func (d *optsDriver) saw(call string, ep *pb.Endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[call] = append(d.seen[call], maps.Clone(ep.GetOptions()))
}

func (d *optsDriver) calls(call string) []map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seen[call]
}

func (d *optsDriver) GetCapabilities(ctx context.Context) (*pb.Capabilities, error) {
	caps, _ := d.noneDriver.GetCapabilities(ctx)
	caps.EndpointOptions = []string{"mode", "vlan"}
	return caps, nil
}

func (d *optsDriver) CreateEndpoint(ctx context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	d.saw("CreateEndpoint", req.GetEndpoint())
	return d.noneDriver.CreateEndpoint(ctx, req)
}

func (d *optsDriver) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	d.saw("Join", req.GetEndpoint())
	return d.noneDriver.Join(ctx, req)
}

func (d *optsDriver) Leave(ctx context.Context, req *pb.LeaveRequest) error {
	d.saw("Leave", req.GetEndpoint())
	return d.noneDriver.Leave(ctx, req)
}

func (d *optsDriver) DeleteEndpoint(ctx context.Context, req *pb.EndpointRequest) error {
	d.saw("DeleteEndpoint", req.GetEndpoint())
	return d.noneDriver.DeleteEndpoint(ctx, req)
}

// TestEndpointDriverOptions: a connect's driver options (Docker's
// --driver-opt) reach the driver in every call about the endpoint, are
// kept in its record, also through a restart, and are checked against
// the keys the driver declares before it is called.
func TestEndpointDriverOptions(t *testing.T) {
	e := newEnv(t)
	od := &optsDriver{seen: map[string][]map[string]string{}}
	oc, stop, err := driver.InProcess(sdk.Info{Name: "opts"}, od)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	e.plugins.drivers["opts"] = oc
	ctx := context.Background()
	e.network("o1", "opts", "")
	e.sandbox("c1")
	want := map[string]string{"vlan": "42", "mode": "passthru"}
	ep, err := e.c.Connect(ctx, "o1", Connect{Container: "c1", DriverOpts: want})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(ep.DriverOpts, want) {
		t.Errorf("the endpoint's record has driver options %v, want %v", ep.DriverOpts, want)
	}
	for _, call := range []string{"CreateEndpoint", "Join"} {
		if got := od.calls(call); len(got) != 1 || !maps.Equal(got[0], want) {
			t.Errorf("%s saw options %v, want %v once", call, got, want)
		}
	}

	// Refused before the driver hears of it: a key it does not declare,
	// and a key that is no key.
	for _, tc := range []struct {
		opts map[string]string
		says string
	}{
		{map[string]string{"speed": "10G"}, `driver_opts.speed: not an endpoint option of driver "opts" (known: mode, vlan)`},
		{map[string]string{"a b": "1"}, `driver_opts: key "a b" has "=", a space or a control character`},
		{map[string]string{"vlan": "4\n2"}, `driver_opts.vlan: the value "4\n2" has a control character`},
	} {
		e.sandbox("c2")
		_, err := e.c.Connect(ctx, "o1", Connect{Container: "c2", DriverOpts: tc.opts})
		if !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("connect with %v: %v, want invalid saying %s", tc.opts, err, tc.says)
		}
		if err := e.c.DeleteSandbox(ctx, "c2"); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(od.calls("CreateEndpoint")); n != 1 {
		t.Errorf("the driver was called %d times for endpoints, want once: refused options reached it", n)
	}

	// After a restart the record still has them, and the disconnect
	// hands them to the driver.
	e.c.Close()
	e.c = e.start()
	sb, err := e.c.SandboxByContainer(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.Endpoints) != 1 || !maps.Equal(sb.Endpoints[0].DriverOpts, want) {
		t.Errorf("after a restart the endpoints are %+v, want one with driver options %v", sb.Endpoints, want)
	}
	if err := e.c.Disconnect(ctx, "o1", "c1"); err != nil {
		t.Fatal(err)
	}
	for _, call := range []string{"Leave", "DeleteEndpoint"} {
		if got := od.calls(call); len(got) == 0 || !maps.Equal(got[len(got)-1], want) {
			t.Errorf("%s saw options %v, want %v", call, got, want)
		}
	}
}
