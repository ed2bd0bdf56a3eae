package plugintest

import (
	"os"
	"regexp"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

var hclFence = regexp.MustCompile("(?s)```hcl\n(.*?)```")

// ReadmeConfigs decodes the plugin's `config` block in every ```hcl example
// of the README at path the way the host does: it finds the block
// `<blockType> "<name>"`, decodes its `config` body against schema and
// returns, per example, the cty JSON the host would send (an example
// without a config body gives all-null attributes). Any diagnostic, or a
// README with no such block, fails the test.
func ReadmeConfigs(t testing.TB, path, blockType, name string, schema *pb.Schema) [][]byte {
	t.Helper()
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	spec := hcldec.ObjectSpec{}
	for _, a := range schema.GetAttributes() {
		ty, err := ctyjson.UnmarshalType(a.GetType())
		if err != nil {
			t.Fatal(err)
		}
		spec[a.GetName()] = &hcldec.AttrSpec{Name: a.GetName(), Type: ty, Required: a.GetRequired()}
	}
	var out [][]byte
	for i, m := range hclFence.FindAllSubmatch(readme, -1) {
		file, diags := hclsyntax.ParseConfig(m[1], path, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("%s example %d: %s", path, i+1, diags)
		}
		for _, b := range file.Body.(*hclsyntax.Body).Blocks {
			if b.Type != blockType || len(b.Labels) != 1 || b.Labels[0] != name {
				continue
			}
			var body hcl.Body = hcl.EmptyBody()
			for _, inner := range b.Body.Blocks {
				if inner.Type == "config" {
					body = inner.Body
				}
			}
			val, diags := hcldec.Decode(body, spec, nil)
			if diags.HasErrors() {
				t.Fatalf("%s example %d: config of %s %q against the plugin's schema: %s", path, i+1, blockType, name, diags)
			}
			raw, err := ctyjson.Marshal(val, val.Type())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, raw)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no ```hcl example with a %s %q block", path, blockType, name)
	}
	return out
}

// SchemaOf is sdk.MustSchemaFor for tests.
func SchemaOf(t testing.TB, config any) *pb.Schema {
	t.Helper()
	s, err := sdk.SchemaFor(config)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
