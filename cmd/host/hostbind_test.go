package main

import (
	"context"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/controller"
)

// TestHostBindingIPv4: with Docker's option
// com.docker.network.bridge.host_binding_ipv4, a port published without a
// host address is published on that address only — reachable there, not
// on the host's other addresses — and one that names its address keeps it.
func TestHostBindingIPv4(t *testing.T) {
	a := bridgeAgent(t)
	ctx := context.Background()
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "hb", Subnet: "10.62.0.0/24",
		Options: map[string]string{"com.docker.network.bridge.host_binding_ipv4": "127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	sb, err := a.Client.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "web", Networks: []controller.SandboxNetwork{
		{Network: "hb", Connect: controller.Connect{Publish: []string{"8062:7777/tcp", "10.62.0.1:8063:7777/tcp"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, sb.Key, "web")
	out, code := sandnetCmd(t, "--socket", a.Socket, "sandbox", "inspect", "--format", "{{range .Endpoints}}{{range .Ports}}{{.HostIP}}:{{.HostPort}} {{end}}{{end}}", "web")
	if code != 0 || strings.TrimSpace(out) != "127.0.0.1:8062 10.62.0.1:8063" {
		t.Errorf("the endpoint's ports: exit %d, %q; want 127.0.0.1:8062 and 10.62.0.1:8063", code, out)
	}
	for addr, want := range map[string]bool{"127.0.0.1:8062": true, "10.62.0.1:8062": false, "10.62.0.1:8063": true, "127.0.0.1:8063": false} {
		got, err := talk(t, "", "tcp", addr)
		if reached := err == nil && strings.HasPrefix(got, "hello from web"); reached != want {
			t.Errorf("TCP to %s from the host: %q, %v; want reached %v", addr, got, err, want)
		}
	}
	if out, code := sandnetCmd(t, "--socket", a.Socket, "network", "create", "-o", "com.docker.network.bridge.host_binding_ipv4=::1", "bad"); code == 0 ||
		!strings.Contains(out, `option com.docker.network.bridge.host_binding_ipv4="::1": want an IPv4 address`) {
		t.Errorf("an IPv6 host_binding_ipv4: exit %d\n%s", code, out)
	}
}
