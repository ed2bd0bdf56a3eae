package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// DefaultSocket is where the agent listens unless the conf says otherwise.
const DefaultSocket = "/run/sandnet/sandnet.sock"

// NetConf is the plugin's network config.
type NetConf struct {
	types.PluginConf
	// Network is the sandnet network to join (name or ID); required.
	Network string `json:"network"`
	// Socket is the agent's API socket.
	Socket string `json:"socket,omitempty"`
	// Aliases are names the embedded DNS also answers for the container.
	Aliases []string `json:"aliases,omitempty"`
	// Priority orders the sandbox's endpoints (the highest gives the
	// default route), as `sandnet connect --priority`.
	Priority int `json:"priority,omitempty"`
	// DriverOpts are options for the network's driver about each
	// endpoint the conf makes, as `sandnet connect --driver-opt`.
	DriverOpts map[string]string `json:"driverOpts,omitempty"`

	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`
	// Args is the conf's "args" (args.cni of the conventions).
	Args *struct {
		CNI *struct {
			IPs []string `json:"ips,omitempty"`
		} `json:"cni,omitempty"`
	} `json:"args,omitempty"`
}

// RuntimeConfig holds the capability args a runtime passes.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	IPs          []string      `json:"ips,omitempty"`
	MAC          string        `json:"mac,omitempty"`
	// Aliases is podman's map of network name to aliases.
	Aliases map[string][]string `json:"aliases,omitempty"`
}

// PortMapping is the portMappings capability's entry.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Args are the CNI_ARGS the plugin reads; others are ignored as
// IgnoreUnknown asks (and as runtimes expect even without it).
type Args struct {
	types.CommonArgs
	IP           types.UnmarshallableString `json:"ip,omitempty"`
	MAC          types.UnmarshallableString `json:"mac,omitempty"`
	K8S_POD_NAME types.UnmarshallableString //nolint:revive // the runtime's key
}

// confError is a network config that decoded but says something invalid:
// CNI error 7, naming the key.
func confError(key, format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, key+": "+fmt.Sprintf(format, a...), "")
}

// jsonKind names what JSON value decodes into a Go value of type t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// article puts "a" or "an" before a JSON value's kind as encoding/json
// names it (string, number, bool, array, object).
func article(kind string) string {
	if kind == "array" || kind == "object" {
		return "an " + kind
	}
	return "a " + kind
}

// parseConf decodes the network config from stdin. A config that does not
// decode is CNI error 6 naming the key where decoding stopped; one with a
// missing or invalid value is error 7 naming the key.
func parseConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{Socket: DefaultSocket}
	if err := json.Unmarshal(stdin, conf); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("%s: must be %s, not %s", te.Field, jsonKind(te.Type), article(te.Value)), err.Error())
		}
		return nil, types.NewError(types.ErrDecodingFailure, "network config: "+err.Error(), "")
	}
	if conf.Network == "" {
		return nil, confError("network", "required: the sandnet network to join")
	}
	if conf.Socket == "" {
		conf.Socket = DefaultSocket
	}
	return conf, nil
}

// attachment is what an ADD asks the agent for, from the conf, the
// capability args and CNI_ARGS.
type attachment struct {
	name       string // the container's name in DNS; empty: the agent's default
	aliases    []string
	ip, ip6    string
	mac        string
	publish    []string      // the publish specs of ports, in order
	ports      []PortMapping // the port mappings, their protocol lowercased
	priority   int
	driverOpts map[string]string
	ifname     string
	netns      string
	container  string
}

// newAttachment gathers an ADD's request. Later sources win: the conf's
// args, then capability args, then CNI_ARGS (podman passes a single static
// IP and a MAC there).
func newAttachment(conf *NetConf, a *Args, container, ifname, netns string) (*attachment, error) {
	at := &attachment{
		name: string(a.K8S_POD_NAME), priority: conf.Priority, driverOpts: conf.DriverOpts, ifname: ifname, netns: netns, container: container,
		mac: conf.RuntimeConfig.MAC,
	}
	at.aliases = append(at.aliases, conf.Aliases...)
	seen := map[string]bool{}
	for _, key := range []string{conf.Name, conf.Network} {
		if seen[key] {
			continue
		}
		seen[key] = true
		at.aliases = append(at.aliases, conf.RuntimeConfig.Aliases[key]...)
	}
	var ips []string
	if conf.Args != nil && conf.Args.CNI != nil {
		ips = append(ips, conf.Args.CNI.IPs...)
	}
	ips = append(ips, conf.RuntimeConfig.IPs...)
	if a.IP != "" {
		ips = append(ips, strings.Split(string(a.IP), ",")...)
	}
	for _, s := range ips {
		addr, err := parseIP(s)
		if err != nil || addr.Zone() != "" {
			// A zone (fe80::1%eth0) names a link of the host, not an
			// address for the container; the agent refuses one too.
			return nil, confError("ips", "%q is not an IP address (without a zone)", s)
		}
		if addr.Is4() {
			at.ip = addr.String()
		} else {
			at.ip6 = addr.String()
		}
	}
	if a.MAC != "" {
		at.mac = string(a.MAC)
	}
	if at.mac != "" {
		// As the agent checks it: six bytes (net.ParseMAC also reads
		// EUI-64 and InfiniBand forms), not multicast.
		if mac, err := net.ParseMAC(at.mac); err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, confError("mac", "%q is not a unicast Ethernet address", at.mac)
		}
	}
	for i, pm := range conf.RuntimeConfig.PortMappings {
		spec, err := publishSpec(pm)
		if err != nil {
			return nil, confError(fmt.Sprintf("runtimeConfig.portMappings[%d]", i), "%v", err)
		}
		at.publish = append(at.publish, spec)
		pm.Protocol = strings.ToLower(cmp.Or(pm.Protocol, "tcp"))
		at.ports = append(at.ports, pm)
	}
	return at, nil
}

// publishFor is what the attachment publishes when it joins sandbox sb: its
// ports but those an endpoint of sb publishes already, the same host port
// to the same container port. A runtime passes a container's port mappings
// to the ADD of each of its networks (podman, containerd's CRI); the host
// port can be published once, and the container's first network has it,
// as CNI's portmap plugin leaves it to the first network's rule.
func (at *attachment) publishFor(sb *sandbox) []string {
	var specs []string
	for i, pm := range at.ports {
		if !sb.publishes(pm) {
			specs = append(specs, at.publish[i])
		}
	}
	return specs
}

// parseIP reads an address with or without a prefix length ("10.0.0.5",
// "10.0.0.5/24"), as the ips capability and CNI_ARGS IP= give it.
func parseIP(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// publishSpec turns a port mapping into sandnet's publish spec,
// [HOSTIP:][HOSTPORT:]PORT[/PROTO].
func publishSpec(pm PortMapping) (string, error) {
	if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
		return "", fmt.Errorf("containerPort %d is not a port", pm.ContainerPort)
	}
	if pm.HostPort < 0 || pm.HostPort > 65535 {
		return "", fmt.Errorf("hostPort %d is not a port", pm.HostPort)
	}
	proto := strings.ToLower(pm.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return "", fmt.Errorf("protocol %q is not tcp or udp", pm.Protocol)
	}
	host := ""
	if pm.HostPort != 0 {
		host = fmt.Sprintf("%d:", pm.HostPort)
	}
	if pm.HostIP != "" {
		ip, err := netip.ParseAddr(pm.HostIP)
		if err != nil {
			return "", fmt.Errorf("hostIP %q is not an IP address", pm.HostIP)
		}
		if !ip.IsUnspecified() {
			h := ip.String()
			if ip.Is6() {
				h = "[" + h + "]"
			}
			host = fmt.Sprintf("%s:%d:", h, pm.HostPort)
			if pm.HostPort == 0 {
				host = h + "::"
			}
		}
	}
	return fmt.Sprintf("%s%d/%s", host, pm.ContainerPort, proto), nil
}
