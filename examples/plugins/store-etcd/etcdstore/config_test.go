package etcdstore

import (
	"errors"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

func TestParse(t *testing.T) {
	const nulls = `"prefix":null,"dial_timeout":null,"timeout":null,"ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null`
	for _, tc := range []struct {
		name, raw, want string // want: "" for success, else part of the error
	}{
		{"defaults", `{"endpoints":null,` + nulls + `}`, ""},
		{"url", `{"endpoints":["http://127.0.0.1:2379"],` + nulls + `}`, "give host:port"},
		{"no port", `{"endpoints":["127.0.0.1"],` + nulls + `}`, "missing port"},
		{"port range", `{"endpoints":["127.0.0.1:70000"],` + nulls + `}`, "port from 1 to 65535"},
		{"prefix without slash", `{"endpoints":null,"prefix":"a","dial_timeout":null,"timeout":null,"ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`, "must end with /"},
		{"bad duration", `{"endpoints":null,"prefix":null,"dial_timeout":"soon","timeout":null,"ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`, "dial_timeout \"soon\""},
		{"negative timeout", `{"endpoints":null,"prefix":null,"dial_timeout":null,"timeout":"-1s","ca_file":null,"cert_file":null,"key_file":null,"tls_server_name":null}`, "must be positive"},
		{"cert without key", `{"endpoints":null,"prefix":null,"dial_timeout":null,"timeout":null,"ca_file":null,"cert_file":"/c.pem","key_file":null,"tls_server_name":null}`, "go together"},
		{"relative ca", `{"endpoints":null,"prefix":null,"dial_timeout":null,"timeout":null,"ca_file":"ca.pem","cert_file":null,"key_file":null,"tls_server_name":null}`, "is not absolute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parse([]byte(tc.raw))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("parse: %v", err)
			case tc.want == "":
				if len(s.endpoints) != 1 || s.endpoints[0] != defaultEndpoint || s.timeout != defaultTimeout || s.tls() {
					t.Fatalf("defaults = %+v", s)
				}
			case err == nil || !errors.Is(err, sdk.ErrInvalid) || !contains(err.Error(), tc.want):
				t.Fatalf("parse = %v, want an ErrInvalid mentioning %q", err, tc.want)
			}
		})
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
