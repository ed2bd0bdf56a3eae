package config

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// PluginBlock is one `store` or `driver` block.
type PluginBlock struct {
	// Kind is sdk.KindStore or sdk.KindDriver; Name is the block's label.
	Kind, Name string
	// Command, when not empty, is the absolute path of the plugin binary,
	// overriding the plugin_dir lookup; Args are its arguments.
	Command string
	Args    []string
	// Checksum is the pinned SHA-256 of the binary as 64 lowercase hex
	// digits, or empty when the block pins none.
	Checksum string
	// Config is the plugin's `config` body, undecoded: only the plugin
	// knows its schema (see DecodePluginConfig). Nil when the block has no
	// config block.
	Config hcl.Body
	// DeclRange is the block's header (`driver "bridge"`); ConfigRange is
	// its config block's header, or DeclRange when it has none.
	DeclRange, ConfigRange hcl.Range
	// Implicit is true for the default store of a file with no store
	// block; its ranges are then the start of the file.
	Implicit bool
}

// Binary returns the path of the plugin's executable: Command when the
// block sets it, otherwise pluginDir/sandnet-<kind>-<name>.
func (b PluginBlock) Binary(pluginDir string) string {
	if b.Command != "" {
		return b.Command
	}
	return filepath.Join(pluginDir, "sandnet-"+b.Kind+"-"+b.Name)
}

// String names the block the way the file spells its header.
func (b PluginBlock) String() string { return fmt.Sprintf("%s %q", b.Kind, b.Name) }

var pluginSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "command"}, {Name: "args"}, {Name: "checksum"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "config"}},
}

// pluginName is what a label must look like to name a binary
// sandnet-<kind>-<name> in plugin_dir.
var pluginName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidPluginName says whether name can name a plugin binary
// sandnet-<kind>-<name> in plugin_dir (Load refuses a block whose name
// cannot, which nothing may then start).
func ValidPluginName(name string) bool { return pluginName.MatchString(name) }

func (d *decoder) plugin(b *hcl.Block) PluginBlock {
	p := PluginBlock{Kind: b.Type, Name: b.Labels[0], DeclRange: b.DefRange, ConfigRange: b.DefRange}
	if !pluginName.MatchString(p.Name) {
		d.errorf(b.LabelRanges[0], "Invalid plugin name",
			"%q cannot name a plugin binary: use up to 64 lowercase letters, digits, '.', '_' and '-', starting with a letter or digit.",
			p.Name)
	}
	content, diags := b.Body.Content(pluginSchema)
	d.add(diags)
	if a := content.Attributes["command"]; a != nil {
		d.path(a, &p.Command)
	}
	if a := content.Attributes["args"]; a != nil {
		d.decode(a, &p.Args)
	}
	if a := content.Attributes["checksum"]; a != nil {
		var s string
		if d.decode(a, &s) {
			sum, err := ParseChecksum(s)
			if err != nil {
				d.errorf(a.Expr.Range(), "Invalid checksum",
					"%v; write the checksum as \"sha256:\" followed by the 64 hex digits that sha256sum prints.", err)
			}
			p.Checksum = sum
		}
	}
	for i, cb := range content.Blocks {
		if i > 0 {
			d.errorf(cb.DefRange, "Duplicate config block",
				"The %s block already has a config block at %s; put all settings in one.", p, pos(content.Blocks[0].DefRange))
			continue
		}
		p.Config, p.ConfigRange = cb.Body, cb.DefRange
	}
	return p
}

// ParseChecksum turns "sha256:<hex>" into lowercase hex.
func ParseChecksum(s string) (string, error) {
	algo, sum, ok := strings.Cut(s, ":")
	if !ok {
		return "", fmt.Errorf("%q has no algorithm prefix", s)
	}
	if !strings.EqualFold(algo, "sha256") {
		return "", fmt.Errorf("%q is not a supported algorithm, only sha256 is", algo)
	}
	b, err := hex.DecodeString(sum)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("%q is not 64 hexadecimal digits", sum)
	}
	return hex.EncodeToString(b), nil
}

// CheckBinaries reports, at each plugin block, a plugin binary that does
// not exist, is not a regular file, or is not executable. It is a separate
// step from Load because the binaries may be built after the config is
// written, and `config validate` on another machine should not need them.
func CheckBinaries(c *Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, p := range c.Plugins() {
		if !pluginName.MatchString(p.Name) {
			continue // reported by Load: the name cannot name a binary
		}
		path := p.Binary(c.PluginDir)
		var problem string
		fi, err := os.Stat(path)
		switch {
		case err != nil && os.IsNotExist(err):
			problem = fmt.Sprintf("plugin binary %s not found", path)
		case err != nil:
			problem = fmt.Sprintf("plugin binary %s: %v", path, err)
		case !fi.Mode().IsRegular():
			problem = fmt.Sprintf("plugin binary %s is not a regular file", path)
		case fi.Mode().Perm()&0o111 == 0:
			problem = fmt.Sprintf("plugin binary %s is not executable", path)
		default:
			continue
		}
		var hint string
		switch {
		case p.Command != "":
			hint = "check the block's command"
		case p.Implicit:
			hint = fmt.Sprintf("build it with make, or set plugin_dir (the config has no store block, so the default store %q is used)", p.Name)
		default:
			hint = "build it with make, or set command"
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Plugin binary not usable",
			Detail:   problem + ": " + hint,
			Subject:  p.DeclRange.Ptr(),
		})
	}
	return diags
}

// DecodePluginConfig decodes the config body of b against the schema the
// plugin declared and returns what the host sends the plugin: the cty
// JSON of an object holding every schema attribute, null where the body
// leaves it unset. Each problem is reported at its position in the file:
// an unknown argument (with a suggestion when one is close), a value of
// the wrong type, and a required argument left out (at the config block's
// header, or the plugin block's when there is no config block).
func DecodePluginConfig(b PluginBlock, schema *pb.Schema) ([]byte, hcl.Diagnostics) {
	ty, err := sdk.SchemaType(schema)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid plugin schema",
			Detail:   fmt.Sprintf("The %s plugin declared a config schema the host cannot use: %v.", b, err),
			Subject:  b.DeclRange.Ptr(),
		}}
	}
	// Required is checked below rather than by hcldec so that the error
	// can name the plugin and sit at the config block's header even when
	// the block is absent (hcl.EmptyBody has no position).
	spec := hcldec.ObjectSpec{}
	var names []string
	for _, a := range schema.GetAttributes() {
		spec[a.GetName()] = &hcldec.AttrSpec{Name: a.GetName(), Type: ty.AttributeType(a.GetName())}
		names = append(names, a.GetName())
	}
	sort.Strings(names)
	body := b.Config
	if body == nil {
		body = hcl.EmptyBody()
	}
	val, diags := hcldec.Decode(body, spec, nil)
	for _, diag := range diags {
		if diag.Subject == nil || diag.Subject.Filename == "" {
			diag.Subject = b.ConfigRange.Ptr()
		}
		if diag.Summary == "Unsupported argument" && !strings.Contains(diag.Detail, "Did you mean") {
			if len(names) == 0 {
				diag.Detail += fmt.Sprintf(" The %s plugin takes no settings.", b)
			} else {
				diag.Detail += fmt.Sprintf(" The %s plugin accepts: %s.", b, strings.Join(names, ", "))
			}
		}
		var block string
		if diag.Summary == "Unsupported block type" && !strings.Contains(diag.Detail, "Did you mean") {
			if _, err := fmt.Sscanf(diag.Detail, "Blocks of type %q", &block); err == nil {
				diag.Detail += fmt.Sprintf(" The %s plugin's config takes only arguments (name = value).%s", b, didYouMean(block, names))
			}
		}
		if b.Implicit {
			diag.Detail += fmt.Sprintf(" (The config has no store block, so the default store %q is used; add a store block to configure it.)", b.Name)
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	for _, a := range schema.GetAttributes() {
		if !a.GetRequired() || !val.GetAttr(a.GetName()).IsNull() {
			continue
		}
		detail := fmt.Sprintf("The %s plugin requires the argument %q in its config block, but it is not set.", b, a.GetName())
		if a.GetDescription() != "" {
			detail += fmt.Sprintf(" %s: %s.", a.GetName(), strings.TrimSuffix(a.GetDescription(), "."))
		}
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing required argument",
			Detail:   detail,
			Subject:  b.ConfigRange.Ptr(),
		})
	}
	if diags.HasErrors() {
		return nil, diags
	}
	if !val.IsWhollyKnown() {
		// Unreachable without an EvalContext, but Marshal would panic.
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unknown value in plugin config",
			Detail:   fmt.Sprintf("The config of the %s plugin has a value not known until later.", b),
			Subject:  b.ConfigRange.Ptr(),
		})
	}
	js, err := ctyjson.Marshal(val, ty)
	if err != nil {
		return nil, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot encode plugin config",
			Detail:   fmt.Sprintf("Encoding the config of the %s plugin: %v.", b, err),
			Subject:  b.ConfigRange.Ptr(),
		})
	}
	return js, diags
}
