package agent

import (
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

func TestAdvertiseAddrIP(t *testing.T) {
	for in, want := range map[string]string{"": "invalid IP", "192.0.2.1": "192.0.2.1", "::ffff:192.0.2.1": "192.0.2.1", "2001:db8::1": "2001:db8::1"} {
		a, err := advertiseAddr(in)
		if err != nil || a.String() != want {
			t.Errorf("advertiseAddr(%q) = %v, %v; want %s", in, a, err, want)
		}
	}
}

// An interface name resolves to the interface's global IPv4 address, or
// its IPv6 one when it has no IPv4; one with neither, or no such
// interface, is an error naming advertise_addr.
func TestAdvertiseAddrInterface(t *testing.T) {
	nstest.RequireRoot(t)
	if _, err := advertiseAddr("nosuch0"); err == nil || !strings.Contains(err.Error(), "advertise_addr: interface nosuch0") {
		t.Fatalf("advertiseAddr(nosuch0) = %v, want an error naming advertise_addr", err)
	}
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "adv0"}, PeerName: "adv1"}
	if err := netlink.LinkAdd(d); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(d) })
	if _, err := advertiseAddr("adv0"); err == nil || !strings.Contains(err.Error(), "no global unicast address") {
		t.Fatalf("advertiseAddr of an interface without address = %v", err)
	}
	add := func(cidr string) {
		ip, n, _ := net.ParseCIDR(cidr)
		n.IP = ip
		if err := netlink.AddrAdd(d, &netlink.Addr{IPNet: n}); err != nil {
			t.Fatal(err)
		}
	}
	add("2001:db8::5/64")
	if a, err := advertiseAddr("adv0"); err != nil || a.String() != "2001:db8::5" {
		t.Fatalf("advertiseAddr with IPv6 only = %v, %v", a, err)
	}
	add("192.0.2.5/24")
	if a, err := advertiseAddr("adv0"); err != nil || a.String() != "192.0.2.5" {
		t.Fatalf("advertiseAddr = %v, %v; want the IPv4 address", a, err)
	}
}
