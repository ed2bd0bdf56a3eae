package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// rawRequest sends body as it is (not re-encoded) to the agent's socket
// and returns the status and the error message of the answer.
func rawRequest(t *testing.T, socket, method, path string, body []byte) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", socket)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://sandnet"+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb api.ErrorBody
	_ = json.Unmarshal(b, &eb)
	return resp.StatusCode, eb.Message
}

// diskState is every file under dir with a digest of its content (the
// store's own files left out: the API listings stand for them; and the
// spare namespaces, which the agent makes when it is idle).
func diskState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".creating" {
			return filepath.SkipDir // spare namespaces come and go by themselves
		}
		if strings.HasPrefix(d.Name(), "store.db") || d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		v := d.Type().String()
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(path); err == nil {
				v = fmt.Sprintf("%x", sha256.Sum256(b))
			}
		}
		out[path] = v
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// listings are `network ls` (with each network's endpoints) and `sandbox
// ls`, as JSON.
func listings(t *testing.T, c *api.Client) string {
	t.Helper()
	ctx := context.Background()
	ns, err := c.Networks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var nets []*controller.Network
	for _, n := range ns {
		full, err := c.Network(ctx, n.ID)
		if err != nil {
			t.Fatal(err)
		}
		nets = append(nets, full)
	}
	sbs, err := c.Sandboxes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(map[string]any{"networks": nets, "sandboxes": sbs}, "", " ")
	return string(b)
}

// TestHostileRequests sends the API bodies a probe of the agent found
// accepted, silently ignored, or refused without naming the field: each
// is refused with its status and a message naming the field's JSON path,
// and neither the agent's listings nor any file on disk change.
func TestHostileRequests(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	e := agenttest.NewEnv(t, bins, boltAndBridge(dir, ""))
	a := e.Start(t)
	c := a.Client
	t.Cleanup(func() { removeAll(t, c) })
	if _, err := c.CreateNetwork(ctx, controller.NetworkCreate{Name: "net", Subnet: "10.61.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "c1", Options: sandbox.Options{Hostname: "web"},
		Networks: []controller.SandboxNetwork{{Network: "net"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: "ext", Options: sandbox.Options{ExternalKey: true}}); err != nil {
		t.Fatal(err)
	}
	beforeAPI, beforeDisk := listings(t, c), diskState(t, dir)

	big := `{"container_id":"` + strings.Repeat("a", 1_000_000) + `"}`
	huge := `{"container_id":"c9","hostname":"` + strings.Repeat("a", 50<<20) + `"}`
	type req struct {
		name, method, path, body string
		status                   int
		field                    string // the message starts with it
	}
	create := func(name, body, field string) req {
		return req{name, "POST", "/v1/sandboxes", body, 400, field}
	}
	tests := []req{
		// 4: container IDs
		create("container_id of 1,000,000 characters", big, "container_id: "),
		create("container_id ../../etc", `{"container_id":"../../etc"}`, "container_id: "),
		create("container_id a/b", `{"container_id":"a/b"}`, "container_id: "),
		create("container_id /", `{"container_id":"/"}`, "container_id: "),
		create("container_id with a NUL", `{"container_id":"a\u0000b"}`, "container_id: "),
		create("container_id with a newline", `{"container_id":"a\nb"}`, "container_id: "),
		create("container_id with spaces", `{"container_id":"a b"}`, "container_id: "),
		create("container_id emoji", `{"container_id":"🙂"}`, "container_id: "),
		{"connect container with a newline", "POST", "/v1/networks/net/connect", `{"container":"c1\nx"}`, 400, "container: "},
		{"sandbox of a container with a NUL", "GET", "/v1/sandboxes/c%00x", "", 400, "container: \"c\\x00x\" is not a valid container ID"},
		{"delete of container ../etc", "DELETE", "/v1/sandboxes/..%2Fetc", "", 400, "container: \"../etc\" is not a valid container ID"},
		{"host rm of a key path", "DELETE", "/v1/hosts/..%2Fnetworks%0A", "", 400, "host: \"../networks\\n\" is not a host ID"},
		{"rename of a container with a newline", "POST", "/v1/sandboxes/c%0Ax/rename", `{"name":"y"}`, 400, "container: "},
		// 5: what reaches resolv.conf and hosts
		create("dns_search with a nameserver line", `{"container_id":"c9","dns_search":["a\nnameserver 6.6.6.6"]}`, "dns_search[0]: "),
		create("dns_options with a nameserver line", `{"container_id":"c9","dns_options":["ndots:1\nnameserver 6.6.6.6"]}`, "dns_options[0]: "),
		create("extra_hosts name with a hosts line", `{"container_id":"c9","extra_hosts":[{"name":"a\n6.6.6.6 evil","ip":"192.0.2.1"}]}`, "extra_hosts[0].name: "),
		create("hostname with a hosts line", `{"container_id":"c9","hostname":"a\n6.6.6.6 evil"}`, "hostname: "),
		create("domain_name with a space", `{"container_id":"c9","hostname":"a","domain_name":"b c"}`, "domain_name: "),
		create("alias with a newline", `{"container_id":"c9","networks":[{"network":"net","aliases":["ok","a\nb"]}]}`, "networks[0].aliases[1]: "),
		{"connect alias with a space", "POST", "/v1/networks/net/connect", `{"container":"c1","aliases":["a b"]}`, 400, "aliases[0]: "},
		{"refresh hostname with a hosts line", "POST", "/v1/sandboxes/c1/refresh", `{"hostname":"web\n6.6.6.6 evil"}`, 400, "hostname: "},
		{"refresh dns_search with a nameserver line", "POST", "/v1/sandboxes/c1/refresh", `{"dns_search":["a\nnameserver 6.6.6.6"]}`, 400, "dns_search[0]: "},
		// 6: fields that were silently ignored
		create("ipv6 on an IPv4-only network", `{"container_id":"c9","networks":[{"network":"net","ipv6":"fd00::5"}]}`, "networks[0].ipv6: "),
		{"unknown bridge option", "POST", "/v1/networks", `{"name":"n2","subnet":"10.62.0.0/24","options":{"zzz":"1"}}`, 400, "options.zzz: "},
		// 7: an oversized body
		{"50 MB body", "POST", "/v1/sandboxes", huge, 413, "request body: larger than the limit of 1048576 bytes (1 MiB)"},
		// 8: decode errors name the field
		create("dns not an address", `{"container_id":"c9","dns":["not-an-ip"]}`, "dns[0]: "),
		create("extra_hosts ip not an address", `{"container_id":"c9","extra_hosts":[{"name":"db","ip":"bad"}]}`, "extra_hosts[0].ip: "),
		create("priority not a number", `{"container_id":"c9","networks":[{"network":"net","priority":"high"}]}`, "networks[0].priority: "),
		create("unknown field in a network", `{"container_id":"c9","networks":[{"network":"net","zz":1}]}`, "networks[0].zz: unknown field"),
		{"array body", "POST", "/v1/networks", `[{"name":"n2"}]`, 400, "request body: expected a JSON object, got JSON array"},
		// 9: the agent's own namespace (/proc/self is the agent's, as the
		// agent resolves the path) as a container's
		create("netns the agent's own", `{"container_id":"c9","netns":"/proc/self/ns/net","networks":[{"network":"net"}]}`, "netns: /proc/self/ns/net is the agent's own network namespace"),
		{"set-key to the agent's own namespace", "POST", "/v1/sandboxes/ext/key", `{"path":"/proc/self/ns/net"}`, 400, "path: /proc/self/ns/net is the agent's own network namespace"},
		// 10: a namespace that cannot be read says why (a runtime's
		// process that exited), not that it is none
		create("netns of a process that is gone", `{"container_id":"c9","netns":"/proc/999999999/ns/net","networks":[{"network":"net"}]}`, "netns: /proc/999999999/ns/net: no such file or directory"),
		{"set-key to a file that is no namespace", "POST", "/v1/sandboxes/ext/key", `{"path":"/etc/hostname"}`, 400, "path: /etc/hostname is not a network namespace"},
		create("netns a relative path", `{"container_id":"c9","netns":"ns/net","networks":[{"network":"net"}]}`, `netns: "ns/net" is not an absolute path`),
		{"set-key to a relative path", "POST", "/v1/sandboxes/ext/key", `{"path":"proc/1/ns/net"}`, 400, `path: "proc/1/ns/net" is not an absolute path`},
		// 11: a disconnect naming an interface (it took the container's
		// attachment whatever its interface); an all-zero MAC (a 500
		// from the kernel); DNS servers a network's dns refuses
		{"disconnect naming an interface", "POST", "/v1/networks/net/disconnect", `{"container":"c1","interface":"eth7"}`, 400, "interface: only with release"},
		{"connect with an all-zero MAC", "POST", "/v1/networks/net/connect", `{"container":"ext","mac":"00:00:00:00:00:00"}`, 400, "mac: "},
		create("dns 0.0.0.0", `{"container_id":"c9","dns":["0.0.0.0"]}`, "dns[0]: "),
		create("dns multicast", `{"container_id":"c9","dns":["224.0.0.1"]}`, "dns[0]: "),
		create("dns zoned", `{"container_id":"c9","dns":["fe80::1%eth0"]}`, "dns[0]: "),
		create("dns broadcast", `{"container_id":"c9","dns":["255.255.255.255"]}`, "dns[0]: "),
		// 12: query parameters a route does not take, and a body the
		// restore took no notice of
		{"reload with a parameter", "POST", "/v1/reload?file=/etc/x.hcl", "", 400, `"file": /v1/reload takes no parameters`},
		{"traffic with a parameter", "GET", "/v1/traffic?container=c1", "", 400, `"container": /v1/traffic takes no parameters`},
		{"network create with a parameter", "POST", "/v1/networks?name=n3", `{"name":"n3"}`, 400, `"name": /v1/networks takes no parameters`},
		{"sandbox with a parameter", "GET", "/v1/sandboxes/c1?all=true", "", 400, `"all": /v1/sandboxes/{container} takes no parameters`},
		{"sandboxes with all twice", "GET", "/v1/sandboxes?all=true&all=false", "", 400, "all: given 2 times"},
		{"restore with a body field", "POST", "/v1/sandboxes/c1/restore", `{"x":1}`, 400, "x: unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, msg := rawRequest(t, e.Socket, tt.method, tt.path, []byte(tt.body))
			if status != tt.status || !strings.HasPrefix(msg, tt.field) {
				t.Fatalf("%s %s = %d %.200q, want %d naming %q", tt.method, tt.path, status, msg, tt.status, tt.field)
			}
			if len(msg) > 1024 {
				t.Fatalf("message of %d bytes: a hostile value must not come back whole", len(msg))
			}
		})
	}
	if after := listings(t, c); after != beforeAPI {
		t.Fatalf("listings changed by refused requests:\nbefore %s\nafter %s", beforeAPI, after)
	}
	afterDisk := diskState(t, dir)
	for p, v := range afterDisk {
		if beforeDisk[p] != v {
			t.Errorf("%s changed or appeared", p)
		}
	}
	for p := range beforeDisk {
		if _, ok := afterDisk[p]; !ok {
			t.Errorf("%s disappeared", p)
		}
	}
	// The IDs runtimes use are all accepted.
	for _, id := range []string{
		"my_web.1",                              // a Docker container name
		strings.Repeat("0123456789abcdef", 4),   // a Docker or Podman ID (64 hex)
		"default-" + strings.Repeat("ab12", 16), // containerd's CNI container ID: <namespace>-<id>
		"k8s.io-" + strings.Repeat("f", 64),     // the same in the k8s.io namespace
	} {
		if _, err := c.CreateSandbox(ctx, controller.SandboxCreate{ContainerID: id}); err != nil {
			t.Fatalf("container ID %q refused: %v", id, err)
		}
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestVersionWithoutAgent: `sandnet version` prints the client's version
// and exits non-zero when no agent answers, as every client command does.
func TestVersionWithoutAgent(t *testing.T) {
	cmd := exec.Command(bins.Sandnet, "version", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("sandnet version without an agent: %v, want exit status 1\n%s%s", err, &stdout, &stderr)
	}
	want := regexp.MustCompile(fmt.Sprintf(`(?m)^Client: .* plugin protocol %d +sdk %s$`, sdk.ProtocolVersion, regexp.QuoteMeta(sdk.Version)))
	if !want.MatchString(stdout.String()) || !strings.Contains(stderr.String(), "none.sock") {
		t.Fatalf("want the client's version (%s) on stdout and the unreachable socket on stderr:\n%s%s", want, &stdout, &stderr)
	}
}
