package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// LockName is the file, in each directory an agent owns, that the agent
// holds an exclusive flock on for as long as it runs; it holds the
// agent's PID.
const LockName = ".sandnet.lock"

// dirLock is an exclusive flock on one directory's lock file.
type dirLock struct {
	f *os.File
}

// ErrLocked is wrapped by the error of an agent that finds one of its
// directories held by another agent.
var ErrLocked = errors.New("in use by another sandnet agent")

// lockDir creates dir if needed and takes the exclusive lock on its lock
// file without waiting. When another process holds it, the error names
// the directory (as setting, say "netns_dir") and the holder's PID.
func lockDir(setting, dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s %s: %w", setting, dir, err)
	}
	path := filepath.Join(dir, LockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock file of %s: %w", setting, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s %s is %w (pid %s holds %s); stop that agent or give this one a directory of its own",
				setting, dir, ErrLocked, holder(path), path)
		}
		return nil, fmt.Errorf("locking %s %s: %w", setting, dir, err)
	}
	// The PID is for the error above, read by the next agent; the lock
	// itself is the flock, which the kernel drops when this process ends
	// however it ends.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
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

// lockDirs takes the locks on the agent's data_dir, netns_dir and
// files_dir (each once, should two be the same), before anything touches
// them. On error it holds none.
func (a *Agent) lockDirs() error {
	dirs := []struct{ setting, dir string }{
		{"data_dir", a.cfg.DataDir},
		{"sandbox netns_dir", a.cfg.Sandbox.NetnsDir},
		{"sandbox files_dir", a.cfg.Sandbox.FilesDir},
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		dir := filepath.Clean(d.dir)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		l, err := lockDir(d.setting, dir)
		if err != nil {
			a.unlockDirs()
			return err
		}
		a.locks = append(a.locks, l)
	}
	return nil
}

func (a *Agent) unlockDirs() {
	for _, l := range a.locks {
		l.unlock()
	}
	a.locks = nil
}
