package controller

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"

	"github.com/sandnet/sandnet/core/osl"
	"github.com/sandnet/sandnet/sdk"
	"github.com/sandnet/sandnet/sdk/driver"
	pb "github.com/sandnet/sandnet/sdk/proto"
	"github.com/sandnet/sandnet/sdk/store"
)

// idName is how a sandbox's namespace key and files directory are named:
// its ID.
var idName = regexp.MustCompile(`^[0-9a-f]{64}$`)

// collect removes, after an agent start, what a previous run left on the
// host for networks, endpoints and sandboxes the store does not hold: a
// store replaced without `sandnet store migrate`, emptied, or restored
// from an older backup forgets them while their bridges, published ports,
// firewall rules and namespaces stay, and they clash with what is made
// next (two bridges with one subnet, a host port published for ever).
// Every loaded driver is told every network and endpoint the store holds
// for this host (driver.Collect) and removes the rest of its own — every
// one, not only those of its block: one plugin loaded under two names, or
// a block renamed, must not take the other's networks for forgotten ones.
// The namespaces in the netns directory and the files directories that no
// stored sandbox names are removed. Start calls it after the replay and
// before anything else makes state, so nothing made in this run is
// missing from st.
func (c *Controller) collect(ctx context.Context, st *state) {
	req := &pb.CollectRequest{}
	for _, n := range st.networks {
		req.Networks = append(req.Networks, n.ID)
	}
	for _, ep := range st.endpoints {
		req.Endpoints = append(req.Endpoints, ep.ID)
	}
	for _, name := range c.plugins.Drivers() {
		d, err := c.plugins.Driver(name)
		if err == nil {
			err = driver.Collect(ctx, d, req)
		}
		if err != nil {
			c.log.Error("removing what the driver's previous run left for networks the store does not hold", "driver", name, "error", err)
		}
	}
	known := map[string]bool{}
	for _, s := range st.sandboxes {
		known[s.ID] = true
	}
	c.removeUnknown(c.cfg.NetnsDir, known, "namespace", osl.Remove)
	c.removeUnknown(c.cfg.FilesDir, known, "files", os.RemoveAll)
}

// removeUnknown removes with remove the entries of dir named as a sandbox
// ID that is not known.
func (c *Controller) removeUnknown(dir string, known map[string]bool, what string, remove func(string) error) {
	for _, p := range unknown(dir, known) {
		c.log.Warn("removing the "+what+" of a sandbox no record of this host names (the store was replaced or restored since it was made, or the host was removed with sandnet host rm)", "path", p)
		if err := remove(p); err != nil {
			c.log.Error("removing the "+what+" of a sandbox no record of this host names", "path", p, "error", err)
		}
	}
}

// unknown lists the paths of the entries of dir named as a sandbox ID that
// is not known.
func unknown(dir string, known map[string]bool) []string {
	if dir == "" {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // none
	}
	var out []string
	for _, e := range entries {
		if idName.MatchString(e.Name()) && !known[e.Name()] {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// Unrecorded lists the namespaces in netnsDir that no sandbox record of
// host hostID in s names: what an agent of that host started on s removes
// (collect). sandnet doctor warns of them before that start. A nil s is a
// store that holds nothing (one whose file does not exist yet).
func Unrecorded(ctx context.Context, s store.Store, netnsDir, hostID string) ([]string, error) {
	if s == nil {
		return unknown(netnsDir, nil), nil
	}
	known, err := recorded(ctx, s, hostID)
	if err != nil {
		return nil, err
	}
	return unknown(netnsDir, known), nil
}

// recorded returns the IDs of the sandboxes of host hostID that s holds.
func recorded(ctx context.Context, s store.Store, hostID string) (map[string]bool, error) {
	kvs, err := s.List(ctx, sandboxPrefix)
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return nil, err
	}
	known := map[string]bool{}
	for _, p := range kvs {
		var sb Sandbox
		if json.Unmarshal(p.GetValue(), &sb) == nil && sb.HostID == hostID {
			known[sb.ID] = true
		}
	}
	return known, nil
}
