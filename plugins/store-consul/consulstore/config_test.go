package consulstore

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

// configJSON returns what the host sends for a `config` block that sets
// the attributes in set: cty JSON of the schema's object type, with every
// attribute the block leaves out null.
func configJSON(t testing.TB, set map[string]cty.Value) []byte {
	t.Helper()
	ty, err := sdk.SchemaType(sdk.MustSchemaFor(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]cty.Value{}
	for name, aty := range ty.AttributeTypes() {
		vals[name] = cty.NullVal(aty)
	}
	maps.Copy(vals, set)
	raw, err := ctyjson.Marshal(cty.ObjectVal(vals), ty)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParse(t *testing.T) {
	defaults := settings{address: "127.0.0.1:8500", scheme: "http", timeout: 5 * time.Second}
	with := func(f func(*settings)) settings {
		s := defaults
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		raw  string
		want settings
		err  bool
	}{
		{name: "no config", raw: ``, want: defaults},
		{name: "all null", raw: `{"address":null,"scheme":null,"prefix":null,"timeout":null}`, want: defaults},
		{name: "empty object", raw: `{}`, want: defaults},
		{
			name: "plain http with a token",
			raw:  `{"address":"consul.service:8500","datacenter":"dc2","prefix":"cluster-a/","token":"s3cret","timeout":"750ms"}`,
			want: with(func(s *settings) {
				s.address, s.datacenter, s.prefix, s.token, s.timeout = "consul.service:8500", "dc2", "cluster-a/", "s3cret", 750*time.Millisecond
			}),
		},
		{
			name: "https with every TLS attribute",
			raw: `{"address":"[::1]:8501","scheme":"https","token_file":"/etc/sandnet/consul.token",
				"ca_file":"/etc/consul/ca.pem","cert_file":"/etc/consul/c.pem","key_file":"/etc/consul/c.key",
				"tls_server_name":"server.dc1.consul","insecure_skip_verify":false}`,
			want: with(func(s *settings) {
				s.address, s.scheme, s.tokenFile = "[::1]:8501", "https", "/etc/sandnet/consul.token"
				s.caFile, s.certFile, s.keyFile, s.serverName = "/etc/consul/ca.pem", "/etc/consul/c.pem", "/etc/consul/c.key", "server.dc1.consul"
			}),
		},
		{
			name: "https skipping verification",
			raw:  `{"scheme":"https","insecure_skip_verify":true}`,
			want: with(func(s *settings) { s.scheme, s.insecure = "https", true }),
		},
		{name: "URL as address", raw: `{"address":"http://127.0.0.1:8500"}`, err: true},
		{name: "address without port", raw: `{"address":"127.0.0.1"}`, err: true},
		{name: "address without host", raw: `{"address":":8500"}`, err: true},
		{name: "port out of range", raw: `{"address":"127.0.0.1:70000"}`, err: true},
		{name: "unknown scheme", raw: `{"scheme":"unix"}`, err: true},
		{name: "TLS file over http", raw: `{"ca_file":"/ca.pem"}`, err: true},
		{name: "skip verify over http", raw: `{"insecure_skip_verify":true}`, err: true},
		{name: "cert without key", raw: `{"scheme":"https","cert_file":"/c.pem"}`, err: true},
		{name: "relative CA file", raw: `{"scheme":"https","ca_file":"ca.pem"}`, err: true},
		{name: "relative token file", raw: `{"token_file":"token"}`, err: true},
		{name: "token with a newline", raw: `{"token":"a\nb"}`, err: true},
		{name: "token and token file", raw: `{"token":"a","token_file":"/t"}`, err: true},
		{name: "prefix without slash", raw: `{"prefix":"sandnet"}`, err: true},
		{name: "prefix with leading slash", raw: `{"prefix":"/sandnet/"}`, err: true},
		{name: "prefix with empty segment", raw: `{"prefix":"a//b/"}`, err: true},
		{name: "prefix with dot segment", raw: `{"prefix":"a/../b/"}`, err: true},
		{name: "bad timeout", raw: `{"timeout":"soon"}`, err: true},
		{name: "timeout without unit", raw: `{"timeout":"5"}`, err: true},
		{name: "zero timeout", raw: `{"timeout":"0s"}`, err: true},
		{name: "unknown attribute", raw: `{"addr":"127.0.0.1:8500"}`, err: true},
		{name: "wrong type", raw: `{"insecure_skip_verify":"maybe"}`, err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse([]byte(tc.raw))
			if tc.err {
				if !errors.Is(err, sdk.ErrInvalid) {
					t.Fatalf("parse(%s) = %+v, %v; want an error wrapping sdk.ErrInvalid", tc.raw, got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parse(%s) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
			}
		})
	}
}

// TestConfigureFiles checks what Configure reads: the token file (trimmed,
// refused when empty or missing) and the TLS files.
func TestConfigureFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "  0b1c-token\n")
	empty := write("empty", "\n")
	garbage := write("garbage.pem", "not a certificate")

	s := newTestStore()
	defer s.Close(t.Context())
	if err := s.Configure(t.Context(), configJSON(t, map[string]cty.Value{"token_file": cty.StringVal(token)})); err != nil {
		t.Fatal(err)
	}
	if got := s.c.token; got != "0b1c-token" {
		t.Fatalf("token read from token_file = %q, want it trimmed", got)
	}
	for name, set := range map[string]map[string]cty.Value{
		"empty token file":   {"token_file": cty.StringVal(empty)},
		"missing token file": {"token_file": cty.StringVal(filepath.Join(dir, "nope"))},
		"bad CA file":        {"scheme": cty.StringVal("https"), "ca_file": cty.StringVal(garbage)},
		"missing cert files": {"scheme": cty.StringVal("https"), "cert_file": cty.StringVal(filepath.Join(dir, "c.pem")), "key_file": cty.StringVal(filepath.Join(dir, "c.key"))},
	} {
		if err := newTestStore().Configure(t.Context(), configJSON(t, set)); !errors.Is(err, sdk.ErrInvalid) {
			t.Errorf("%s: Configure = %v, want sdk.ErrInvalid", name, err)
		}
	}
}

// TestREADME decodes every HCL example in README.md the way the host
// does: the `store "consul"` block's `config` body against the plugin's
// declared schema, then parse on the cty JSON the host would send.
func TestREADME(t *testing.T) {
	for i, raw := range plugintest.ReadmeConfigs(t, filepath.Join("..", "README.md"), "store", Name, sdk.MustSchemaFor(Config{})) {
		set, err := parse(raw)
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		t.Logf("example %d: %s → %+v", i, raw, set)
	}
}

// TestSchema checks what the host learns from Info: every attribute the
// README documents, all optional and described, and global scope.
func TestSchema(t *testing.T) {
	pi, err := Info("test").Proto(sdk.KindStore)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"address": false, "scheme": false, "datacenter": false, "prefix": false,
		"token": false, "token_file": false, "ca_file": false, "cert_file": false, "key_file": false,
		"tls_server_name": false, "insecure_skip_verify": false, "timeout": false,
	}
	got := map[string]bool{}
	for _, a := range pi.GetConfigSchema().GetAttributes() {
		got[a.GetName()] = a.GetRequired()
		if a.GetDescription() == "" {
			t.Errorf("attribute %q has no description", a.GetName())
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("schema attributes (name: required) = %v, want %v", got, want)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if !containsAttr(readme, name) {
			t.Errorf("README.md does not document attribute %q", name)
		}
	}
	if want := []string{sdk.CapabilityGlobalScope, sdk.CapabilityLease}; pi.GetName() != Name || !slices.Equal(pi.GetCapabilities(), want) {
		t.Fatalf("info = %v, want name %s and capabilities %v", pi, Name, want)
	}
}

// containsAttr reports whether the README has a bullet for the attribute.
func containsAttr(readme []byte, name string) bool {
	return strings.Contains(string(readme), "* `"+name+"`")
}
