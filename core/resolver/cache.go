package resolver

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/core/config"
)

// maxCachedSize bounds one cached answer, so the cache holds at most
// Size × 4 KiB: larger answers (TCP only) are forwarded every time.
const maxCachedSize = maxUDPSize

// CacheConfig configures a Cache. Zero durations mean the defaults
// (config.DefaultCacheMaxTTL, config.DefaultCacheMaxNegativeTTL).
type CacheConfig struct {
	// Size is the number of answers kept; the least recently used goes
	// first. At most 0 means no cache (NewCache returns nil).
	Size int
	// MaxTTL caps how long a positive answer is kept.
	MaxTTL time.Duration
	// MaxNegativeTTL caps how long an NXDOMAIN or NODATA answer is kept.
	MaxNegativeTTL time.Duration
}

// Cache keeps forwarded answers for their TTL. One Cache is shared by the
// resolvers of an agent: an answer is found again only by a resolver
// forwarding to the same upstreams (in the same order), so a sandbox with
// its own servers never sees another's answers.
//
// It keeps NOERROR answers with records for the smallest TTL of their
// answer section, and NXDOMAIN and NODATA answers for the TTL of the SOA in
// their authority section (the smaller of its TTL and MINIMUM, RFC 2308),
// each capped by the config. It never keeps SERVFAIL or any other error,
// truncated answers, negative answers without a SOA, answers with a TTL of
// 0, or answers larger than 4 KiB. Names the sandbox knows locally never
// reach it: they are answered before a forward is considered.
//
// A Cache is safe for concurrent use. A nil *Cache caches nothing.
type Cache struct {
	lru       *lru.Cache[cacheKey, *cacheEntry]
	maxTTL    atomic.Int64     // a time.Duration; SetLimits changes it
	maxNegTTL atomic.Int64     // likewise
	now       func() time.Time // time.Now; tests move it

	// Plain counters, for whoever exports metrics.
	hits, misses, stores atomic.Uint64
}

// CacheStats are a Cache's counters since it was made.
type CacheStats struct {
	Hits    uint64 // queries answered from the cache
	Misses  uint64 // forwarded queries it had no live answer for
	Stores  uint64 // answers it kept
	Entries int    // answers it holds now (some may have expired)
}

// cacheKey identifies a question asked of one upstream set. The EDNS and
// DNSSEC bits are part of it: an answer to a query with DO may carry
// signatures, one without an OPT record must not get one.
type cacheKey struct {
	upstreams string // upstreamSet.key
	name      string // the question name in wire form, lowercase
	qtype     uint16
	qclass    uint16
	bits      uint8 // keyEDNS | keyDO | keyCD
}

const (
	keyEDNS = 1 << iota
	keyDO
	keyCD
)

// cacheEntry is one kept answer.
type cacheEntry struct {
	msg     []byte // as the upstream sent it, TTLs lowered to the lifetime
	ttls    []int  // offsets of the TTL fields in msg (every record but OPT)
	stored  time.Time
	expires time.Time
}

// NewCache returns a cache, or nil when cfg.Size is not positive.
func NewCache(cfg CacheConfig) *Cache {
	if cfg.Size <= 0 {
		return nil
	}
	l, err := lru.New[cacheKey, *cacheEntry](cfg.Size)
	if err != nil { // only for a size ≤ 0
		return nil
	}
	c := &Cache{lru: l, now: time.Now}
	c.setTTLs(cfg)
	return c
}

// setTTLs sets the caps of cfg, the defaults for zero ones.
func (c *Cache) setTTLs(cfg CacheConfig) {
	if cfg.MaxTTL <= 0 {
		cfg.MaxTTL = config.DefaultCacheMaxTTL
	}
	if cfg.MaxNegativeTTL <= 0 {
		cfg.MaxNegativeTTL = config.DefaultCacheMaxNegativeTTL
	}
	c.maxTTL.Store(int64(cfg.MaxTTL))
	c.maxNegTTL.Store(int64(cfg.MaxNegativeTTL))
}

// SetLimits applies cfg to a running cache (a reload of the resolver's
// cache settings): a smaller size drops the least recently used answers
// beyond it; the TTL caps bound the answers kept from then on. It cannot
// turn a cache on or off: it reports false, changing nothing, when c is
// nil or cfg.Size is not positive.
func (c *Cache) SetLimits(cfg CacheConfig) bool {
	if c == nil || cfg.Size <= 0 {
		return false
	}
	c.lru.Resize(cfg.Size)
	c.setTTLs(cfg)
	return true
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	if c == nil {
		return CacheStats{}
	}
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stores: c.stores.Load(), Entries: c.lru.Len()}
}

// Purge drops every answer.
func (c *Cache) Purge() {
	if c != nil {
		c.lru.Purge()
	}
}

// key returns the cache key of the parsed query msg for upstreams.
func key(upstreams string, msg []byte, req *request) cacheKey {
	k := cacheKey{upstreams: upstreams, qtype: req.qtype, qclass: req.qclass}
	name := make([]byte, req.qnameEnd-headerLen)
	for i, c := range msg[headerLen:req.qnameEnd] {
		name[i] = lower(c)
	}
	k.name = string(name)
	if req.edns {
		k.bits |= keyEDNS
	}
	if req.do {
		k.bits |= keyDO
	}
	if req.flags&flagCD != 0 {
		k.bits |= keyCD
	}
	return k
}

// get builds the kept answer to the query msg in out, with the client's
// ID, question (in the client's case) and RD bit, and every TTL lowered by
// the time it was kept; nil when there is none. Over UDP an answer larger
// than the client accepts is truncated with TC set.
func (c *Cache) get(k cacheKey, msg []byte, req *request, out []byte, tcp bool) []byte {
	e, ok := c.lru.Get(k)
	now := c.now()
	if !ok || !now.Before(e.expires) {
		if ok {
			c.lru.Remove(k)
		}
		c.misses.Add(1)
		return nil
	}
	out = append(out[:0], e.msg...)
	binary.BigEndian.PutUint16(out, req.id)
	out[2] = out[2]&^byte(flagRD>>8) | byte(req.flags&flagRD>>8)
	copy(out[headerLen:req.qend], msg[headerLen:req.qend])
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, off := range e.ttls {
		ttl := binary.BigEndian.Uint32(e.msg[off:])
		// An additional record may live shorter than the answer.
		binary.BigEndian.PutUint32(out[off:], ttl-min(ttl, age))
	}
	if !tcp && len(out) > req.udpSize {
		t, err := truncate(out, req.udpSize, out)
		if err != nil {
			c.misses.Add(1)
			return nil
		}
		out = t
	}
	c.hits.Add(1)
	return out
}

// put keeps resp, an upstream's answer to the question of k, if it may be
// kept (see Cache).
func (c *Cache) put(k cacheKey, resp []byte) {
	if len(resp) > maxCachedSize {
		return
	}
	lifetime, ttls, ok := c.lifetime(resp)
	if !ok || lifetime <= 0 {
		return
	}
	// An answer the clients could not read (a compression pointer
	// loop, a name running past its record) is passed on once, as the
	// upstream sent it, but never kept to be replayed for its TTL.
	if (&dns.Msg{}).Unpack(resp) != nil {
		return
	}
	msg := append([]byte(nil), resp...)
	secs := uint32(lifetime / time.Second)
	for _, off := range ttls {
		if binary.BigEndian.Uint32(msg[off:]) > secs {
			binary.BigEndian.PutUint32(msg[off:], secs)
		}
	}
	now := c.now()
	c.lru.Add(k, &cacheEntry{msg: msg, ttls: ttls, stored: now, expires: now.Add(lifetime)})
	c.stores.Add(1)
}

// lifetime reads an answer's records and returns how long it may be kept
// and the offsets of its TTL fields; ok is false for an answer that must
// not be kept.
func (c *Cache) lifetime(resp []byte) (time.Duration, []int, bool) {
	if len(resp) < headerLen || resp[2]&(flagTC>>8) != 0 {
		return 0, nil, false
	}
	rcode := int(resp[3] & rcodeMask)
	if rcode != dns.RcodeSuccess && rcode != dns.RcodeNameError {
		return 0, nil, false
	}
	qd := int(binary.BigEndian.Uint16(resp[4:]))
	an := int(binary.BigEndian.Uint16(resp[6:]))
	ns := int(binary.BigEndian.Uint16(resp[8:]))
	ar := int(binary.BigEndian.Uint16(resp[10:]))
	if qd != 1 {
		return 0, nil, false
	}
	off, ok := skipName(resp, headerLen)
	if !ok || off+4 > len(resp) {
		return 0, nil, false
	}
	off += 4
	var ttls []int
	minAnswer, negative := uint32(1<<31), uint32(0)
	soa := false
	for i := range an + ns + ar {
		nameEnd, ok := skipName(resp, off)
		if !ok {
			return 0, nil, false
		}
		end, ok := skipRRData(resp, nameEnd)
		if !ok {
			return 0, nil, false
		}
		typ := binary.BigEndian.Uint16(resp[nameEnd:])
		ttl := binary.BigEndian.Uint32(resp[nameEnd+4:])
		if ttl >= 1<<31 {
			ttl = 0 // RFC 2181 section 8: a TTL with its top bit set is zero
		}
		switch {
		case typ == dns.TypeOPT:
			if i < an+ns {
				return 0, nil, false
			}
		case i < an:
			minAnswer = min(minAnswer, ttl)
		case i < an+ns && typ == dns.TypeSOA && !soa && end-nameEnd >= 10+20:
			soa = true
			negative = min(ttl, binary.BigEndian.Uint32(resp[end-4:])) // MINIMUM ends the rdata
		}
		if typ != dns.TypeOPT {
			ttls = append(ttls, nameEnd+4)
		}
		off = end
	}
	var d, limit time.Duration
	switch {
	case rcode == dns.RcodeSuccess && an > 0:
		d, limit = time.Duration(minAnswer)*time.Second, time.Duration(c.maxTTL.Load())
	case soa:
		d, limit = time.Duration(negative)*time.Second, time.Duration(c.maxNegTTL.Load())
	default:
		return 0, nil, false
	}
	return min(d, limit), ttls, true
}
