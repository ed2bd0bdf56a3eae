package sdk

import "github.com/hashicorp/go-plugin"

// Plugin kinds. A plugin binary serves exactly one kind.
const (
	KindDriver = "driver"
	KindStore  = "store"
)

// ProtocolVersion is the plugin protocol this SDK speaks. The host
// negotiates it through go-plugin's VersionedPlugins, so a later protocol
// can be added without breaking plugins built against this one.
const ProtocolVersion = 1

// Handshake returns the go-plugin handshake shared by the host and every
// plugin. The cookie is not a secret; it only stops a plugin binary from
// being run by hand by mistake. ProtocolVersion here is the fallback
// go-plugin uses when a side does not negotiate versions.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  ProtocolVersion,
		MagicCookieKey:   "SANDNET_PLUGIN",
		MagicCookieValue: "4f2c7e0b9d1a-sandnet-plugin",
	}
}
