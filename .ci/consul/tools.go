//go:build tools

// Package tools pins the Consul agent that store-consul's tests start:
// `make consul` builds github.com/hashicorp/consul at the version go.mod
// requires (1.14.11, the last MPL-2.0 release) into ~/.cache/sandnet.
package tools

import _ "github.com/hashicorp/consul"
