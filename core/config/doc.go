// Package config reads the sandnet agent's HCL v2 configuration and
// reports every problem in it at its file:line:col.
//
// # Using it
//
// Load (or Parse, for bytes in memory) decodes and validates the file and
// returns all problems at once as hcl.Diagnostics, each with a Subject
// range; misspelt names, at any level, come with a "Did you mean" hint.
// Two checks need more than the file and are separate steps:
// CheckBinaries, once the plugin binaries should exist, and
// DecodePluginConfig, once a plugin has declared the schema of its config
// block. FormatDiagnostics prints diagnostics as
//
//	agent.hcl:12:3: error: Unsupported argument; An argument named "plugn_dir" is not expected here. Did you mean "plugin_dir"?
//
// A file whose name ends in ".json" is read as HCL's JSON syntax; any
// other as HCL native syntax. Values are literals: there are no variables
// or functions. An attribute set to null counts as absent.
//
// # Paths
//
// A relative path in the file (data_dir, plugin_dir, api.socket, a plugin's
// command) is resolved against the directory of the config file, not the
// working directory, so a config and its plugins can move together;
// Config holds only absolute paths. Values inside a plugin's config block
// are the plugin's business and reach it as written: give it absolute
// paths.
//
// # Reference
//
//	data_dir = "/var/lib/sandnet"
//
// Optional; default /var/lib/sandnet. Where the agent keeps its state.
//
//	plugin_dir = "/usr/lib/sandnet/plugins"
//
// Optional; default /usr/lib/sandnet/plugins. Where plugin binaries are
// found: a block `driver "bridge"` runs plugin_dir/sandnet-driver-bridge,
// `store "bolt"` runs plugin_dir/sandnet-store-bolt. Nothing in the
// directory runs unless a block names it.
//
//	advertise_addr = "192.0.2.10"
//
// Optional; no default. This host's address on the network the hosts
// share: an IP address, or the name of the interface holding it (resolved
// when the agent starts to its first global unicast IPv4 address, else
// IPv6). Drivers of networks that span hosts (overlay) tunnel from it; an
// agent without it refuses to create or attach to such networks.
//
//	host_ttl = "30s"
//
// Optional; default 30s, from 20s to 24h. How long this host's record in
// a store shared by hosts outlives the agent: the agent renews a lease on
// it every host_ttl/4, and once host_ttl has passed without a renewal the
// other hosts withdraw this host's endpoints from their drivers and DNS
// (its addresses stay allocated until it comes back or `sandnet host rm`
// releases them). 20s is the least Consul can keep. A store without
// leases (bolt's never expire) makes it moot.
//
//	plugin_restart_wait = "10s"
//
// Optional; default 10s, at most 10m. How long a request that needs a
// plugin while it restarts (after a crash, failed health checks, or, for
// a driver, a reload that changed its block) waits for the plugin to run
// again (a driver: and be replayed), before it goes on and gets the
// plugin's own answer (not running: a 503). Lengthen it for a plugin that
// is slow to start.
//
//	api {
//	  socket       = "/run/sandnet/sandnet.sock"
//	  socket_group = "sandnet"
//	}
//
// Optional block, at most one. socket: the unix socket of the HTTP/JSON
// API; default /run/sandnet/sandnet.sock; at most 107 bytes, the kernel's
// limit. socket_group: an existing group, by name or numeric ID, that the
// socket is given to, mode 0660, so that its members may use the CLI;
// absent: root's, mode 0660.
//
//	log {
//	  level = "info"
//	  json  = false
//	}
//
// Optional block, at most one. level: trace, debug, info (default), warn
// or error, in any case. json: write JSON lines instead of text; default
// false.
//
//	store "bolt" {
//	  command  = "/opt/sandnet/bin/my-store"   # optional
//	  args     = ["-v"]                         # optional
//	  checksum = "sha256:<64 hex digits>"       # optional
//	  config {
//	    path = "/var/lib/sandnet/store.db"
//	  }
//	}
//
// At most one store block; its label names the store plugin. With none,
// the agent uses the embedded bolt store as if the file said
// `store "bolt" { config { path = "<data_dir>/store.db" } }`.
// A second store block is an error pointing at the first.
//
//	driver "bridge" {
//	  command  = …
//	  args     = […]
//	  checksum = …
//	  config { … }
//	}
//
// Any number of driver blocks, each label once; a repeated label is an
// error pointing at the first. No driver loads unless a block names it.
//
// Store and driver blocks share these settings:
//
//   - label: the plugin name, which names the binary; lowercase letters,
//     digits, '.', '_' and '-', starting with a letter or digit, at most
//     64 characters.
//   - command: optional; the plugin binary, overriding the plugin_dir
//     lookup. A path (relative ones against the config file's directory),
//     never searched for in $PATH: the agent does not pass its environment
//     to plugins, and which binary runs should not depend on it.
//   - args: optional list of strings passed to the binary.
//   - checksum: optional "sha256:" and the 64 hex digits sha256sum prints
//     (either case); the plugin manager refuses a binary that differs.
//   - config: optional block, at most one, in the plugin's own schema. The
//     plugin declares the schema when it starts; DecodePluginConfig checks
//     the block against it (unknown arguments with a hint, wrong types,
//     missing required arguments) and encodes what the plugin receives.
//
// Then the embedded DNS resolver and address allocation:
//
//	resolver {
//	  upstreams              = ["1.1.1.1", "[2606:4700::1111]:53"]
//	  timeout                = "4s"
//	  max_inflight           = 1024
//	  cache_size             = 4096
//	  cache_max_ttl          = "1h"
//	  cache_max_negative_ttl = "5m"
//	}
//
// Optional block, at most one; settings of the DNS resolver embedded in
// every sandbox. upstreams: servers for names outside sandnet's networks,
// each an IP address with an optional port (default 53; IPv6 with a port
// in brackets); hostnames are refused, since finding them would need DNS.
// Empty or absent: the servers in the host's resolv.conf. timeout: how
// long one forwarded query may take, a Go duration more than 0 and at most
// 1m; default 4s, as Docker's. max_inflight: forwarded queries in flight
// per resolver, at least 1; beyond it queries are answered REFUSED; default 1024,
// as Docker's (a slot is held until the upstream answers, not until the
// client reads: over TCP, a client that stops reading has its connection
// closed at the first write that times out). cache_size: forwarded answers the agent keeps, shared by
// every sandbox's resolver (each at most 4 KiB), 0 or more; 0 turns the
// cache off. cache_max_ttl and cache_max_negative_ttl: caps on how long a
// positive answer and an NXDOMAIN or NODATA answer are kept, whatever TTL
// the upstream gave; Go durations up to 168h. A reload applies the three
// to the running cache (a smaller size drops the least recently used
// answers), unless it turns the cache on or off, which waits for the next
// start. host_listen: "ip:port" where
// the agent answers the host's questions for name.network of its
// containers (UDP and TCP); an unspecified address (0.0.0.0, ::) or port 0
// is refused; absent or "": off. A reload moves or stops it.
//
//	telemetry {
//	  prometheus_listen = "127.0.0.1:9386"
//	}
//
// Optional block, at most one. prometheus_listen: a host:port (an IP
// address or localhost) where the agent also serves its Prometheus metrics
// at /metrics over plain HTTP; absent: only GET /v1/metrics on the API
// socket.
//
//	ipam {
//	  default_pools = [
//	    { base = "172.17.0.0/16", size = 24 },
//	    { base = "fd00:5a4e::/48", size = 64 },
//	  ]
//	}
//
// Optional block, at most one. default_pools: where networks created
// without a subnet get one, first pool first. base is a CIDR prefix with
// no host bits set; size is the prefix length of each subnet carved from
// it, between base's own length and 30 (IPv4) or 126 (IPv6). Pools may not
// overlap each other or a reserved range (loopback, multicast, 0.0.0.0/8,
// the limited broadcast address, ::/127, fe80::/10), and the list may not
// be empty. Absent: DefaultPools, Docker's
// defaults (172.17.0.0/16 to 172.31.0.0/16 as one network each, then
// 192.168.0.0/16 in /20s). A network that asks for IPv6 without an IPv6
// subnet takes it from the IPv6 pools listed here, or, when none is, from
// the unique local prefix fd53:616e:646e::/48 in /64s (the same on every
// host: hosts that share a store keep their subnets apart through it; give
// each store a /48 of its own, from a random ULA, to keep two clusters
// apart).
//
//	sandbox {
//	  netns_dir         = "/run/sandnet/netns"
//	  files_dir         = "/run/sandnet/sandboxes"
//	  stub_grace_period = "1m"
//	  spare_namespaces  = 2
//	}
//
// Optional block, at most one. netns_dir: where each sandbox's network
// namespace is bind-mounted (the sandbox's key), relative to the config
// file when relative; default /run/sandnet/netns. files_dir: where each
// sandbox's resolv.conf and hosts live, under files_dir/<sandbox id>/;
// like the namespaces they do not outlive a reboot (Podman keeps them
// under its run root too), so a tmpfs suits them and makes them cheap to
// create; default "sandboxes" next to netns_dir, /run/sandnet/sandboxes
// when netns_dir is not set; it must not be netns_dir itself (a
// sandbox's key and its files' directory would have one path).
// stub_grace_period: after
// an agent restart, how long a sandbox read back from the store waits for
// its container to claim it before it is deleted with its endpoints; a Go
// duration, default 1m; a reload applies it to the stubs still waiting
// (counted from the start). spare_namespaces: how many network namespaces the
// agent keeps made ahead of time (at idle CPU priority, under
// netns_dir/.creating), so that a sandbox create takes one instead of
// waiting for the kernel; 0 to 64, default 2, 0 makes each on demand. As
// many again are kept with the attach to the network the last create
// listing networks named first prepared by its driver (for the bridge,
// the veth pair made), for the next such create.
package config
