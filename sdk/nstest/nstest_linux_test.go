package nstest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestIsolatedNamespaceIsEmpty checks what a root test sees after Main: a
// network namespace other than the parent's, holding only a working lo.
func TestIsolatedNamespaceIsEmpty(t *testing.T) {
	RequireRoot(t)

	parent, err := parseNSID(os.Getenv(EnvIsolated))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := currentNamespace()
	if err != nil {
		t.Fatal(err)
	}
	if cur == parent {
		t.Fatalf("running in the parent's network namespace %v", cur)
	}

	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
		}
		t.Fatalf("links in isolated namespace = %v, want only lo", names)
	}
	if links[0].Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("lo is down in the isolated namespace")
	}
}

func TestLoopbackCarriesTraffic(t *testing.T) {
	RequireRoot(t)

	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ln, err := net.ListenPacket("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, err := net.Dial("udp", ln.LocalAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = ln.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 16)
			n, _, err := ln.ReadFrom(buf)
			if err != nil {
				t.Fatalf("datagram over lo did not arrive: %v", err)
			}
			if string(buf[:n]) != "ping" {
				t.Fatalf("received %q, want %q", buf[:n], "ping")
			}
		})
	}
}

// TestMountsArePrivate checks that a mount made by a test cannot propagate to
// the machine: no mount in the isolated mount namespace is shared.
func TestMountsArePrivate(t *testing.T) {
	RequireRoot(t)

	dir := t.TempDir()
	if err := unix.Mount("sandnet-nstest", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mounting tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })

	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		if fields[4] == dir {
			found = true
		}
		for _, opt := range fields[6:] {
			if opt == "-" {
				break
			}
			if strings.HasPrefix(opt, "shared:") {
				t.Errorf("mount %s is shared (%s): mounts under it would propagate outside the test", fields[4], opt)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("tmpfs mounted at %s not in mountinfo", dir)
	}
}

// Links lists the namespace's links while another goroutine adds and
// deletes links in it: a dump interrupted by the churn is taken again.
func TestLinksWhileLinksChange(t *testing.T) {
	RequireRoot(t)
	// Enough links that a dump takes several messages: the kernel flags
	// one that changes between two of them.
	for i := range 100 {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("many%d", i)}, PeerName: fmt.Sprintf("many%dp", i)}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("many%d", i)}})
		})
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("churn%d", i%8)}, PeerName: fmt.Sprintf("churn%dp", i%8)}
			if err := netlink.LinkAdd(d); err != nil {
				done <- err
				return
			}
			if err := netlink.LinkDel(d); err != nil {
				done <- err
				return
			}
		}
	}()
	for range 300 {
		links := Links(t, nil)
		if !slices.ContainsFunc(links, func(l netlink.Link) bool { return l.Attrs().Name == "lo" }) {
			close(stop)
			t.Fatal("lo missing from the list")
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
