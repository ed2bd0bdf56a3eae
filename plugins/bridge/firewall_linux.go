package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The driver's nftables state is one table, `inet sandnet`:
//
//	chain forward     filter hook forward priority filter; policy accept
//	    iifname BR jump fwd-NET          (comment "sandnet net=NET", per network)
//	    oifname BR jump fwd-NET
//	chain fwd-NET     per network: drops what the network does not allow
//	chain prerouting  nat hook prerouting priority dstnat
//	    fib daddr type local jump published   (comment "sandnet base": the marker)
//	chain output      nat hook output priority dstnat
//	    fib daddr type local jump published
//	chain published   one DNAT rule per published port and address family
//	                  (comment "sandnet ep=EP proto hostip hostport ctrip ctrport")
//	chain postrouting nat hook postrouting priority srcnat
//	    oifname BR jump nat-NET          (per non-internal network)
//	    ip saddr POOL jump nat-NET
//	chain nat-NET     hairpin, localhost and outbound masquerade
//
// Per-network chains are flushed and refilled in the same transaction, so
// reprogramming a network never duplicates a rule and never opens a gap.
// The filter chains only drop or return, never accept: another network's
// rules, or the host's own firewall, still see every packet, and the order
// of networks in the base chains does not matter.
const (
	tableName     = "sandnet"
	markerComment = "sandnet base"
)

// firewall programs the table through one long-lived nftables connection.
// It is not safe for concurrent use; the driver serialises calls.
type firewall struct {
	conn  *nftables.Conn
	table *nftables.Table
	nfnl  map[int]*nl.SocketHandle // for the ruleset generation

	// gen is the ruleset generation at which the table was last seen
	// intact (valid when genOK). The kernel bumps the generation on
	// every commit, anyone's: while it has not moved, the table needs
	// no closer look.
	gen   uint32
	genOK bool

	forward, prerouting, output, postrouting, published *nftables.Chain
}

func newFirewall() (*firewall, error) {
	conn, err := newNftConn()
	if err != nil {
		return nil, fmt.Errorf("opening nftables connection: %w", err)
	}
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening nfnetlink socket: %w", err)
	}
	t := &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	return &firewall{
		conn:  conn,
		table: t,
		nfnl:  map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: s}},
		forward: &nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept},
		prerouting: &nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest},
		output: &nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest},
		postrouting: &nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource},
		published: &nftables.Chain{Name: "published", Table: t},
	}, nil
}

// newNftConn opens the driver's lasting nftables connection, its socket's
// buffers big enough for one batch of an endpoint's most published ports
// (1024 rules, and their acknowledgements, each of which carries its
// request back): the defaults (SO_SNDBUF and SO_RCVBUF of 212 992 bytes
// on most hosts) refused 256 ports with "no buffer space available" and
// 384 with "message too long". FORCE: a root process may exceed the
// host's wmem_max and rmem_max.
func newNftConn() (*nftables.Conn, error) {
	return nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, nftSocketBuffer))
			}
		}); err != nil {
			return err
		}
		return serr
	}))
}

// nftSocketBuffer is the size of the nftables socket's buffers: a
// thousand DNAT rules take about half a megabyte each way.
const nftSocketBuffer = 4 << 20

// flush sends the queued batch. After a failed batch (which the kernel
// rolls back as a whole) the connection is replaced, so no unread reply
// of the failed batch confuses the next one.
func (f *firewall) flush() error {
	err := f.conn.Flush()
	if err == nil {
		// A commit moves the generation by one. Had anyone else
		// committed since the table was last seen intact, the next
		// look finds the generation further on and checks the table.
		f.gen++
		return nil
	}
	f.genOK = false
	if c, nerr := newNftConn(); nerr == nil {
		_ = f.conn.CloseLasting()
		f.conn = c
	}
	return fmt.Errorf("programming nftables table %s: %w", tableName, err)
}

// generation returns the ruleset generation (NFT_MSG_GETGEN): one small
// request, where listing a chain is a dump.
func (f *firewall) generation() (uint32, error) {
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETGEN, 0)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	req.Sockets = f.nfnl
	msgs, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if err != nil {
		return 0, fmt.Errorf("reading the nftables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m) < 4 {
			continue
		}
		attrs, err := nl.ParseRouteAttr(m[4:])
		if err != nil {
			return 0, err
		}
		for _, a := range attrs {
			if a.Attr.Type == unix.NFTA_GEN_ID && len(a.Value) == 4 {
				return binary.BigEndian.Uint32(a.Value), nil
			}
		}
	}
	return 0, errors.New("reading the nftables generation: no NFTA_GEN_ID in the answer")
}

// intact reports whether the table is there with its base rules; when it
// is not, someone deleted or flushed it and the driver must rebuild it.
// While the ruleset generation has not moved since the last look, it
// answers without listing anything.
func (f *firewall) intact() (bool, error) {
	g, gerr := f.generation()
	if gerr == nil && f.genOK && g == f.gen {
		return true, nil
	}
	ok, err := f.present()
	f.gen, f.genOK = g, ok && err == nil && gerr == nil
	return ok, err
}

// present reports whether the table is there with its base rules.
func (f *firewall) present() (bool, error) {
	rules, err := f.conn.GetRules(f.table, f.prerouting)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("listing nftables chain %s: %w", f.prerouting.Name, err)
	}
	return slices.ContainsFunc(rules, func(r *nftables.Rule) bool { return commentOf(r) == markerComment }), nil
}

// rebuild replaces the whole table's rules with those of nets and ports
// (endpoint tag → rules) in one transaction.
func (f *firewall) rebuild(nets []*network, ports map[string][]portRule) error {
	f.conn.AddTable(f.table)
	for _, c := range []*nftables.Chain{f.forward, f.prerouting, f.output, f.postrouting, f.published} {
		f.conn.AddChain(c)
	}
	f.conn.FlushTable(f.table)
	for _, c := range []*nftables.Chain{f.prerouting, f.output} {
		f.add(c, markerComment, slices.Concat(fibLocal(), jump(f.published.Name))...)
	}
	for _, n := range nets {
		f.queueNetwork(n)
	}
	for tag, rules := range ports {
		for _, r := range rules {
			f.add(f.published, r.comment(tag), dnatExprs(r)...)
		}
	}
	return f.flush()
}

func netComment(n *network) string { return "sandnet net=" + tagID(n.id) }
func fwdChain(n *network) string   { return "fwd-" + tagID(n.id) }
func natChain(n *network) string   { return "nat-" + tagID(n.id) }

// syncNetwork (re)programs one network's rules.
func (f *firewall) syncNetwork(n *network) error {
	if err := f.queueDelJumps(netComment(n)); err != nil {
		return err
	}
	f.queueNetwork(n)
	return f.flush()
}

// removeNetwork deletes one network's rules and chains; rules already gone
// are not an error.
func (f *firewall) removeNetwork(n *network) error {
	if err := f.queueDelJumps(netComment(n)); err != nil {
		return err
	}
	for _, name := range []string{fwdChain(n), natChain(n)} {
		// Adding first makes the deletion succeed whether or not the
		// chain exists, in the same transaction.
		c := &nftables.Chain{Name: name, Table: f.table}
		f.conn.AddChain(c)
		f.conn.DelChain(c)
	}
	return f.flush()
}

// dropIfUnused deletes the whole table when it holds no network's jumps
// and no published port: only the base rules, which match nothing without
// a network. Stale per-network chains nothing jumps to go with it. A table
// already gone is not an error. The kernel, not the driver's cache, says
// whether a network is left, so a driver that restarted and has not been
// replayed every network yet never drops another network's rules.
func (f *firewall) dropIfUnused() (dropped bool, err error) {
	for _, c := range []*nftables.Chain{f.forward, f.postrouting, f.published} {
		rules, err := f.conn.GetRules(f.table, c)
		if errors.Is(err, unix.ENOENT) {
			continue // chain or table gone: nothing of it to keep
		}
		if err != nil {
			return false, fmt.Errorf("listing nftables chain %s: %w", c.Name, err)
		}
		if len(rules) > 0 {
			return false, nil
		}
	}
	if err := f.drop(); err != nil {
		return false, err
	}
	return true, nil
}

// drop deletes the whole table; one already gone is not an error.
func (f *firewall) drop() error {
	// Adding first makes the deletion succeed whether or not the table
	// exists, in the same transaction.
	f.conn.AddTable(f.table)
	f.conn.DelTable(f.table)
	if err := f.flush(); err != nil {
		return err
	}
	// The next change must find the table gone and build it again.
	f.genOK = false
	return nil
}

// queueDelJumps queues the deletion of the base-chain rules tagged comment.
func (f *firewall) queueDelJumps(comment string) error {
	for _, c := range []*nftables.Chain{f.forward, f.postrouting} {
		rules, err := f.conn.GetRules(f.table, c)
		if err != nil {
			return fmt.Errorf("listing nftables chain %s: %w", c.Name, err)
		}
		for _, r := range rules {
			if commentOf(r) == comment {
				if err := f.conn.DelRule(r); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// queueNetwork queues a network's chains, refilled from scratch, and the
// jumps to them. The caller has removed the old jumps.
func (f *firewall) queueNetwork(n *network) {
	br := n.bridge
	tag := netComment(n)

	// Forwarding. Traffic between two ports of the bridge passes here
	// when it is routed (a published port reached from the same network)
	// and, with br_netfilter, when it is bridged.
	fwd := f.conn.AddChain(&nftables.Chain{Name: fwdChain(n), Table: f.table})
	f.conn.FlushChain(fwd)
	icc := verdict(expr.VerdictReturn)
	if !n.icc {
		icc = []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
	}
	f.add(fwd, "", slices.Concat(iif(br), oif(br), icc)...)
	if !n.internal {
		// Replies to the containers' own connections, and connections
		// to published ports, may enter the network.
		f.add(fwd, "", slices.Concat(oif(br), ctBits(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictReturn))...)
		f.add(fwd, "", slices.Concat(oif(br), ctBits(expr.CtKeySTATUS, ipsDstNAT), verdict(expr.VerdictReturn))...)
	}
	// Nothing else enters: not from outside, not from another network.
	f.add(fwd, "", slices.Concat(oif(br), counterDrop())...)
	if n.internal {
		// And nothing leaves an internal network.
		f.add(fwd, "", slices.Concat(iif(br), counterDrop())...)
	}
	f.add(f.forward, tag, slices.Concat(iif(br), jump(fwd.Name))...)
	f.add(f.forward, tag, slices.Concat(oif(br), jump(fwd.Name))...)

	if n.internal {
		return
	}
	nat := f.conn.AddChain(&nftables.Chain{Name: natChain(n), Table: f.table})
	f.conn.FlushChain(nat)
	for _, s := range n.subnets() {
		// Hairpin: a container reaching a published port of its own
		// network through a host address. Without masquerade the
		// target would answer the client directly, from the wrong
		// address.
		f.add(nat, "", slices.Concat(oif(br), ctBits(expr.CtKeySTATUS, ipsDstNAT), saddrIn(s.pool), masq())...)
	}
	if len(n.v4) > 0 {
		// Published ports reached on 127.0.0.1: after DNAT in output the
		// packet leaves the bridge with a loopback source (allowed by
		// route_localnet on the bridge), which the container could not
		// answer.
		f.add(nat, "", slices.Concat(oif(br), saddrIn(loopback4), masq())...)
	}
	f.add(nat, "", slices.Concat(oif(br), verdict(expr.VerdictReturn))...)
	if n.masq {
		for _, s := range n.subnets() {
			f.add(nat, "", slices.Concat(saddrIn(s.pool), masq())...)
		}
	}
	f.add(f.postrouting, tag, slices.Concat(oif(br), jump(nat.Name))...)
	for _, s := range n.subnets() {
		f.add(f.postrouting, tag, slices.Concat(saddrIn(s.pool), jump(nat.Name))...)
	}
}

// portRules lists the published-port rules of every endpoint, by tag.
func (f *firewall) portRules() (map[string][]portRule, error) {
	rules, err := f.conn.GetRules(f.table, f.published)
	if err != nil {
		return nil, fmt.Errorf("listing nftables chain %s: %w", f.published.Name, err)
	}
	out := map[string][]portRule{}
	for _, r := range rules {
		if tag, pr, ok := parseComment(commentOf(r)); ok {
			out[tag] = append(out[tag], pr)
		}
	}
	return out, nil
}

// syncPorts replaces the published-port rules of endpoint tag with rules.
// It changes nothing when the table already holds exactly those rules.
// With none, the caller knows the table holds no rule of tag (it has just
// checked the table is as the driver left it), and the chain is not
// listed: a listing grows with every published port.
func (f *firewall) syncPorts(tag string, want []portRule, none bool) error {
	if none {
		if len(want) == 0 {
			return nil
		}
		for _, r := range want {
			f.add(f.published, r.comment(tag), dnatExprs(r)...)
		}
		return f.flush()
	}
	rules, err := f.conn.GetRules(f.table, f.published)
	if err != nil {
		return fmt.Errorf("listing nftables chain %s: %w", f.published.Name, err)
	}
	var have []*nftables.Rule
	for _, r := range rules {
		if t, _, ok := parseComment(commentOf(r)); ok && t == tag {
			have = append(have, r)
		}
	}
	if slices.EqualFunc(have, want, func(h *nftables.Rule, w portRule) bool { return commentOf(h) == w.comment(tag) }) {
		return nil
	}
	for _, r := range have {
		if err := f.conn.DelRule(r); err != nil {
			return err
		}
	}
	for _, r := range want {
		f.add(f.published, r.comment(tag), dnatExprs(r)...)
	}
	return f.flush()
}

func (f *firewall) add(c *nftables.Chain, comment string, exprs ...expr.Any) {
	r := &nftables.Rule{Table: f.table, Chain: c, Exprs: exprs}
	if comment != "" {
		r.UserData = userdata.AppendString(nil, userdata.TypeComment, comment)
	}
	f.conn.AddRule(r)
}

func commentOf(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// ipsDstNAT is IPS_DST_NAT of enum ip_conntrack_status: `ct status dnat`.
const ipsDstNAT = 1 << 5

var loopback4 = &net.IPNet{IP: net.IPv4(127, 0, 0, 0).To4(), Mask: net.CIDRMask(8, 32)}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// iif is `iifname NAME`, oif `oifname NAME`.
func iif(name string) []expr.Any { return metaEq(expr.MetaKeyIIFNAME, ifname(name)) }
func oif(name string) []expr.Any { return metaEq(expr.MetaKeyOIFNAME, ifname(name)) }

func metaEq(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

// nfproto is `meta nfproto ipv4|ipv6`, which guards every match on the
// network header in the inet family.
func nfproto(family int) []expr.Any {
	p := byte(unix.NFPROTO_IPV4)
	if family == 6 {
		p = unix.NFPROTO_IPV6
	}
	return metaEq(expr.MetaKeyNFPROTO, []byte{p})
}

// saddrIn is `ip saddr PREFIX` or `ip6 saddr PREFIX`.
func saddrIn(p *net.IPNet) []expr.Any {
	ip, off := p.IP.To4(), uint32(12)
	if ip == nil {
		ip, off = p.IP.To16(), 8
	}
	return slices.Concat(nfproto(ipFamily(ip)), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(len(ip))},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: uint32(len(ip)), Mask: []byte(p.Mask), Xor: make([]byte, len(ip))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte(ip.Mask(p.Mask))},
	})
}

// daddrIs is `ip daddr ADDR` or `ip6 daddr ADDR`.
func daddrIs(a netip.Addr) []expr.Any {
	off := uint32(16)
	if a.Is6() {
		off = 24
	}
	return slices.Concat(nfproto(family(a)), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(a.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	})
}

// ctBits is `ct state|status & BITS != 0`.
func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// fibLocal is `fib daddr type local`: the packet is for one of the host's
// own addresses.
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }
func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}
func counterDrop() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}
func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

// dnatExprs is `[ip daddr HOSTIP] meta l4proto P th dport HOSTPORT dnat ip
// to CTR:CTRPORT` (ip6 for an IPv6 rule).
func dnatExprs(r portRule) []expr.Any {
	fam := family(r.ctr)
	var e []expr.Any
	if r.hostIP.IsValid() && !r.hostIP.IsUnspecified() {
		e = daddrIs(r.hostIP)
	} else {
		e = nfproto(fam)
	}
	proto := byte(unix.IPPROTO_TCP)
	if r.proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	natFam := uint32(unix.NFPROTO_IPV4)
	if fam == 6 {
		natFam = unix.NFPROTO_IPV6
	}
	return slices.Concat(e, metaEq(expr.MetaKeyL4PROTO, []byte{proto}), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.hostPort)},
		&expr.Immediate{Register: 1, Data: r.ctr.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.ctrPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: natFam, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	})
}
