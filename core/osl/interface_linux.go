package osl

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpRetries bounds retries of a netlink dump the kernel interrupted
// because the table changed while it was being read.
const dumpRetries = 5

// hostHandle returns h, or a handle working in the namespace of the calling
// process when h is nil.
func hostHandle(h *netlink.Handle) *netlink.Handle {
	if h == nil {
		return &netlink.Handle{} // zero Handle: a fresh socket per request, in the caller's namespace
	}
	return h
}

// CreateVethPair creates a veth pair whose end hostName is in the namespace
// of host (nil: the calling process's) and whose end peerName is created
// directly inside n, with MTU mtu on both ends (0: kernel default) and MAC
// peerMAC on the peer (nil: random). Both ends are left down.
//
// This is the fast way to give a sandbox an interface: making the peer in
// place costs about half a millisecond, moving an existing link into the
// namespace (MoveLinkIn) tens of milliseconds.
//
// Equivalent to: `ip link add HOST mtu MTU type veth peer name PEER address MAC netns KEY`.
func (n *Namespace) CreateVethPair(host *netlink.Handle, hostName, peerName string, mtu int, peerMAC net.HardwareAddr) error {
	if err := validateIfName(hostName); err != nil {
		return fmt.Errorf("creating veth pair in %s: host end: %w", n.path, err)
	}
	if err := validateIfName(peerName); err != nil {
		return fmt.Errorf("creating veth pair in %s: peer end: %w", n.path, err)
	}
	if mtu < 0 {
		return fmt.Errorf("creating veth pair in %s: negative MTU %d: %w", n.path, mtu, ErrInvalid)
	}
	return n.withFd(func(fd netns.NsHandle) error {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = hostName
		attrs.MTU = mtu
		veth := netlink.NewVeth(attrs)
		veth.PeerName = peerName
		veth.PeerHardwareAddr = peerMAC
		veth.PeerNamespace = netlink.NsFd(fd)
		if err := hostHandle(host).LinkAdd(veth); err != nil {
			return fmt.Errorf("creating veth pair %s/%s in %s: %w", hostName, peerName, n.path, err)
		}
		return nil
	})
}

// MoveLinkIn moves the link name from the namespace of host (nil: the
// calling process's) into n. Prefer CreateVethPair where the link can be
// made in place: moving a link between namespaces is slow.
//
// Equivalent to: `ip link set NAME netns KEY`.
func (n *Namespace) MoveLinkIn(host *netlink.Handle, name string) error {
	h := hostHandle(host)
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("moving %s into %s: %w", name, n.path, err)
	}
	return n.withFd(func(fd netns.NsHandle) error {
		if err := h.LinkSetNsFd(link, int(fd)); err != nil {
			return fmt.Errorf("moving %s into %s: %w", name, n.path, err)
		}
		return nil
	})
}

// ConfigureInterface turns a link already inside the namespace into a
// sandbox interface: it renames SrcName to DstName, sets the MAC and MTU,
// adds the addresses and brings the link up.
//
// On failure it puts the link back as it found it — addresses it added
// removed, name, MAC, MTU and up/down state restored (an IPv6 address
// generation mode it set excepted) — and returns the error joined with any
// failure to roll back.
//
// Equivalent to: `ip link set SRC down; ip link set SRC name DST address MAC
// mtu MTU; ip addr add ADDR dev DST [nodad]...; [ip link set DST addrgenmode
// none;] ip link set DST up`.
func (n *Namespace) ConfigureInterface(cfg InterfaceConfig) error {
	if err := validateIfName(cfg.SrcName); err != nil {
		return fmt.Errorf("configuring interface in %s: %w", n.path, err)
	}
	if cfg.DstName != "" {
		if err := validateIfName(cfg.DstName); err != nil {
			return fmt.Errorf("configuring %s in %s: %w", cfg.SrcName, n.path, err)
		}
	}
	if err := validateAddresses(cfg.Addresses); err != nil {
		return fmt.Errorf("configuring %s in %s: %w", cfg.SrcName, n.path, err)
	}
	if cfg.MTU < 0 {
		return fmt.Errorf("configuring %s in %s: negative MTU %d: %w", cfg.SrcName, n.path, cfg.MTU, ErrInvalid)
	}
	sock, err := n.rawSocket()
	if err != nil {
		return fmt.Errorf("configuring %s in %s: %w", cfg.SrcName, n.path, err)
	}
	return n.withHandle(func(h *netlink.Handle) error {
		if err := configure(h, sock, cfg); err != nil {
			return fmt.Errorf("configuring %s in %s: %w", cfg.SrcName, n.path, err)
		}
		return nil
	})
}

func configure(h *netlink.Handle, sock *nl.SocketHandle, cfg InterfaceConfig) (err error) {
	link, err := h.LinkByName(cfg.SrcName)
	if err != nil {
		return err
	}
	// The link keeps its index through renames, so roll back by index.
	orig := *link.Attrs()
	byIndex := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: orig.Index}}

	// Name, MAC, MTU, address generation mode and up in one request: the
	// kernel applies them in that order (a link must be down to be
	// renamed, and the generation mode counts only before it comes up).
	// IPv4 addresses and nodad IPv6 ones work added after.
	set := linkSet{index: orig.Index, up: true}
	if orig.Flags&net.FlagUp != 0 {
		// The kernel refuses to rename a link that is up.
		if err := h.LinkSetDown(byIndex); err != nil {
			return fmt.Errorf("setting down: %w", err)
		}
	}
	if cfg.DstName != "" && cfg.DstName != orig.Name {
		set.name = cfg.DstName
	}
	if cfg.MAC != nil && !bytes.Equal(cfg.MAC, orig.HardwareAddr) {
		set.mac = cfg.MAC
	}
	if cfg.MTU > 0 && cfg.MTU != orig.MTU {
		set.mtu = cfg.MTU
	}
	set.noLinkLocal = cfg.NoIPv6LinkLocal
	// The kernel applies a request's attributes one by one: one that
	// fails leaves those before it applied, so the way back sets them all.
	restore := func() error {
		back := linkSet{index: orig.Index, up: orig.Flags&net.FlagUp != 0}
		if set.name != "" {
			back.name = orig.Name
		}
		if set.mac != nil {
			back.mac = orig.HardwareAddr
		}
		if set.mtu != 0 {
			back.mtu = orig.MTU
		}
		if err := h.LinkSetDown(byIndex); err != nil {
			return err
		}
		return back.apply(sock)
	}
	err = set.apply(sock)
	if err != nil {
		if _, lerr := h.LinkByName(set.name); set.name != "" && errors.Is(err, unix.EEXIST) && lerr == nil {
			err = fmt.Errorf("an interface named %s is already in the namespace (another container's, or the runtime's): %w", set.name, err)
		} else {
			err = fmt.Errorf("setting name, MAC, MTU and up: %w", err)
		}
		if rerr := restore(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rolling back: %w", rerr))
		}
		return err
	}
	undo := []func() error{restore}
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				err = errors.Join(err, fmt.Errorf("rolling back: %w", uerr))
			}
		}
	}()
	for _, a := range cfg.Addresses {
		addr := &netlink.Addr{IPNet: a}
		if a.IP.To4() == nil {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(byIndex, addr); err != nil {
			return fmt.Errorf("adding address %s: %w", a, err)
		}
		undo = append(undo, func() error { return h.AddrDel(byIndex, &netlink.Addr{IPNet: a}) })
	}
	return nil
}

// linkSet is one RTM_NEWLINK request changing a link, by index: its name,
// MAC and MTU where set, IPv6 address generation mode none when
// noLinkLocal, and up or not.
type linkSet struct {
	index       int
	name        string
	mac         net.HardwareAddr
	mtu         int
	noLinkLocal bool
	up          bool
}

func (l linkSet) apply(sock *nl.SocketHandle) error {
	_, err := l.request(sock).Execute(unix.NETLINK_ROUTE, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) && l.noLinkLocal {
		// The link has no IPv6 (an MTU below IPv6's 1280, or IPv6
		// off): no link-local address to keep it from making.
		l.noLinkLocal = false
		_, err = l.request(sock).Execute(unix.NETLINK_ROUTE, 0)
	}
	return err
}

func (l linkSet) request(sock *nl.SocketHandle) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: sock}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(l.index)
	if l.up {
		msg.Change, msg.Flags = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	if l.name != "" {
		req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(l.name)))
	}
	if l.mac != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(l.mac)))
	}
	if l.mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(l.mtu))))
	}
	if l.noLinkLocal {
		af := nl.NewRtAttr(unix.IFLA_AF_SPEC, nil)
		af.AddRtAttr(unix.AF_INET6, nil).AddRtAttr(unix.IFLA_INET6_ADDR_GEN_MODE, []byte{addrGenModeNone})
		req.AddData(af)
	}
	return req
}

// addrGenModeNone is IN6_ADDR_GEN_MODE_NONE: no IPv6 link-local address.
const addrGenModeNone = 1

// WaitInterfaceReady waits until the link name inside the namespace can
// carry traffic both ways, or ctx ends:
//
//   - the link is operationally up. A veth end gets there once both ends
//     are up and the kernel's link watcher has processed the carrier
//     change, a fraction of a millisecond after ConfigureInterface;
//     packets sent before are lost.
//   - every IPv6 address on it that is not waiting for duplicate address
//     detection has its local route. The kernel installs that route from a
//     worker after the address is added — usually within microseconds, but
//     seconds later when the RTNL lock is contended — and until then
//     packets to the address are dropped as unroutable.
//
// Without it a sandbox's first IPv6 exchange can take 1 to 2 s (the lost
// neighbour solicitation is retried after a second) or fail. Call it, after
// the host end is up, before handing the sandbox to its container.
//
// Equivalent to: polling `ip link show NAME` until it reports state UP and
// `ip -6 route show table local` until it lists NAME's addresses.
func (n *Namespace) WaitInterfaceReady(ctx context.Context, name string) error {
	return n.waitReady(ctx, name, true)
}

// WaitLinkUp is WaitInterfaceReady for a link that has no IPv6 address
// but perhaps a link-local one, which it does not wait for anyway: only
// the link's state is polled.
func (n *Namespace) WaitLinkUp(ctx context.Context, name string) error {
	return n.waitReady(ctx, name, false)
}

// waitReady polls notReady; v6 says whether to check IPv6 addresses.
func (n *Namespace) waitReady(ctx context.Context, name string, v6 bool) error {
	const maxPoll = 10 * time.Millisecond
	poll := 50 * time.Microsecond
	var timer *time.Timer
	for {
		var why string
		err := n.withHandle(func(h *netlink.Handle) error {
			var err error
			why, err = notReady(h, name, v6)
			return err
		})
		if err != nil {
			return fmt.Errorf("waiting for %s in %s: %w", name, n.path, err)
		}
		if why == "" {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(poll)
			defer timer.Stop()
		} else {
			timer.Reset(poll)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s in %s (%s): %w", name, n.path, why, ctx.Err())
		case <-timer.C:
		}
		poll = min(2*poll, maxPoll)
	}
}

// notReady says what link name still waits for, or "" when it is ready;
// with v6, that includes its IPv6 addresses' local routes.
func notReady(h *netlink.Handle, name string, v6 bool) (string, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return "", err
	}
	if !operUp(link.Attrs()) {
		return "link state " + link.Attrs().OperState.String(), nil
	}
	if !v6 {
		return "", nil
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		return "", err
	}
	var want []net.IP
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() || a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) != 0 {
			continue // owned by duplicate address detection, which takes seconds
		}
		want = append(want, a.IP)
	}
	if len(want) == 0 {
		return "", nil
	}
	local, err := h.RouteListFiltered(netlink.FAMILY_V6,
		&netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return "", err
	}
	for _, ip := range want {
		found := false
		for _, r := range local {
			if r.Type == unix.RTN_LOCAL && r.Dst != nil && r.Dst.IP.Equal(ip) {
				found = true
				break
			}
		}
		if !found {
			return "no local route yet for " + ip.String(), nil
		}
	}
	return "", nil
}

// operUp reports whether a link can carry traffic. Devices without carrier
// reporting (lo) stay in state UNKNOWN, so for them IFF_RUNNING counts.
func operUp(a *netlink.LinkAttrs) bool {
	switch a.OperState {
	case netlink.OperUp:
		return true
	case netlink.OperUnknown:
		return a.RawFlags&unix.IFF_UP != 0 && a.RawFlags&unix.IFF_RUNNING != 0
	}
	return false
}

// EnsureInterface makes sure the link name inside the namespace has the
// addresses addrs (IPv6 ones nodad) and is up, adding what is missing and
// changing nothing else: the repair of an interface whose configuration
// was interrupted. A missing link is an error wrapping fs.ErrNotExist.
//
// Equivalent to: `ip addr replace ADDR dev NAME [nodad]...; ip link set NAME up`.
func (n *Namespace) EnsureInterface(name string, addrs []*net.IPNet) error {
	if err := validateAddresses(addrs); err != nil {
		return fmt.Errorf("repairing %s in %s: %w", name, n.path, err)
	}
	return n.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if isLinkNotFound(err) {
			return fmt.Errorf("repairing %s in %s: %w", name, n.path, fs.ErrNotExist)
		}
		if err != nil {
			return fmt.Errorf("repairing %s in %s: %w", name, n.path, err)
		}
		for _, a := range addrs {
			addr := &netlink.Addr{IPNet: a}
			if a.IP.To4() == nil {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := h.AddrReplace(link, addr); err != nil {
				return fmt.Errorf("repairing %s in %s: address %s: %w", name, n.path, a, err)
			}
		}
		if link.Attrs().Flags&net.FlagUp == 0 {
			if err := h.LinkSetUp(link); err != nil {
				return fmt.Errorf("repairing %s in %s: setting up: %w", name, n.path, err)
			}
		}
		return nil
	})
}

// RemoveInterface deletes the link name inside the namespace; deleting one
// end of a veth pair deletes both. A link that is already gone is not an
// error, so leaving a sandbox can be retried.
//
// Equivalent to: `ip link del NAME` inside the namespace.
func (n *Namespace) RemoveInterface(name string) error {
	return n.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if isLinkNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("removing %s from %s: %w", name, n.path, err)
		}
		if err := h.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("removing %s from %s: %w", name, n.path, err)
		}
		return nil
	})
}

// RetireInterface takes the link name inside the namespace out of service
// at once without deleting it: it goes down (its routes and IPv6
// addresses with it), loses its addresses, and joins the namespace's
// retired links, which DeleteRetired deletes later, all in one batch. It
// keeps its name until ReleaseName moves it out of the way, unless
// release asks for that at once (a namespace a runtime owns, where
// another plugin may make a link of that name next). A missing link is
// not an error.
//
// Deleting a link, a veth end above all, costs the kernel 17-20 ms of RCU
// grace periods; retiring it a fraction of a millisecond. A veth pair
// whose other end is deleted, or whose namespace goes away, goes with it.
//
// Equivalent to: `ip link set NAME down group RETIRED; ip addr flush dev
// NAME` (and `ip link set NAME name rtINDEX` with release).
func (n *Namespace) RetireInterface(name string, release bool) error {
	return n.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if isLinkNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("retiring %s in %s: %w", name, n.path, err)
		}
		byIndex := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: link.Attrs().Index}}
		if err := h.LinkSetDown(byIndex); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("retiring %s in %s: setting down: %w", name, n.path, err)
		}
		if err := h.LinkSetGroup(byIndex, retiredGroup); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("retiring %s in %s: %w", name, n.path, err)
		}
		addrs, err := h.AddrList(byIndex, netlink.FAMILY_ALL)
		if err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("retiring %s in %s: listing addresses: %w", name, n.path, err)
		}
		for _, a := range addrs {
			if err := h.AddrDel(byIndex, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("retiring %s in %s: removing %s: %w", name, n.path, a.IPNet, err)
			}
		}
		if release {
			if err := h.LinkSetName(byIndex, retiredName(byIndex.Index)); err != nil && !errors.Is(err, unix.ENODEV) {
				return fmt.Errorf("retiring %s in %s: freeing its name: %w", name, n.path, err)
			}
		}
		return nil
	})
}

// retiredName is the name a retired link takes to free its own.
func retiredName(index int) string { return "rt" + strconv.Itoa(index) }

// retiredGroup is the link group ("snrt") RetireInterface puts links in.
const retiredGroup = 0x736e7274

// ReleaseName frees the name for another link when a retired link holds
// it, by renaming that link after its index. A name nothing holds is not
// an error; one held by a link in service is, wrapping fs.ErrExist.
//
// Equivalent to: `ip link set NAME name rtINDEX` when NAME is retired.
func (n *Namespace) ReleaseName(name string) error {
	return n.withHandle(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if isLinkNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("freeing name %s in %s: %w", name, n.path, err)
		}
		if link.Attrs().Group != retiredGroup {
			return fmt.Errorf("freeing name %s in %s: the link is in use: %w", name, n.path, fs.ErrExist)
		}
		if err := h.LinkSetName(link, retiredName(link.Attrs().Index)); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("freeing name %s in %s: %w", name, n.path, err)
		}
		return nil
	})
}

// DeleteRetired deletes every retired link of the namespace in one batch
// (with their veth peers), waiting for the kernel to finish. Having none
// is not an error.
//
// Equivalent to: `ip link del group RETIRED` inside the namespace.
func (n *Namespace) DeleteRetired() error {
	// netlink.Handle deletes links by index only: a group is deleted with
	// a hand-built request, on a socket opened inside the namespace.
	var sock *nl.NetlinkSocket
	err := n.Do(func() error {
		var err error
		sock, err = nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting retired links in %s: %w", n.path, err)
	}
	defer sock.Close()
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(retiredGroup)))
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: sock}}
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting retired links in %s: %w", n.path, err)
	}
	return nil
}

// HostLinks lists the links inside the namespace that belong to the host's
// side of it: links whose other end or parent is in the namespace host (a
// veth pair's sandbox end, a macvlan), and retired links. Links a
// container made for itself inside its namespace (a tunnel, a bridge, a
// veth pair to a nested container) are not listed.
//
// Equivalent to: `ip -d link show` inside the namespace, keeping the links
// whose link-netnsid is host's id there, or whose group is RETIRED.
func (n *Namespace) HostLinks(host netns.NsHandle) ([]netlink.Link, error) {
	var out []netlink.Link
	err := n.withHandle(func(h *netlink.Handle) error {
		// The dump first: the kernel numbers another namespace in this
		// one when it first reports a link tied to it, and a query for
		// the number assigns none.
		links, err := linkList(h)
		if err != nil {
			return fmt.Errorf("listing the host's links in %s: %w", n.path, err)
		}
		hostID, err := h.GetNetNsIdByFd(int(host))
		if err != nil {
			return fmt.Errorf("listing the host's links in %s: %w", n.path, err)
		}
		for _, l := range links {
			// Without a number for host, no link here is tied to it.
			if l.Attrs().Group == retiredGroup || hostID >= 0 && l.Attrs().NetNsID == hostID {
				out = append(out, l)
			}
		}
		return nil
	})
	return out, err
}

// Links lists the links inside the namespace.
//
// Equivalent to: `ip link show` inside the namespace.
func (n *Namespace) Links() ([]netlink.Link, error) {
	var links []netlink.Link
	err := n.withHandle(func(h *netlink.Handle) error {
		var err error
		links, err = linkList(h)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", n.path, err)
	}
	return links, nil
}

// Stats returns the counters of the links inside the namespace, by name,
// from one dump.
//
// Equivalent to: `ip -s link show` inside the namespace.
func (n *Namespace) Stats() (map[string]LinkStats, error) {
	links, err := n.Links()
	if err != nil {
		return nil, err
	}
	out := make(map[string]LinkStats, len(links))
	for _, l := range links {
		if st := l.Attrs().Statistics; st != nil {
			out[l.Attrs().Name] = LinkStats{
				RxBytes: st.RxBytes, TxBytes: st.TxBytes, RxPackets: st.RxPackets, TxPackets: st.TxPackets,
				RxErrors: st.RxErrors, TxErrors: st.TxErrors, RxDropped: st.RxDropped, TxDropped: st.TxDropped,
			}
		}
	}
	return out, nil
}

// NextInterfaceName returns prefix followed by the smallest number not yet
// used by a link in the namespace: "eth0", then "eth1"... Two callers racing
// on one namespace may get the same name; the second rename then fails.
func (n *Namespace) NextInterfaceName(prefix string) (string, error) {
	links, err := n.Links()
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	name, err := nextName(prefix, names)
	if err != nil {
		return "", fmt.Errorf("choosing interface name in %s: %w", n.path, err)
	}
	return name, nil
}

func linkList(h *netlink.Handle) ([]netlink.Link, error) {
	var err error
	for range dumpRetries {
		var links []netlink.Link
		if links, err = h.LinkList(); err == nil {
			return links, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
