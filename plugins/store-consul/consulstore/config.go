package consulstore

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/sdk"
)

// Config is the plugin's `config` block. Its tags declare the schema the
// host checks the operator's block against; README.md documents it.
//
// Nothing is read from the environment: CONSUL_HTTP_ADDR,
// CONSUL_HTTP_TOKEN and the other variables Consul's own tools honour are
// ignored (the host does not pass its environment to plugins, and the
// plugin does not look even when it has one).
type Config struct {
	Address            string `hcl:"address,optional" doc:"host:port of the Consul agent's HTTP API (default 127.0.0.1:8500)"`
	Scheme             string `hcl:"scheme,optional" doc:"http or https (default http; the TLS attributes need https)"`
	Datacenter         string `hcl:"datacenter,optional" doc:"Consul datacenter to use (default: the agent's own)"`
	Prefix             string `hcl:"prefix,optional" doc:"Consul KV path every sandnet key is stored under, ending in / (default empty: keys are stored as the host names them, sandnet/v1/...)"`
	Token              string `hcl:"token,optional" doc:"ACL token sent with every request; prefer token_file, which keeps it out of the config file"`
	TokenFile          string `hcl:"token_file,optional" doc:"absolute path of a file holding the ACL token, read at every Configure"`
	CAFile             string `hcl:"ca_file,optional" doc:"absolute path of a PEM CA bundle to verify the agent's certificate (default: the system roots)"`
	CertFile           string `hcl:"cert_file,optional" doc:"absolute path of a PEM client certificate, with key_file, for agents that verify clients"`
	KeyFile            string `hcl:"key_file,optional" doc:"absolute path of the PEM private key of cert_file"`
	TLSServerName      string `hcl:"tls_server_name,optional" doc:"name to verify the agent's certificate against (default: the host of address)"`
	InsecureSkipVerify bool   `hcl:"insecure_skip_verify,optional" doc:"do not verify the agent's certificate: for tests only (default false)"`
	Timeout            string `hcl:"timeout,optional" doc:"how long one request to the agent may take before the store reports it unreachable, as a Go duration (default 5s)"`
}

const (
	defaultAddress = "127.0.0.1:8500"
	defaultTimeout = 5 * time.Second
)

// settings is a Config that parse has checked. It is comparable, so that
// Configure can tell a repeated configuration from a new one.
type settings struct {
	address    string
	scheme     string
	datacenter string
	prefix     string
	token      string
	tokenFile  string
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	insecure   bool
	timeout    time.Duration
}

// tls reports whether the settings ask for TLS.
func (s settings) tls() bool { return s.scheme == "https" }

// endpoint is the agent's base URL, for messages.
func (s settings) endpoint() string { return s.scheme + "://" + s.address }

// parse decodes the configuration the host sent (cty JSON of Config) and
// checks it. It reads no file: token_file and the TLS files are read when
// the store connects. Every error wraps sdk.ErrInvalid.
func parse(raw []byte) (settings, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return settings{}, err
	}
	return c.settings()
}

func (c Config) settings() (settings, error) {
	s := settings{
		address:    c.Address,
		scheme:     c.Scheme,
		datacenter: c.Datacenter,
		prefix:     c.Prefix,
		token:      c.Token,
		tokenFile:  c.TokenFile,
		caFile:     c.CAFile,
		certFile:   c.CertFile,
		keyFile:    c.KeyFile,
		serverName: c.TLSServerName,
		insecure:   c.InsecureSkipVerify,
		timeout:    defaultTimeout,
	}
	if s.address == "" {
		s.address = defaultAddress
	}
	if err := checkAddress(s.address); err != nil {
		return settings{}, err
	}
	switch s.scheme {
	case "":
		s.scheme = "http"
	case "http", "https":
	default:
		return settings{}, invalid("scheme %q: want http or https", c.Scheme)
	}
	if !s.tls() {
		for _, a := range []struct {
			name string
			set  bool
		}{
			{"ca_file", s.caFile != ""}, {"cert_file", s.certFile != ""}, {"key_file", s.keyFile != ""},
			{"tls_server_name", s.serverName != ""}, {"insecure_skip_verify", s.insecure},
		} {
			if a.set {
				return settings{}, invalid("%s is set but scheme is %q: set scheme = \"https\"", a.name, s.scheme)
			}
		}
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return settings{}, invalid("cert_file and key_file go together: set both or neither")
	}
	if !validToken(s.token) {
		return settings{}, invalid("token holds control characters")
	}
	if s.token != "" && s.tokenFile != "" {
		return settings{}, invalid("token and token_file are both set: use one")
	}
	for _, f := range []struct{ name, path string }{
		{"token_file", s.tokenFile}, {"ca_file", s.caFile}, {"cert_file", s.certFile}, {"key_file", s.keyFile},
	} {
		// A relative path would depend on the directory the host was
		// started from.
		if f.path != "" && !filepath.IsAbs(f.path) {
			return settings{}, invalid("%s %q is not absolute", f.name, f.path)
		}
	}
	if s.prefix != "" {
		if !strings.HasSuffix(s.prefix, "/") {
			return settings{}, invalid("prefix %q must end with /", s.prefix)
		}
		if err := checkPath(s.prefix); err != nil {
			return settings{}, invalid("prefix %q: %v", s.prefix, err)
		}
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return settings{}, invalid("timeout %q: %v", c.Timeout, err)
		}
		if d <= 0 {
			return settings{}, invalid("timeout %q must be positive", c.Timeout)
		}
		s.timeout = d
	}
	return s, nil
}

// checkAddress accepts host:port only. A URL is refused rather than
// guessed at: the scheme has its own attribute.
func checkAddress(addr string) error {
	if strings.Contains(addr, "://") {
		return invalid("address %q: give host:port, and set scheme for https", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return invalid("address %q: %v", addr, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return invalid("address %q: want host:port with a port from 1 to 65535", addr)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("config: "+format+": %w", append(args, sdk.ErrInvalid)...)
}
