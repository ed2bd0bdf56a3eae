package main

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Config is the `config` block of `driver "overlay"`. Attributes the
// operator leaves out keep the values of defaultConfig.
type Config struct {
	VXLANPort int `hcl:"vxlan_port,optional" doc:"UDP port of the VXLAN tunnels between hosts, the same on every host (default 4789, the IANA port)"`
	MTU       int `hcl:"mtu,optional" doc:"MTU of the networks' bridges, tunnels and container interfaces, unless a network sets com.sandnet.overlay.mtu (default 0: the MTU of the interface holding the advertise address, less the 50 bytes of VXLAN over IPv4, 70 over IPv6)"`
}

// DefaultVXLANPort is the IANA-assigned VXLAN port, Linux's and Docker's
// default.
const DefaultVXLANPort = 4789

func defaultConfig() Config { return Config{VXLANPort: DefaultVXLANPort} }

// parse decodes the configuration the host sent over the defaults and
// checks it.
func parse(raw []byte) (Config, error) {
	c := defaultConfig()
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if c.VXLANPort < 1 || c.VXLANPort > 65535 {
		return Config{}, fmt.Errorf("config vxlan_port: %d is not a UDP port (1-65535): %w", c.VXLANPort, sdk.ErrInvalid)
	}
	if c.MTU != 0 {
		if err := validMTU(c.MTU); err != nil {
			return Config{}, fmt.Errorf("config mtu: %w", err)
		}
	}
	return c, nil
}

// Network options (`sandnet network create -o KEY=VALUE`). Every key under
// optionPrefix must be one of these; other keys belong to someone else and
// are ignored.
const (
	optionPrefix = "com.sandnet.overlay."
	optVNI       = optionPrefix + "vni"
	optMTU       = optionPrefix + "mtu"
)

var knownOptions = []string{optVNI, optMTU}

// maxVNI is the largest VXLAN network identifier (24 bits).
const maxVNI = 1<<24 - 1

// network is a network as the driver programs it on this host, derived
// from the host's pb.Network and the driver's Config.
type network struct {
	id     string
	vni    int
	port   int
	vtep   netip.Addr // this host's underlay address
	mtu    int        // 0: derived from the underlay
	bridge string
	vxlan  string
	v4, v6 []netip.Prefix
}

// parseNetwork checks a network the host asks for and derives its kernel
// configuration.
func parseNetwork(c Config, pn *pb.Network) (*network, error) {
	if pn.GetId() == "" {
		return nil, fmt.Errorf("network without an id: %w", sdk.ErrInvalid)
	}
	n := &network{id: pn.GetId(), port: c.VXLANPort, mtu: c.MTU, bridge: bridgeName(pn.GetId()), vxlan: vxlanName(pn.GetId())}
	opts := pn.GetOptions()
	var unknown []string
	for k := range opts {
		if strings.HasPrefix(k, optionPrefix) && !slices.Contains(knownOptions, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("network %s: unknown option %s (known: %s): %w",
			n.id, strings.Join(unknown, ", "), strings.Join(knownOptions, ", "), sdk.ErrInvalid)
	}
	if a := pn.GetAdvertiseAddr(); a == "" {
		return nil, fmt.Errorf("network %s: this host has no advertise address (set advertise_addr in the agent's config): %w", n.id, sdk.ErrInvalid)
	} else if vtep, err := netip.ParseAddr(a); err != nil {
		return nil, fmt.Errorf("network %s: advertise address %q is not an IP address: %w", n.id, a, sdk.ErrInvalid)
	} else {
		n.vtep = vtep.Unmap()
	}
	n.vni = int(pn.GetVni())
	if v, ok := opts[optVNI]; ok {
		vni, err := strconv.Atoi(v)
		if err != nil || vni < 1 || vni > maxVNI {
			return nil, fmt.Errorf("network %s: option %s=%q: want a number from 1 to %d: %w", n.id, optVNI, v, maxVNI, sdk.ErrInvalid)
		}
		if n.vni != 0 && n.vni != vni {
			return nil, fmt.Errorf("network %s: option %s=%d disagrees with the network's VNI %d: %w", n.id, optVNI, vni, n.vni, sdk.ErrInvalid)
		}
		n.vni = vni
	}
	if n.vni < 1 || n.vni > maxVNI {
		return nil, fmt.Errorf("network %s: no VNI (1-%d) in the network record or option %s: %w", n.id, maxVNI, optVNI, sdk.ErrInvalid)
	}
	if v, ok := opts[optMTU]; ok {
		mtu, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("network %s: option %s=%q: not a number: %w", n.id, optMTU, v, sdk.ErrInvalid)
		}
		if err := validMTU(mtu); err != nil {
			return nil, fmt.Errorf("network %s: option %s: %w", n.id, optMTU, err)
		}
		n.mtu = mtu
	}
	for _, fam := range []struct {
		pools []*pb.IPAMData
		dst   *[]netip.Prefix
		v4    bool
	}{{pn.GetIpv4(), &n.v4, true}, {pn.GetIpv6(), &n.v6, false}} {
		for _, p := range fam.pools {
			pool, err := netip.ParsePrefix(p.GetPool())
			if err != nil || pool.Addr().Is4() != fam.v4 {
				return nil, fmt.Errorf("network %s: pool %q is not an IPv%d CIDR: %w", n.id, p.GetPool(), map[bool]int{true: 4, false: 6}[fam.v4], sdk.ErrInvalid)
			}
			*fam.dst = append(*fam.dst, pool.Masked())
		}
	}
	return n, nil
}

func validMTU(mtu int) error {
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("MTU %d out of range 68-65535: %w", mtu, sdk.ErrInvalid)
	}
	return nil
}

// validIfName checks a Linux interface name: 1 to 15 bytes, no slash, colon
// or white space, not "." or "..".
func validIfName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r > '~' }) {
		return fmt.Errorf("%q is not a valid interface name: %w", name, sdk.ErrInvalid)
	}
	return nil
}
