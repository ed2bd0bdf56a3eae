package controller

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// hostResolvSettle is how long the watcher waits after a change to the
// host's resolv.conf before reading it: an editor's write, or a
// write-then-rename, comes as a few events in a row.
const hostResolvSettle = 50 * time.Millisecond

// watchHostResolvConf makes the resolvers that forward to the host's
// servers (no `--dns` of their own, no network or config upstreams) follow
// the host's resolv.conf: on every change they read it again and forward
// to the servers it names from then on. The sandboxes' own resolv.conf
// files name 127.0.0.11 and are not rewritten.
//
// It watches the file (an edit in place, also of a file bind-mounted
// there) and its directory (a file replaced by rename, as
// systemd-resolved, NetworkManager and resolvconf do), and the same for
// the file a symlink points to. It runs until ctx ends.
func (c *Controller) watchHostResolvConf(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		c.log.Warn("not following the host's resolv.conf", "error", err)
		return
	}
	defer w.Close()
	files := map[string]bool{}
	watchFiles := func() {
		for _, p := range []string{c.cfg.HostResolvConf, resolvTarget(c.cfg.HostResolvConf)} {
			if p == "" {
				continue
			}
			files[filepath.Clean(p)] = true
			// A file that was replaced is a new inode: watch it again.
			_ = w.Add(p)
			if err := w.Add(filepath.Dir(p)); err != nil {
				c.log.Warn("not following the host's resolv.conf", "dir", filepath.Dir(p), "error", err)
			}
		}
	}
	watchFiles()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			c.log.Warn("watching the host's resolv.conf", "error", err)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if files[filepath.Clean(ev.Name)] && !ev.Has(fsnotify.Chmod) {
				settle.Reset(hostResolvSettle)
			}
		case <-settle.C:
			watchFiles()
			c.reloadHostUpstreams()
		}
	}
}

// resolvTarget returns where a symlinked resolv.conf points, or "".
func resolvTarget(path string) string {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return ""
	}
	t, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	return t
}

// reloadHostUpstreams has every running resolver read the host's
// resolv.conf again; those with upstreams of their own ignore it.
func (c *Controller) reloadHostUpstreams() {
	n := 0
	for _, op := range c.liveResolvers() {
		if r := op.dns.live.Load(); r != nil {
			r.ReloadHostResolvConf()
			n++
		}
	}
	c.log.Info("the host's resolv.conf changed", "resolvers", n)
}
