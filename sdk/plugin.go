package sdk

import (
	"context"
	"fmt"
	"os"

	"google.golang.org/grpc"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Info is what a plugin says about itself.
type Info struct {
	Name    string
	Version string
	// Capabilities are free-form flags the host may act on, such as
	// CapabilityGlobalScope.
	Capabilities []string
	// Config is the zero value of the plugin's config struct (see
	// SchemaFor). The host checks the operator's `config` block against
	// the schema derived from it. Nil means the plugin takes no settings.
	Config any
}

// CapabilityGlobalScope marks a store whose state is shared between hosts,
// which global-scope networks require.
const CapabilityGlobalScope = "scope:global"

// CapabilityLease marks a store that implements store.Leaser: keys that
// live only as long as a lease their writer keeps renewing. The host
// keeps its host record alive with one, so that hosts sharing the store
// can tell when one of them is gone.
const CapabilityLease = "lease"

// Proto returns the wire form of i for a plugin of the given kind.
func (i Info) Proto(kind string) (*pb.PluginInfo, error) {
	pi := &pb.PluginInfo{
		Name:             i.Name,
		Kind:             kind,
		Version:          i.Version,
		ProtocolVersions: []int32{ProtocolVersion},
		SdkVersion:       Version,
		Capabilities:     i.Capabilities,
		ConfigSchema:     &pb.Schema{},
	}
	if i.Config != nil {
		s, err := SchemaFor(i.Config)
		if err != nil {
			return nil, err
		}
		pi.ConfigSchema = s
	}
	return pi, nil
}

// Configurer is implemented by every plugin: Configure receives the
// plugin's `config` block, decoded and checked against the schema the
// plugin declared, as raw bytes for DecodeConfig. The host calls it once
// after every start of the plugin, before any other call.
type Configurer interface {
	Configure(ctx context.Context, config []byte) error
}

// NewPluginServer returns the server side of the Plugin service that every
// plugin serves next to its kind's service.
func NewPluginServer(info Info, kind string, c Configurer) (pb.PluginServer, error) {
	pi, err := info.Proto(kind)
	if err != nil {
		return nil, err
	}
	return &pluginServer{info: pi, c: c}, nil
}

type pluginServer struct {
	pb.UnimplementedPluginServer
	info *pb.PluginInfo
	c    Configurer
}

func (s *pluginServer) Info(context.Context, *pb.Empty) (*pb.PluginInfo, error) {
	return s.info, nil
}

func (s *pluginServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.Empty, error) {
	return &pb.Empty{}, ToStatus(s.c.Configure(ctx, req.GetConfig()))
}

// PluginClient is the host's side of the Plugin service.
type PluginClient struct {
	c pb.PluginClient
}

// NewPluginClient wraps a Plugin service client.
func NewPluginClient(c pb.PluginClient) *PluginClient { return &PluginClient{c: c} }

// Info asks the plugin to describe itself.
func (c *PluginClient) Info(ctx context.Context) (*pb.PluginInfo, error) {
	info, err := c.c.Info(ctx, &pb.Empty{})
	if err != nil {
		return nil, fmt.Errorf("plugin info: %w", FromStatus(err))
	}
	return info, nil
}

// Configure sends the plugin its decoded `config` block.
func (c *PluginClient) Configure(ctx context.Context, config []byte) error {
	_, err := c.c.Configure(ctx, &pb.ConfigureRequest{Config: config})
	return FromStatus(err)
}

// NewLogger returns the logger a plugin should use. It writes JSON to
// stderr, which go-plugin hands to the host; the host re-logs every line
// under the plugin's name at the line's own level.
func NewLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Trace,
		Output:     os.Stderr,
		JSONFormat: true,
	})
}

// grpcWindow is the flow-control window of both ends of a plugin's gRPC
// connection, per stream and per connection. Set, it turns off gRPC's
// bandwidth-delay probing, which follows every message received with a
// ping and its answer — two more frames, and wake-ups of both processes,
// per call on a unix socket where there is no bandwidth to discover. 1 MiB
// holds any message the protocol sends.
const grpcWindow = 1 << 20

// grpcServerOptions are the options of a plugin's gRPC server.
func grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InitialWindowSize(grpcWindow), grpc.InitialConnWindowSize(grpcWindow)}
}

// GRPCDialOptions are the options of the host's gRPC connection to a
// plugin.
func GRPCDialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(grpcWindow), grpc.WithInitialConnWindowSize(grpcWindow)}
}

// ServePlugin serves p, a go-plugin GRPCPlugin of the given kind, and
// returns when the host is done with it. Plugins call driver.Serve or
// store.Serve, which call this.
func ServePlugin(info Info, kind string, p plugin.Plugin) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake(),
		VersionedPlugins: map[int]plugin.PluginSet{ProtocolVersion: {kind: p}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpcServerOptions()...))
		},
		Logger: NewLogger(info.Name),
	})
}
