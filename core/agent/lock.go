package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/config"
)

// LockName is the file, in each directory an agent owns, that the agent
// holds an exclusive flock on for as long as it runs; it holds the
// agent's PID.
const LockName = ".sandnet.lock"

// dirLock is an exclusive flock on one directory's lock file.
type dirLock struct {
	f    *os.File
	made []string // the directories and lock file lockDir created
}

// ErrLocked is wrapped by the error of an agent that finds one of its
// directories held by another agent.
var ErrLocked = errors.New("in use by another sandnet agent")

// lockDir creates dir if needed and takes the exclusive lock on its lock
// file without waiting. When another process holds it, the error names
// the directory (as setting, say "netns_dir") and the holder's PID.
func lockDir(setting, dir string) (*dirLock, error) {
	made := missing(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s %s: %w", setting, dir, err)
	}
	path := filepath.Join(dir, LockName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		made = append(made, path)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file of %s: %w", setting, err)
	}
	if err := flock(f, setting, dir); err != nil {
		f.Close()
		return nil, err
	}
	// The PID is for the error above, read by the next agent; the lock
	// itself is the flock, which the kernel drops when this process ends
	// however it ends.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f, made: made}, nil
}

// missing lists dir and those of its parents that do not exist, outermost
// first: what MkdirAll(dir) makes.
func missing(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || filepath.Dir(d) == d {
			break
		}
		out = append([]string{d}, out...)
	}
	return out
}

// flock takes the exclusive lock on f, the lock file of dir, without
// waiting.
func flock(f *os.File, setting, dir string) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case errors.Is(err, unix.EWOULDBLOCK):
		return fmt.Errorf("%s %s is %w (pid %s holds %s); stop that agent or give this one a directory of its own",
			setting, dir, ErrLocked, holder(f.Name()), f.Name())
	case err != nil:
		return fmt.Errorf("locking %s %s: %w", setting, dir, err)
	}
	return nil
}

// checkFree is lockDir's refusal without its side effects: it fails when
// another agent holds dir's lock, and creates nothing (a directory or lock
// file not there yet is free). The lock is taken later, by lockDir.
func checkFree(setting, dir string) error {
	f, err := os.Open(filepath.Join(dir, LockName))
	if err != nil {
		return nil // lockDir reports what else may be wrong
	}
	defer f.Close() // releases the lock flock took, if it did
	return flock(f, setting, dir)
}

// holder returns the PID written in the lock file at path, or "unknown".
func holder(path string) string {
	b, err := os.ReadFile(path)
	if s := strings.TrimSpace(string(b)); err == nil && s != "" {
		return s
	}
	return "unknown"
}

// unlock releases the lock; the file stays, so that the next agent does
// not race with its removal.
func (l *dirLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// agentDirs are the directories an agent owns, each once, named by
// their setting.
func (a *Agent) agentDirs() [][2]string { return agentDirs(a.cfg) }

// agentDirs are the directories an agent on cfg owns, each once, named by
// their setting.
func agentDirs(cfg *config.Config) [][2]string {
	var out [][2]string
	seen := map[string]bool{}
	for _, d := range [][2]string{
		{"data_dir", cfg.DataDir},
		{"sandbox netns_dir", cfg.Sandbox.NetnsDir},
		{"sandbox files_dir", cfg.Sandbox.FilesDir},
	} {
		if dir := filepath.Clean(d[1]); !seen[dir] {
			seen[dir] = true
			out = append(out, [2]string{d[0], dir})
		}
	}
	return out
}

// checkDirsFree fails, creating nothing, when another agent holds one of
// the agent's directories.
func (a *Agent) checkDirsFree() error {
	for _, d := range a.agentDirs() {
		if err := checkFree(d[0], d[1]); err != nil {
			return err
		}
	}
	return nil
}

// CheckFree fails, creating nothing, when a running agent holds one of
// the directories an agent on cfg owns: a command that must not run
// beside the agent (store migrate) asks it first. The error wraps
// ErrLocked and names the directory and the agent's PID.
func CheckFree(cfg *config.Config) error {
	for _, d := range agentDirs(cfg) {
		err := checkFree(d[0], d[1])
		if errors.Is(err, ErrLocked) {
			return fmt.Errorf("an agent (pid %s) is running on it, holding its %s %s: %w", holder(filepath.Join(d[1], LockName)), d[0], d[1], ErrLocked)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lockDirs takes the locks on the agent's data_dir, netns_dir and
// files_dir (each once, should two be the same), before anything touches
// them. On error it holds none.
func (a *Agent) lockDirs() error {
	for _, d := range a.agentDirs() {
		l, err := lockDir(d[0], d[1])
		if err != nil {
			a.unlockDirs()
			return err
		}
		a.locks = append(a.locks, l)
		a.made = append(a.made, l.made...)
	}
	l, err := lockNamespace()
	if err != nil {
		a.unlockDirs()
		return err
	}
	a.nsLock = l
	return nil
}

func (a *Agent) unlockDirs() {
	for _, l := range a.locks {
		l.unlock()
	}
	a.locks = nil
	if a.nsLock != nil {
		a.nsLock.Close()
		a.nsLock = nil
	}
}

// removeMade removes what a start that failed made: the files and the
// directories it created, newest first; a directory something else was
// put in since stays.
func (a *Agent) removeMade() {
	for i := len(a.made) - 1; i >= 0; i-- {
		_ = os.Remove(a.made[i])
	}
	a.made = nil
}

// nsLockName is the abstract unix socket an agent binds for as long as it
// runs. Abstract names belong to a network namespace, so a second agent
// in the same one finds it taken whatever its directories: two agents
// there would each remove, at their starts, the interfaces, bridges and
// firewall chains the other made (Collect), and share its bridges.
const nsLockName = "@sandnet-agent"

// lockNamespace binds nsLockName, or names the agent holding it.
func lockNamespace() (*net.UnixListener, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: nsLockName, Net: "unix"})
	if err == nil {
		return l, nil
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		return nil, fmt.Errorf("binding %s: %w", nsLockName, err)
	}
	return nil, fmt.Errorf("another sandnet agent (pid %s) runs in this network namespace: two agents on one host remove each other's interfaces and rules; stop it, or run this one in another network namespace: %w", nsHolder(), ErrLocked)
}

// nsHolder returns the PID of the process bound to nsLockName, from the
// credentials a connection to it carries, or "unknown".
func nsHolder() string {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: nsLockName, Net: "unix"})
	if err != nil {
		return "unknown"
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return "unknown"
	}
	pid := "unknown"
	_ = raw.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = strconv.Itoa(int(cred.Pid))
		}
	})
	return pid
}
