package driver

import (
	"context"
	"errors"
	"slices"
	"testing"

	"google.golang.org/grpc"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// peerer is a recorder that takes peers.
type peerer struct{ *recorder }

func (p peerer) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{Peers: true}, nil
}

func (p peerer) PeerAdd(_ context.Context, req *pb.PeerRequest) error {
	for _, pe := range req.GetPeers() {
		p.record("PeerAdd " + req.GetNetwork().GetId() + " " + pe.GetEndpointId() + " " + pe.GetVtep())
	}
	return nil
}

func (p peerer) PeerDelete(_ context.Context, req *pb.PeerRequest) error {
	for _, pe := range req.GetPeers() {
		p.record("PeerDelete " + req.GetNetwork().GetId() + " " + pe.GetEndpointId())
	}
	return nil
}

// The peer calls reach a driver that takes peers; a driver that does not,
// and a plugin built before the calls existed, answer ErrNotSupported, and
// Peers keeps the host from calling any driver whose capabilities do not
// say peers.
func TestPeers(t *testing.T) {
	ctx := context.Background()
	req := &pb.PeerRequest{Network: &pb.Network{Id: "n1"}, Peers: []*pb.Peer{{EndpointId: "e1", Address: "10.0.0.2/24", Mac: "02:42:0a:00:00:02", Vtep: "192.0.2.2"}}}
	t.Run("peering plugin", func(t *testing.T) {
		r, c := dialRecorder(t, func(s *grpc.Server, r *recorder) error { return Register(s, sdk.Info{Name: "rec"}, peerer{r}) })
		caps, err := c.GetCapabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p := Peers(c, caps)
		if p == nil {
			t.Fatal("Peers = nil for a driver whose capabilities say peers")
		}
		if err := p.PeerAdd(ctx, req); err != nil {
			t.Fatal(err)
		}
		if err := p.PeerDelete(ctx, req); err != nil {
			t.Fatal(err)
		}
		if want := []string{"PeerAdd n1 e1 192.0.2.2", "PeerDelete n1 e1"}; !slices.Equal(r.calls, want) {
			t.Fatalf("calls = %v, want %v", r.calls, want)
		}
	})
	for _, tc := range []struct {
		name  string
		serve func(*grpc.Server, *recorder) error
	}{
		{"plugin without peers", servers[0].serve},
		{servers[1].name, servers[1].serve},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c := dialRecorder(t, tc.serve)
			caps, _ := r.GetCapabilities(ctx) // an old server may not answer it
			if p := Peers(c, caps); p != nil {
				t.Fatalf("Peers = %v for a driver whose capabilities do not say peers", p)
			}
			for name, call := range map[string]func(context.Context, *pb.PeerRequest) error{"PeerAdd": c.PeerAdd, "PeerDelete": c.PeerDelete} {
				if err := call(ctx, req); !errors.Is(err, sdk.ErrNotSupported) {
					t.Errorf("%s = %v, want ErrNotSupported", name, err)
				}
			}
		})
	}
	if p := Peers(&recorder{}, &pb.Capabilities{Peers: true}); p != nil {
		t.Fatal("Peers of an in-process driver that is no Peerer is not nil")
	}
}
