package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// upstream is one server forwarded queries go to.
type upstream struct {
	ap   netip.AddrPort
	udp  *net.UDPAddr
	addr string // for net.Dialer
}

func newUpstream(ap netip.AddrPort) upstream {
	return upstream{ap: ap, udp: net.UDPAddrFromAddrPort(ap), addr: ap.String()}
}

// bufPool holds buffers for one message of any size with room for a TCP
// length prefix: forwarded answers and TCP replies.
var bufPool = sync.Pool{New: func() any {
	b := make([]byte, 2+maxMsgSize)
	return &b
}}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// errMismatch is an upstream answer that is not for the query asked.
var errMismatch = errors.New("answer does not match the query")

// cached builds in out the cached answer to the query msg, which respond
// decided to forward, or returns nil. It never blocks on I/O: readers call
// it before handing a query to a forwarding goroutine.
func (r *Resolver) cached(msg, out []byte, req *request, tcp bool) []byte {
	if r.cache == nil {
		return nil
	}
	resp := r.cache.get(key(r.upstreams.Load().key, msg, req), msg, req, out, tcp)
	if resp != nil {
		r.metrics.Query(OutcomeCached, int(resp[3]&rcodeMask))
	}
	return resp
}

// forward asks the upstreams in order for the query msg (the caller's own
// copy, which is modified) and returns the answer for the client, built in
// buf (len(buf) >= maxMsgSize): the upstream's message as it came, with the
// client's ID, or SERVFAIL when none answered usefully in time. It returns
// nil when ctx is cancelled.
//
// The query goes out over the client's transport, so a UDP answer that
// was truncated upstream reaches the client with TC set and the client
// retries over TCP. A server that answers SERVFAIL or REFUSED, fails or
// stays silent is skipped; each upstream gets an equal share of what is
// left of the timeout, so the last one is still asked when the first ones
// are black holes.
func (r *Resolver) forward(ctx context.Context, msg []byte, req *request, tcp bool, buf []byte) []byte {
	set := r.upstreams.Load()
	ups := set.list
	if len(ups) > 0 {
		var k cacheKey
		if r.cache != nil {
			k = key(set.key, msg, req)
		}
		if req.optOff > 0 && binary.BigEndian.Uint16(msg[req.optOff:]) > maxUDPSize {
			binary.BigEndian.PutUint16(msg[req.optOff:], maxUDPSize)
		}
		// A fresh ID (and, below, a fresh socket and port) per query:
		// the client's ID is its own guess against spoofing, not ours.
		binary.BigEndian.PutUint16(msg, uint16(rand.Uint32()))
		deadline := time.Now().Add(time.Duration(r.timeout.Load()))
		for i, up := range ups {
			now := time.Now()
			left := deadline.Sub(now)
			if left <= 0 || ctx.Err() != nil {
				break
			}
			attempt := now.Add(left / time.Duration(len(ups)-i))
			var n int
			var err error
			if tcp {
				n, err = exchangeTCP(ctx, up, msg, req, attempt, buf)
			} else {
				n, err = exchangeUDP(ctx, up, msg, req, attempt, buf)
			}
			if err != nil {
				r.log.Debug("upstream failed", "server", up.ap, "tcp", tcp, "error", err)
				continue
			}
			resp := buf[:n]
			if rc := int(resp[3] & rcodeMask); rc == dns.RcodeServerFailure || rc == dns.RcodeRefused {
				r.log.Debug("upstream failed", "server", up.ap, "tcp", tcp, "rcode", dns.RcodeToString[rc])
				continue
			}
			binary.BigEndian.PutUint16(resp, req.id)
			if r.cache != nil {
				r.cache.put(k, resp)
			}
			if !tcp && n > req.udpSize {
				// Only a server ignoring the client's (or the
				// default) size gets here.
				if resp, err = truncate(resp, req.udpSize, buf); err != nil {
					r.log.Debug("upstream failed", "server", up.ap, "error", err)
					continue
				}
			}
			r.metrics.Query(OutcomeForwarded, int(resp[3]&rcodeMask))
			return resp
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	r.metrics.Query(OutcomeFailed, dns.RcodeServerFailure)
	rp := newReply(buf[:0], msg, req, dns.RcodeServerFailure, false, tcp)
	return rp.finish()
}

// exchangeUDP sends msg from a new connected socket (so an ICMP port
// unreachable fails it at once) and reads until the answer to it arrives;
// datagrams that do not match are dropped as spoofing attempts.
func exchangeUDP(ctx context.Context, up upstream, msg []byte, req *request, deadline time.Time, buf []byte) (int, error) {
	c, err := net.DialUDP("udp", nil, up.udp)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	for {
		n, err := c.Read(buf[:maxMsgSize])
		if err != nil {
			return 0, err
		}
		if isAnswer(buf[:n], msg, req) {
			return n, nil
		}
	}
}

// exchangeTCP sends msg over a new TCP connection and reads one answer.
func exchangeTCP(ctx context.Context, up upstream, msg []byte, req *request, deadline time.Time, buf []byte) (int, error) {
	d := net.Dialer{Deadline: deadline}
	c, err := d.DialContext(ctx, "tcp", up.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	frame := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(frame, uint16(len(msg)))
	copy(frame[2:], msg)
	if _, err := c.Write(frame); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(buf))
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return 0, err
	}
	if !isAnswer(buf[:n], msg, req) {
		return 0, errMismatch
	}
	return n, nil
}

// isAnswer reports whether resp answers the query msg: same ID and
// question, QR set.
func isAnswer(resp, msg []byte, req *request) bool {
	return len(resp) >= headerLen &&
		binary.BigEndian.Uint16(resp) == binary.BigEndian.Uint16(msg) &&
		resp[2]&(flagQR>>8) != 0 &&
		sameQuestion(resp, msg, req)
}

// truncate cuts an answer down to size with TC set, in buf.
func truncate(resp []byte, size int, buf []byte) ([]byte, error) {
	m := new(dns.Msg)
	if err := m.Unpack(resp); err != nil {
		return nil, fmt.Errorf("unpacking oversized answer: %w", err)
	}
	m.Truncate(size)
	out, err := m.PackBuffer(buf)
	if err != nil {
		return nil, fmt.Errorf("packing truncated answer: %w", err)
	}
	return out, nil
}
