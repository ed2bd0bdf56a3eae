//go:build !linux

package main

import "errors"

var errUnsupported = errors.New("network namespaces exist on Linux only")

func checkNamespace(path string, ep *endpoint, mac string, routes []route) error {
	return errUnsupported
}
