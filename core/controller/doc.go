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
// neither a duplicate address nor a leaked one. Deletes first mark the
// record in-delete, so an agent that crashes midway finishes the delete
// when it starts again.
//
// # Locks
//
// There are two kinds of lock, always taken in this order:
//
//  1. sandboxOp.mu (one per sandbox): serializes whole operations on one
//     sandbox — join, leave, rename, refresh, set-key, delete. It is the
//     only lock held across a plugin call, a store call or a netlink call.
//  2. Controller.mu: guards the in-memory maps (sandboxes by ID and by
//     container, the ingress sandbox, containers being created). It is a
//     leaf: held only to read or update those maps, never across any call
//     that can block, and no other lock is taken while holding it.
//
// core/sandbox.Sandbox and core/ipam have their own internal locks, which
// are leaves too. No operation takes two sandbox locks at once. Networks
// have no in-memory lock at all: concurrent changes to a network are
// settled by compare-and-swap on its record (an endpoint create checks the
// network record's index in the same transaction, and a network delete
// bumps that index when it marks the network in-delete).
package controller
