package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/sdk"
	pb "github.com/sandnet/sandnet/sdk/proto"
)

// VNIs: every global network of a driver that carries traffic between
// hosts (connectivity scope global, peers) gets a segment ID, a VXLAN
// network identifier, unique among the hosts sharing the store. The host
// allocates it: the key vni/<N> holds the ID of the network that has N,
// and is created (compare-and-swap on absence) in the transaction that
// creates the network, so two hosts that pick one VNI at once cannot both
// commit; the loser's create is retried with another free one. The
// network's record carries it (Network.VNI), and so does every request
// to the driver (pb.Network.vni).

const (
	vniPrefix = prefix + "vni/"
	// firstVNI and lastVNI bound the VNIs the host picks: below 4096 is
	// left to networks given one (VLAN-sized IDs are often mapped by hand).
	firstVNI = 4096
	lastVNI  = 1<<24 - 1
	// optVNI asks for a VNI (1 to lastVNI) instead of the next free one.
	optVNI = "com.sandnet.overlay.vni"
)

func vniKey(vni uint32) string { return vniPrefix + strconv.FormatUint(uint64(vni), 10) }

// needsVNI reports whether networks of a driver with these capabilities
// and scope get a VNI.
func needsVNI(scope string, caps *pb.Capabilities) bool {
	return scope == scopeGlobal && caps.GetConnectivityScope() == pb.Scope_SCOPE_GLOBAL && caps.GetPeers()
}

// wantedVNI is the VNI the options ask for, or 0.
func wantedVNI(opts map[string]string) (uint32, error) {
	v, ok := opts[optVNI]
	if !ok {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n < 1 || n > lastVNI {
		return 0, errorf(sdk.ErrInvalid, "options.%s: %q is not a VNI (1 to %d)", optVNI, v, lastVNI)
	}
	return uint32(n), nil
}

// vniOp reserves a VNI for network n: the one wanted (0: a free one from
// firstVNI on, at random) and returns the op that claims it, to commit with the
// network's record. A wanted VNI in use is a conflict naming its network.
func (c *Controller) vniOp(ctx context.Context, n *Network, wanted uint32) (*pb.TxnOp, error) {
	used := map[uint32]string{}
	err := c.kv.list(ctx, vniPrefix, func(key string, _ uint64, raw []byte) error {
		v, err := strconv.ParseUint(strings.TrimPrefix(key, vniPrefix), 10, 32)
		if err != nil {
			return err
		}
		used[uint32(v)] = strings.Trim(string(raw), `"`)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if wanted != 0 {
		if other, ok := used[wanted]; ok {
			return nil, errorf(sdk.ErrConflict, "options.%s: VNI %d is in use by network %s", optVNI, wanted, short(other))
		}
		n.VNI = wanted
		return cas(vniKey(wanted), 0, n.ID), nil
	}
	// At random, so hosts creating networks at once seldom pick the
	// same one; the compare-and-swap settles it when they do.
	for range 64 {
		v := firstVNI + rand.Uint32N(lastVNI-firstVNI+1)
		if _, ok := used[v]; !ok {
			n.VNI = v
			return cas(vniKey(v), 0, n.ID), nil
		}
	}
	for v := uint32(firstVNI); v <= lastVNI; v++ {
		if _, ok := used[v]; !ok {
			n.VNI = v
			return cas(vniKey(v), 0, n.ID), nil
		}
	}
	return nil, fmt.Errorf("no free VNI from %d to %d: %w", firstVNI, lastVNI, sdk.ErrConflict)
}
