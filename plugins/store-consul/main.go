// Command sandnet-store-consul keeps sandnet's state in Consul's KV store,
// shared by every host pointed at the same Consul datacenter; see
// README.md and package consulstore.
package main

import (
	"github.com/sandnet/sandnet/plugins/store-consul/consulstore"
	"github.com/sandnet/sandnet/sdk/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { store.Serve(consulstore.Info(version), consulstore.New()) }
