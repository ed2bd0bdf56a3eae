package boltstore

import (
	"errors"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

// configJSON returns what the host sends for a `config` block setting
// path and the attributes in set: cty JSON of the schema's object type,
// with every attribute the block leaves out null.
func configJSON(t testing.TB, path string, set map[string]cty.Value) []byte {
	t.Helper()
	ty, err := sdk.SchemaType(sdk.MustSchemaFor(Config{}))
	if err != nil {
		t.Fatal(err)
	}
	vals := map[string]cty.Value{}
	for name, aty := range ty.AttributeTypes() {
		vals[name] = cty.NullVal(aty)
	}
	vals["path"] = cty.StringVal(path)
	maps.Copy(vals, set)
	raw, err := ctyjson.Marshal(cty.ObjectVal(vals), ty)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want settings
		err  bool
	}{
		{
			name: "path only",
			raw:  `{"path":"/var/lib/sandnet/store.db","timeout":null,"no_sync":null}`,
			want: settings{path: "/var/lib/sandnet/store.db", timeout: time.Second},
		},
		{
			name: "attributes left out",
			raw:  `{"path":"/var/lib/sandnet/store.db"}`,
			want: settings{path: "/var/lib/sandnet/store.db", timeout: time.Second},
		},
		{
			name: "every attribute",
			raw:  `{"path":"/tmp/x/../s.db","timeout":"250ms","no_sync":true}`,
			want: settings{path: "/tmp/s.db", timeout: 250 * time.Millisecond, noSync: true},
		},
		{name: "no config", raw: ``, err: true},
		{name: "missing path", raw: `{"path":null,"timeout":"1s","no_sync":null}`, err: true},
		{name: "empty path", raw: `{"path":""}`, err: true},
		{name: "relative path", raw: `{"path":"store.db"}`, err: true},
		{name: "bad timeout", raw: `{"path":"/s.db","timeout":"soon"}`, err: true},
		{name: "timeout without unit", raw: `{"path":"/s.db","timeout":"5"}`, err: true},
		{name: "zero timeout", raw: `{"path":"/s.db","timeout":"0s"}`, err: true},
		{name: "negative timeout", raw: `{"path":"/s.db","timeout":"-1s"}`, err: true},
		{name: "unknown attribute", raw: `{"path":"/s.db","sync":true}`, err: true},
		{name: "wrong type", raw: `{"path":"/s.db","no_sync":"maybe"}`, err: true},
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

// TestREADME decodes every HCL example in README.md the way the host
// does: the `store "bolt"` block's `config` body against the plugin's
// declared schema, then parse on the cty JSON the host would send.
func TestREADME(t *testing.T) {
	for i, raw := range plugintest.ReadmeConfigs(t, filepath.Join("..", "README.md"), "store", "bolt", sdk.MustSchemaFor(Config{})) {
		set, err := parse(raw)
		if err != nil {
			t.Fatalf("example %d: %v", i, err)
		}
		t.Logf("example %d: %s → %+v", i, raw, set)
	}
}

// TestSchema checks what the host learns from Info: the attributes the
// README documents, path required.
func TestSchema(t *testing.T) {
	pi, err := Info("test").Proto(sdk.KindStore)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"path": true, "timeout": false, "no_sync": false}
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
	if pi.GetName() != "bolt" || !slices.Equal(pi.GetCapabilities(), []string{sdk.CapabilityLease}) {
		t.Fatalf("info = %v, want name bolt and only the lease capability (local scope)", pi)
	}
}
