package api

import "github.com/sandnet/sandnet/core/plugin"

// Version is the answer of GET /v1/version.
type Version struct {
	Version    string `json:"version"`
	APIVersion string `json:"api_version"`
	GoVersion  string `json:"go_version"`
	// PluginProtocol is the plugin protocol version the host speaks.
	PluginProtocol int `json:"plugin_protocol"`
	// SDKVersion is the version of the plugin SDK the host was built with.
	SDKVersion string `json:"sdk_version"`
}

// Health is the answer of GET /v1/health: "ok" when every plugin is
// running and answering its health checks, "degraded" otherwise.
type Health struct {
	Status  string          `json:"status"`
	Plugins []plugin.Status `json:"plugins"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Message string `json:"message"`
}

// Disconnect is the body of POST /v1/networks/{ref}/disconnect.
type Disconnect struct {
	Container string `json:"container"`
	// Release makes it a runtime front's release (CNI DEL): what is
	// already gone is no error, and a front's sandbox left with no
	// endpoint is deleted (its runtime's namespace stays).
	Release bool `json:"release,omitempty"`
	// Interface, with Release, names the attachment's interface (CNI's
	// CNI_IFNAME): an attachment of the container to the network under
	// another interface is not the one released, and stays.
	Interface string `json:"interface,omitempty"`
}

// SetKey is the body of POST /v1/sandboxes/{container}/key.
type SetKey struct {
	Path string `json:"path"`
}

// Rename is the body of POST /v1/sandboxes/{container}/rename.
type Rename struct {
	Name string `json:"name"`
}
