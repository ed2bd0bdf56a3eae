package plugintest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Sandnet returns a sandnet binary for a test that runs `sandnet plugin
// check` (or an agent) against a plugin: $SANDNET_BIN; else, when the
// test runs inside the sandnet repository (as the examples under
// examples/plugins do), one built from that repository once per test
// binary; else `sandnet` on PATH. Without any, the test is skipped.
func Sandnet(t testing.TB) string {
	t.Helper()
	if bin := os.Getenv("SANDNET_BIN"); bin != "" {
		return bin
	}
	root := sandnetRepo()
	if root == "" {
		if bin, err := exec.LookPath("sandnet"); err == nil {
			return bin
		}
		t.Skip("no sandnet binary: set SANDNET_BIN or put sandnet on PATH")
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "plugintest-sandnet-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "sandnet")
		cmd := exec.Command("go", "build", "-o", built.path, "./cmd/host")
		cmd.Dir = root
		cmd.Stderr = os.Stderr
		built.err = cmd.Run()
	})
	if built.err != nil {
		t.Fatalf("building sandnet in %s: %v", root, built.err)
	}
	return built.path
}

var built struct {
	once sync.Once
	path string
	err  error
}

// sandnetRepo returns the root of the sandnet repository above the
// working directory, or "".
func sandnetRepo() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte("module github.com/sandnet/sandnet\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// SandnetRepo returns the root of the sandnet repository the test runs
// in, or skips the test when it runs elsewhere. Tests that build the
// repository's own plugins (the bolt store, say) use it.
func SandnetRepo(t testing.TB) string {
	t.Helper()
	root := sandnetRepo()
	if root == "" {
		t.Skip("not inside the sandnet repository")
	}
	return root
}
