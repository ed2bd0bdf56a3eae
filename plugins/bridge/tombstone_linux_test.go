package main

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// TestDeletedNetworkStaysDeleted: a call that raced a network's delete in
// the host (a spare's Prepare, an attach that read the network before the
// delete marked it) and reaches the driver after DeleteNetwork does not
// make the network's bridge and chains again — nothing would delete
// them. A CreateNetwork of it does.
func TestDeletedNetworkStaysDeleted(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, `{}`)
	n := testNet(48, nil)
	if err := d.CreateNetwork(ctx, &pb.CreateNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	if err := d.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: n}); err != nil {
		t.Fatal(err)
	}
	key := newNetns(t)
	ep := &pb.Endpoint{Id: newID(), NetworkId: n.Id, Interface: &pb.EndpointInterface{Address: "10.48.0.2/24"}}
	if _, err := d.Prepare(ctx, &pb.PrepareRequest{Network: n, EndpointId: ep.Id, SandboxKey: key, Ifname: "eth0"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Prepare after DeleteNetwork: %v; want not found", err)
	}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("CreateEndpoint after DeleteNetwork: %v; want not found", err)
	}
	if _, err := d.Join(ctx, &pb.JoinRequest{Network: n, Endpoint: ep, SandboxKey: key, Ifname: "eth0"}); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Join after DeleteNetwork: %v; want not found", err)
	}
	if _, err := netlink.LinkByName(bridgeName(n.Id)); err == nil {
		t.Fatalf("bridge %s made again after DeleteNetwork", bridgeName(n.Id))
	}
	if _, ok := sandnetRules(t)["fwd-"+tagID(n.Id)]; ok {
		t.Errorf("chain fwd-%s of the deleted network made again", tagID(n.Id))
	}
	if links := driverLinks(t); len(links) > 0 {
		t.Errorf("links left: %v", links)
	}
	// An explicit create (a replay, an undo's retry) brings it back.
	createNetwork(t, d, n)
	if _, err := netlink.LinkByName(bridgeName(n.Id)); err != nil {
		t.Fatalf("bridge after CreateNetwork again: %v", err)
	}
	if _, err := d.CreateEndpoint(ctx, &pb.CreateEndpointRequest{Network: n, Endpoint: ep}); err != nil {
		t.Fatalf("CreateEndpoint after CreateNetwork again: %v", err)
	}
	_ = d.DeleteEndpoint(ctx, &pb.EndpointRequest{Network: n, Endpoint: ep})
}
