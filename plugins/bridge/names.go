package main

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"strings"
)

// Kernel object names. All of them derive from the host's IDs alone, so a
// replayed call after a driver restart finds what the first call made.
const (
	hostIfPrefix   = "sn"    // host end of an endpoint's veth pair
	peerIfPrefix   = "sp"    // sandbox end, when the name the host asks for cannot be had
	bridgePrefix   = "snbr-" // generated bridge names
	hostIfIDLen    = 11      // "sn" + 11 = 13 bytes, under IFNAMSIZ-1
	bridgeIDLen    = 8
	sandboxIfNames = "eth" // dst_prefix returned by Join
)

// hostIfName is the name of the host end of endpoint id's veth pair.
func hostIfName(epID string) string { return hostIfPrefix + shortID(epID, hostIfIDLen) }

// peerIfName is the temporary name of the sandbox end of endpoint id's veth
// pair, as created inside the sandbox and returned in Join's src_name.
func peerIfName(epID string) string { return peerIfPrefix + shortID(epID, hostIfIDLen) }

// sandboxIfName is the name of an endpoint's sandbox end: want, the name
// the host will give it, when that is a valid interface name, otherwise
// one of the driver's own.
func sandboxIfName(want, epID string) string {
	if validIfName(want) != nil {
		return peerIfName(epID)
	}
	return want
}

// bridgeName is the generated bridge name of network id.
func bridgeName(netID string) string { return bridgePrefix + shortID(netID, bridgeIDLen) }

// shortID returns the first n characters of id when id is all lower-case
// hex (the host's IDs, like Docker's, are), and otherwise the first n hex
// digits of its SHA-256, so names stay valid and distinct for any ID.
func shortID(id string, n int) string {
	if len(id) >= n && strings.Trim(id, "0123456789abcdef") == "" {
		return id[:n]
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:n]
}

// tagID returns id for use in nftables chain names and rule comments,
// which the kernel limits in length: ids up to 64 bytes of safe characters
// are used as they are, others are replaced by their SHA-256.
func tagID(id string) string {
	if len(id) <= 64 && !strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' }) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// macFor returns the MAC of an endpoint that the host left without one:
// 02:42 followed by its IPv4 address (as Docker does), or, for an
// IPv6-only endpoint, by four bytes of the SHA-256 of its ID. The address
// is locally administered and unicast.
func macFor(epID string, ip4 net.IP) net.HardwareAddr {
	mac := net.HardwareAddr{0x02, 0x42, 0, 0, 0, 0}
	if v4 := ip4.To4(); v4 != nil {
		copy(mac[2:], v4)
		return mac
	}
	sum := sha256.Sum256([]byte(epID))
	copy(mac[2:], sum[:4])
	return mac
}

// bridgeMAC is the fixed MAC given to a network's bridge. Without one the
// bridge takes the lowest MAC of its ports and changes it as containers come
// and go, which leaves stale gateway entries in the containers' ARP caches.
func bridgeMAC(netID string) net.HardwareAddr {
	sum := sha256.Sum256([]byte("sandnet-bridge:" + netID))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}
