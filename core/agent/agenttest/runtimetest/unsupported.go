//go:build !linux

package runtimetest

import (
	"errors"
	"time"
)

// ErrNotSupported is what the rigs return off Linux.
var ErrNotSupported = errors.New("runtimetest: runtimes are tested on Linux only")

// Shadow is Linux-only.
type Shadow struct{}

// NewShadow is Linux-only.
func NewShadow(dir string, paths ...string) (*Shadow, error) { return nil, ErrNotSupported }

// Close is Linux-only.
func (s *Shadow) Close() error { return nil }

// EndProcesses is Linux-only.
func EndProcesses(dir string, timeout time.Duration) ([]int, error) { return nil, nil }

// RemoveCgroups is Linux-only.
func RemoveCgroups(parent string) error { return nil }

// UnmountUnder is Linux-only.
func UnmountUnder(dir string) error { return nil }
