package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/sandnet/sandnet/core/plugin"
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
		return fmt.Errorf("agent at %s: %v: %w", c.socket, err, sdk.ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Message == "" {
			eb.Message = strings.TrimSpace(string(b))
		}
		return &Error{Status: resp.StatusCode, Message: eb.Message}
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
