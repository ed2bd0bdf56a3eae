package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Config is the plugin's `config` block; README.md documents it.
type Config struct {
	Parent string `hcl:"parent,optional" doc:"parent link of networks whose options name none (e.g. eth0, or eth0.42 for VLAN 42)"`
}

// Network options.
const (
	optParent = "parent"
	optMode   = "macvlan_mode"
)

// parent is a network's parent link: a host link, or VLAN vlan on it
// (802.1q sub-interface named link.vlan) when vlan is not 0.
type parent struct {
	link string
	vlan int
}

// name is the link the macvlans hang off.
func (p parent) name() string {
	if p.vlan == 0 {
		return p.link
	}
	return p.link + "." + strconv.Itoa(p.vlan)
}

// parentOf returns the parent of n: its "parent" option, else def (the
// config block's). Every error wraps sdk.ErrInvalid.
func parentOf(n *pb.Network, def string) (parent, error) {
	for k := range n.GetOptions() {
		if k != optParent && k != optMode {
			return parent{}, fmt.Errorf("network option %q: the macvlan driver takes %s and %s: %w", k, optParent, optMode, sdk.ErrInvalid)
		}
	}
	if m := n.GetOptions()[optMode]; m != "" && m != "bridge" {
		return parent{}, fmt.Errorf("network option %s %q: only bridge is supported: %w", optMode, m, sdk.ErrInvalid)
	}
	name := n.GetOptions()[optParent]
	if name == "" {
		name = def
	}
	if name == "" {
		return parent{}, fmt.Errorf("network option %s is required (or set parent in the driver's config block): %w", optParent, sdk.ErrInvalid)
	}
	if len(name) > 15 || strings.ContainsAny(name, "/ \t") {
		return parent{}, fmt.Errorf("network option %s %q is not a link name: %w", optParent, name, sdk.ErrInvalid)
	}
	link, id, ok := strings.Cut(name, ".")
	if !ok {
		return parent{link: name}, nil
	}
	vlan, err := strconv.Atoi(id)
	if err != nil || vlan < 1 || vlan > 4094 || link == "" {
		return parent{}, fmt.Errorf("network option %s %q: a sub-interface is LINK.VLAN with VLAN from 1 to 4094: %w", optParent, name, sdk.ErrInvalid)
	}
	return parent{link: link, vlan: vlan}, nil
}
