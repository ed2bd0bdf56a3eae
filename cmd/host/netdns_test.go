package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// TestNetworkDNS: a network's DNS servers are its sandboxes' upstreams;
// changing them (API and CLI) moves running sandboxes at once; a sandbox's
// own --dns wins; bad changes are refused with the field named and change
// nothing; with none left, the config's upstreams are used again.
func TestNetworkDNS(t *testing.T) {
	nstest.RequireRoot(t)
	first := startFakeUpstream(t, "127.0.0.31:53")
	second := startFakeUpstream(t, "127.0.0.32:53")
	fallback := startFakeUpstream(t, "127.0.0.1:0")
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	env := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+fmt.Sprintf("resolver {\n  upstreams = [%q]\n  cache_size = 0\n}\n", fallback.addr))
	a := env.Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	ctx := t.Context()
	c := a.Client

	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "bad", DNS: []string{"127.0.0.31", "dns.example"}}); !isStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), "dns[1]") {
		t.Fatalf("create with a hostname as DNS server: %v, want 400 naming dns[1]", err)
	}
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "dnsnet", DNS: []string{"127.0.0.31"}}); err != nil {
		t.Fatal(err)
	}
	cli := attach(t, c, "dnsnet", "cli")
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "own",
		Options: sandbox.Options{DNS: []netip.Addr{netip.MustParseAddr("127.0.0.31")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Connect(ctx, "dnsnet", controller.Connect{Container: "own"}); err != nil {
		t.Fatal(err)
	}
	own, err := c.Sandbox(ctx, "own")
	if err != nil {
		t.Fatal(err)
	}
	// forwardsTo asks name from key and reports which fake answered.
	forwardsTo := func(key, name string) string {
		t.Helper()
		if got := dig(t, key, "+short", name); got != "192.0.2.1" {
			t.Fatalf("dig %s = %q", name, got)
		}
		var who []string
		for label, u := range map[string]*fakeUpstream{"first": first, "second": second, "fallback": fallback} {
			if u.asked(name+".") > 0 {
				who = append(who, label)
			}
		}
		return strings.Join(who, ",")
	}
	if got := forwardsTo(cli.key, "a.example"); got != "first" {
		t.Fatalf("cli on a network with --dns 127.0.0.31 forwarded to %q", got)
	}

	n, err := c.UpdateNetworkDNS(ctx, "dnsnet", controller.NetworkDNSUpdate{Add: []string{"127.0.0.32"}, Drop: []string{"127.0.0.31"}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(n.DNS) != "[127.0.0.32]" {
		t.Fatalf("network DNS after the update: %v", n.DNS)
	}
	if got := forwardsTo(cli.key, "b.example"); got != "second" {
		t.Fatalf("after --dns-add 127.0.0.32 --dns-drop 127.0.0.31, cli forwarded to %q, want second at once", got)
	}
	if got := forwardsTo(own.Key, "c.example"); got != "first" {
		t.Fatalf("the sandbox with its own --dns 127.0.0.31 forwarded to %q after the network's change", got)
	}

	for _, bad := range []struct {
		req   controller.NetworkDNSUpdate
		field string
	}{
		{controller.NetworkDNSUpdate{Drop: []string{"127.0.0.99"}}, "drop[0]"},
		{controller.NetworkDNSUpdate{Add: []string{"127.0.0.33", "not-an-ip"}}, "add[1]"},
		{controller.NetworkDNSUpdate{}, "add"},
	} {
		_, err := c.UpdateNetworkDNS(ctx, "dnsnet", bad.req)
		if !isStatus(err, http.StatusBadRequest) || !strings.Contains(err.Error(), bad.field) {
			t.Fatalf("update %+v: %v, want 400 naming %s", bad.req, err, bad.field)
		}
	}
	if _, err := c.UpdateNetworkDNS(ctx, "nonet", controller.NetworkDNSUpdate{Add: []string{"127.0.0.33"}}); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("update of a missing network: %v, want 404", err)
	}
	if n, err := c.Network(ctx, "dnsnet"); err != nil || fmt.Sprint(n.DNS) != "[127.0.0.32]" {
		t.Fatalf("refused updates changed the network: %v, %v", n.DNS, err)
	}

	// The CLI; dropping the last server goes back to the config's upstreams.
	if out, code := sandnetCmd(t, "network", "update", "--socket", env.Socket, "--dns-drop", "127.0.0.32", "dnsnet"); code != 0 || !strings.Contains(out, "dnsnet") {
		t.Fatalf("sandnet network update --dns-drop: exit %d\n%s", code, out)
	}
	if got := forwardsTo(cli.key, "d.example"); got != "fallback" {
		t.Fatalf("with no network servers left, cli forwarded to %q, want the config's upstream", got)
	}
	if out, code := sandnetCmd(t, "network", "inspect", "--socket", env.Socket, "dnsnet"); code != 0 || !strings.Contains(out, "DNS:") {
		t.Fatalf("sandnet network inspect: exit %d\n%s", code, out)
	}
	// A sandbox that joins later gets the network's servers too.
	if _, err := c.UpdateNetworkDNS(ctx, "dnsnet", controller.NetworkDNSUpdate{Add: []string{"127.0.0.32"}}); err != nil {
		t.Fatal(err)
	}
	late := attach(t, c, "dnsnet", "late")
	if got := forwardsTo(late.key, "e.example"); got != "second" {
		t.Fatalf("a sandbox joining after the update forwarded to %q, want second", got)
	}
}

// isStatus reports whether err is an API error with that status.
func isStatus(err error, status int) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == status
}
