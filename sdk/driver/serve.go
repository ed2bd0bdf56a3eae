package driver

import (
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/internal/inproc"
)

// PluginSets returns the go-plugin plugin sets of every protocol version
// this SDK speaks, for a driver impl (nil on the host side).
func PluginSets(info sdk.Info, impl Driver) map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		sdk.ProtocolVersion: {sdk.KindDriver: &GRPCPlugin{Info: info, Impl: impl}},
	}
}

// Serve serves impl as a driver plugin and returns when the host is done
// with it. It is the whole of a driver plugin's main:
//
//	func main() { driver.Serve(bridge.Info, bridge.New()) }
func Serve(info sdk.Info, impl Driver) {
	sdk.ServePlugin(info, sdk.KindDriver, &GRPCPlugin{Info: info, Impl: impl})
}

// InProcess serves impl on an in-memory gRPC connection and returns a
// client for it, going through the same adapters as a plugin process, so
// a driver can be tested without building its binary. Call stop when done.
func InProcess(info sdk.Info, impl Driver) (c *Client, stop func(), err error) {
	conn, stop, err := inproc.Dial(func(s *grpc.Server) error { return Register(s, info, impl) })
	if err != nil {
		return nil, nil, err
	}
	return NewClient(conn), stop, nil
}
