// Package sdk is what a sandnet plugin author imports: the plugin
// handshake, the sentinel errors that cross the gRPC boundary, and the
// declaration and decoding of a plugin's HCL `config` block.
//
// A plugin is a separate program that the sandnet host launches and talks to
// over HashiCorp go-plugin (gRPC only). Drivers use package sdk/driver,
// stores package sdk/store; both have a one-call Serve helper. Nothing here
// imports sandnet's core: a third party builds a plugin from sdk/ alone.
package sdk
