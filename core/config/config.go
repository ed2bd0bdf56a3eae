package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/sandnet/sandnet/sdk"
)

// Defaults for settings the file leaves out.
const (
	DefaultDataDir     = "/var/lib/sandnet"
	DefaultPluginDir   = "/usr/lib/sandnet/plugins"
	DefaultSocket      = "/run/sandnet/sandnet.sock"
	DefaultLogLevel    = "info"
	DefaultStore       = "bolt"
	DefaultTimeout     = 4 * time.Second // libnetwork's extIOTimeout
	DefaultMaxInflight = 1024            // libnetwork's maxConcurrent

	// The forwarding cache: at most 4 KiB an answer, so 16 MiB at most.
	DefaultCacheSize           = 4096
	DefaultCacheMaxTTL         = time.Hour
	DefaultCacheMaxNegativeTTL = 5 * time.Minute
	// DefaultPluginRestartWait and MaxPluginRestartWait bound
	// plugin_restart_wait.
	DefaultPluginRestartWait = 10 * time.Second
	MaxPluginRestartWait     = 10 * time.Minute
	// DefaultHostTTL, MinHostTTL and MaxHostTTL bound host_ttl.
	DefaultHostTTL = 30 * time.Second
	MinHostTTL     = 20 * time.Second
	MaxHostTTL     = 24 * time.Hour
)

// logLevels are the values `log { level }` accepts, most verbose first.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// Config is a decoded, validated agent configuration. Paths in it are
// absolute: relative ones in the file were resolved against the file's
// directory.
type Config struct {
	// Filename is the file the config came from, as given to Load or Parse.
	Filename string

	DataDir   string
	PluginDir string
	// AdvertiseAddr is this host's address on the network the hosts
	// share (its VTEP for overlay networks): an IP address, or the name
	// of the interface holding it, resolved when the agent starts. Empty
	// when the file has none.
	AdvertiseAddr string
	// HostTTL is how long this host's record in the store outlives the
	// agent's last renewal of its lease: once it lapses, the other hosts
	// withdraw this host's endpoints (see the README's "Host liveness").
	HostTTL time.Duration
	// PluginRestartWait is how long a request that needs a plugin while
	// it restarts (a crash, a reload) waits for it before it gets the
	// plugin's own answer (not running: a 503).
	PluginRestartWait time.Duration
	API               API
	Log               Log
	// Store is the one store plugin: the file's store block, or the
	// default bolt store at <data_dir>/store.db when the file has none
	// (then Store.Implicit is true).
	Store PluginBlock
	// Drivers are the driver blocks in file order, names unique.
	Drivers  []PluginBlock
	Resolver Resolver
	IPAM     IPAM
	Sandbox  Sandbox
	// Telemetry configures metrics; zero: served on the API socket only.
	Telemetry Telemetry

	files map[string]*hcl.File
}

// API configures the agent's HTTP/JSON API.
type API struct {
	// Socket is the unix socket the API listens on.
	Socket string
	// SocketGroup, when set, is the group the socket belongs to (mode
	// 0660), so that its members may use the CLI without root, as with
	// docker.sock.
	SocketGroup string
	// SocketGID is SocketGroup's ID, looked up when the config is loaded.
	SocketGID int
}

// Log configures the agent's own logger.
type Log struct {
	// Level is trace, debug, info, warn or error.
	Level string
	// JSON selects JSON lines instead of hclog's text format.
	JSON bool
}

// Resolver configures the embedded DNS resolver of every sandbox.
type Resolver struct {
	// Upstreams are the servers names outside the sandbox's networks are
	// forwarded to. Empty means the host's resolv.conf.
	Upstreams []netip.AddrPort
	// Timeout bounds one forwarded query.
	Timeout time.Duration
	// MaxInflight bounds the forwarded queries in flight per resolver;
	// queries beyond it are answered REFUSED.
	MaxInflight int
	// CacheSize is how many forwarded answers the agent keeps (shared by
	// sandboxes with the same upstreams); 0 turns the cache off.
	CacheSize int
	// CacheMaxTTL caps how long a positive answer is kept.
	CacheMaxTTL time.Duration
	// CacheMaxNegativeTTL caps how long an NXDOMAIN or NODATA answer is
	// kept.
	CacheMaxNegativeTTL time.Duration
	// HostListen is where, in the agent's namespace, a resolver answers
	// the host's questions for name.network of every container; the zero
	// value (the default) serves nothing.
	HostListen netip.AddrPort
}

// IPAM configures address allocation.
type IPAM struct {
	// DefaultPools are split into subnets for networks created without
	// one, first pool first. Never empty.
	DefaultPools []Pool
}

// Pool is a range of addresses handed out as subnets of one size.
type Pool struct {
	// Base is the whole range, with no host bits set.
	Base netip.Prefix
	// Size is the prefix length of each subnet carved from Base.
	Size int
}

// DefaultPools returns Docker's predefined local pools: 172.17.0.0/16
// through 172.31.0.0/16 as one /16 network each, then 192.168.0.0/16 in
// /20s. The slice is new on every call.
func DefaultPools() []Pool {
	var pools []Pool
	for i := 17; i <= 31; i++ {
		pools = append(pools, Pool{Base: netip.PrefixFrom(netip.AddrFrom4([4]byte{172, byte(i), 0, 0}), 16), Size: 16})
	}
	return append(pools, Pool{Base: netip.MustParsePrefix("192.168.0.0/16"), Size: 20})
}

// Files returns the parsed source files by name, for FormatDiagnostics to
// quote. It is valid even when loading failed.
func (c *Config) Files() map[string]*hcl.File { return c.files }

// Plugins returns every plugin the config loads: the store first, then the
// drivers in file order.
func (c *Config) Plugins() []PluginBlock {
	return append([]PluginBlock{c.Store}, c.Drivers...)
}

// Load reads, parses, decodes and validates the config file at filename
// (HCL native syntax, or HCL's JSON syntax when the name ends in ".json").
// It reports every problem it finds, each with its position, not just the
// first. It always returns a Config, so that Files can quote the source
// for FormatDiagnostics; the Config is fit for use only when the
// diagnostics have no errors. Plugin binaries and plugin config bodies are
// not checked here: see CheckBinaries and DecodePluginConfig.
func Load(filename string) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(filename)
	if err != nil {
		c := defaults(filename, ".")
		return c, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Failed to read config file",
			Detail:   err.Error(),
			Subject:  &hcl.Range{Filename: filename},
		}}
	}
	return Parse(src, filename)
}

// Parse is Load for a config already in memory; filename names it in
// diagnostics and anchors its relative paths.
func Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	dir, err := filepath.Abs(filepath.Dir(filename))
	if err != nil {
		dir = filepath.Dir(filename)
	}
	c := defaults(filename, dir)
	p := hclparse.NewParser()
	var f *hcl.File
	var diags hcl.Diagnostics
	if strings.HasSuffix(filename, ".json") {
		f, diags = p.ParseJSON(src, filename)
	} else {
		f, diags = p.ParseHCL(src, filename)
	}
	c.files = p.Files()
	if f == nil || f.Body == nil {
		return c, diags
	}
	d := &decoder{dir: dir, diags: diags}
	d.root(c, f.Body)
	return c, d.diags
}

func defaults(filename, dir string) *Config {
	c := &Config{
		Filename:          filename,
		DataDir:           DefaultDataDir,
		PluginDir:         DefaultPluginDir,
		API:               API{Socket: DefaultSocket},
		Log:               Log{Level: DefaultLogLevel},
		HostTTL:           DefaultHostTTL,
		PluginRestartWait: DefaultPluginRestartWait,
		Resolver: Resolver{Timeout: DefaultTimeout, MaxInflight: DefaultMaxInflight,
			CacheSize: DefaultCacheSize, CacheMaxTTL: DefaultCacheMaxTTL, CacheMaxNegativeTTL: DefaultCacheMaxNegativeTTL},
		IPAM:    IPAM{DefaultPools: DefaultPools()},
		Sandbox: Sandbox{NetnsDir: DefaultNetnsDir, FilesDir: DefaultFilesDir, StubGracePeriod: DefaultStubGracePeriod, SpareNamespaces: DefaultSpareNamespaces},
		files:   map[string]*hcl.File{},
	}
	c.Store = defaultStore(filename, c.DataDir)
	return c
}

// defaultStore is the store the agent uses when the file has no store
// block. Its position is the start of the file, so a problem with it
// (say, the bolt binary is missing) still points somewhere.
func defaultStore(filename, dataDir string) PluginBlock {
	start := hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
	return PluginBlock{
		Kind:        sdk.KindStore,
		Name:        DefaultStore,
		Config:      staticBody{attrs: map[string]cty.Value{"path": cty.StringVal(filepath.Join(dataDir, "store.db"))}, rng: start},
		DeclRange:   start,
		ConfigRange: start,
		Implicit:    true,
	}
}

var rootSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "data_dir"}, {Name: "plugin_dir"}, {Name: "advertise_addr"}, {Name: "host_ttl"}, {Name: "plugin_restart_wait"}},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "api"},
		{Type: "log"},
		{Type: sdk.KindStore, LabelNames: []string{"name"}},
		{Type: sdk.KindDriver, LabelNames: []string{"name"}},
		{Type: "resolver"},
		{Type: "ipam"},
		{Type: "sandbox"},
		{Type: "telemetry"},
	},
}

// decoder turns bodies into Config fields, collecting diagnostics so that
// one run reports every problem.
type decoder struct {
	dir   string // absolute directory of the config file
	diags hcl.Diagnostics
}

func (d *decoder) add(diags hcl.Diagnostics) { d.diags = append(d.diags, diags...) }

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) root(c *Config, body hcl.Body) {
	content, diags := body.Content(rootSchema)
	d.add(diags)

	if a := content.Attributes["data_dir"]; a != nil {
		d.path(a, &c.DataDir)
	}
	if a := content.Attributes["plugin_dir"]; a != nil {
		d.path(a, &c.PluginDir)
	}
	if a := content.Attributes["advertise_addr"]; a != nil {
		d.advertiseAddr(a, &c.AdvertiseAddr)
	}
	if a := content.Attributes["host_ttl"]; a != nil {
		if t, ok := d.duration(a, "host_ttl", MaxHostTTL); ok {
			if t < MinHostTTL {
				d.errorf(a.Expr.Range(), "Invalid host_ttl",
					"The host_ttl must be at least %s (Consul ends a session between its TTL and twice that, and keeps none under 10s); got %s.", MinHostTTL, t)
			} else {
				c.HostTTL = t
			}
		}
	}

	if a := content.Attributes["plugin_restart_wait"]; a != nil {
		if t, ok := d.duration(a, "plugin_restart_wait", MaxPluginRestartWait); ok {
			c.PluginRestartWait = t
		}
	}

	singles := map[string]*hcl.Block{}
	var store *hcl.Block
	seenDriver := map[string]*hcl.Block{}
	for _, b := range content.Blocks {
		switch b.Type {
		case sdk.KindStore:
			if store != nil {
				d.errorf(b.DefRange, "Duplicate store block",
					"Only one store block is allowed, and the store %q block at %s already chooses the store. Remove one of them.",
					store.Labels[0], pos(store.DefRange))
				d.plugin(b) // for the problems inside it
				continue
			}
			store = b
			c.Store = d.plugin(b)
		case sdk.KindDriver:
			if first := seenDriver[b.Labels[0]]; first != nil {
				d.errorf(b.DefRange, "Duplicate driver block",
					"A driver %q block was already defined at %s. Each driver is loaded once; merge the two blocks.",
					b.Labels[0], pos(first.DefRange))
				d.plugin(b)
				continue
			}
			seenDriver[b.Labels[0]] = b
			c.Drivers = append(c.Drivers, d.plugin(b))
		default:
			if first := singles[b.Type]; first != nil {
				d.errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", b.Type),
					"A %s block was already defined at %s. Only one is allowed; merge the two blocks.",
					b.Type, pos(first.DefRange))
				// Decode it into a scratch Config for the problems inside it.
				d.single(defaults(c.Filename, d.dir), b)
				continue
			}
			singles[b.Type] = b
			d.single(c, b)
		}
	}
	if store == nil {
		c.Store = defaultStore(c.Filename, c.DataDir)
	}
	if b := seenDriver["overlay"]; b != nil && c.AdvertiseAddr == "" {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "No advertise_addr for the overlay driver",
			Detail: "The overlay driver tunnels between hosts from this host's advertise_addr, and the file sets none: " +
				"creating or attaching to an overlay network will be refused. Set advertise_addr at the top level " +
				"to this host's address on the network the hosts share (or the name of its interface).",
			Subject: b.DefRange.Ptr(),
		})
	}
}

// single decodes one of the blocks that may appear once.
func (d *decoder) single(c *Config, b *hcl.Block) {
	switch b.Type {
	case "api":
		d.api(&c.API, b.Body)
	case "log":
		d.log(&c.Log, b.Body)
	case "resolver":
		d.resolver(&c.Resolver, b.Body)
	case "ipam":
		d.ipam(&c.IPAM, b.Body)
	case "sandbox":
		d.sandbox(&c.Sandbox, b.Body)
	case "telemetry":
		d.telemetry(&c.Telemetry, b.Body)
	}
}

// looksLikeIPv4 says whether s was meant as an IPv4 address (999.1.1.1,
// 127.1, 0x7f.1) or a zoned address (10.0.0.1%eth0) rather than an
// interface's name: dot-separated numbers, decimal or hex, or a '%'.
func looksLikeIPv4(s string) bool {
	if strings.Contains(s, "%") {
		return true
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return false
	}
	for _, p := range parts {
		hex, isHex := strings.CutPrefix(strings.ToLower(p), "0x")
		switch {
		case p == "":
			return false
		case isHex && hex != "" && strings.Trim(hex, "0123456789abcdef") == "":
		case strings.Trim(p, "0123456789") != "":
			return false
		}
	}
	return true
}

// advertiseAddr decodes advertise_addr: a unicast IP address, or a valid
// interface name (resolved by the agent at start, in its namespace).
func (d *decoder) advertiseAddr(attr *hcl.Attribute, dst *string) {
	var s string
	if !d.decode(attr, &s) {
		return
	}
	if a, err := netip.ParseAddr(s); err == nil {
		// Loopback and link-local addresses do not leave the host or
		// its link, the limited broadcast address is no host's.
		if !a.Unmap().IsGlobalUnicast() || a.Zone() != "" {
			d.errorf(attr.Expr.Range(), "Invalid advertise address",
				"%s cannot be this host's address for other hosts: give a unicast address of this host other hosts reach (not loopback or link-local, without a zone), or the name of the interface holding it.", s)
			return
		}
		*dst = a.Unmap().String()
		return
	}
	if looksLikeIPv4(s) {
		d.errorf(attr.Expr.Range(), "Invalid advertise address",
			"%q is not an IP address: give this host's address on the network the hosts share, or the name of its interface.", s)
		return
	}
	if !validIfName(s) {
		d.errorf(attr.Expr.Range(), "Invalid advertise address",
			"%q is neither an IP address nor an interface name (1-15 characters, no '/', ':' or space): give this host's address on the network the hosts share, or the name of its interface.", s)
		return
	}
	*dst = s
}

// validIfName reports whether name can be a Linux interface name.
func validIfName(name string) bool {
	return name != "" && len(name) <= 15 && name != "." && name != ".." &&
		!strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r > '~' })
}

var apiSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "socket"}, {Name: "socket_group"}}}

// maxSocketPath is the longest path a unix socket can bind to on Linux:
// sun_path holds 108 bytes including the terminating NUL.
const maxSocketPath = 107

func (d *decoder) api(a *API, body hcl.Body) {
	content, diags := body.Content(apiSchema)
	d.add(diags)
	if attr := content.Attributes["socket"]; attr != nil {
		if d.path(attr, &a.Socket) && len(a.Socket) > maxSocketPath {
			d.errorf(attr.Expr.Range(), "Socket path too long",
				"The socket path %s is %d bytes long; a unix socket path can be at most %d.",
				a.Socket, len(a.Socket), maxSocketPath)
		}
	}
	if attr := content.Attributes["socket_group"]; attr != nil {
		d.socketGroup(a, attr)
	}
}

var logSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "level"}, {Name: "json"}}}

func (d *decoder) log(l *Log, body hcl.Body) {
	content, diags := body.Content(logSchema)
	d.add(diags)
	if attr := content.Attributes["level"]; attr != nil {
		var level string
		if d.decode(attr, &level) {
			level = strings.ToLower(level)
			if !contains(logLevels, level) {
				d.errorf(attr.Expr.Range(), "Invalid log level",
					"%q is not a log level; use one of %s.%s",
					level, strings.Join(logLevels, ", "), didYouMean(level, logLevels))
			} else {
				l.Level = level
			}
		}
	}
	if attr := content.Attributes["json"]; attr != nil {
		d.decode(attr, &l.JSON)
	}
}

// decode evaluates attr (no variables, no functions) into dst, whose Go
// type decides the HCL type required. A null value leaves dst alone, as
// if the attribute were absent. It reports whether dst was set.
func (d *decoder) decode(attr *hcl.Attribute, dst any) bool {
	set, diags := decodeAttr(attr, dst)
	d.add(diags)
	return set
}

// path decodes a non-empty string attribute into dst and makes it
// absolute against the config file's directory.
func (d *decoder) path(attr *hcl.Attribute, dst *string) bool {
	var s string
	if !d.decode(attr, &s) {
		return false
	}
	if s == "" {
		d.errorf(attr.Expr.Range(), "Empty path", "The argument %q must not be empty; remove it to use the default.", attr.Name)
		return false
	}
	*dst = d.resolve(s)
	return true
}

func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

// pos formats the start of r the way diagnostics are printed.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
