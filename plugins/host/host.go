package main

import (
	"context"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var info = sdk.Info{Name: "host", Version: version, Config: Config{}}

// host is host networking: a sandbox joining a host network shares the
// host's namespace (the controller requires the sandbox to be created in
// host mode), so there is no interface to make, no address to allocate and
// no port to publish — the container's sockets are the host's. Every call
// succeeds and changes nothing, so every call is idempotent.
type host struct{}

func (*host) Configure(_ context.Context, raw []byte) error {
	var c Config
	return sdk.DecodeConfig(raw, &c)
}

func (*host) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, UsesHostNamespace: true}, nil
}

func (*host) CreateNetwork(context.Context, *pb.CreateNetworkRequest) error { return nil }
func (*host) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error { return nil }

func (*host) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}

func (*host) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return nil }

// Join hands over no interface: the sandbox already is the host's stack.
func (*host) Join(context.Context, *pb.JoinRequest) (*pb.JoinResponse, error) {
	return &pb.JoinResponse{DisableGatewayService: true}, nil
}

func (*host) Leave(context.Context, *pb.LeaveRequest) error { return nil }

// ProgramExternalConnectivity has nothing to publish: ports a container
// listens on are already the host's.
func (*host) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}

func (*host) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}

func (*host) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{Info: map[string]string{"mode": "host"}}, nil
}
