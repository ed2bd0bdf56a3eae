package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConf(t *testing.T) {
	for _, tc := range []struct {
		name string
		conf string
		code uint   // 0: valid
		says string // the key the error names
	}{
		{"minimal", `{"cniVersion":"1.0.0","name":"n","type":"sandnet","network":"n"}`, 0, ""},
		{"no network", `{"cniVersion":"1.0.0","name":"n","type":"sandnet"}`, types.ErrInvalidNetworkConfig, "network"},
		{"priority not a number", `{"network":"n","priority":"high"}`, types.ErrDecodingFailure, "priority: must be a number, not a string"},
		{"aliases not a list", `{"network":"n","aliases":"a"}`, types.ErrDecodingFailure, "aliases: must be an array, not a string"},
		{"network an object", `{"network":{}}`, types.ErrDecodingFailure, "network: must be a string, not an object"},
		{"not JSON", `{"network":`, types.ErrDecodingFailure, "network config"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf, err := parseConf([]byte(tc.conf))
			if tc.code == 0 {
				if err != nil || conf.Socket != DefaultSocket {
					t.Fatalf("parseConf: %v, socket %q", err, conf.Socket)
				}
				return
			}
			e, ok := err.(*types.Error)
			if !ok || e.Code != tc.code || !strings.Contains(e.Msg, tc.says) {
				t.Fatalf("want CNI error %d naming %q, got %#v", tc.code, tc.says, err)
			}
		})
	}
}

func TestNewAttachment(t *testing.T) {
	conf, err := parseConf([]byte(`{"name":"podnet","network":"sn","aliases":["all"],"priority":5,
		"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"},
		{"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
		{"hostPort":9000,"containerPort":90,"protocol":"tcp","hostIP":"::1"}],
		"ips":["10.1.0.5/24","fd00::5"],"aliases":{"podnet":["web"],"other":["no"]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	args, err := loadArgs("IgnoreUnknown=1;K8S_POD_NAME=pod1;K8S_POD_NAMESPACE=ns;MAC=02:00:00:00:00:01")
	if err != nil {
		t.Fatal(err)
	}
	at, err := newAttachment(conf, args, "c1", "eth0", "/proc/1/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"8080:80/tcp", "127.0.0.1:53:53/udp", "[::1]:9000:90/tcp"}
	if !slices.Equal(at.publish, want) {
		t.Fatalf("publish: %q, want %q", at.publish, want)
	}
	if at.ip != "10.1.0.5" || at.ip6 != "fd00::5" || at.mac != "02:00:00:00:00:01" || at.name != "pod1" || at.priority != 5 {
		t.Fatalf("attachment: %+v", at)
	}
	if !slices.Equal(at.aliases, []string{"all", "web"}) {
		t.Fatalf("aliases: %q (the conf's, then the runtime's for this network only)", at.aliases)
	}
	// CNI_ARGS IP= wins over the ips capability, as podman passes one.
	args, _ = loadArgs("IP=10.1.0.9")
	if at, err = newAttachment(conf, args, "c1", "eth0", "/x"); err != nil || at.ip != "10.1.0.9" {
		t.Fatalf("IP=: %v %+v", err, at)
	}
	for _, bad := range []string{`{"network":"n","runtimeConfig":{"ips":["nope"]}}`, `{"network":"n","runtimeConfig":{"mac":"zz"}}`,
		`{"network":"n","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":0}]}}`} {
		conf, err := parseConf([]byte(bad))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := newAttachment(conf, &Args{}, "c", "eth0", "/x"); err == nil {
			t.Fatalf("%s: accepted", bad)
		} else if e, ok := err.(*types.Error); !ok || e.Code != types.ErrInvalidNetworkConfig {
			t.Fatalf("%s: want CNI error 7, got %v", bad, err)
		}
	}
}

// TestPublishForASecondNetwork: a runtime passes a container's port
// mappings to the ADD of each of its networks. A mapping an endpoint of
// the sandbox publishes already (the same protocol, host address, host
// port and container port) is not asked for again; any other is.
func TestPublishForASecondNetwork(t *testing.T) {
	conf, err := parseConf([]byte(`{"network":"sn","runtimeConfig":{"portMappings":[
		{"hostPort":8080,"containerPort":80,"protocol":"TCP"},
		{"hostPort":8080,"containerPort":80,"protocol":"udp"},
		{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
		{"hostPort":8443,"containerPort":443,"hostIP":"0.0.0.0"},
		{"hostPort":9000,"containerPort":90},
		{"hostPort":0,"containerPort":91}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	at, err := newAttachment(conf, &Args{}, "c1", "eth1", "/x")
	if err != nil {
		t.Fatal(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	sb := &sandbox{Endpoints: []endpoint{
		{Ports: []portBinding{{Proto: "tcp", ContainerPort: 80, HostPort: 8080}, {Proto: "udp", ContainerPort: 53, HostIP: lo, HostPort: 5353}}},
		{Ports: []portBinding{{Proto: "tcp", ContainerPort: 443, HostPort: 8443}, {Proto: "tcp", ContainerPort: 9999, HostPort: 9000}}},
		{Ports: []portBinding{{Proto: "tcp", ContainerPort: 91, HostPort: 32768}}},
	}}
	// Published already: 8080/tcp, 127.0.0.1:5353/udp, 8443 (0.0.0.0 is every
	// address, as none is). Not: 8080/udp (another protocol), 9000 (to
	// another container port: the agent refuses it as a conflict), and a
	// port the driver picks (another each time).
	want := []string{"8080:80/udp", "9000:90/tcp", "91/tcp"}
	if got := at.publishFor(sb); !slices.Equal(got, want) {
		t.Fatalf("publishFor: %q, want %q", got, want)
	}
	if got := at.publishFor(&sandbox{}); !slices.Equal(got, at.publish) {
		t.Fatalf("publishFor a sandbox publishing nothing: %q, want every port %q", got, at.publish)
	}
}
