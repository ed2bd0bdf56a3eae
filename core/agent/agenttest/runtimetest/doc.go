// Package runtimetest runs real container runtimes — podman 4.3 with its
// CNI backend and containerd 1.6 with `ctr run --cni` — against sandnet's
// CNI plugin, for end-to-end tests and benchmarks, so that nothing they
// write lands on the machine.
//
// A runtime writes far outside the directories its flags name: podman
// under /var/lib/containers, /run/containers, /run/libpod, /run/netns,
// /run/runc and /var/tmp; CNI's cache under /var/lib/cni; containerd's
// shim under /run/containerd; ctr's go-cni reads only /etc/cni/net.d and
// /opt/cni/bin. Each rig therefore shadows those paths with a tmpfs
// (Shadow) in the caller's mount namespace, which must be a private one
// (sdk/nstest runs test binaries in one; the benchmarks run under
// `unshare --mount`): a path the machine lacks is made inside a
// copy-on-write overlay of its nearest existing parent, never on the
// machine's disk. Cgroups go under a parent named after the rig and are
// removed with it.
//
// Close undoes everything, also after a failure half-way: it ends every
// process that refers to the rig's directory (conmon, containerd, its
// shims, the containers themselves, found by PID through /proc), removes
// the rig's cgroups and unmounts what it mounted.
//
// The settings are those that work on Debian 12's podman 4.3 and
// containerd 1.6 on a host with the hybrid cgroup layout: runc (crun
// refuses the layout), the cgroupfs manager, the file events logger,
// ulimits no higher than the caller's, and the vfs storage driver.
package runtimetest
