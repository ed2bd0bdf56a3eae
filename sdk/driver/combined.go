package driver

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// The host makes each connect and each disconnect one round trip to the
// driver: Attach and Detach bundle the calls it would otherwise make one
// after the other. The SDK serves them for every driver from the driver's
// own methods.

// Attacher is a driver that does CreateEndpoint and Join in one call. A
// plugin's Client is one; a driver implementing Attach itself is served
// with it rather than with the SDK's two calls.
type Attacher interface {
	Attach(ctx context.Context, req *pb.AttachRequest) (*pb.AttachResponse, error)
}

// Attach creates the endpoint of req and joins it to the sandbox at
// req.SandboxKey: in one round trip when d is an Attacher, otherwise with
// CreateEndpoint then Join, the endpoint Join sees carrying what
// CreateEndpoint filled in. If Join fails, the endpoint is deleted again
// and Join's error returned.
func Attach(ctx context.Context, d Driver, req *pb.AttachRequest) (*pb.AttachResponse, error) {
	if a, ok := d.(Attacher); ok {
		return a.Attach(ctx, req)
	}
	return attachInTwo(ctx, d, req)
}

// attachInTwo is Attach made of d's CreateEndpoint and Join.
func attachInTwo(ctx context.Context, d Driver, req *pb.AttachRequest) (*pb.AttachResponse, error) {
	created, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: req.GetNetwork(), Endpoint: req.GetEndpoint()})
	if err != nil {
		return nil, err
	}
	if created == nil {
		created = &pb.CreateEndpointResponse{}
	}
	ep := withFill(req.GetEndpoint(), created.GetInterface())
	joined, err := d.Join(ctx, &pb.JoinRequest{Network: req.GetNetwork(), Endpoint: ep, SandboxKey: req.GetSandboxKey(), Options: req.GetOptions(), Ifname: req.GetIfname(), Prepared: req.GetPrepared()})
	if err != nil {
		if derr := d.DeleteEndpoint(context.WithoutCancel(ctx), &pb.EndpointRequest{Network: req.GetNetwork(), Endpoint: ep}); derr != nil {
			err = errors.Join(err, derr)
		}
		return nil, err
	}
	if joined == nil {
		joined = &pb.JoinResponse{}
	}
	return &pb.AttachResponse{Create: created, Join: joined}, nil
}

// withFill returns a copy of ep with the fields fill sets.
func withFill(ep *pb.Endpoint, fill *pb.EndpointInterface) *pb.Endpoint {
	if fill.GetMac() == "" && fill.GetAddress() == "" && fill.GetAddressV6() == "" {
		return ep
	}
	ep = proto.Clone(ep).(*pb.Endpoint)
	if ep.Interface == nil {
		ep.Interface = &pb.EndpointInterface{}
	}
	if m := fill.GetMac(); m != "" {
		ep.Interface.Mac = m
	}
	if a := fill.GetAddress(); a != "" && ep.Interface.GetAddress() == "" {
		ep.Interface.Address = a
	}
	if a := fill.GetAddressV6(); a != "" && ep.Interface.GetAddressV6() == "" {
		ep.Interface.AddressV6 = a
	}
	return ep
}

func (s *server) Attach(ctx context.Context, req *pb.AttachRequest) (*pb.AttachResponse, error) {
	var resp *pb.AttachResponse
	var err error
	if a, ok := s.impl.(Attacher); ok {
		resp, err = a.Attach(ctx, req)
	} else {
		resp, err = attachInTwo(ctx, s.impl, req)
	}
	if resp == nil {
		resp = &pb.AttachResponse{}
	}
	return resp, sdk.ToStatus(err)
}

// Attach is Driver's CreateEndpoint and Join in one round trip; against a
// plugin that predates the call it makes the two calls.
func (c *Client) Attach(ctx context.Context, req *pb.AttachRequest) (*pb.AttachResponse, error) {
	if !c.noAttach.Load() {
		resp, err := c.c.Attach(ctx, req)
		if status.Code(err) != codes.Unimplemented {
			return resp, sdk.FromStatus(err)
		}
		c.noAttach.Store(true)
	}
	return attachInTwo(ctx, c, req)
}

// Detacher is a driver that does RevokeExternalConnectivity, Leave and
// DeleteEndpoint in one call. A plugin's Client is one.
type Detacher interface {
	Detach(ctx context.Context, req *pb.DetachRequest) error
}

// Detach revokes the endpoint's published ports (when req asks), leaves
// its sandbox (when req names one) and deletes it: in one round trip when
// d is a Detacher, otherwise with the three calls. It stops at the first
// failure and returns it.
func Detach(ctx context.Context, d Driver, req *pb.DetachRequest) error {
	if dt, ok := d.(Detacher); ok {
		return dt.Detach(ctx, req)
	}
	return detachInThree(ctx, d, req)
}

// detachInThree is Detach made of d's own calls.
func detachInThree(ctx context.Context, d Driver, req *pb.DetachRequest) error {
	n, ep := req.GetNetwork(), req.GetEndpoint()
	if req.GetRevokeExternal() {
		if err := d.RevokeExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: ep}); err != nil {
			return fmt.Errorf("revoking published ports: %w", err)
		}
	}
	if key := req.GetSandboxKey(); key != "" {
		if err := d.Leave(ctx, &pb.LeaveRequest{Network: n, Endpoint: ep, SandboxKey: key}); err != nil {
			return fmt.Errorf("leaving %s: %w", key, err)
		}
	}
	if err := d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep}); err != nil {
		return fmt.Errorf("deleting: %w", err)
	}
	return nil
}

func (s *server) Detach(ctx context.Context, req *pb.DetachRequest) (*pb.Empty, error) {
	var err error
	if dt, ok := s.impl.(Detacher); ok {
		err = dt.Detach(ctx, req)
	} else {
		err = detachInThree(ctx, s.impl, req)
	}
	return &pb.Empty{}, sdk.ToStatus(err)
}

// Detach is Driver's RevokeExternalConnectivity, Leave and DeleteEndpoint
// in one round trip; against a plugin that predates the call it makes the
// calls one by one.
func (c *Client) Detach(ctx context.Context, req *pb.DetachRequest) error {
	if !c.noDetach.Load() {
		_, err := c.c.Detach(ctx, req)
		if status.Code(err) != codes.Unimplemented {
			return sdk.FromStatus(err)
		}
		c.noDetach.Store(true)
	}
	return detachInThree(ctx, c, req)
}

// Preparer is a driver that readies attaches ahead of time (see the
// Prepare call in driver.proto). A plugin's Client is one.
//
// What a driver prepares must live in the sandbox's namespace or go with
// it: a prepared namespace the host does not use is released, and the
// driver hears nothing more of it. An Attach whose request says prepared
// finishes what Prepare made (the same network, endpoint ID, sandbox key
// and ifname), or does the whole attach when that is gone.
type Preparer interface {
	Prepare(ctx context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error)
}

// Prepare asks d to ready an attach ahead of time. A driver that is not a
// Preparer prepares nothing: the answer is empty, without error.
func Prepare(ctx context.Context, d Driver, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	if p, ok := d.(Preparer); ok {
		return p.Prepare(ctx, req)
	}
	return &pb.PrepareResponse{}, nil
}

func (s *server) Prepare(ctx context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	resp, err := Prepare(ctx, s.impl, req)
	if resp == nil {
		resp = &pb.PrepareResponse{}
	}
	return resp, sdk.ToStatus(err)
}

// Prepare is the driver's Prepare; a plugin that predates the call
// prepares nothing.
func (c *Client) Prepare(ctx context.Context, req *pb.PrepareRequest) (*pb.PrepareResponse, error) {
	resp, err := c.c.Prepare(ctx, req)
	if status.Code(err) == codes.Unimplemented {
		return &pb.PrepareResponse{}, nil
	}
	return resp, sdk.FromStatus(err)
}
