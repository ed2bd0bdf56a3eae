//go:build !linux

package main

import (
	"context"
	"fmt"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// unsupported is the driver on platforms without VXLAN and Linux bridges:
// it describes itself and refuses every call with sdk.ErrNotSupported.
type unsupported struct{}

func newDriver() unsupported { return unsupported{} }

var errUnsupported = fmt.Errorf("the overlay driver needs Linux: %w", sdk.ErrNotSupported)

func (unsupported) Configure(_ context.Context, raw []byte) error {
	_, err := parse(raw)
	return err
}
func (unsupported) GetCapabilities(ctx context.Context) (*pb.Capabilities, error) {
	return capabilities(ctx)
}
func (unsupported) CreateNetwork(context.Context, *pb.CreateNetworkRequest) error {
	return errUnsupported
}
func (unsupported) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error {
	return errUnsupported
}
func (unsupported) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return nil, errUnsupported
}
func (unsupported) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return errUnsupported }
func (unsupported) Join(context.Context, *pb.JoinRequest) (*pb.JoinResponse, error) {
	return nil, errUnsupported
}
func (unsupported) Leave(context.Context, *pb.LeaveRequest) error { return errUnsupported }
func (unsupported) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return nil, errUnsupported
}
func (unsupported) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return errUnsupported
}
func (unsupported) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return nil, errUnsupported
}
func (unsupported) PeerAdd(context.Context, *pb.PeerRequest) error    { return errUnsupported }
func (unsupported) PeerDelete(context.Context, *pb.PeerRequest) error { return errUnsupported }
