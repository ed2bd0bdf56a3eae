package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/sdk"
)

// Detaching an endpoint leaves two slow jobs that its caller need not wait
// for: deleting the veth pair (17-20 ms, nearly all of it the kernel
// waiting for RCU grace periods) and deleting the conntrack entries of its
// addresses and published ports (a walk of the whole conntrack table,
// about 5 ms per address family however few entries it holds). Leave and
// DeleteEndpoint only cut the endpoint off — the host end goes down and
// into doomGroup, so it carries nothing from that moment —
// and hand the rest to the reaper, which does it in batches off the
// request path: one RTM_DELLINK for the whole group (one set of grace
// periods for any number of pairs) and one conntrack walk per family for
// every pending address and mapping.
//
// A pass waits until the driver has had no call for quietPeriod, so it
// does not slow the next attaches of a burst (a veth deletion or a
// conntrack walk running beside an attach makes its veth creation ten
// times slower on a small machine), but never longer than maxDelay. What
// must not wait is forced: the conntrack entries of an address are deleted
// before the address is given to an endpoint again (the new endpoint would
// receive the old flows, moby/moby#8795), and those of a published port
// before the port is published again. A host end in doomGroup that a Join
// finds in its way is deleted at once.
//
// The driver drains the reaper when the host stops it. If the process
// dies instead, the pairs of a later run's doomGroup go with its first
// pass; pending conntrack entries are left to expire.
const (
	// doomGroup is the link group ("sndg") of host ends awaiting deletion.
	doomGroup   = 0x736e6467
	quietPeriod = 50 * time.Millisecond
	maxDelay    = 500 * time.Millisecond
)

// reaper is the driver's background deletion of detached endpoints' veth
// pairs and conntrack entries. Its methods are safe for concurrent use.
type reaper struct {
	log hclog.Logger
	// quiet and maxDelay are quietPeriod and maxDelay; tests change them.
	quiet, maxDelay time.Duration
	// ct opens the reaper's own netlink handle: a conntrack walk holds its
	// socket for milliseconds, which must not delay the driver's other
	// requests.
	ct func() (*netlink.Handle, error)

	run sync.Mutex // held by a pass; a forced flush waits for a pass in progress

	mu    sync.Mutex
	links bool                    // host ends wait in doomGroup
	addrs map[netip.Addr]struct{} // conntrack entries of these addresses
	rules []portRule              // conntrack entries of these mappings
	since time.Time               // when the oldest pending work came
	last  time.Time               // the driver's latest call
	armed bool                    // a pass is scheduled
}

func newReaper() *reaper {
	return &reaper{
		log:      sdk.NewLogger("bridge"),
		quiet:    quietPeriod,
		maxDelay: maxDelay,
		ct: sync.OnceValues(func() (*netlink.Handle, error) {
			h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
			if err != nil {
				return nil, fmt.Errorf("opening conntrack netlink handle: %w", err)
			}
			return h, nil
		}),
		// A previous run of the driver may have left host ends behind.
		links: true,
		since: time.Now(),
	}
}

// busy records a driver call: passes wait for a quiet moment.
func (r *reaper) busy() {
	r.mu.Lock()
	r.last = time.Now()
	r.arm()
	r.mu.Unlock()
}

// deleteLinks schedules the deletion of the host ends in doomGroup.
func (r *reaper) deleteLinks() {
	r.mu.Lock()
	r.links = true
	r.queued()
	r.mu.Unlock()
}

// forget schedules the deletion of the conntrack entries of addrs and of
// the flows that rules DNATed.
func (r *reaper) forget(addrs []netip.Addr, rules []portRule) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range addrs {
		if a.IsValid() {
			if r.addrs == nil {
				r.addrs = map[netip.Addr]struct{}{}
			}
			r.addrs[a] = struct{}{}
		}
	}
	r.rules = append(r.rules, rules...)
	r.queued()
}

// queued notes new work. Called with mu held.
func (r *reaper) queued() {
	if r.since.IsZero() {
		r.since = time.Now()
	}
	r.arm()
}

func (r *reaper) pending() bool { return r.links || len(r.addrs) > 0 || len(r.rules) > 0 }

// due returns how long the next pass still waits. Called with mu held.
func (r *reaper) due() time.Duration {
	at := r.last.Add(r.quiet)
	if d := r.since.Add(r.maxDelay); d.Before(at) {
		at = d
	}
	return time.Until(at)
}

// arm schedules a pass when there is work and none is scheduled. Called
// with mu held.
func (r *reaper) arm() {
	if r.armed || !r.pending() {
		return
	}
	r.armed = true
	time.AfterFunc(max(r.due(), 0), r.fire)
}

func (r *reaper) fire() {
	r.mu.Lock()
	r.armed = false
	if d := r.due(); d > 0 && r.pending() {
		r.armed = true
		time.AfterFunc(d, r.fire)
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	if err := r.pass(true, nil, nil); err != nil {
		r.log.Warn("deleting detached endpoints' leftovers; will try again", "error", err)
	}
}

// ensureFlushed deletes at once the pending conntrack entries that could
// reach an endpoint with addrs, or a mapping of bs: before an address or a
// host port is used again, nothing of its previous user may remain.
func (r *reaper) ensureFlushed(addrs []netip.Addr, bs []binding) error {
	r.mu.Lock()
	hit := slices.ContainsFunc(addrs, func(a netip.Addr) bool {
		_, ok := r.addrs[a]
		return ok
	}) || slices.ContainsFunc(r.rules, func(p portRule) bool {
		return slices.Contains(addrs, p.ctr) || slices.ContainsFunc(bs, func(b binding) bool {
			return b.proto == p.proto && b.hostPort == p.hostPort
		})
	})
	r.mu.Unlock()
	if !hit {
		return nil
	}
	return r.pass(false, nil, nil)
}

// flush deletes now the conntrack entries of families fams that match
// selects, together with everything pending, in one walk.
func (r *reaper) flush(fams []int, match func(*netlink.ConntrackFlow) bool) error {
	return r.pass(false, fams, match)
}

// drain does all pending work now; the driver calls it when it stops.
func (r *reaper) drain() error { return r.pass(true, nil, nil) }

// pass does the pending work: always the conntrack entries (with the
// extra ones fams and match select), the links when links is set. Work
// that fails stays pending for the next pass.
func (r *reaper) pass(links bool, fams []int, match func(*netlink.ConntrackFlow) bool) error {
	r.run.Lock()
	defer r.run.Unlock()
	r.mu.Lock()
	addrs, rules := r.addrs, r.rules
	r.addrs, r.rules = nil, nil
	doLinks := links && r.links
	if doLinks {
		r.links = false
	}
	if !r.pending() {
		r.since = time.Time{}
	}
	r.mu.Unlock()

	var errs []error
	if doLinks {
		if err := deleteGroup(doomGroup); err != nil {
			errs = append(errs, fmt.Errorf("deleting detached veth pairs: %w", err))
			r.deleteLinks()
		}
	}
	if len(addrs)+len(rules) == 0 && match == nil {
		return errors.Join(errs...)
	}
	var ctrs []netip.Addr
	for a := range addrs {
		ctrs = append(ctrs, a)
	}
	for _, p := range rules {
		ctrs = append(ctrs, p.ctr)
	}
	for _, f := range familiesOf(ctrs...) {
		if !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	h, err := r.ct()
	if err == nil {
		err = flushConntrack(h, fams, func(f *netlink.ConntrackFlow) bool {
			if _, ok := addrs[addrOf(f.Forward.SrcIP)]; ok {
				return true
			}
			if _, ok := addrs[addrOf(f.Reverse.SrcIP)]; ok {
				return true
			}
			return slices.ContainsFunc(rules, func(p portRule) bool { return p.ownsFlow(f) }) ||
				match != nil && match(f)
		})
	}
	if err != nil {
		addrList := make([]netip.Addr, 0, len(addrs))
		for a := range addrs {
			addrList = append(addrList, a)
		}
		r.forget(addrList, rules)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// deleteGroup deletes every link of the driver's namespace in group g,
// with its veth peer, in one batch; an empty group is not an error. It
// uses a socket of its own, as the kernel answers only once the grace
// periods are over.
//
// Equivalent to: `ip link del group G`.
func deleteGroup(g uint32) error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(g)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}
