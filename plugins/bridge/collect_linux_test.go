package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// TestCollect: a restarted driver, replayed one network and one of its
// endpoints, is told by Collect that the host holds nothing else. The
// other network's bridge goes with the host end on it, and so do the
// other endpoint's host end on the kept network, the other network's
// chains and every published port but the kept endpoint's; the kept
// endpoint still answers on its port, and a bridge the operator made is
// left alone.
func TestCollect(t *testing.T) {
	requireRoot(t)
	d := newDriverT(t, "")
	kept, gone := testNet(26, nil), testNet(27, nil)
	createNetwork(t, d, kept)
	createNetwork(t, d, gone)
	publish := func(n *pb.Network, c *container, port uint32) {
		t.Helper()
		c.ep.PortBindings = []*pb.PortBinding{{Proto: "tcp", ContainerPort: 7777, HostPort: port}}
		if _, err := d.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: n, Endpoint: c.ep}); err != nil {
			t.Fatal(err)
		}
	}
	web, forgotten, other := attach(t, d, kept, 2), attach(t, d, kept, 3), attach(t, d, gone, 2)
	publish(kept, web, 18090)
	publish(kept, forgotten, 18091)
	publish(gone, other, 18092)
	serveTCP(t, web.key, ":7777")
	op := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "opbr0"}}
	if err := netlink.LinkAdd(op); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(op) })

	restarted := newDriverT(t, "")
	replayTo(t, restarted, kept, web)
	if _, err := restarted.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: kept, Endpoint: web.ep}); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Collect(ctx, &pb.CollectRequest{Networks: []string{kept.Id}, Endpoints: []string{web.ep.Id}}); err != nil {
		t.Fatal(err)
	}

	links := driverLinks(t)
	for _, want := range []string{bridgeName(kept.Id), hostIfName(web.ep.Id)} {
		if !slices.Contains(links, want) {
			t.Errorf("link %s of the kept network is gone: %v", want, links)
		}
	}
	for _, notWant := range []string{bridgeName(gone.Id), hostIfName(other.ep.Id), hostIfName(forgotten.ep.Id)} {
		if slices.Contains(links, notWant) {
			t.Errorf("link %s of a forgotten network or endpoint is left: %v", notWant, links)
		}
	}
	if _, err := netlink.LinkByName("opbr0"); err != nil {
		t.Errorf("the operator's bridge: %v", err)
	}
	rules := sandnetRules(t)
	for chain := range rules {
		if strings.HasSuffix(chain, tagID(gone.Id)) {
			t.Errorf("chain %s of the forgotten network is left", chain)
		}
	}
	if !slices.ContainsFunc(rules["published"], func(c string) bool { return strings.Contains(c, tagID(web.ep.Id)) }) ||
		slices.ContainsFunc(rules["published"], func(c string) bool {
			return strings.Contains(c, tagID(forgotten.ep.Id)) || strings.Contains(c, tagID(other.ep.Id))
		}) {
		t.Errorf("published ports %v: want web's only", rules["published"])
	}
	mustReach(t, "web's published port after the collect", "", "127.0.0.1:18090", "10.26.0.1")
	// What a previous run left is gone from the driver's allocations too.
	n := restarted.nets[kept.Id]
	probe := &pb.Endpoint{Id: newID(), Interface: &pb.EndpointInterface{Address: "10.26.0.9/24"},
		PortBindings: []*pb.PortBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 18091}}}
	if n == nil {
		t.Fatal("the kept network is not in the restarted driver")
	}
	if _, err := restarted.ProgramExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: kept, Endpoint: probe}); err != nil {
		t.Errorf("publishing the forgotten endpoint's port again: %v", err)
	}
	if err := restarted.RevokeExternalConnectivity(ctx, &pb.ExternalConnectivityRequest{Network: kept, Endpoint: probe}); err != nil {
		t.Error(err)
	}
}
