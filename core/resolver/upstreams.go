package resolver

import (
	"net/netip"

	"github.com/sandnet/sandnet/core/sandbox"
)

// resolvedResolvConf lists the servers systemd-resolved itself uses.
const resolvedResolvConf = "/run/systemd/resolve/resolv.conf"

// resolvedStub is the address of systemd-resolved's stub listener.
var resolvedStub = netip.AddrFrom4([4]byte{127, 0, 0, 53})

// glibcDefault is the server glibc asks when resolv.conf names none.
var glibcDefault = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// hostUpstreams returns the nameservers of the host's resolv.conf at path,
// on port 53, in order.
//
// When the only nameserver is systemd-resolved's stub (127.0.0.53), the
// servers behind it are read from resolved (its own list at
// /run/systemd/resolve/resolv.conf), as Docker does; the stub is kept if
// that list is missing or empty. Since queries leave from the agent's
// namespace, any other loopback server (dnsmasq on 127.0.0.1, say) is
// asked as is. A resolv.conf without nameservers, or no resolv.conf at
// all, means 127.0.0.1, as for glibc on the host.
func hostUpstreams(path, resolved string) ([]netip.AddrPort, error) {
	rc, err := sandbox.ReadResolvConf(path)
	if err != nil {
		return nil, err
	}
	servers := rc.Nameservers
	if len(servers) == 1 && servers[0] == resolvedStub {
		if rs, err := sandbox.ReadResolvConf(resolved); err == nil && len(rs.Nameservers) > 0 {
			servers = rs.Nameservers
		}
	}
	if len(servers) == 0 {
		servers = []netip.Addr{glibcDefault}
	}
	aps := make([]netip.AddrPort, len(servers))
	for i, a := range servers {
		aps[i] = netip.AddrPortFrom(a, 53)
	}
	return aps, nil
}
