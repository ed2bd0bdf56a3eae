package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the UDP readers move datagrams in batches: one recvmmsg(2)
// takes every query waiting on the socket (up to batchSize), and one
// sendmmsg(2) sends all their local answers. Under load that saves most
// of the system calls, which are nearly all the cost of a local answer.
//
// The batch buffers come from a pool and go back to it whenever a reader
// finds the socket empty, so an idle resolver (most of them: one per
// sandbox) holds no buffers at all.

// batchSize is how many datagrams one system call moves.
const batchSize = 16

// sockaddrLen is the room for a peer's address: a sockaddr_in6, which is
// larger than a sockaddr_in.
const sockaddrLen = unix.SizeofSockaddrInet6

// mmsghdr is struct mmsghdr; Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

type batch struct {
	rhdr  [batchSize]mmsghdr
	riov  [batchSize]unix.Iovec
	names [batchSize][sockaddrLen]byte
	in    [batchSize][maxUDPSize]byte

	shdr [batchSize]mmsghdr
	siov [batchSize]unix.Iovec
	out  [batchSize][maxUDPSize]byte
}

var batchPool = sync.Pool{New: func() any {
	b := new(batch)
	for i := range b.rhdr {
		b.riov[i].Base = &b.in[i][0]
		b.riov[i].SetLen(maxUDPSize)
		b.rhdr[i].hdr.Iov = &b.riov[i]
		b.rhdr[i].hdr.SetIovlen(1)
		b.rhdr[i].hdr.Name = &b.names[i][0]
		b.shdr[i].hdr.Iov = &b.siov[i]
		b.shdr[i].hdr.SetIovlen(1)
	}
	return b
}}

// serveUDP answers UDP queries until the socket is closed.
func (r *Resolver) serveUDP(run *run) {
	defer run.wg.Done()
	rc, err := run.udp.SyscallConn()
	if err != nil {
		r.serveUDPEach(run)
		return
	}
	rd := &reader{}
	read, write := rd.read, rd.write // one closure each for the life of the reader
	defer rd.release()
	for {
		err := rc.Read(read)
		switch {
		case err != nil:
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("reading UDP queries", "error", err)
			time.Sleep(time.Millisecond)
			continue
		case rd.errno == unix.EINTR:
			continue
		case rd.errno != 0:
			r.log.Debug("reading UDP queries", "error", rd.errno)
			time.Sleep(time.Millisecond) // no busy loop on a persistent error
			continue
		}
		b, m := rd.b, 0
		for i := range rd.n {
			msg := b.in[i][:b.rhdr[i].len]
			name := &b.names[i]
			resp := r.udpQuery(run, msg, b.out[i][:0], peer(name, b.rhdr[i].hdr.Namelen))
			if len(resp) == 0 {
				continue
			}
			b.siov[m].Base = &resp[0]
			b.siov[m].SetLen(len(resp))
			b.shdr[m].hdr.Name = &name[0]
			b.shdr[m].hdr.Namelen = b.rhdr[i].hdr.Namelen
			m++
		}
		if m > 0 {
			rd.m, rd.sent = m, 0
			_ = rc.Write(write) // fails only once the socket is closed
		}
	}
}

// reader is the state of one UDP reader goroutine between system calls.
type reader struct {
	b     *batch // nil while waiting for queries
	n     int    // datagrams read into b
	errno syscall.Errno
	m     int // answers to send from b.shdr
	sent  int // ... of which sent
}

// read is the syscall.RawConn.Read callback: it takes a batch and fills
// it, or gives the batch back and asks to wait when there is nothing to
// read.
func (rd *reader) read(fd uintptr) bool {
	if rd.b == nil {
		rd.b = batchPool.Get().(*batch)
	}
	rd.n, rd.errno = rd.b.recv(fd)
	if rd.errno == unix.EAGAIN {
		rd.release()
		return false
	}
	return true
}

func (rd *reader) release() {
	if rd.b != nil {
		batchPool.Put(rd.b)
		rd.b = nil
	}
}

// recv reads up to batchSize datagrams without blocking.
func (b *batch) recv(fd uintptr) (int, syscall.Errno) {
	for i := range b.rhdr {
		b.rhdr[i].hdr.Namelen = sockaddrLen
		b.rhdr[i].hdr.Flags = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.rhdr[0])),
		batchSize, unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}

// write is the syscall.RawConn.Write callback: it sends answers
// [sent, m) of the batch, asking to wait while the socket's buffer is full
// and skipping an answer the kernel refuses.
func (rd *reader) write(fd uintptr) bool {
	b := rd.b
	for rd.sent < rd.m {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.shdr[rd.sent])),
			uintptr(rd.m-rd.sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EAGAIN:
			return false
		case errno == unix.EINTR:
		case errno != 0 || n == 0:
			// sendmmsg reports an error only for the first
			// datagram: an unreachable client, say.
			rd.sent++
		default:
			rd.sent += int(n)
		}
	}
	return true
}

// udpReceiveBuffer is the receive buffer asked for the UDP socket: room
// for a few thousand queries, so a burst (a client starting, dnsperf's
// opening salvo) waits instead of being dropped. It is a bound, not an
// allocation: an idle socket uses none of it.
const udpReceiveBuffer = 4 << 20

// tuneUDP raises the socket's receive buffer to udpReceiveBuffer, beyond
// net.core.rmem_max when the agent has CAP_NET_ADMIN.
func tuneUDP(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	_ = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpReceiveBuffer)
	})
	if serr != nil {
		_ = c.SetReadBuffer(udpReceiveBuffer)
	}
}

// peer reads a sockaddr_in or sockaddr_in6; an IPv6 zone is dropped (the
// resolver listens on 127.0.0.11).
func peer(sa *[sockaddrLen]byte, n uint32) netip.AddrPort {
	port := binary.BigEndian.Uint16(sa[2:4])
	switch binary.NativeEndian.Uint16(sa[:2]) {
	case unix.AF_INET:
		if n >= unix.SizeofSockaddrInet4 {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port)
		}
	case unix.AF_INET6:
		if n >= unix.SizeofSockaddrInet6 {
			return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), port)
		}
	}
	return netip.AddrPort{}
}
