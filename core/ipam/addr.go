package ipam

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"
)

// u128 is an unsigned 128-bit integer, so address arithmetic reads the
// same for IPv4 (in the low 32 bits) and IPv6.
type u128 struct{ hi, lo uint64 }

func u128Of(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

// addr converts u back to an address of the family of like.
func (u u128) addr(like netip.Addr) netip.Addr {
	if like.Is4() {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) add(v uint64) u128 {
	lo, c := bits.Add64(u.lo, v, 0)
	return u128{u.hi + c, lo}
}

func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) or(v u128) u128 { return u128{u.hi | v.hi, u.lo | v.lo} }

// ones returns the number with its n low bits set, n in [0, 128].
func ones(n int) u128 {
	switch {
	case n <= 0:
		return u128{}
	case n < 64:
		return u128{lo: 1<<n - 1}
	case n < 128:
		return u128{hi: 1<<(n-64) - 1, lo: ^uint64(0)}
	}
	return u128{^uint64(0), ^uint64(0)}
}

// hostBits is the number of host bits of p.
func hostBits(p netip.Prefix) int { return p.Addr().BitLen() - p.Bits() }

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	return u128Of(p.Addr()).or(ones(hostBits(p))).addr(p.Addr())
}

// offsetIn returns a's distance from base when it is at least base and
// below base+size.
func offsetIn(base netip.Addr, size uint64, a netip.Addr) (uint64, bool) {
	if a.Less(base) || a.Is4() != base.Is4() {
		return 0, false
	}
	d := u128Of(a).sub(u128Of(base))
	if d.hi != 0 || d.lo >= size {
		return 0, false
	}
	return d.lo, true
}

// addrAt is base+off.
func addrAt(base netip.Addr, off uint64) netip.Addr { return u128Of(base).add(off).addr(base) }

// keyOf spells a subnet as a store key segment: 10.1.0.0/24 is
// "10.1.0.0-24", fd00::/64 "fd00::-64".
func keyOf(p netip.Prefix) string {
	return p.Addr().String() + "-" + strconv.Itoa(p.Bits())
}
