package ipam

import (
	"context"
	"math"
	"net/netip"
	"strings"
)

// Used returns how many addresses of subnet are allocated, as the store
// records them, and how many of those are in rng (the whole subnet when
// rng is zero): static addresses outside the range take nothing from
// what dynamic allocation may hand out.
func (a *Allocator) Used(ctx context.Context, subnet, rng netip.Prefix) (all, inRange int, err error) {
	s, err := a.store()
	if err != nil {
		return 0, 0, err
	}
	prefix := addrsOf(subnet.Masked())
	pairs, err := s.List(ctx, prefix)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pairs {
		if addr, perr := netip.ParseAddr(strings.TrimPrefix(p.GetKey(), prefix)); !rng.IsValid() || perr == nil && rng.Contains(addr) {
			inRange++
		}
	}
	return len(pairs), inRange, nil
}

// Capacity returns how many addresses dynamic allocation may hand out in
// a network's pool: those of rng (the whole subnet when rng is zero) but
// the network, broadcast, gateway and auxiliary addresses. For IPv6
// subnets larger than 2^53 addresses the figure is rounded, as a float64
// is.
func Capacity(subnet netip.Prefix, gateway netip.Addr, rng netip.Prefix, aux []AuxAddress) float64 {
	p := &Pool{Subnet: subnet.Masked(), Gateway: gateway, Aux: aux}
	span := p.Subnet
	if rng.IsValid() {
		span = rng.Masked()
	}
	n := math.Ldexp(1, hostBits(span))
	seen := map[netip.Addr]bool{}
	for _, r := range p.reservedAddrs() {
		if r.IsValid() && !seen[r] && span.Contains(r) && p.reserved(r) {
			seen[r] = true
			n--
		}
	}
	return max(n, 0)
}
