// Package nspool keeps network namespaces made ahead of time (spares), so
// that a sandbox create takes one instead of waiting for the kernel to
// make it, and the quiet gate that keeps their making away from attaches.
//
// The package does no kernel work itself: what a spare is, how one is
// made and how an attach is prepared in it are the caller's (Maker), and
// when background work may run is an Idle's (a Gate, which the caller
// tells when attaches start and end). The choice of what to make next is
// a pure function of the pool's state (next), so the policy is tested
// without root; the timing of the gate is tested with testing/synctest.
//
// Spares are made one at a time by one background goroutine, each once
// the Idle says no attach has been in flight for a moment, or at once
// after a create found none of the kind it wanted or took the last
// (creates in a burst).
//
// Besides the plain ones, the pool keeps as many spares prepared for the
// network the last create with networks named first (its target): the
// network's driver has readied the attach of an endpoint the spare holds
// (for the bridge, the veth pair is made, its sandbox end inside as eth0
// and its host end on the bridge), so that a create naming that network
// first finishes the attach instead of doing it all. A create naming
// another network first takes a plain one. A create without networks
// takes a plain one too, unless the pool has been told (Expect) that such
// creates are followed by a connect to the target — Docker's flow:
// create, then connect — in which case it takes a prepared one, whose
// attach the connect finishes; one that goes unused (Missed) ends the
// guess until the next Expect. The target is the network the last create
// named first, or the last Expect's. Prepared spares of another network
// than the target are destroyed (their namespace takes what was prepared
// with it). A target whose driver prepares nothing is not asked again
// until another network is the target.
package nspool
