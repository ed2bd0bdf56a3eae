package api

import (
	"context"
	"net/http"
	"strings"
)

// Reloaded is the answer of POST /v1/reload: what the reload did, by
// driver name.
type Reloaded struct {
	Restarted []string `json:"restarted"` // block changed: restarted, state replayed
	Started   []string `json:"started"`   // block added
	Stopped   []string `json:"stopped"`   // block removed
	Unchanged []string `json:"unchanged"`
	// Applied are settings that changed and apply now (log.level,
	// resolver.upstreams, resolver.timeout, resolver.max_inflight,
	// ipam.default_pools, sandbox.spare_namespaces,
	// telemetry.prometheus_listen).
	Applied []string `json:"applied,omitempty"`
	// Ignored are settings that changed but take effect only at the next
	// start (data_dir, api, the sandbox block's and the resolver's other
	// settings).
	Ignored []string `json:"ignored,omitempty"`
	// Failed are drivers whose new block did not start or did not take
	// the agent's state back (the previous block runs again), and settings
	// that could not be applied (a prometheus_listen address in use),
	// with why.
	Failed []string `json:"failed,omitempty"`
}

// Summary is r in one line: "restarted: bridge; unchanged: none".
func (r *Reloaded) Summary() string {
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{{"restarted", r.Restarted}, {"started", r.Started}, {"stopped", r.Stopped}, {"unchanged", r.Unchanged},
		{"applied", r.Applied}, {"failed", r.Failed}, {"changed but applied only at the next start", r.Ignored}} {
		if len(p.names) > 0 {
			parts = append(parts, p.what+": "+strings.Join(p.names, ", "))
		}
	}
	return strings.Join(parts, "; ")
}

// Reload has the agent read its config file again (as SIGHUP does).
func (c *Client) Reload(ctx context.Context) (*Reloaded, error) {
	var r Reloaded
	return &r, c.Do(ctx, http.MethodPost, "/v1/reload", nil, &r)
}
