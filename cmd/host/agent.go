package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/config"
)

func agentCmd(args []string) int {
	fs := newFlags("agent", "")
	file := fs.String("config", "/etc/sandnet/config.hcl", "agent config file (HCL)")
	level := fs.String("log-level", "", "log level: trace, debug, info, warn, error (default: the config's, else info)")
	jsonLogs := fs.Bool("log-json", false, "log in JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if len(pos) > 0 {
		// `sandnet agent FILE` would otherwise run on the default file.
		fmt.Fprintf(os.Stderr, "sandnet: agent takes no arguments (did you mean --config %s?)\n", pos[0])
		fmt.Fprintf(os.Stderr, "See '%s -h'.\n", fs.Name())
		return 2
	}
	cfg, diags := config.Load(*file)
	if !diags.HasErrors() {
		// What can be checked without starting anything, reported at
		// its block, before anything is made.
		diags = append(diags, checkPlugins(cfg, false, true)...)
	}
	if diags.HasErrors() {
		_ = config.FormatDiagnostics(os.Stderr, cfg.Files(), diags)
		return 1
	}
	if *level == "" {
		*level = cfg.Log.Level
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "sandnet",
		Level:      hclog.LevelFromString(*level),
		JSONFormat: *jsonLogs || cfg.Log.JSON,
		Output:     os.Stderr,
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	a := agent.New(cfg, log)
	if err := a.Start(ctx); err != nil {
		return startFailed(cfg, err)
	}
	a.Notify(daemon.SdNotifyReady)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-hup:
			// The outcome is logged; a rejected file leaves the agent as
			// it was. The reload runs beside this loop, so that SIGTERM
			// is heard while a driver holds it up; a SIGHUP meanwhile is
			// refused (logged), as a second POST /v1/reload is.
			go func() { _, _ = a.Reload(ctx) }()
		case <-ctx.Done():
		}
	}
	log.Info("shutting down", "signal", context.Cause(ctx))
	a.Notify(daemon.SdNotifyStopping)
	a.Stop()
	return 0
}

// startFailed reports why the agent did not start: a plugin's failure at
// its config block's position (the decode errors of its config block at
// theirs), as `config validate` does; anything else as one line.
func startFailed(cfg *config.Config, err error) int {
	var de *config.DiagnosticsError
	var pe *agent.PluginError
	switch {
	case errors.As(err, &de):
		_ = config.FormatDiagnostics(os.Stderr, cfg.Files(), de.Diags)
	case errors.As(err, &pe):
		r := pe.Block.DeclRange
		_ = config.FormatDiagnostics(os.Stderr, cfg.Files(), hcl.Diagnostics{{
			Severity: hcl.DiagError, Summary: "Plugin failed to start", Detail: pe.Err.Error(), Subject: &r,
		}})
	default:
		return fail(fmt.Errorf("agent failed to start: %w", err))
	}
	return 1
}
