package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// A config.json as a user might hand it over: runc spec's fields, one of
// the user's own hooks in each list sandnet edits, a mount at
// /etc/resolv.conf, fields no spec version knows at every level sandnet
// edits, and no network namespace.
const userConfig = `{
	"ociVersion": "1.0.2-dev",
	"x-vendor": {"keep": [1, 2, {"deep": true}]},
	"process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"},
	"root": {"path": "rootfs", "readonly": true},
	"hostname": "runc",
	"hooks": {
		"createRuntime": [{"path": "/usr/bin/mine", "args": ["mine", "up"]}],
		"poststop": [{"path": "/usr/bin/mine", "args": ["mine", "down"]}],
		"x-later": [{"path": "/usr/bin/later"}]
	},
	"mounts": [
		{"destination": "/proc", "type": "proc", "source": "proc"},
		{"destination": "/etc/resolv.conf", "type": "bind", "source": "/etc/resolv.conf", "options": ["rbind", "ro"]},
		{"destination": "/data", "type": "bind", "source": "/srv", "x-mount": "kept"}
	],
	"linux": {
		"namespaces": [{"type": "pid"}, {"type": "mount"}],
		"x-linux": 7
	}
}`

func writeBundle(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// prepareBundle makes the edits of `oci prepare` (hooks at socket s,
// resolv.conf and hosts from dir f) and saves them.
func prepareBundle(t *testing.T, dir, s, f, hostname string) error {
	t.Helper()
	b, err := openBundle(dir)
	if err != nil {
		return err
	}
	if err := b.ownNamespace(specs.NetworkNamespace, "sandnet"); err != nil {
		return err
	}
	if hostname != "" {
		if err := b.setHostname(hostname); err != nil {
			return err
		}
	}
	if err := b.setHooks(ociHook("/bin/sandnet", "create", s), ociHook("/bin/sandnet", "delete", s)); err != nil {
		return err
	}
	if err := b.setMounts(
		specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: f + "/resolv.conf", Options: []string{"rbind", "ro"}},
		specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: f + "/hosts", Options: []string{"rbind", "ro"}},
	); err != nil {
		return err
	}
	return b.save()
}

func readSpec(t *testing.T, dir string) (specs.Spec, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	var m map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return s, m
}

func TestBundleEdits(t *testing.T) {
	dir := writeBundle(t, userConfig)
	// Prepared twice, for two sandboxes: the second replaces the first's
	// hooks and mounts.
	if err := prepareBundle(t, dir, "/run/old.sock", "/files/old", ""); err != nil {
		t.Fatal(err)
	}
	if err := prepareBundle(t, dir, "/run/s.sock", "/files/new", "web"); err != nil {
		t.Fatal(err)
	}
	s, m := readSpec(t, dir)

	create := specs.Hook{Path: "/bin/sandnet", Args: []string{"sandnet", "oci-hook", "create", "--socket", "/run/s.sock"}}
	del := specs.Hook{Path: "/bin/sandnet", Args: []string{"sandnet", "oci-hook", "delete", "--socket", "/run/s.sock"}}
	mine := func(arg string) specs.Hook { return specs.Hook{Path: "/usr/bin/mine", Args: []string{"mine", arg}} }
	if want := []specs.Hook{create, mine("up")}; !reflect.DeepEqual(s.Hooks.CreateRuntime, want) {
		t.Errorf("createRuntime hooks = %+v, want %+v", s.Hooks.CreateRuntime, want)
	}
	if want := []specs.Hook{mine("down"), del}; !reflect.DeepEqual(s.Hooks.Poststop, want) {
		t.Errorf("poststop hooks = %+v, want %+v", s.Hooks.Poststop, want)
	}
	var dests []string
	for _, mt := range s.Mounts {
		dests = append(dests, mt.Destination+"="+mt.Source)
	}
	if got, want := strings.Join(dests, " "), "/proc=proc /data=/srv /etc/resolv.conf=/files/new/resolv.conf /etc/hosts=/files/new/hosts"; got != want {
		t.Errorf("mounts = %s, want %s", got, want)
	}
	var nss []string
	for _, ns := range s.Linux.Namespaces {
		nss = append(nss, string(ns.Type))
	}
	if got := strings.Join(nss, " "); got != "pid mount network uts" {
		t.Errorf("namespaces = %s, want pid mount network uts", got)
	}
	if s.Hostname != "web" {
		t.Errorf("hostname = %q, want web", s.Hostname)
	}
	// What sandnet does not know stays.
	for path, want := range map[string]any{
		"x-vendor":       map[string]any{"keep": []any{1.0, 2.0, map[string]any{"deep": true}}},
		"hooks.x-later":  []any{map[string]any{"path": "/usr/bin/later"}},
		"linux.x-linux":  7.0,
		"mounts.x-mount": "kept",
		"root.readonly":  true,
	} {
		var got any = m
		for _, k := range strings.Split(path, ".") {
			switch v := got.(type) {
			case map[string]any:
				got = v[k]
			case []any: // mounts: the one carrying the key
				got = nil
				for _, e := range v {
					if x, ok := e.(map[string]any)[k]; ok {
						got = x
					}
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "config.json")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config.json mode after the edit: %v, %v; want 0600", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".config.json-*")); len(left) > 0 {
		t.Errorf("temporary files left in the bundle: %v", left)
	}
}

func TestBundleErrorsChangeNothing(t *testing.T) {
	for _, tc := range []struct {
		name, config, hostname, want string
	}{
		{"joins a network namespace", `{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "network", "path": "/run/netns/x"}]}}`, "", "joins the network namespace at /run/netns/x"},
		{"joins a UTS namespace", `{"ociVersion": "1.0.2", "linux": {"namespaces": [{"type": "uts", "path": "/proc/1/ns/uts"}]}}`, "h", "joins the uts namespace at /proc/1/ns/uts"},
		{"not JSON", `{"ociVersion": `, "", "not an OCI config"},
		{"hooks not an object", `{"ociVersion": "1.0.2", "hooks": [1]}`, "", "not an OCI config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeBundle(t, tc.config)
			err := prepareBundle(t, dir, "/s", "/f", tc.hostname)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want one containing %q", err, tc.want)
			}
			if raw, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(raw) != tc.config {
				t.Fatalf("config.json changed:\n%s", raw)
			}
		})
	}
	t.Run("no config.json", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := openBundle(dir); err == nil || !strings.Contains(err.Error(), "no config.json") {
			t.Fatalf("error = %v, want one saying there is no config.json", err)
		}
		if _, err := openBundle(filepath.Join(dir, "absent")); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Fatalf("error = %v, want one saying the bundle is not a directory", err)
		}
	})
}

// TestBundleKeepsOthersHooksAndOwner: a hook of another tool is kept even
// when its arguments look like sandnet's (a wrapper's "oci-hook create"),
// and config.json keeps its owner through the edit.
func TestBundleKeepsOthersHooksAndOwner(t *testing.T) {
	dir := writeBundle(t, `{"ociVersion": "1.0.2", "hooks": {"createRuntime": [{"path": "/usr/bin/other-tool", "args": ["other-tool", "oci-hook", "create"]}]}}`)
	owned := os.Geteuid() == 0
	if owned {
		if err := os.Chown(filepath.Join(dir, "config.json"), 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	if err := prepareBundle(t, dir, "/run/s.sock", "/files", ""); err != nil {
		t.Fatal(err)
	}
	s, _ := readSpec(t, dir)
	other := specs.Hook{Path: "/usr/bin/other-tool", Args: []string{"other-tool", "oci-hook", "create"}}
	if len(s.Hooks.CreateRuntime) != 2 || !reflect.DeepEqual(s.Hooks.CreateRuntime[1], other) {
		t.Errorf("createRuntime hooks = %+v; want sandnet's, then other-tool's", s.Hooks.CreateRuntime)
	}
	st, err := os.Stat(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); owned && (sys.Uid != 65534 || sys.Gid != 65534) {
		t.Errorf("config.json's owner after the edit: %d:%d, want 65534:65534", sys.Uid, sys.Gid)
	}
}
