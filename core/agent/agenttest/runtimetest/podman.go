package runtimetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// podmanPaths are where podman 4.3 writes whatever --root, --runroot and
// containers.conf say: the blob-info cache, storage locks, the netns
// mounts of its containers, runc's and crun's state, CNI's cache and
// host-local's leases, temporary files.
var podmanPaths = []string{
	"/var/lib/containers", "/run/containers", "/run/libpod", "/run/netns",
	"/run/runc", "/run/crun", "/var/lib/cni", "/run/cni", "/var/tmp",
}

// Podman is podman with its CNI backend, its storage, run root, config and
// CNI network configs all in one directory of its own.
type Podman struct {
	// Dir holds everything the rig writes.
	Dir string
	// ConfigDir is podman's network_config_dir: the rig's *.conflist.
	ConfigDir string
	// Cgroup is the cgroup parent of the rig's containers and their
	// conmon; Close removes it.
	Cgroup string
	conf   string
	shadow *Shadow
}

// NewPodman sets podman up in dir, which must be empty or missing and
// short (podman refuses a run root, dir/runroot, over 50 characters): a
// containers.conf (network_backend "cni" with pluginDirs and ConfigDir,
// runc, cgroupfs, file events, ulimits of 1024), the storage and run root,
// and a tmpfs over every path podman writes outside them. The caller must
// Close it, also when NewPodman fails half-way it leaves nothing.
func NewPodman(dir string, pluginDirs ...string) (p *Podman, err error) {
	if _, err := exec.LookPath("podman"); err != nil {
		return nil, fmt.Errorf("podman not installed (Debian's podman): %w", err)
	}
	p = &Podman{Dir: dir, ConfigDir: filepath.Join(dir, "cni"), Cgroup: "/sandnet-podman-" + randomID(), conf: filepath.Join(dir, "containers.conf")}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for _, d := range []string{p.ConfigDir, p.path("root"), p.path("runroot"), p.path("tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if p.shadow, err = NewShadow(dir, podmanPaths...); err != nil {
		return nil, err
	}
	quoted, _ := json.Marshal(pluginDirs)
	conf := fmt.Sprintf(`[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[network]
network_backend = "cni"
cni_plugin_dirs = %s
network_config_dir = %q

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
image_copy_tmp_dir = %q
`, quoted, p.ConfigDir, p.path("events.log"), p.path("tmp"), p.path("tmp"))
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Podman) path(name string) string { return filepath.Join(p.Dir, name) }

// Command is `podman --root … --runroot … --storage-driver vfs ARGS` with
// the rig's containers.conf.
func (p *Podman) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--root", p.path("root"), "--runroot", p.path("runroot"), "--storage-driver", "vfs"}, args...)
	cmd := exec.CommandContext(ctx, "podman", full...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf, "TMPDIR="+p.path("tmp"))
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs podman ARGS and returns its standard output; an error carries
// the standard error.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	cmd := p.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// RunArgs are the arguments of `podman run` that keep a container's
// cgroups (and its conmon's) under the rig's cgroup parent; ARGS follow.
func (p *Podman) RunArgs(args ...string) []string {
	return append([]string{"run", "--cgroup-parent", p.Cgroup}, args...)
}

// ImportBusybox makes image ref from a static busybox, offline: the
// rootfs of BusyboxRootfs, `podman import`ed with PATH=/bin.
func (p *Podman) ImportBusybox(ctx context.Context, ref string) error {
	rootfs := p.path("busybox-rootfs")
	if err := BusyboxRootfs(rootfs); err != nil {
		return err
	}
	tarball := p.path("busybox.tar")
	if out, err := exec.CommandContext(ctx, "tar", "-C", rootfs, "-cf", tarball, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar of the busybox rootfs: %w: %s", err, out)
	}
	_, err := p.Run(ctx, "import", "--quiet", "--change", "ENV=PATH=/bin", tarball, ref)
	return err
}

// WriteConflist writes ConfigDir/NAME.conflist: cniVersion 0.4.0, as podman
// 4.3 writes its own, and the plugins in order.
func (p *Podman) WriteConflist(name string, plugins ...map[string]any) error {
	return WriteConflist(filepath.Join(p.ConfigDir, name+".conflist"), "0.4.0", name, plugins...)
}

// Close removes every container of the rig and undoes everything: the
// processes that refer to Dir are killed, the cgroups removed, the
// tmpfs shadows and the mounts below Dir unmounted.
func (p *Podman) Close() error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if p.shadow != nil {
		// podman's own removal runs CNI DEL; what it fails to end is
		// killed below.
		_, _ = p.Run(ctx, "rm", "--all", "--force", "--time", "0")
	}
	if _, err := EndProcesses(p.Dir, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := RemoveCgroups(p.Cgroup); err != nil {
		errs = append(errs, err)
	}
	if p.shadow != nil {
		if err := p.shadow.Close(); err != nil {
			errs = append(errs, err)
		}
		p.shadow = nil
	}
	if err := UnmountUnder(p.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// randomID is 8 hex digits, to name a rig's cgroup apart from any other
// rig's.
func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
