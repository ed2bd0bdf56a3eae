package sandbox

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/sandnet/sandnet/sdk"
)

// dnsLabel is one label of a DNS name as sandnet accepts it: letters,
// digits, '-' and '_' (Docker's service names have underscores), neither
// starting nor ending with '-', 1 to 63 characters (RFC 1123).
var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$`)

// resolvOption is the grammar of a resolv.conf option: a name, and for
// some a numeric value (ndots:2, timeout:1, rotate, edns0, use-vc).
var resolvOption = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}(:[0-9]{1,5})?$`)

// CheckDNSName checks a DNS name (dot-separated labels, 253 characters in
// all, a trailing dot allowed with trailingDot) and returns an error
// naming field, wrapping sdk.ErrInvalid.
func CheckDNSName(field, s string, trailingDot bool) error {
	name := s
	if trailingDot {
		name = strings.TrimSuffix(s, ".")
	}
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%s: %q is not a DNS name (1 to 253 characters): %w", field, clip(s), sdk.ErrInvalid)
	}
	for l := range strings.SplitSeq(name, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("%s: %q is not a DNS name (labels of letters, digits, - and _, 1 to 63 characters each, separated by dots): %w", field, clip(s), sdk.ErrInvalid)
		}
	}
	return nil
}

// Validate checks every option that reaches the sandbox's resolv.conf or
// hosts file: hostname, domain name and extra host names are DNS names,
// search domains too (a trailing dot allowed), options follow the
// resolv.conf grammar, addresses are set. Errors name the field as the
// API does (dns_search[1]) and wrap sdk.ErrInvalid.
func (o Options) Validate() error {
	if o.Hostname != "" {
		if err := CheckDNSName("hostname", o.Hostname, false); err != nil {
			return err
		}
	}
	if o.DomainName != "" {
		if err := CheckDNSName("domain_name", o.DomainName, true); err != nil {
			return err
		}
	}
	for i, a := range o.DNS {
		if err := CheckDNSServer(a); err != nil {
			return fmt.Errorf("dns[%d]: %w", i, err)
		}
	}
	for i, d := range o.DNSSearch {
		if err := CheckDNSName(fmt.Sprintf("dns_search[%d]", i), d, true); err != nil {
			return err
		}
	}
	for i, opt := range o.DNSOptions {
		if !resolvOption.MatchString(opt) {
			return fmt.Errorf("dns_options[%d]: %q is not a resolv.conf option (NAME or NAME:NUMBER, such as ndots:2 or rotate): %w", i, clip(opt), sdk.ErrInvalid)
		}
	}
	for i, h := range o.ExtraHosts {
		if err := CheckDNSName(fmt.Sprintf("extra_hosts[%d].name", i), h.Name, false); err != nil {
			return err
		}
		switch {
		case h.HostGateway && h.IP.IsValid():
			return fmt.Errorf("extra_hosts[%d]: give ip or host_gateway, not both: %w", i, sdk.ErrInvalid)
		case !h.HostGateway && !h.IP.IsValid():
			return fmt.Errorf("extra_hosts[%d].ip: must be an IP address (or set host_gateway): %w", i, sdk.ErrInvalid)
		}
	}
	return nil
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// checkTokens is the writers' second line of defence: no value written
// into a resolution file may carry a control character or white space,
// which would end its line or split its field.
func checkTokens(file string, tokens ...[]string) error {
	for _, ts := range tokens {
		for _, t := range ts {
			if t == "" || strings.ContainsFunc(t, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				return fmt.Errorf("refusing to write %q into %s: empty or holds a control character or space: %w", clip(t), file, sdk.ErrInvalid)
			}
		}
	}
	return nil
}

// CheckDNSServer refuses an address no DNS server can have: none, a
// zoned one (resolv.conf and the embedded resolver's upstreams take
// none), the unspecified address, a multicast or the limited broadcast
// address. A sandbox's and a network's servers are checked alike.
func CheckDNSServer(a netip.Addr) error {
	u := a.Unmap()
	if !a.IsValid() || a.Zone() != "" || u.IsUnspecified() || u.IsMulticast() || u == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return fmt.Errorf("%s is not the IP address of a DNS server: %w", fmtAddr(a), sdk.ErrInvalid)
	}
	return nil
}

// fmtAddr is a for messages, quoted; the zero Addr is "none".
func fmtAddr(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return fmt.Sprintf("%q", a.String())
}
