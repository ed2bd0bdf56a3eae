package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/sandnet/sandnet/sdk/plugintest"
)

const guide = "../../../docs/plugin-authors.md"

// TestGuideHCL decodes the guide's HCL block against this plugin's schema.
func TestGuideHCL(t *testing.T) {
	if _, err := os.Stat(guide); err != nil {
		t.Skip("not inside the sandnet repository")
	}
	plugintest.ReadmeConfigs(t, guide, "driver", "macvlan", plugintest.SchemaOf(t, Config{}))
}

// TestGuideGo compiles the guide's Go blocks together, as one package of a
// fresh module that requires the SDK, the way a reader would assemble
// them: together they are a whole driver plugin that builds.
func TestGuideGo(t *testing.T) {
	src, err := os.ReadFile(guide)
	if err != nil {
		t.Skip("not inside the sandnet repository")
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(src, -1)
	if len(blocks) == 0 {
		t.Fatal("the guide has no Go block")
	}
	dir := t.TempDir()
	sdkDir, err := filepath.Abs("../../../sdk")
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/macvlan\n\ngo 1.26.8\n\nrequire github.com/sandnet/sandnet/sdk v0.0.0\n\nreplace github.com/sandnet/sandnet/sdk => " + sdkDir + "\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks {
		if err := os.WriteFile(filepath.Join(dir, "block"+string(rune('a'+i))+".go"), b[1], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v on the guide's Go blocks: %v\n%s", args, err, out)
		}
	}
}
