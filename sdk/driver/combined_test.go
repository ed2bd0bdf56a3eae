package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/internal/inproc"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// recorder is a driver that records its calls; CreateEndpoint fills in a
// MAC, and Join fails when failJoin is set.
type recorder struct {
	mu        sync.Mutex
	calls     []string
	joinedEP  *pb.Endpoint
	joinedAs  string // the ifname Join was asked for
	joinedPre bool   // whether Join was told it was prepared
	failJoin  bool
	failLeave bool
}

func (r *recorder) record(c string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) Configure(context.Context, []byte) error { return nil }
func (r *recorder) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{}, nil
}
func (r *recorder) CreateNetwork(context.Context, *pb.CreateNetworkRequest) error { return nil }
func (r *recorder) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error { return nil }
func (r *recorder) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	r.record("CreateEndpoint")
	return &pb.CreateEndpointResponse{Interface: &pb.EndpointInterface{Mac: "02:42:0a:00:00:02"}}, nil
}
func (r *recorder) DeleteEndpoint(context.Context, *pb.EndpointRequest) error {
	r.record("DeleteEndpoint")
	return nil
}
func (r *recorder) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	r.record("Join")
	r.mu.Lock()
	defer r.mu.Unlock()
	r.joinedEP, r.joinedAs, r.joinedPre = req.GetEndpoint(), req.GetIfname(), req.GetPrepared()
	if r.failJoin {
		return nil, fmt.Errorf("no such sandbox: %w", sdk.ErrNotFound)
	}
	return &pb.JoinResponse{SrcName: "veth0", InSandbox: true, Gateway: "10.0.0.1"}, nil
}
func (r *recorder) Leave(context.Context, *pb.LeaveRequest) error {
	r.record("Leave")
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failLeave {
		return fmt.Errorf("link busy: %w", sdk.ErrConflict)
	}
	return nil
}
func (r *recorder) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}
func (r *recorder) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	r.record("Revoke")
	return nil
}
func (r *recorder) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}

// oldServer is a driver server from before Attach: it answers
// Unimplemented.
type oldServer struct {
	pb.UnimplementedDriverServer
	s *server
}

func (o oldServer) CreateEndpoint(ctx context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return o.s.CreateEndpoint(ctx, req)
}
func (o oldServer) DeleteEndpoint(ctx context.Context, req *pb.EndpointRequest) (*pb.Empty, error) {
	return o.s.DeleteEndpoint(ctx, req)
}
func (o oldServer) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	return o.s.Join(ctx, req)
}
func (o oldServer) Leave(ctx context.Context, req *pb.LeaveRequest) (*pb.Empty, error) {
	return o.s.Leave(ctx, req)
}
func (o oldServer) RevokeExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) (*pb.Empty, error) {
	return o.s.RevokeExternalConnectivity(ctx, req)
}

func attachReq() *pb.AttachRequest {
	return &pb.AttachRequest{
		Network:    &pb.Network{Id: "n1"},
		Endpoint:   &pb.Endpoint{Id: "e1", Interface: &pb.EndpointInterface{Address: "10.0.0.2/24"}},
		SandboxKey: "/run/netns/x",
		Ifname:     "eth0",
		Prepared:   true,
	}
}

// servers are a plugin built with this SDK and one from before Attach and
// Detach.
var servers = []struct {
	name  string
	serve func(*grpc.Server, *recorder) error
}{
	{"plugin with Attach and Detach", func(s *grpc.Server, r *recorder) error { return Register(s, sdk.Info{Name: "rec"}, r) }},
	{"plugin from before them", func(s *grpc.Server, r *recorder) error {
		pb.RegisterDriverServer(s, oldServer{s: &server{impl: r}})
		return nil
	}},
}

// dialRecorder serves a new recorder with serve, in process, and returns
// it with a client of it.
func dialRecorder(t *testing.T, serve func(*grpc.Server, *recorder) error) (*recorder, *Client) {
	t.Helper()
	r := &recorder{}
	conn, stop, err := inproc.Dial(func(s *grpc.Server) error { return serve(s, r) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return r, NewClient(conn)
}

func TestAttach(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			r, c := dialRecorder(t, tc.serve)
			ctx := context.Background()
			resp, err := Attach(ctx, c, attachReq())
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetCreate().GetInterface().GetMac() != "02:42:0a:00:00:02" || resp.GetJoin().GetSrcName() != "veth0" {
				t.Fatalf("answer = %v", resp)
			}
			// Join saw the endpoint as CreateEndpoint filled it in.
			if ep := r.joinedEP; ep.GetInterface().GetMac() != "02:42:0a:00:00:02" || ep.GetInterface().GetAddress() != "10.0.0.2/24" {
				t.Fatalf("Join got endpoint %v", ep)
			}
			if r.joinedAs != "eth0" || !r.joinedPre {
				t.Fatalf("Join was asked for interface %q, prepared %v; want eth0, prepared", r.joinedAs, r.joinedPre)
			}
			// A failing Join deletes the endpoint again and its error
			// comes back as the sentinel.
			r.failJoin = true
			_, err = Attach(ctx, c, attachReq())
			if !errors.Is(err, sdk.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			want := []string{"CreateEndpoint", "Join", "CreateEndpoint", "Join", "DeleteEndpoint"}
			if !slices.Equal(r.calls, want) {
				t.Fatalf("calls = %v, want %v", r.calls, want)
			}
		})
	}
}

func TestDetach(t *testing.T) {
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			r, c := dialRecorder(t, tc.serve)
			ctx := context.Background()
			req := &pb.DetachRequest{Network: &pb.Network{Id: "n1"}, Endpoint: &pb.Endpoint{Id: "e1"}, SandboxKey: "/run/netns/x", RevokeExternal: true}
			if err := Detach(ctx, c, req); err != nil {
				t.Fatal(err)
			}
			// Never joined, no ports: only the delete.
			if err := Detach(ctx, c, &pb.DetachRequest{Network: req.Network, Endpoint: req.Endpoint}); err != nil {
				t.Fatal(err)
			}
			// A failing Leave stops it there, its error as the sentinel.
			r.failLeave = true
			if err := Detach(ctx, c, req); !errors.Is(err, sdk.ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict", err)
			}
			want := []string{"Revoke", "Leave", "DeleteEndpoint", "DeleteEndpoint", "Revoke", "Leave"}
			if !slices.Equal(r.calls, want) {
				t.Fatalf("calls = %v, want %v", r.calls, want)
			}
		})
	}
}

// preparer is a recorder that prepares attaches.
type preparer struct{ *recorder }

func (p preparer) Prepare(_ context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	p.record("Prepare " + req.GetEndpointId() + " " + req.GetIfname())
	return &pb.PrepareResponse{SrcName: req.GetIfname()}, nil
}

// Prepare reaches a driver that prepares; one that does not, and a plugin
// built before the call (Unimplemented), prepare nothing, without error.
func TestPrepare(t *testing.T) {
	req := &pb.PrepareRequest{Network: &pb.Network{Id: "n1"}, EndpointId: "e1", SandboxKey: "/run/netns/x", Ifname: "eth0"}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		serve func(*grpc.Server, *recorder) error
		want  string
	}{
		{"preparing plugin", func(s *grpc.Server, r *recorder) error { return Register(s, sdk.Info{Name: "rec"}, preparer{r}) }, "eth0"},
		{servers[0].name + ", not preparing", servers[0].serve, ""},
		{servers[1].name, servers[1].serve, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c := dialRecorder(t, tc.serve)
			resp, err := Prepare(ctx, c, req)
			if err != nil || resp.GetSrcName() != tc.want {
				t.Fatalf("Prepare = %v, %v; want src_name %q", resp, err, tc.want)
			}
			if tc.want != "" && !slices.Equal(r.calls, []string{"Prepare e1 eth0"}) {
				t.Fatalf("calls = %v", r.calls)
			}
		})
	}
	// In process, a driver that is no Preparer prepares nothing.
	if resp, err := Prepare(ctx, &recorder{}, req); err != nil || resp.GetSrcName() != "" {
		t.Fatalf("Prepare of a non-preparer = %v, %v", resp, err)
	}
}

// collector is a recorder that implements Collector.
type collector struct {
	*recorder
	got *pb.CollectRequest
}

func (c *collector) Collect(_ context.Context, req *pb.CollectRequest) error {
	c.got = req
	return nil
}

// TestCollect: a driver that implements Collector gets the host's
// request; one that does not, and a plugin from before the call
// (Unimplemented), answer as keeping everything.
func TestCollect(t *testing.T) {
	req := &pb.CollectRequest{Networks: []string{"n1"}, Endpoints: []string{"e1"}}
	col := &collector{recorder: &recorder{}}
	conn, stop, err := inproc.Dial(func(s *grpc.Server) error { return Register(s, sdk.Info{Name: "col"}, col) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if err := NewClient(conn).Collect(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	if col.got == nil || !proto.Equal(col.got, req) {
		t.Errorf("the driver got %v, want %v", col.got, req)
	}
	for _, tc := range servers {
		t.Run(tc.name, func(t *testing.T) {
			_, c := dialRecorder(t, tc.serve)
			if err := c.Collect(context.Background(), req); err != nil {
				t.Errorf("Collect of a driver that is not a Collector: %v", err)
			}
		})
	}
}
