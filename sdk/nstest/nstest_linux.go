package nstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// unshareArgs returns the unshare(1) arguments that run command in a new
// network namespace and a new mount namespace whose mounts are all private,
// so bind mounts the tests create never propagate to the machine's table.
func unshareArgs(command ...string) []string {
	return append([]string{"--net", "--mount", "--propagation", "private", "--"}, command...)
}

func run(m M) int {
	if os.Getenv(EnvIsolated) != "" {
		// The re-executed copy, or a process started by hand with the
		// variable set. Only touch lo when the namespace really is a new
		// one; otherwise RequireRoot skips every root test.
		if Isolated() {
			if err := loopbackUp(); err != nil {
				fmt.Fprintf(os.Stderr, "nstest: %v\n", err)
				return 1
			}
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		return m.Run()
	}
	code, err := reexec()
	if err != nil {
		fmt.Fprintf(os.Stderr, "nstest: cannot isolate the test binary, root tests will skip: %v\n", err)
		return m.Run()
	}
	return code
}

// currentNamespace identifies the network namespace of the calling thread.
func currentNamespace() (nsID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return nsID{}, fmt.Errorf("reading current network namespace: %w", err)
	}
	return nsID{dev: uint64(st.Dev), ino: st.Ino}, nil
}

func loopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo in the isolated namespace: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bringing lo up in the isolated namespace: %w", err)
	}
	return nil
}

func unsharePath() (string, error) {
	const path = "/usr/bin/unshare"
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	p, err := exec.LookPath("unshare")
	if err != nil {
		return "", fmt.Errorf("finding unshare(1) from util-linux: %w", err)
	}
	return p, nil
}

// reexec runs the test binary again inside new namespaces and returns its
// exit code. An error means the copy could not be started at all.
func reexec() (int, error) {
	unshare, err := unsharePath()
	if err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the test binary: %w", err)
	}
	parent, err := currentNamespace()
	if err != nil {
		return 0, err
	}

	// Probe first: when unshare itself fails (no CAP_SYS_ADMIN, seccomp),
	// its exit code is indistinguishable from a failing test.
	probe := exec.Command(unshare, unshareArgs("true")...)
	if out, err := probe.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("probing %s: %w: %s", unshare, err, out)
	}

	cmd := exec.Command(unshare, unshareArgs(append([]string{self}, os.Args[1:]...)...)...)
	cmd.Env = append(os.Environ(), EnvIsolated+"="+parent.String(), envCopyOf+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	// The copy must not outlive us (go test kills the parent on timeout).
	// Pdeathsig fires when the creating thread exits, so keep it locked.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", unshare, err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)

	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			fmt.Fprintf(os.Stderr, "nstest: isolated test binary killed by %v\n", ws.Signal())
			return 128 + int(ws.Signal()), nil
		}
		return exit.ExitCode(), nil
	default:
		// Started but could not be waited for: report as a failure rather
		// than running the tests a second time.
		fmt.Fprintf(os.Stderr, "nstest: waiting for isolated test binary: %v\n", err)
		return 1, nil
	}
}

// WithHandle runs fn with a netlink handle inside the network namespace
// bind-mounted at key (a sandbox's key, say) and fails the test if it
// cannot get there or fn returns an error.
func WithHandle(t testing.TB, key string, fn func(h *netlink.Handle) error) {
	t.Helper()
	ns, err := netns.GetFromPath(key)
	if err != nil {
		t.Fatalf("opening namespace %s: %v", key, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in namespace %s: %v", key, err)
	}
	defer h.Close()
	if err := fn(h); err != nil {
		t.Fatalf("in namespace %s: %v", key, err)
	}
}

// Links lists the links h sees, or those of the test's own namespace
// when h is nil. A dump the kernel reports interrupted by a concurrent
// change (netlink.ErrDumpInterrupted: background work, such as a pool
// preparing spares, may add a link at any moment) is taken again; any
// other error fails the test.
func Links(t testing.TB, h *netlink.Handle) []netlink.Link {
	t.Helper()
	if h == nil {
		h = &netlink.Handle{} // the package's own: the current namespace
	}
	for tries := 1; ; tries++ {
		links, err := h.LinkList()
		switch {
		case err == nil:
			return links
		case !errors.Is(err, netlink.ErrDumpInterrupted) || tries == maxDumpTries:
			t.Fatalf("listing links: %v", err)
		}
	}
}

// Addrs lists the addresses of link l that h sees, dumping again, as
// Links does, when a concurrent change interrupts the dump; any other
// error fails the test.
func Addrs(t testing.TB, h *netlink.Handle, l netlink.Link) []netlink.Addr {
	t.Helper()
	for tries := 1; ; tries++ {
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		switch {
		case err == nil:
			return addrs
		case !errors.Is(err, netlink.ErrDumpInterrupted) || tries == maxDumpTries:
			t.Fatalf("listing addresses of %s: %v", l.Attrs().Name, err)
		}
	}
}

// LinkNames lists, sorted, the names of the interfaces inside the network
// namespace bind-mounted at key.
func LinkNames(t testing.TB, key string) []string {
	t.Helper()
	var names []string
	WithHandle(t, key, func(h *netlink.Handle) error {
		for _, l := range Links(t, h) {
			names = append(names, l.Attrs().Name)
		}
		return nil
	})
	slices.Sort(names)
	return names
}

// maxDumpTries bounds the dumps Links takes while they are interrupted.
const maxDumpTries = 100

// NewNetns creates a network namespace bind-mounted at a new key under the
// test's temporary directory, with lo up, and removes it when the test
// ends: what the host's osl does for a sandbox, so a driver's Join can be
// given a real sandbox key. It needs root (call RequireRoot first) and a
// private mount table (Main gives one), so the bind mount never reaches
// the machine's.
func NewNetns(t testing.TB) string {
	t.Helper()
	key := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(key, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BindNew(key); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	t.Cleanup(func() { Remove(key) })
	WithHandle(t, key, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	})
	return key
}

// Do runs fn on an OS thread switched into the namespace at key ("" is
// the caller's own namespace). Sockets fn creates stay in that namespace.
// If the thread cannot switch back it is discarded, never reused.
func Do(key string, fn func() error) error {
	if key == "" {
		return fn()
	}
	return onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, err
		}
		defer orig.Close()
		target, err := netns.GetFromPath(key)
		if err != nil {
			return true, err
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return true, err
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(ferr, err)
		}
		return true, ferr
	})
}

// onLockedThread runs fn on a fresh OS thread locked to a new goroutine.
// If fn leaves the thread in another namespace (ok false), the thread is
// not unlocked and the runtime discards it.
func onLockedThread(fn func() (ok bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ok, err := fn()
		if ok {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// BindNew creates a network namespace and bind-mounts it on the existing
// file key, on a thread of its own (discarded if it cannot return to the
// caller's namespace). NewNetns is the usual way; BindNew is for callers
// that make many at once and remove them with Remove.
func BindNew(key string) error {
	return onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, err
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, err
		}
		merr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), key, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(merr, err)
		}
		return true, merr
	})
}

// Remove unmounts a namespace key made by BindNew and removes the file;
// the kernel frees the namespace (and the interfaces in it) once nothing
// else holds it.
func Remove(key string) {
	_ = unix.Unmount(key, unix.MNT_DETACH)
	_ = os.Remove(key)
}

// isolate is Isolate on Linux.
// envCopyOf names the process that made the isolated copy: unshare(1)
// execs the copy in its own place, so the copy's parent is that process.
// Isolate trusts only its own copy; a program started from inside an
// isolated test (a test running `sandnet plugin check`) inherits
// EnvIsolated but must still get a namespace of its own, or what it adds
// lands in the test's namespace and outlives the program.
const envCopyOf = "SANDNET_NSTEST_COPY_OF"

func isolate(m M) (int, error) {
	if os.Getenv(EnvIsolated) != "" && os.Getenv(envCopyOf) == strconv.Itoa(os.Getppid()) {
		if !Isolated() {
			return 0, fmt.Errorf("%s is set but this process runs in its parent's network namespace", EnvIsolated)
		}
		if err := loopbackUp(); err != nil {
			return 0, err
		}
		return m.Run(), nil
	}
	if os.Geteuid() != 0 {
		return m.Run(), nil
	}
	return reexec()
}
