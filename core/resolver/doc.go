// Package resolver is the embedded DNS server of one sandbox, bound to
// 127.0.0.11:53 (UDP and TCP) inside the sandbox's network namespace. It
// answers the names the sandbox can see from a Backend the controller
// provides, and forwards everything else to upstream servers.
//
// # Using it
//
// The controller makes one Resolver per sandbox with New, Starts it in
// the sandbox's namespace and Stops it before the namespace goes. The
// sandbox's resolv.conf names 127.0.0.11 and keeps the host's search and
// options, but for ndots (see core/sandbox). Start binds inside the namespace, but every goroutine, and so
// every upstream socket, runs in the agent's namespace: the upstreams are
// those of the host, reachable as from the host, loopback included.
//
// # Local names
//
// A and AAAA questions for a name the Backend knows are answered with all
// its addresses, the list rotated by one on every answer (round robin);
// names are matched case-insensitively and the question is echoed as the
// client wrote it. in-addr.arpa and ip6.arpa names of a whole address are
// answered from Backend.ReverseLookup. Local answers are authoritative
// (AA), have a TTL of 600 seconds (TTL, as in Docker), and a local name
// asked for a type it has no data of (AAAA of an IPv4-only container, MX,
// TXT...) gets NOERROR with no answer (NODATA), never a forward. ANY gets
// the A and AAAA records (or the PTR) of a local name.
//
// Over UDP an answer is cut to 512 bytes, or to the client's EDNS0 UDP size
// clamped to 512..4096, keeping the records that fit, with TC set: the
// client asks again over TCP and gets every record.
//
// # Forwarding
//
// A name that is not local is forwarded, over the client's transport, to
// the upstreams in order: Config.Upstreams, else the nameservers of the
// host's resolv.conf, read by New and by every Start (when the only one is
// systemd-resolved's stub 127.0.0.53, the servers behind it, from
// /run/systemd/resolve/resolv.conf, as Docker does; when there is none,
// 127.0.0.1, as glibc does). The client's message goes out
// as it came, with a fresh ID, from a fresh socket (an EDNS0 size above
// 4096 is lowered to 4096), and the upstream's answer comes back as it
// came with the client's ID: a truncated UDP answer keeps TC so the client
// retries over TCP. An upstream that fails, times out, or answers SERVFAIL
// or REFUSED is skipped; every upstream gets an equal share of what is
// left of Config.Timeout, and when none answers the client gets SERVFAIL
// within that timeout. No upstreams at all also means SERVFAIL.
//
// When Backend.Forward is ForwardNone (every network of the sandbox is
// internal) a name that is not local gets NXDOMAIN, authoritative: there
// is nothing outside, and NXDOMAIN makes stub resolvers fail at once
// where REFUSED or SERVFAIL would make them try again. With
// ForwardQualified, an A, AAAA or ANY question for a single-label name
// that is not local gets that NXDOMAIN too, and the stub goes on to its
// search domains; other types of single-label names (the NS of a
// top-level domain) are forwarded.
//
// With Config.Cache, answers from upstreams are kept for their TTL (see
// Cache) and later queries for the same question, forwarded to the same
// upstreams, are answered from it by the reader that read them, with the
// client's ID and question and the TTLs lowered by the time kept. Local
// names are answered before the cache is looked at, so a kept answer
// never hides a container.
//
// At most Config.MaxInflight forwarded queries wait for upstreams at once,
// and at most Config.Budget's across the resolvers sharing it; a query
// beyond either is answered REFUSED at once. Local answers never wait, so
// they are not bounded by them.
//
// # Odd queries
//
// Responses, and packets shorter than a header, are dropped. An opcode
// other than QUERY gets NOTIMP; a query without exactly one question, with
// a compressed or overlong question name, a record running past the end
// of the message, two OPT records, or a meta type as its type (OPT, TSIG,
// TKEY, 0) gets FORMERR; a class other than IN (CHAOS, HESIOD, ANY) and
// zone transfers (AXFR, IXFR) get REFUSED; an EDNS version other than 0
// gets BADVERS. Error answers echo the question and the OPT record when
// they were parsed; NOTIMP is the header alone.
//
// # Performance
//
// The query path works on the wire bytes, not on dns.Msg: parsing a query
// and building a local answer allocate nothing but the name string handed
// to Backend.Lookup. One goroutine reads the UDP socket and answers local
// names itself (a second one measured slower: wake-ups and contention);
// on Linux it moves up to 16 datagrams per system call (recvmmsg,
// sendmmsg) with buffers from a pool, so an idle resolver holds none. See README.md for numbers.
package resolver
