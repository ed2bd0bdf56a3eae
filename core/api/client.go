package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"syscall"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
)

// Client talks to an agent's API socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConnsPerHost: 16,
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// Do sends a request with in (nil: no body) encoded as JSON and decodes the
// answer into out (nil: discard). An error answer comes back as *Error; an
// unreachable agent as an error wrapping sdk.ErrUnavailable.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sandnet"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(ctx, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return errorFrom(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding answer of %s %s: %w", method, path, err)
	}
	return nil
}

// dialError explains a failed request: when nothing listens on the
// socket, that no agent runs and how to start one; when the socket is not
// one, or the agent did not answer in time, that.
func (c *Client) dialError(ctx context.Context, err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		if st, serr := os.Stat(c.socket); serr == nil && st.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("%s is not a socket (a %s): point --socket or $SANDNET_SOCKET at the agent's API socket (api { socket }): %w", c.socket, fileKind(st.Mode()), sdk.ErrUnavailable)
		}
		return &NoAgentError{Socket: c.socket}
	}
	if errors.Is(err, syscall.EACCES) {
		return fmt.Errorf("agent at %s: permission denied: run as root or as a member of the socket's group (api { socket_group }): %w", c.socket, sdk.ErrUnavailable)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return fmt.Errorf("the agent at %s did not answer in time (is it stopped, or stuck? its log says more): %w", c.socket, sdk.ErrUnavailable)
	}
	return fmt.Errorf("agent at %s: %v: %w", c.socket, err, sdk.ErrUnavailable)
}

// fileKind names what a file that should be a socket is.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	}
	return "file of mode " + m.Type().String()
}

// NoAgentError is the error of a request to a socket nothing listens on.
// It matches sdk.ErrUnavailable with errors.Is.
type NoAgentError struct {
	Socket string
}

func (e *NoAgentError) Error() string {
	return fmt.Sprintf("no sandnet agent is running at %s; start one with `sandnet agent --config FILE` (or `systemctl start sandnet`), or point --socket or $SANDNET_SOCKET at the agent you meant", e.Socket)
}

// Is makes errors.Is(err, sdk.ErrUnavailable) true.
func (e *NoAgentError) Is(target error) bool { return target == sdk.ErrUnavailable }

// Version returns the agent's version.
func (c *Client) Version(ctx context.Context) (*Version, error) {
	var v Version
	return &v, c.Do(ctx, http.MethodGet, "/v1/version", nil, &v)
}

// Health returns the agent's health.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	return &h, c.Do(ctx, http.MethodGet, "/v1/health", nil, &h)
}

// Plugins lists the agent's plugins.
func (c *Client) Plugins(ctx context.Context) ([]plugin.Status, error) {
	var ps []plugin.Status
	return ps, c.Do(ctx, http.MethodGet, "/v1/plugins", nil, &ps)
}

// CreateNetwork creates a network.
func (c *Client) CreateNetwork(ctx context.Context, req controller.NetworkCreate) (*controller.Network, error) {
	var n controller.Network
	return &n, c.Do(ctx, http.MethodPost, "/v1/networks", req, &n)
}

// Networks lists the networks.
func (c *Client) Networks(ctx context.Context) ([]*controller.Network, error) {
	return c.NetworksWhere(ctx, nil)
}

// NetworksWhere lists the networks that pass a filter: query parameters
// name, id, driver, scope and label (key or key=value), each repeatable
// (a network passes when it matches one value of every parameter given).
func (c *Client) NetworksWhere(ctx context.Context, filter url.Values) ([]*controller.Network, error) {
	var ns []*controller.Network
	path := "/v1/networks"
	if len(filter) > 0 {
		path += "?" + filter.Encode()
	}
	return ns, c.Do(ctx, http.MethodGet, path, nil, &ns)
}

// Network inspects a network by name or ID.
func (c *Client) Network(ctx context.Context, ref string) (*controller.Network, error) {
	var n controller.Network
	return &n, c.Do(ctx, http.MethodGet, "/v1/networks/"+url.PathEscape(ref), nil, &n)
}

// DeleteNetwork deletes a network by name or ID.
func (c *Client) DeleteNetwork(ctx context.Context, ref string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/networks/"+url.PathEscape(ref), nil, nil)
}

// UpdateNetworkDNS drops and adds DNS servers of a network (POST
// /v1/networks/{ref}/dns); running sandboxes on it forward to the new list
// at once.
func (c *Client) UpdateNetworkDNS(ctx context.Context, ref string, req controller.NetworkDNSUpdate) (*controller.Network, error) {
	var n controller.Network
	return &n, c.Do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(ref)+"/dns", req, &n)
}

// Hosts lists the hosts sharing the store, live or expired (GET
// /v1/hosts).
func (c *Client) Hosts(ctx context.Context) ([]*controller.Host, error) {
	var hs []*controller.Host
	return hs, c.Do(ctx, http.MethodGet, "/v1/hosts", nil, &hs)
}

// RemoveHost forgets a host whose lease expired, releasing its addresses
// (DELETE /v1/hosts/{id}); a live host gives a 409.
func (c *Client) RemoveHost(ctx context.Context, id string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/hosts/"+url.PathEscape(id), nil, nil)
}

// Connect attaches a container's sandbox to a network.
func (c *Client) Connect(ctx context.Context, network string, req controller.Connect) (*controller.Endpoint, error) {
	var ep controller.Endpoint
	return &ep, c.Do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(network)+"/connect", req, &ep)
}

// Disconnect detaches a container's sandbox from a network.
func (c *Client) Disconnect(ctx context.Context, network, container string) error {
	return c.Do(ctx, http.MethodPost, "/v1/networks/"+url.PathEscape(network)+"/disconnect", Disconnect{Container: container}, nil)
}

// CreateSandbox creates a container's sandbox.
func (c *Client) CreateSandbox(ctx context.Context, req controller.SandboxCreate) (*controller.Sandbox, error) {
	var sb controller.Sandbox
	return &sb, c.Do(ctx, http.MethodPost, "/v1/sandboxes", req, &sb)
}

// Sandboxes lists the sandboxes (stubs left out).
func (c *Client) Sandboxes(ctx context.Context) ([]*controller.Sandbox, error) {
	var sbs []*controller.Sandbox
	return sbs, c.Do(ctx, http.MethodGet, "/v1/sandboxes", nil, &sbs)
}

// AllSandboxes lists the sandboxes with the stubs an agent restart left
// and no container claimed yet (Stub set).
func (c *Client) AllSandboxes(ctx context.Context) ([]*controller.Sandbox, error) {
	var sbs []*controller.Sandbox
	return sbs, c.Do(ctx, http.MethodGet, "/v1/sandboxes?all=true", nil, &sbs)
}

// Sandbox inspects a container's sandbox.
func (c *Client) Sandbox(ctx context.Context, container string) (*controller.Sandbox, error) {
	var sb controller.Sandbox
	return &sb, c.Do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(container), nil, &sb)
}

// Traffic returns the counters of container's endpoints, or of every
// sandbox's when container is "".
func (c *Client) Traffic(ctx context.Context, container string) ([]controller.EndpointTraffic, error) {
	path := "/v1/traffic"
	if container != "" {
		path = "/v1/sandboxes/" + url.PathEscape(container) + "/traffic"
	}
	var out []controller.EndpointTraffic
	return out, c.Do(ctx, http.MethodGet, path, nil, &out)
}

// DeleteSandbox deletes a container's sandbox.
func (c *Client) DeleteSandbox(ctx context.Context, container string) error {
	return c.Do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(container), nil, nil)
}

// SetKey hands a sandbox created with an external key its namespace.
func (c *Client) SetKey(ctx context.Context, container, path string) (*controller.Sandbox, error) {
	var sb controller.Sandbox
	return &sb, c.Do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(container)+"/key", SetKey{Path: path}, &sb)
}

// Rename renames a container's endpoints.
func (c *Client) Rename(ctx context.Context, container, name string) error {
	return c.Do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(container)+"/rename", Rename{Name: name}, nil)
}

// Refresh re-applies a sandbox's options.
func (c *Client) Refresh(ctx context.Context, container string, opts sandbox.Options) (*controller.Sandbox, error) {
	var sb controller.Sandbox
	return &sb, c.Do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(container)+"/refresh", opts, &sb)
}

// RestoreSandbox claims a stub sandbox after an agent restart.
func (c *Client) RestoreSandbox(ctx context.Context, container string) (*controller.Sandbox, error) {
	var sb controller.Sandbox
	return &sb, c.Do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(container)+"/restore", nil, &sb)
}
