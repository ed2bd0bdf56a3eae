// Command fakeplugin is a driver plugin that misbehaves on purpose, for
// the tests of `sandnet plugin check`. Its first argument (the block's
// args) picks the misbehaviour:
//
//	ok          a correct, do-nothing driver
//	hang        CreateNetwork never answers
//	slow        CreateNetwork answers after 300 ms
//	crash       CreateNetwork panics, which ends the process
//	unavailable CreateNetwork answers that its backend is unavailable
//	hangdelete  DeleteNetwork never answers
//	leak        CreateNetwork adds a veth pair that nothing removes
//	naivejoin   Join makes a veth pair on the host side and hands over its
//	            peer, and fails a Join once the host moved that peer away
//	protocol2   it speaks only plugin protocol 2
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

type fake struct{ mode string }

func (f fake) Configure(context.Context, []byte) error { return nil }
func (f fake) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, NetworkOptions: []string{"known"}}, nil
}
func (f fake) CreateNetwork(ctx context.Context, _ *pb.CreateNetworkRequest) error {
	switch f.mode {
	case "hang":
		select {} // ignores even its context, as a stuck driver would
	case "crash":
		panic("fakeplugin: crashing as asked")
	case "unavailable":
		return fmt.Errorf("fakeplugin: its backend does not answer: %w", sdk.ErrUnavailable)
	case "leak":
		pair := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("fkleak%d", os.Getpid())}, PeerName: fmt.Sprintf("fkpeer%d", os.Getpid())}
		if err := netlink.LinkAdd(pair); err != nil && !errors.Is(err, syscall.EEXIST) {
			return err
		}
	case "slow":
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
func (f fake) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error {
	if f.mode == "hangdelete" {
		select {}
	}
	return nil
}
func (f fake) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}
func (f fake) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return nil }
func (f fake) Join(context.Context, *pb.JoinRequest) (*pb.JoinResponse, error) {
	if f.mode != "naivejoin" {
		return &pb.JoinResponse{}, nil
	}
	host, peer := fmt.Sprintf("fkh%d", os.Getpid()), fmt.Sprintf("fkp%d", os.Getpid())
	if _, err := netlink.LinkByName(host); err == nil {
		if _, err := netlink.LinkByName(peer); err != nil {
			return nil, fmt.Errorf("veth %s has no peer %s here", host, peer)
		}
	} else if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer}); err != nil {
		return nil, err
	}
	return &pb.JoinResponse{SrcName: peer, DstPrefix: "eth"}, nil
}
func (f fake) Leave(context.Context, *pb.LeaveRequest) error {
	if f.mode == "naivejoin" {
		if l, err := netlink.LinkByName(fmt.Sprintf("fkh%d", os.Getpid())); err == nil {
			return netlink.LinkDel(l)
		}
	}
	return nil
}
func (f fake) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}
func (f fake) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}
func (f fake) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}

func main() {
	mode := "ok"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	info := sdk.Info{Name: "fake", Version: "0.0.1"}
	impl := fake{mode: mode}
	if mode == "protocol2" {
		plugin.Serve(&plugin.ServeConfig{
			HandshakeConfig:  sdk.Handshake(),
			VersionedPlugins: map[int]plugin.PluginSet{2: {sdk.KindDriver: &driver.GRPCPlugin{Info: info, Impl: impl}}},
			GRPCServer:       plugin.DefaultGRPCServer,
		})
		return
	}
	driver.Serve(info, impl)
}
