// Command driver-ptp is a point-to-point network driver written against
// SDK protocol v1 as first published: it implements CreateEndpoint and
// Join (no Attach, Detach or Prepare, which did not exist yet) and makes
// the sandbox's interface on the host side for the host to move in, as
// drivers did before JoinRequest.ifname.
//
// Each endpoint gets a veth pair: the host end holds the network's
// gateway address as a /32 and a /32 route to the endpoint's address, the
// other end goes into the sandbox. Stateless: every request carries the
// network and the endpoint, and every call is idempotent.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

func main() {
	driver.Serve(sdk.Info{Name: "ptp", Version: "1.0.0"}, ptp{})
}

type ptp struct{}

func (ptp) Configure(context.Context, []byte) error { return nil }

func (ptp) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, NeedsAddresses: true}, nil
}

func (ptp) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	_, err := gateway(req.GetNetwork())
	return err
}

func (ptp) DeleteNetwork(context.Context, *pb.DeleteNetworkRequest) error { return nil }

func (ptp) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}

func (ptp) DeleteEndpoint(_ context.Context, req *pb.EndpointRequest) error {
	return deleteLink(hostEnd(req.GetEndpoint()))
}

func (ptp) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	gw, err := gateway(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	addr, err := netip.ParsePrefix(req.GetEndpoint().GetInterface().GetAddress())
	if err != nil {
		return nil, fmt.Errorf("endpoint address %q: %w", req.GetEndpoint().GetInterface().GetAddress(), sdk.ErrInvalid)
	}
	host, peer := hostEnd(req.GetEndpoint()), "v1s"+short(req.GetEndpoint())
	// A replayed Join (after a restart of the host) finds the pair made
	// and its sandbox end in the sandbox: it keeps both and hands over
	// the same name.
	err = netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer})
	if err != nil && !errors.Is(err, syscall.EEXIST) {
		return nil, fmt.Errorf("adding veth %s: %w", host, err)
	}
	created := err == nil
	l, err := netlink.LinkByName(host)
	if err == nil {
		err = netlink.AddrReplace(l, &netlink.Addr{IPNet: &net.IPNet{IP: gw.AsSlice(), Mask: net.CIDRMask(32, 32)}})
	}
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err == nil {
		dst := &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(32, 32)}
		err = netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Dst: dst, Scope: netlink.SCOPE_LINK})
	}
	if err != nil {
		if created {
			_ = deleteLink(host)
		}
		return nil, fmt.Errorf("setting up %s: %w", host, err)
	}
	return &pb.JoinResponse{SrcName: peer, DstPrefix: "eth", Gateway: gw.String()}, nil
}

func (ptp) Leave(_ context.Context, req *pb.LeaveRequest) error {
	return deleteLink(hostEnd(req.GetEndpoint()))
}

func (ptp) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}

func (ptp) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}

func (ptp) EndpointOperInfo(context.Context, *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	return &pb.EndpointOperInfoResponse{}, nil
}

// gateway is the network's IPv4 gateway address.
func gateway(n *pb.Network) (netip.Addr, error) {
	for _, d := range n.GetIpv4() {
		if p, err := netip.ParsePrefix(d.GetGateway()); err == nil {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network %s has no IPv4 gateway: %w", n.GetName(), sdk.ErrInvalid)
}

func short(ep *pb.Endpoint) string {
	id := ep.GetId()
	if len(id) > 10 {
		id = id[:10]
	}
	return id
}

// hostEnd names the host end of an endpoint's pair: v1h + its ID's start.
func hostEnd(ep *pb.Endpoint) string { return "v1h" + short(ep) }

// deleteLink deletes the link name; a missing link is not an error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err == nil {
		err = netlink.LinkDel(l)
	}
	if err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}
