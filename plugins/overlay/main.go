// Command sandnet-driver-overlay is the `overlay` network driver: global
// networks that span hosts, each a VXLAN segment bridged on every host,
// with the endpoints of other hosts programmed from what the host sends
// (PeerAdd and PeerDelete).
package main

import "github.com/sandnet/sandnet/sdk/driver"

func main() { driver.Serve(info, newDriver()) }
