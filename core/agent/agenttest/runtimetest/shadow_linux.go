package runtimetest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Shadow is a set of paths each covered by a fresh tmpfs in the calling
// process's mount namespace. Close uncovers them.
type Shadow struct {
	dir     string   // holds the overlays' upper and work directories
	mounted []string // mount points, in mount order
	overlay []string // directories covered by a copy-on-write overlay
}

// NewShadow covers each path with an empty tmpfs. A path that does not
// exist is made inside a copy-on-write overlay of its nearest existing
// parent, whose upper layer is a tmpfs mounted below dir, so the machine's
// disk never gains it; the parent's content stays visible, its changes
// land in the tmpfs. The caller's mount namespace must be private (mounts
// must not propagate to the machine's); on error nothing stays mounted.
//
// Equivalent to: `mount -t tmpfs tmpfs PATH` for each path, after
// `mount -t overlay overlay -o lowerdir=P,upperdir=U,workdir=W P` for a
// missing path's parent P.
func NewShadow(dir string, paths ...string) (s *Shadow, err error) {
	s = &Shadow{dir: filepath.Join(dir, "shadow")}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, p := range paths {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("shadowing %s: not an absolute path", p)
		}
		p = filepath.Clean(p)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := s.makeInOverlay(p); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, fmt.Errorf("shadowing %s: %w", p, err)
		}
		if err := s.mount("tmpfs", p, "tmpfs", "mode=0755"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// makeInOverlay makes the missing directory p inside an overlay of its
// nearest existing parent, covering that parent first unless an overlay
// of this shadow covers it already.
func (s *Shadow) makeInOverlay(p string) error {
	parent := filepath.Dir(p)
	for {
		if _, err := os.Stat(parent); err == nil {
			break
		}
		parent = filepath.Dir(parent)
	}
	if !s.overlaid(parent) {
		if len(s.overlay) == 0 {
			if err := os.MkdirAll(s.dir, 0o700); err != nil {
				return err
			}
			if err := s.mount("tmpfs", s.dir, "tmpfs", "mode=0700"); err != nil {
				return err
			}
		}
		layer := filepath.Join(s.dir, fmt.Sprint(len(s.overlay)))
		upper, work := filepath.Join(layer, "upper"), filepath.Join(layer, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", parent, upper, work)
		if err := s.mount("overlay", parent, "overlay", opts); err != nil {
			return err
		}
		s.overlay = append(s.overlay, parent)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("shadowing %s: %w", p, err)
	}
	return nil
}

// overlaid reports whether dir is inside an overlay of this shadow.
func (s *Shadow) overlaid(dir string) bool {
	for _, o := range s.overlay {
		if dir == o || strings.HasPrefix(dir, o+"/") {
			return true
		}
	}
	return false
}

func (s *Shadow) mount(source, target, fstype, data string) error {
	if err := unix.Mount(source, target, fstype, unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mounting %s on %s: %w", fstype, target, err)
	}
	s.mounted = append(s.mounted, target)
	return nil
}

// Close unmounts, last first, everything NewShadow mounted, detaching
// what is still busy (a runtime's leftover netns mount under it goes
// with it).
func (s *Shadow) Close() error {
	var errs []error
	for i := len(s.mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(s.mounted[i], unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", s.mounted[i], err))
		}
	}
	s.mounted = nil
	return errors.Join(errs...)
}
