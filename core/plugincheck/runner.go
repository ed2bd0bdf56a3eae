package plugincheck

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/sdk/driver"
	"github.com/sandnet/sandnet/sdk/drivertest"
	"github.com/sandnet/sandnet/sdk/nstest"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
	"github.com/sandnet/sandnet/sdk/storetest"
)

// The conformance suites are written for *testing.T, which only package
// testing can make, so the runner drives them through testing.MainStart:
// one top-level test, suiteName, whose subtests are the cases. Package
// testing prints its verbose report on os.Stdout, which the runner
// swaps for a pipe while the suite runs and reads back into Cases.
const suiteName = "conformance"

// runner runs one suite against fresh processes of one plugin.
type runner struct {
	m       *plugin.Manager
	spec    plugin.Spec
	timeout time.Duration
	logs    *logBuffer
	netOpts map[string]string
	// advertise, when valid, makes the suite's network a global one
	// carrying it, as the agent sends a global network.
	advertise netip.Addr
	// vni is the VNI the suite's network carries: the agent's first for
	// a driver that takes peers, when advertise is valid; else 0.
	vni      uint32
	progress func(Case)

	mu sync.Mutex // guards notes
	// notes says, by case, what the runner saw beside the suite's own
	// failure: the plugin hung (and was stopped) or its process exited.
	notes map[string]string
}

// protocol starts one process to learn the negotiated protocol version.
func (r *runner) protocol(ctx context.Context) (int, error) {
	inst, err := r.m.Launch(ctx, r.spec)
	if err != nil {
		return 0, err
	}
	defer inst.Kill()
	d, ok := inst.Client().(*driver.Client)
	if !ok {
		return inst.Protocol(), nil
	}
	caps, err := d.GetCapabilities(ctx)
	if err != nil {
		return 0, err
	}
	// The agent refuses a network option the driver does not list (when
	// it lists any) before it calls the driver: so does the check.
	if known := caps.GetNetworkOptions(); len(known) > 0 {
		for _, k := range slices.Sorted(maps.Keys(r.netOpts)) {
			if !slices.Contains(known, k) {
				return 0, verdictf("-o %s: not a network option the driver lists (known: %s); the agent refuses a network with it before calling the driver", k, strings.Join(known, ", "))
			}
		}
	}
	if r.advertise.IsValid() {
		// The agent gives a global network of a driver that tunnels
		// between hosts a VNI; its first is 4096.
		if caps.GetPeers() && caps.GetConnectivityScope() == pb.Scope_SCOPE_GLOBAL {
			r.vni = firstVNI
			// As the agent does, the network's option asks for its own.
			if v, err := strconv.ParseUint(r.netOpts[optVNI], 10, 24); err == nil && v > 0 {
				r.vni = uint32(v)
			}
		}
	}
	return inst.Protocol(), nil
}

// firstVNI is the first VNI the agent allocates (core/controller).
const firstVNI = 4096

// optVNI is the network option asking for a VNI (core/controller).
const optVNI = "com.sandnet.overlay.vni"

// launch starts a configured plugin process for the case t belongs to,
// and arranges that it is stopped when t ends, or when the case outlives
// r.timeout (the case is then noted as hung).
func (r *runner) launch(t *testing.T) *plugin.Instance {
	t.Helper()
	name := caseName(t.Name())
	from := r.logs.len()
	inst, err := r.m.Launch(t.Context(), r.spec)
	if err != nil {
		t.Fatalf("starting the plugin: %v", err)
	}
	watchdog := time.AfterFunc(r.timeout, func() {
		r.note(name, fmt.Sprintf("hung: the case did not finish within %s, so the plugin was stopped", r.timeout))
		inst.Kill()
	})
	t.Cleanup(func() {
		watchdog.Stop()
		if t.Failed() && exitedWithin(inst, time.Second) {
			msg := "the plugin process exited during the case"
			if p := r.logs.panicLine(from); p != "" {
				msg += ": " + p
			}
			r.note(name, msg)
		}
		inst.Kill()
	})
	return inst
}

// exitedWithin reports whether inst's process exits within d: a failed
// call returns as soon as the connection drops, a moment before go-plugin
// has reaped the process.
func exitedWithin(inst *plugin.Instance, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !inst.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func (r *runner) note(name, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.notes == nil {
		r.notes = map[string]string{}
	}
	if _, ok := r.notes[name]; !ok {
		r.notes[name] = msg
	}
}

func (r *runner) noteOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.notes[name]
}

// suite returns the conformance suite of the plugin's kind.
func (r *runner) suite() func(t *testing.T) {
	if r.spec.Kind == "store" {
		return func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) (store.Store, string) {
				c := r.launch(t).Client().(*store.Client)
				prefix := storetest.Prefix(t)
				// Leave nothing behind in a store that outlives the
				// check (a shared etcd or Consul). Registered after
				// launch's cleanup, so it runs before the kill.
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = c.DeleteTree(ctx, prefix)
				})
				return c, prefix
			})
		}
	}
	return func(t *testing.T) {
		opts := drivertest.Options{
			New: func(t *testing.T) driver.Driver {
				before := linksNow(t)
				inst := r.launch(t)
				// Registered after launch's cleanup, so it runs before the
				// kill, once the case's own deletes are done.
				t.Cleanup(func() { requireLinksGone(t, before) })
				return inst.Client().(*driver.Client)
			},
			SandboxKey: func(t *testing.T) string {
				if os.Geteuid() != 0 {
					t.Skip("needs root: Join is given a sandbox, a network namespace, which only root can create")
				}
				nstest.RequireRoot(t)
				return nstest.NewNetns(t)
			},
		}
		if len(r.netOpts) > 0 || r.advertise.IsValid() {
			opts.Network = func() *pb.Network {
				n := drivertest.DefaultNetwork()
				n.Options = r.netOpts
				if r.advertise.IsValid() {
					n.Scope = pb.Scope_SCOPE_GLOBAL
					n.AdvertiseAddr = r.advertise.String()
					n.Vni = r.vni
				}
				return n
			}
		}
		drivertest.Run(t, opts)
	}
}

// run runs the suite and returns its cases in the order they ran.
func (r *runner) run() []Case {
	pr, pw, err := os.Pipe()
	if err != nil {
		return []Case{{Name: suiteName, Result: Fail, Message: fmt.Sprintf("creating a pipe: %v", err)}}
	}
	stdout := os.Stdout
	os.Stdout = pw
	done := make(chan []Case)
	go func() { done <- r.parse(pr) }()

	m := testing.MainStart(deps{}, []testing.InternalTest{{Name: suiteName, F: r.suite()}}, nil, nil, nil)
	setTestFlags()
	m.Run()

	os.Stdout = stdout
	pw.Close()
	cases := <-done
	pr.Close()
	return cases
}

// setTestFlags gives package testing the flags `go test -v -count=1`
// would: verbose, so that passes and skips are reported too.
func setTestFlags() {
	fs := flag.CommandLine
	for name, value := range map[string]string{"test.v": "true", "test.count": "1", "test.timeout": "0"} {
		_ = fs.Set(name, value)
	}
	if !fs.Parsed() {
		_ = fs.Parse(nil)
	}
}

var (
	runLine    = regexp.MustCompile(`^=== (?:RUN|CONT|NAME)\s+(\S+)`)
	resultLine = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+) \(([\d.]+)s\)`)
	// logPrefix is the file:line a t.Log or t.Fatal line starts with.
	logPrefix = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: `)
)

// parse reads package testing's verbose report and returns one Case per
// subtest of suiteName, calling r.progress as each ends.
func (r *runner) parse(rd io.Reader) []Case {
	var cases []Case
	msgs := map[string][]string{}
	current := ""
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := runLine.FindStringSubmatch(line); m != nil {
			current = caseName(m[1])
			continue
		}
		if m := resultLine.FindStringSubmatch(line); m != nil {
			name := m[2]
			if !strings.HasPrefix(name, suiteName+"/") || strings.Count(name, "/") != 1 {
				continue
			}
			c := Case{Name: caseName(name), Result: strings.ToLower(m[1])}
			fmt.Sscanf(m[3], "%g", &c.Seconds)
			c.Message = r.message(c, msgs[c.Name])
			cases = append(cases, c)
			if r.progress != nil {
				r.progress(c)
			}
			continue
		}
		if current == "" || strings.TrimSpace(line) == "" {
			continue
		}
		if t := strings.TrimSpace(line); t == "PASS" || t == "FAIL" || strings.HasPrefix(t, "=== ") {
			continue
		}
		msgs[current] = append(msgs[current], logPrefix.ReplaceAllString(strings.TrimSpace(line), ""))
	}
	return cases
}

// message is what a case's line says after its result: for a failure,
// what the runner saw (hung, crashed) before the suite's first complaint;
// for a skip, the reason.
func (r *runner) message(c Case, lines []string) string {
	if c.Result == Pass {
		return ""
	}
	var parts []string
	if n := r.noteOf(c.Name); n != "" && c.Result == Fail {
		parts = append(parts, n)
	}
	if len(lines) > 0 {
		parts = append(parts, lines[0])
	}
	if len(lines) > 1 {
		parts = append(parts, fmt.Sprintf("(+%d more lines)", len(lines)-1))
	}
	return strings.Join(parts, "; ")
}

// caseName maps a test name to the case it belongs to:
// "conformance/Watch/sub" → "Watch".
func caseName(test string) string {
	rest, ok := strings.CutPrefix(test, suiteName+"/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// deps is what testing.MainStart needs from a test binary's generated
// main; the runner uses none of profiling, fuzzing or coverage.
type deps struct{}

func (deps) ImportPath() string                          { return "" }
func (deps) ModulePath() string                          { return "" }
func (deps) MatchString(pat, str string) (bool, error)   { return regexp.MatchString(pat, str) }
func (deps) SetPanicOnExit0(bool)                        {}
func (deps) StartCPUProfile(io.Writer) error             { return errUnsupported }
func (deps) StopCPUProfile()                             {}
func (deps) StartTestLog(io.Writer)                      {}
func (deps) StopTestLog() error                          { return nil }
func (deps) WriteProfileTo(string, io.Writer, int) error { return errUnsupported }
func (deps) CoordinateFuzzing(time.Duration, int64, time.Duration, int64, int, []corpusEntry, []reflect.Type, string, string) error {
	return errUnsupported
}
func (deps) RunFuzzWorker(func(corpusEntry) error) error              { return errUnsupported }
func (deps) ReadCorpus(string, []reflect.Type) ([]corpusEntry, error) { return nil, errUnsupported }
func (deps) CheckCorpus([]any, []reflect.Type) error                  { return nil }
func (deps) ResetCoverage()                                           {}
func (deps) SnapshotCoverage()                                        {}
func (deps) InitRuntimeCoverage() (string, func(string, string) (string, error), func() float64) {
	return "", nil, nil
}

// corpusEntry is package testing's (an alias of this struct type).
type corpusEntry = struct {
	Parent     string
	Path       string
	Data       []byte
	Values     []any
	Generation int
	IsSeed     bool
}

var errUnsupported = fmt.Errorf("not supported by plugin check")

// leakWait is how long a driver's links may take to go once a case has
// deleted its endpoints and network: a driver may delete in the
// background (the bridge driver's veth pairs), and the kernel removes a
// pair whose other end was in a namespace that went away a moment later.
const leakWait = 5 * time.Second

// linksNow returns the links of the check's own namespace, by index with
// their names and types, or nil where the check is not isolated (then
// the namespace is the host's, whose links come and go for other
// reasons).
func linksNow(t *testing.T) map[int]string {
	if !nstest.Isolated() {
		return nil
	}
	links := nstest.Links(t, nil) // a dump the driver's work interrupts is taken again
	m := make(map[int]string, len(links))
	for _, l := range links {
		m[l.Attrs().Index] = fmt.Sprintf("%s (%s)", l.Attrs().Name, l.Type())
	}
	return m
}

// requireLinksGone fails t unless, within leakWait, the check's
// namespace holds no link that was not there before the case: a driver
// must remove what it made when its endpoints and networks are deleted.
func requireLinksGone(t *testing.T, before map[int]string) {
	if before == nil {
		return
	}
	var left []string
	for deadline := time.Now().Add(leakWait); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for i, l := range linksNow(t) {
			if _, ok := before[i]; !ok {
				left = append(left, l)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		slices.Sort(left)
		t.Errorf("left behind once the case deleted its endpoints and network (waited %s): link %s", leakWait, strings.Join(left, ", link "))
	}
}
