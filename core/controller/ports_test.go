package controller

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

// parsePorts reads [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]; a bad spec is an
// invalid-argument error that names the field and quotes the spec.
func TestParsePorts(t *testing.T) {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")
	for _, tc := range []struct {
		spec string
		want PortBinding
		err  string // a part of the error; empty: none
	}{
		{spec: "80", want: PortBinding{Proto: "tcp", ContainerPort: 80}},
		{spec: "53/udp", want: PortBinding{Proto: "udp", ContainerPort: 53}},
		{spec: "53/UDP", want: PortBinding{Proto: "udp", ContainerPort: 53}},
		{spec: "8080:80", want: PortBinding{Proto: "tcp", HostPort: 8080, ContainerPort: 80}},
		{spec: "8080:80/tcp", want: PortBinding{Proto: "tcp", HostPort: 8080, ContainerPort: 80}},
		{spec: "127.0.0.1:8080:80", want: PortBinding{Proto: "tcp", HostIP: v4, HostPort: 8080, ContainerPort: 80}},
		{spec: "127.0.0.1::80", want: PortBinding{Proto: "tcp", HostIP: v4, ContainerPort: 80}},
		{spec: "[::1]:8080:80/udp", want: PortBinding{Proto: "udp", HostIP: v6, HostPort: 8080, ContainerPort: 80}},
		{spec: "[::1]::80", want: PortBinding{Proto: "tcp", HostIP: v6, ContainerPort: 80}},
		{spec: "65535:65535", want: PortBinding{Proto: "tcp", HostPort: 65535, ContainerPort: 65535}},

		{spec: "", err: `"" is not a port number`},
		{spec: "0", err: `"0" is not a port number`},
		{spec: "65536", err: `"65536" is not a port number`},
		{spec: "http", err: `"http" is not a port number`},
		{spec: "80/sctp", err: "protocol must be tcp or udp"},
		{spec: "8080:0", err: `"0" is not a port number`},
		{spec: "x:8080:80", err: `"x" is not an IP address`},
		{spec: "127.0.0.1:x:80", err: `"x" is not a port number`},
		{spec: "[::1:8080:80", err: "unclosed ["},
		{spec: "1:2:3:4", err: "is not [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]"},
	} {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := parsePorts([]string{tc.spec})
			if tc.err != "" {
				if err == nil || !errors.Is(err, sdk.ErrInvalid) || !strings.Contains(err.Error(), tc.err) ||
					!strings.HasPrefix(err.Error(), "publish: ") {
					t.Fatalf("parsePorts(%q) = %v, %v; want an invalid-argument error naming publish and containing %q", tc.spec, got, err, tc.err)
				}
				return
			}
			if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], tc.want) {
				t.Fatalf("parsePorts(%q) = %+v, %v; want %+v", tc.spec, got, err, tc.want)
			}
		})
	}
	// Several specs keep their order; one bad spec fails them all.
	got, err := parsePorts([]string{"80", "53/udp"})
	if err != nil || len(got) != 2 || got[0].ContainerPort != 80 || got[1].Proto != "udp" {
		t.Fatalf("two specs: %+v, %v", got, err)
	}
	if got, err := parsePorts([]string{"80", "bad"}); err == nil || got != nil {
		t.Fatalf("a bad second spec: %+v, %v; want an error and nothing", got, err)
	}
}
