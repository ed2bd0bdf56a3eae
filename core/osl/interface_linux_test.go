package osl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk/polltest"
)

func mustCIDR(t testing.TB, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func mustMAC(t testing.TB, s string) net.HardwareAddr {
	t.Helper()
	mac, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return mac
}

func linkNames(links []netlink.Link) []string {
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	return names
}

func hasLink(links []netlink.Link, name string) bool {
	return slices.Contains(linkNames(links), name)
}

func findLink(t testing.TB, n *Namespace, name string) netlink.Link {
	t.Helper()
	links, err := n.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Attrs().Name == name {
			return l
		}
	}
	t.Fatalf("no link %s in %s; links: %v", name, n.Path(), linkNames(links))
	return nil
}

func hasAddr(addrs []netlink.Addr, cidr string) bool {
	for _, a := range addrs {
		if a.IPNet.String() == cidr {
			return true
		}
	}
	return false
}

// vethPair returns a "host" namespace and a sandbox namespace joined by a
// veth pair, vh0 in host and vs0 in the sandbox, both down and unaddressed.
func vethPair(t testing.TB) (host, sb *Namespace) {
	t.Helper()
	host, sb = newTestNamespace(t), newTestNamespace(t)
	if err := sb.CreateVethPair(host.Handle(), "vh0", "vs0", 0, nil); err != nil {
		t.Fatal(err)
	}
	return host, sb
}

// wired returns vethPair configured as a sandbox sees it: eth0 in sb with
// 10.99.0.2/24 and fd00:99::2/64, vh0 in host with .1 and ::1.
func wired(t testing.TB) (host, sb *Namespace) {
	t.Helper()
	host, sb = vethPair(t)
	if err := sb.ConfigureInterface(InterfaceConfig{
		SrcName:   "vs0",
		DstName:   "eth0",
		Addresses: []*net.IPNet{mustCIDR(t, "10.99.0.2/24"), mustCIDR(t, "fd00:99::2/64")},
	}); err != nil {
		t.Fatal(err)
	}
	if err := host.ConfigureInterface(InterfaceConfig{
		SrcName:   "vh0",
		Addresses: []*net.IPNet{mustCIDR(t, "10.99.0.1/24"), mustCIDR(t, "fd00:99::1/64")},
	}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, sb, "eth0")
	waitUp(t, host, "vh0")
	return host, sb
}

func waitUp(t testing.TB, n *Namespace, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.WaitInterfaceReady(ctx, name); err != nil {
		t.Fatal(err)
	}
}

// sendUDP sends a datagram from namespace from to to and reports whether a
// socket listening on to inside namespace at received it, and from which
// address.
func sendUDP(t testing.TB, from, at *Namespace, to net.IP) (net.IP, error) {
	t.Helper()
	var ln *net.UDPConn
	if err := at.Do(func() (err error) {
		ln, err = net.ListenUDP("udp", &net.UDPAddr{IP: to})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	var c *net.UDPConn
	if err := from.Do(func() (err error) {
		c, err = net.DialUDP("udp", nil, ln.LocalAddr().(*net.UDPAddr))
		return err
	}); err != nil {
		return nil, fmt.Errorf("dialing %s: %w", ln.LocalAddr(), err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		return nil, fmt.Errorf("sending to %s: %w", ln.LocalAddr(), err)
	}

	_ = ln.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 16)
	nr, src, err := ln.ReadFromUDP(buf)
	if err != nil {
		return nil, fmt.Errorf("receiving on %s: %w", ln.LocalAddr(), err)
	}
	if string(buf[:nr]) != "hello" {
		return nil, fmt.Errorf("received %q, want hello", buf[:nr])
	}
	return src.IP, nil
}

func TestVethInPlaceCarriesTraffic(t *testing.T) {
	host, sb := newTestNamespace(t), newTestNamespace(t)
	mac := mustMAC(t, "02:42:0a:63:00:02")
	if err := sb.CreateVethPair(host.Handle(), "vh0", "vs0", 1400, mac); err != nil {
		t.Fatal(err)
	}

	peer := findLink(t, sb, "vs0")
	if peer.Attrs().MTU != 1400 || peer.Attrs().HardwareAddr.String() != mac.String() {
		t.Errorf("peer: mtu %d mac %s, want 1400 %s", peer.Attrs().MTU, peer.Attrs().HardwareAddr, mac)
	}
	if hostEnd := findLink(t, host, "vh0"); hostEnd.Attrs().MTU != 1400 {
		t.Errorf("host end mtu %d, want 1400", hostEnd.Attrs().MTU)
	}
	if links, _ := sb.Links(); hasLink(links, "vh0") {
		t.Error("host end created in the sandbox")
	}
	if links, _ := host.Links(); hasLink(links, "vs0") {
		t.Error("peer end created in the host namespace")
	}

	if err := sb.ConfigureInterface(InterfaceConfig{
		SrcName:   "vs0",
		DstName:   "eth0",
		Addresses: []*net.IPNet{mustCIDR(t, "10.99.0.2/24"), mustCIDR(t, "fd00:99::2/64")},
		MTU:       1380,
	}); err != nil {
		t.Fatal(err)
	}
	if err := host.ConfigureInterface(InterfaceConfig{
		SrcName:   "vh0",
		Addresses: []*net.IPNet{mustCIDR(t, "10.99.0.1/24"), mustCIDR(t, "fd00:99::1/64")},
		MTU:       1380,
	}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, sb, "eth0")
	waitUp(t, host, "vh0")
	eth0 := findLink(t, sb, "eth0")
	if eth0.Attrs().Flags&net.FlagUp == 0 || eth0.Attrs().MTU != 1380 {
		t.Errorf("eth0: flags %v mtu %d, want up and 1380", eth0.Attrs().Flags, eth0.Attrs().MTU)
	}

	tests := []struct {
		desc     string
		from, at *Namespace
		to, src  string
	}{
		{desc: "IPv4 host to sandbox", from: host, at: sb, to: "10.99.0.2", src: "10.99.0.1"},
		{desc: "IPv4 sandbox to host", from: sb, at: host, to: "10.99.0.1", src: "10.99.0.2"},
		{desc: "IPv6 host to sandbox", from: host, at: sb, to: "fd00:99::2", src: "fd00:99::1"},
		{desc: "IPv6 sandbox to host", from: sb, at: host, to: "fd00:99::1", src: "fd00:99::2"},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			src, err := sendUDP(t, tt.from, tt.at, net.ParseIP(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			if !src.Equal(net.ParseIP(tt.src)) {
				t.Errorf("datagram came from %s, want %s", src, tt.src)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	host, sb := wired(t)
	// A service "beyond the gateway", reachable from sb only through routes.
	if err := host.ConfigureInterface(InterfaceConfig{
		SrcName:   "lo",
		Addresses: []*net.IPNet{mustCIDR(t, "192.0.2.1/32"), mustCIDR(t, "2001:db8::1/128")},
	}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, host, "lo")
	beyond4, beyond6 := net.ParseIP("192.0.2.1"), net.ParseIP("2001:db8::1")

	if _, err := sendUDP(t, sb, host, beyond4); err == nil {
		t.Fatal("reached 192.0.2.1 without a route")
	}

	if err := sb.AddRoute(mustCIDR(t, "10.100.0.0/16"), net.ParseIP("10.99.0.1"), "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := sb.AddRoute(mustCIDR(t, "10.100.0.0/16"), net.ParseIP("10.99.0.1"), "eth0"); err != nil {
		t.Fatalf("adding the same route again: %v, want replace", err)
	}
	if err := sb.AddRoute(mustCIDR(t, "10.200.0.0/16"), nil, "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetDefaultGateway(net.ParseIP("10.99.0.3"), "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := sb.SetDefaultGateway(net.ParseIP("10.99.0.1"), ""); err != nil { // replaces .3
		t.Fatal(err)
	}
	if err := sb.SetDefaultGateway(net.ParseIP("fd00:99::1"), "eth0"); err != nil {
		t.Fatal(err)
	}

	routes := func(family int) []string {
		t.Helper()
		rs, err := sb.Handle().RouteList(nil, family)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			dst := "default"
			if !isDefault(r) {
				dst = r.Dst.String()
			}
			if strings.HasPrefix(dst, "fe80:") || r.Dst != nil && r.Dst.IP.IsMulticast() {
				continue // kernel's own
			}
			s := dst
			if r.Gw != nil {
				s += " via " + r.Gw.String()
			}
			if r.Scope == netlink.SCOPE_LINK {
				s += " scope link"
			}
			out = append(out, s)
		}
		sort.Strings(out)
		return out
	}
	want4 := []string{"10.100.0.0/16 via 10.99.0.1", "10.200.0.0/16 scope link", "10.99.0.0/24 scope link", "default via 10.99.0.1"}
	if got := routes(unix.AF_INET); !slices.Equal(got, want4) {
		t.Errorf("IPv4 routes = %q, want %q", got, want4)
	}
	want6 := []string{"default via fd00:99::1", "fd00:99::/64"}
	if got := routes(unix.AF_INET6); !slices.Equal(got, want6) {
		t.Errorf("IPv6 routes = %q, want %q", got, want6)
	}

	for _, dst := range []net.IP{beyond4, beyond6} {
		if _, err := sendUDP(t, sb, host, dst); err != nil {
			t.Errorf("through the default gateway to %s: %v", dst, err)
		}
	}

	if err := sb.UnsetDefaultGateway(netlink.FAMILY_V4); err != nil {
		t.Fatal(err)
	}
	if err := sb.UnsetDefaultGateway(netlink.FAMILY_V4); err != nil {
		t.Fatalf("unsetting a missing default gateway: %v, want nil", err)
	}
	if got := routes(unix.AF_INET); slices.Contains(got, "default via 10.99.0.1") {
		t.Errorf("IPv4 routes after UnsetDefaultGateway = %q, want no default", got)
	}
	if got := routes(unix.AF_INET6); !slices.Contains(got, "default via fd00:99::1") {
		t.Errorf("IPv6 routes after unsetting IPv4 default = %q, want IPv6 default kept", got)
	}
	if _, err := sendUDP(t, sb, host, beyond4); err == nil {
		t.Error("reached 192.0.2.1 after its default route was removed")
	}

	if err := sb.RemoveRoute(mustCIDR(t, "10.100.0.0/16"), nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := sb.RemoveRoute(mustCIDR(t, "10.100.0.0/16"), nil, ""); err != nil {
		t.Fatalf("removing a missing route: %v, want nil", err)
	}
	if got := routes(unix.AF_INET); slices.Contains(got, "10.100.0.0/16 via 10.99.0.1") {
		t.Errorf("IPv4 routes after RemoveRoute = %q", got)
	}
}

func TestRouteArgumentErrors(t *testing.T) {
	_, sb := wired(t)
	tests := []struct {
		desc string
		err  error
	}{
		{"no destination", sb.AddRoute(nil, net.ParseIP("10.99.0.1"), "eth0")},
		{"mixed families", sb.AddRoute(mustCIDR(t, "10.100.0.0/16"), net.ParseIP("fd00:99::1"), "eth0")},
		{"direct route without device", sb.AddRoute(mustCIDR(t, "10.100.0.0/16"), nil, "")},
		{"no gateway", sb.SetDefaultGateway(nil, "eth0")},
		{"bad family", sb.UnsetDefaultGateway(99)},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", tt.desc, tt.err)
		}
	}
	if err := sb.AddRoute(mustCIDR(t, "10.100.0.0/16"), net.ParseIP("10.99.0.1"), "nosuchdev"); err == nil {
		t.Error("route via a missing device: no error")
	}
}

// linkState is what a user sees of a namespace's links with `ip addr`,
// without the addresses the kernel adds itself (IPv6 link-local).
func linkState(t testing.TB, n *Namespace) []string {
	t.Helper()
	links, err := n.Links()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		out = append(out, fmt.Sprintf("%d %s mtu=%d mac=%s up=%v", a.Index, a.Name, a.MTU, a.HardwareAddr, a.Flags&net.FlagUp != 0))
		addrs, err := n.Handle().AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				continue
			}
			out = append(out, fmt.Sprintf("%d addr %s", a.Index, ad.IPNet))
		}
	}
	sort.Strings(out)
	return out
}

func TestConfigureInterfaceFailureLeavesLinkAsFound(t *testing.T) {
	tests := []struct {
		desc    string
		startUp bool
		cfg     InterfaceConfig
		wantErr error  // nil: any error
		says    string // the error's text holds it, when set
	}{
		{
			desc: "missing link",
			cfg:  InterfaceConfig{SrcName: "nosuchlink", DstName: "eth0", Addresses: []*net.IPNet{{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)}}},
		},
		{
			desc:    "invalid address",
			cfg:     InterfaceConfig{SrcName: "vs0", DstName: "eth0", Addresses: []*net.IPNet{{IP: nil, Mask: net.CIDRMask(24, 32)}}},
			wantErr: ErrInvalid,
		},
		{
			desc:    "invalid new name",
			cfg:     InterfaceConfig{SrcName: "vs0", DstName: "much-too-long-name"},
			wantErr: ErrInvalid,
		},
		{
			desc:    "new name taken",
			cfg:     InterfaceConfig{SrcName: "vs0", DstName: "lo", Addresses: []*net.IPNet{{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)}}},
			wantErr: unix.EEXIST,
			says:    "an interface named lo is already in the namespace",
		},
		{
			desc: "MTU out of range after rename and MAC",
			cfg:  InterfaceConfig{SrcName: "vs0", DstName: "eth0", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}, MTU: 10},
		},
		{
			desc: "duplicate address after others were added",
			cfg: InterfaceConfig{
				SrcName: "vs0", DstName: "eth0", MAC: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x42}, MTU: 1300,
				Addresses: []*net.IPNet{
					{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)},
					{IP: net.ParseIP("fd00::2"), Mask: net.CIDRMask(64, 128)},
					{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)},
				},
			},
			wantErr: unix.EEXIST,
		},
		{
			desc:    "duplicate address on a link that was up",
			startUp: true,
			cfg: InterfaceConfig{
				SrcName: "vs0", DstName: "eth0",
				Addresses: []*net.IPNet{
					{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)},
					{IP: net.ParseIP("10.0.0.2"), Mask: net.CIDRMask(24, 32)},
				},
			},
			wantErr: unix.EEXIST,
		},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			_, sb := vethPair(t)
			if tt.startUp {
				if err := sb.Handle().LinkSetUp(findLink(t, sb, "vs0")); err != nil {
					t.Fatal(err)
				}
			}
			before := linkState(t, sb)

			err := sb.ConfigureInterface(tt.cfg)
			if err == nil {
				t.Fatal("ConfigureInterface succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %q, want it to say %q", err, tt.says)
			}
			if strings.Contains(err.Error(), "rolling back") {
				t.Errorf("rollback failed: %v", err)
			}
			if after := linkState(t, sb); !slices.Equal(after, before) {
				t.Errorf("links changed by failed ConfigureInterface:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
}

func TestRemoveInterfaceTakesBothEnds(t *testing.T) {
	host, sb := wired(t)
	if err := sb.RemoveInterface("eth0"); err != nil {
		t.Fatal(err)
	}
	if links, _ := sb.Links(); hasLink(links, "eth0") {
		t.Error("eth0 still in sandbox")
	}
	if links, _ := host.Links(); hasLink(links, "vh0") {
		t.Error("host end of the veth pair survived")
	}
	if err := sb.RemoveInterface("eth0"); err != nil {
		t.Errorf("removing a missing interface: %v, want nil", err)
	}
}

func TestRetireInterface(t *testing.T) {
	_, sb := wired(t)
	if err := sb.RetireInterface("eth0", false); err != nil {
		t.Fatal(err)
	}
	l := findLink(t, sb, "eth0")
	if l.Attrs().Flags&net.FlagUp != 0 || l.Attrs().Group != retiredGroup {
		t.Fatalf("retired eth0: flags %v, group %#x; want down in the retired group", l.Attrs().Flags, l.Attrs().Group)
	}
	addrs, err := sb.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 0 {
		t.Fatalf("retired eth0 keeps addresses %v", addrs)
	}
	if err := sb.RetireInterface("eth0", false); err != nil {
		t.Errorf("retiring it again: %v", err)
	}
	if err := sb.RetireInterface("nosuch0", false); err != nil {
		t.Errorf("retiring a missing interface: %v, want nil", err)
	}

	// Its name can be freed for a new interface; one in use cannot.
	if err := sb.ReleaseName("eth0"); err != nil {
		t.Fatal(err)
	}
	if links, _ := sb.Links(); hasLink(links, "eth0") {
		t.Fatal("eth0 still taken after ReleaseName")
	}
	if err := sb.ReleaseName("lo"); !errors.Is(err, fs.ErrExist) {
		t.Errorf("ReleaseName of a link in use: %v, want fs.ErrExist", err)
	}
	if err := sb.ReleaseName("eth0"); err != nil {
		t.Errorf("ReleaseName of a free name: %v, want nil", err)
	}
}

// TestRetireInterfaceReleasingItsName: retired with release, a link
// frees its name at once (a runtime's namespace), keeping its index.
func TestRetireInterfaceReleasingItsName(t *testing.T) {
	host, sb := wired(t)
	index := findLink(t, sb, "eth0").Attrs().Index
	if err := sb.RetireInterface("eth0", true); err != nil {
		t.Fatal(err)
	}
	links, _ := sb.Links()
	if hasLink(links, "eth0") || !hasLink(links, retiredName(index)) {
		t.Fatalf("after retiring eth0 with release: links %v; want it as %s", linkNames(links), retiredName(index))
	}
	if l := findLink(t, sb, retiredName(index)); l.Attrs().Flags&net.FlagUp != 0 || l.Attrs().Group != retiredGroup {
		t.Fatalf("the renamed link: flags %v, group %#x; want down in the retired group", l.Attrs().Flags, l.Attrs().Group)
	}

	// DeleteRetired deletes it, and its veth peer.
	if err := sb.DeleteRetired(); err != nil {
		t.Fatal(err)
	}
	if links, _ := sb.Links(); len(links) != 1 {
		t.Errorf("links after DeleteRetired: %v, want only lo", linkNames(links))
	}
	if links, _ := host.Links(); hasLink(links, "vh0") {
		t.Error("the veth peer survived DeleteRetired")
	}
	if err := sb.DeleteRetired(); err != nil {
		t.Errorf("DeleteRetired with nothing retired: %v", err)
	}
}

func TestMoveLinkIn(t *testing.T) {
	host, sb := newTestNamespace(t), newTestNamespace(t)
	// Both ends in host, as a driver that cannot create in place would.
	if err := host.CreateVethPair(host.Handle(), "m0", "m1", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := sb.MoveLinkIn(host.Handle(), "m1"); err != nil {
		t.Fatal(err)
	}
	if links, _ := sb.Links(); !hasLink(links, "m1") {
		t.Errorf("m1 not in sandbox after MoveLinkIn; links %v", linkNames(links))
	}
	if links, _ := host.Links(); hasLink(links, "m1") || !hasLink(links, "m0") {
		t.Errorf("host links after MoveLinkIn = %v, want m0 only", linkNames(links))
	}
	if err := sb.MoveLinkIn(host.Handle(), "m1"); err == nil {
		t.Error("moving a link that is no longer in host: no error")
	}
}

func TestCreateVethPairErrors(t *testing.T) {
	host, sb := newTestNamespace(t), newTestNamespace(t)
	tests := []struct {
		desc           string
		hostName, peer string
		mtu            int
		wantErr        error // nil: any error
	}{
		{desc: "bad host name", hostName: "a/b", peer: "p0", wantErr: ErrInvalid},
		{desc: "bad peer name", hostName: "h0", peer: "", wantErr: ErrInvalid},
		{desc: "negative mtu", hostName: "h0", peer: "p0", mtu: -1, wantErr: ErrInvalid},
		{desc: "peer name taken in sandbox", hostName: "h0", peer: "lo", wantErr: unix.EEXIST},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			err := sb.CreateVethPair(host.Handle(), tt.hostName, tt.peer, tt.mtu, nil)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("CreateVethPair = %v, want %v", err, tt.wantErr)
			}
			if links, _ := host.Links(); len(links) != 1 {
				t.Errorf("host links after failed CreateVethPair = %v, want only lo", linkNames(links))
			}
		})
	}
}

func TestNextInterfaceName(t *testing.T) {
	_, sb := vethPair(t)
	if got, err := sb.NextInterfaceName("eth"); err != nil || got != "eth0" {
		t.Fatalf("NextInterfaceName = %q, %v; want eth0", got, err)
	}
	if err := sb.ConfigureInterface(InterfaceConfig{SrcName: "vs0", DstName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	if got, err := sb.NextInterfaceName("eth"); err != nil || got != "eth1" {
		t.Fatalf("NextInterfaceName = %q, %v; want eth1", got, err)
	}
}

func TestWaitInterfaceReady(t *testing.T) {
	host, sb := vethPair(t)
	if err := sb.ConfigureInterface(InterfaceConfig{SrcName: "vs0"}); err != nil {
		t.Fatal(err)
	}

	// The host end is still down, so the sandbox end has no carrier.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := sb.WaitInterfaceReady(ctx, "vs0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitInterfaceReady with the peer down = %v, want DeadlineExceeded", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := sb.WaitLinkUp(ctx2, "vs0"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitLinkUp with the peer down = %v, want DeadlineExceeded", err)
	}

	if err := host.Handle().LinkSetUp(findLink(t, host, "vh0")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx3, cancel3 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel3()
	if err := sb.WaitLinkUp(ctx3, "vs0"); err != nil {
		t.Fatalf("WaitLinkUp with the peer up: %v", err)
	}
	waitUp(t, sb, "vs0")
	t.Logf("vs0 operationally up %v after its peer", time.Since(start))
	waitUp(t, sb, "lo")

	// IPv6 addresses become reachable only when the kernel's worker has
	// installed their local routes; WaitInterfaceReady waits for that.
	var addrs []*net.IPNet
	for i := range 64 {
		addrs = append(addrs, mustCIDR(t, fmt.Sprintf("2001:db8:1::%x/128", i+1)))
	}
	if err := sb.ConfigureInterface(InterfaceConfig{SrcName: "lo", Addresses: addrs}); err != nil {
		t.Fatal(err)
	}
	waitUp(t, sb, "lo")
	local, err := sb.Handle().RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !slices.ContainsFunc(local, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.IP.Equal(a.IP) }) {
			t.Errorf("no local route for %s after WaitInterfaceReady", a.IP)
		}
	}
	if _, err := sendUDP(t, sb, sb, addrs[len(addrs)-1].IP); err != nil {
		t.Errorf("to the last address added: %v", err)
	}

	if err := sb.WaitInterfaceReady(context.Background(), "nosuchlink"); err == nil {
		t.Fatal("WaitInterfaceReady on a missing link: no error")
	}
}

// An interface configured with NoIPv6LinkLocal comes up without an IPv6
// link-local address; one configured without it gets one.
func TestConfigureInterfaceNoIPv6LinkLocal(t *testing.T) {
	for _, noLL := range []bool{true, false} {
		t.Run(fmt.Sprintf("NoIPv6LinkLocal=%v", noLL), func(t *testing.T) {
			sb := newTestNamespace(t)
			if err := sb.CreateVethPair(sb.Handle(), "peer0", "tmp0", 0, nil); err != nil {
				t.Fatal(err)
			}
			peer, err := sb.Handle().LinkByName("peer0")
			if err != nil {
				t.Fatal(err)
			}
			if err := sb.Handle().LinkSetUp(peer); err != nil {
				t.Fatal(err)
			}
			cfg := InterfaceConfig{SrcName: "tmp0", DstName: "eth0", Addresses: []*net.IPNet{mustCIDR(t, "10.77.0.2/24")}, NoIPv6LinkLocal: noLL}
			if err := sb.ConfigureInterface(cfg); err != nil {
				t.Fatal(err)
			}
			if err := sb.WaitInterfaceReady(context.Background(), "eth0"); err != nil {
				t.Fatal(err)
			}
			link, err := sb.Handle().LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			// The kernel adds the address when the link comes up, from a
			// worker: wait for it to show, or, where it must not, watch
			// that it does not for half a second.
			hasLL := func() bool {
				addrs, err := sb.Handle().AddrList(link, netlink.FAMILY_V6)
				if err != nil {
					t.Fatal(err)
				}
				return slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() })
			}
			if !noLL {
				polltest.Until(t, 15*time.Second, "a link-local address on eth0", hasLL)
				return
			}
			if polltest.Wait(500*time.Millisecond, hasLL) {
				t.Fatal("a link-local address on eth0 with NoIPv6LinkLocal")
			}
		})
	}
}

func TestEnsureInterface(t *testing.T) {
	sb := newTestNamespace(t)
	if err := sb.CreateVethPair(sb.Handle(), "eth0", "peer0", 0, nil); err != nil {
		t.Fatal(err)
	}
	want := []*net.IPNet{mustCIDR(t, "10.78.0.2/24"), mustCIDR(t, "fd78::2/64")}
	if err := sb.ConfigureInterface(InterfaceConfig{SrcName: "eth0", Addresses: want[:1]}); err != nil {
		t.Fatal(err)
	}
	link, err := sb.Handle().LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Handle().LinkSetDown(link); err != nil {
		t.Fatal(err)
	}
	before := linkState(t, sb)
	// Down, and missing its IPv6 address: both repaired, nothing doubled.
	for range 2 {
		if err := sb.EnsureInterface("eth0", want); err != nil {
			t.Fatal(err)
		}
	}
	got := linkState(t, sb)
	idx := fmt.Sprint(link.Attrs().Index)
	if !slices.Contains(got, idx+" addr 10.78.0.2/24") || !slices.Contains(got, idx+" addr fd78::2/64") || len(got) != len(before)+1 {
		t.Fatalf("after EnsureInterface: %v (before %v)", got, before)
	}
	if !slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, idx+" eth0 ") && strings.HasSuffix(s, "up=true") }) {
		t.Fatalf("eth0 not up after EnsureInterface: %v", got)
	}
	if err := sb.EnsureInterface("eth9", want); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("EnsureInterface of a missing link: %v, want fs.ErrNotExist", err)
	}
}

// HostLinks lists a sandbox's links whose other end is on the host, never
// lo or links whose both ends are inside, even before anything else asked
// the kernel about the new link.
func TestHostLinks(t *testing.T) {
	sb := newTestNamespace(t)
	if err := sb.CreateVethPair(nil, "hostend0", "sbend0", 0, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.RemoveInterface("sbend0") })
	if err := sb.CreateVethPair(sb.Handle(), "inside0", "inside1", 0, nil); err != nil {
		t.Fatal(err)
	}
	host, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	links, err := sb.HostLinks(host)
	if err != nil {
		t.Fatal(err)
	}
	if got := linkNames(links); fmt.Sprint(got) != "[sbend0]" {
		t.Fatalf("HostLinks = %v, want [sbend0]", got)
	}
}
