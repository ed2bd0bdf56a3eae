// Package sandbox is the sandbox object: one container's network stack.
// A Sandbox owns a network namespace (core/osl), the ordered set of its
// endpoints (by priority), the interfaces and routes those endpoints put
// inside the namespace, and the resolv.conf and hosts files the container
// mounts.
//
// A Sandbox does not talk to plugins or to the store: the controller calls a
// driver's Join and hands the result to AddInterface; the controller also
// persists what AddInterface decided (the interface name). The Sandbox
// methods are safe for concurrent use; the controller serializes whole
// operations (join, leave, delete) on one sandbox with its own lock.
// Changes to the namespace are serialized by a lock of their own, held
// across netlink calls and the wait for a link; the lock that guards the
// sandbox's fields is never held across either, so listings and lookups
// do not wait for the kernel (see Sandbox).
package sandbox
