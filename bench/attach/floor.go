package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requireIsolation refuses to run unless the network namespace is a fresh
// one (nothing but lo in it): the benchmark creates bridges, addresses and
// firewall rules, which must never land in the machine's own namespace.
func requireIsolation() error {
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		if l.Attrs().Name != "lo" {
			return fmt.Errorf("refusing to run in a namespace that has %s: run it under `unshare --net --mount --propagation private` (make bench does)", l.Attrs().Name)
		}
	}
	return nil
}

// setupHost brings up lo in the throwaway namespace that plays the host.
func setupHost() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}

// newNetns creates a network namespace bind-mounted at key, as a runtime
// does before it calls its network plugin. The calling goroutine's thread
// is switched back before returning.
func newNetns(key string) error {
	if err := os.MkdirAll(filepath.Dir(key), 0o755); err != nil {
		return err
	}
	f, err := os.Create(key)
	if err != nil {
		return err
	}
	f.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	mountErr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), key, "", unix.MS_BIND, "")
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("cannot return to the original namespace: %v", err))
	}
	return mountErr
}

func removeNetns(key string) error {
	if err := unix.Unmount(key, unix.MNT_DETACH); err != nil {
		return err
	}
	return os.Remove(key)
}

// mountTmpfs mounts a fresh tmpfs at dir. The benchmark runs in a private
// mount namespace, so it disappears with the benchmark.
func mountTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs at %s: %w", dir, err)
	}
	return nil
}

// unmountAll removes every mount below dir.
func unmountAll(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			_ = unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

// floorAttach does, n times, exactly the kernel work of one attach —
// namespace, veth pair with its peer created inside it, the host end on
// the bridge and up, the address, the link up and the default route — and
// nothing else. Namespaces are released afterwards, untimed. create holds
// the namespace step alone.
func floorAttach(dir string, n int) (*timings, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "floorbr"}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, err
	}
	defer netlink.LinkDel(br)
	gw := net.IPv4(10, 220, 0, 1)
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: gw, Mask: net.CIDRMask(16, 32)}}); err != nil {
		return nil, err
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, err
	}
	var out, nsT []time.Duration
	var keys []string
	defer func() {
		for _, k := range keys {
			_ = removeNetns(k)
		}
	}()
	for i := range n {
		key := filepath.Join(dir, fmt.Sprintf("c%d", i))
		start := time.Now()
		if err := newNetns(key); err != nil {
			return nil, err
		}
		keys = append(keys, key)
		nsT = append(nsT, time.Since(start))
		ns, err := netns.GetFromPath(key)
		if err != nil {
			return nil, err
		}
		h, err := netlink.NewHandleAt(ns)
		if err != nil {
			ns.Close()
			return nil, err
		}
		host := fmt.Sprintf("fl%d", i)
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host, MasterIndex: br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns)}
		err = netlink.LinkAdd(veth)
		if err == nil {
			err = netlink.LinkSetUp(veth)
		}
		var peer netlink.Link
		if err == nil {
			peer, err = h.LinkByName("eth0")
		}
		ip := net.IPv4(10, 220, byte((i+2)>>8), byte(i+2))
		if err == nil {
			err = h.AddrAdd(peer, &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(16, 32)}})
		}
		if err == nil {
			err = h.LinkSetUp(peer)
		}
		if err == nil {
			err = h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: gw})
		}
		h.Close()
		ns.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
	}
	return &timings{add: out, create: nsT}, nil
}
