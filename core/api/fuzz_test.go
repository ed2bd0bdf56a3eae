package api

import (
	"bytes"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
)

// FuzzRequestBodies feeds bytes, as the body of a request, to the API's
// decoder for the bodies that carry the most (a network create, a sandbox
// create listing networks, a connect) and then to the validators the
// controller runs before it touches anything. Nothing may panic; every
// refusal wraps sdk.ErrInvalid and names where it is (a JSON path or the
// body); and what the validators accept holds nothing that could break a
// line of resolv.conf, hosts, a path or a log field. No socket, no agent:
// it runs in CI beside the resolver's fuzz target.
func FuzzRequestBodies(f *testing.F) {
	for _, seed := range []string{
		`{"container_id":"c1","networks":[{"network":"n","ip":"10.0.0.5","publish":["8080:80/tcp"],"aliases":["web"]}],"hostname":"h","dns_search":["example.com."],"dns_options":["ndots:2"],"extra_hosts":[{"name":"db","ip":"192.0.2.1"}]}`,
		`{"name":"n","driver":"bridge","subnet":"10.1.0.0/24","gateway":"10.1.0.1","options":{"com.sandnet.bridge.name":"br0"}}`,
		`{"container":"c1","ip":"10.0.0.5","ipv6":"fd00::5","priority":1,"publish":["127.0.0.1::53/udp"],"interface":"eth1","mac":"02:42:0a:00:00:05","driver_opts":{"vlan":"42"}}`,
		`{"container_id":"../../etc"}`,
		`{"container_id":"a\nb"}`,
		`{"dns_search":["a\nnameserver 6.6.6.6"],"container_id":"c"}`,
		`{"hostname":"a\n6.6.6.6 evil","container_id":"c"}`,
		`{"networks":[{"network":"n","priority":"high"}]}`,
		`{"dns":["not-an-ip"]}`,
		`[1,2]`,
		`{"container_id":"c","container_id":"d"}`,
		"{\"container_id\":\"\xff\"}",
		`{"container_id":"c","a\nb":1}`, // an unknown name that once broke the error's line
		"{\"dns\":[\"\x7f\"]}",          // a DEL, which JSON allows raw in a string, once echoed raw in the error
	} {
		for kind := range byte(3) {
			f.Add(kind, []byte(seed))
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		switch kind % 3 {
		case 0:
			var r controller.SandboxCreate
			if decode(t, body, &r) && valid(t, r.Validate()) {
				token(t, "container_id", r.ContainerID)
				checkOptions(t, r.Options)
				for _, n := range r.Networks {
					checkConnect(t, n.Connect)
				}
			}
		case 1:
			var r controller.NetworkCreate
			decode(t, body, &r)
		case 2:
			var r controller.Connect
			if decode(t, body, &r) && valid(t, r.Validate()) {
				token(t, "container", r.Container)
				checkConnect(t, r)
			}
		}
	})
}

// decode decodes body as a request of the API would be, and reports
// whether it was accepted; a refusal must be an ErrInvalid (or, past the
// limit, ErrTooLarge) that says where, on one line.
func decode(t *testing.T, body []byte, v any) bool {
	t.Helper()
	err := Decode(httptest.NewRequest("POST", "/", bytes.NewReader(body)), v)
	if err == nil {
		return true
	}
	if !errors.Is(err, sdk.ErrInvalid) && !errors.Is(err, ErrTooLarge) {
		t.Fatalf("decode error %q wraps neither ErrInvalid nor ErrTooLarge", err)
	}
	oneLine(t, err)
	return false
}

// valid reports whether a validator accepted; a refusal must wrap
// ErrInvalid and name its field.
func valid(t *testing.T, err error) bool {
	t.Helper()
	if err == nil {
		return true
	}
	if !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("validation error %q does not wrap ErrInvalid", err)
	}
	oneLine(t, err)
	return false
}

// oneLine fails unless err's message starts with where the problem is (a
// path or "request body", then ": ") and is one line with no control
// character: what a client echoes to a terminal or a log cannot be made
// to forge another line.
func oneLine(t *testing.T, err error) {
	t.Helper()
	msg := err.Error()
	if at, _, ok := strings.Cut(msg, ": "); !ok || at == "" {
		t.Fatalf("error %q does not start with where the problem is", msg)
	}
	if strings.ContainsFunc(msg, func(r rune) bool { return r < ' ' || r == 0x7f || r == utf8.RuneError }) {
		t.Fatalf("error %q holds a control character", msg)
	}
}

// token fails unless s, accepted, is one non-empty token with no control
// character, space or slash.
func token(t *testing.T, field, s string) {
	t.Helper()
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' }) {
		t.Fatalf("%s %q accepted", field, s)
	}
}

// checkOptions fails unless every accepted option that reaches the
// sandbox's files is one token.
func checkOptions(t *testing.T, o sandbox.Options) {
	t.Helper()
	if o.Hostname != "" {
		token(t, "hostname", o.Hostname)
	}
	if o.DomainName != "" {
		token(t, "domain_name", o.DomainName)
	}
	for _, s := range o.DNSSearch {
		token(t, "dns_search", s)
	}
	for _, s := range o.DNSOptions {
		token(t, "dns_options", s)
	}
	for _, h := range o.ExtraHosts {
		token(t, "extra_hosts name", h.Name)
	}
}

// checkConnect fails unless a connect's accepted names are one token.
func checkConnect(t *testing.T, c controller.Connect) {
	t.Helper()
	if c.Name != "" {
		token(t, "name", c.Name)
	}
	for _, a := range c.Aliases {
		token(t, "aliases", a)
	}
	for k, v := range c.DriverOpts {
		// Logged and handed to a plugin: one line each.
		if strings.ContainsFunc(k+v, unicode.IsControl) || !utf8.ValidString(k+v) {
			t.Errorf("driver option %q=%q accepted", k, v)
		}
	}
}
