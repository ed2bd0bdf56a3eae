package sdk

// Version is the version of this SDK module, the newest heading of
// CHANGELOG.md: a plugin requires github.com/sandnet/sandnet/sdk at
// "v" + Version. A plugin reports the version it was built with in
// PluginInfo.sdk_version, and the host the one it was built with in
// `sandnet version`; ProtocolVersion, not Version, decides whether the two
// can talk.
const Version = "0.1.0"
