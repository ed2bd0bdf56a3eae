package osl

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
	"golang.org/x/sys/unix"
)

// newTestNamespace creates a namespace at a fresh key and destroys it when
// the test ends, checking that nothing of it is left.
func newTestNamespace(t testing.TB) *Namespace {
	t.Helper()
	nstest.RequireRoot(t)
	key := filepath.Join(t.TempDir(), "netns", "sb")
	n, err := NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Destroy(); err != nil {
			t.Errorf("destroying %s: %v", key, err)
		}
		if mounted(t, key) {
			t.Errorf("%s still mounted after Destroy", key)
		}
	})
	return n
}

// mounted reports whether path is a mount point, from /proc/self/mountinfo.
func mounted(t testing.TB, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return false
}

// inode returns the inode of a namespace file, which identifies the namespace.
func inode(t testing.TB, path string) uint64 {
	t.Helper()
	ino, err := nsInode(path)
	if err != nil {
		t.Fatal(err)
	}
	return ino
}

func nsInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

func TestNewNamespaceThenDestroyLeavesNothing(t *testing.T) {
	nstest.RequireRoot(t)
	key := filepath.Join(t.TempDir(), "run", "netns", "sb1") // parents do not exist yet

	n, err := NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	if n.Path() != key {
		t.Errorf("Path() = %q, want %q", n.Path(), key)
	}
	if !mounted(t, key) {
		t.Fatalf("%s is not a mount point after NewNamespace", key)
	}
	if !Exists(key) {
		t.Fatalf("Exists(%s) = false after NewNamespace", key)
	}
	if fi, err := os.Stat(filepath.Dir(key)); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("key directory: %v, mode %v; want 0755", err, fi.Mode().Perm())
	}
	if inode(t, key) == inode(t, "/proc/thread-self/ns/net") {
		t.Fatal("new namespace is the test's own namespace")
	}

	links, err := n.Links()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("links in new namespace = %v, want only lo, up", linkNames(links))
	}

	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, key) {
		t.Errorf("%s still mounted after Destroy", key)
	}
	if _, err := os.Lstat(key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key file after Destroy: %v, want it removed", err)
	}
	if Exists(key) {
		t.Error("Exists after Destroy")
	}
	if err := n.Destroy(); err != nil {
		t.Errorf("second Destroy: %v, want nil", err)
	}
	if _, err := n.Links(); !errors.Is(err, ErrClosed) {
		t.Errorf("Links after Destroy: %v, want ErrClosed", err)
	}
	if err := n.Do(func() error { t.Error("Do ran fn after Destroy"); return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Destroy: %v, want ErrClosed", err)
	}
}

func TestNewNamespaceRefusesTakenKey(t *testing.T) {
	n := newTestNamespace(t)
	if _, err := NewNamespace(n.Path()); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("NewNamespace on a taken key: %v, want fs.ErrExist", err)
	}
	if !Exists(n.Path()) {
		t.Fatal("failed NewNamespace removed the existing namespace")
	}
	if _, err := n.Links(); err != nil {
		t.Fatalf("existing namespace unusable after failed NewNamespace: %v", err)
	}
}

func TestNewNamespaceReusesStaleKeyFile(t *testing.T) {
	nstest.RequireRoot(t)
	key := filepath.Join(t.TempDir(), "stale")
	if err := os.WriteFile(key, nil, 0o444); err != nil { // as left behind by a reboot
		t.Fatal(err)
	}
	n, err := NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	if !Exists(key) {
		t.Fatal("stale key file is not a namespace after NewNamespace")
	}
	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestNewNamespaceBadKeys(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	tests := []struct {
		key  string
		want error
	}{
		{key: "", want: ErrInvalid},
		{key: "relative/key", want: ErrInvalid},
		{key: dir, want: ErrInvalid}, // a directory
	}
	for _, tt := range tests {
		n, err := NewNamespace(tt.key)
		if !errors.Is(err, tt.want) {
			if n != nil {
				_ = n.Destroy()
			}
			t.Errorf("NewNamespace(%q) = %v, want %v", tt.key, err, tt.want)
		}
	}
	if mounted(t, dir) {
		t.Fatalf("%s mounted after failed NewNamespace", dir)
	}
}

func TestDoRunsInsideAndRestores(t *testing.T) {
	n := newTestNamespace(t)
	want := inode(t, n.Path())

	// Lock the test goroutine so "the calling thread" is well defined.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := inode(t, "/proc/thread-self/ns/net")

	var inside uint64
	if err := n.Do(func() (err error) {
		inside, err = nsInode("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != want {
		t.Errorf("fn ran in namespace %d, want %d", inside, want)
	}
	if after := inode(t, "/proc/thread-self/ns/net"); after != before {
		t.Errorf("calling thread moved from namespace %d to %d", before, after)
	}

	sentinel := errors.New("from fn")
	if err := n.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

// TestDoLeavesNoThreadBehind runs many Do calls at once and then checks that
// every thread of the process is back in the test's namespace.
func TestDoLeavesNoThreadBehind(t *testing.T) {
	a, b := newTestNamespace(t), newTestNamespace(t)
	home := inode(t, "/proc/self/ns/net")

	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		n := a
		if i%2 == 1 {
			n = b
		}
		wg.Go(func() {
			errs <- n.Do(func() error {
				got, err := nsInode("/proc/thread-self/ns/net")
				if err != nil {
					return err
				}
				want, err := nsInode(n.Path())
				if err != nil {
					return err
				}
				if got != want {
					return fmt.Errorf("in namespace %d, want %d", got, want)
				}
				return nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		path := filepath.Join("/proc/self/task", task.Name(), "ns/net")
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			continue // the thread exited
		}
		if st.Ino != home {
			t.Errorf("thread %s left in namespace %d, want %d", task.Name(), st.Ino, home)
		}
	}
}

func TestOpenNamespaceAfterClose(t *testing.T) {
	n := newTestNamespace(t)
	if err := n.ConfigureInterface(InterfaceConfig{SrcName: "lo", Addresses: []*net.IPNet{mustCIDR(t, "10.1.2.3/32")}}); err != nil {
		t.Fatal(err)
	}
	// Agent shutdown: handles closed, namespace kept.
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if !Exists(n.Path()) {
		t.Fatal("Close removed the namespace")
	}
	if n.Handle() != nil {
		t.Error("Handle() not nil after Close")
	}

	// Agent restart.
	m, err := OpenNamespace(n.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if inode(t, m.Path()) != inode(t, n.Path()) {
		t.Fatal("reopened a different namespace")
	}
	addrs, err := m.Handle().AddrList(nil, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	if !hasAddr(addrs, "10.1.2.3/32") {
		t.Fatalf("addresses after reopen = %v, want 10.1.2.3/32 kept", addrs)
	}
}

func TestOpenNamespaceErrors(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key  string
		want error
	}{
		{key: filepath.Join(dir, "missing"), want: fs.ErrNotExist},
		{key: plain, want: ErrNotNamespace},
		{key: dir, want: ErrNotNamespace},
		{key: "/proc/self/ns/mnt", want: ErrNotNamespace},
	}
	for _, tt := range tests {
		n, err := OpenNamespace(tt.key)
		if !errors.Is(err, tt.want) {
			if n != nil {
				_ = n.Close()
			}
			t.Errorf("OpenNamespace(%q) = %v, want %v", tt.key, err, tt.want)
		}
	}
}

func TestBindNamespace(t *testing.T) {
	first := newTestNamespace(t)
	second := filepath.Join(t.TempDir(), "external", "key")

	b, err := BindNamespace(first.Path(), second)
	if err != nil {
		t.Fatal(err)
	}
	if inode(t, second) != inode(t, first.Path()) {
		t.Fatal("bound key is a different namespace")
	}
	// A link made through one key is visible through the other.
	if err := b.CreateVethPair(b.Handle(), "va", "vb", 0, nil); err != nil {
		t.Fatal(err)
	}
	links, err := first.Links()
	if err != nil {
		t.Fatal(err)
	}
	if !hasLink(links, "va") || !hasLink(links, "vb") {
		t.Fatalf("links through first key = %v, want va and vb", linkNames(links))
	}

	if _, err := BindNamespace(first.Path(), second); !errors.Is(err, fs.ErrExist) {
		t.Errorf("binding over a taken key: %v, want fs.ErrExist", err)
	}

	if err := b.Destroy(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, second) || Exists(second) {
		t.Error("second key still a namespace after Destroy")
	}
	if _, err := os.Lstat(second); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second key file after Destroy: %v, want removed", err)
	}
	if !Exists(first.Path()) {
		t.Fatal("destroying the second key removed the first")
	}
	links, err = first.Links()
	if err != nil {
		t.Fatal(err)
	}
	if !hasLink(links, "va") {
		t.Fatalf("links through first key after destroying second = %v, want va kept", linkNames(links))
	}
}

func TestBindNamespaceRejectsNonNamespace(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "plain")
	if err := os.WriteFile(src, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "key")
	if _, err := BindNamespace(src, key); !errors.Is(err, ErrNotNamespace) {
		t.Fatalf("BindNamespace(plain file) = %v, want ErrNotNamespace", err)
	}
	if _, err := BindNamespace("/proc/self/ns/mnt", key); !errors.Is(err, ErrNotNamespace) {
		t.Fatalf("BindNamespace(mount namespace) = %v, want ErrNotNamespace", err)
	}
	if _, err := os.Lstat(key); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("key after failed BindNamespace: %v, want none created", err)
	}
}

func TestExists(t *testing.T) {
	n := newTestNamespace(t)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want bool
	}{
		{path: n.Path(), want: true},
		{path: "/proc/self/ns/net", want: true},
		{path: filepath.Join(dir, "missing"), want: false},
		{path: plain, want: false},
		{path: dir, want: false},
		{path: "/proc/self/ns/mnt", want: false},
		{path: "", want: false},
	}
	for _, tt := range tests {
		if got := Exists(tt.path); got != tt.want {
			t.Errorf("Exists(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

func TestRemove(t *testing.T) {
	nstest.RequireRoot(t)
	key := filepath.Join(t.TempDir(), "sb")
	n, err := NewNamespace(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Remove(key); err != nil {
		t.Fatal(err)
	}
	if mounted(t, key) {
		t.Error("key still mounted after Remove")
	}
	if _, err := os.Lstat(key); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("key after Remove: %v, want removed", err)
	}
	if err := Remove(key); err != nil {
		t.Errorf("Remove of a missing key: %v, want nil", err)
	}
	if err := Remove("/proc/self/ns/net"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove(/proc/self/ns/net) = %v, want ErrInvalid and nothing touched", err)
	}
}

func TestSysctlIsPerNamespace(t *testing.T) {
	n := newTestNamespace(t)
	const name = "net.ipv4.ip_forward"
	outside, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}

	if err := n.SetSysctl(name, "1"); err != nil {
		t.Fatal(err)
	}
	got, err := n.Sysctl(name)
	if err != nil {
		t.Fatal(err)
	}
	if got != "1" {
		t.Fatalf("%s inside = %q, want 1", name, got)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(after) != string(outside) {
		t.Fatalf("%s outside changed from %q to %q", name, outside, after)
	}

	if err := n.SetSysctl("kernel.hostname", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("SetSysctl(kernel.hostname) = %v, want ErrInvalid", err)
	}
}

func TestMove(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	from, to := filepath.Join(dir, "scratch", "sb"), filepath.Join(dir, "netns", "sb")
	n, err := NewNamespace(from)
	if err != nil {
		t.Fatal(err)
	}
	before := inode(t, from)
	if err := n.CreateVethPair(n.Handle(), "va", "vb", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.Move(to); err != nil {
		t.Fatal(err)
	}
	if n.Path() != to || inode(t, to) != before {
		t.Fatalf("after Move: path %s, same namespace %v", n.Path(), inode(t, to) == before)
	}
	if mounted(t, from) || Exists(from) {
		t.Error("old key still a namespace after Move")
	}
	if _, err := os.Lstat(from); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("old key file after Move: %v, want removed", err)
	}
	// The namespace keeps working, its links with it.
	links, err := n.Links()
	if err != nil || !hasLink(links, "va") {
		t.Fatalf("links after Move = %v, %v", linkNames(links), err)
	}
	// A taken key is refused and nothing changes.
	other := newTestNamespace(t)
	if err := n.Move(other.Path()); !errors.Is(err, fs.ErrExist) {
		t.Errorf("moving onto a taken key: %v, want fs.ErrExist", err)
	}
	if n.Path() != to || !Exists(to) {
		t.Errorf("a refused Move changed the key: %s", n.Path())
	}
	if err := n.Destroy(); err != nil {
		t.Fatal(err)
	}
	if mounted(t, to) {
		t.Error("key still mounted after Destroy")
	}
}

// TestAbandoned: a namespace bound at our key is let go of by the runtime
// that named it by path once path no longer names it (gone, or another
// namespace now) and no process lives in it; never while a process lives
// in it.
func TestAbandoned(t *testing.T) {
	runtimeNS := newTestNamespace(t)
	path := runtimeNS.Path()
	key := filepath.Join(t.TempDir(), "ours")
	ours, err := BindNamespace(path, key)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ours.Destroy() })
	check := func(want bool, why string) {
		t.Helper()
		if got, err := Abandoned(path, key); err != nil || got != want {
			t.Fatalf("%s: Abandoned = %v, %v; want %v", why, got, err, want)
		}
	}
	check(false, "the runtime's path names it")

	sleeper := exec.Command("nsenter", "--net="+key, "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	polltest.Until(t, 10*time.Second, "the process to enter the namespace", func() bool {
		same, err := Same(fmt.Sprintf("/proc/%d/ns/net", sleeper.Process.Pid), key)
		return err == nil && same
	})
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	check(false, "its path gone, a process in it")
	_ = sleeper.Process.Kill()
	_ = sleeper.Wait()
	check(true, "its path gone, no process in it")

	other := newTestNamespace(t)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(other.Path(), path, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Remove(path) })
	check(true, "its path naming another namespace")
	if _, err := Abandoned(path, filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("Abandoned of a key that is not there: no error")
	}
}
