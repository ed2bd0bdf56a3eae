package etcdstore

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/sdk"
)

// Config is the plugin's `config` block. Its tags declare the schema the
// host checks the operator's block against; README.md documents it.
// Nothing is read from the environment (ETCDCTL_* variables are ignored).
type Config struct {
	Endpoints     []string `hcl:"endpoints,optional" doc:"host:port of each etcd member's client URL (default [\"127.0.0.1:2379\"])"`
	Prefix        string   `hcl:"prefix,optional" doc:"etcd key prefix every sandnet key is stored under, ending in / (default empty: keys are stored as the host names them, sandnet/v1/...)"`
	DialTimeout   string   `hcl:"dial_timeout,optional" doc:"how long connecting to etcd may take, as a Go duration (default 5s)"`
	Timeout       string   `hcl:"timeout,optional" doc:"how long one request may take before the store reports etcd unreachable, as a Go duration (default 5s)"`
	CAFile        string   `hcl:"ca_file,optional" doc:"absolute path of a PEM CA bundle to verify the members' certificates; setting any TLS file turns TLS on"`
	CertFile      string   `hcl:"cert_file,optional" doc:"absolute path of a PEM client certificate, with key_file, for clusters that verify clients"`
	KeyFile       string   `hcl:"key_file,optional" doc:"absolute path of the PEM private key of cert_file"`
	TLSServerName string   `hcl:"tls_server_name,optional" doc:"name to verify the members' certificates against (default: the host of each endpoint)"`
}

const (
	defaultEndpoint = "127.0.0.1:2379"
	defaultTimeout  = 5 * time.Second
)

// settings is a Config that parse has checked.
type settings struct {
	endpoints   []string
	prefix      string
	dialTimeout time.Duration
	timeout     time.Duration
	caFile      string
	certFile    string
	keyFile     string
	serverName  string
}

// tls reports whether the settings ask for TLS.
func (s settings) tls() bool {
	return s.caFile != "" || s.certFile != "" || s.serverName != ""
}

func (s settings) equal(o settings) bool {
	return slices.Equal(s.endpoints, o.endpoints) && s.prefix == o.prefix && s.dialTimeout == o.dialTimeout &&
		s.timeout == o.timeout && s.caFile == o.caFile && s.certFile == o.certFile && s.keyFile == o.keyFile &&
		s.serverName == o.serverName
}

// parse decodes the configuration the host sent (cty JSON of Config) and
// checks it. It reads no file. Every error wraps sdk.ErrInvalid.
func parse(raw []byte) (settings, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return settings{}, err
	}
	s := settings{
		endpoints: c.Endpoints, prefix: c.Prefix, caFile: c.CAFile, certFile: c.CertFile, keyFile: c.KeyFile,
		serverName: c.TLSServerName, dialTimeout: defaultTimeout, timeout: defaultTimeout,
	}
	if len(s.endpoints) == 0 {
		s.endpoints = []string{defaultEndpoint}
	}
	for _, e := range s.endpoints {
		if err := checkEndpoint(e); err != nil {
			return settings{}, err
		}
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return settings{}, invalid("cert_file and key_file go together: set both or neither")
	}
	for _, f := range []struct{ name, path string }{{"ca_file", s.caFile}, {"cert_file", s.certFile}, {"key_file", s.keyFile}} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			// A relative path would depend on where the host started.
			return settings{}, invalid("%s %q is not absolute", f.name, f.path)
		}
	}
	if s.prefix != "" && !strings.HasSuffix(s.prefix, "/") {
		return settings{}, invalid("prefix %q must end with /", s.prefix)
	}
	for _, d := range []struct {
		name, value string
		dst         *time.Duration
	}{{"dial_timeout", c.DialTimeout, &s.dialTimeout}, {"timeout", c.Timeout, &s.timeout}} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil {
			return settings{}, invalid("%s %q: %v", d.name, d.value, err)
		}
		if v <= 0 {
			return settings{}, invalid("%s %q must be positive", d.name, d.value)
		}
		*d.dst = v
	}
	return s, nil
}

// checkEndpoint accepts host:port only; TLS is chosen by the TLS
// attributes, not by a URL scheme.
func checkEndpoint(e string) error {
	if strings.Contains(e, "://") {
		return invalid("endpoint %q: give host:port; setting ca_file turns TLS on", e)
	}
	host, port, err := net.SplitHostPort(e)
	if err != nil {
		return invalid("endpoint %q: %v", e, err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || host == "" {
		return invalid("endpoint %q: want host:port with a port from 1 to 65535", e)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("config: "+format+": %w", append(args, sdk.ErrInvalid)...)
}
