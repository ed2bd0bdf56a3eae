package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

const guide = "../../../docs/plugin-authors.md"

// block is one fenced block of the guide: its language, the file a
// reader saves it as (named just before it, "… `main.go`:"), its text
// and the guide's line where it starts.
type block struct {
	lang, file, text string
	line             int
}

var fenceRE = regexp.MustCompile("(?s)(?:`([\\w-]+\\.(?:go|hcl))`:\n\n)?```(\\w+)\n(.*?)```")

// guideBlocks returns the guide's fenced blocks in order, or skips the
// test outside the sandnet repository.
func guideBlocks(t *testing.T) []block {
	t.Helper()
	src, err := os.ReadFile(guide)
	if errors.Is(err, os.ErrNotExist) {
		t.Skip("not inside the sandnet repository")
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	for _, m := range fenceRE.FindAllSubmatchIndex(src, -1) {
		b := block{lang: string(src[m[4]:m[5]]), text: string(src[m[6]:m[7]]), line: 1 + bytes.Count(src[:m[4]], []byte("\n"))}
		if m[2] >= 0 {
			b.file = string(src[m[2]:m[3]])
		}
		if b.lang != "go" && b.lang != "hcl" && b.lang != "sh" {
			t.Fatalf("%s:%d: a %q block, which no test checks", guide, b.line, b.lang)
		}
		if b.lang == "go" && b.file == "" {
			t.Fatalf("%s:%d: a Go block that names no file to save it as", guide, b.line)
		}
		out = append(out, b)
	}
	return out
}

// TestGuideHCL decodes the guide's HCL blocks against this plugin's
// schema; TestGuideWalkthrough also checks the whole dev.hcl with
// `sandnet config validate`.
func TestGuideHCL(t *testing.T) {
	guideBlocks(t) // skips outside the repository
	plugintest.ReadmeConfigs(t, guide, "driver", "macvlan", plugintest.SchemaOf(t, Config{}))
}

// offlineGo makes the guide's fresh module resolve everything from the
// module cache: as root these tests run in a network namespace of their
// own, with no route to the module proxy or the checksum database. `make
// test` fills the cache first (.ci/deps runs `go mod tidy -diff` in the
// SDK, loading all that tidy needs for it and its dependencies' tests,
// checked against the SDK's go.sum), and the guide's module needs no more.
var offlineGo = []string{"GOPROXY=off", "GOSUMDB=off"}

// TestGuideGo compiles and vets the guide's Go blocks together, each in
// the file it names, as one package of a fresh module that requires the
// SDK: together they are a whole driver plugin that builds. It needs no
// root; TestGuideWalkthrough does the same the way the guide says.
func TestGuideGo(t *testing.T) {
	blocks := guideBlocks(t)
	if src, _ := os.ReadFile(guide); !bytes.Contains(src, []byte("-require=github.com/sandnet/sandnet/sdk@v"+sdk.Version+" ")) {
		t.Errorf("%s does not tell authors to require the SDK's version, v%s", guide, sdk.Version)
	}
	dir := t.TempDir()
	gomod := "module example.com/macvlan\n\ngo 1.26.8\n\nrequire github.com/sandnet/sandnet/sdk v" + sdk.Version + "\n\nreplace github.com/sandnet/sandnet/sdk => " + plugintest.SandnetRepo(t) + "/sdk\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range blocks {
		if b.lang == "go" {
			if err := os.WriteFile(filepath.Join(dir, b.file), []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, args := range [][]string{{"mod", "tidy"}, {"build", "-o", os.DevNull, "."}, {"vet", "."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), offlineGo...) // the last value of a key wins
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %v on the guide's Go blocks: %v\n%s", args, err, out)
		}
	}
}

// TestGuideWalkthrough follows the guide as a reader would: from an empty
// directory it runs each shell block in order, saving each Go and HCL
// block that names a file under that name as it comes, so that the
// module is made, built and passes `sandnet plugin check`, dev.hcl passes
// `sandnet config validate`, and the agent it starts shows the driver's
// debug line. The reader's setup is the guide's: `sandnet` on PATH,
// SANDNET the checkout, sandnet's plugins installed in
// /usr/local/lib/sandnet/plugins (a tmpfs there, in the test's own mount
// namespace, holds the bolt store).
func TestGuideWalkthrough(t *testing.T) {
	nstest.RequireRoot(t)
	blocks := guideBlocks(t)
	root := plugintest.SandnetRepo(t)
	bin := t.TempDir()
	if err := os.Symlink(plugintest.Sandnet(t), filepath.Join(bin, "sandnet")); err != nil {
		t.Fatal(err)
	}
	installPlugins(t, root)

	env := []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"), "SANDNET=" + root}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "SANDNET" && k != "GOFLAGS" && k != nstest.EnvIsolated {
			env = append(env, kv)
		}
	}
	env = append(env, offlineGo...) // exec keeps the last value of a key

	dir := t.TempDir() // the reader's empty directory; blocks may cd
	pwd := filepath.Join(t.TempDir(), "pwd")
	agentRan := false
	for _, b := range blocks {
		switch {
		case b.file != "":
			if err := os.WriteFile(filepath.Join(dir, b.file), []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
		case b.lang != "sh":
			// An HCL block that is not a file: TestGuideHCL decodes it.
		case strings.Contains(b.text, "sandnet agent "):
			runAgentBlock(t, b, dir, env)
			agentRan = true
		default:
			cmd := exec.Command("bash", "-e", "-c", b.text+"\npwd > "+pwd)
			cmd.Dir, cmd.Env = dir, env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s:%d: the shell block failed: %v\n%s\n%s", guide, b.line, err, b.text, out)
			}
			t.Logf("%s:%d:\n%s%s", guide, b.line, b.text, out)
			cwd, err := os.ReadFile(pwd)
			if err != nil {
				t.Fatal(err)
			}
			dir = strings.TrimSpace(string(cwd))
		}
	}
	if !agentRan {
		t.Fatalf("%s has no block that runs the agent", guide)
	}
}

// runAgentBlock runs a block that ends by starting the agent, until the
// agent has started and the driver's debug line shows in its log; then it stops the agent
// with SIGTERM, as an operator's ^C would, and waits for every process
// the block started to exit.
func runAgentBlock(t *testing.T, b block, dir string, env []string) {
	t.Helper()
	var out syncBuffer
	cmd := exec.Command("bash", "-e", "-c", b.text)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// The block's process group: the shell, the agent and its plugins.
	// Stopped as the block itself is below, so that the agent removes
	// what it made; killed if it will not stop.
	stop := func() bool {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		if polltest.Wait(60*time.Second, func() bool { return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH) }) {
			return true
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return false
	}
	t.Cleanup(func() { stop() })

	want := regexp.MustCompile(`\[DEBUG\] +sandnet\.plugin\.driver\.macvlan\S*: configured: .*\bparent=eth0\b`)
	var exitErr error
	shown := polltest.Wait(60*time.Second, func() bool {
		select {
		case exitErr = <-exited:
			return true
		default:
		}
		return want.MatchString(out.String()) && strings.Contains(out.String(), "agent started")
	})
	if !shown || exitErr != nil || !want.MatchString(out.String()) {
		t.Fatalf("%s:%d: want the agent started and a line matching %s in its log (block exited: %v):\n%s", guide, b.line, want, exitErr, out.String())
	}
	if !stop() {
		t.Fatalf("%s:%d: the agent did not exit within 60s of SIGTERM:\n%s", guide, b.line, out.String())
	}
	if !strings.Contains(out.String(), "dev.hcl: valid") || !strings.Contains(out.String(), "shutting down") {
		t.Fatalf("%s:%d: want dev.hcl valid and the agent shut down cleanly:\n%s", guide, b.line, out.String())
	}
	t.Logf("%s:%d:\n%s%s", guide, b.line, b.text, out.String())
}

// installPlugins puts sandnet's bolt store plugin where the guide's
// dev.hcl looks for sandnet's plugins, /usr/local/lib/sandnet/plugins,
// as `make install` would: in a tmpfs over /usr/local/lib that only this
// test's private mount namespace sees, unmounted when the test ends.
func installPlugins(t *testing.T, root string) {
	t.Helper()
	const lib, dir = "/usr/local/lib", "/usr/local/lib/sandnet/plugins"
	if err := syscall.Mount("tmpfs", lib, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", lib, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(lib, syscall.MNT_DETACH) })
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "sandnet-store-bolt"), "./plugins/store-bolt")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the bolt store: %v\n%s", err, out)
	}
}

// syncBuffer is a bytes.Buffer that a process's output and a poll may
// use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
