package main

import (
	"errors"
	"net"
	"net/netip"
	"regexp"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// publishForm is what publishSpec makes: [HOSTIP:][HOSTPORT:]PORT/PROTO.
var publishForm = regexp.MustCompile(`^((\d+\.\d+\.\d+\.\d+|\[[0-9a-f:.]+\]):(\d+)?:|\d+:)?\d+/(tcp|udp)$`)

// FuzzAddInput feeds an ADD's inputs a runtime controls — the network
// config on stdin and CNI_ARGS — to the plugin's parsing, as far as the
// request it would send the agent. Nothing may panic; a refusal is a CNI
// error object with the code of its kind and a message (6 for a config
// that does not decode, 7 for a bad value, 4 for bad CNI_ARGS); what is
// accepted is a request the agent can read: addresses of their family,
// publish specs of sandnet's form.
func FuzzAddInput(f *testing.F) {
	for _, seed := range []struct{ conf, args string }{
		{`{"cniVersion":"1.0.0","name":"n","type":"sandnet","network":"n"}`, ""},
		{`{"cniVersion":"0.4.0","name":"podman","type":"sandnet","network":"n","runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}],"aliases":{"podman":["web"]},"ips":["10.0.0.5/24"],"mac":"02:00:00:00:00:01"}}`, "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.6"},
		{`{"network":"n","args":{"cni":{"ips":["fd00::5"]}},"priority":3,"aliases":["a"]}`, "IP=10.0.0.7,fd00::7;MAC=02:00:00:00:00:02"},
		{`{"network":"n","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":53,"protocol":"UDP","hostIP":"::"}]}}`, "FOO=bar"},
		{`{"network":"n","runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}}`, ""},
		{`{"network":"n","priority":"high"}`, ""},
		{`{"network":`, ""},
		{`{"network":"n"}`, "IP"},
		{`{"network":"n"}`, "IP=x;;="},
		{`{"network":"n","runtimeConfig":{"mac":"01:00:5e:00:00:01"}}`, ""},
		{`{"network":"n"}`, "MAC=02:00:00:00:00:00:00:01"},
		{`{"network":"0"}`, "IP=::0%0"}, // a zone, which the agent refuses, was accepted
	} {
		f.Add([]byte(seed.conf), seed.args)
	}
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		conf, err := parseConf(stdin)
		if err != nil {
			cniErr(t, err, types.ErrDecodingFailure, types.ErrInvalidNetworkConfig)
			return
		}
		a, err := loadArgs(cniArgs)
		if err != nil {
			cniErr(t, err, types.ErrInvalidEnvironmentVariables)
			return
		}
		at, err := newAttachment(conf, a, "c1", "eth0", "/run/netns/x")
		if err != nil {
			cniErr(t, err, types.ErrInvalidNetworkConfig)
			return
		}
		for _, ip := range []struct {
			s  string
			v6 bool
		}{{at.ip, false}, {at.ip6, true}} {
			if ip.s == "" {
				continue
			}
			if addr, err := netip.ParseAddr(ip.s); err != nil || addr.Is6() != ip.v6 || addr.Zone() != "" {
				t.Errorf("accepted address %q (IPv6 wanted: %v)", ip.s, ip.v6)
			}
		}
		if at.mac != "" {
			if mac, err := net.ParseMAC(at.mac); err != nil || len(mac) != 6 || mac[0]&1 != 0 {
				t.Errorf("accepted MAC %q, which the agent refuses", at.mac)
			}
		}
		for _, p := range at.publish {
			if !publishForm.MatchString(p) {
				t.Errorf("accepted publish spec %q", p)
			}
		}
	})
}

// cniErr fails t unless err is a CNI error object with one of codes and
// a message.
func cniErr(t *testing.T, err error, codes ...uint) {
	t.Helper()
	var ce *types.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%T %v: not a CNI error object", err, err)
	}
	for _, c := range codes {
		if ce.Code == c && ce.Msg != "" {
			return
		}
	}
	t.Fatalf("CNI error code %d %q, want one of %v with a message", ce.Code, ce.Msg, codes)
}
