// Package controller is sandnet's orchestration: networks, endpoints and
// sandboxes, their persistence in the store, and the calls to driver
// plugins, IPAM and core/sandbox that make them real.
//
// # State
//
// The store is the source of truth. Every network, endpoint and sandbox is
// a JSON record under sandnet/v1/ (see keys.go); writes are
// compare-and-swap, retried a bounded number of times. Nothing derived is
// stored: a network's endpoint count is a List of its endpoint prefix, a
// sandbox's endpoints are the endpoints whose record names it. An endpoint
// and its IP allocations are written in one transaction, so a crash leaves
// neither a duplicate address nor a leaked one. Deletes that have
// endpoints to remove first mark the record in-delete, so an agent that
// crashes midway finishes the delete when it starts again.
//
// The attach path writes beside the work it records, not before it: a
// sandbox's record while its namespace is made under a scratch key (moved
// to its key once the record has landed), an endpoint's record — already
// naming its sandbox and interface — while the driver attaches it and the
// namespace configures its interface. A create that lists its networks
// writes the sandbox's record in the first endpoint's transaction, started
// while the namespace is made (or taken from the spares made ahead of
// time: core/nspool, spares.go), and the driver joins the namespace at its scratch key.
// A spare may come with that attach prepared by the network's driver
// (Prepare: for the bridge, the veth pair made); the driver then only
// finishes it, while the namespace configures the interface the driver
// prepared. Whichever side fails, both are
// undone; a write whose outcome is unknown is undone in the background
// once the store answers. Start repairs what a crash between the halves
// leaves (restore.go): scratch namespaces go, records whose namespace or
// interface is missing go, interfaces cut short are set up again, and the
// host's side's interfaces no endpoint owns are deleted.
//
// An attach and a create are values with named steps (attach.go,
// create.go), each undone through
// one undo stack if a later one fails, with work that overlaps them
// started and awaited through one future type (async.go);
// docs/architecture.md lists the steps with the state a crash after each
// leaves and the repair that handles it.
//
// # Locks
//
// There are two kinds of lock, always taken in this order:
//
//  1. sandboxOp.mu (one per sandbox): serializes whole operations on one
//     sandbox — join, leave, rename, refresh, set-key, delete. It is the
//     only lock held across a plugin call, a store call or a netlink call.
//     An operation found its sandbox before it waited for the lock, so
//     one that changes the sandbox takes it through lockLive, which
//     refuses a sandbox a delete removed (or is about to) meanwhile: a
//     change after the delete would write the record back. A create that
//     claims a stub is likewise refused once a delete of it has begun
//     (claimable), and the stub reaper keeps a stub claimed meanwhile.
//  2. Controller.mu: guards the in-memory maps (sandboxes by ID and by
//     container, the ingress sandbox, containers being created). It is a
//     leaf: held only to read or update those maps, never across any call
//     that can block, and no other lock is taken while holding it. The
//     waits on its condition (idle) — RetireDriver's for the network
//     creates under way on a driver, DrainDriver's for the requests
//     holding one — release it while waiting.
//
// core/sandbox.Sandbox and core/ipam have their own internal locks, which
// are leaves too. No operation takes two sandbox locks at once. Networks
// have no in-memory lock at all: concurrent changes to a network are
// settled by compare-and-swap on its record (an endpoint create checks the
// network record's index in the same transaction, and a network delete
// bumps that index when it marks the network in-delete).
//
// The peer goroutine (peers.go) is the only caller of the drivers' peer
// methods and holds no lock across them; a connect that sets a global
// network up on this host waits for it (bounded) while holding its
// sandbox's lock, which the goroutine never takes.
package controller
