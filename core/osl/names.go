package osl

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// maxIfNameLen is IFNAMSIZ-1: Linux interface names are at most 15 bytes.
const maxIfNameLen = 15

// validateIfName applies the kernel's dev_valid_name rules, so a bad name is
// rejected with a clear error before any netlink call.
func validateIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("interface name is empty: %w", ErrInvalid)
	case len(name) > maxIfNameLen:
		return fmt.Errorf("interface name %q is longer than %d bytes: %w", name, maxIfNameLen, ErrInvalid)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is reserved: %w", name, ErrInvalid)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f' || r == 0 {
			return fmt.Errorf("interface name %q contains %q: %w", name, r, ErrInvalid)
		}
	}
	return nil
}

// ValidLinkName reports, as an error wrapping ErrInvalid, why name cannot
// be a Linux interface name (the kernel's dev_valid_name rules), or nil.
func ValidLinkName(name string) error { return validateIfName(name) }

// nextName returns prefix followed by the smallest non-negative number such
// that the name is not in used.
func nextName(prefix string, used []string) (string, error) {
	if err := validateIfName(prefix + "0"); err != nil {
		return "", fmt.Errorf("interface prefix %q: %w", prefix, err)
	}
	taken := make(map[int]bool, len(used))
	for _, name := range used {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
			continue
		}
		if i, err := strconv.Atoi(rest); err == nil && i >= 0 {
			taken[i] = true
		}
	}
	for i := 0; ; i++ {
		if taken[i] {
			continue
		}
		name := prefix + strconv.Itoa(i)
		if len(name) > maxIfNameLen {
			return "", fmt.Errorf("interface prefix %q: no free name of at most %d bytes: %w", prefix, maxIfNameLen, ErrInvalid)
		}
		return name, nil
	}
}

// sysctlPath maps a network sysctl to its file under /proc/sys. name is
// either dotted ("net.ipv4.ip_forward") or slashed
// ("net/ipv4/conf/eth0.100/forwarding", needed when an interface name holds
// a dot). Only net.* is accepted: other sysctls are not per namespace, and
// writing them from inside a sandbox would change the whole machine.
func sysctlPath(name string) (string, error) {
	rel := name
	if !strings.Contains(name, "/") {
		rel = strings.ReplaceAll(name, ".", "/")
	}
	parts := strings.Split(rel, "/")
	if len(parts) < 2 || parts[0] != "net" {
		return "", fmt.Errorf("sysctl %q: only net.* sysctls are per network namespace: %w", name, ErrInvalid)
	}
	for _, p := range parts[1:] {
		if p == "" || p == "." || p == ".." {
			return "", fmt.Errorf("sysctl %q: malformed: %w", name, ErrInvalid)
		}
	}
	return "/proc/sys/" + rel, nil
}

// validateAddresses rejects addresses the kernel would reject or misread: a
// nil IP or mask, or a mask whose length does not fit the address family.
func validateAddresses(addrs []*net.IPNet) error {
	for i, a := range addrs {
		if a == nil || a.IP == nil || a.Mask == nil {
			return fmt.Errorf("address %d is incomplete: %w", i, ErrInvalid)
		}
		ones, bits := a.Mask.Size()
		if bits == 0 {
			return fmt.Errorf("address %s: non-canonical mask %s: %w", a.IP, a.Mask, ErrInvalid)
		}
		want := 8 * net.IPv6len
		if a.IP.To4() != nil {
			want = 8 * net.IPv4len
		}
		if bits != want {
			return fmt.Errorf("address %s/%d: mask is %d bits, address family wants %d: %w", a.IP, ones, bits, want, ErrInvalid)
		}
	}
	return nil
}
