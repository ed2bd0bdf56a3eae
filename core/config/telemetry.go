package config

import (
	"net"
	"strconv"

	"github.com/hashicorp/hcl/v2"
)

// Telemetry configures the agent's metrics.
type Telemetry struct {
	// PrometheusListen is the TCP address (host:port) the agent serves
	// its Prometheus metrics on, at /metrics; empty: only at
	// GET /v1/metrics on the API socket.
	PrometheusListen string
}

var telemetrySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "prometheus_listen"}}}

func (d *decoder) telemetry(t *Telemetry, body hcl.Body) {
	content, diags := body.Content(telemetrySchema)
	d.add(diags)
	if attr := content.Attributes["prometheus_listen"]; attr != nil {
		var addr string
		if !d.decode(attr, &addr) {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err == nil {
			if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
				err = &net.AddrError{Err: "invalid port", Addr: port}
			} else if host != "" && net.ParseIP(host) == nil && host != "localhost" {
				err = &net.AddrError{Err: "not an IP address or localhost", Addr: host}
			}
		}
		if err != nil {
			d.errorf(attr.Expr.Range(), "Invalid prometheus_listen",
				"%q is not a host:port address to listen on (%v); for example \"127.0.0.1:9386\".", addr, err)
			return
		}
		t.PrometheusListen = addr
	}
}
