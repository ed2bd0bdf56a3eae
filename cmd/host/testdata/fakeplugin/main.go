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
//	peerdown    Join makes a veth pair inside the sandbox and hands over one
//	            end, leaving the other down: the one handed over never
//	            carries traffic
//	sbnoleave   Join makes a veth pair inside the sandbox and hands over one
//	            end; Leave removes nothing
//	protocol2   it speaks only plugin protocol 2
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

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
func (f fake) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	if f.mode == "peerdown" || f.mode == "sbnoleave" {
		return f.sandboxPair(req)
	}
	if f.mode != "naivejoin" {
		return &pb.JoinResponse{}, nil
	}
	host, peer := fmt.Sprintf("fkh%d", os.Getpid()), fmt.Sprintf("fkp%d", os.Getpid())
	if _, err := netlink.LinkByName(host); err == nil {
		if _, err := netlink.LinkByName(peer); err != nil {
			return nil, fmt.Errorf("veth %s has no peer %s here", host, peer)
		}
	} else if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, Flags: net.FlagUp}, PeerName: peer}); err != nil {
		return nil, err
	}
	return &pb.JoinResponse{SrcName: peer, DstPrefix: "eth"}, nil
}

// sandboxPair makes, inside the sandbox, a veth pair whose end fkin (its
// alias fake-in, which a replayed Join finds under the host's name) it
// hands over; its other end is up unless the mode is peerdown.
func (f fake) sandboxPair(req *pb.JoinRequest) (*pb.JoinResponse, error) {
	ns, err := netns.GetFromPath(req.GetSandboxKey())
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if l.Attrs().Alias == "fake-in" {
			return &pb.JoinResponse{SrcName: l.Attrs().Name, InSandbox: true, DstPrefix: "eth"}, nil
		}
	}
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "fkin"}, PeerName: "fkout"}); err != nil {
		return nil, err
	}
	in, err := h.LinkByName("fkin")
	if err == nil {
		err = h.LinkSetAlias(in, "fake-in")
	}
	if out, oerr := h.LinkByName("fkout"); err == nil && oerr == nil && f.mode != "peerdown" {
		err = h.LinkSetUp(out)
	}
	if err != nil {
		return nil, err
	}
	return &pb.JoinResponse{SrcName: "fkin", InSandbox: true, DstPrefix: "eth"}, nil
}

func (f fake) Leave(_ context.Context, req *pb.LeaveRequest) error {
	if f.mode == "peerdown" { // a pair's end goes with the other
		if ns, err := netns.GetFromPath(req.GetSandboxKey()); err == nil {
			defer ns.Close()
			if h, err := netlink.NewHandleAt(ns); err == nil {
				defer h.Close()
				if l, err := h.LinkByName("fkout"); err == nil {
					return h.LinkDel(l)
				}
			}
		}
	}
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
