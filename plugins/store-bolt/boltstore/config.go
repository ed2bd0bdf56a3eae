package boltstore

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/sandnet/sandnet/sdk"
)

// Config is the plugin's `config` block. Its tags declare the schema the
// host checks the operator's block against; README.md documents it.
type Config struct {
	Path    string `hcl:"path" doc:"absolute path of the database file; missing parent directories are created with mode 0700"`
	Timeout string `hcl:"timeout,optional" doc:"how long to wait for the file lock held by another process, as a Go duration (default 1s)"`
	NoSync  bool   `hcl:"no_sync,optional" doc:"skip fsync after each commit: faster, but a power loss can lose recent writes (default false)"`
}

// defaultTimeout is how long Configure waits for another process to
// release the database file before it gives up.
const defaultTimeout = time.Second

// settings is a Config that parse has checked.
type settings struct {
	path    string
	timeout time.Duration
	noSync  bool
}

// parse decodes the configuration the host sent (cty JSON of Config) and
// checks it. Every error wraps sdk.ErrInvalid.
func parse(raw []byte) (settings, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return settings{}, err
	}
	return c.settings()
}

func (c Config) settings() (settings, error) {
	s := settings{path: c.Path, timeout: defaultTimeout, noSync: c.NoSync}
	switch {
	case c.Path == "":
		return settings{}, fmt.Errorf("config: path is required: %w", sdk.ErrInvalid)
	case !filepath.IsAbs(c.Path):
		// A relative path would depend on the directory the host was
		// started from.
		return settings{}, fmt.Errorf("config: path %q is not absolute: %w", c.Path, sdk.ErrInvalid)
	}
	s.path = filepath.Clean(c.Path)
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return settings{}, fmt.Errorf("config: timeout %q: %v: %w", c.Timeout, err, sdk.ErrInvalid)
		}
		// bbolt waits forever on a zero timeout; a hung start is worse
		// than an error naming the lock.
		if d <= 0 {
			return settings{}, fmt.Errorf("config: timeout %q must be positive: %w", c.Timeout, sdk.ErrInvalid)
		}
		s.timeout = d
	}
	return s, nil
}
