package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// flushConntrack deletes, through h, the conntrack entries of the address
// families fams (4, 6) that match selects.
//
// Listing conntrack walks the kernel's whole hash table, which all
// namespaces share (262144 buckets by default: about 5 ms per family,
// however few entries there are), so it is skipped when the host's
// namespace tracks no connection at all, and done only for the families
// asked for. The driver walks the table from its reaper only, which
// batches the walks.
func flushConntrack(h *netlink.Handle, fams []int, match func(*netlink.ConntrackFlow) bool) error {
	if b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return nil
	}
	for _, f := range []struct {
		fam  int
		inet netlink.InetFamily
	}{{4, unix.AF_INET}, {6, unix.AF_INET6}} {
		if !slices.Contains(fams, f.fam) {
			continue
		}
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, f.inet, ctFilter(match)); err != nil {
			return fmt.Errorf("deleting conntrack entries: %w", err)
		}
	}
	return nil
}

type ctFilter func(*netlink.ConntrackFlow) bool

func (f ctFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool { return f(flow) }

// familiesOf returns the address families (4, 6) of addrs.
func familiesOf(addrs ...netip.Addr) []int {
	var fams []int
	for _, a := range addrs {
		if a.IsValid() && !slices.Contains(fams, family(a)) {
			fams = append(fams, family(a))
		}
	}
	return fams
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
