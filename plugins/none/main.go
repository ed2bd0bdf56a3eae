// Command sandnet-driver-none is the `none` network driver: a sandbox that
// joins a `none` network gets no interface at all, only its loopback.
package main

import "github.com/sandnet/sandnet/sdk/driver"

func main() { driver.Serve(info, &none{}) }
