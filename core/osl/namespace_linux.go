package osl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// loopbackIndex is the ifindex of lo in every network namespace: the kernel
// registers it first (LOOPBACK_IFINDEX).
const loopbackIndex = 1

// maxStackedMounts bounds how many mounts Destroy peels off one key. A key
// holds one mount unless a caller bind-mounted over it by hand.
const maxStackedMounts = 16

// Namespace is a network namespace bind-mounted at a key path, with a
// netlink handle opened inside it.
//
// Its methods are safe for concurrent use; Close and Destroy wait for
// netlink calls in flight on the namespace's handle.
type Namespace struct {
	path string
	id   ID // fixed: the namespace's identity, from its open fd

	mu     sync.RWMutex // guards ns, handle and raw against Close
	ns     netns.NsHandle
	handle *netlink.Handle
	// raw is a netlink socket inside the namespace for requests
	// netlink.Handle cannot build, opened on first use.
	raw *nl.SocketHandle
}

// NewNamespace creates a network namespace, bind-mounts it at key and brings
// its lo up. The parent directory of key is created (0755) if missing. It
// fails with an error wrapping fs.ErrExist if key already holds a network
// namespace.
//
// The calling goroutine's OS thread is not touched: the namespace is made on
// a separate locked thread, which is discarded if it cannot be switched back.
//
// Equivalent to: `ip netns add NAME` with key /run/netns/NAME.
func NewNamespace(key string) (*Namespace, error) { return newNamespace(key, false, nil) }

// NewSpareNamespace is NewNamespace for a namespace made ahead of time,
// before anything waits for it: it is made on a thread at idle priority
// (SCHED_IDLE), discarded afterwards, so that what of the work can be
// preempted yields the CPU to everything else. Most of it is kernel work
// in unshare(2) that a kernel without full preemption does not preempt
// at any priority: callers that care about latency make spares while
// nothing else runs. inside, unless
// nil, runs on that thread inside the new namespace once its loopback is
// up (to bind sockets there, say); its error fails the whole.
func NewSpareNamespace(key string, inside func() error) (*Namespace, error) {
	return newNamespace(key, true, inside)
}

func newNamespace(key string, spare bool, inside func() error) (*Namespace, error) {
	created, err := prepareKey(key)
	if err != nil {
		return nil, fmt.Errorf("creating namespace at %s: %w", key, err)
	}

	var fd netns.NsHandle
	var handle *netlink.Handle
	var raw *nl.NetlinkSocket
	err = onLockedThread(func() (clean bool, err error) {
		if spare {
			// The thread never goes back to the runtime: idle stays
			// with it.
			defer func() { clean = false }()
			if err := unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}, 0); err != nil {
				return false, fmt.Errorf("lowering the thread's priority: %w", err)
			}
		}
		origin, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("opening current namespace: %w", err)
		}
		defer origin.Close()

		// unshare moves only this thread: it is per task, and the thread
		// is locked to this goroutine.
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		defer func() {
			if serr := netns.Set(origin); serr != nil {
				err = errors.Join(err, fmt.Errorf("switching thread back to its namespace: %w", serr))
				return
			}
			clean = true
		}()

		self := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		if err := unix.Mount(self, key, "none", unix.MS_BIND, ""); err != nil {
			return false, fmt.Errorf("bind-mounting %s: %w", self, err)
		}
		if fd, err = netns.Get(); err != nil {
			return false, fmt.Errorf("opening new namespace: %w", err)
		}
		// Opened here, the netlink socket belongs to the new namespace
		// without another thread switch.
		if handle, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return false, fmt.Errorf("opening netlink socket: %w", err)
		}
		if raw, err = nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE); err != nil {
			return false, fmt.Errorf("opening netlink socket: %w", err)
		}
		if err := handle.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loopbackIndex}}); err != nil {
			return false, fmt.Errorf("setting lo up: %w", err)
		}
		if inside != nil {
			if err := inside(); err != nil {
				return false, err
			}
		}
		return false, nil
	})
	if err != nil {
		if handle != nil {
			handle.Close()
		}
		if raw != nil {
			raw.Close()
		}
		if fd.IsOpen() {
			_ = fd.Close()
		}
		_ = unmountAll(key)
		if created {
			_ = os.Remove(key)
		}
		return nil, fmt.Errorf("creating namespace at %s: %w", key, err)
	}
	return &Namespace{path: key, id: idOf(fd), ns: fd, handle: handle, raw: &nl.SocketHandle{Socket: raw}}, nil
}

// OpenNamespace opens the network namespace bind-mounted at key, for example
// after an agent restart. It fails with an error wrapping fs.ErrNotExist if
// key is missing and ErrNotNamespace if key is not a network namespace.
func OpenNamespace(key string) (*Namespace, error) {
	if err := checkNetns(key); err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", key, err)
	}
	n, err := open(key)
	if err != nil {
		return nil, fmt.Errorf("opening namespace %s: %w", key, err)
	}
	return n, nil
}

// BindNamespace bind-mounts the existing network namespace src at key and
// opens it. src is typically /proc/PID/ns/net of a process started by a
// container runtime, or another key. The namespace then lives as long as
// either src or key references it; destroying key leaves src alone.
//
// Equivalent to: `touch KEY && mount --bind SRC KEY`.
func BindNamespace(src, key string) (*Namespace, error) {
	if err := checkNetns(src); err != nil {
		return nil, fmt.Errorf("binding namespace %s at %s: %w", src, key, err)
	}
	undo, err := bindAt(src, key)
	if err != nil {
		return nil, fmt.Errorf("binding namespace %s at %s: %w", src, key, err)
	}
	n, err := open(key)
	if err != nil {
		undo()
		return nil, fmt.Errorf("binding namespace %s at %s: %w", src, key, err)
	}
	return n, nil
}

// bindAt bind-mounts the namespace file src at key, creating key if
// needed; undo takes the mount and a key file it created away again.
func bindAt(src, key string) (undo func(), err error) {
	created, err := prepareKey(key)
	if err != nil {
		return nil, err
	}
	if err := unix.Mount(src, key, "none", unix.MS_BIND, ""); err != nil {
		if created {
			_ = os.Remove(key)
		}
		return nil, fmt.Errorf("mount: %w", err)
	}
	return func() {
		_ = unmountAll(key)
		if created {
			_ = os.Remove(key)
		}
	}, nil
}

// Exists reports whether key is a network namespace: an nsfs file such as a
// key made by NewNamespace or BindNamespace, or /proc/PID/ns/net. A key left
// as a plain file (its mount gone after a reboot) is not a namespace.
func Exists(key string) bool {
	return checkNetns(key) == nil
}

// Check says why key is not a network namespace: an error wrapping
// ErrNotNamespace, or the *fs.PathError of the call that failed (a
// missing file, a permission refused). nil when it is one.
func Check(key string) error { return checkNetns(key) }

// Same reports whether the namespace files a and b (keys, or
// /proc/PID/ns/net) are the same namespace: nsfs gives every namespace
// one inode.
func Same(a, b string) (bool, error) {
	ia, err := Identify(a)
	if err != nil {
		return false, err
	}
	ib, err := Identify(b)
	if err != nil {
		return false, err
	}
	return ia == ib, nil
}

// ID is a network namespace's identity: nsfs gives every namespace one
// inode, whatever file names it (a key, /proc/PID/ns/net, a runtime's
// bind mount). The zero ID is no namespace's.
type ID struct{ Dev, Ino uint64 }

// Identify returns the identity of the namespace the file at path names.
func Identify(path string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return ID{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return ID{Dev: st.Dev, Ino: st.Ino}, nil
}

// idOf is the identity of the namespace open as fd; the zero ID should
// fstat fail.
func idOf(fd netns.NsHandle) ID {
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		return ID{}
	}
	return ID{Dev: st.Dev, Ino: st.Ino}
}

// ID returns the namespace's identity, as Identify gives it for any file
// naming the namespace.
func (n *Namespace) ID() ID { return n.id }

// Abandoned reports whether the runtime that named the namespace at key by
// path has let go of it: path no longer names it (gone, or another
// namespace now) and no process lives in it. Only our key holds such a
// namespace. One a process still lives in is not abandoned, whatever
// became of path; a path that cannot be looked at (a permission refused)
// is taken to name it still.
func Abandoned(path, key string) (bool, error) {
	var k, p unix.Stat_t
	if err := unix.Stat(key, &k); err != nil {
		return false, &fs.PathError{Op: "stat", Path: key, Err: err}
	}
	switch err := unix.Stat(path, &p); {
	case err == nil && p.Dev == k.Dev && p.Ino == k.Ino:
		return false, nil
	case err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTDIR):
		return false, nil
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false, err
	}
	for _, e := range procs {
		if name := e.Name(); name[0] >= '0' && name[0] <= '9' {
			if unix.Stat("/proc/"+name+"/ns/net", &p) == nil && p.Dev == k.Dev && p.Ino == k.Ino {
				return false, nil
			}
		}
	}
	return true, nil
}

// Remove unmounts the namespace at key and removes the key file, without
// opening it. It is Destroy for a key the caller has no Namespace for, such
// as a stale key found at startup, and succeeds if key is already gone.
//
// Equivalent to: `ip netns delete NAME`.
func Remove(key string) error {
	if err := removeKey(key); err != nil {
		return fmt.Errorf("removing namespace %s: %w", key, err)
	}
	return nil
}

// Move bind-mounts the namespace at key and unmounts it from its current
// key, which it then removes: the namespace goes on living at key only.
// A namespace can be made under a scratch key and moved to its real one
// once what it is for is recorded, so that a crash in between leaves it
// where a restart knows it can delete it.
//
// Equivalent to: `touch KEY && mount --bind OLD KEY && umount OLD && rm OLD`.
func (n *Namespace) Move(key string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ns.IsOpen() {
		return fmt.Errorf("moving namespace %s: %w", n.path, ErrClosed)
	}
	undo, err := bindAt(n.path, key)
	if err != nil {
		return fmt.Errorf("moving namespace %s to %s: %w", n.path, key, err)
	}
	if err := removeKey(n.path); err != nil {
		undo()
		return fmt.Errorf("moving namespace %s to %s: %w", n.path, key, err)
	}
	n.path = key
	return nil
}

// SetLoopbackUp brings the namespace's lo up, which a runtime that hands
// over its own namespace may not have done yet.
//
// Equivalent to: `ip -n NS link set lo up`.
func (n *Namespace) SetLoopbackUp() error {
	return n.withHandle(func(h *netlink.Handle) error {
		if err := h.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: loopbackIndex}}); err != nil {
			return fmt.Errorf("setting lo up in %s: %w", n.path, err)
		}
		return nil
	})
}

// Path returns the key the namespace is bind-mounted at.
func (n *Namespace) Path() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.path
}

// String returns the key, for log lines.
func (n *Namespace) String() string { return n.Path() }

// Handle returns the netlink handle opened inside the namespace, for
// operations osl does not wrap. It works from any goroutine without
// switching threads. It is nil after Close. The caller must not close it,
// nor use it after Close: unlike the methods of Namespace, it is unguarded.
func (n *Namespace) Handle() *netlink.Handle {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.handle
}

// Do runs fn on an OS thread switched into the namespace and waits for it.
// fn runs on a new goroutine locked to that thread; goroutines fn starts run
// elsewhere, outside the namespace. Sockets fn opens stay in the namespace
// after Do returns. The calling goroutine's thread is never switched.
//
// If the thread cannot be switched back after fn, it stays locked and the Go
// runtime terminates it instead of reusing it in the wrong namespace.
func (n *Namespace) Do(fn func() error) error {
	return onLockedThread(func() (clean bool, err error) {
		origin, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("namespace %s: opening current namespace: %w", n.path, err)
		}
		defer origin.Close()

		n.mu.RLock()
		if !n.ns.IsOpen() {
			n.mu.RUnlock()
			return true, fmt.Errorf("namespace %s: %w", n.path, ErrClosed)
		}
		err = netns.Set(n.ns)
		n.mu.RUnlock()
		if err != nil {
			// setns failed, so the thread is where it was.
			return true, fmt.Errorf("namespace %s: entering: %w", n.path, err)
		}
		defer func() {
			if serr := netns.Set(origin); serr != nil {
				err = errors.Join(err, fmt.Errorf("namespace %s: switching thread back: %w", n.path, serr))
				return
			}
			clean = true
		}()
		return false, fn()
	})
}

// Close releases the netlink handle and the namespace file descriptor but
// keeps the namespace mounted at its key, for agent shutdown. It is
// idempotent.
func (n *Namespace) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.handle != nil {
		n.handle.Close()
		n.handle = nil
	}
	if n.raw != nil {
		n.raw.Close()
		n.raw = nil
	}
	var err error
	if n.ns.IsOpen() {
		err = n.ns.Close()
		n.ns = netns.None()
	}
	if err != nil {
		return fmt.Errorf("closing namespace %s: %w", n.path, err)
	}
	return nil
}

// Destroy closes the namespace, unmounts its key (lazily, so a busy mount
// cannot keep it) and removes the key file. The kernel frees the namespace
// once nothing else references it. Destroy is idempotent.
//
// Equivalent to: `ip netns delete NAME`.
func (n *Namespace) Destroy() error {
	cerr := n.Close()
	if err := removeKey(n.path); err != nil {
		return errors.Join(fmt.Errorf("destroying namespace %s: %w", n.path, err), cerr)
	}
	return cerr
}

// withHandle runs fn with the namespace's netlink handle, holding off Close
// until fn returns. fn must not call exported methods of n.
func (n *Namespace) withHandle(fn func(h *netlink.Handle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.handle == nil {
		return fmt.Errorf("namespace %s: %w", n.path, ErrClosed)
	}
	return fn(n.handle)
}

// rawSocket returns the namespace's raw netlink socket, opening it on
// first use.
func (n *Namespace) rawSocket() (*nl.SocketHandle, error) {
	n.mu.RLock()
	raw := n.raw
	n.mu.RUnlock()
	if raw != nil {
		return raw, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.raw != nil {
		return n.raw, nil
	}
	if !n.ns.IsOpen() {
		return nil, fmt.Errorf("namespace %s: %w", n.path, ErrClosed)
	}
	s, err := nl.GetNetlinkSocketAt(n.ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink socket in %s: %w", n.path, err)
	}
	n.raw = &nl.SocketHandle{Socket: s}
	return n.raw, nil
}

// withFd is withHandle for the namespace's file descriptor.
func (n *Namespace) withFd(fn func(fd netns.NsHandle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !n.ns.IsOpen() {
		return fmt.Errorf("namespace %s: %w", n.path, ErrClosed)
	}
	return fn(n.ns)
}

// open opens the namespace at key, which must already be checked.
func open(key string) (*Namespace, error) {
	fd, err := netns.GetFromPath(key)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", key, err)
	}
	var handle *netlink.Handle
	err = onLockedThread(func() (clean bool, err error) {
		origin, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("opening current namespace: %w", err)
		}
		defer origin.Close()
		if err := netns.Set(fd); err != nil {
			return true, fmt.Errorf("entering namespace: %w", err)
		}
		defer func() {
			if serr := netns.Set(origin); serr != nil {
				err = errors.Join(err, fmt.Errorf("switching thread back: %w", serr))
				return
			}
			clean = true
		}()
		if handle, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return false, fmt.Errorf("opening netlink socket: %w", err)
		}
		return false, nil
	})
	if err != nil {
		if handle != nil {
			handle.Close()
		}
		_ = fd.Close()
		return nil, err
	}
	return &Namespace{path: key, id: idOf(fd), ns: fd, handle: handle}, nil
}

// onLockedThread runs fn on a new goroutine locked to its OS thread and
// returns fn's error. fn reports whether it left the thread as it found it;
// if not, the goroutine exits still locked and the runtime terminates the
// thread rather than handing it to other goroutines (containernetworking's
// pkg/ns does the same).
func onLockedThread(fn func() (clean bool, err error)) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		clean, err := fn()
		if clean {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// prepareKey makes sure key can receive a bind mount: an absolute path to a
// regular file, not already a namespace. created reports whether the file
// was made here, so a failed setup removes only what it made.
func prepareKey(key string) (created bool, err error) {
	if key == "" || !filepath.IsAbs(key) {
		return false, fmt.Errorf("key %q is not an absolute path: %w", key, ErrInvalid)
	}
	if Exists(key) {
		return false, fmt.Errorf("key already holds a network namespace: %w", fs.ErrExist)
	}
	if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
		return false, fmt.Errorf("creating key directory: %w", err)
	}
	f, err := os.OpenFile(key, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err == nil {
		return true, f.Close()
	}
	if !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("creating key file: %w", err)
	}
	// A leftover plain file (its mount gone, e.g. after a reboot) is reused.
	fi, err := os.Lstat(key)
	if err != nil {
		return false, fmt.Errorf("checking key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("key is a %s, not a regular file: %w", fi.Mode().Type(), ErrInvalid)
	}
	return false, nil
}

// checkNetns returns nil if path is an nsfs file for a network namespace.
func checkNetns(path string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return &fs.PathError{Op: "statfs", Path: path, Err: err}
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("%s: %w", path, ErrNotNamespace)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return &fs.PathError{Op: "ioctl NS_GET_NSTYPE", Path: path, Err: err}
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("%s is another type of namespace: %w", path, ErrNotNamespace)
	}
	return nil
}

// removeKey unmounts every namespace mounted at key and removes the file.
// Only nsfs mounts are unmounted, so a wrong key can never unmount, say, a
// filesystem. A missing key is not an error.
func removeKey(key string) error {
	if err := unmountAll(key); err != nil {
		return err
	}
	fi, err := os.Lstat(key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("key %s is a %s, not a regular file: %w", key, fi.Mode().Type(), ErrInvalid)
	}
	if err := os.Remove(key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func unmountAll(key string) error {
	for range maxStackedMounts {
		var sfs unix.Statfs_t
		if err := unix.Statfs(key, &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
			return nil
		}
		if err := unix.Unmount(key, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
				return nil // nsfs but not a mount point: e.g. /proc/PID/ns/net
			}
			return fmt.Errorf("unmounting %s: %w", key, err)
		}
	}
	return fmt.Errorf("unmounting %s: more than %d mounts stacked on it", key, maxStackedMounts)
}
