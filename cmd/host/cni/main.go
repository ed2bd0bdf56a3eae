// Command sandnet (installed as bin/cni/sandnet) is sandnet's CNI plugin:
// a network config of type "sandnet" attaches the runtime's namespace to a
// network of a running sandnet agent. The plugin holds no state and does
// little work itself: ADD, DEL, CHECK, STATUS and GC are requests to the
// agent's API socket, which owns the sandboxes, addresses, drivers and the
// embedded DNS. The runtime owns the namespace at CNI_NETNS; sandnet uses
// it as the sandbox's external key and never deletes it.
//
// It is a binary of its own, apart from bin/sandnet, so that the exec a
// runtime pays per call loads only the CNI libraries and an HTTP client.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

// supported are the CNI spec versions the plugin speaks; results are
// converted to the version of the network config.
var supported = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, supported, "sandnet: attaches containers to networks of a sandnet agent")
}
