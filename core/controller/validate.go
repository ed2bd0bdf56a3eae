package controller

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// validContainerID is what a container ID may be: a letter or digit, then
// letters, digits, '_', '.' and '-', 255 characters at most. Docker's
// container names and 64-hex IDs, Podman's IDs and containerd's CNI
// container IDs (<namespace>-<id>) all fit; nothing that could split a
// line, a path or a log field does.
var validContainerID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$`)

// checkContainerID checks a container ID given in field.
func checkContainerID(field, id string) error {
	if id == "" {
		return errorf(sdk.ErrInvalid, "%s: must not be empty", field)
	}
	if !validContainerID.MatchString(id) {
		return errorf(sdk.ErrInvalid, "%s: %q is not a valid container ID (a letter or digit, then letters, digits, _ . -; up to 255 characters)", field, clip(id))
	}
	return nil
}

// Validate checks what of a sandbox create needs no state: the container
// ID, the options that reach the sandbox's files, the front, and each
// listed network's entry as a connect would check it. Errors name the
// field's JSON path (networks[1].publish[0]) and wrap sdk.ErrInvalid.
// NewSandbox calls it before anything else.
func (r SandboxCreate) Validate() error {
	if err := checkContainerID("container_id", r.ContainerID); err != nil {
		return err
	}
	if err := r.Options.Validate(); err != nil {
		return err
	}
	if !validFront(r.Front) {
		return errorf(sdk.ErrInvalid, "front: %q is none of \"cni\", \"oci\" or empty", clip(r.Front))
	}
	for i, sn := range r.Networks {
		if sn.Network == "" {
			return errorf(sdk.ErrInvalid, "networks[%d].network: must not be empty", i)
		}
		if sn.Container != "" && sn.Container != r.ContainerID {
			return errorf(sdk.ErrInvalid, "networks[%d].container: %q is not the sandbox's container %q (leave it out)", i, clip(sn.Container), r.ContainerID)
		}
		if _, err := parseConnect(sn.Connect); err != nil {
			return fmt.Errorf("networks[%d].%w", i, err)
		}
	}
	return nil
}

// Validate checks what of a connect needs no state: the container ID,
// name, aliases, addresses, ports, interface name and MAC. Errors name the
// field and wrap sdk.ErrInvalid. Connect calls it before anything else.
func (r Connect) Validate() error {
	if err := checkContainerID("container", r.Container); err != nil {
		return err
	}
	_, err := parseConnect(r)
	return err
}

// checkConnectArgs refuses addresses and ports a connect to network n
// could not honour, rather than ignoring them: a family the network has
// no pool of, any address on a network whose driver takes none, and
// published ports on a network nothing outside reaches (internal) or
// whose driver gives the container no address to forward them to.
func checkConnectArgs(n *Network, caps *pb.Capabilities, a connectArgs) error {
	if known := caps.GetEndpointOptions(); len(known) > 0 {
		for _, k := range slices.Sorted(maps.Keys(a.req.DriverOpts)) {
			if !slices.Contains(known, k) {
				return errorf(sdk.ErrInvalid, "driver_opts.%s: not an endpoint option of driver %q (known: %s)", clip(k), n.Driver, strings.Join(known, ", "))
			}
		}
	}
	if caps.GetUsesHostNamespace() {
		// The container shares the host's interfaces: there is none of
		// its own to name or give a MAC (docker refuses --mac-address
		// with --network host too).
		switch {
		case a.mac != "":
			return errorf(sdk.ErrInvalid, "mac: network %s (driver %s) puts the container in the host's namespace, with no interface of its own to give a MAC", n.Name, n.Driver)
		case a.ifname != "":
			return errorf(sdk.ErrInvalid, "interface: network %s (driver %s) puts the container in the host's namespace, with no interface of its own to name", n.Name, n.Driver)
		}
	}
	if len(a.ports) > 0 && !caps.GetNeedsAddresses() {
		return errorf(sdk.ErrInvalid, "publish: network %s (driver %s) assigns no addresses, so no port can be published to its containers", n.Name, n.Driver)
	}
	if len(a.ports) > 0 && n.Internal {
		return errorf(sdk.ErrInvalid, "publish: network %s is internal: nothing outside it reaches its containers, so it publishes no ports (publish through a network that is not internal)", n.Name)
	}
	if (a.ip.IsValid() || a.ip6.IsValid()) && !caps.GetNeedsAddresses() {
		field := "ip"
		if !a.ip.IsValid() {
			field = "ipv6"
		}
		return errorf(sdk.ErrInvalid, "%s: network %s (driver %s) assigns no addresses", field, n.Name, n.Driver)
	}
	for _, f := range []struct {
		name string
		ip   netip.Addr
	}{{"ip", a.ip}, {"ipv6", a.ip6}} {
		if f.ip.Is4In6() {
			return errorf(sdk.ErrInvalid, "%s: %s is an IPv4-mapped IPv6 address; give the IPv4 address %s as ip", f.name, f.ip, f.ip.Unmap())
		}
	}
	if a.ip.IsValid() {
		if !a.ip.Is4() {
			return errorf(sdk.ErrInvalid, "ip: %s is not an IPv4 address (use ipv6)", a.ip)
		}
		if len(n.IPv4) == 0 {
			return errorf(sdk.ErrInvalid, "ip: network %s has no IPv4 subnet", n.Name)
		}
	}
	if a.ip6.IsValid() {
		if !a.ip6.Is6() {
			return errorf(sdk.ErrInvalid, "ipv6: %s is not an IPv6 address (use ip)", a.ip6)
		}
		if len(n.IPv6) == 0 {
			return errorf(sdk.ErrInvalid, "ipv6: network %s has no IPv6 subnet (create it with --ipv6)", n.Name)
		}
	}
	return nil
}

// clip shortens s for an error message: a hostile value of a megabyte
// must not become a megabyte of log.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
