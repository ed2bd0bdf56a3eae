package main

import (
	"context"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/plugin"
)

// validateCmd checks a config file: its syntax and schema, that every
// plugin binary it names exists, and — unless -offline — each plugin's
// `config` block against the schema that plugin declares (each plugin is
// started only to ask for its schema, then stopped).
func validateCmd(args []string) int {
	fs := newFlags("config validate", "FILE")
	offline := fs.Bool("offline", false, "do not start plugins to check their config blocks")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	cfg, diags := config.Load(pos[0])
	if !diags.HasErrors() {
		diags = append(diags, config.CheckBinaries(cfg)...)
	}
	if !diags.HasErrors() && !*offline {
		diags = append(diags, checkPluginConfigs(cfg)...)
	}
	_ = config.FormatDiagnostics(os.Stderr, cfg.Files(), diags)
	if diags.HasErrors() {
		return 1
	}
	fmt.Printf("%s: valid\n", pos[0])
	return 0
}

func checkPluginConfigs(cfg *config.Config) hcl.Diagnostics {
	m := plugin.NewManager(hclog.NewNullLogger(), plugin.Options{})
	defer m.Shutdown()
	var diags hcl.Diagnostics
	for _, b := range append([]config.PluginBlock{cfg.Store}, cfg.Drivers...) {
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
