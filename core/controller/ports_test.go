package controller

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/sandnet/sandnet/sdk"
)

// parsePorts reads [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]; a bad spec is an
// invalid-argument error that names the field and quotes the spec.
func TestParsePorts(t *testing.T) {
	v4, v6 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("fd00::1")
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
		{spec: "[fd00::1]:8080:80/udp", want: PortBinding{Proto: "udp", HostIP: v6, HostPort: 8080, ContainerPort: 80}},
		{spec: "[fd00::1]::80", want: PortBinding{Proto: "tcp", HostIP: v6, ContainerPort: 80}},
		// IPv4-mapped: the IPv4 address (it was refused as IPv6 loopback).
		{spec: "[::ffff:127.0.0.1]:9090:80", want: PortBinding{Proto: "tcp", HostIP: v4, HostPort: 9090, ContainerPort: 80}},
		{spec: "8090-8099:80", want: PortBinding{Proto: "tcp", HostPort: 8090, HostPortEnd: 8099, ContainerPort: 80}},
		{spec: "65535:65535", want: PortBinding{Proto: "tcp", HostPort: 65535, ContainerPort: 65535}},

		{spec: "", err: `a port is empty`},
		{spec: "0", err: `"0" is not a port number`},
		{spec: "65536", err: `"65536" is not a port number`},
		{spec: "http", err: `"http" is not a port number`},
		{spec: "80/sctp", err: "protocol must be tcp or udp"},
		{spec: "8080:0", err: `"0" is not a port number`},
		{spec: "x:8080:80", err: `"x" is not an IP address`},
		{spec: "127.0.0.1:x:80", err: `"x" is not a port number`},
		{spec: "[::1:8080:80", err: "unclosed ["},
		{spec: "1:2:3:4", err: "is not [HOSTIP:][HOSTPORT:]PORT[/tcp|udp]"},
		{spec: "[::1]:8080:80", err: "the kernel does not route IPv6 loopback traffic out"},
		{spec: "8000-8002:80-81", err: "3 host ports for 2 container ports"},
		{spec: "82-80", err: `range "82-80" ends before it starts`},
		{spec: "80-", err: `"80-" is not a port number (1-65535) or range of them`},
		{spec: "-1:80", err: `"-1" is not a port number (1-65535) or range of them`},
		{spec: ":80", err: `a port is empty (write HOSTIP::PORT for a free host port)`},
		{spec: "[fe80::1%eth0]:80:80", err: "host address fe80::1%eth0 has a zone"},
		{spec: "1-65535", err: "more than 1024 ports"},
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
	// A range publishes each of its ports; a host range maps onto a
	// container range of the same length.
	for spec, want := range map[string]string{
		"80-82":                     "[{tcp 80 invalid IP 0 0} {tcp 81 invalid IP 0 0} {tcp 82 invalid IP 0 0}]",
		"8000-8002:80-82/udp":       "[{udp 80 invalid IP 8000 0} {udp 81 invalid IP 8001 0} {udp 82 invalid IP 8002 0}]",
		"127.0.0.1:8000-8001:80-81": "[{tcp 80 127.0.0.1 8000 0} {tcp 81 127.0.0.1 8001 0}]",
		"[fd00::1]::53-54":          "[{tcp 53 fd00::1 0 0} {tcp 54 fd00::1 0 0}]",
		"90-90":                     "[{tcp 90 invalid IP 0 0}]",
	} {
		got, err := parsePorts([]string{spec})
		if err != nil || fmt.Sprint(got) != want {
			t.Errorf("parsePorts(%q) = %v, %v; want %s", spec, got, err, want)
		}
	}
	// The bound holds across specs.
	if _, err := parsePorts([]string{"1000-1999", "3000-3100"}); err == nil || !strings.Contains(err.Error(), `"3000-3100": more than 1024 ports published in all`) {
		t.Errorf("1,101 ports over two specs: %v", err)
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
