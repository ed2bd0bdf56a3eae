package runtimetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sandnet/sandnet/sdk/polltest"
)

// EndProcesses kills with SIGKILL, by PID, every process that belongs to
// a runtime rooted at dir: one whose command line names a path in dir
// (conmon, containerd, its shims, runc) or whose root or working directory
// is in dir (a container's processes, their rootfs being there). It waits
// until they are gone, for at most timeout, and returns the PIDs it
// killed. The calling process is never one of them.
func EndProcesses(dir string, timeout time.Duration) ([]int, error) {
	dir = filepath.Clean(dir)
	var pids []int
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if refersTo(pid, dir) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	var left int
	if !polltest.Wait(timeout, func() bool {
		i := slices.IndexFunc(pids, running)
		if i >= 0 {
			left = pids[i]
		}
		return i < 0
	}) {
		return pids, fmt.Errorf("process %d still runs %s after SIGKILL", left, timeout)
	}
	return pids, nil
}

// refersTo reports whether process pid names dir on its command line or
// has its root or working directory in it.
func refersTo(pid int, dir string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	in := func(p string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }
	for _, link := range []string{"root", "cwd"} {
		if p, err := os.Readlink(proc + "/" + link); err == nil && in(p) {
			return true
		}
	}
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	for _, arg := range bytes.Split(cmdline, []byte{0}) {
		if a := string(arg); in(a) || strings.Contains(a, dir+"/") || strings.HasSuffix(a, "="+dir) {
			return true
		}
	}
	return false
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// RemoveCgroups removes the cgroup named parent (a path such as
// "/sandnet-test-x") with everything below it, in every hierarchy under
// /sys/fs/cgroup. Only empty cgroups can be removed: end their processes
// first.
func RemoveCgroups(parent string) error {
	if !strings.HasPrefix(parent, "/") || strings.Contains(parent, "..") || parent == "/" {
		return fmt.Errorf("cgroup %q: want an absolute path below the root", parent)
	}
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	var errs []error
	for _, root := range roots {
		top := filepath.Join(root, parent)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := removeCgroup(dirs[i]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeCgroup removes one empty cgroup; a cgroup whose last process has
// just exited may still count it for a moment.
func removeCgroup(dir string) error {
	var err error
	for range 100 {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("removing cgroup %s: %w", dir, err)
}

// cgroupRoots lists the mounted cgroup hierarchies (v1 controllers, the
// named systemd one, the unified v2 one).
func cgroupRoots() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var roots []string
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) > 4 && len(g) > 0 && (g[0] == "cgroup" || g[0] == "cgroup2") {
			roots = append(roots, f[4])
		}
	}
	return roots, nil
}

// UnmountUnder detaches every mount below dir, deepest first: a runtime
// killed half-way leaves its rootfs binds there.
func UnmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	var errs []error
	for i := len(points) - 1; i >= 0; i-- {
		if err := syscall.Unmount(points[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", points[i], err))
		}
	}
	return errors.Join(errs...)
}
