package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/plugincheck"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
)

// checkResult is what a user of `sandnet plugin check` sees.
type checkResult struct {
	code           int
	stdout, stderr string
}

// pluginCheck runs `sandnet plugin check args...` from the built binary,
// started from the test's own throwaway namespace; the check makes a
// namespace of its own inside it and must leave nothing in the test's.
// Any run longer than two minutes fails the test.
func pluginCheck(t *testing.T, args ...string) checkResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	had := map[string]bool{}
	for _, l := range nstest.Links(t, nil) {
		had[l.Attrs().Name] = true
	}
	cmd := exec.CommandContext(ctx, bins.Sandnet, append([]string{"plugin", "check"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("plugin check %v did not finish in 2 minutes; output:\n%s%s", args, &stdout, &stderr)
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	for _, l := range nstest.Links(t, nil) {
		if name := l.Attrs().Name; !had[name] {
			t.Fatalf("plugin check %v left link %s in the namespace it was started from", args, name)
		}
	}
	return checkResult{code, stdout.String(), stderr.String()}
}

// wantNoTrace fails if the output looks like a Go panic or stack trace.
func (r checkResult) wantNoTrace(t *testing.T) {
	t.Helper()
	for _, s := range []string{"goroutine ", "panic(", ".go:", "runtime."} {
		if strings.Contains(r.stdout+r.stderr, s) {
			t.Errorf("output contains %q, like a Go trace:\n%s%s", s, r.stdout, r.stderr)
		}
	}
}

func fakePlugin(t *testing.T) string {
	t.Helper()
	return plugintest.Build(t, "./testdata/fakeplugin")
}

// fakeConfig writes a config holding the fake driver's block, with mode
// as its argument.
func fakeConfig(t *testing.T, bin, mode string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake.hcl")
	src := fmt.Sprintf("driver \"fake\" {\n  command = %q\n  args    = [%q]\n}\n", bin, mode)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPluginCheckPasses(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	boltHCL := filepath.Join(dir, "bolt.hcl")
	if err := os.WriteFile(boltHCL, []byte(fmt.Sprintf("store \"bolt\" {\n  config {\n    path = %q\n  }\n}\n", filepath.Join(dir, "store.db"))), 0o644); err != nil {
		t.Fatal(err)
	}
	overlayHCL := filepath.Join(dir, "overlay.hcl")
	if err := os.WriteFile(overlayHCL, []byte("advertise_addr = \"198.51.100.7\"\n\ndriver \"overlay\" {\n  config {\n    vxlan_port = 8472\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(bins.PluginDir, "sandnet-driver-overlay")
	// Every in-tree driver; the example plugins are checked by their own
	// modules' tests (examples/plugins/*: TestPluginCheck).
	for _, tc := range []struct {
		name  string
		args  []string
		cases int
	}{
		{"driver none", []string{filepath.Join(bins.PluginDir, "sandnet-driver-none")}, 6},
		{"driver host", []string{filepath.Join(bins.PluginDir, "sandnet-driver-host")}, 6},
		{"driver bridge, kind given", []string{"--kind", "driver", filepath.Join(bins.PluginDir, "sandnet-driver-bridge")}, 6},
		{"driver overlay, advertise address given", []string{"--advertise-addr", "192.0.2.1", overlay}, 6},
		{"driver overlay, advertise address from the agent's config", []string{"--config", overlayHCL, "-o", "com.sandnet.overlay.vni=4243", overlay}, 6},
		{"store bolt with its block", []string{"--config", boltHCL, filepath.Join(bins.PluginDir, "sandnet-store-bolt")}, 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pluginCheck(t, tc.args...)
			if r.code != 0 {
				t.Fatalf("exit %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
			}
			if n := strings.Count(r.stdout, "\npass  "); n != tc.cases {
				t.Errorf("%d pass lines, want %d:\n%s", n, tc.cases, r.stdout)
			}
			if want := fmt.Sprintf("(protocol 1; speaks 1; sdk %s): %d passed, 0 failed, 0 skipped: ok", sdk.Version, tc.cases); !strings.Contains(r.stdout, want) {
				t.Errorf("summary missing %q:\n%s", want, r.stdout)
			}
		})
	}
}

func TestPluginCheckJSON(t *testing.T) {
	nstest.RequireRoot(t)
	r := pluginCheck(t, "--format", "json", filepath.Join(bins.PluginDir, "sandnet-driver-none"))
	var rep plugincheck.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, r.stdout)
	}
	if r.code != 0 || !rep.OK || rep.Kind != "driver" || rep.Name != "none" || rep.Protocol != 1 || rep.SDKVersion != sdk.Version || !slices.Equal(rep.Protocols, []int32{sdk.ProtocolVersion}) || rep.Passed != 6 || len(rep.Cases) != 6 {
		t.Fatalf("exit %d, report %+v", r.code, rep)
	}
}

// TestPluginCheckMisbehaving checks the verdicts on a plugin that hangs or
// crashes mid-suite, hangs deleting the case's network once the case
// ended, or leaves links behind: the case fails with the reason, the
// others still run (each case has a process of its own), and the exit
// code is 1.
func TestPluginCheckMisbehaving(t *testing.T) {
	nstest.RequireRoot(t)
	bin := fakePlugin(t)
	for _, tc := range []struct {
		mode    string
		want    []string
		summary string // "" : "1 passed, 5 failed", only Capabilities passing
	}{
		{"hang", []string{"fail  NetworkIdempotent (", "hung: the case did not finish within 2s, so the plugin was stopped"}, ""},
		{"crash", []string{"the plugin process exited during the case: panic: fakeplugin: crashing as asked"}, ""},
		// A case whose own calls pass but whose network's delete hangs,
		// once it ended, fails too.
		{"hangdelete", []string{"fail  EndpointLifecycleIdempotent (2.", "DeleteNetwork, once the case ended: the plugin process ended during the call"}, ""},
		// So does one whose driver removes nothing it made.
		{"leak", []string{"left behind once the case deleted its endpoints and network (waited 5s): link fkleak"}, ""},
		// A Join replayed once the host moved the interface away.
		{"naivejoin", []string{"fail  AttachDetachIdempotent (", "as the replay after a driver restart does: veth fkh"}, "5 passed, 1 failed, 0 skipped: FAIL"},
		// An interface that never carries traffic once the host brings
		// it up (its veth peer left down): the host gives up on it.
		{"peerdown", []string{"fail  AttachDetachIdempotent (", "cannot carry traffic 5s later (its state is lower-layer-down)"}, "5 passed, 1 failed, 0 skipped: FAIL"},
		// An interface a Detach leaves in the sandbox, where the host
		// deletes nothing.
		{"sbnoleave", []string{"fail  AttachDetachIdempotent (", "the sandbox still holds [", "(veth)] 5s after Detach: a driver removes the interface it handed over"}, "5 passed, 1 failed, 0 skipped: FAIL"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			timeout := "2s"
			if tc.mode == "peerdown" || tc.mode == "sbnoleave" {
				timeout = "30s" // the suite waits 5s for the interface
			}
			r := pluginCheck(t, "--case-timeout", timeout, "--config", fakeConfig(t, bin, tc.mode), bin)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, r.stdout)
				}
			}
			summary := cmp.Or(tc.summary, "1 passed, 5 failed, 0 skipped: FAIL")
			if !strings.Contains(r.stdout, "pass  Capabilities") || !strings.Contains(r.stdout, summary) {
				t.Errorf("the other cases should still pass (%s):\n%s", summary, r.stdout)
			}
			r.wantNoTrace(t)
		})
	}
}

// TestPluginCheckRefuses checks every binary that cannot be checked gets
// one line saying why and exit 1.
func TestPluginCheckRefuses(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	write := func(name, src string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fake := fakePlugin(t)
	bolt := filepath.Join(bins.PluginDir, "sandnet-store-bolt")
	typo := write("typo.hcl", "store \"bolt\" {\n  config {\n    pth = \"x.db\"\n  }\n}\n", 0o644)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing file", []string{filepath.Join(dir, "nope")}, "nope: no such file"},
		{"directory", []string{dir}, "is a directory, not a plugin binary"},
		{"not executable", []string{write("noexec", "x", 0o644)}, "is not executable (mode 0644)"},
		{"not a program", []string{write("data", "just data", 0o755)}, "is not an executable program (no ELF header)"},
		{"shell script", []string{write("plugin.sh", "#!/bin/sh\necho hello\n", 0o755)}, "(a script: #!/bin/sh) is not a sandnet plugin: it printed \"hello\" instead of the plugin handshake"},
		{"silent script", []string{write("quiet.sh", "#!/bin/sh\nexit 0\n", 0o755)}, "is not a sandnet plugin: it printed nothing and exited without the plugin handshake"},
		{"other kind", []string{"--kind", "driver", bolt}, "is a store plugin (\"bolt\"), not a driver plugin"},
		{"protocol version", []string{"--config", fakeConfig(t, fake, "protocol2"), fake}, "speaks sandnet plugin protocol 2; this sandnet speaks 1"},
		{"checksum", []string{"--checksum", "sha256:" + strings.Repeat("0", 64), bolt}, "checksum mismatch: config pins sha256:000"},
		{"unknown key in config", []string{"--config", typo, bolt}, "the store \"bolt\" block's config does not match the plugin's schema"},
		{"bad kind", []string{"--kind", "router", bolt}, "--kind \"router\": want driver or store"},
		// The agent refuses an option the driver does not list; a check
		// with one would not be the agent's network.
		{"unlisted option", []string{"-o", "known=1", "-o", "other=2", fake}, "-o other: not a network option the driver lists (known: known); the agent refuses a network with it"},
		{"advertise interface name", []string{"--advertise-addr", "eth1", filepath.Join(bins.PluginDir, "sandnet-driver-overlay")}, "--advertise-addr \"eth1\": want a unicast IP address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := pluginCheck(t, tc.args...)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1:\n%s%s", r.code, r.stdout, r.stderr)
			}
			first, _, _ := strings.Cut(r.stderr, "\n")
			if !strings.HasPrefix(first, "sandnet: plugin check: ") || !strings.Contains(first, tc.want) {
				t.Fatalf("first line of stderr = %q, want the verdict %q", first, tc.want)
			}
			if strings.Contains(r.stdout, "pass  ") || strings.Contains(r.stdout, "fail  ") {
				t.Errorf("cases ran:\n%s", r.stdout)
			}
			if tc.name != "unknown key in config" && strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
				t.Errorf("verdict is not one line:\n%s", r.stderr)
			}
			r.wantNoTrace(t)
		})
	}
	t.Run("unknown key position", func(t *testing.T) {
		r := pluginCheck(t, "--config", typo, bolt)
		if want := typo + `:3:5: error: Unsupported argument; An argument named "pth" is not expected here. Did you mean "path"?`; !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(typo), "x.db")); err == nil {
			t.Error("the rejected config still opened a store")
		}
	})
}
