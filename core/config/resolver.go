package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var resolverSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "upstreams"}, {Name: "timeout"}, {Name: "max_inflight"},
		{Name: "cache_size"}, {Name: "cache_max_ttl"}, {Name: "cache_max_negative_ttl"}, {Name: "host_listen"}},
}

// maxTimeout bounds resolver.timeout: a forwarded query that waits longer
// only holds an in-flight slot after the client has given up (glibc
// retries after 5s).
const maxTimeout = time.Minute

// maxCacheTTL bounds the cache's TTL caps: a week, the longest TTL
// resolvers commonly honour (RFC 8767 suggests it for stale data).
const maxCacheTTL = 7 * 24 * time.Hour

func (d *decoder) resolver(r *Resolver, body hcl.Body) {
	content, diags := body.Content(resolverSchema)
	d.add(diags)

	if a := content.Attributes["upstreams"]; a != nil {
		var ups []string
		if d.decode(a, &ups) {
			// Point at the element when the list is written out, at the
			// whole value otherwise.
			elems, diags := hcl.ExprList(a.Expr)
			if diags.HasErrors() || len(elems) != len(ups) {
				elems = nil
			}
			r.Upstreams = []netip.AddrPort{}
			for i, s := range ups {
				subject := a.Expr.Range()
				if elems != nil {
					subject = elems[i].Range()
				}
				ap, err := parseUpstream(s)
				if err != nil {
					d.errorf(subject, "Invalid upstream", "%v.", err)
					continue
				}
				r.Upstreams = append(r.Upstreams, ap)
			}
		}
	}
	if a := content.Attributes["timeout"]; a != nil {
		if t, ok := d.duration(a, "timeout", maxTimeout); ok {
			r.Timeout = t
		}
	}
	if a := content.Attributes["cache_max_ttl"]; a != nil {
		if t, ok := d.duration(a, "cache_max_ttl", maxCacheTTL); ok {
			r.CacheMaxTTL = t
		}
	}
	if a := content.Attributes["cache_max_negative_ttl"]; a != nil {
		if t, ok := d.duration(a, "cache_max_negative_ttl", maxCacheTTL); ok {
			r.CacheMaxNegativeTTL = t
		}
	}
	if a := content.Attributes["cache_size"]; a != nil {
		var n int
		if d.decode(a, &n) {
			if n < 0 {
				d.errorf(a.Expr.Range(), "Invalid cache_size",
					"cache_size must be 0 (no cache) or more; got %d.", n)
			} else {
				r.CacheSize = n
			}
		}
	}
	if a := content.Attributes["host_listen"]; a != nil {
		var s string
		if d.decode(a, &s) && s != "" { // "": off, as when absent
			ap, err := netip.ParseAddrPort(s)
			// An IPv4-mapped address is its IPv4 one: "[::ffff:0.0.0.0]"
			// is unspecified too, and a listener on it took every address.
			ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			switch {
			case err != nil:
				d.errorf(a.Expr.Range(), "Invalid host_listen",
					"%q is not an address with a port; write ip:port, such as \"127.0.0.1:5353\" or \"[::1]:5353\".", s)
			case ap.Port() == 0 || ap.Addr().IsUnspecified() || ap.Addr().Zone() != "":
				d.errorf(a.Expr.Range(), "Invalid host_listen",
					"host_listen needs one address of the host and a port other than 0 (not %q): it serves the names of every container.", s)
			default:
				r.HostListen = ap
			}
		}
	}
	if a := content.Attributes["max_inflight"]; a != nil {
		var n int
		if d.decode(a, &n) {
			if n < 1 {
				d.errorf(a.Expr.Range(), "Invalid max_inflight",
					"max_inflight must be at least 1; got %d.", n)
			} else {
				r.MaxInflight = n
			}
		}
	}
}

// parseUpstream reads "ip", "ip:port", "[ipv6]" or "[ipv6]:port"; the
// port defaults to 53. Hostnames are refused: finding the resolver's own
// upstream would need DNS, and the answer could change under it.
func parseUpstream(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("upstream %q: port 0 is not a port", s)
		}
		return ap, nil
	}
	host := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	}
	addr, err := netip.ParseAddr(host)
	if err == nil {
		return netip.AddrPortFrom(addr, 53), nil
	}
	if h, p, ok := strings.Cut(s, ":"); ok && !strings.Contains(p, ":") {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return netip.AddrPort{}, fmt.Errorf("upstream %q: %q is not a port number", s, p)
		}
		host = h
	}
	return netip.AddrPort{}, fmt.Errorf("upstream %q: %q is not an IP address; upstreams are written ip[:port], such as \"1.1.1.1\" or \"[2606:4700::1111]:53\"", s, host)
}

// duration decodes a duration attribute that must be more than 0 and at
// most limit.
func (d *decoder) duration(a *hcl.Attribute, name string, limit time.Duration) (time.Duration, bool) {
	var s string
	if !d.decode(a, &s) {
		return 0, false
	}
	t, err := time.ParseDuration(s)
	switch {
	case err != nil:
		d.errorf(a.Expr.Range(), "Invalid duration",
			"%q is not a duration; write a number with a unit, such as \"2s\" or \"500ms\".", s)
	case t <= 0 || t > limit:
		d.errorf(a.Expr.Range(), "Invalid "+name,
			"The %s must be more than 0 and at most %s; got %s.", name, limit, t)
	default:
		return t, true
	}
	return 0, false
}
