package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// overlay is the driver. It keeps nothing but its config: every request
// carries the network (with this host's advertise address and the VNI),
// and the kernel holds the rest, found again by name after a restart.
//
// mu serialises the changes to a network's bridge, VXLAN device and
// peers; Join and Leave take it only to make sure the network is there.
type overlay struct {
	h   func() (*netlink.Handle, error) // the host's namespace, opened on first use
	log hclog.Logger

	mu  sync.Mutex
	cfg Config // guarded by mu
	// deleted are the networks DeleteNetwork removed, the most recent
	// 1024: a Join or PeerAdd naming one raced the delete in the host and
	// is refused rather than making the bridge and VXLAN device again,
	// which nothing would delete (and whose VNI this host would then
	// refuse to any other network) until the next agent start. Only
	// CreateNetwork brings such a network back. Safe for concurrent use.
	deleted *lru.Cache[string, struct{}]
}

func newDriver() *overlay { return newDriverIn("") }

// newDriverIn returns a driver that works in the network namespace
// bind-mounted at nsPath, as if it ran there ("" is the process's own).
// Tests give each "host" a namespace and a driver.
func newDriverIn(nsPath string) *overlay {
	deleted, _ := lru.New[string, struct{}](1024)
	return &overlay{
		cfg:     defaultConfig(),
		deleted: deleted,
		log:     sdk.NewLogger("overlay"),
		h: sync.OnceValues(func() (*netlink.Handle, error) {
			if nsPath == "" {
				return netlink.NewHandle(unix.NETLINK_ROUTE)
			}
			ns, err := netns.GetFromPath(nsPath)
			if err != nil {
				return nil, fmt.Errorf("opening the host namespace %s: %w", nsPath, err)
			}
			defer ns.Close()
			return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
		}),
	}
}

func (o *overlay) Configure(_ context.Context, raw []byte) error {
	c, err := parse(raw)
	if err != nil {
		return err
	}
	o.mu.Lock()
	o.cfg = c
	o.mu.Unlock()
	return nil
}

func (o *overlay) GetCapabilities(ctx context.Context) (*pb.Capabilities, error) {
	return capabilities(ctx)
}

func (o *overlay) parseNetwork(pn *pb.Network) (*network, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return parseNetwork(o.cfg, pn)
}

// CreateNetwork creates or repairs the network's bridge and VXLAN device.
// Creating it again with the same configuration changes nothing; with
// another VNI, port or advertise address the VXLAN device is made anew
// (its peers go with it: the host sends them again).
func (o *overlay) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	n, err := o.parseNetwork(req.GetNetwork())
	if err != nil {
		return err
	}
	o.deleted.Remove(n.id)
	_, _, err = o.ensureNetwork(n)
	return err
}

// notDeleted refuses a call naming a network this driver deleted.
func (o *overlay) notDeleted(n *network) error {
	if o.deleted.Contains(n.id) {
		return fmt.Errorf("network %s was deleted: %w", n.id, sdk.ErrNotFound)
	}
	return nil
}

// ensureNetwork reconciles network n and returns its bridge's and VXLAN
// device's ifindexes.
func (o *overlay) ensureNetwork(n *network) (bridge, vxlan int, err error) {
	h, err := o.h()
	if err != nil {
		return 0, 0, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	mtu := n.mtu
	if mtu == 0 {
		if mtu, err = underlayMTU(h, n.vtep); err != nil {
			return 0, 0, fmt.Errorf("network %s: %w", n.id, err)
		}
	}
	br, err := ensureBridge(h, n, mtu)
	if err != nil {
		return 0, 0, fmt.Errorf("network %s: %w", n.id, err)
	}
	vx, err := ensureVXLAN(h, n, mtu, br)
	if err != nil {
		return 0, 0, fmt.Errorf("network %s: %w", n.id, err)
	}
	return br, vx, nil
}

// vxlanOverhead is what VXLAN adds to a frame: outer IP, UDP (8), VXLAN
// (8) and the inner Ethernet header (14).
func vxlanOverhead(vtep netip.Addr) int {
	if vtep.Is4() {
		return 20 + 8 + 8 + 14
	}
	return 40 + 8 + 8 + 14
}

// underlayMTU is the MTU of the interface holding vtep, less the VXLAN
// overhead.
func underlayMTU(h *netlink.Handle, vtep netip.Addr) (int, error) {
	fam := netlink.FAMILY_V4
	if vtep.Is6() {
		fam = netlink.FAMILY_V6
	}
	addrs, err := h.AddrList(nil, fam)
	if err != nil {
		return 0, fmt.Errorf("listing addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == vtep {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return 0, fmt.Errorf("finding the interface of advertise address %s: %w", vtep, err)
			}
			mtu := l.Attrs().MTU - vxlanOverhead(vtep)
			if err := validMTU(mtu); err != nil {
				return 0, fmt.Errorf("interface %s of advertise address %s: %w", l.Attrs().Name, vtep, err)
			}
			return mtu, nil
		}
	}
	return 0, fmt.Errorf("advertise address %s is on no interface of this host (set the MTU with the config's mtu, or fix advertise_addr): %w", vtep, sdk.ErrInvalid)
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// ensureBridge creates or repairs n's bridge, up, with no address: the
// host does not route into or between overlay networks.
//
// Equivalent to: `ip link add ovbr-ID mtu MTU type bridge && ip link set
// ovbr-ID alias "sandnet overlay ID" up`.
func ensureBridge(h *netlink.Handle, n *network, mtu int) (int, error) {
	link, err := h.LinkByName(n.bridge)
	if isNotFound(err) {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridge, MTU: mtu, TxQLen: -1}}
		if err := h.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return 0, fmt.Errorf("creating bridge %s: %w", n.bridge, err)
		}
		if link, err = h.LinkByName(n.bridge); err != nil {
			return 0, fmt.Errorf("finding bridge %s: %w", n.bridge, err)
		}
		if err := h.LinkSetAlias(link, bridgeAlias(n.id)); err != nil {
			return 0, fmt.Errorf("setting alias of %s: %w", n.bridge, err)
		}
	} else if err != nil {
		return 0, fmt.Errorf("finding bridge %s: %w", n.bridge, err)
	}
	if link.Type() != "bridge" {
		return 0, fmt.Errorf("%s exists and is a %s, not a bridge: %w", n.bridge, link.Type(), sdk.ErrConflict)
	}
	if link.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return 0, fmt.Errorf("setting MTU of %s: %w", n.bridge, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("setting %s up: %w", n.bridge, err)
		}
	}
	return link.Attrs().Index, nil
}

// ensureVXLAN creates or repairs n's VXLAN device, a port of the bridge of
// ifindex br. It learns nothing from traffic and joins no multicast
// group: peers are programmed (PeerAdd), and it answers ARP and neighbour
// solicitations for them itself (proxy).
//
// Equivalent to: `ip link add ovvx-ID mtu MTU master ovbr-ID type vxlan
// id VNI local VTEP dstport PORT nolearning proxy && ip link set ovvx-ID up`.
func ensureVXLAN(h *netlink.Handle, n *network, mtu, br int) (int, error) {
	want := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: n.vxlan, MTU: mtu, MasterIndex: br, TxQLen: -1},
		VxlanId:   n.vni, SrcAddr: n.vtep.AsSlice(), Port: n.port, Learning: false, Proxy: true,
	}
	link, err := h.LinkByName(n.vxlan)
	switch {
	case err == nil:
		vx, ok := link.(*netlink.Vxlan)
		if ok && vx.VxlanId == n.vni && vx.Port == n.port && vx.SrcAddr.Equal(want.SrcAddr) && !vx.Learning && vx.Proxy {
			break
		}
		if err := h.LinkDel(link); err != nil {
			return 0, fmt.Errorf("deleting %s to make it anew: %w", n.vxlan, err)
		}
		fallthrough
	case isNotFound(err):
		if err := h.LinkAdd(want); err != nil {
			_ = h.LinkDel(want)
			if errors.Is(err, unix.EEXIST) {
				return 0, fmt.Errorf("creating %s: another VXLAN device has VNI %d and port %d: %w", n.vxlan, n.vni, n.port, sdk.ErrConflict)
			}
			return 0, fmt.Errorf("creating %s: %w", n.vxlan, err)
		}
		if link, err = h.LinkByName(n.vxlan); err != nil {
			return 0, fmt.Errorf("finding %s: %w", n.vxlan, err)
		}
	default:
		return 0, fmt.Errorf("finding %s: %w", n.vxlan, err)
	}
	a := link.Attrs()
	if a.MasterIndex != br {
		if err := h.LinkSetMasterByIndex(link, br); err != nil {
			return 0, fmt.Errorf("putting %s on its bridge: %w", n.vxlan, err)
		}
	}
	if a.MTU != mtu {
		if err := h.LinkSetMTU(link, mtu); err != nil {
			return 0, fmt.Errorf("setting MTU of %s: %w", n.vxlan, err)
		}
	}
	if a.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return 0, fmt.Errorf("setting %s up: %w", n.vxlan, err)
		}
	}
	return a.Index, nil
}

// DeleteNetwork removes the network's bridge, its VXLAN device (with every
// peer's neighbour and forwarding entry) and the host ends of any
// endpoint still on it. A network that is not there is not an error.
func (o *overlay) DeleteNetwork(_ context.Context, req *pb.DeleteNetworkRequest) error {
	pn := req.GetNetwork()
	if pn.GetId() == "" {
		return fmt.Errorf("network without an id: %w", sdk.ErrInvalid)
	}
	h, err := o.h()
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deleted.Add(pn.GetId(), struct{}{})
	brName, vxName := bridgeName(pn.GetId()), vxlanName(pn.GetId())
	if l, err := h.LinkByName(vxName); err == nil && l.Type() == "vxlan" {
		if err := h.LinkDel(l); err != nil {
			return fmt.Errorf("network %s: deleting %s: %w", pn.GetId(), vxName, err)
		}
	}
	br, err := h.LinkByName(brName)
	if err != nil || br.Type() != "bridge" || br.Attrs().Alias != bridgeAlias(pn.GetId()) {
		return nil
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("network %s: listing links: %w", pn.GetId(), err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "veth" {
			if err := h.LinkDel(l); err != nil && !isNotFound(err) && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("network %s: deleting endpoint interface %s: %w", pn.GetId(), l.Attrs().Name, err)
			}
		}
	}
	if err := h.LinkDel(br); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("network %s: deleting %s: %w", pn.GetId(), brName, err)
	}
	return nil
}

// Collect removes what a previous run left for networks and endpoints the
// host's store no longer holds (driver.Collector): each bridge of its own
// (its alias names the network) for a network not listed goes as
// DeleteNetwork takes it, with its VXLAN device, whose VNI a network made
// again would need; on the bridges of listed networks, the host ends of
// endpoints not listed go.
func (o *overlay) Collect(ctx context.Context, req *pb.CollectRequest) error {
	h, err := o.h()
	if err != nil {
		return err
	}
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	hostEnds := map[string]bool{}
	for _, id := range req.GetEndpoints() {
		hostEnds[hostIfName(id)] = true
	}
	var errs []error
	for _, br := range links {
		id, ok := strings.CutPrefix(br.Attrs().Alias, bridgeAliasPrefix)
		if !ok || br.Type() != "bridge" {
			continue
		}
		if !slices.Contains(req.GetNetworks(), id) {
			o.log.Info("deleting the bridge and VXLAN device of a network the host no longer holds", "bridge", br.Attrs().Name, "network", id)
			errs = append(errs, o.DeleteNetwork(ctx, &pb.DeleteNetworkRequest{Network: &pb.Network{Id: id}}))
			continue
		}
		for _, l := range links {
			name := l.Attrs().Name
			if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "veth" && !hostEnds[name] {
				o.log.Info("deleting an interface on the bridge that no endpoint the host holds owns", "interface", name, "bridge", br.Attrs().Name)
				if err := h.LinkDel(l); err != nil && !isNotFound(err) && !errors.Is(err, unix.ENODEV) {
					errs = append(errs, fmt.Errorf("deleting %s: %w", name, err))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// CreateEndpoint checks the endpoint and fills in its MAC when the host
// left it empty. It touches nothing in the kernel: the interface appears
// in Join.
func (o *overlay) CreateEndpoint(_ context.Context, req *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	n, err := o.parseNetwork(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	ep, err := parseEndpoint(n, req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	resp := &pb.CreateEndpointResponse{Interface: &pb.EndpointInterface{}}
	if !ep.macSet {
		resp.Interface.Mac = ep.mac.String()
	}
	return resp, nil
}

// DeleteEndpoint deletes the endpoint's veth pair, if Leave left it.
func (o *overlay) DeleteEndpoint(_ context.Context, req *pb.EndpointRequest) error {
	return o.deletePair(req.GetEndpoint().GetId())
}

// deletePair deletes endpoint id's veth pair; a missing one is not an
// error.
//
// Equivalent to: `ip link del ovID`.
func (o *overlay) deletePair(id string) error {
	if id == "" {
		return fmt.Errorf("endpoint without an id: %w", sdk.ErrInvalid)
	}
	h, err := o.h()
	if err != nil {
		return err
	}
	l, err := h.LinkByName(hostIfName(id))
	if isNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("endpoint %s: %w", id, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("endpoint %s: %s is a %s, not a veth: %w", id, hostIfName(id), l.Type(), sdk.ErrConflict)
	}
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("endpoint %s: deleting %s: %w", id, hostIfName(id), err)
	}
	return nil
}

// Join makes the endpoint's veth pair: the host end a port of the
// network's bridge, up; the sandbox end created directly inside the
// sandbox's namespace, named as the host asks (or op<id>), with the
// endpoint's MAC and the network's MTU, down (the host addresses it and
// brings it up). Joining again hands over the same interface; a pair left
// in another sandbox is replaced.
func (o *overlay) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	n, err := o.parseNetwork(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	ep, err := parseEndpoint(n, req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	if err := o.notDeleted(n); err != nil {
		return nil, err
	}
	br, _, err := o.ensureNetwork(n)
	if err != nil {
		return nil, err
	}
	h, err := o.h()
	if err != nil {
		return nil, err
	}
	brLink, err := h.LinkByIndex(br)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: finding bridge %s: %w", ep.id, n.bridge, err)
	}
	fd, err := openSandbox(ep.id, req.GetSandboxKey())
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	host := hostIfName(ep.id)
	if l, err := h.LinkByName(host); err == nil {
		if name, ok := rejoin(h, l, fd, br, brLink.Attrs().MTU); ok {
			return joinResponse(name, host), nil
		}
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return nil, fmt.Errorf("endpoint %s: deleting stale %s: %w", ep.id, host, err)
		}
	}
	name := req.GetIfname()
	if validIfName(name) != nil {
		name = peerIfName(ep.id)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: host, MTU: brLink.Attrs().MTU, MasterIndex: br, TxQLen: -1},
		PeerName:  name, PeerHardwareAddr: ep.mac, PeerNamespace: netlink.NsFd(fd), PeerTxQLen: -1,
	}
	err = h.LinkAdd(veth)
	if errors.Is(err, unix.EEXIST) && name != peerIfName(ep.id) {
		// The sandbox has an interface of that name: any other will do.
		name, veth.PeerName = peerIfName(ep.id), peerIfName(ep.id)
		err = h.LinkAdd(veth)
	}
	if err != nil {
		_ = h.LinkDel(veth)
		return nil, fmt.Errorf("endpoint %s: creating veth pair %s/%s in %s: %w", ep.id, host, name, req.GetSandboxKey(), err)
	}
	if err := h.LinkSetUp(veth); err != nil {
		_ = h.LinkDel(veth)
		return nil, fmt.Errorf("endpoint %s: setting %s up: %w", ep.id, host, err)
	}
	return joinResponse(name, host), nil
}

// rejoin reports whether the existing host end l has its peer in the
// sandbox fd and, if so, puts it on the bridge br, up, with both ends at
// the bridge's MTU mtu (the driver may have been restarted with another
// mtu: a reload), and returns the peer's current name there (the host
// may have renamed it).
func rejoin(h *netlink.Handle, l netlink.Link, fd, br, mtu int) (string, bool) {
	if _, ok := l.(*netlink.Veth); !ok {
		return "", false
	}
	nsid, err := h.GetNetNsIdByFd(fd)
	if err != nil || nsid < 0 || l.Attrs().NetNsID != nsid {
		return "", false
	}
	sh, err := netlink.NewHandleAt(netns.NsHandle(fd), unix.NETLINK_ROUTE)
	if err != nil {
		return "", false
	}
	defer sh.Close()
	peer, err := sh.LinkByIndex(l.Attrs().ParentIndex)
	if err != nil {
		return "", false
	}
	if l.Attrs().MasterIndex != br && h.LinkSetMasterByIndex(l, br) != nil {
		return "", false
	}
	if l.Attrs().MTU != mtu && h.LinkSetMTU(l, mtu) != nil {
		return "", false
	}
	if peer.Attrs().MTU != mtu && sh.LinkSetMTU(peer, mtu) != nil {
		return "", false
	}
	if h.LinkSetUp(l) != nil {
		return "", false
	}
	return peer.Attrs().Name, true
}

// openSandbox opens the network namespace at key, for endpoint id.
func openSandbox(id, key string) (int, error) {
	fd, err := unix.Open(key, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("endpoint %s: sandbox %s: %w", id, key, sdk.ErrNotFound)
		}
		return -1, fmt.Errorf("endpoint %s: opening sandbox %s: %w", id, key, err)
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.NSFS_MAGIC {
		unix.Close(fd)
		return -1, fmt.Errorf("endpoint %s: sandbox %s is not a network namespace: %w", id, key, sdk.ErrInvalid)
	}
	return fd, nil
}

// Leave deletes the endpoint's veth pair: the sandbox loses the interface.
func (o *overlay) Leave(_ context.Context, req *pb.LeaveRequest) error {
	return o.deletePair(req.GetEndpoint().GetId())
}

// ProgramExternalConnectivity publishes nothing: an overlay network has no
// way out of its own. An endpoint that asks for published ports is
// refused.
func (o *overlay) ProgramExternalConnectivity(_ context.Context, req *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	if len(req.GetEndpoint().GetPortBindings()) > 0 {
		return nil, fmt.Errorf("endpoint %s: the overlay driver publishes no ports (connect the container to a bridge network too): %w", req.GetEndpoint().GetId(), sdk.ErrNotSupported)
	}
	return &pb.ExternalConnectivityResponse{}, nil
}

func (o *overlay) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}

// EndpointOperInfo reports the endpoint's interfaces and the network's
// devices.
func (o *overlay) EndpointOperInfo(_ context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	n, err := o.parseNetwork(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	ep, err := parseEndpoint(n, req.GetEndpoint())
	if err != nil {
		return nil, err
	}
	return &pb.EndpointOperInfoResponse{Info: map[string]string{
		"bridge":         n.bridge,
		"vxlan":          n.vxlan,
		"vni":            fmt.Sprint(n.vni),
		"vtep":           n.vtep.String(),
		"host_interface": hostIfName(ep.id),
		"mac":            ep.mac.String(),
	}}, nil
}

// PeerAdd programs each peer on the network's VXLAN device (made first
// if it is not there): a permanent neighbour entry for each of its
// addresses, which the device answers ARP and neighbour solicitations
// from, and a permanent forwarding entry sending its MAC to its VTEP.
// Entries there already are replaced; peers of this host are skipped.
// With req.replace, the entries of peers not in the request go.
//
// Equivalent to: `ip neigh replace IP lladdr MAC dev ovvx-ID nud
// permanent` and `bridge fdb replace MAC dev ovvx-ID dst VTEP self
// permanent`.
func (o *overlay) PeerAdd(_ context.Context, req *pb.PeerRequest) error {
	n, peers, err := o.parsePeers(req)
	if err != nil {
		return err
	}
	if err := o.notDeleted(n); err != nil {
		return err
	}
	_, vx, err := o.ensureNetwork(n)
	if err != nil {
		return err
	}
	h, err := o.h()
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	want := map[string]bool{}
	for _, p := range peers {
		for _, nb := range neighbours(vx, p) {
			if err := h.NeighSet(nb); err != nil {
				return fmt.Errorf("network %s: peer %s: programming %s on %s: %w", n.id, p.id, describe(nb), n.vxlan, err)
			}
			want[describe(nb)] = true
		}
	}
	if req.GetReplace() {
		return removeOthers(h, n, vx, want)
	}
	return nil
}

// removeOthers deletes the peer entries on the VXLAN device vx that are
// not in want (by describe): the permanent neighbour entries, and the
// forwarding entries that send a MAC to a VTEP. The bridge's own entry
// for the device, which names no VTEP, stays.
//
// Equivalent to: `ip neigh del IP dev ovvx-ID` and `bridge fdb del MAC dev
// ovvx-ID dst VTEP self` for each.
func removeOthers(h *netlink.Handle, n *network, vx int, want map[string]bool) error {
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6, unix.AF_BRIDGE} {
		cur, err := h.NeighList(vx, fam)
		if err != nil {
			return fmt.Errorf("network %s: listing entries of %s: %w", n.id, n.vxlan, err)
		}
		for i := range cur {
			nb := &cur[i]
			nb.Family = fam
			if nb.State&netlink.NUD_PERMANENT == 0 || nb.IP == nil || nb.HardwareAddr == nil || want[describe(nb)] {
				continue
			}
			if fam == unix.AF_BRIDGE && nb.Flags&netlink.NTF_SELF == 0 {
				continue
			}
			if err := h.NeighDel(nb); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("network %s: deleting stale %s on %s: %w", n.id, describe(nb), n.vxlan, err)
			}
			if fam == unix.AF_BRIDGE {
				if err := forgetLearned(h, vx, nb.HardwareAddr); err != nil {
					return fmt.Errorf("network %s: %w", n.id, err)
				}
			}
		}
	}
	return nil
}

// forgetLearned deletes what the network's bridge learned of mac behind
// the VXLAN device vx, once the peer with that MAC is gone: the address
// may come back on another endpoint (MACs follow addresses), here or on
// another host, and until the bridge's entry aged out (5 minutes) it
// would send that endpoint's frames to the old peer's host.
//
// Equivalent to: `bridge fdb del MAC dev ovvx-ID master`.
func forgetLearned(h *netlink.Handle, vx int, mac net.HardwareAddr) error {
	nb := &netlink.Neigh{LinkIndex: vx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_MASTER, HardwareAddr: mac}
	if err := h.NeighDel(nb); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("forgetting what the bridge learned of %s: %w", mac, err)
	}
	return nil
}

// PeerDelete removes what PeerAdd programmed for each peer. Entries that
// are gone, or that name another MAC or VTEP by now (the address or the
// MAC went to another peer), are left alone; so is a network that is not
// there.
func (o *overlay) PeerDelete(_ context.Context, req *pb.PeerRequest) error {
	n, peers, err := o.parsePeers(req)
	if err != nil {
		return err
	}
	h, err := o.h()
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	l, err := h.LinkByName(n.vxlan)
	if isNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("network %s: finding %s: %w", n.id, n.vxlan, err)
	}
	vx := l.Attrs().Index
	for _, p := range peers {
		for _, nb := range neighbours(vx, p) {
			if nb.Family != unix.AF_BRIDGE {
				// The kernel deletes a neighbour entry by address
				// alone: make sure it still names this peer's MAC.
				cur, err := h.NeighList(vx, nb.Family)
				if err != nil {
					return fmt.Errorf("network %s: listing neighbours of %s: %w", n.id, n.vxlan, err)
				}
				if !containsNeigh(cur, nb) {
					continue
				}
			}
			if err := h.NeighDel(nb); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("network %s: peer %s: deleting %s on %s: %w", n.id, p.id, describe(nb), n.vxlan, err)
			}
		}
		if err := forgetLearned(h, vx, p.mac); err != nil {
			return fmt.Errorf("network %s: peer %s: %w", n.id, p.id, err)
		}
	}
	return nil
}

// parsePeers checks a peer request; peers of this host are dropped, and
// so is a peer this host cannot program (a VTEP of the other IP family:
// a host advertising an address of another family than this one's), each
// logged: the others are programmed (one such peer failed the whole
// request, so no peer was programmed, and the host sent it again every
// second).
func (o *overlay) parsePeers(req *pb.PeerRequest) (*network, []*peer, error) {
	n, err := o.parseNetwork(req.GetNetwork())
	if err != nil {
		return nil, nil, err
	}
	var out []*peer
	for _, pp := range req.GetPeers() {
		p, err := parsePeer(n, pp)
		if err != nil {
			o.log.Warn("skipping a peer this host cannot reach or program", "network", n.id, "error", err)
			continue
		}
		if p.vtep != n.vtep {
			out = append(out, p)
		}
	}
	return n, out, nil
}

// neighbours are the kernel entries of peer p on the VXLAN device of
// ifindex vx: one neighbour entry per address, and the forwarding entry.
func neighbours(vx int, p *peer) []*netlink.Neigh {
	var out []*netlink.Neigh
	for _, ip := range []netip.Addr{p.ip4, p.ip6} {
		if !ip.IsValid() {
			continue
		}
		fam := unix.AF_INET
		if ip.Is6() {
			fam = unix.AF_INET6
		}
		out = append(out, &netlink.Neigh{LinkIndex: vx, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: p.mac})
	}
	return append(out, &netlink.Neigh{
		LinkIndex: vx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: p.vtep.AsSlice(), HardwareAddr: p.mac,
	})
}

func containsNeigh(list []netlink.Neigh, nb *netlink.Neigh) bool {
	for _, c := range list {
		if c.IP.Equal(nb.IP) && c.HardwareAddr.String() == nb.HardwareAddr.String() {
			return true
		}
	}
	return false
}

func describe(nb *netlink.Neigh) string {
	if nb.Family == unix.AF_BRIDGE {
		return fmt.Sprintf("forwarding entry %s → %s", nb.HardwareAddr, nb.IP)
	}
	return fmt.Sprintf("neighbour entry %s → %s", nb.IP, nb.HardwareAddr)
}
