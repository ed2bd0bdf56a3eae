package plugin

import (
	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/core/config"
)

// CheckChecksums reports, at its block, each of blocks that pins a
// checksum its binary (under pluginDir) does not have: what `config
// validate` prints, and what a reload that would start such a block is
// refused with, before anything is applied.
func CheckChecksums(blocks []config.PluginBlock, pluginDir string) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, b := range blocks {
		if b.Checksum == "" {
			continue
		}
		if err := verifyChecksum(b.Binary(pluginDir), b.Checksum); err != nil {
			r := b.DeclRange
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin checksum mismatch",
				Detail: err.Error() + ": pin the binary's checksum (sha256sum prints it) or install the pinned build", Subject: &r})
		}
	}
	return diags
}
