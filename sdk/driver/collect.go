package driver

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Collector is a driver that removes what a previous run of it left on
// the host for networks and endpoints the host's store no longer holds
// (see the Collect call in driver.proto). A plugin's Client is one.
//
// The host calls Collect once after an agent start, when it has replayed
// everything stored and before it serves any request, with the IDs of
// every network it holds and of this host's endpoints, of every driver
// (the same plugin may be loaded under two names). A driver removes only
// what it can tell is its own and belongs to none of them; what it
// already knows from the replay is, by definition, listed.
type Collector interface {
	Collect(ctx context.Context, req *pb.CollectRequest) error
}

// Collect asks d to remove what the store no longer names. A driver that
// is not a Collector keeps everything: nil.
func Collect(ctx context.Context, d Driver, req *pb.CollectRequest) error {
	if c, ok := d.(Collector); ok {
		return c.Collect(ctx, req)
	}
	return nil
}

func (s *server) Collect(ctx context.Context, req *pb.CollectRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(Collect(ctx, s.impl, req))
}

// Collect is the driver's Collect; a plugin built before the call existed
// keeps everything (nil).
func (c *Client) Collect(ctx context.Context, req *pb.CollectRequest) error {
	_, err := c.c.Collect(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		return nil
	}
	return sdk.FromStatus(err)
}
