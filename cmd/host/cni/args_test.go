package main

import "testing"

// TestLoadArgs: CNI_ARGS as runtimes pass them. containerd's go-cni sets
// an empty CNI_ARGS when it has no argument; podman passes its own keys,
// which the plugin must ignore.
func TestLoadArgs(t *testing.T) {
	for _, tc := range []struct {
		in       string
		name, ip string
	}{
		{in: ""},
		{in: "IgnoreUnknown=1"},
		{in: "IgnoreUnknown=1;K8S_POD_NAMESPACE=x;K8S_POD_NAME=web", name: "web"},
		{in: "K8S_POD_NAME=web;IP=10.0.0.5;OTHER=1", name: "web", ip: "10.0.0.5"},
	} {
		a, err := loadArgs(tc.in)
		if err != nil {
			t.Errorf("loadArgs(%q): %v", tc.in, err)
			continue
		}
		if string(a.K8S_POD_NAME) != tc.name || string(a.IP) != tc.ip {
			t.Errorf("loadArgs(%q) = name %q ip %q; want %q %q", tc.in, a.K8S_POD_NAME, a.IP, tc.name, tc.ip)
		}
	}
	if _, err := loadArgs("K8S_POD_NAME"); err == nil {
		t.Error(`loadArgs("K8S_POD_NAME") (no '='): no error`)
	}
}
