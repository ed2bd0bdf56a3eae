package controller

import (
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/sandnet/sandnet/core/sandbox"
)

// Network is a network's record, as stored and as the API shows it.
type Network struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Driver string `json:"driver"`
	Scope  string `json:"scope"`
	// HostID is the host a local-scope network belongs to: when hosts
	// share a store, each sees only its own local networks.
	HostID     string            `json:"host_id,omitempty"`
	Internal   bool              `json:"internal"`
	EnableIPv6 bool              `json:"enable_ipv6"`
	Options    map[string]string `json:"options,omitempty"`
	// Labels are the user's metadata, as Docker's network labels:
	// sandnet keeps them and filters listings by them, nothing more.
	Labels map[string]string `json:"labels,omitempty"`
	IPv4   []IPAMConfig      `json:"ipv4,omitempty"`
	IPv6   []IPAMConfig      `json:"ipv6,omitempty"`
	// DNS are the servers the resolvers of sandboxes on the network
	// forward to (a sandbox's own servers win); UpdateNetworkDNS changes
	// them.
	DNS []netip.Addr `json:"dns,omitempty"`
	// DNSForwardSingleLabel has the resolvers of its sandboxes forward
	// A and AAAA questions for single-label names that are not
	// containers' ("registry"); without it they get NXDOMAIN at once.
	DNSForwardSingleLabel bool      `json:"dns_forward_single_label,omitempty"`
	Created               time.Time `json:"created"`
	// InDelete is set before a delete starts, so a crash midway is
	// finished on restart.
	InDelete bool `json:"in_delete,omitempty"`
	// VNI is the network's segment ID among the hosts, for drivers that
	// carry traffic between them (see vni.go); 0 for others.
	VNI uint32 `json:"vni,omitempty"`
	// Endpoints is filled by inspect only: it is derived, never stored.
	Endpoints []Endpoint `json:"endpoints,omitempty"`
}

// IPAMConfig is one address pool of a network.
type IPAMConfig struct {
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway,omitzero"`
	Range   netip.Prefix `json:"ip_range,omitzero"`
	// AuxAddresses are addresses of Subnet no container gets, by name
	// (NetworkCreate.AuxAddresses).
	AuxAddresses map[string]netip.Addr `json:"aux_addresses,omitempty"`
}

// Endpoint is an endpoint's record: a sandbox's attachment to a network.
type Endpoint struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	NetworkID string `json:"network_id"`
	// HostID is the host whose sandbox holds the endpoint.
	HostID string `json:"host_id,omitempty"`
	// VTEP is that host's advertise address, on global networks: where
	// other hosts tunnel the endpoint's traffic to.
	VTEP string `json:"vtep,omitempty"`
	// SandboxID is the sandbox the endpoint is joined to; empty when it is
	// not joined.
	SandboxID string `json:"sandbox_id,omitempty"`
	IfName    string `json:"interface,omitempty"`
	// HostIfName is the host's end of the interface (a veth pair's other
	// end), when the driver made one and said so. Derived for the API
	// (see answer), never stored: after an agent restart it shows again
	// once the sandbox's endpoint is joined again.
	HostIfName string          `json:"host_interface,omitempty"`
	MAC        string          `json:"mac,omitempty"`
	Address    netip.Prefix    `json:"address,omitzero"`
	AddressV6  netip.Prefix    `json:"address_v6,omitzero"`
	Gateway    netip.Addr      `json:"gateway,omitzero"`
	GatewayV6  netip.Addr      `json:"gateway_v6,omitzero"`
	Routes     []sandbox.Route `json:"routes,omitempty"`
	Aliases    []string        `json:"aliases,omitempty"`
	Priority   int             `json:"priority,omitempty"`
	Ports      []PortBinding   `json:"ports,omitempty"`
	// DriverOpts are the connect's (Connect.DriverOpts).
	DriverOpts map[string]string `json:"driver_opts,omitempty"`
	// External is true while ProgramExternalConnectivity is in effect.
	External bool `json:"external,omitempty"`
	// Resolver is the embedded resolver's address given to the runtime
	// for this endpoint: a CNI front's endpoints each get one of their
	// own (127.0.0.11 for the first, then the lowest of 127.0.0.12 on
	// that none of the sandbox's other endpoints has), which the
	// resolver answers on while the endpoint is joined. A runtime such
	// as podman writes resolv.conf from each attachment's result and
	// takes an attachment's nameservers out of it by value when it goes:
	// with one address for all, the container's other networks were
	// left with no nameserver. Empty for the API's endpoints, which use
	// the sandbox's resolv.conf (127.0.0.11).
	Resolver netip.Addr `json:"resolver,omitzero"`
	Created  time.Time  `json:"created"`
}

// PortBinding publishes a container port on the host.
type PortBinding struct {
	Proto         string     `json:"proto"`
	ContainerPort uint16     `json:"container_port"`
	HostIP        netip.Addr `json:"host_ip,omitzero"`
	HostPort      uint16     `json:"host_port,omitempty"`
	// HostPortEnd, when set, makes HostPort..HostPortEnd a range the
	// driver picks one free port from; the endpoint's record then holds
	// the port it picked.
	HostPortEnd uint16 `json:"host_port_end,omitempty"`
}

// Sandbox is a sandbox's record.
type Sandbox struct {
	ID          string          `json:"id"`
	ContainerID string          `json:"container_id"`
	HostID      string          `json:"host_id,omitempty"`
	Key         string          `json:"key,omitempty"`
	Options     sandbox.Options `json:"options"`
	// Front is the runtime front that made the sandbox ("cni", "oci"), or
	// empty for the API. A front's sandbox lives on a namespace its
	// runtime owns and is removed by that front (CNI DEL or GC, the OCI
	// poststop hook), never reaped as an unclaimed stub after a restart.
	Front string `json:"front,omitempty"`
	// RuntimeNetns is the path a front's runtime named its namespace by
	// (CNI_NETNS, or the OCI hook's /proc/PID/ns/net). Once that path no
	// longer names the namespace and no process is left in it, the
	// runtime is done with the container though its front never said so
	// (a CNI DEL while the agent was down): the sandbox goes (reapOrphans).
	RuntimeNetns string    `json:"runtime_netns,omitempty"`
	Created      time.Time `json:"created"`
	InDelete     bool      `json:"in_delete,omitempty"`
	// Fields below are derived for the API, never stored.
	Stub       bool   `json:"stub,omitempty"`
	ResolvConf string `json:"resolv_conf,omitempty"`
	Hosts      string `json:"hosts,omitempty"`
	// GatewayEndpoint and GatewayEndpointV6 are the endpoints whose
	// gateways are the namespace's default routes, if any.
	GatewayEndpoint   string     `json:"gateway_endpoint,omitempty"`
	GatewayEndpointV6 string     `json:"gateway_endpoint_v6,omitempty"`
	Endpoints         []Endpoint `json:"endpoints,omitempty"`
}

// NetworkCreate is a request to create a network. Addresses are strings so
// a bad one is reported with its field's name.
type NetworkCreate struct {
	Name    string `json:"name"`
	Driver  string `json:"driver,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Subnet  string `json:"subnet,omitempty"`
	Gateway string `json:"gateway,omitempty"`
	IPRange string `json:"ip_range,omitempty"`
	// IPRangeV6 is IPRange's IPv6 counterpart, inside SubnetV6.
	IPRangeV6  string `json:"ip_range_v6,omitempty"`
	SubnetV6   string `json:"subnet_v6,omitempty"`
	GatewayV6  string `json:"gateway_v6,omitempty"`
	EnableIPv6 bool   `json:"enable_ipv6,omitempty"`
	// EnableIPv4 false makes an IPv6-only network, as Docker's
	// --ipv4=false: no IPv4 pool, its containers get IPv6 addresses only.
	// Absent (nil) or true: the network has IPv4.
	EnableIPv4 *bool `json:"enable_ipv4,omitempty"`
	Internal   bool  `json:"internal,omitempty"`
	// AuxAddresses are addresses the network's containers never get,
	// by name, as Docker's --aux-address: each in the subnet (or
	// subnet_v6) of its family, which must be given.
	AuxAddresses map[string]string `json:"aux_addresses,omitempty"`
	Options      map[string]string `json:"options,omitempty"`
	// Labels is Network.Labels (see checkLabels for what a label may be).
	Labels map[string]string `json:"labels,omitempty"`
	// DNS are the network's DNS servers (IP addresses).
	DNS []string `json:"dns,omitempty"`
	// DNSForwardSingleLabel is Network.DNSForwardSingleLabel.
	DNSForwardSingleLabel bool `json:"dns_forward_single_label,omitempty"`
}

// SandboxCreate is a request to create a sandbox for a container.
type SandboxCreate struct {
	ContainerID string `json:"container_id"`
	sandbox.Options
	// Netns is the path of a network namespace the container runtime
	// made (CNI_NETNS, /proc/PID/ns/net): the sandbox takes it as its
	// external key at once, as SetKey would, and never deletes it.
	Netns string `json:"netns,omitempty"`
	// Front is Sandbox.Front: "cni", "oci" or empty.
	Front string `json:"front,omitempty"`
	// Networks are connected, in order, before the create answers, as
	// Connect would; if one fails, nothing of the create is left. The
	// first is joined while the sandbox is made, its record written in
	// the same transaction as the sandbox's.
	Networks []SandboxNetwork `json:"networks,omitempty"`
}

// SandboxNetwork is a network a sandbox is created on: the network, and
// a Connect to it whose container, the sandbox's, may be left out.
type SandboxNetwork struct {
	Network string `json:"network"`
	Connect
}

// Connect is a request to attach a container's sandbox to a network.
type Connect struct {
	Container string   `json:"container"`
	Name      string   `json:"name,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
	IP        string   `json:"ip,omitempty"`
	IPv6      string   `json:"ipv6,omitempty"`
	Priority  int      `json:"priority,omitempty"`
	// Publish are port specs: [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp].
	Publish []string `json:"publish,omitempty"`
	// Interface names the interface inside the sandbox (CNI_IFNAME);
	// empty: the next free ethN.
	Interface string `json:"interface,omitempty"`
	// MAC is the sandbox interface's MAC address; empty: the driver's.
	MAC string `json:"mac,omitempty"`
	// DriverOpts are options for the network's driver about this
	// endpoint (Docker's --driver-opt): stored with the endpoint and
	// given to the driver in every call about it (pb.Endpoint.options).
	// A driver that declares its endpoint options refuses others.
	DriverOpts map[string]string `json:"driver_opts,omitempty"`
}

// newID returns a random 256-bit ID in hex, as Docker's IDs are.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
