package main

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Info describes the plugin.
func Info(version string) sdk.Info {
	return sdk.Info{Name: "macvlan", Version: version, Config: Config{}}
}

// Driver is the macvlan driver. It keeps no state of its own: what it made
// is found again by the alias it gives each link (ip link ... alias), so
// every call is idempotent and a restarted driver needs no memory.
//
// It touches the host's namespace only to create and delete the VLAN
// sub-interfaces it made itself; a sandbox's macvlan is created directly
// inside the sandbox's namespace, which is opened for the call only.
type Driver struct {
	mu  sync.Mutex // guards cfg
	cfg Config
}

// New returns an unconfigured driver.
func New() *Driver { return &Driver{} }

const (
	// vlanAlias marks a VLAN sub-interface this driver created, followed
	// by the network's ID.
	vlanAlias = "sandnet-macvlan:"
	// epAlias marks a sandbox's macvlan, followed by the endpoint's ID.
	epAlias = "sandnet-macvlan-ep:"
)

// Configure takes the config block.
func (d *Driver) Configure(_ context.Context, raw []byte) error {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return err
	}
	if c.Parent != "" {
		if _, err := parentOf(&pb.Network{}, c.Parent); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	d.mu.Lock()
	d.cfg = c
	d.mu.Unlock()
	return nil
}

func (d *Driver) parent(n *pb.Network) (parent, error) {
	d.mu.Lock()
	def := d.cfg.Parent
	d.mu.Unlock()
	return parentOf(n, def)
}

// GetCapabilities: networks are this host's; the host allocates addresses.
func (d *Driver) GetCapabilities(context.Context) (*pb.Capabilities, error) {
	return &pb.Capabilities{DataScope: pb.Scope_SCOPE_LOCAL, ConnectivityScope: pb.Scope_SCOPE_LOCAL, NeedsAddresses: true}, nil
}

// CreateNetwork checks the parent link exists; for a parent LINK.VLAN it
// creates the 802.1q sub-interface when missing (and only then owns it).
// Equivalent to: `ip link add link LINK name LINK.VLAN up type vlan id VLAN`.
func (d *Driver) CreateNetwork(_ context.Context, req *pb.CreateNetworkRequest) error {
	n := req.GetNetwork()
	p, err := d.parent(n)
	if err != nil {
		return err
	}
	base, err := netlink.LinkByName(p.link)
	if err != nil {
		return fmt.Errorf("network %s: parent link %s: %v: %w", n.GetName(), p.link, err, sdk.ErrInvalid)
	}
	if p.vlan == 0 {
		return nil
	}
	if l, err := netlink.LinkByName(p.name()); err == nil {
		v, ok := l.(*netlink.Vlan)
		if !ok || v.VlanId != p.vlan || v.ParentIndex != base.Attrs().Index {
			return fmt.Errorf("network %s: link %s exists but is not VLAN %d on %s: %w", n.GetName(), p.name(), p.vlan, p.link, sdk.ErrInvalid)
		}
		return nil
	}
	v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: p.name(), ParentIndex: base.Attrs().Index, Flags: net.FlagUp}, VlanId: p.vlan}
	if err := netlink.LinkAdd(v); errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("network %s: creating %s: the kernel has no 802.1q VLAN support (CONFIG_VLAN_8021Q): %w", n.GetName(), p.name(), sdk.ErrNotSupported)
	} else if err != nil {
		return fmt.Errorf("network %s: creating %s: %w", n.GetName(), p.name(), err)
	}
	if err := netlink.LinkSetAlias(v, vlanAlias+n.GetId()); err != nil {
		_ = netlink.LinkDel(v)
		return fmt.Errorf("network %s: marking %s: %w", n.GetName(), p.name(), err)
	}
	return nil
}

// DeleteNetwork deletes the VLAN sub-interface CreateNetwork made for
// this network, and nothing else. Equivalent to: `ip link del LINK.VLAN`.
func (d *Driver) DeleteNetwork(_ context.Context, req *pb.DeleteNetworkRequest) error {
	n := req.GetNetwork()
	p, err := d.parent(n)
	if err != nil || p.vlan == 0 {
		return nil // nothing of ours to remove
	}
	l, err := netlink.LinkByName(p.name())
	if err != nil || l.Attrs().Alias != vlanAlias+n.GetId() {
		return nil
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network %s: deleting %s: %w", n.GetName(), p.name(), err)
	}
	return nil
}

// Collect deletes the VLAN sub-interfaces this driver made (their alias
// says so) for networks the host's store no longer holds: it calls it
// after an agent start with every network it holds (driver.Collector).
// The macvlans are inside sandboxes and go with them.
func (d *Driver) Collect(_ context.Context, req *pb.CollectRequest) error {
	links, err := netlink.LinkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	var errs []error
	for _, l := range links {
		id, ok := strings.CutPrefix(l.Attrs().Alias, vlanAlias)
		if !ok || slices.Contains(req.GetNetworks(), id) {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("deleting %s of network %s: %w", l.Attrs().Name, id, err))
		}
	}
	return errors.Join(errs...)
}

// CreateEndpoint has nothing to do: the macvlan is made at Join.
func (d *Driver) CreateEndpoint(context.Context, *pb.CreateEndpointRequest) (*pb.CreateEndpointResponse, error) {
	return &pb.CreateEndpointResponse{}, nil
}

// DeleteEndpoint has nothing to do.
func (d *Driver) DeleteEndpoint(context.Context, *pb.EndpointRequest) error { return nil }

// Join creates the endpoint's macvlan (bridge mode) on the network's
// parent directly inside the sandbox's namespace, named req.Ifname when
// that name is free there, and hands it over in place. A replayed Join
// finds the link it made by its alias and hands over the same one.
// Equivalent to: `ip link add link PARENT name IFNAME netns SANDBOX type
// macvlan mode bridge`.
func (d *Driver) Join(_ context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	n, ep := req.GetNetwork(), req.GetEndpoint()
	p, err := d.parent(n)
	if err != nil {
		return nil, err
	}
	resp := &pb.JoinResponse{InSandbox: true, DstPrefix: "eth"}
	if gw := n.GetIpv4(); len(gw) > 0 && gw[0].GetGateway() != "" && !n.GetInternal() {
		resp.Gateway, _, _ = strings.Cut(gw[0].GetGateway(), "/")
	}
	if gw := n.GetIpv6(); len(gw) > 0 && gw[0].GetGateway() != "" && !n.GetInternal() {
		resp.GatewayV6, _, _ = strings.Cut(gw[0].GetGateway(), "/")
	}
	err = inSandbox(req.GetSandboxKey(), func(ns netns.NsHandle, h *netlink.Handle) error {
		if l := findEndpoint(h, ep.GetId()); l != nil {
			resp.SrcName = l.Attrs().Name
			return nil
		}
		parentLink, err := netlink.LinkByName(p.name())
		if err != nil {
			return fmt.Errorf("parent link %s: %v: %w", p.name(), err, sdk.ErrNotFound)
		}
		name := req.GetIfname()
		if _, err := h.LinkByName(name); name == "" || err == nil {
			name = fmt.Sprintf("mv%08x", fnv32(ep.GetId()))
		}
		attrs := netlink.LinkAttrs{Name: name, ParentIndex: parentLink.Attrs().Index, Namespace: netlink.NsFd(int(ns))}
		if mac := ep.GetInterface().GetMac(); mac != "" {
			if attrs.HardwareAddr, err = net.ParseMAC(mac); err != nil {
				return fmt.Errorf("endpoint MAC %q: %v: %w", mac, err, sdk.ErrInvalid)
			}
		}
		mv := &netlink.Macvlan{LinkAttrs: attrs, Mode: netlink.MACVLAN_MODE_BRIDGE}
		if err := netlink.LinkAdd(mv); err != nil {
			return fmt.Errorf("creating macvlan %s on %s: %w", name, p.name(), err)
		}
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetAlias(l, epAlias+ep.GetId())
		}
		if err != nil {
			if l != nil {
				_ = h.LinkDel(l)
			}
			return fmt.Errorf("marking macvlan %s: %w", name, err)
		}
		resp.SrcName = name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.GetName(), err)
	}
	return resp, nil
}

// Leave deletes the endpoint's macvlan from the sandbox; a sandbox or
// link already gone is not an error.
func (d *Driver) Leave(_ context.Context, req *pb.LeaveRequest) error {
	err := inSandbox(req.GetSandboxKey(), func(_ netns.NsHandle, h *netlink.Handle) error {
		if l := findEndpoint(h, req.GetEndpoint().GetId()); l != nil {
			return h.LinkDel(l)
		}
		return nil
	})
	if errors.Is(err, sdk.ErrNotFound) {
		return nil
	}
	return err
}

// ProgramExternalConnectivity has nothing to do: a macvlan endpoint is on
// the parent's segment, reachable at its own address, with no ports to
// publish.
func (d *Driver) ProgramExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) (*pb.ExternalConnectivityResponse, error) {
	return &pb.ExternalConnectivityResponse{}, nil
}

// RevokeExternalConnectivity has nothing to do.
func (d *Driver) RevokeExternalConnectivity(context.Context, *pb.ExternalConnectivityRequest) error {
	return nil
}

// EndpointOperInfo reports the network's parent link.
func (d *Driver) EndpointOperInfo(_ context.Context, req *pb.EndpointRequest) (*pb.EndpointOperInfoResponse, error) {
	p, err := d.parent(req.GetNetwork())
	if err != nil {
		return nil, err
	}
	return &pb.EndpointOperInfoResponse{Info: map[string]string{"parent": p.name(), "mode": "bridge"}}, nil
}

// inSandbox calls fn with the namespace at key and a netlink handle in
// it, both closed after: the driver keeps no handle on a sandbox. A key
// that does not exist gives sdk.ErrNotFound.
func inSandbox(key string, fn func(ns netns.NsHandle, h *netlink.Handle) error) error {
	ns, err := netns.GetFromPath(key)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("sandbox %s: %w", key, sdk.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("sandbox %s: %v: %w", key, err, sdk.ErrInvalid)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", key, err)
	}
	defer h.Close()
	return fn(ns, h)
}

// findEndpoint returns the link in h's namespace marked for endpoint id.
func findEndpoint(h *netlink.Handle, id string) netlink.Link {
	links, err := h.LinkList()
	if err != nil {
		return nil
	}
	for _, l := range links {
		if l.Attrs().Alias == epAlias+id {
			return l
		}
	}
	return nil
}

func fnv32(s string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return h.Sum32()
}
