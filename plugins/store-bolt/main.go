// Command sandnet-store-bolt is sandnet's embedded default store; see
// README.md and package boltstore.
package main

import (
	"github.com/sandnet/sandnet/plugins/store-bolt/boltstore"
	"github.com/sandnet/sandnet/sdk/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { store.Serve(boltstore.Info(version), boltstore.New()) }
