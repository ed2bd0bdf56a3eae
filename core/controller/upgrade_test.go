package controller

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestUpgradeNamesEndpointsAfterContainers: endpoints an agent before the
// layout file named after their sandbox's hostname (two containers of
// one hostname shared a name; neither container's name resolved) take
// their container's name at the first start of today's agent, in the
// store too, and the hostname is answered beside it. Once the data
// directory says layout 2, an endpoint a connect named as its hostname
// keeps that name through restarts.
func TestUpgradeNamesEndpointsAfterContainers(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.network("red", "veth", "10.97.0.0/24")
	on := func(hostname string, c Connect) func(*SandboxCreate) {
		return func(r *SandboxCreate) {
			r.Options.Hostname = hostname
			r.Networks = []SandboxNetwork{{Network: "red", Connect: c}}
		}
	}
	e.sandbox("a1", on("shared", Connect{}))
	e.sandbox("a2", on("shared", Connect{}))
	probe := e.sandbox("probe", on("", Connect{}))
	before := map[string]string{"a1": resolve(t, probe.Key, "a1"), "a2": resolve(t, probe.Key, "a2")}

	// As the older agent left them: named after the hostname, no layout.
	e.c.Close()
	list, err := e.store.List(ctx, endpointPrefix)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range list {
		var ep Endpoint
		if err := json.Unmarshal(kv.GetValue(), &ep); err != nil {
			t.Fatal(err)
		}
		if ep.Name == "a1" || ep.Name == "a2" {
			ep.Name = "shared"
			b, _ := json.Marshal(&ep)
			if _, err := e.store.Put(ctx, kv.GetKey(), b); err != nil {
				t.Fatal(err)
			}
		}
	}
	layout := filepath.Join(e.dir, "data", LayoutFile)
	if err := os.Remove(layout); err != nil {
		t.Fatalf("the first start wrote no layout file: %v", err)
	}

	e.c = e.start()
	for id, addr := range before {
		if got := resolve(t, probe.Key, id); got != addr {
			t.Errorf("%s resolves to %q after the upgrade, want %q", id, got, addr)
		}
	}
	if got := resolve(t, probe.Key, "shared"); got == "" {
		t.Error("the hostname no longer resolves")
	}
	if got := endpointNames(t, e.c); !slices.Equal(got, []string{"a1", "a2", "probe"}) {
		t.Errorf("endpoint names after the upgrade = %v, want a1 a2 probe", got)
	}
	if b, err := os.ReadFile(layout); err != nil || strings.TrimSpace(string(b)) != "2" {
		t.Errorf("layout file = %q, %v; want 2", b, err)
	}

	e.sandbox("db1", on("db", Connect{Name: "db"}))
	e.c.Close()
	e.c = e.start()
	if got := endpointNames(t, e.c); !slices.Equal(got, []string{"a1", "a2", "db", "probe"}) {
		t.Errorf("endpoint names after a restart = %v, want db1's kept as db", got)
	}
}

// endpointNames lists the endpoint names network red's records hold, sorted.
func endpointNames(t *testing.T, c *Controller) []string {
	t.Helper()
	n, err := c.Network(context.Background(), "red")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ep := range n.Endpoints {
		out = append(out, ep.Name)
	}
	slices.Sort(out)
	return out
}
