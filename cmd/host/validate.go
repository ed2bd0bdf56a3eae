package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/plugin"
)

// validateCmd checks a config file: its syntax and schema, that every
// plugin binary it names exists and matches its pinned checksum, and —
// unless -offline — each plugin's `config` block against the schema that
// plugin declares (each plugin is started only to ask for its schema, then
// stopped). Plugin blocks are checked even when the rest of the file has
// errors, so that one run reports every problem.
func validateCmd(args []string) int {
	fs := newFlags("config validate", "FILE")
	offline := fs.Bool("offline", false, "do not start plugins to check their config blocks")
	file := fs.String("config", "", "the file to check, as every other command names it (or give FILE)")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if *file != "" {
		if len(pos) > 0 {
			fmt.Fprintf(os.Stderr, "sandnet: config validate: --config %s and %s: name the file once\n", *file, strings.Join(pos, " "))
			return 2
		}
		pos = []string{*file}
	}
	if len(pos) != 1 {
		return wrongArgs(fs, pos)
	}
	cfg, diags := config.Load(pos[0])
	diags = append(diags, checkPlugins(cfg, diags.HasErrors(), *offline)...)
	_ = config.FormatDiagnostics(os.Stderr, cfg.Files(), diags)
	if diags.HasErrors() {
		return 1
	}
	fmt.Printf("%s: valid\n", pos[0])
	return 0
}

// checkPlugins checks the plugin blocks of cfg, each reported at its
// position: the binary exists and is executable, it matches the pinned
// checksum, and — unless offline — its config block decodes against the
// schema the plugin declares (which starts the plugin). A block with a
// problem is not checked further. With coreErrors (the file had other
// errors), the default store of a file without a store block is left out:
// the file may have failed to say which store it wants.
func checkPlugins(cfg *config.Config, coreErrors, offline bool) hcl.Diagnostics {
	var blocks []config.PluginBlock
	for _, b := range cfg.Plugins() {
		if !(coreErrors && b.Implicit) {
			blocks = append(blocks, b)
		}
	}
	diags := config.CheckBinaries(cfg)
	if coreErrors {
		diags = slices.DeleteFunc(diags, func(d *hcl.Diagnostic) bool {
			return !slices.ContainsFunc(blocks, func(b config.PluginBlock) bool { return *d.Subject == b.DeclRange })
		})
	}
	bad := map[hcl.Range]bool{}
	for _, d := range diags {
		bad[*d.Subject] = true
	}
	for _, b := range blocks {
		if !config.ValidPluginName(b.Name) {
			// Load said so; its binary's path would be the name's,
			// outside plugin_dir (../../bin/true): nothing runs it.
			bad[b.DeclRange] = true
		}
	}
	unchecked := slices.DeleteFunc(slices.Clone(blocks), func(b config.PluginBlock) bool { return bad[b.DeclRange] })
	for _, d := range plugin.CheckChecksums(unchecked, cfg.PluginDir) {
		diags = append(diags, d)
		bad[*d.Subject] = true
	}
	if offline {
		return diags
	}
	m := plugin.NewManager(hclog.NewNullLogger(), plugin.Options{})
	defer m.Shutdown()
	for _, b := range blocks {
		if bad[b.DeclRange] {
			continue
		}
		info, err := m.Inspect(context.Background(), plugin.Spec{Kind: b.Kind, Name: b.Name, Path: b.Binary(cfg.PluginDir), Args: b.Args, Checksum: b.Checksum})
		if err != nil {
			r := b.DeclRange
			diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Plugin failed to start", Detail: err.Error(), Subject: &r})
			continue
		}
		_, d := config.DecodePluginConfig(b, info.GetConfigSchema())
		diags = append(diags, d...)
	}
	return diags
}
