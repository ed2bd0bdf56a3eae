package main

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Config is the `config` block of `driver "bridge"`. Attributes the
// operator leaves out keep the values of defaultConfig.
type Config struct {
	DefaultBridge      string `hcl:"default_bridge,optional" doc:"name of the Linux bridge of the network created with the option com.sandnet.bridge.default=true (default sandnet0)"`
	MTU                int    `hcl:"mtu,optional" doc:"MTU of bridges and container interfaces, unless a network sets com.sandnet.bridge.mtu (default 1500)"`
	EnableIPMasquerade bool   `hcl:"enable_ip_masquerade,optional" doc:"masquerade traffic leaving non-internal networks behind the host's address, unless a network sets com.sandnet.bridge.enable_ip_masquerade (default true)"`
	EnableIPForwarding bool   `hcl:"enable_ip_forwarding,optional" doc:"set net.ipv4.ip_forward=1 (and net.ipv6.conf.all.forwarding=1 for IPv6 networks) when a non-internal network is created (default true)"`
}

func defaultConfig() Config {
	return Config{DefaultBridge: "sandnet0", MTU: 1500, EnableIPMasquerade: true, EnableIPForwarding: true}
}

// parse decodes the configuration the host sent over the defaults and
// checks it.
func parse(raw []byte) (Config, error) {
	c := defaultConfig()
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if err := validIfName(c.DefaultBridge); err != nil {
		return Config{}, fmt.Errorf("config default_bridge: %w", err)
	}
	if err := validMTU(c.MTU); err != nil {
		return Config{}, fmt.Errorf("config mtu: %w", err)
	}
	return c, nil
}

// Network options (`sandnet network create -o KEY=VALUE`). The driver
// declares them in its capabilities, so the host refuses any other key
// before the driver sees it; the driver still checks the keys under
// optionPrefix itself.
const (
	optionPrefix  = "com.sandnet.bridge."
	optBridgeName = optionPrefix + "name"
	optDefault    = optionPrefix + "default"
	optMTU        = optionPrefix + "mtu"
	optEnableICC  = optionPrefix + "enable_icc"
	optEnableMasq = optionPrefix + "enable_ip_masquerade"
	optMcastSnoop = optionPrefix + "multicast_snooping"
	optHostBind   = optionPrefix + "host_binding_ipv4"
)

// dockerOptions are Docker's names for the same options, so that a
// `docker network create -o` line or a compose file's driver_opts work
// unchanged: each stands for the option it maps to.
var dockerOptions = map[string]string{
	"com.docker.network.bridge.name":                 optBridgeName,
	"com.docker.network.bridge.default_bridge":       optDefault,
	"com.docker.network.driver.mtu":                  optMTU,
	"com.docker.network.bridge.enable_icc":           optEnableICC,
	"com.docker.network.bridge.enable_ip_masquerade": optEnableMasq,
	"com.docker.network.bridge.host_binding_ipv4":    optHostBind,
}

var knownOptions = []string{optBridgeName, optDefault, optMTU, optEnableICC, optEnableMasq, optMcastSnoop, optHostBind,
	"com.docker.network.bridge.name", "com.docker.network.bridge.default_bridge", "com.docker.network.driver.mtu",
	"com.docker.network.bridge.enable_icc", "com.docker.network.bridge.enable_ip_masquerade",
	"com.docker.network.bridge.host_binding_ipv4"}

// withDockerNames returns opts with each of Docker's option names given
// under sandnet's, and as, which gives the name an option was given
// under (for errors); both names with different values are an error.
func withDockerNames(netID string, opts map[string]string) (out map[string]string, as func(string) string, err error) {
	given := map[string]string{}
	out = opts
	for docker, ours := range dockerOptions {
		v, ok := opts[docker]
		if !ok {
			continue
		}
		if w, both := opts[ours]; both && w != v {
			return nil, nil, fmt.Errorf("network %s: options %s=%q and %s=%q disagree (the first is Docker's name for the second): %w", netID, docker, v, ours, w, sdk.ErrInvalid)
		}
		if len(given) == 0 {
			out = maps.Clone(opts) // the request's map stays as given
		}
		out[ours], given[ours] = v, docker
	}
	return out, func(key string) string {
		if d, ok := given[key]; ok {
			return d
		}
		return key
	}, nil
}

// network is a network as the driver programs it, derived from the host's
// pb.Network and the driver's Config.
type network struct {
	id       string
	bridge   string
	mtu      int
	internal bool
	icc      bool
	masq     bool
	// snoop turns the bridge's multicast snooping on. Off (the default),
	// the bridge floods multicast like a plain switch; on, every port
	// that comes up makes the kernel restart multicast on every port of
	// the bridge, a cost that grows with the number of containers.
	snoop bool
	// hostBind is the host address a port binding that names none is
	// published on (host_binding_ipv4); zero: every address.
	hostBind netip.Addr
	v4, v6   []subnet
}

// subnet is one address pool of a network and its gateway, which lives on
// the bridge.
type subnet struct {
	pool    *net.IPNet
	gateway *net.IPNet // gateway address with the pool's prefix length
}

// subnets returns the IPv4 then the IPv6 subnets.
func (n *network) subnets() []subnet { return append(slices.Clip(n.v4), n.v6...) }

// gateway returns the first gateway address of the family (4 or 6), or nil.
func (n *network) gateway(family int) net.IP {
	s := n.v4
	if family == 6 {
		s = n.v6
	}
	if len(s) == 0 {
		return nil
	}
	return s[0].gateway.IP
}

// parseNetwork checks a network the host asks for and derives its kernel
// configuration.
func parseNetwork(c Config, pn *pb.Network) (*network, error) {
	if pn == nil || pn.GetId() == "" {
		return nil, fmt.Errorf("network without an id: %w", sdk.ErrInvalid)
	}
	n := &network{
		id:       pn.GetId(),
		bridge:   bridgeName(pn.GetId()),
		mtu:      c.MTU,
		internal: pn.GetInternal(),
		icc:      true,
		masq:     c.EnableIPMasquerade,
	}
	opts, as, err := withDockerNames(n.id, pn.GetOptions())
	if err != nil {
		return nil, err
	}
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
	if err := n.setOptions(c, opts, as); err != nil {
		return nil, err
	}
	if n.v4, err = parsePools(n.id, pn.GetIpv4(), 4); err != nil {
		return nil, err
	}
	if n.v6, err = parsePools(n.id, pn.GetIpv6(), 6); err != nil {
		return nil, err
	}
	if len(n.v6) > 0 && n.mtu < 1280 {
		return nil, fmt.Errorf("network %s: MTU %d is below IPv6's minimum 1280: %w", n.id, n.mtu, sdk.ErrInvalid)
	}
	return n, nil
}

// setOptions sets what the network's options ask (opts, under sandnet's
// names; as gives the name each was given under) over the config's
// defaults: bridge name, port flags, MTU, default host address.
func (n *network) setOptions(c Config, opts map[string]string, as func(string) string) error {
	boolOpt := func(key string, dst *bool) error {
		v, ok := opts[key]
		if !ok {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("network %s: option %s=%q: want true or false: %w", n.id, as(key), v, sdk.ErrInvalid)
		}
		*dst = b
		return nil
	}
	var isDefault bool
	for _, o := range []struct {
		key string
		dst *bool
	}{{optDefault, &isDefault}, {optEnableICC, &n.icc}, {optEnableMasq, &n.masq}, {optMcastSnoop, &n.snoop}} {
		if err := boolOpt(o.key, o.dst); err != nil {
			return err
		}
	}
	if isDefault {
		n.bridge = c.DefaultBridge
	}
	if v, ok := opts[optBridgeName]; ok {
		if err := validIfName(v); err != nil {
			return fmt.Errorf("network %s: option %s: %w", n.id, as(optBridgeName), err)
		}
		n.bridge = v
	}
	if v, ok := opts[optMTU]; ok {
		mtu, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("network %s: option %s=%q: not a number: %w", n.id, as(optMTU), v, sdk.ErrInvalid)
		}
		if err := validMTU(mtu); err != nil {
			return fmt.Errorf("network %s: option %s: %w", n.id, as(optMTU), err)
		}
		n.mtu = mtu
	}
	if v, ok := opts[optHostBind]; ok {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Unmap().Is4() {
			return fmt.Errorf("network %s: option %s=%q: want an IPv4 address: %w", n.id, as(optHostBind), v, sdk.ErrInvalid)
		}
		if a = a.Unmap(); !a.IsUnspecified() {
			n.hostBind = a
		}
	}
	return nil
}

func parsePools(netID string, pools []*pb.IPAMData, family int) ([]subnet, error) {
	var out []subnet
	for _, p := range pools {
		_, pool, err := net.ParseCIDR(p.GetPool())
		if err != nil || ipFamily(pool.IP) != family {
			return nil, fmt.Errorf("network %s: pool %q is not an IPv%d CIDR: %w", netID, p.GetPool(), family, sdk.ErrInvalid)
		}
		gw := &net.IPNet{Mask: pool.Mask}
		if p.GetGateway() == "" {
			// The host's IPAM normally reserves one; fall back to the
			// first address of the pool, as Docker does.
			gw.IP = nextIP(pool.IP)
		} else {
			ip, _, err := net.ParseCIDR(p.GetGateway())
			if err != nil {
				ip = net.ParseIP(p.GetGateway())
			}
			if ip == nil || !pool.Contains(ip) {
				return nil, fmt.Errorf("network %s: gateway %q is not an address in %s: %w", netID, p.GetGateway(), pool, sdk.ErrInvalid)
			}
			gw.IP = ip
		}
		if family == 4 {
			gw.IP = gw.IP.To4()
		}
		out = append(out, subnet{pool: pool, gateway: gw})
	}
	return out, nil
}

func ipFamily(ip net.IP) int {
	if ip.To4() != nil {
		return 4
	}
	return 6
}

func nextIP(ip net.IP) net.IP {
	out := slices.Clone(ip)
	if v4 := out.To4(); v4 != nil {
		out = v4
	}
	for i := len(out) - 1; i >= 0; i-- {
		out[i]++
		if out[i] != 0 {
			break
		}
	}
	return out
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
		return fmt.Errorf("%q is not a valid interface name (1-15 printable ASCII characters, no '/', ':' or space): %w", name, sdk.ErrInvalid)
	}
	return nil
}
