package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// Collect removes what a previous run of the driver left for networks and
// endpoints the host's store no longer holds (driver.Collector): the
// bridges it marked as its own (their alias) for other networks, with the
// veth host ends on them, and, in its table, the published ports of other
// endpoints and the chains of other networks. The host calls it after
// replaying everything it holds, so what this run knows is in req; a
// bridge the operator made, and anything outside the table, is never
// touched.
func (b *bridge) Collect(_ context.Context, req *pb.CollectRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.sys()
	if err != nil {
		return err
	}
	nets, eps := tagSet(req.GetNetworks()), tagSet(req.GetEndpoints())
	errs := []error{b.collectBridges(s, nets, req.GetEndpoints())}
	return errors.Join(append(errs, b.collectFirewall(s, nets, eps))...)
}

func tagSet(ids []string) map[string]bool {
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[tagID(id)] = true
	}
	return set
}

// collectBridges deletes the driver's bridges of networks not in nets,
// with the interfaces on them, and on the others the host ends (veth
// pairs: the sandbox end goes too) of endpoints not in eps — one left in
// a runtime's namespace would answer for an address the host may give
// again.
func (b *bridge) collectBridges(s *system, nets map[string]bool, eps []string) error {
	links, err := s.h.LinkList()
	if err != nil {
		return fmt.Errorf("listing links: %w", err)
	}
	hostEnds := map[string]bool{}
	for _, id := range eps {
		hostEnds[hostIfName(id)] = true
	}
	var errs []error
	for _, br := range links {
		tag, ok := strings.CutPrefix(br.Attrs().Alias, bridgeAliasPrefix)
		if !ok || br.Type() != "bridge" {
			continue
		}
		for _, l := range links {
			name := l.Attrs().Name
			if l.Attrs().MasterIndex != br.Attrs().Index || nets[tag] && (hostEnds[name] || !strings.HasPrefix(name, hostIfPrefix)) {
				continue
			}
			b.reap.log.Info("deleting an interface on the bridge that no endpoint the host holds owns (a previous run's, or a spare's)", "interface", name, "bridge", br.Attrs().Name)
			errs = append(errs, s.rt.delLink(name))
		}
		if !nets[tag] {
			b.reap.log.Info("deleting the bridge of a network the host no longer holds", "bridge", br.Attrs().Name, "network", tag)
			errs = append(errs, s.rt.delLink(br.Attrs().Name))
		}
	}
	return errors.Join(errs...)
}

// collectFirewall drops from the table the published ports of endpoints
// not in eps and the chains of networks not in nets.
func (b *bridge) collectFirewall(s *system, nets, eps map[string]bool) error {
	if ok, err := s.fw.present(); err != nil || !ok {
		return err
	}
	if err := b.ensureFirewall(s); err != nil {
		return err
	}
	stale := false
	for tag := range b.ports {
		if !eps[tag] {
			b.reap.log.Info("unpublishing the ports of an endpoint the host no longer holds", "endpoint", tag)
			delete(b.ports, tag)
			delete(b.portNames, tag)
			stale = true
		}
	}
	chains, err := s.fw.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return fmt.Errorf("listing nftables chains: %w", err)
	}
	var gone []*nftables.Chain
	for _, c := range chains {
		if c.Table.Name != tableName {
			continue
		}
		for _, prefix := range []string{"fwd-", "nat-"} {
			if tag, ok := strings.CutPrefix(c.Name, prefix); ok && !nets[tag] {
				gone = append(gone, c)
			}
		}
	}
	if !stale && len(gone) == 0 {
		return nil
	}
	if len(b.nets) == 0 && len(b.ports) == 0 {
		// Nothing of this run's is in it: the table goes, as at a stop.
		b.reap.log.Info("deleting the firewall table: no network the host holds is on the driver")
		return s.fw.drop()
	}
	// The rebuild drops every rule of the old networks, jumps included,
	// so their chains can go in the next batch.
	if err := b.rebuildFirewall(s); err != nil {
		return err
	}
	for _, c := range gone {
		b.reap.log.Info("deleting the firewall chain of a network the host no longer holds", "chain", c.Name)
		s.fw.conn.DelChain(c)
	}
	return s.fw.flush()
}
