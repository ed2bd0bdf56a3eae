package config

import "testing"

func TestTelemetryAndSocketGroup(t *testing.T) {
	c, diags := Parse([]byte("telemetry {\n  prometheus_listen = \"127.0.0.1:9386\"\n}\napi {\n  socket_group = \"root\"\n}\n"), "test.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if c.Telemetry.PrometheusListen != "127.0.0.1:9386" || c.API.SocketGroup != "root" || c.API.SocketGID != 0 {
		t.Fatalf("telemetry %+v, api %+v", c.Telemetry, c.API)
	}
	if c, _ := Parse(nil, "test.hcl"); c.Telemetry.PrometheusListen != "" || c.API.SocketGroup != "" {
		t.Fatalf("defaults: telemetry %+v, api %+v", c.Telemetry, c.API)
	}
}

func TestTelemetryErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      wantDiag
	}{
		{"no port", "telemetry {\n  prometheus_listen = \"127.0.0.1\"\n}", wantDiag{2, 23, `"127.0.0.1" is not a host:port address`}},
		{"bad port", "telemetry {\n  prometheus_listen = \"127.0.0.1:http\"\n}", wantDiag{2, 23, `invalid port`}},
		{"host name", "telemetry {\n  prometheus_listen = \"metrics.example:9386\"\n}", wantDiag{2, 23, `not an IP address or localhost`}},
		{"misspelt", "telemetry {\n  prometheus_listn = \"127.0.0.1:9386\"\n}", wantDiag{2, 3, `Did you mean "prometheus_listen"?`}},
		{"unknown group", "api {\n  socket_group = \"no-such-group-sandnet\"\n}", wantDiag{2, 18, `There is no group "no-such-group-sandnet"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, diags := Parse([]byte(tt.src), "test.hcl")
			requireDiags(t, "test.hcl", diags, tt.want)
		})
	}
}
