package config

import (
	"net/netip"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

var ipamSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "default_pools"}}}

// poolKeys are the attributes of one default_pools element.
var poolKeys = []string{"base", "size"}

// Largest subnet prefix a pool may hand out: each subnet must hold at
// least a gateway and one endpoint besides the network and broadcast
// addresses, which leaves 4 addresses.
const (
	maxSize4 = 30
	maxSize6 = 126
)

func (d *decoder) ipam(ip *IPAM, body hcl.Body) {
	content, diags := body.Content(ipamSchema)
	d.add(diags)
	a := content.Attributes["default_pools"]
	if a == nil {
		return
	}
	if v, diags := a.Expr.Value(nil); diags.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
		d.add(diags)
		return
	}
	elems, diags := hcl.ExprList(a.Expr)
	if diags.HasErrors() {
		d.errorf(a.Expr.Range(), "Invalid default_pools",
			"default_pools must be a list of pools such as [{ base = \"172.17.0.0/16\", size = 24 }].")
		return
	}
	if len(elems) == 0 {
		d.errorf(a.Expr.Range(), "Invalid default_pools",
			"default_pools is empty; remove it to use the built-in pools (172.17.0.0/16 to 172.31.0.0/16, then 192.168.0.0/16 in /20s).")
		return
	}
	var pools []Pool
	var where []hcl.Range
	ok := true
	for _, e := range elems {
		p, baseRange, good := d.pool(e)
		if !good {
			ok = false
			continue
		}
		for i, q := range pools {
			if q.Base.Overlaps(p.Base) {
				d.errorf(baseRange, "Overlapping pools",
					"%s overlaps the pool %s at %s; every address must belong to one pool.",
					p.Base, q.Base, pos(where[i]))
				good = false
				break
			}
		}
		if good {
			pools = append(pools, p)
			where = append(where, baseRange)
		} else {
			ok = false
		}
	}
	if ok {
		ip.DefaultPools = pools
	}
}

// pool decodes one `{ base = "…", size = n }` and returns it with the
// range of its base.
func (d *decoder) pool(e hcl.Expression) (Pool, hcl.Range, bool) {
	pairs, diags := hcl.ExprMap(e)
	if diags.HasErrors() {
		d.errorf(e.Range(), "Invalid pool", "A pool is an object such as { base = \"172.17.0.0/16\", size = 24 }.")
		return Pool{}, hcl.Range{}, false
	}
	var base, size *hcl.Attribute
	ok := true
	for _, kv := range pairs {
		kval, diags := kv.Key.Value(nil)
		var key string
		if diags.HasErrors() || kval.IsNull() || kval.Type() != cty.String {
			d.add(diags)
			d.errorf(kv.Key.Range(), "Invalid pool attribute", "A pool attribute name must be base or size.")
			ok = false
			continue
		}
		key = kval.AsString()
		attr := &hcl.Attribute{Name: key, Expr: kv.Value, Range: hcl.RangeBetween(kv.Key.Range(), kv.Value.Range()), NameRange: kv.Key.Range()}
		var slot **hcl.Attribute
		switch key {
		case "base":
			slot = &base
		case "size":
			slot = &size
		default:
			d.errorf(kv.Key.Range(), "Unsupported argument",
				"An argument named %q is not expected in a pool; a pool has base and size.%s", key, didYouMean(key, poolKeys))
			ok = false
			continue
		}
		if *slot != nil {
			d.errorf(kv.Key.Range(), "Duplicate argument", "The pool already sets %q at %s.", key, pos((*slot).NameRange))
			ok = false
			continue
		}
		*slot = attr
	}
	if !ok {
		return Pool{}, hcl.Range{}, false
	}
	if base == nil || size == nil {
		d.errorf(e.Range(), "Incomplete pool", "A pool needs both base and size, such as { base = \"172.17.0.0/16\", size = 24 }.")
		return Pool{}, hcl.Range{}, false
	}

	// decode leaves a null alone without complaint; here null is missing.
	decode := func(a *hcl.Attribute, dst any) bool {
		n := len(d.diags)
		if d.decode(a, dst) {
			return true
		}
		if v, _ := a.Expr.Value(nil); len(d.diags) == n && v.IsNull() {
			d.errorf(a.Expr.Range(), "Incomplete pool", "The pool's %s must not be null.", a.Name)
		}
		return false
	}
	var p Pool
	var s string
	if !decode(base, &s) {
		ok = false
	} else if pfx, err := netip.ParsePrefix(s); err != nil {
		d.errorf(base.Expr.Range(), "Invalid pool base", "%q is not a CIDR prefix such as \"172.17.0.0/16\".", s)
		ok = false
	} else if pfx != pfx.Masked() {
		d.errorf(base.Expr.Range(), "Invalid pool base", "%q has host bits set. Did you mean %q?", s, pfx.Masked().String())
		ok = false
	} else if pfx.Addr().Is4In6() {
		d.errorf(base.Expr.Range(), "Invalid pool base", "%q is an IPv4-mapped IPv6 prefix. Give an IPv4 pool as IPv4 (\"10.0.0.0/8\").", s)
		ok = false
	} else if res, what := ReservedOverlap(pfx); res.IsValid() {
		d.errorf(base.Expr.Range(), "Invalid pool base", "%s overlaps %s, %s: no container address can be there.", pfx, res, what)
		ok = false
	} else {
		p.Base = pfx
	}
	if !decode(size, &p.Size) {
		ok = false
	} else if ok {
		maxSize := maxSize4
		if p.Base.Addr().Is6() {
			maxSize = maxSize6
		}
		if p.Size < p.Base.Bits() || p.Size > maxSize {
			d.errorf(size.Expr.Range(), "Invalid pool size",
				"The size of subnets carved from %s must be between %d and %d; got %d.", p.Base, p.Base.Bits(), maxSize, p.Size)
			ok = false
		}
	}
	return p, base.Expr.Range(), ok
}

// reserved are the prefixes no network's subnet, and no default pool,
// may overlap: a bridge's gateway there would take the host's loopback,
// or an address no host routes to a link. (240.0.0.0/4 is not among
// them: some clusters use it as private space.)
var reserved = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network" (RFC 1122)`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("255.255.255.255/32"), "the limited broadcast address"},
	{netip.MustParsePrefix("::/127"), "the unspecified and loopback addresses"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// ReservedOverlap returns the reserved prefix sub overlaps, and what it
// is, or an invalid prefix.
func ReservedOverlap(sub netip.Prefix) (netip.Prefix, string) {
	for _, r := range reserved {
		if sub.Overlaps(r.prefix) {
			return r.prefix, r.what
		}
	}
	return netip.Prefix{}, ""
}
