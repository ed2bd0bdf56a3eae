// Command sandnet-store-etcd keeps sandnet's state in etcd v3, shared by
// every host pointed at the same etcd cluster; see README.md and package
// etcdstore. It is built the way a third party builds a plugin: its own
// module, requiring only the sandnet SDK and the etcd client.
package main

import (
	"github.com/sandnet/sandnet/examples/plugins/store-etcd/etcdstore"
	"github.com/sandnet/sandnet/sdk/store"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { store.Serve(etcdstore.Info(version), etcdstore.New()) }
