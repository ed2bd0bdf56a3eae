package controller

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The data directory's layout file says which of the store's record
// conventions this host's records follow: a start upgrades this host's
// older records, then writes it. A directory without one was last used by
// an agent from before the file existed (or by none: then there is
// nothing of this host's to upgrade).
//
//	1 (no file): an endpoint made without a name was named after its
//	  sandbox's hostname, when it had one.
//	2: such an endpoint is named after its container, the hostname
//	  answered beside it (nameIndex.add), as Docker's is.
const (
	// LayoutFile is the file's name in the data directory.
	LayoutFile    = "layout"
	currentLayout = 2
)

// readLayout returns the layout the data directory's file names, or 1.
func (c *Controller) readLayout() int {
	b, err := os.ReadFile(filepath.Join(c.cfg.DataDir, LayoutFile))
	if err != nil {
		return 1
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 1 {
		return 1
	}
	return v
}

// upgradeLayout brings this host's records in st up to currentLayout, in
// the store and in st, and records that it did. A record it cannot
// upgrade (the store refused) is logged and left as it was, and the file
// is not written, so the next start tries again.
func (c *Controller) upgradeLayout(ctx context.Context, st *state) {
	if c.cfg.DataDir == "" || c.readLayout() >= currentLayout {
		return
	}
	if !c.nameEndpointsAfterContainers(ctx, st) {
		return
	}
	err := os.MkdirAll(c.cfg.DataDir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(c.cfg.DataDir, LayoutFile), []byte(strconv.Itoa(currentLayout)+"\n"), 0o644)
	}
	if err != nil {
		c.log.Error("recording the data directory's layout", "error", err)
	}
}

// nameEndpointsAfterContainers renames, in the store and in st, the
// endpoints an agent of layout 1 named after their sandbox's hostname:
// they take their container's name, as a connect without a name gives
// today. An endpoint given that name explicitly by a connect cannot be
// told apart; it is renamed too, and still answers to it as the hostname.
// A CNI runtime's sandbox has no hostname of sandnet's, and is skipped.
func (c *Controller) nameEndpointsAfterContainers(ctx context.Context, st *state) bool {
	sandboxes := map[string]*Sandbox{}
	for _, s := range st.sandboxes {
		sandboxes[s.ID] = s
	}
	taken := map[[2]string]bool{} // network ID, name
	for _, ep := range st.endpoints {
		taken[[2]string{ep.NetworkID, ep.Name}] = true
	}
	ok := true
	for _, ep := range st.endpoints {
		s := sandboxes[ep.SandboxID]
		if s == nil || s.Front == "cni" || s.Options.Hostname == "" || ep.Name != s.Options.Hostname || ep.Name == s.ContainerID {
			continue
		}
		if taken[[2]string{ep.NetworkID, s.ContainerID}] {
			continue // the container's name is another endpoint's there
		}
		err := c.updateEndpoint(ctx, ep.NetworkID, ep.ID, func(cur *Endpoint) error {
			if cur.Name != s.Options.Hostname {
				return errChanged
			}
			cur.Name = s.ContainerID
			return nil
		})
		switch {
		case errors.Is(err, errChanged):
			continue
		case err != nil:
			c.log.Error("renaming an endpoint named after its hostname", "endpoint", short(ep.ID), "error", err)
			ok = false
			continue
		}
		c.log.Info("an endpoint an older agent named after its container's hostname now has the container's name; the hostname is answered beside it",
			"endpoint", short(ep.ID), "hostname", s.Options.Hostname, "container", s.ContainerID)
		taken[[2]string{ep.NetworkID, s.ContainerID}] = true
		ep.Name = s.ContainerID
	}
	return ok
}

// errChanged: a record changed since it was read, and no longer needs
// the update.
var errChanged = errors.New("record changed")
