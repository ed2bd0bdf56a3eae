// Command sandnet-driver-bridge is the `bridge` network driver: each
// network is a Linux bridge on the host, each endpoint a veth pair between
// the bridge and the sandbox, with NAT and published ports programmed in
// the nftables table `inet sandnet`.
package main

import "github.com/sandnet/sandnet/sdk/driver"

func main() {
	d := newDriver()
	driver.Serve(info, d)
	d.close()
}
