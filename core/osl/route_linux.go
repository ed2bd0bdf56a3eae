package osl

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddRoute adds or replaces the route to dst in the namespace's main table,
// via gateway gw on link dev. With gw nil the route is direct (scope link)
// and dev is required; with gw set dev may be empty and the kernel picks the
// link that reaches gw.
//
// Equivalent to: `ip route replace DST [via GW] [dev DEV]`.
func (n *Namespace) AddRoute(dst *net.IPNet, gw net.IP, dev string) error {
	if dst == nil || dst.IP == nil || dst.Mask == nil {
		return fmt.Errorf("adding route in %s: destination is missing: %w", n.path, ErrInvalid)
	}
	if err := validateAddresses([]*net.IPNet{dst}); err != nil {
		return fmt.Errorf("adding route to %s in %s: %w", dst, n.path, err)
	}
	if gw != nil && family(gw) != family(dst.IP) {
		return fmt.Errorf("adding route to %s in %s: gateway %s is another address family: %w", dst, n.path, gw, ErrInvalid)
	}
	if gw == nil && dev == "" {
		return fmt.Errorf("adding route to %s in %s: a route without a gateway needs a device: %w", dst, n.path, ErrInvalid)
	}
	return n.withHandle(func(h *netlink.Handle) error {
		r, err := route(h, dst, gw, dev)
		if err != nil {
			return fmt.Errorf("adding route to %s in %s: %w", dst, n.path, err)
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("adding route to %s in %s: %w", dst, n.path, err)
		}
		return nil
	})
}

// RemoveRoute deletes the route to dst via gw on dev (either may be empty
// to match any). A route that is already gone is not an error.
//
// Equivalent to: `ip route del DST [via GW] [dev DEV]`.
func (n *Namespace) RemoveRoute(dst *net.IPNet, gw net.IP, dev string) error {
	if dst == nil || dst.IP == nil || dst.Mask == nil {
		return fmt.Errorf("removing route in %s: destination is missing: %w", n.path, ErrInvalid)
	}
	return n.withHandle(func(h *netlink.Handle) error {
		r, err := route(h, dst, gw, dev)
		if isLinkNotFound(err) {
			return nil // the link is gone, and its routes with it
		}
		if err != nil {
			return fmt.Errorf("removing route to %s in %s: %w", dst, n.path, err)
		}
		r.Scope = netlink.SCOPE_NOWHERE // match routes of any scope
		if err := h.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("removing route to %s in %s: %w", dst, n.path, err)
		}
		return nil
	})
}

// SetDefaultGateway makes gw, via link dev, the default route of gw's
// address family, replacing any previous one. dev may be empty unless gw is
// an IPv6 link-local address.
//
// Equivalent to: `ip [-6] route replace default via GW [dev DEV]`.
func (n *Namespace) SetDefaultGateway(gw net.IP, dev string) error {
	if gw == nil {
		return fmt.Errorf("setting default gateway in %s: gateway is missing: %w", n.path, ErrInvalid)
	}
	bits := 8 * net.IPv6len
	if family(gw) == netlink.FAMILY_V4 {
		bits = 8 * net.IPv4len
	}
	dst := &net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}
	return n.withHandle(func(h *netlink.Handle) error {
		r, err := route(h, dst, gw, dev)
		if err != nil {
			return fmt.Errorf("setting default gateway %s in %s: %w", gw, n.path, err)
		}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("setting default gateway %s in %s: %w", gw, n.path, err)
		}
		return nil
	})
}

// UnsetDefaultGateway deletes every default route of family
// (netlink.FAMILY_V4, netlink.FAMILY_V6 or netlink.FAMILY_ALL) from the
// main table. Having none is not an error.
//
// Equivalent to: `ip [-6] route del default` until none is left.
func (n *Namespace) UnsetDefaultGateway(family int) error {
	if family != netlink.FAMILY_V4 && family != netlink.FAMILY_V6 && family != netlink.FAMILY_ALL {
		return fmt.Errorf("unsetting default gateway in %s: unknown address family %d: %w", n.path, family, ErrInvalid)
	}
	return n.withHandle(func(h *netlink.Handle) error {
		routes, err := routeList(h, family)
		if err != nil {
			return fmt.Errorf("unsetting default gateway in %s: %w", n.path, err)
		}
		for _, r := range routes {
			if !isDefault(r) {
				continue
			}
			if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("unsetting default gateway %s in %s: %w", r.Gw, n.path, err)
			}
		}
		return nil
	})
}

// SetSysctl writes value to the network sysctl name inside the namespace.
// name is dotted ("net.ipv4.ip_forward") or, when a component holds a dot,
// slashed ("net/ipv6/conf/eth0.10/disable_ipv6"); only net.* is accepted,
// because only those are per namespace.
//
// Equivalent to: `ip netns exec NAME sysctl -w NAME=VALUE`.
func (n *Namespace) SetSysctl(name, value string) error {
	path, err := sysctlPath(name)
	if err != nil {
		return fmt.Errorf("setting sysctl in %s: %w", n.path, err)
	}
	// /proc/sys/net shows the namespace of the task that opens it, so the
	// file must be opened from a thread inside the namespace.
	err = n.Do(func() error {
		return os.WriteFile(path, []byte(value), 0)
	})
	if err != nil {
		return fmt.Errorf("setting sysctl %s=%s in %s: %w", name, value, n.path, err)
	}
	return nil
}

// Sysctl reads the network sysctl name inside the namespace, without the
// trailing newline. name is as for SetSysctl.
//
// Equivalent to: `ip netns exec NAME sysctl -n NAME`.
func (n *Namespace) Sysctl(name string) (string, error) {
	path, err := sysctlPath(name)
	if err != nil {
		return "", fmt.Errorf("reading sysctl in %s: %w", n.path, err)
	}
	var b []byte
	err = n.Do(func() error {
		var err error
		b, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("reading sysctl %s in %s: %w", name, n.path, err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// route builds a main-table route; dev is resolved to its index.
func route(h *netlink.Handle, dst *net.IPNet, gw net.IP, dev string) (*netlink.Route, error) {
	r := &netlink.Route{Dst: dst, Gw: gw, Table: unix.RT_TABLE_MAIN}
	if gw == nil {
		r.Scope = netlink.SCOPE_LINK
	}
	if dev != "" {
		link, err := h.LinkByName(dev)
		if err != nil {
			return nil, err
		}
		r.LinkIndex = link.Attrs().Index
	}
	return r, nil
}

func routeList(h *netlink.Handle, family int) ([]netlink.Route, error) {
	var err error
	for range dumpRetries {
		var routes []netlink.Route
		if routes, err = h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE); err == nil {
			return routes, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, err
		}
	}
	return nil, err
}

func isDefault(r netlink.Route) bool {
	if r.Dst == nil {
		return true
	}
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

func family(ip net.IP) int {
	if ip.To4() != nil {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}
