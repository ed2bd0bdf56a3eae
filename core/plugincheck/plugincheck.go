// Package plugincheck is `sandnet plugin check`: it starts a plugin binary
// exactly as the agent would (core/plugin: checksum, go-plugin handshake,
// AutoMTLS, no inherited environment), sends it the `config` block the
// operator wrote for it, and runs the SDK's conformance suite of its kind
// (sdk/drivertest or sdk/storetest) against the process.
//
// Every case gets a process of its own, so a crash or a hang spoils one
// case, not the rest; a case that runs longer than Options.CaseTimeout has
// its plugin stopped and is failed as hung. A binary that never gets as far
// as the suite (missing, not executable, not a sandnet plugin, another
// protocol version, the other kind, a config block it rejects) gets an
// *Verdict error: one line, no Go panic or stack trace.
//
// Run does not isolate anything itself: the caller runs a driver's check
// inside a throwaway network namespace (cmd/host does, through
// nstest.Isolate), because a driver under test creates links and rules
// wherever it runs. A store's check runs where the caller does: a store
// makes no network state, and its backend (etcd, Consul on loopback) must
// stay reachable. StoreCheck says which applies before anything starts.
package plugincheck

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/nstest"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Options say what to check and how.
type Options struct {
	// Path is the plugin binary.
	Path string
	// Kind is sdk.KindDriver or sdk.KindStore; empty accepts either and
	// checks the kind the plugin reports.
	Kind string
	// ConfigFile, when set, is an HCL file holding the plugin's block: a
	// whole agent config or just that `driver`/`store` block. The block
	// that names the plugin (by its label, else the only block of its
	// kind) gives the `config` sent to it, and its checksum and args.
	ConfigFile string
	// Checksum pins the binary's SHA-256 ("sha256:<hex>" or bare hex).
	Checksum string
	// NetworkOptions are the driver options of the network the driver
	// suite creates (a macvlan driver's parent, say).
	NetworkOptions map[string]string
	// AdvertiseAddr, when set, is the advertise address the agent would
	// send: the suite's network is then a global one carrying it (what a
	// driver that tunnels between hosts, such as overlay, needs), and the
	// check puts the address on Uplink in its namespace. Empty: the
	// ConfigFile's top-level advertise_addr, if it has one.
	AdvertiseAddr string
	// CaseTimeout bounds one case; a case still running then has its
	// plugin stopped and fails as hung. Zero means DefaultCaseTimeout.
	CaseTimeout time.Duration
	// StartTimeout bounds the handshake. Zero means 10s.
	StartTimeout time.Duration
}

// DefaultCaseTimeout is how long a case may run by default: the store
// suite's slowest case writes a few thousand keys.
const DefaultCaseTimeout = 2 * time.Minute

// Uplink is an interface (one end of a veth pair) the check's namespace holds for drivers
// that need a parent link (macvlan, ipvlan): `-o parent=sncheck0`.
const Uplink = "sncheck0"

// Results of a case.
const (
	Pass = "pass"
	Fail = "fail"
	Skip = "skip"
)

// Case is the outcome of one conformance case.
type Case struct {
	Name    string  `json:"name"`
	Result  string  `json:"result"`
	Message string  `json:"message,omitempty"`
	Seconds float64 `json:"seconds"`
}

// Report is the outcome of a check that got as far as the suite.
type Report struct {
	Path    string `json:"path"`
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	// SDKVersion is the SDK version the plugin says it was built with;
	// empty from a plugin built before the SDK reported one (0.1.0).
	SDKVersion string `json:"sdk_version,omitempty"`
	// Protocols are the protocol versions the plugin says it speaks;
	// Protocol is the one the handshake settled on.
	Protocols []int32 `json:"protocols"`
	Protocol  int     `json:"protocol"`
	Cases     []Case  `json:"cases"`
	Passed    int     `json:"passed"`
	Failed    int     `json:"failed"`
	Skipped   int     `json:"skipped"`
	// OK is true when every case passed: a skipped case was not
	// verified, so it counts against OK too.
	OK bool `json:"ok"`
}

// Verdict is why a check stopped before the suite: a one-line Reason, and
// for a config block the plugin rejects, Diagnostics with their positions.
type Verdict struct {
	Reason      string
	Diagnostics hcl.Diagnostics
	Files       map[string]*hcl.File
}

func (v *Verdict) Error() string { return v.Reason }

func verdictf(format string, args ...any) *Verdict {
	return &Verdict{Reason: fmt.Sprintf(format, args...)}
}

// Run checks the plugin o describes. progress, when not nil, is called as
// each case ends. The error is a *Verdict when the plugin could not be
// checked at all.
func Run(ctx context.Context, o Options, progress func(Case)) (*Report, error) {
	if o.CaseTimeout <= 0 {
		o.CaseTimeout = DefaultCaseTimeout
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 10 * time.Second
	}
	if o.Kind != "" && o.Kind != sdk.KindDriver && o.Kind != sdk.KindStore {
		return nil, verdictf("--kind %q: want %s or %s", o.Kind, sdk.KindDriver, sdk.KindStore)
	}
	path, script, err := checkBinary(o.Path)
	if err != nil {
		return nil, err
	}
	logs := &logBuffer{}
	m := plugin.NewManager(hclog.New(&hclog.LoggerOptions{Level: hclog.Debug, Output: logs}), plugin.Options{StartTimeout: o.StartTimeout})
	defer m.Shutdown()

	spec := plugin.Spec{Kind: o.Kind, Name: filepath.Base(path), Path: path}
	if o.Checksum != "" {
		c := o.Checksum
		if !strings.Contains(c, ":") {
			c = "sha256:" + c
		}
		sum, err := config.ParseChecksum(c)
		if err != nil {
			return nil, verdictf("--checksum: %v", err)
		}
		spec.Checksum = sum
	}
	// Inspect accepts either kind, so that the other kind is named
	// below rather than refused by the manager.
	info, err := m.Inspect(ctx, plugin.Spec{Name: spec.Name, Path: spec.Path, Checksum: spec.Checksum})
	if err != nil {
		return nil, startVerdict(path, script, err, logs)
	}
	if o.Kind != "" && info.GetKind() != o.Kind {
		return nil, verdictf("%s is a %s plugin (%q), not a %s plugin", path, info.GetKind(), info.GetName(), o.Kind)
	}
	if k := info.GetKind(); k != sdk.KindDriver && k != sdk.KindStore {
		return nil, verdictf("%s says it is a plugin of kind %q; sandnet plugins are drivers or stores", path, k)
	}
	spec.Kind = info.GetKind()
	block, cfgFile, err := pluginBlock(o, spec, info)
	if err != nil {
		return nil, err
	}
	advertise, err := advertiseAddr(o, cfgFile)
	if err != nil {
		return nil, err
	}
	if spec.Checksum == "" {
		spec.Checksum = block.Checksum
	}
	spec.Args = block.Args
	cfg, diags := config.DecodePluginConfig(block, info.GetConfigSchema())
	if diags.HasErrors() {
		v := verdictf("the %s block's config does not match the plugin's schema", block)
		v.Diagnostics = diags
		v.Files = blockFiles(o)
		return nil, v
	}
	spec.Configure = func(*pb.Schema) ([]byte, error) { return cfg, nil }

	if spec.Kind == sdk.KindDriver && nstest.Isolated() {
		if err := addUplink(advertise); err != nil {
			return nil, verdictf("preparing the check's namespace: %v", err)
		}
	}
	r := &runner{m: m, spec: spec, timeout: o.CaseTimeout, logs: logs, netOpts: o.NetworkOptions, advertise: advertise, progress: progress}
	rep := &Report{Path: path, Name: info.GetName(), Kind: spec.Kind, Version: info.GetVersion(), SDKVersion: info.GetSdkVersion(), Protocols: info.GetProtocolVersions()}
	// The negotiated version, from a process of the suite's own.
	rep.Protocol, err = r.protocol(ctx)
	if v := (*Verdict)(nil); errors.As(err, &v) {
		return nil, v
	} else if err != nil {
		return nil, startVerdict(path, script, err, logs)
	}
	rep.Cases = r.run()
	for _, c := range rep.Cases {
		switch c.Result {
		case Pass:
			rep.Passed++
		case Fail:
			rep.Failed++
		default:
			rep.Skipped++
		}
	}
	rep.OK = len(rep.Cases) > 0 && rep.Passed == len(rep.Cases)
	return rep, nil
}

// checkBinary refuses what cannot be a plugin binary before anything is
// started, and returns the absolute path and, for a script, its #! line.
func checkBinary(p string) (path, script string, err error) {
	if p == "" {
		return "", "", verdictf("no plugin binary given")
	}
	path, err = filepath.Abs(p)
	if err != nil {
		return "", "", verdictf("%s: %v", p, err)
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", "", verdictf("%s: no such file", path)
	case err != nil:
		return "", "", verdictf("%s: %v", path, errors.Unwrap(err))
	case fi.IsDir():
		return "", "", verdictf("%s is a directory, not a plugin binary", path)
	case !fi.Mode().IsRegular():
		return "", "", verdictf("%s is not a regular file (%s)", path, fi.Mode().Type())
	case fi.Mode().Perm()&0o111 == 0:
		return "", "", verdictf("%s is not executable (mode %04o): chmod +x it, or build it again", path, fi.Mode().Perm())
	}
	f, err := os.Open(path)
	if err != nil {
		return "", "", verdictf("%s: %v", path, errors.Unwrap(err))
	}
	defer f.Close()
	head := make([]byte, 128)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if bytes.HasPrefix(head, []byte("#!")) {
		line, _, _ := bytes.Cut(head, []byte("\n"))
		// A wrapper script that execs a real plugin is started like
		// any binary; the verdict names the script only if it fails.
		return path, string(line), nil
	}
	if !bytes.HasPrefix(head, []byte("\x7fELF")) {
		return "", "", verdictf("%s is not an executable program (no ELF header): a sandnet plugin is a program built with the SDK", path)
	}
	return path, "", nil
}

var (
	protoMismatch = regexp.MustCompile(`(?i)incompatible API version with plugin\. Plugin version: (\d+), Client versions: \[([\d ]*)\]`)
	unrecognized  = regexp.MustCompile(`Unrecognized remote plugin message: ([^\n]*)`)
)

// startVerdict turns a failure to start or inspect the plugin into one
// line that says what the binary is.
func startVerdict(path, script string, err error, logs *logBuffer) *Verdict {
	what := path
	if script != "" {
		what = fmt.Sprintf("%s (a script: %s)", path, script)
	}
	msg := err.Error()
	switch {
	case errors.Is(err, plugin.ErrChecksum):
		_, detail, _ := strings.Cut(msg, plugin.ErrChecksum.Error()+": ")
		return verdictf("%s: checksum mismatch: %s", path, detail)
	case protoMismatch.MatchString(msg):
		m := protoMismatch.FindStringSubmatch(msg)
		return verdictf("%s speaks sandnet plugin protocol %s; this sandnet speaks %s: rebuild the plugin against an SDK that speaks protocol %d",
			what, m[1], strings.Join(strings.Fields(m[2]), ", "), sdk.ProtocolVersion)
	case strings.Contains(msg, "incompatible core API version"):
		return verdictf("%s is a go-plugin program of another core protocol version, not a sandnet plugin", what)
	case unrecognized.MatchString(msg):
		line := unrecognized.FindStringSubmatch(msg)[1]
		if line == "" {
			return verdictf("%s is not a sandnet plugin: it printed nothing and exited without the plugin handshake", what)
		}
		return verdictf("%s is not a sandnet plugin: it printed %q instead of the plugin handshake", what, truncate(line, 60))
	case strings.Contains(msg, "plugin exited before we could connect"):
		if p := logs.panicLine(0); p != "" {
			return verdictf("%s crashed before the plugin handshake: %s", what, p)
		}
		return verdictf("%s is not a sandnet plugin: it exited without the plugin handshake", what)
	case strings.Contains(msg, "timeout while waiting for plugin to start"):
		return verdictf("%s is not a sandnet plugin: no plugin handshake within the start timeout (it hung or waited for input)", what)
	case strings.Contains(msg, "unknown service sandnet.v1.Plugin"):
		return verdictf("%s is a go-plugin program but not a sandnet plugin: it serves no sandnet Plugin service", what)
	}
	return verdictf("%s: %s", what, strings.ReplaceAll(msg, "\n", " "))
}

// addUplink adds the link Uplink, up, to the check's own namespace: one
// end of a veth pair whose other end (sncheck1) is up too, so that frames
// a driver sends out of it go somewhere; with a valid advertise, the
// address goes on Uplink as the only address of its prefix. Equivalent to:
// `ip link add sncheck0 up type veth peer name sncheck1 up` and
// `ip addr add ADVERTISE dev sncheck0 nodad`.
func addUplink(advertise netip.Addr) error {
	l := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: Uplink, Flags: net.FlagUp}, PeerName: uplinkPeer}
	if err := netlink.LinkAdd(l); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("adding %s: %w", Uplink, err)
	}
	peer, err := netlink.LinkByName(uplinkPeer)
	if err != nil {
		return fmt.Errorf("finding %s: %w", uplinkPeer, err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		return fmt.Errorf("bringing %s up: %w", uplinkPeer, err)
	}
	if !advertise.IsValid() {
		return nil
	}
	up, err := netlink.LinkByName(Uplink)
	if err != nil {
		return fmt.Errorf("finding %s: %w", Uplink, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: advertise.AsSlice(), Mask: net.CIDRMask(advertise.BitLen(), advertise.BitLen())}, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrReplace(up, a); err != nil {
		return fmt.Errorf("adding advertise address %s to %s: %w", advertise, Uplink, err)
	}
	return nil
}

// advertiseAddr is the advertise address the suite's network carries:
// o.AdvertiseAddr, else the config file's advertise_addr; none when
// neither is set. It must be an IP address, since the check's namespace
// holds none of this host's interfaces to look a name up in.
func advertiseAddr(o Options, cfg *config.Config) (netip.Addr, error) {
	s, from := o.AdvertiseAddr, "--advertise-addr"
	if s == "" && cfg != nil {
		s, from = cfg.AdvertiseAddr, o.ConfigFile+": advertise_addr"
	}
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.IsUnspecified() || a.IsMulticast() {
		return netip.Addr{}, verdictf("%s %q: want a unicast IP address (the check runs in a namespace of its own, with none of this host's interfaces, and puts the address on %s there)", from, s, Uplink)
	}
	return a.Unmap(), nil
}

const uplinkPeer = "sncheck1"

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// pluginBlock returns the block whose config the plugin gets: the one in
// o.ConfigFile that names the plugin, or an empty block when there is no
// file.
func pluginBlock(o Options, spec plugin.Spec, info *pb.PluginInfo) (config.PluginBlock, *config.Config, error) {
	if o.ConfigFile == "" {
		return config.PluginBlock{Kind: spec.Kind, Name: info.GetName()}, nil, nil
	}
	cfg, diags := config.Load(o.ConfigFile)
	if diags.HasErrors() {
		return config.PluginBlock{}, nil, &Verdict{Reason: fmt.Sprintf("%s has errors", o.ConfigFile), Diagnostics: diags, Files: cfg.Files()}
	}
	var blocks []config.PluginBlock
	for _, b := range cfg.Plugins() {
		if b.Kind == spec.Kind && !b.Implicit {
			blocks = append(blocks, b)
		}
	}
	for _, b := range blocks {
		if b.Name == info.GetName() || b.Binary(cfg.PluginDir) == spec.Path {
			return b, cfg, nil
		}
	}
	if len(blocks) == 1 {
		return blocks[0], cfg, nil
	}
	names := make([]string, len(blocks))
	for i, b := range blocks {
		names[i] = b.String()
	}
	if len(names) == 0 {
		return config.PluginBlock{}, nil, verdictf("%s has no %s block; the plugin calls itself %q", o.ConfigFile, spec.Kind, info.GetName())
	}
	return config.PluginBlock{}, nil, verdictf("%s has no %s block for the plugin %q (it has %s)", o.ConfigFile, spec.Kind, info.GetName(), strings.Join(names, ", "))
}

// StoreCheck reports whether o checks a store plugin as far as can be
// known without starting it: the kind given, or else the kind of every
// plugin block in the config file. When it cannot tell, it says false and
// the check isolates itself as a driver's would.
func StoreCheck(o Options) bool {
	if o.Kind != "" {
		return o.Kind == sdk.KindStore
	}
	if o.ConfigFile == "" {
		return false
	}
	cfg, diags := config.Load(o.ConfigFile)
	if diags.HasErrors() {
		return false
	}
	n := 0
	for _, b := range cfg.Plugins() {
		if b.Implicit {
			continue
		}
		if b.Kind != sdk.KindStore {
			return false
		}
		n++
	}
	return n > 0
}

func blockFiles(o Options) map[string]*hcl.File {
	cfg, _ := config.Load(o.ConfigFile)
	return cfg.Files()
}

// logBuffer keeps what plugins wrote to their stderr (go-plugin relays it
// through the manager's logger), to name a crash's panic.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Len()
}

var panicRE = regexp.MustCompile(`(panic: [^\n]*|fatal error: [^\n]*)`)

// panicLine returns the first panic or fatal error a plugin logged after
// offset from, without go-plugin's framing.
func (l *logBuffer) panicLine(from int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf.Bytes()
	if from > len(b) {
		from = len(b)
	}
	m := panicRE.Find(b[from:])
	return strings.TrimSpace(string(m))
}
