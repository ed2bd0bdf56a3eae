package controller

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

// TestIPv6OnlyNetworkCreate: enable_ipv4 false makes a network with an
// IPv6 pool only, whose endpoints get IPv6 addresses only; a request it
// cannot honour is refused naming the field, and leaves no network.
func TestIPv6OnlyNetworkCreate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	no := new(bool)
	n, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "v6", Driver: "veth", EnableIPv4: no, SubnetV6: "fd00:61::/64"})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.IPv4) != 0 || len(n.IPv6) != 1 || !n.EnableIPv6 {
		t.Fatalf("network: IPv4 %v, IPv6 %v, enable_ipv6 %v; want one IPv6 pool only", n.IPv4, n.IPv6, n.EnableIPv6)
	}
	e.sandbox("c1")
	ep := e.connect("v6", "c1")
	if ep.Address.IsValid() || ep.AddressV6.String() != "fd00:61::2/64" {
		t.Errorf("endpoint addresses %v and %v, want fd00:61::2/64 only", ep.Address, ep.AddressV6)
	}
	yes := true
	for _, tc := range []struct {
		req  NetworkCreate
		says string
	}{
		{NetworkCreate{Driver: "veth", EnableIPv4: no}, "enable_ipv4: a network without IPv4 needs IPv6"},
		{NetworkCreate{Driver: "none", EnableIPv4: no, EnableIPv6: true}, `enable_ipv4: driver "none" does not use addresses`},
		{NetworkCreate{Driver: "veth", EnableIPv4: no, EnableIPv6: true, Subnet: "10.61.0.0/24"}, "subnet: 10.61.0.0/24 is IPv4, and the network has no IPv4"},
		{NetworkCreate{Driver: "veth", EnableIPv4: no, EnableIPv6: true, Gateway: "10.61.0.1"}, "gateway: 10.61.0.1 is an IPv4 gateway"},
		{NetworkCreate{Driver: "veth", EnableIPv4: no, EnableIPv6: true, IPRange: "10.61.0.0/25"}, "ip_range: 10.61.0.0/25 is an IPv4 range"},
		{NetworkCreate{Driver: "veth", EnableIPv4: no, SubnetV6: "fd00:62::/64", AuxAddresses: map[string]string{"r": "10.61.0.5"}}, "aux_addresses.r: 10.61.0.5 needs the network's subnet given"},
	} {
		tc.req.Name = "bad"
		if _, err := e.c.CreateNetwork(ctx, tc.req); !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("create %+v: %v, want invalid saying %s", tc.req, err, tc.says)
		}
	}
	// enable_ipv4 true is the default spelt out.
	if n, err := e.c.CreateNetwork(ctx, NetworkCreate{Name: "both", Driver: "veth", EnableIPv4: &yes, EnableIPv6: true}); err != nil || len(n.IPv4) != 1 || len(n.IPv6) != 1 {
		t.Errorf("enable_ipv4 true: %+v, %v; want both families", n, err)
	}
	if ns, err := e.c.Networks(ctx); err != nil || len(ns) != 2 {
		t.Errorf("networks after the refusals: %d, %v; want v6 and both", len(ns), err)
	}
}
