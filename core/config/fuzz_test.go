package config

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// FuzzParse feeds bytes to Parse as an HCL config file. Nothing may panic,
// and every error names where it is: a position in the file
// (file:line:col), as `sandnet config validate` and the agent print it.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"data_dir = \"/tmp/x\"\nplugin_dir = \"bin\"\n",
		"store \"bolt\" {\n  config {\n    path = \"/tmp/x/store.db\"\n  }\n}\n",
		"driver \"bridge\" {\n  checksum = \"sha256:00\"\n  config { mtu = 1500 }\n}\n",
		"sandbox {\n  netns_dir = \"/run/n\"\n  stub_grace_period = \"1m\"\n  spare_namespaces = 2\n}\n",
		"resolver {\n  upstreams = [\"192.0.2.1:53\"]\n  timeout = \"2s\"\n  cache_size = 100\n}\n",
		"ipam {\n  default_pools = [{ base = \"10.0.0.0/8\", size = 24 }]\n}\n",
		"telemetry {\n  prometheus_listen = \"127.0.0.1:9100\"\n}\n",
		"api {\n  socket = \"/run/s.sock\"\n}\nlog {\n  level = \"debug\"\n  json = true\n}\n",
		"host_ttl = \"-1s\"\n",
		"resolver {\n  timeout = 5\n}\n",
		"ipam {\n  default_pools = [{ base = \"10.0.0.0/8\", size = 7 }]\n}\n",
		"x = ${a}\n",
		"driver \"a\" {}\ndriver \"a\" {}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, diags := Parse(src, "fuzz.hcl")
		if c == nil {
			t.Fatal("Parse returned no config")
		}
		for _, d := range diags {
			if d.Severity != hcl.DiagError {
				continue
			}
			if d.Subject == nil || d.Subject.Filename != "fuzz.hcl" || d.Subject.Start.Line < 1 {
				t.Errorf("an error without its place in the file: %q %q (subject %v)", d.Summary, d.Detail, d.Subject)
			}
		}
	})
}
