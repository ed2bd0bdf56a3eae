package plugincheck

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/sdk/nstest"
)

// leakWait is how long a driver's links may take to go once a case has
// deleted its endpoints and network: a driver may delete in the
// background (the bridge driver's veth pairs), and the kernel removes a
// pair whose other end was in a namespace that went away a moment later.
const leakWait = 5 * time.Second

// linksNow returns the links of the check's own namespace, by index with
// their names and types, or nil where the check is not isolated (then
// the namespace is the host's, whose links come and go for other
// reasons).
func linksNow(t *testing.T) map[int]string {
	if !nstest.Isolated() {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("listing the check's links: %v", err)
	}
	m := make(map[int]string, len(links))
	for _, l := range links {
		m[l.Attrs().Index] = fmt.Sprintf("%s (%s)", l.Attrs().Name, l.Type())
	}
	return m
}

// requireLinksGone fails t unless, within leakWait, the check's
// namespace holds no link that was not there before the case: a driver
// must remove what it made when its endpoints and networks are deleted.
func requireLinksGone(t *testing.T, before map[int]string) {
	if before == nil {
		return
	}
	var left []string
	for deadline := time.Now().Add(leakWait); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for i, l := range linksNow(t) {
			if _, ok := before[i]; !ok {
				left = append(left, l)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		slices.Sort(left)
		t.Errorf("left behind once the case deleted its endpoints and network (waited %s): link %s", leakWait, strings.Join(left, ", link "))
	}
}
