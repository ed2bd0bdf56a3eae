package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// bundle is an OCI bundle's config.json as `oci prepare` edits it. It is
// held as raw JSON objects, decoded into the runtime-spec types only where
// an edit needs to look inside, so that whatever sandnet does not edit —
// fields of a newer spec, a runtime's own extensions — is written back as
// it was read.
type bundle struct {
	path     string // BUNDLE/config.json
	mode     fs.FileMode
	uid, gid int // config.json's owner, which a save keeps
	config   map[string]json.RawMessage
}

// hookMarker is the argument that tells sandnet's own hooks (args[1]) from
// any other hook of the bundle.
const hookMarker = "oci-hook"

// isOurHook reports whether h is a hook of sandnet's (ociHook's form:
// sandnet oci-hook create|delete …); another tool's hook stays whatever
// its arguments.
func isOurHook(h specs.Hook) bool {
	return len(h.Args) > 2 && h.Args[0] == "sandnet" && h.Args[1] == hookMarker && (h.Args[2] == "create" || h.Args[2] == "delete")
}

// openBundle reads dir/config.json; it must be a valid OCI config.
func openBundle(dir string) (*bundle, error) {
	path := filepath.Join(dir, "config.json")
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if st, serr := os.Stat(dir); serr != nil || !st.IsDir() {
			return nil, fmt.Errorf("bundle %s: not a directory", dir)
		}
		return nil, fmt.Errorf("bundle %s: no config.json (not an OCI bundle; `runc spec` writes one)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	var spec specs.Spec
	if err := json.Unmarshal(raw, &spec); err != nil {
		return nil, fmt.Errorf("%s: not an OCI config: %w", path, err)
	}
	b := &bundle{path: path, mode: st.Mode().Perm(), uid: -1, gid: -1}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		b.uid, b.gid = int(sys.Uid), int(sys.Gid)
	}
	if err := json.Unmarshal(raw, &b.config); err != nil || b.config == nil {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	return b, nil
}

// setHooks puts create first among the createRuntime hooks, so that the
// network is there for the bundle's own, and del last among the poststop
// hooks; sandnet hooks a previous prepare added, in any list, go.
func (b *bundle) setHooks(create, del specs.Hook) error {
	hooks, err := object(b.config["hooks"], "hooks")
	if err != nil {
		return err
	}
	lists := map[string][]json.RawMessage{}
	for name, raw := range hooks {
		list, err := array(raw, "hooks."+name)
		if err != nil {
			return err
		}
		lists[name] = slices.DeleteFunc(list, func(e json.RawMessage) bool {
			var h specs.Hook
			return json.Unmarshal(e, &h) == nil && isOurHook(h)
		})
	}
	c, err := json.Marshal(create)
	if err != nil {
		return err
	}
	d, err := json.Marshal(del)
	if err != nil {
		return err
	}
	lists["createRuntime"] = append([]json.RawMessage{c}, lists["createRuntime"]...)
	lists["poststop"] = append(lists["poststop"], d)
	for name, list := range lists {
		if hooks[name], err = json.Marshal(list); err != nil {
			return err
		}
	}
	return b.set("hooks", hooks)
}

// setMounts replaces whatever the bundle mounts at the mounts'
// destinations with them, appended last so that nothing mounted earlier
// covers them.
func (b *bundle) setMounts(mounts ...specs.Mount) error {
	list, err := array(b.config["mounts"], "mounts")
	if err != nil {
		return err
	}
	list = slices.DeleteFunc(list, func(e json.RawMessage) bool {
		var m specs.Mount
		return json.Unmarshal(e, &m) == nil && slices.ContainsFunc(mounts, func(o specs.Mount) bool {
			return filepath.Clean(m.Destination) == filepath.Clean(o.Destination)
		})
	})
	for _, m := range mounts {
		e, err := json.Marshal(m)
		if err != nil {
			return err
		}
		list = append(list, e)
	}
	return b.set("mounts", list)
}

// ownNamespace makes sure the container gets a new namespace of type t
// (linux.namespaces lists it without a path). A bundle that joins an
// existing one is an error: that namespace is not the container's to
// hand over.
func (b *bundle) ownNamespace(t specs.LinuxNamespaceType, why string) error {
	linux, err := object(b.config["linux"], "linux")
	if err != nil {
		return err
	}
	list, err := array(linux["namespaces"], "linux.namespaces")
	if err != nil {
		return err
	}
	for _, e := range list {
		var ns specs.LinuxNamespace
		if json.Unmarshal(e, &ns) != nil || ns.Type != t {
			continue
		}
		if ns.Path != "" {
			return fmt.Errorf("%s: linux.namespaces: the container joins the %s namespace at %s; %s needs a new one (leave the path out)", b.path, t, ns.Path, why)
		}
		return nil
	}
	e, err := json.Marshal(specs.LinuxNamespace{Type: t})
	if err != nil {
		return err
	}
	if linux["namespaces"], err = json.Marshal(append(list, e)); err != nil {
		return err
	}
	return b.set("linux", linux)
}

// setHostname sets the container's hostname, in a UTS namespace of its own.
func (b *bundle) setHostname(name string) error {
	if err := b.ownNamespace(specs.UTSNamespace, "-hostname"); err != nil {
		return err
	}
	return b.set("hostname", name)
}

// set replaces a top-level field.
func (b *bundle) set(key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	b.config[key] = raw
	return nil
}

// save writes config.json back with its mode and owner, through a
// rename, so that a runtime never reads half of it.
func (b *bundle) save() error {
	raw, err := json.Marshal(b.config)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", b.path, err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "\t"); err != nil {
		return err
	}
	out.WriteByte('\n')
	tmp, err := os.CreateTemp(filepath.Dir(b.path), ".config.json-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", b.path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", b.path, err)
	}
	if err := tmp.Chmod(b.mode); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", b.path, err)
	}
	if os.Geteuid() == 0 { // only root can give a file to another user
		if err := tmp.Chown(b.uid, b.gid); err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: keeping its owner: %w", b.path, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", b.path, err)
	}
	if err := os.Rename(tmp.Name(), b.path); err != nil {
		return fmt.Errorf("writing %s: %w", b.path, err)
	}
	return nil
}

// object decodes a JSON object field; absent or null is an empty one.
func object(raw json.RawMessage, what string) (map[string]json.RawMessage, error) {
	var m map[string]json.RawMessage
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s: not a JSON object", what)
		}
	}
	if m == nil {
		m = map[string]json.RawMessage{}
	}
	return m, nil
}

// array decodes a JSON array field; absent or null is an empty one.
func array(raw json.RawMessage, what string) ([]json.RawMessage, error) {
	var list []json.RawMessage
	if len(raw) == 0 {
		return list, nil
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, fmt.Errorf("%s: not a JSON array", what)
	}
	return list, nil
}

// lockBundle takes an exclusive lock on the bundle directory (flock) until
// the returned function is called; another prepare of it waits. A
// directory that cannot be opened is left to openBundle to report.
func lockBundle(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return func() {}, nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bundle %s: locking it: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
