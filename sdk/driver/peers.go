package driver

import (
	"context"
	"fmt"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Peerer is a driver of global networks that reaches endpoints on other
// hosts through what the host tells it: PeerAdd and PeerDelete (see
// driver.proto). A driver that implements it says so in its capabilities
// (Capabilities.peers); the host calls neither method on a driver that
// does not. A plugin's Client is one.
//
// Both must be idempotent: the host sends the whole peer set again after
// the driver or the host restarts, and may send a peer it sent before.
// A peer whose vtep is the request's network's advertise_addr is this
// host's own and is skipped.
type Peerer interface {
	PeerAdd(ctx context.Context, req *pb.PeerRequest) error
	PeerDelete(ctx context.Context, req *pb.PeerRequest) error
}

// errNoPeers answers the peer calls of a driver that is not a Peerer.
var errNoPeers = fmt.Errorf("the driver does not take peers: %w", sdk.ErrNotSupported)

func (s *server) PeerAdd(ctx context.Context, req *pb.PeerRequest) (*pb.Empty, error) {
	p, ok := s.impl.(Peerer)
	if !ok {
		return nil, sdk.ToStatus(errNoPeers)
	}
	return &pb.Empty{}, sdk.ToStatus(p.PeerAdd(ctx, req))
}

func (s *server) PeerDelete(ctx context.Context, req *pb.PeerRequest) (*pb.Empty, error) {
	p, ok := s.impl.(Peerer)
	if !ok {
		return nil, sdk.ToStatus(errNoPeers)
	}
	return &pb.Empty{}, sdk.ToStatus(p.PeerDelete(ctx, req))
}

// PeerAdd is the driver's PeerAdd. A plugin that does not serve it (built
// before it existed, or not a Peerer) answers an error wrapping
// sdk.ErrNotSupported; the host asks the capabilities first.
func (c *Client) PeerAdd(ctx context.Context, req *pb.PeerRequest) error {
	_, err := c.c.PeerAdd(ctx, req)
	return sdk.FromStatus(err)
}

// PeerDelete is the driver's PeerDelete, as PeerAdd.
func (c *Client) PeerDelete(ctx context.Context, req *pb.PeerRequest) error {
	_, err := c.c.PeerDelete(ctx, req)
	return sdk.FromStatus(err)
}

// Peers returns d as a Peerer when its capabilities say it takes peers,
// and nil otherwise: the host's way to decide whether to call it.
func Peers(d Driver, caps *pb.Capabilities) Peerer {
	if !caps.GetPeers() {
		return nil
	}
	p, _ := d.(Peerer)
	return p
}
