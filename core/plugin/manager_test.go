package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/plugintest"
	"github.com/sandnet/sandnet/sdk/polltest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

func noneBinary(t testing.TB) string {
	t.Helper()
	return plugintest.Build(t, "github.com/sandnet/sandnet/plugins/none")
}

func newManager(t testing.TB) *Manager {
	t.Helper()
	m := NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}), Options{HealthInterval: 200 * time.Millisecond})
	t.Cleanup(m.Shutdown)
	return m
}

// startNone starts the none driver under m and returns it with its
// current client.
func startNone(t testing.TB, m *Manager) (*Plugin, *driver.Client) {
	t.Helper()
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Driver()
	if err != nil {
		t.Fatal(err)
	}
	return p, d
}

func alive(pid int) bool {
	// A reaped process is gone; a zombie would still answer kill 0, so look
	// at /proc for its state too.
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", itoa(pid), "stat"))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestStartCallShutdown(t *testing.T) {
	bin := noneBinary(t)
	m := newManager(t)
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: bin})
	if err != nil {
		t.Fatal(err)
	}
	st := p.Status()
	if !st.Running || !st.Healthy || st.PID <= 0 || st.Protocol != sdk.ProtocolVersion || st.Version == "" {
		t.Fatalf("status after start = %+v", st)
	}
	d, err := p.Driver()
	if err != nil {
		t.Fatal(err)
	}
	caps, err := d.GetCapabilities(context.Background())
	if err != nil || caps.GetDataScope() != pb.Scope_SCOPE_LOCAL {
		t.Fatalf("GetCapabilities = %v, %v", caps, err)
	}
	if _, err := p.Store(); !errors.Is(err, sdk.ErrInvalid) {
		t.Fatalf("Store() on a driver: err = %v, want ErrInvalid", err)
	}
	m.Shutdown()
	if alive(st.PID) {
		t.Fatalf("plugin pid %d still alive after Shutdown", st.PID)
	}
	if _, err := p.Driver(); !errors.Is(err, sdk.ErrUnavailable) {
		t.Fatalf("Driver() after Shutdown: err = %v, want ErrUnavailable", err)
	}
}

func TestPluginDoesNotGetHostEnvironment(t *testing.T) {
	t.Setenv("SANDNET_TEST_SECRET", "do-not-leak")
	m := newManager(t)
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(filepath.Join("/proc", itoa(p.Status().PID), "environ"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(env), "SANDNET_TEST_SECRET") {
		t.Fatalf("plugin environment holds the host's variable: %q", env)
	}
}

func TestRestartAfterKill(t *testing.T) {
	m := newManager(t)
	var replays atomic.Int32
	m.OnRestart(func(*Plugin) { replays.Add(1) })
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	old := p.Status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.UntilEmpty(t, 10*time.Second, "the plugin running again after kill -9", func() string {
		if st := p.Status(); !st.Running || st.PID == old {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
	d, err := p.Driver()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetCapabilities(context.Background()); err != nil {
		t.Fatalf("call after restart: %v", err)
	}
	if got := p.Status().Restarts; got != 1 {
		t.Fatalf("restarts = %d, want 1", got)
	}
	if replays.Load() != 1 {
		t.Fatalf("OnRestart called %d times, want 1", replays.Load())
	}
}

// TestCrashLoopBacksOff: a plugin that ends right after every start (as
// one that panics on the call the host makes after each restart) is
// restarted ever more slowly, its waits doubling up to MaxBackoff, not in
// a tight loop; a run of StableAfter resets the wait.
func TestCrashLoopBacksOff(t *testing.T) {
	m := NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}),
		Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, StableAfter: time.Minute})
	t.Cleanup(m.Shutdown)
	const crashes = 5
	var restarts atomic.Int32
	m.OnRestart(func(p *Plugin) {
		if restarts.Add(1) < crashes {
			_ = syscall.Kill(p.Status().PID, syscall.SIGKILL)
		}
	})
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := syscall.Kill(p.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 30*time.Second, "five restarts", func() bool { return restarts.Load() >= crashes })
	took := time.Since(start)
	// Waits of 50, 100, 200, 400 and 400 ms: a slower machine only adds.
	if want := 1150 * time.Millisecond; took < want {
		t.Fatalf("%d restarts of a plugin that ends at once took %v; with backoff they take at least %v", crashes, took, want)
	}
	p.mu.Lock()
	last := p.lastWait
	// A run of StableAfter or longer starts again from MinBackoff.
	first := p.restartWait(time.Minute)
	p.mu.Unlock()
	if last != 400*time.Millisecond || first != 50*time.Millisecond {
		t.Fatalf("last wait %v, after a stable run %v; want 400ms (the cap) and 50ms", last, first)
	}
}

// TestCallEndedByCrash: a call during which the plugin's process dies (a
// panic in the driver) fails saying so and where to look, not with a bare
// "error reading from server: EOF", and is still ErrUnavailable.
func TestCallEndedByCrash(t *testing.T) {
	m := newManager(t)
	bin := plugintest.Build(t, "github.com/sandnet/sandnet/cmd/host/testdata/fakeplugin")
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "fake", Path: bin, Args: []string{"crash"}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Driver()
	if err != nil {
		t.Fatal(err)
	}
	err = d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{})
	if !errors.Is(err, sdk.ErrUnavailable) || !strings.Contains(fmt.Sprint(err), "the plugin process ended during the call (its output in the agent's log says why)") {
		t.Fatalf("a call that crashed the plugin: %v; want ErrUnavailable saying the process ended", err)
	}
	// A plugin that answers Unavailable itself (a store whose Consul is
	// down) is not said to have ended.
	p, err = m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "down", Path: bin, Args: []string{"unavailable"}})
	if err != nil {
		t.Fatal(err)
	}
	if d, err = p.Driver(); err != nil {
		t.Fatal(err)
	}
	err = d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{})
	if !errors.Is(err, sdk.ErrUnavailable) || strings.Contains(fmt.Sprint(err), "ended during the call") || !strings.Contains(fmt.Sprint(err), "its backend does not answer") {
		t.Fatalf("a plugin's own Unavailable answer: %v; want it as the plugin gave it", err)
	}
}

// TestStoppedPluginRestarted: a plugin process that stops answering —
// stopped with SIGSTOP, as a hung one — fails its health checks, each
// bounded by HealthTimeout, is killed and started again; a call made to
// it while it was stopped fails then rather than waiting for ever.
func TestStoppedPluginRestarted(t *testing.T) {
	m := NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}),
		Options{HealthInterval: 100 * time.Millisecond, HealthTimeout: 100 * time.Millisecond})
	t.Cleanup(m.Shutdown)
	p, d := startNone(t, m)
	old := p.Status().PID
	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(old, syscall.SIGKILL) })
	called, calling := make(chan error, 1), make(chan struct{})
	go func() {
		close(calling)
		_, err := d.GetCapabilities(context.Background())
		called <- err
	}()
	// The call is made before the restart can be (three failed health
	// checks, 300 ms): on a loaded machine the goroutine may start late.
	<-calling
	polltest.UntilEmpty(t, 30*time.Second, "the stopped plugin replaced by a running one", func() string {
		if st := p.Status(); !st.Running || st.PID == old {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
	select {
	case err := <-called:
		if !errors.Is(err, sdk.ErrUnavailable) {
			t.Fatalf("the call made while the plugin was stopped: %v, want ErrUnavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call made while the plugin was stopped still waits after its restart")
	}
	polltest.Until(t, 10*time.Second, "the stopped process killed", func() bool { return !alive(old) })
	d, err := p.Driver()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.GetCapabilities(context.Background()); err != nil {
		t.Fatalf("a call after the restart: %v", err)
	}
}

func TestStartFailures(t *testing.T) {
	bin := noneBinary(t)
	tests := []struct {
		name string
		spec Spec
		want []string
		is   error
	}{
		{
			name: "wrong checksum",
			spec: Spec{Kind: sdk.KindDriver, Name: "none", Path: bin, Checksum: strings.Repeat("ab", 32)},
			want: []string{`driver plugin "none"`, "sha256:" + strings.Repeat("ab", 32), "has sha256:"},
			is:   ErrChecksum,
		},
		{
			name: "missing binary",
			spec: Spec{Kind: sdk.KindDriver, Name: "ghost", Path: filepath.Join(t.TempDir(), "sandnet-driver-ghost")},
			want: []string{`driver plugin "ghost"`, "no such file"},
		},
		{
			name: "config rejected",
			spec: Spec{Kind: sdk.KindDriver, Name: "none", Path: bin, Configure: func(*pb.Schema) ([]byte, error) {
				return nil, errors.New("config.hcl:3:5: bad thing")
			}},
			want: []string{`driver plugin "none"`, "config.hcl:3:5: bad thing"},
		},
		{
			name: "wrong kind",
			spec: Spec{Kind: sdk.KindStore, Name: "none", Path: bin},
			want: []string{`store plugin "none"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := children(t)
			m := newManager(t)
			_, err := m.Start(context.Background(), tt.spec)
			if err == nil {
				t.Fatal("Start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if len(m.Plugins()) != 0 {
				t.Errorf("failed plugin is still listed")
			}
			if after := children(t); len(after) > len(before) {
				t.Errorf("a failed start left a process behind: before %v, after %v", before, after)
			}
		})
	}
}

// children lists the live child processes of the test process.
func children(t testing.TB) []string {
	t.Helper()
	// Every thread of the test process may have forked; gather them all.
	tasks, _ := os.ReadDir(filepath.Join("/proc", itoa(os.Getpid()), "task"))
	var out []string
	for _, task := range tasks {
		c, err := os.ReadFile(filepath.Join("/proc", itoa(os.Getpid()), "task", task.Name(), "children"))
		if err != nil {
			continue
		}
		for _, pid := range strings.Fields(string(c)) {
			out = append(out, pid)
		}
	}
	sort.Strings(out)
	return out
}

// WaitRunning returns at once for a running plugin, waits through a
// restart for a killed one, and gives up after its bound for one that is
// stopped.
func TestWaitRunning(t *testing.T) {
	m := newManager(t)
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !p.WaitRunning(0) {
		t.Fatal("a running plugin: WaitRunning false")
	}
	old := p.Status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.Until(t, 10*time.Second, "the kill noticed", func() bool { return !p.Status().Running || p.Status().PID != old })
	if !p.WaitRunning(30 * time.Second) {
		t.Fatal("WaitRunning gave up on a plugin restarting")
	}
	if st := p.Status(); !st.Running || st.PID == old {
		t.Fatalf("after WaitRunning: %+v", st)
	}
	m.Stop(sdk.KindDriver, "none")
	if p.WaitRunning(10 * time.Millisecond) {
		t.Fatal("WaitRunning true for a stopped plugin")
	}
}

func fakeBinary(t testing.TB) string {
	t.Helper()
	return plugintest.Build(t, "github.com/sandnet/sandnet/cmd/host/testdata/fakeplugin")
}

// A planned stop of a plugin — Replace (a reload that changed its block)
// or Stop — lets a call in flight finish instead of failing it; a call
// that does not finish within DrainTimeout fails, and the process goes.
func TestPlannedStopDrainsCalls(t *testing.T) {
	bin := fakeBinary(t)
	for _, how := range []string{"replace", "stop"} {
		t.Run(how, func(t *testing.T) {
			m := newManager(t)
			spec := Spec{Kind: sdk.KindDriver, Name: "fake", Path: bin, Args: []string{"slow"}}
			p, err := m.Start(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			d, err := p.Driver()
			if err != nil {
				t.Fatal(err)
			}
			called := make(chan error, 1)
			go func() {
				called <- d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{Network: &pb.Network{Id: "n1"}})
			}()
			polltest.Until(t, 5*time.Second, "the call in flight", func() bool {
				p.calls.mu.Lock()
				defer p.calls.mu.Unlock()
				return p.calls.n > 0
			})
			if how == "replace" {
				if _, err := m.Replace(context.Background(), spec); err != nil {
					t.Fatal(err)
				}
			} else {
				m.Stop(sdk.KindDriver, "fake")
			}
			select {
			case err := <-called:
				if err != nil {
					t.Fatalf("the call in flight during a planned %s failed: %v", how, err)
				}
			default:
				t.Fatalf("the %s returned before the call in flight finished", how)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		m := NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}), Options{DrainTimeout: 200 * time.Millisecond})
		t.Cleanup(m.Shutdown)
		p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "fake", Path: bin, Args: []string{"hang"}})
		if err != nil {
			t.Fatal(err)
		}
		pid := p.Status().PID
		d, err := p.Driver()
		if err != nil {
			t.Fatal(err)
		}
		called := make(chan error, 1)
		go func() {
			called <- d.CreateNetwork(context.Background(), &pb.CreateNetworkRequest{Network: &pb.Network{Id: "n1"}})
		}()
		polltest.Until(t, 5*time.Second, "the call in flight", func() bool {
			p.calls.mu.Lock()
			defer p.calls.mu.Unlock()
			return p.calls.n > 0
		})
		m.Stop(sdk.KindDriver, "fake")
		if err := <-called; err == nil {
			t.Fatal("a call that hangs past the drain succeeded")
		}
		polltest.Until(t, 5*time.Second, "the hung plugin's process gone", func() bool { return !alive(pid) })
	})
}

// A plugin killed with -9 is seen to have exited at once, from its
// process's pidfd, not at the next poll: with a poll an hour apart, it
// runs again (another PID) within seconds.
func TestExitSeenAtOnce(t *testing.T) {
	m := NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: os.Stderr}), Options{PollInterval: time.Hour, HealthInterval: time.Hour})
	t.Cleanup(m.Shutdown)
	p, err := m.Start(context.Background(), Spec{Kind: sdk.KindDriver, Name: "none", Path: noneBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	old := p.Status().PID
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	polltest.UntilEmpty(t, 10*time.Second, "the plugin running again after kill -9, with no poll to see it", func() string {
		if st := p.Status(); !st.Running || st.PID == old {
			return fmt.Sprintf("%+v", st)
		}
		return ""
	})
}
