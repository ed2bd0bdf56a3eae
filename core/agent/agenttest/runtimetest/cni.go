package runtimetest

import (
	"encoding/json"
	"os"
)

// WriteConflist writes a CNI network config list to path.
func WriteConflist(path, cniVersion, name string, plugins ...map[string]any) error {
	b, err := json.MarshalIndent(map[string]any{"cniVersion": cniVersion, "name": name, "plugins": plugins}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// SandnetPlugin is the sandnet plugin's entry in a conflist: the network
// to join, the agent's socket, and the capabilities podman passes
// (published ports, aliases).
func SandnetPlugin(network, socket string) map[string]any {
	return map[string]any{
		"type": "sandnet", "network": network, "socket": socket,
		"capabilities": map[string]bool{"portMappings": true, "aliases": true},
	}
}
