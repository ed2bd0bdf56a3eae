package resolver

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

const (
	// maxTCPConns bounds the open TCP connections of one resolver; more
	// are closed as soon as they are accepted.
	maxTCPConns = 256
	// tcpIdleTimeout closes a TCP connection that sends nothing (RFC 7766
	// section 6.2.3 asks for seconds, not minutes).
	tcpIdleTimeout = 10 * time.Second
	// tcpWriteTimeout bounds writing one answer to a client that does not
	// read.
	tcpWriteTimeout = 5 * time.Second
)

// udpQuery handles one UDP query from addr and returns the answer to send
// now, built in out, or nil: nothing to send, or a forward that answers
// from its own goroutine, so an upstream never holds up local answers.
func (r *Resolver) udpQuery(run *run, msg, out []byte, addr netip.AddrPort) []byte {
	resp, req, act := r.respond(msg, out, false)
	switch act {
	case actReply:
		return resp
	case actForward:
		if resp := r.cached(msg, out, &req, false); resp != nil {
			return resp
		}
		if !r.acquire() {
			return r.refused(out, msg, &req, false)
		}
		q := append([]byte(nil), msg[:req.end]...)
		run.wg.Add(1)
		go r.forwardUDP(run, q, req, addr)
	}
	return nil
}

func (r *Resolver) forwardUDP(run *run, q []byte, req request, addr netip.AddrPort) {
	defer run.wg.Done()
	defer r.release()
	bp := getBuf()
	defer putBuf(bp)
	if resp := r.forward(run.ctx, q, &req, false, *bp); resp != nil {
		_, _ = run.udp.WriteToUDPAddrPort(resp, addr)
	}
}

// serveUDPEach reads and answers one datagram at a time until the socket
// is closed: the portable path.
func (r *Resolver) serveUDPEach(run *run) {
	in := make([]byte, maxUDPSize)
	out := make([]byte, 0, maxUDPSize)
	for {
		n, addr, err := run.udp.ReadFromUDPAddrPort(in)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("reading UDP query", "error", err)
			time.Sleep(time.Millisecond) // no busy loop on a persistent error
			continue
		}
		if resp := r.udpQuery(run, in[:n], out, addr); resp != nil {
			_, _ = run.udp.WriteToUDPAddrPort(resp, addr)
		}
	}
}

// serveTCP accepts connections until the listener is closed.
func (r *Resolver) serveTCP(run *run) {
	defer run.wg.Done()
	for {
		c, err := run.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait for connections to go.
			r.log.Debug("accepting TCP connection", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !run.track(c) {
			c.Close()
			continue
		}
		run.wg.Add(1)
		go r.serveConn(run, c)
	}
}

// tcpConn serializes the answers written to one connection: local ones
// in order, forwarded ones whenever they arrive (RFC 7766 allows it).
type tcpConn struct {
	mu sync.Mutex
	c  *net.TCPConn
	// broken: a write failed (the client does not read, or went away);
	// later answers are not written, and the connection is closed, so
	// that answers queued behind it do not each wait out a write timeout.
	broken bool
}

// write sends resp, which was built at buf[2:] (or is copied there), with
// its length prefix in one write.
func (tc *tcpConn) write(buf, resp []byte) {
	frame := buf[:2+len(resp)]
	if len(resp) > 0 && &frame[2] != &resp[0] {
		copy(frame[2:], resp)
	}
	binary.BigEndian.PutUint16(frame, uint16(len(resp)))
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.broken {
		return
	}
	_ = tc.c.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	if _, err := tc.c.Write(frame); err != nil {
		tc.broken = true
		_ = tc.c.Close() // ends the reader too
	}
}

// serveConn reads length-prefixed queries from one connection until it is
// closed, idle or sends garbage, then waits for its forwarded queries to
// be answered before closing it.
func (r *Resolver) serveConn(run *run, c *net.TCPConn) {
	defer run.wg.Done()
	tc := &tcpConn{c: c}
	var pending sync.WaitGroup
	defer func() {
		pending.Wait()
		run.untrack(c)
		c.Close()
	}()
	var hdr [2]byte
	var in []byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(hdr[:]))
		if cap(in) < n {
			in = make([]byte, n)
		}
		in = in[:n]
		if _, err := io.ReadFull(c, in); err != nil {
			return
		}
		bp := getBuf()
		out := (*bp)[2:2]
		resp, req, act := r.respond(in, out, true)
		switch act {
		case actDrop:
			putBuf(bp)
			return
		case actReply:
			tc.write(*bp, resp)
			putBuf(bp)
		case actForward:
			if resp := r.cached(in, out, &req, true); resp != nil {
				tc.write(*bp, resp)
				putBuf(bp)
				continue
			}
			if !r.acquire() {
				tc.write(*bp, r.refused(out, in, &req, true))
				putBuf(bp)
				continue
			}
			q := append([]byte(nil), in[:req.end]...)
			pending.Add(1)
			run.wg.Add(1)
			go func() {
				defer run.wg.Done()
				defer pending.Done()
				defer putBuf(bp)
				resp := r.forward(run.ctx, q, &req, true, (*bp)[2:])
				// The slot bounds the queries upstream: free once the
				// answer is in, whatever the client's reading.
				r.release()
				if resp != nil {
					tc.write(*bp, resp)
				}
			}()
		}
	}
}
