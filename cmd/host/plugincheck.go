package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/plugincheck"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// pluginCheckCmd starts a plugin binary as the agent would and runs the
// SDK's conformance suite of its kind against it: a driver in a throwaway
// network namespace of its own (as root; see nstest.Isolate), a store where
// the command runs, so that it reaches its backend. Exit 0: every case
// passed; 1: a case failed or was skipped, or the binary could not be
// checked; 2: usage.
func pluginCheckCmd(args []string) int {
	fs := newFlags("plugin check", "BINARY")
	var o plugincheck.Options
	var netOpts stringList
	fs.StringVar(&o.Kind, "kind", "", "driver or store (default: the kind the plugin reports)")
	fs.StringVar(&o.ConfigFile, "config", "", "HCL file with the plugin's driver or store block (a whole agent config or just the block); its config block is sent to the plugin")
	fs.StringVar(&o.Checksum, "checksum", "", "pinned SHA-256 of the binary (sha256:<hex>); default: the block's checksum, if any")
	fs.StringVar(&o.AdvertiseAddr, "advertise-addr", "", "advertise address (an IP address) the suite's network carries, which makes it a global network as the agent sends one (the overlay driver needs it); the check puts it on "+plugincheck.Uplink+" in its namespace. Default: the --config file's advertise_addr")
	fs.Var(&netOpts, "o", "driver option key=value of the network the driver suite creates (repeatable), e.g. -o parent="+plugincheck.Uplink)
	fs.DurationVar(&o.CaseTimeout, "case-timeout", plugincheck.DefaultCaseTimeout, "how long one case may run before its plugin is stopped and the case fails as hung")
	format := fs.String("format", "table", "output format: table or json")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if len(pos) != 1 {
		return wrongArgs(fs, pos)
	}
	if *format != "table" && *format != "json" {
		return fail(fmt.Errorf("-format: %q is not table or json", *format))
	}
	o.Path = pos[0]
	for _, kv := range netOpts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fail(fmt.Errorf("-o %q: want key=value", kv))
		}
		if o.NetworkOptions == nil {
			o.NetworkOptions = map[string]string{}
		}
		o.NetworkOptions[k] = v
	}
	run := checkRun{o: o, json: *format == "json", out: os.Stdout}
	if plugincheck.StoreCheck(o) {
		return run.Run()
	}
	code, err := nstest.Isolate(run)
	if err != nil {
		return fail(fmt.Errorf("plugin check: cannot make a throwaway network namespace to run the plugin in: %w", err))
	}
	return code
}

// checkRun is the check proper, run inside the throwaway namespace.
type checkRun struct {
	o    plugincheck.Options
	json bool
	out  io.Writer
}

func (c checkRun) Run() int {
	progress := func(pc plugincheck.Case) {
		if c.json {
			return
		}
		line := fmt.Sprintf("%-4s  %s (%.2fs)", pc.Result, pc.Name, pc.Seconds)
		if pc.Message != "" {
			line += ": " + pc.Message
		}
		fmt.Fprintln(c.out, line)
	}
	if !c.json {
		fmt.Fprintf(c.out, "checking %s\n", c.o.Path)
	}
	rep, err := plugincheck.Run(context.Background(), c.o, progress)
	if err != nil {
		return c.verdict(err)
	}
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		result := "FAIL"
		switch {
		case rep.OK:
			result = "ok"
		case rep.Failed == 0 && rep.Skipped > 0:
			result = "FAIL (skipped cases were not verified)"
		}
		fmt.Fprintf(c.out, "%s plugin %q %s (protocol %d; speaks %s; sdk %s): %d passed, %d failed, %d skipped: %s\n",
			rep.Kind, rep.Name, rep.Version, rep.Protocol, protocols(rep.Protocols), sdkVersion(rep.SDKVersion), rep.Passed, rep.Failed, rep.Skipped, result)
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// protocols lists protocol versions as "1, 2"; a plugin that lists none
// (go-plugin negotiated without its list) shows "?".
func protocols(vs []int32) string {
	if len(vs) == 0 {
		return "?"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = strconv.Itoa(int(v))
	}
	return strings.Join(s, ", ")
}

// verdict prints why the plugin could not be checked: one line, then the
// config diagnostics with their positions when there are any.
func (c checkRun) verdict(err error) int {
	v, ok := err.(*plugincheck.Verdict)
	if !ok {
		v = &plugincheck.Verdict{Reason: err.Error()}
	}
	var diags strings.Builder
	_ = config.FormatDiagnostics(&diags, v.Files, v.Diagnostics)
	if c.json {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		_ = enc.Encode(struct {
			OK          bool     `json:"ok"`
			Error       string   `json:"error"`
			Diagnostics []string `json:"diagnostics,omitempty"`
		}{false, v.Reason, diagLines(diags.String())})
		return 1
	}
	fmt.Fprintf(os.Stderr, "sandnet: plugin check: %s\n", v.Reason)
	fmt.Fprint(os.Stderr, diags.String())
	return 1
}

// diagLines keeps the FILE:LINE:COL lines of formatted diagnostics,
// dropping the source snippets under them.
func diagLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			out = append(out, l)
		}
	}
	return out
}
