package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// binding is one published port as programmed: traffic to hostIP:hostPort
// is forwarded to the container's ctrPort.
type binding struct {
	proto    string     // "tcp" or "udp"
	hostIP   netip.Addr // zero: every address of the host, IPv4 and IPv6
	hostPort uint16
	ctrPort  uint16
}

// families returns the address families (4, 6) the binding listens on.
func (b binding) families() []int {
	switch {
	case !b.hostIP.IsValid():
		return []int{4, 6}
	case b.hostIP.Is4():
		return []int{4}
	default:
		return []int{6}
	}
}

func (b binding) wildcard() bool { return !b.hostIP.IsValid() || b.hostIP.IsUnspecified() }

// overlaps reports whether a and b claim the same host port for some
// address.
func (b binding) overlaps(o binding) bool {
	if b.proto != o.proto || b.hostPort != o.hostPort {
		return false
	}
	if !slices.ContainsFunc(b.families(), func(f int) bool { return slices.Contains(o.families(), f) }) {
		return false
	}
	return b.wildcard() || o.wildcard() || b.hostIP == o.hostIP
}

// hostString is the binding's host side as docker ps shows it:
// 127.0.0.1:8080/tcp, [::1]:8080/tcp, or *:8080/tcp for every address.
func (b binding) hostString() string {
	host := "*"
	if b.hostIP.IsValid() {
		host = b.hostIP.String()
		if b.hostIP.Is6() {
			host = "[" + host + "]"
		}
	}
	return host + ":" + strconv.Itoa(int(b.hostPort)) + "/" + b.proto
}

func (b binding) proto3() *pb.PortBinding {
	p := &pb.PortBinding{Proto: b.proto, ContainerPort: uint32(b.ctrPort), HostPort: uint32(b.hostPort)}
	if b.hostIP.IsValid() {
		p.HostIp = b.hostIP.String()
	}
	return p
}

// portRule is a binding as programmed for one address family: one DNAT
// rule to the container's address of that family.
type portRule struct {
	binding
	ctr netip.Addr
}

// rulesFor expands bindings into one rule per address family the binding
// listens on and the container has an address in. A binding on a specific
// host address of a family the container lacks is an error.
func rulesFor(bs []binding, ctr4, ctr6 netip.Addr) ([]portRule, error) {
	var out []portRule
	for _, b := range bs {
		n := 0
		for _, f := range b.families() {
			ctr := ctr4
			if f == 6 {
				ctr = ctr6
			}
			if ctr.IsValid() {
				out = append(out, portRule{binding: b, ctr: ctr})
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("port binding %s: the endpoint has no IPv%d address: %w", b.hostIP, b.families()[0], sdk.ErrInvalid)
		}
	}
	return out, nil
}

// comment is the nftables rule comment that tags a published port's rule
// with its endpoint and lets a restarted driver read the rule back:
// "sandnet ep=<tag> <proto> <host ip or *> <host port> <container ip> <container port>".
func (r portRule) comment(epTag string) string {
	ip := "*"
	if r.hostIP.IsValid() {
		ip = r.hostIP.String()
	}
	return fmt.Sprintf("sandnet ep=%s %s %s %d %s %d", epTag, r.proto, ip, r.hostPort, r.ctr, r.ctrPort)
}

// parseComment reads back what comment wrote.
func parseComment(c string) (epTag string, r portRule, ok bool) {
	f := strings.Fields(c)
	if len(f) != 7 || f[0] != "sandnet" || !strings.HasPrefix(f[1], "ep=") {
		return "", portRule{}, false
	}
	epTag = strings.TrimPrefix(f[1], "ep=")
	r.proto = f[2]
	if f[3] != "*" {
		ip, err := netip.ParseAddr(f[3])
		if err != nil {
			return "", portRule{}, false
		}
		r.hostIP = ip
	}
	hp, err1 := strconv.ParseUint(f[4], 10, 16)
	ctr, err2 := netip.ParseAddr(f[5])
	cp, err3 := strconv.ParseUint(f[6], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil || (r.proto != "tcp" && r.proto != "udp") {
		return "", portRule{}, false
	}
	r.hostPort, r.ctr, r.ctrPort = uint16(hp), ctr, uint16(cp)
	return epTag, r, true
}

// bindingsOf returns the distinct bindings of rules, in order.
func bindingsOf(rules []portRule) []binding {
	var out []binding
	for _, r := range rules {
		if !slices.Contains(out, r.binding) {
			out = append(out, r.binding)
		}
	}
	return out
}

// portRequest is a binding as the host asks for it: hostPort 0 asks the
// driver to pick a free port, a non-zero hostPortEnd a port in
// [hostPort, hostPortEnd].
type portRequest struct {
	binding
	hostPortEnd uint16
}

func parsePortRequests(pbs []*pb.PortBinding) ([]portRequest, error) {
	var out []portRequest
	for _, p := range pbs {
		r := portRequest{binding: binding{proto: strings.ToLower(p.GetProto())}}
		if r.proto == "" {
			r.proto = "tcp"
		}
		if r.proto != "tcp" && r.proto != "udp" {
			return nil, fmt.Errorf("port binding: protocol %q: want tcp or udp: %w", p.GetProto(), sdk.ErrInvalid)
		}
		if p.GetContainerPort() == 0 || p.GetContainerPort() > 65535 {
			return nil, fmt.Errorf("port binding: container port %d out of range 1-65535: %w", p.GetContainerPort(), sdk.ErrInvalid)
		}
		if p.GetHostPort() > 65535 || p.GetHostPortEnd() > 65535 {
			return nil, fmt.Errorf("port binding: host port %d-%d out of range: %w", p.GetHostPort(), p.GetHostPortEnd(), sdk.ErrInvalid)
		}
		if p.GetHostPortEnd() != 0 && (p.GetHostPort() == 0 || p.GetHostPortEnd() < p.GetHostPort()) {
			return nil, fmt.Errorf("port binding: host port range %d-%d: %w", p.GetHostPort(), p.GetHostPortEnd(), sdk.ErrInvalid)
		}
		if ip := p.GetHostIp(); ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return nil, fmt.Errorf("port binding: host ip %q: %w", ip, sdk.ErrInvalid)
			}
			r.hostIP = a.Unmap()
		}
		r.ctrPort = uint16(p.GetContainerPort())
		r.hostPort = uint16(p.GetHostPort())
		r.hostPortEnd = uint16(p.GetHostPortEnd())
		if r.hostPortEnd == r.hostPort {
			r.hostPortEnd = 0
		}
		out = append(out, r)
	}
	return out, nil
}

// allocator decides host ports. taken holds the bindings of every other
// endpoint, holders[i] the tag of the endpoint that published taken[i],
// which describe (if set) turns into a conflict message's words; probe
// reports whether a host socket could still bind the port (so an
// automatically chosen port does not shadow a host service).
type allocator struct {
	taken    []binding
	holders  []string
	describe func(holder string) string
	lo, hi   uint16 // range for host port 0 (ip_local_port_range)
	next     *uint16
	probe    func(b binding) bool
}

// overlapping finds a binding that overlaps b: another endpoint's (i its
// index in taken) or, in mine, the request's own (i = -1).
func (a *allocator) overlapping(b binding, mine []binding) (held binding, i int, ok bool) {
	for i, t := range a.taken {
		if t.overlaps(b) {
			return t, i, true
		}
	}
	for _, t := range mine {
		if t.overlaps(b) {
			return t, -1, true
		}
	}
	return binding{}, 0, false
}

// conflict is the refusal of b, which overlaps held (overlapping's i).
func (a *allocator) conflict(b, held binding, i int) error {
	by := "another of this endpoint's bindings"
	if i >= 0 {
		by = "another endpoint"
		if i < len(a.holders) && a.describe != nil {
			by = a.describe(a.holders[i])
		}
	}
	as := ""
	if held.hostIP != b.hostIP {
		as = " as " + held.hostString()
	}
	return fmt.Errorf("host port %s is already published by %s%s: %w", b.hostString(), by, as, sdk.ErrConflict)
}

// assign turns requests into bindings. existing are the endpoint's current
// bindings: a request that an existing binding satisfies keeps its port, so
// replaying a request with host port 0 does not move the port.
func (a *allocator) assign(reqs []portRequest, existing []binding) ([]binding, error) {
	var out []binding
	free := func(b binding) bool {
		_, _, taken := a.overlapping(b, out)
		return !taken
	}
	for _, r := range reqs {
		lo, hi := r.hostPort, r.hostPortEnd
		if lo == 0 {
			lo, hi = a.lo, a.hi
		}
		if r.hostPort != 0 && r.hostPortEnd == 0 {
			b := r.binding
			if held, i, taken := a.overlapping(b, out); taken {
				return nil, a.conflict(b, held, i)
			}
			out = append(out, b)
			continue
		}
		if i := slices.IndexFunc(existing, func(e binding) bool {
			return e.proto == r.proto && e.hostIP == r.hostIP && e.ctrPort == r.ctrPort && e.hostPort >= lo && e.hostPort <= hi
		}); i >= 0 && free(existing[i]) {
			out = append(out, existing[i])
			continue
		}
		b, err := a.pick(r.binding, lo, hi, free)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// pick finds a free port in [lo, hi], starting after the last port it
// handed out so a port just released (whose conntrack entries may linger in
// peers) is not reused at once.
func (a *allocator) pick(b binding, lo, hi uint16, free func(binding) bool) (binding, error) {
	n := int(hi) - int(lo) + 1
	start := lo
	if a.next != nil && *a.next >= lo && *a.next <= hi {
		start = *a.next
	}
	for i := range n {
		p := int(start) + i
		if p > int(hi) {
			p -= n
		}
		b.hostPort = uint16(p)
		if free(b) && (a.probe == nil || a.probe(b)) {
			if a.next != nil {
				*a.next = uint16(p) + 1
			}
			return b, nil
		}
	}
	return binding{}, fmt.Errorf("no free host port for %s in %d-%d: %w", b.proto, lo, hi, sdk.ErrUnavailable)
}
