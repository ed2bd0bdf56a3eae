package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// rtnl sends hand-built rtnetlink requests on one socket the driver keeps
// open. The attach path uses it instead of vishvananda/netlink's LinkAdd,
// which needs three round trips (create, look the index up, set the master)
// where the kernel accepts all of it in one message.
type rtnl struct {
	sockets map[int]*nl.SocketHandle
	ioctlFD int // a socket for interface ioctls, which take no RTNL lock
}

func newRtnl() (*rtnl, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening rtnetlink socket: %w", err)
	}
	// Kernel error messages (extended ACK) make failures readable.
	_ = s.SetExtAck(true)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("opening a socket for interface ioctls: %w", err)
	}
	return &rtnl{sockets: map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}, ioctlFD: fd}, nil
}

// ifIndex returns the ifindex of the link name, 0 when there is none. It
// asks with an ioctl, which the kernel answers under RCU: no request
// waits behind it for the RTNL lock, nor it behind them.
//
// Equivalent to: `cat /sys/class/net/NAME/ifindex`.
func (r *rtnl) ifIndex(name string) (int, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, err
	}
	if err := unix.IoctlIfreq(r.ioctlFD, unix.SIOCGIFINDEX, ifr); err != nil {
		if errors.Is(err, unix.ENODEV) {
			return 0, nil
		}
		return 0, err
	}
	return int(ifr.Uint32()), nil
}

func (r *rtnl) exec(req *nl.NetlinkRequest) error {
	req.Sockets = r.sockets
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// getLink asks for one link, by name or by index, in this namespace or,
// with netnsID >= 0, in the namespace of that ID (as this namespace
// numbers it): the kernel looks it up there without the caller entering
// it.
//
// Equivalent to: `ip link show NAME` or `ip -n NS link show index I`.
func (r *rtnl) getLink(name string, index, netnsID int) (netlink.Link, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	if name != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	}
	if netnsID >= 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(netnsID))))
	}
	req.Sockets = r.sockets
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	if len(msgs) != 1 {
		return nil, fmt.Errorf("asking for link %q (index %d): %d answers", name, index, len(msgs))
	}
	return netlink.LinkDeserialize(nil, msgs[0])
}

// sandboxEnd returns the name of the other end of the veth pair whose
// host end is host, in the sandbox's namespace: the name the host gave
// it, as the container sees it.
//
// Equivalent to: `ip -n SANDBOX link show index $(ip -d link show HOST | peer index)`.
func (r *rtnl) sandboxEnd(host string) (string, error) {
	l, err := r.getLink(host, 0, -1)
	if err != nil {
		return "", fmt.Errorf("link %s: %w", host, err)
	}
	a := l.Attrs()
	if a.ParentIndex == 0 || a.NetNsID < 0 {
		return "", fmt.Errorf("link %s has no peer in another namespace", host)
	}
	peer, err := r.getLink("", a.ParentIndex, a.NetNsID)
	if err != nil {
		return "", fmt.Errorf("the peer of link %s: %w", host, err)
	}
	return peer.Attrs().Name, nil
}

// portReady says whether the port name and the bridge br, of ifindex
// brIndex, are both there: a port made on that bridge is then still on it
// (only a hand takes a port off its bridge; a bridge made anew has
// another ifindex).
func (r *rtnl) portReady(name, br string, brIndex int) bool {
	if !r.exists(name) {
		return false
	}
	i, err := r.ifIndex(br)
	return err == nil && i == brIndex
}

// exists says whether there is a link name.
func (r *rtnl) exists(name string) bool {
	i, err := r.ifIndex(name)
	return err == nil && i != 0
}

// vethSpec describes a veth pair whose sandbox end is created directly in
// the sandbox's network namespace.
type vethSpec struct {
	host, peer string
	mtu        int
	master     int // bridge ifindex
	peerMAC    net.HardwareAddr
	peerNS     int // fd of the sandbox's network namespace
}

// vethQueues is the number of transmit and receive queues of each end of
// a pair. The kernel's default is one per possible CPU, but a veth
// transmits without a queue lock and only XDP programs use more than one;
// every queue is a kobject with its sysfs directory, and one each makes
// creating a pair about 15% cheaper (docs/BENCHMARKS.md).
const vethQueues = 1

// addVeth creates the pair in one request: the host end enslaved to the
// bridge, the peer inside the sandbox with its MAC set, both down. bringUp
// brings the host end up.
//
// Equivalent to: `ip link add HOST mtu M master BR numtxqueues 1
// numrxqueues 1 type veth peer name PEER mtu M numtxqueues 1 numrxqueues 1
// address MAC netns NS`.
func (r *rtnl) addVeth(s vethSpec) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.host)))
	req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu))))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.master))))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(vethQueues)))
	req.AddData(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(vethQueues)))
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.peer))
	peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu)))
	peer.AddRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(vethQueues))
	peer.AddRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(vethQueues))
	if s.peerMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(s.peerMAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.peerNS)))
	req.AddData(info)
	return r.exec(req)
}

// bringUp sets flags on the bridge port name and brings it up, without an
// IPv6 link-local address: a bridge port needs no address, and every
// packet one sends (duplicate address probes, multicast listener reports,
// router solicitations) is flooded to every other port of the bridge,
// which costs more the more containers there are. The kernel takes the
// address generation mode only for a link that exists, hence not in
// addVeth.
//
// master, unless 0, is the bridge's ifindex, for a port that may have
// left it (a prepared pair whose bridge was made anew).
//
// Equivalent to: `ip link set NAME [master BRIDGE] type bridge_slave
// [isolated on|off] [hairpin on|off] addrgenmode none up`.
func (r *rtnl) bringUp(name string, f portFlags, master int) error {
	err := r.exec(upRequest(name, f, master, true))
	if errors.Is(err, unix.EAFNOSUPPORT) {
		// The link has no IPv6 (an MTU below IPv6's 1280, or IPv6 off):
		// no link-local address to keep it from making.
		err = r.exec(upRequest(name, f, master, false))
	}
	return err
}

// upRequest is bringUp's request; noLinkLocal asks the kernel for no
// IPv6 link-local address on the port.
func upRequest(name string, f portFlags, master int, noLinkLocal bool) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change = unix.IFF_UP
	msg.Flags = unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if master != 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	}
	if noLinkLocal {
		af := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		af.AddRtAttr(unix.AF_INET6, nil).AddRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{addrGenModeNone})
		req.AddData(af)
	}
	if info := f.linkInfo(); info != nil {
		req.AddData(info)
	}
	return req
}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE.
const addrGenModeNone = 1

// delLink deletes a link by name; a missing link is not an error. Deleting
// one end of a veth pair deletes both.
//
// Equivalent to: `ip link del NAME`.
func (r *rtnl) delLink(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	if err := r.exec(req); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// doom cuts a host end off for good: down, so its bridge port forwards
// nothing and the sandbox end loses its carrier, and into doomGroup, where
// the reaper deletes it (and its peer) later. It stays on the bridge until
// then: taking it off now would cost the kernel an RCU grace period, which
// a concurrent conntrack walk (the kernel's own, after a link goes down on
// a host that masquerades) stretches to half a millisecond. A missing link
// is not an error.
//
// Equivalent to: `ip link set NAME down group doomGroup`.
func (r *rtnl) doom(name string) error {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Change = unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(doomGroup)))
	if err := r.exec(req); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

// portFlags are bridge port flags to set; nil leaves a flag as it is.
type portFlags struct {
	// isolated: the bridge forwards nothing between two isolated ports,
	// while both still reach the bridge itself (the gateway) and
	// non-isolated ports.
	isolated *bool
	// hairpin lets the bridge send a frame back out of the port it came
	// in on. A container reaching its own published port needs it when
	// br_netfilter is on: the DNATed packet is bridged, not routed, back
	// to the port it came from.
	hairpin *bool
}

// setPortFlags sets flags on the bridge port name; a missing link, or one
// no longer on a bridge (Leave detached it), is not an error.
//
// Equivalent to: `ip link set NAME type bridge_slave isolated on|off
// hairpin on|off`.
func (r *rtnl) setPortFlags(name string, f portFlags) error {
	info := f.linkInfo()
	if info == nil {
		return nil
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(name)))
	req.AddData(info)
	if err := r.exec(req); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EOPNOTSUPP) {
		return err
	}
	return nil
}

// linkInfo is the IFLA_LINKINFO attribute setting f, or nil when f sets
// nothing.
func (f portFlags) linkInfo() *nl.RtAttr {
	if f.isolated == nil && f.hairpin == nil {
		return nil
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_SLAVE_KIND, nl.NonZeroTerminated("bridge"))
	data := info.AddRtAttr(nl.IFLA_INFO_SLAVE_DATA, nil)
	if f.isolated != nil {
		data.AddRtAttr(nl.IFLA_BRPORT_ISOLATED, boolAttr(*f.isolated))
	}
	if f.hairpin != nil {
		data.AddRtAttr(nl.IFLA_BRPORT_MODE, boolAttr(*f.hairpin))
	}
	return info
}

func boolAttr(b bool) []byte {
	if b {
		return []byte{1}
	}
	return []byte{0}
}

// withoutIPv6 turns IPv6 off on the bridge port name, before it comes up.
// A port is a layer-2 device: the bridge forwards its containers' IPv6
// either way, and the bridge itself keeps its addresses. With IPv6 on,
// every port adds a multicast route (ff00::/8 dev PORT) to the host's
// IPv6 table when it comes up, and every state change of any port walks
// that whole table (addrconf's route sync): with a thousand containers on
// a bridge, a walk of a thousand routes on each attach, under the RTNL
// lock (docs/BENCHMARKS.md). A kernel without IPv6 has no such sysctl,
// which is fine; any other failure leaves the port as the kernel made it
// (bringUp still keeps it without a link-local address).
//
// Equivalent to: `sysctl net.ipv6.conf.NAME.disable_ipv6=1`.
func withoutIPv6(name string) {
	_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", []byte("1"), 0o644)
}

// setSysctl writes value to the sysctl at /proc/sys/net/<path> unless it
// already holds it. Sysctls under net are per network namespace: these are
// the driver's own namespace's (the host's). path uses slashes, as
// interface names may contain dots.
func setSysctl(path, value string) error {
	path = "/proc/sys/net/" + path
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting sysctl %s=%s: %w", strings.TrimPrefix(path, "/proc/sys/"), value, err)
	}
	return nil
}

// localPortRange reads net.ipv4.ip_local_port_range, the range host ports
// are picked from when a binding leaves the host port 0.
func localPortRange() (lo, hi uint16, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	var l, h int
	if _, err := fmt.Sscan(string(b), &l, &h); err != nil || l < 1 || h > 65535 || l > h {
		return 0, 0, fmt.Errorf("parsing ip_local_port_range %q", strings.TrimSpace(string(b)))
	}
	return uint16(l), uint16(h), nil
}
