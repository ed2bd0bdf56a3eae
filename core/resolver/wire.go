package resolver

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// The query path reads and writes DNS messages directly on the wire bytes:
// only the header, one question and the OPT record matter to it, and
// skipping dns.Msg keeps a local answer free of allocations but the name
// handed to the Backend. miekg/dns is used where speed does not matter:
// the dns.Handler adapter and re-truncating an oversized upstream answer.

const (
	headerLen  = 12
	maxNameLen = 255 // wire length of a name, RFC 1035 section 3.1
	minUDPSize = 512 // a UDP answer's limit without EDNS0, RFC 1035 section 4.2.1
	// maxUDPSize clamps the client's EDNS0 UDP size and is what the
	// resolver advertises: larger datagrams gain nothing on loopback and
	// only make reflected answers bigger.
	maxUDPSize = 4096
	maxMsgSize = 65535 // a TCP message, RFC 1035 section 4.2.2
	optRRLen   = 11    // an OPT record without options

	// TTL of local answers, in seconds: Docker's embedded DNS uses 600.
	// Containers come and go faster than that, but clients cache little
	// (glibc not at all) and a shorter TTL only adds queries.
	TTL = 600
)

// Header flag bits (RFC 1035 section 4.1.1, RFC 4035 section 3.2).
const (
	flagQR     = 1 << 15
	flagAA     = 1 << 10
	flagTC     = 1 << 9
	flagRD     = 1 << 8
	flagRA     = 1 << 7
	flagCD     = 1 << 4
	opcodeMask = 0xf << 11
	rcodeMask  = 0xf
	ednsDO     = 1 << 15 // in the OPT record's TTL field
)

// drop is the rcode parseRequest returns for a packet that gets no answer
// at all: too short to carry an ID, or a response rather than a query.
const drop = -1

// request is what parseRequest learned about a query. Offsets index the
// message it was parsed from.
type request struct {
	id       uint16
	flags    uint16
	qnameEnd int // end of the question name; the name starts at headerLen
	qend     int // end of the question section, 0 if it was not parsed
	end      int // end of the last parsed record; later bytes are ignored
	qtype    uint16
	qclass   uint16

	edns    bool
	optOff  int // offset of the OPT record's class field (its UDP size)
	udpSize int // largest UDP answer the client accepts, 512..maxUDPSize
	do      bool
}

// parseRequest validates a query. It returns dns.RcodeSuccess for a query
// to answer, drop for a packet to ignore, or the rcode of the error to
// answer with; in that case req holds as much as was parsed (the question
// when qend > 0, EDNS0 when edns) so the error can echo it.
//
// It never allocates and never trusts a count: every step is bounded by
// len(msg).
func parseRequest(msg []byte) (req request, rcode int) {
	req.udpSize = minUDPSize
	if len(msg) < headerLen {
		return req, drop
	}
	req.id = binary.BigEndian.Uint16(msg)
	req.flags = binary.BigEndian.Uint16(msg[2:])
	if req.flags&flagQR != 0 {
		// Answering responses would let two resolvers loop.
		return req, drop
	}
	if req.flags&opcodeMask != 0 {
		return req, dns.RcodeNotImplemented
	}
	qd := binary.BigEndian.Uint16(msg[4:])
	an := int(binary.BigEndian.Uint16(msg[6:]))
	ns := int(binary.BigEndian.Uint16(msg[8:]))
	ar := int(binary.BigEndian.Uint16(msg[10:]))
	if qd != 1 {
		return req, dns.RcodeFormatError
	}

	end, ok := questionName(msg, headerLen)
	if !ok || end+4 > len(msg) {
		return req, dns.RcodeFormatError
	}
	req.qnameEnd = end
	req.qtype = binary.BigEndian.Uint16(msg[end:])
	req.qclass = binary.BigEndian.Uint16(msg[end+2:])
	req.qend = end + 4
	off := req.qend

	for i := 0; i < an+ns; i++ {
		if off, ok = skipRR(msg, off); !ok {
			return req, dns.RcodeFormatError
		}
	}
	for i := 0; i < ar; i++ {
		start := off
		nameEnd, ok := skipName(msg, off)
		if !ok {
			return req, dns.RcodeFormatError
		}
		if off, ok = skipRRData(msg, nameEnd); !ok {
			return req, dns.RcodeFormatError
		}
		if binary.BigEndian.Uint16(msg[nameEnd:]) != dns.TypeOPT {
			continue
		}
		if req.edns || nameEnd != start+1 || msg[start] != 0 {
			// RFC 6891 section 6.1.1: one OPT, owned by the root.
			return req, dns.RcodeFormatError
		}
		req.edns = true
		req.optOff = nameEnd + 2
		size := int(binary.BigEndian.Uint16(msg[req.optOff:]))
		req.udpSize = min(max(size, minUDPSize), maxUDPSize)
		req.do = binary.BigEndian.Uint16(msg[req.optOff+4:])&ednsDO != 0
		if msg[req.optOff+3] != 0 { // version
			req.end = off
			return req, dns.RcodeBadVers
		}
	}
	req.end = off

	switch req.qtype {
	case 0, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		// Meta types that are never asked for.
		return req, dns.RcodeFormatError
	case dns.TypeAXFR, dns.TypeIXFR:
		return req, dns.RcodeRefused
	}
	if req.qclass != dns.ClassINET {
		// CHAOS (version.bind), HESIOD, ANY, NONE: no data here, and
		// nothing a container needs from upstream.
		return req, dns.RcodeRefused
	}
	return req, dns.RcodeSuccess
}

// questionName returns the end of the uncompressed name at off. A
// compression pointer is refused: in the only question of a query nothing
// precedes the name that it could point to.
func questionName(msg []byte, off int) (int, bool) {
	start := off
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, off+1-start <= maxNameLen
		case l > 63: // a pointer or a reserved label type
			return 0, false
		}
		off += 1 + l
		if off-start >= maxNameLen {
			return 0, false
		}
	}
	return 0, false
}

// skipRR returns the end of the resource record at off, checking only that
// it lies within msg.
func skipRR(msg []byte, off int) (int, bool) {
	off, ok := skipName(msg, off)
	if !ok {
		return 0, false
	}
	return skipRRData(msg, off)
}

// skipName returns the end of the possibly compressed name at off.
func skipName(msg []byte, off int) (int, bool) {
	for off < len(msg) {
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xc0 == 0xc0: // a pointer ends the name
			return off + 2, off+2 <= len(msg)
		case l > 63:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}

// skipRRData returns the end of the record whose type starts at off:
// type, class, TTL, rdlength and rdata.
func skipRRData(msg []byte, off int) (int, bool) {
	if off+10 > len(msg) {
		return 0, false
	}
	off += 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
	return off, off <= len(msg)
}

// nameKey appends the presentation form of the wire name to dst:
// lowercase, labels joined by dots, no trailing dot; the root is empty.
// ok is false when a label holds a byte that cannot be in a container name
// or alias (a dot, a backslash, space, control or non-ASCII bytes): such a
// name is never local.
func nameKey(dst, name []byte) (key []byte, ok bool) {
	for i := 0; i < len(name) && name[i] != 0; {
		l := int(name[i])
		if l > 63 || i+1+l > len(name) { // not from questionName
			return dst, false
		}
		if len(dst) > 0 {
			dst = append(dst, '.')
		}
		for _, c := range name[i+1 : i+1+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c <= ' ' || c >= 0x7f || c == '.' || c == '\\':
				return dst, false
			}
			dst = append(dst, c)
		}
		i += 1 + l
	}
	return dst, true
}

// reverseAddr reads the address a reverse name stands for:
// d.c.b.a.in-addr.arpa or the 32 nibbles of an ip6.arpa name. Partial
// names (a whole /8) and anything malformed are not addresses.
func reverseAddr(key []byte) (netip.Addr, bool) {
	const v4Suffix, v6Suffix = ".in-addr.arpa", ".ip6.arpa"
	switch {
	case hasSuffix(key, v4Suffix):
		var a [4]byte
		rest := key[:len(key)-len(v4Suffix)]
		for i := 3; i >= 0; i-- {
			label := rest
			if i > 0 {
				dot := indexByte(rest, '.')
				if dot < 0 {
					return netip.Addr{}, false
				}
				label, rest = rest[:dot], rest[dot+1:]
			}
			v, ok := octet(label)
			if !ok {
				return netip.Addr{}, false
			}
			a[i] = v
		}
		return netip.AddrFrom4(a), true
	case hasSuffix(key, v6Suffix):
		rest := key[:len(key)-len(v6Suffix)]
		if len(rest) != 63 {
			return netip.Addr{}, false
		}
		var a [16]byte
		for i := 0; i < 32; i++ {
			if i < 31 && rest[2*i+1] != '.' {
				return netip.Addr{}, false
			}
			v, ok := nibble(rest[2*i])
			if !ok {
				return netip.Addr{}, false
			}
			// The first label is the lowest nibble of the last byte.
			j := 31 - i
			if j%2 == 0 {
				v <<= 4
			}
			a[j/2] |= v
		}
		return netip.AddrFrom16(a), true
	}
	return netip.Addr{}, false
}

func hasSuffix(b []byte, s string) bool {
	return len(b) >= len(s) && string(b[len(b)-len(s):]) == s
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// octet parses a decimal 0..255 without leading zeros.
func octet(b []byte) (byte, bool) {
	if len(b) == 0 || len(b) > 3 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return byte(v), v <= 255
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// appendName appends the wire form of a presentation name ("web.net." or
// "web.net"); ok is false for the root, an empty label, a label longer
// than 63 bytes or a name longer than 255.
func appendName(dst []byte, name string) ([]byte, bool) {
	name = strings.TrimSuffix(name, ".")
	start := len(dst)
	if name == "" {
		return dst, false // a PTR to the root is no name
	}
	for name != "" {
		label, rest, _ := strings.Cut(name, ".")
		if len(label) == 0 || len(label) > 63 {
			return dst[:start], false
		}
		dst = append(dst, byte(len(label)))
		dst = append(dst, label...)
		name = rest
	}
	dst = append(dst, 0)
	if len(dst)-start > maxNameLen {
		return dst[:start], false
	}
	return dst, true
}

// reply builds an answer to req in a caller's buffer: header, the question
// as the client sent it, answers while they fit, and an OPT record when
// the query had one.
type reply struct {
	b     []byte
	req   request // a copy: a pointer would move the caller's to the heap
	limit int     // size the whole message must fit, OPT included
	an    int
	tc    bool
	flags uint16
	rcode int
}

// newReply starts an answer to the query msg in out (whose capacity should
// be the limit: maxUDPSize over UDP, maxMsgSize over TCP). aa marks the
// answer authoritative.
func newReply(out, msg []byte, req *request, rcode int, aa, tcp bool) reply {
	r := reply{b: out[:0], req: *req, rcode: rcode}
	r.limit = req.udpSize
	if tcp {
		r.limit = maxMsgSize
	}
	// Opcode, RD and CD are copied (RFC 1035, RFC 4035 section 3.1.6). Every
	// name gets a complete answer from here, local or forwarded, hence RA.
	r.flags = flagQR | flagRA | req.flags&(opcodeMask|flagRD|flagCD)
	if aa {
		r.flags |= flagAA
	}
	r.b = append(r.b, make([]byte, headerLen)...)
	if req.qend > 0 {
		r.b = append(r.b, msg[headerLen:req.qend]...)
	}
	return r
}

// room reports whether n more bytes fit, keeping space for the OPT record.
func (r *reply) room(n int) bool {
	opt := 0
	if r.req.edns {
		opt = optRRLen
	}
	if r.tc || len(r.b)+n+opt > r.limit {
		r.tc = true
		return false
	}
	return true
}

// rrHeader appends an answer's owner (a pointer to the question name),
// type, class IN, TTL and rdata length.
func (r *reply) rrHeader(typ uint16, rdlen int) {
	r.b = append(r.b, 0xc0, headerLen, byte(typ>>8), byte(typ), 0, dns.ClassINET,
		TTL>>24, TTL>>16&0xff, TTL>>8&0xff, TTL&0xff, byte(rdlen>>8), byte(rdlen))
	r.an++
}

// addrs appends one A or AAAA record per address, starting at index
// start and wrapping around: the rotation that spreads clients over
// the addresses. Addresses of the other family are skipped.
func (r *reply) addrs(list []netip.Addr, v6 bool, start int) {
	n := len(list)
	for i := 0; i < n; i++ {
		a := list[(start+i)%n]
		if !v6 {
			a = a.Unmap()
		}
		if a.Is4() == v6 || !a.IsValid() {
			continue
		}
		if v6 {
			if !r.room(12 + 16) {
				return
			}
			r.rrHeader(dns.TypeAAAA, 16)
			b := a.As16()
			r.b = append(r.b, b[:]...)
		} else {
			if !r.room(12 + 4) {
				return
			}
			r.rrHeader(dns.TypeA, 4)
			b := a.As4()
			r.b = append(r.b, b[:]...)
		}
	}
}

// ptr appends a PTR record; ok is false when target is not a valid name.
func (r *reply) ptr(target string) bool {
	var nb [maxNameLen + 1]byte
	name, ok := appendName(nb[:0], target)
	if !ok {
		return false
	}
	if r.room(12 + len(name)) {
		r.rrHeader(dns.TypePTR, len(name))
		r.b = append(r.b, name...)
	}
	return true
}

// finish appends the OPT record and writes the header.
func (r *reply) finish() []byte {
	if r.req.edns {
		var ttl uint32
		ttl |= uint32(r.rcode>>4) << 24 // extended rcode; version 0
		if r.req.do {
			ttl |= ednsDO // RFC 3225 section 3: DO is copied
		}
		r.b = append(r.b, 0, 0, byte(dns.TypeOPT), maxUDPSize>>8, maxUDPSize&0xff,
			byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl), 0, 0)
	}
	flags := r.flags | uint16(r.rcode&rcodeMask)
	if r.tc {
		flags |= flagTC
	}
	h := r.b[:headerLen]
	binary.BigEndian.PutUint16(h, r.req.id)
	binary.BigEndian.PutUint16(h[2:], flags)
	qd := 0
	if r.req.qend > 0 {
		qd = 1
	}
	binary.BigEndian.PutUint16(h[4:], uint16(qd))
	binary.BigEndian.PutUint16(h[6:], uint16(r.an))
	binary.BigEndian.PutUint16(h[8:], 0)
	ar := 0
	if r.req.edns {
		ar = 1
	}
	binary.BigEndian.PutUint16(h[10:], uint16(ar))
	return r.b
}

// sameQuestion reports whether the answer resp is for the question of the
// query msg (ID checked by the caller): names compare case-insensitively,
// as an upstream may echo them in its own case.
func sameQuestion(resp, msg []byte, req *request) bool {
	qlen := req.qend - headerLen
	if len(resp) < headerLen+qlen || binary.BigEndian.Uint16(resp[4:]) != 1 {
		return false
	}
	q, a := msg[headerLen:req.qend], resp[headerLen:headerLen+qlen]
	n := req.qnameEnd - headerLen
	for i := range n {
		if x, y := q[i], a[i]; x != y && lower(x) != lower(y) {
			return false
		}
	}
	return string(q[n:]) == string(a[n:]) // type and class
}

// lower folds ASCII letters. Label length bytes are below 64 and never
// letters, so folding a whole wire name compares it label by label.
func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
