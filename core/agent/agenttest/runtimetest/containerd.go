package runtimetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// containerdPaths are where containerd 1.6, its runc shim and ctr's go-cni
// read or write whatever containerd's own root and state say: the shims'
// sockets, runc's state and ctr's FIFOs, the CNI config and plugin
// directories go-cni alone reads, and CNI's cache.
var containerdPaths = []string{"/run/containerd", "/etc/cni/net.d", "/opt/cni/bin", "/var/lib/cni", "/run/cni"}

// Containerd is a containerd daemon with its root, state, socket and log
// in one directory of its own, and /etc/cni/net.d and /opt/cni/bin
// replaced by the rig's.
type Containerd struct {
	// Dir holds everything the rig writes.
	Dir string
	// Socket is containerd's gRPC address.
	Socket string
	// Cgroup is the cgroup parent of the rig's containers; Close removes
	// it.
	Cgroup string
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	shadow *Shadow
}

// CNIConfDir and CNIBinDir are the only directories ctr's go-cni uses:
// it loads the first config file by name in the first, plugins from the
// second.
const (
	CNIConfDir = "/etc/cni/net.d"
	CNIBinDir  = "/opt/cni/bin"
)

// StartContainerd covers containerd's paths with a tmpfs, copies the CNI
// plugin binaries given into CNIBinDir, and starts `containerd --config F
// --root D --state D` with its gRPC socket in dir, the CRI plugin and the
// /opt/containerd one disabled; it waits until the daemon answers. The
// caller must Close it; when StartContainerd fails it leaves nothing.
func StartContainerd(dir string, cniPlugins ...string) (c *Containerd, err error) {
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not installed (Debian's containerd): %w", bin, err)
		}
	}
	c = &Containerd{Dir: dir, Socket: filepath.Join(dir, "containerd.sock"), Cgroup: "/sandnet-containerd-" + randomID(), exited: make(chan struct{})}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for _, d := range []string{c.path("root"), c.path("state")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	if c.shadow, err = NewShadow(dir, containerdPaths...); err != nil {
		return nil, err
	}
	for _, p := range cniPlugins {
		if err := copyFile(p, filepath.Join(CNIBinDir, filepath.Base(p)), 0o755); err != nil {
			return nil, fmt.Errorf("installing CNI plugin %s: %w", p, err)
		}
	}
	// The opt plugin would make /opt/containerd; CRI would read the
	// machine's CNI setup and start its own network machinery.
	conf := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %q

[ttrpc]
  address = %q
`, c.path("root"), c.path("state"), c.Socket, c.Socket+".ttrpc")
	confPath := c.path("containerd.toml")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if c.log, err = os.Create(c.path("containerd.log")); err != nil {
		return nil, err
	}
	c.cmd = exec.Command("containerd", "--config", confPath, "--root", c.path("root"), "--state", c.path("state"))
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	// Should the caller die without Close (a test timing out), the
	// daemon goes with it.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting containerd: %w", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, verr := c.Run(ctx, "version")
		cancel()
		if verr == nil {
			return c, nil
		}
		select {
		case <-c.exited:
			return nil, fmt.Errorf("containerd exited at start:\n%s", c.Log())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd not answering after 30s: %v\n%s", verr, c.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *Containerd) path(name string) string { return filepath.Join(c.Dir, name) }

// Log is what containerd wrote so far.
func (c *Containerd) Log() string {
	b, _ := os.ReadFile(c.path("containerd.log"))
	return string(b)
}

// WriteConflist writes CNIConfDir/FILE (name it so it sorts first: go-cni
// takes the first).
func (c *Containerd) WriteConflist(file, cniVersion, name string, plugins ...map[string]any) error {
	return WriteConflist(filepath.Join(CNIConfDir, file), cniVersion, name, plugins...)
}

// Command is `ctr --address SOCKET ARGS`.
func (c *Containerd) Command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", c.Socket}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs ctr ARGS and returns its standard output; an error carries the
// standard error.
func (c *Containerd) Run(ctx context.Context, args ...string) (string, error) {
	cmd := c.Command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// RunArgs are the arguments of `ctr run --rm --cni` for container id on
// rootfs, in the rig's cgroup parent; the command follows. With --rootfs
// the process gets no PATH: name the command by its absolute path.
func (c *Containerd) RunArgs(id, rootfs string, command ...string) []string {
	return append([]string{"run", "--rm", "--cni", "--cgroup", c.Cgroup + "/" + id, "--rootfs", rootfs, id}, command...)
}

// Close stops containerd and undoes everything: the shims and containers
// that refer to Dir are killed, the cgroups removed, the mounts below Dir
// and the tmpfs shadows unmounted.
func (c *Containerd) Close() error {
	var errs []error
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if _, err := EndProcesses(c.Dir, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	if err := RemoveCgroups(c.Cgroup); err != nil {
		errs = append(errs, err)
	}
	if c.shadow != nil {
		if err := c.shadow.Close(); err != nil {
			errs = append(errs, err)
		}
		c.shadow = nil
	}
	if err := UnmountUnder(c.Dir); err != nil {
		errs = append(errs, err)
	}
	if c.log != nil {
		c.log.Close()
	}
	return errors.Join(errs...)
}
