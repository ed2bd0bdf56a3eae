// Command sandnet-driver-host is the `host` network driver: sandboxes on a
// host network use the host's own network namespace.
package main

import "github.com/sandnet/sandnet/sdk/driver"

func main() { driver.Serve(info, &host{}) }
