// Command sandnet-driver-macvlan is a sandnet network driver that gives
// each sandbox a macvlan interface (bridge mode) on a parent link of the
// host, optionally an 802.1q sub-interface it creates; see README.md. It
// is built the way a third party builds a plugin: its own module,
// requiring only the sandnet SDK and netlink.
package main

import "github.com/sandnet/sandnet/sdk/driver"

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { driver.Serve(Info(version), New()) }
