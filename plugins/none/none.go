package main

import (
	"context"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var info = sdk.Info{Name: "none", Version: version, Config: Config{}}

// none is a driver whose endpoints have no interface. Every call succeeds
// and changes nothing, so every call is trivially idempotent.
type none struct{}

func (*none) Configure(_ context.Context, raw []byte) error {
	var c Config
	return sdk.DecodeConfig(raw, &c)
}

func (*none) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL}, nil
}

func (*none) CreateNetwork(context.Context, *pb.CreateNetworkRequest) error { return nil }
func (*none) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error { return nil }

func (*none) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}

func (*none) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return nil }

// Join hands over no interface: the sandbox keeps only its loopback.
func (*none) Join(context.Context, *pb.JoinRequest) (*pb.JoinResponse, error) {
	return &pb.JoinResponse{DisableGatewayService: true}, nil
}

func (*none) Leave(context.Context, *pb.LeaveRequest) error { return nil }

func (*none) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}

func (*none) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}

func (*none) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}
