package driver

import (
	"context"
	"sync/atomic"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// GRPCPlugin is the go-plugin plugin.GRPCPlugin for drivers. Plugins get it
// through Serve; the host uses it with Impl left nil.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Info sdk.Info
	Impl Driver
}

// GRPCServer registers the Plugin and Driver services.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	return Register(s, p.Info, p.Impl)
}

// GRPCClient returns a *Client.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}

// Register registers the Plugin and Driver services for impl on s.
func Register(s *grpc.Server, info sdk.Info, impl Driver) error {
	ps, err := sdk.NewPluginServer(info, sdk.KindDriver, impl)
	if err != nil {
		return err
	}
	pb.RegisterPluginServer(s, ps)
	pb.RegisterDriverServer(s, &server{impl: impl})
	return nil
}

// server adapts a Driver to the generated gRPC server interface.
type server struct {
	pb.UnimplementedDriverServer
	impl Driver
}

func (s *server) GetCapabilities(ctx context.Context, _ *pb.Empty) (*pb.Capabilities, error) {
	caps, err := s.impl.GetCapabilities(ctx)
	return caps, sdk.ToStatus(err)
}

func (s *server) CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.CreateNetwork(ctx, req))
}

func (s *server) DeleteNetwork(ctx context.Context, req *pb.DeleteNetworkRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.DeleteNetwork(ctx, req))
}

func (s *server) CreateEndpoint(ctx context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	resp, err := s.impl.CreateEndpoint(ctx, req)
	if resp == nil {
		resp = &pb.CreateEndpointResponse{}
	}
	return resp, sdk.ToStatus(err)
}

func (s *server) DeleteEndpoint(ctx context.Context, req *pb.EndpointRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.DeleteEndpoint(ctx, req))
}

func (s *server) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	resp, err := s.impl.Join(ctx, req)
	if resp == nil {
		resp = &pb.JoinResponse{}
	}
	return resp, sdk.ToStatus(err)
}

func (s *server) Leave(ctx context.Context, req *pb.LeaveRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.Leave(ctx, req))
}

func (s *server) ProgramExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	resp, err := s.impl.ProgramExternalConnectivity(ctx, req)
	if resp == nil {
		resp = &pb.ExternalConnectivityResponse{}
	}
	return resp, sdk.ToStatus(err)
}

func (s *server) RevokeExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) (*pb.Empty, error) {
	return &pb.Empty{}, sdk.ToStatus(s.impl.RevokeExternalConnectivity(ctx, req))
}

func (s *server) EndpointOperInfo(ctx context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	resp, err := s.impl.EndpointOperInfo(ctx, req)
	if resp == nil {
		resp = &pb.EndpointOperInfoResponse{}
	}
	return resp, sdk.ToStatus(err)
}

// Client is the host's side of a driver plugin. It implements Driver, so
// the host can use a plugin and an in-process driver alike.
type Client struct {
	*sdk.PluginClient
	c pb.DriverClient
	// noAttach and noDetach are set once the plugin has answered Attach,
	// Detach, with Unimplemented.
	noAttach, noDetach atomic.Bool
}

var _ Driver = (*Client)(nil)

// NewClient returns a Client speaking over conn.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{PluginClient: sdk.NewPluginClient(pb.NewPluginClient(conn)), c: pb.NewDriverClient(conn)}
}

func (c *Client) GetCapabilities(ctx context.Context) (*pb.Capabilities, error) {
	caps, err := c.c.GetCapabilities(ctx, &pb.Empty{})
	return caps, sdk.FromStatus(err)
}

func (c *Client) CreateNetwork(ctx context.Context, req *pb.CreateNetworkRequest) error {
	_, err := c.c.CreateNetwork(ctx, req)
	return sdk.FromStatus(err)
}

func (c *Client) DeleteNetwork(ctx context.Context, req *pb.DeleteNetworkRequest) error {
	_, err := c.c.DeleteNetwork(ctx, req)
	return sdk.FromStatus(err)
}

func (c *Client) CreateEndpoint(ctx context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	resp, err := c.c.CreateEndpoint(ctx, req)
	return resp, sdk.FromStatus(err)
}

func (c *Client) DeleteEndpoint(ctx context.Context, req *pb.EndpointRequest) error {
	_, err := c.c.DeleteEndpoint(ctx, req)
	return sdk.FromStatus(err)
}

func (c *Client) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	resp, err := c.c.Join(ctx, req)
	return resp, sdk.FromStatus(err)
}

func (c *Client) Leave(ctx context.Context, req *pb.LeaveRequest) error {
	_, err := c.c.Leave(ctx, req)
	return sdk.FromStatus(err)
}

func (c *Client) ProgramExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	resp, err := c.c.ProgramExternalConnectivity(ctx, req)
	return resp, sdk.FromStatus(err)
}

func (c *Client) RevokeExternalConnectivity(ctx context.Context, req *pb.ExternalConnectivityRequest) error {
	_, err := c.c.RevokeExternalConnectivity(ctx, req)
	return sdk.FromStatus(err)
}

func (c *Client) EndpointOperInfo(ctx context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	resp, err := c.c.EndpointOperInfo(ctx, req)
	return resp, sdk.FromStatus(err)
}
