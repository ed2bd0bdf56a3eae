# A sandnet agent config that runs from a checkout: `make` builds the
# plugins into bin/plugins, and state lives under /tmp/sandnet, so nothing
# is written outside the checkout and /tmp. Check it with
#
#   sandnet config validate examples/config.hcl
#
# Relative paths are resolved against this file's directory, not the
# working directory, so "../bin/plugins" is the checkout's bin/plugins.
# Every setting is described in core/config/doc.go.

data_dir   = "/tmp/sandnet"
plugin_dir = "../bin/plugins"

api {
  socket = "/tmp/sandnet/sandnet.sock"
}

sandbox {
  netns_dir = "/tmp/sandnet/netns"
}

log {
  level = "info"
  json  = false
}

# The embedded bbolt store; the agent uses this same store, at
# <data_dir>/store.db, when the file has no store block at all.
store "bolt" {
  # checksum = "sha256:<output of sha256sum bin/plugins/sandnet-store-bolt>"
  config {
    path = "/tmp/sandnet/store.db"
  }
}

# Endpoints with no interface: for containers that need no network.
driver "none" {}

# Docker's bridge networking: a Linux bridge per network, NAT, published
# ports (plugins/bridge/README.md documents every setting).
driver "bridge" {
  config {
    default_bridge = "sandnet0"
    mtu            = 1500
  }
}

# Host networking: the container uses the host's namespace.
driver "host" {}

# A third-party driver kept elsewhere, pinned to one build:
#
# driver "macvlan" {
#   command  = "/opt/acme/bin/sandnet-driver-macvlan"
#   args     = ["-log-level=debug"]
#   checksum = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
# }

resolver {
  upstreams    = []     # empty: forward to the servers in the host's /etc/resolv.conf
  timeout      = "4s"
  max_inflight = 1024
  # Forwarded answers kept for their TTL, shared by sandboxes with the same
  # upstreams; cache_size = 0 turns the cache off.
  cache_size             = 4096
  cache_max_ttl          = "1h"
  cache_max_negative_ttl = "5m"
  # The host resolves name.network of its containers here; off when absent.
  # host_listen = "127.0.0.1:5353"
}

ipam {
  # Subnets for networks created without one; Docker's defaults if unset.
  default_pools = [
    { base = "172.17.0.0/16", size = 16 },
    { base = "172.18.0.0/15", size = 24 },
  ]
}
