package resolver

import (
	"context"
	"net"

	"github.com/miekg/dns"
)

// action is what respond decided for a query.
type action int

const (
	actReply   action = iota // send the returned message
	actForward               // ask the upstreams
	actDrop                  // send nothing
)

// respond answers the query msg from the Backend, building the answer in
// out (capacity maxUDPSize over UDP, maxMsgSize over TCP, or it grows). It
// does not block; for actForward the caller runs forward with req.
func (r *Resolver) respond(msg, out []byte, tcp bool) ([]byte, request, action) {
	req, rcode := parseRequest(msg)
	switch rcode {
	case dns.RcodeSuccess:
	case drop:
		return nil, req, actDrop
	default:
		r.metrics.Query(OutcomeInvalid, rcode)
		rp := newReply(out, msg, &req, rcode, false, tcp)
		return rp.finish(), req, actReply
	}

	var kb [maxNameLen]byte
	key, plain := nameKey(kb[:0], msg[headerLen:req.qnameEnd])
	if plain && len(key) > 0 {
		if ip, ok := reverseAddr(key); ok {
			if ptr, found := r.backend.ReverseLookup(ip); found {
				rp := newReply(out, msg, &req, dns.RcodeSuccess, true, tcp)
				if req.qtype == dns.TypePTR || req.qtype == dns.TypeANY {
					// A name DNS cannot hold (a label over 63
					// bytes) gives no data: the address is a
					// container's, never the upstreams' to answer.
					_ = rp.ptr(ptr)
				}
				r.metrics.Query(OutcomeContainer, dns.RcodeSuccess)
				return rp.finish(), req, actReply
			}
		} else if v4, v6, found := r.backend.Lookup(string(key)); found {
			rp := newReply(out, msg, &req, dns.RcodeSuccess, true, tcp)
			switch req.qtype {
			case dns.TypeA:
				rp.addrs(v4, false, r.rotation(len(v4)))
			case dns.TypeAAAA:
				rp.addrs(v6, true, r.rotation(len(v6)))
			case dns.TypeANY:
				rp.addrs(v4, false, r.rotation(len(v4)))
				rp.addrs(v6, true, r.rotation(len(v6)))
			}
			r.metrics.Query(OutcomeContainer, dns.RcodeSuccess)
			return rp.finish(), req, actReply
		}
	}

	switch r.backend.Forward() {
	case ForwardAll:
	case ForwardQualified:
		if !singleLabelAddress(&req, msg[headerLen:req.qnameEnd]) {
			break
		}
		fallthrough
	default:
		// Nothing outside can answer it for this sandbox (internal
		// networks only, or a single-label name). NXDOMAIN (rather
		// than REFUSED or SERVFAIL) makes resolvers give up at once,
		// or go on to their search domains, instead of trying other
		// servers and reporting a temporary failure.
		r.metrics.Query(OutcomeNXDomain, dns.RcodeNameError)
		rp := newReply(out, msg, &req, dns.RcodeNameError, true, tcp)
		return rp.finish(), req, actReply
	}
	return nil, req, actForward
}

// singleLabelAddress reports whether the query is an A, AAAA or ANY
// question for name (wire form, uncompressed) of exactly one label. Other
// types (the NS or SOA of a top-level domain) are real questions about
// single-label names.
func singleLabelAddress(req *request, name []byte) bool {
	switch req.qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
	default:
		return false
	}
	l := int(name[0])
	return l > 0 && l+1 < len(name) && name[l+1] == 0
}

// rotation returns where a list of n addresses starts in this answer.
func (r *Resolver) rotation(n int) int {
	if n < 2 {
		return 0
	}
	return int(r.rot.Add(1) % uint32(n))
}

// refused answers REFUSED to a query the in-flight bound turned away.
func (r *Resolver) refused(out, msg []byte, req *request, tcp bool) []byte {
	r.metrics.Query(OutcomeRefused, dns.RcodeRefused)
	rp := newReply(out, msg, req, dns.RcodeRefused, false, tcp)
	return rp.finish()
}

// Handler returns the Resolver's query path as a dns.Handler, for tests
// with a recorder and for callers serving it with a dns.Server. The
// protocol (the limit of a UDP answer, the transport to upstreams) is
// TCP when w.RemoteAddr is a *net.TCPAddr, UDP otherwise. Forwarded
// queries are answered synchronously and count against MaxInflight.
func (r *Resolver) Handler() dns.Handler { return handler{r} }

type handler struct{ r *Resolver }

func (h handler) ServeDNS(w dns.ResponseWriter, m *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	msg, err := m.Pack()
	if err != nil {
		fail := new(dns.Msg)
		fail.Id = m.Id
		fail.Response = true
		fail.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(fail)
		return
	}
	bp := getBuf()
	defer putBuf(bp)
	resp, req, act := h.r.respond(msg, (*bp)[:0], tcp)
	switch act {
	case actDrop:
		return
	case actForward:
		if resp = h.r.cached(msg, (*bp)[:0], &req, tcp); resp != nil {
			break
		}
		if !h.r.acquire() {
			resp = h.r.refused((*bp)[:0], msg, &req, tcp)
			break
		}
		resp = h.r.forward(context.Background(), msg[:req.end], &req, tcp, *bp)
		h.r.release()
	}
	_, _ = w.Write(resp)
}
