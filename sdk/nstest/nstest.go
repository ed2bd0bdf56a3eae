// Package nstest runs a package's tests inside a throwaway network and mount
// namespace, so that tests which create links, addresses, routes, bind mounts
// or firewall rules can never touch the machine they run on.
//
// The machine's own network namespace holds its real interfaces (eth0), its
// routes and its firewall: a test that adds a bridge or a default route there
// by mistake can cut the machine off the network, and a bind mount that leaks
// into the host's mount table outlives the test. So a test binary that uses
// Main and runs as root re-executes itself under
//
//	unshare --net --mount --propagation private
//
// (util-linux), with the environment variable SANDNET_NSTEST_ISOLATED set.
// The copy starts in a new, empty network namespace (only a loopback device,
// which Main brings up) and a private copy of the mount table, forwards its
// output and exit code, and everything it created disappears with it.
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { nstest.Main(m) }
//
// and start every test that needs root with:
//
//	nstest.RequireRoot(t)
//
// RequireRoot skips the test unless the process is root and isolated, so a
// root test never runs in the machine's own namespace, even when the binary is
// started by hand without Main's re-execution.
//
// WithHandle runs a check inside a sandbox's namespace; Links lists links
// even while background work (a host preparing spare namespaces, say)
// adds some, taking again a dump the kernel reports interrupted.
//
// nstest imports nothing from sandnet's core: plugin tests use it too.
package nstest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// EnvIsolated is the environment variable Main sets in the isolated copy of
// the test binary. Its value identifies the network namespace the parent ran
// in, so that Isolated can check the copy really left it.
const EnvIsolated = "SANDNET_NSTEST_ISOLATED"

// M is what Main runs: a *testing.M, or a wrapper whose Run does set-up
// that must happen inside the throwaway namespace before m.Run.
type M interface{ Run() int }

// Main runs the tests of m and exits with their status. Call it from
// TestMain; it does not return.
//
// As root, outside isolation, it runs the test binary again with the same
// arguments under unshare(1) and exits with that copy's exit code. Inside the
// isolated copy it brings up lo and runs m. When the process is not root, or
// the machine does not allow creating namespaces, it runs m directly and the
// tests that call RequireRoot skip themselves.
func Main(m M) {
	os.Exit(run(m))
}

// RequireRoot skips the calling test or benchmark unless it runs as root
// inside the throwaway namespace set up by Main.
func RequireRoot(t testing.TB) {
	t.Helper()
	if reason := skipReason(os.Geteuid(), os.Getenv(EnvIsolated), currentNamespace); reason != "" {
		t.Skip(reason)
	}
}

// Isolate runs m in a throwaway network and mount namespace and returns
// its exit code, for a program (not a test binary) that must never touch
// the machine's namespace, such as `sandnet plugin check`. As root it runs
// the program again with the same arguments under unshare(1), and in that
// copy brings lo up and runs m. Unlike Main it never falls back to running
// m as root in the machine's own namespace: when the copy cannot be
// started it returns the error. A process that is not root cannot change
// the machine's network, so it runs m in place (root-only work in m then
// fails or skips).
func Isolate(m M) (int, error) { return isolate(m) }

// Isolated reports whether the process runs in a network namespace created
// by Main, different from the one its parent ran in.
func Isolated() bool {
	return isolated(os.Getenv(EnvIsolated), currentNamespace)
}

// nsID identifies a network namespace by the device and inode of its nsfs
// file, as `stat -L /proc/self/ns/net` prints them.
type nsID struct {
	dev, ino uint64
}

func (id nsID) String() string {
	return strconv.FormatUint(id.dev, 10) + ":" + strconv.FormatUint(id.ino, 10)
}

func parseNSID(s string) (nsID, error) {
	devStr, inoStr, ok := strings.Cut(s, ":")
	if !ok {
		return nsID{}, fmt.Errorf("parsing namespace id %q: want DEV:INODE", s)
	}
	dev, err := strconv.ParseUint(devStr, 10, 64)
	if err != nil {
		return nsID{}, fmt.Errorf("parsing namespace id %q: device: %w", s, err)
	}
	ino, err := strconv.ParseUint(inoStr, 10, 64)
	if err != nil {
		return nsID{}, fmt.Errorf("parsing namespace id %q: inode: %w", s, err)
	}
	if ino == 0 {
		return nsID{}, fmt.Errorf("parsing namespace id %q: inode is zero", s)
	}
	return nsID{dev: dev, ino: ino}, nil
}

// isolated reports whether marker (the parent's namespace, from EnvIsolated)
// names a namespace other than the current one.
func isolated(marker string, current func() (nsID, error)) bool {
	if marker == "" {
		return false
	}
	parent, err := parseNSID(marker)
	if err != nil {
		return false
	}
	cur, err := current()
	if err != nil {
		return false
	}
	return cur != parent
}

// skipReason says why a root test must not run, or "" when it may.
func skipReason(euid int, marker string, current func() (nsID, error)) string {
	if euid != 0 {
		return "nstest: skipping, test needs root to create network namespaces"
	}
	if !isolated(marker, current) {
		return "nstest: skipping, root test is not isolated from the machine's network namespace " +
			"(call nstest.Main from TestMain and run the test binary as root)"
	}
	return ""
}
