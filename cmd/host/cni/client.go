package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// requestTimeout bounds one call to the agent; an attach that waits on an
// unreachable store gives up well before a runtime's own timeout.
const requestTimeout = 60 * time.Second

// agent is a client of the agent's HTTP API on its unix socket. The plugin
// speaks the API's JSON directly, as any client may, so that it does not
// link the agent's packages (see the package doc), and HTTP/1.1 over the
// socket with a few lines of its own (httpwire.go): net/http would bring
// TLS, HTTP/2 and gzip into a process a runtime execs for every call, and
// their start-up cost is the plugin's largest.
type agent struct {
	socket string
}

func newAgent(socket string) *agent { return &agent{socket: socket} }

// apiError is an error answer of the agent.
type apiError struct {
	Status  int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// do sends one request; out, unless nil, takes the JSON answer. An agent
// that cannot be reached is CNI error 11 (try again later) naming the
// socket; an error answer is an *apiError.
func (a *agent) do(method, path string, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = b
	}
	status, resp, err := roundTrip(a.socket, method, path, body, requestTimeout)
	if err != nil {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("sandnet agent unreachable at %s (is `sandnet agent` running?)", a.socket), err.Error())
	}
	if status >= 300 {
		var eb struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(resp, &eb) != nil || eb.Message == "" {
			eb.Message = strings.TrimSpace(string(resp))
		}
		return &apiError{Status: status, Message: eb.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp, out); err != nil {
		return fmt.Errorf("decoding the agent's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// status is the HTTP status of an agent's error answer, or 0.
func status(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// cniError turns an agent's error into a CNI error: a request the agent
// found invalid or a network it does not know is a config error (7), a
// CNI_NETNS it refuses (the agent's own, gone, another sandbox's) is an
// invalid netns (8), an unavailable
// plugin or store is "try again later" (11), anything else is internal
// (999). CNI errors pass through.
func cniError(what string, err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	code := types.ErrInternal
	var ae *apiError
	switch st := status(err); {
	case (st == statusBadRequest || st == statusConflict) && errors.As(err, &ae) && strings.Contains(ae.Message, "netns: "):
		// CNI_NETNS itself: the agent's own, gone, none, or another
		// sandbox's.
		code = types.ErrInvalidNetNS
	case st == statusBadRequest, st == statusNotFound:
		code = types.ErrInvalidNetworkConfig
	case st == statusUnavailable:
		code = types.ErrTryAgainLater
	}
	return types.NewError(code, what+": "+err.Error(), "")
}

// The agent's JSON, as far as the plugin reads and writes it (see the
// README's HTTP API table).

type network struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type route struct {
	Dst     netip.Prefix `json:"dst"`
	NextHop netip.Addr   `json:"next_hop,omitzero"`
}

type endpoint struct {
	ID         string        `json:"id"`
	NetworkID  string        `json:"network_id"`
	IfName     string        `json:"interface,omitempty"`
	HostIfName string        `json:"host_interface,omitempty"`
	MAC        string        `json:"mac,omitempty"`
	Address    netip.Prefix  `json:"address,omitzero"`
	AddressV6  netip.Prefix  `json:"address_v6,omitzero"`
	Gateway    netip.Addr    `json:"gateway,omitzero"`
	GatewayV6  netip.Addr    `json:"gateway_v6,omitzero"`
	Routes     []route       `json:"routes,omitempty"`
	Ports      []portBinding `json:"ports,omitempty"`
	Resolver   netip.Addr    `json:"resolver,omitzero"`
}

// portBinding is a port the endpoint publishes (the API's PortBinding).
type portBinding struct {
	Proto         string     `json:"proto"`
	ContainerPort int        `json:"container_port"`
	HostIP        netip.Addr `json:"host_ip,omitzero"`
	HostPort      int        `json:"host_port,omitempty"`
}

// publishes reports whether an endpoint of sb publishes pm's host port
// (not 0: a port the driver picks is another each time) on pm's host
// address to pm's container port. pm's protocol is lowercase.
func (sb *sandbox) publishes(pm PortMapping) bool {
	if pm.HostPort == 0 {
		return false
	}
	want, _ := netip.ParseAddr(pm.HostIP)
	for _, ep := range sb.Endpoints {
		for _, b := range ep.Ports {
			if b.Proto == pm.Protocol && b.ContainerPort == pm.ContainerPort && b.HostPort == pm.HostPort && sameHostIP(b.HostIP, want) {
				return true
			}
		}
	}
	return false
}

// sameHostIP compares two host addresses of a binding, where none and an
// unspecified one both mean every address.
func sameHostIP(a, b netip.Addr) bool {
	if !a.IsValid() || a.IsUnspecified() {
		return !b.IsValid() || b.IsUnspecified()
	}
	return a == b
}

type sandbox struct {
	ID          string `json:"id"`
	ContainerID string `json:"container_id"`
	Key         string `json:"key,omitempty"`
	Front       string `json:"front,omitempty"`
	ResolvConf  string `json:"resolv_conf,omitempty"`
	// The endpoints whose gateways are the namespace's default routes.
	GatewayEndpoint   string     `json:"gateway_endpoint,omitempty"`
	GatewayEndpointV6 string     `json:"gateway_endpoint_v6,omitempty"`
	Endpoints         []endpoint `json:"endpoints,omitempty"`
}

// connect is the API's Connect, and with Network a create's networks[i].
type connect struct {
	Network   string   `json:"network,omitempty"`
	Container string   `json:"container,omitempty"`
	Name      string   `json:"name,omitempty"`
	Aliases   []string `json:"aliases,omitempty"`
	IP        string   `json:"ip,omitempty"`
	IPv6      string   `json:"ipv6,omitempty"`
	Priority  int      `json:"priority,omitempty"`
	Publish   []string `json:"publish,omitempty"`
	Interface string   `json:"interface,omitempty"`
	MAC       string   `json:"mac,omitempty"`
	// DriverOpts is the agent's driver_opts (NetConf.DriverOpts).
	DriverOpts map[string]string `json:"driver_opts,omitempty"`
}

type sandboxCreate struct {
	ContainerID string    `json:"container_id"`
	Netns       string    `json:"netns"`
	Front       string    `json:"front"`
	Networks    []connect `json:"networks"`
}

func (a *agent) network(ref string) (*network, error) {
	var n network
	return &n, a.do("GET", "/v1/networks/"+url.PathEscape(ref), nil, &n)
}

func (a *agent) sandbox(container string) (*sandbox, error) {
	var sb sandbox
	return &sb, a.do("GET", "/v1/sandboxes/"+url.PathEscape(container), nil, &sb)
}

func (a *agent) sandboxes() ([]sandbox, error) {
	var sbs []sandbox
	return sbs, a.do("GET", "/v1/sandboxes", nil, &sbs)
}

func (a *agent) createSandbox(req sandboxCreate) (*sandbox, error) {
	var sb sandbox
	return &sb, a.do("POST", "/v1/sandboxes", req, &sb)
}

func (a *agent) deleteSandbox(container string) error {
	return a.do("DELETE", "/v1/sandboxes/"+url.PathEscape(container), nil, nil)
}

func (a *agent) connect(network string, req connect) (*endpoint, error) {
	var ep endpoint
	return &ep, a.do("POST", "/v1/networks/"+url.PathEscape(network)+"/connect", req, &ep)
}

// release is a disconnect that deletes a front's sandbox left with no
// endpoint, and finds nothing gone an error.
func (a *agent) release(network, container, ifname string) error {
	body := struct {
		Container string `json:"container"`
		Release   bool   `json:"release"`
		Interface string `json:"interface,omitempty"`
	}{container, true, ifname}
	return a.do("POST", "/v1/networks/"+url.PathEscape(network)+"/disconnect", body, nil)
}
