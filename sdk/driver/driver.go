// Package driver is the contract between the sandnet host and a network
// driver plugin: the Driver interface a plugin implements, the gRPC
// adapters on both sides, and Serve, which is all a plugin's main needs.
//
// The host owns all state and every request carries what the driver needs
// (the whole network and endpoint), so a driver can be a stateless
// reconciler: every call must be idempotent, and after a restart the host
// replays CreateNetwork, CreateEndpoint, Join and
// ProgramExternalConnectivity for everything the driver owns.
//
// A driver works on the host side (bridges, veth pairs, firewall rules).
// It is given the sandbox key (the path of the sandbox's network namespace)
// and hands the sandbox's interface over in Join; the host names it,
// addresses it and routes it inside the namespace.
//
// A connect costs the host one round trip to the driver: the Attach RPC,
// which the SDK serves for every driver by calling its CreateEndpoint and
// then its Join (with the endpoint as CreateEndpoint filled it in, and
// DeleteEndpoint if Join fails). A disconnect is one round trip too:
// Detach, served from RevokeExternalConnectivity, Leave and
// DeleteEndpoint. A driver need not do anything for them; one that can do
// the steps at once more cheaply may implement Attacher or Detacher.
// Against a plugin built before they existed the host's Client falls back
// to the separate calls.
//
// A driver may also do part of an attach ahead of time (Preparer): the
// host keeps a few spare namespaces, and for those it expects to attach
// to a network next it asks the network's driver to Prepare the attach of
// an endpoint whose ID it picks then. The bridge driver makes the veth
// pair there, its sandbox end inside and down, its host end on the bridge
// and up (PrepareResponse.up); the Attach that follows only confirms the
// port, while the host configures the sandbox end beside it. What a driver prepares must
// go with the namespace: the host releases a prepared namespace it does
// not use and calls nothing else.
//
// After an agent start, once the replay is done, the host tells each
// driver what its store holds (Collector, optional): the driver removes
// what a previous run of it left for any other network or endpoint, such
// as the bridges of networks a replaced or restored store forgot.
//
// A driver of global networks that carries traffic between hosts (the
// overlay driver) learns where the other hosts' endpoints are from the
// host: it says peers in its capabilities and implements Peerer, and the
// host calls PeerAdd and PeerDelete as endpoints come and go on other
// hosts, and again with the whole set after either side restarts.
package driver

import (
	"context"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Driver is what a network driver plugin implements. Errors should wrap
// the sdk sentinels (sdk.ErrNotFound, sdk.ErrInvalid, …) so the host can
// tell them apart.
type Driver interface {
	sdk.Configurer
	// GetCapabilities reports the driver's scopes and needs.
	GetCapabilities(ctx context.Context) (*pb.Capabilities, error)
	// CreateNetwork sets up a network; creating one that exists with the
	// same configuration succeeds.
	CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) error
	// DeleteNetwork removes a network; a missing network is not an error.
	DeleteNetwork(ctx context.Context, req *pb.DeleteNetworkRequest) error
	// CreateEndpoint prepares an endpoint and may fill in the MAC and
	// addresses the request left empty.
	CreateEndpoint(ctx context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error)
	// DeleteEndpoint removes an endpoint; a missing one is not an error.
	DeleteEndpoint(ctx context.Context, req *pb.EndpointRequest) error
	// Join attaches an endpoint to the sandbox whose namespace is at
	// req.SandboxKey and says which interface the sandbox gets. The key
	// is where the namespace is during the call: a sandbox created with
	// its networks is joined before its namespace moves to its final key,
	// which Leave then gives. Open it during the call; do not keep it.
	// req.Ifname is the name the host will most likely give the
	// interface; a driver that creates it inside the sandbox should use
	// it (any other name if it is taken), which spares the host a rename.
	Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error)
	// Leave detaches an endpoint from its sandbox.
	Leave(ctx context.Context, req *pb.LeaveRequest) error
	// ProgramExternalConnectivity publishes the endpoint's ports and
	// connects it to the outside; it returns the bindings as programmed.
	ProgramExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error)
	// RevokeExternalConnectivity undoes ProgramExternalConnectivity.
	RevokeExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) error
	// EndpointOperInfo reports driver-specific details of an endpoint.
	EndpointOperInfo(ctx context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error)
}
