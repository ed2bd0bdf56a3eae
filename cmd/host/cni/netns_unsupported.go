//go:build !linux

package main

import (
	"errors"
	"net"
	"net/netip"
)

type nsView struct {
	mac, hostName, hostMAC string
	routes                 []route
}

var errUnsupported = errors.New("network namespaces exist on Linux only")

func inspect(path, ifname string) (*nsView, error) { return nil, errUnsupported }

func checkNamespace(path string, ep *endpoint) error { return errUnsupported }

func prefixOf(n *net.IPNet) (netip.Prefix, bool) { return netip.Prefix{}, false }
