package main

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// blackHole is a UDP "DNS server" that reads queries and never answers.
type blackHole struct {
	got atomic.Int64
}

func startBlackHole(t *testing.T, addr string) *blackHole {
	t.Helper()
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			h.got.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return h
}

// TestSilentUpstreamNeverBlocksNames: with an upstream that never answers
// and every in-flight slot of a sandbox's resolver taken by queries
// waiting for it, container names are still answered (dig over UDP and
// TCP, and a burst from a client inside the sandbox) while those forwards
// are pending; queries beyond the bound get REFUSED at once.
func TestSilentUpstreamNeverBlocksNames(t *testing.T) {
	nstest.RequireRoot(t)
	hole := startBlackHole(t, "127.0.0.51:53")
	const maxInflight, sent = 64, 100
	dir := t.TempDir()
	agenttest.CleanupMounts(t, dir)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dir, "")+fmt.Sprintf(
		"resolver {\n  upstreams = [\"127.0.0.51\"]\n  timeout = \"60s\"\n  max_inflight = %d\n  cache_size = 0\n}\n", maxInflight)).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	if _, err := a.Client.CreateNetwork(t.Context(), controller.NetworkCreate{Name: "slow"}); err != nil {
		t.Fatal(err)
	}
	web := attach(t, a.Client, "slow", "web")
	cli := attach(t, a.Client, "slow", "cli")

	// A client inside cli's namespace: sockets opened there stay there.
	dial := func() *net.UDPConn {
		var c *net.UDPConn
		in(t, cli.key, func() (err error) {
			c, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 11), Port: 53})
			return err
		})
		t.Cleanup(func() { c.Close() })
		return c
	}
	fwd := dial()
	var mu sync.Mutex
	rcodes := map[int]int{} // answers to the forwarded queries, by rcode; guarded by mu
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := fwd.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m := new(dns.Msg)
			if err != nil || m.Unpack(buf[:n]) != nil {
				continue
			}
			mu.Lock()
			rcodes[m.Rcode]++
			mu.Unlock()
		}
	}()
	for i := range sent {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("pending%d.example.", i), dns.TypeA)
		b, _ := q.Pack()
		if _, err := fwd.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	refused := func() int { mu.Lock(); defer mu.Unlock(); return rcodes[dns.RcodeRefused] }
	polltest.Until(t, 30*time.Second, fmt.Sprintf("%d forwards to reach the silent upstream", maxInflight), func() bool {
		return hole.got.Load() >= maxInflight
	})
	polltest.Until(t, 30*time.Second, fmt.Sprintf("%d queries beyond the bound to be REFUSED", sent-maxInflight), func() bool {
		return refused() == sent-maxInflight
	})

	// Every slot is taken and waits for the silent upstream: names answer.
	if got := dig(t, cli.key, "+short", "web"); got != web.addr.String() {
		t.Fatalf("dig web while forwards are pending = %q, want %s", got, web.addr)
	}
	if got := dig(t, cli.key, "+short", "+tcp", "web.slow"); got != web.addr.String() {
		t.Fatalf("dig +tcp web.slow while forwards are pending = %q, want %s", got, web.addr)
	}
	local := dial()
	var took []time.Duration
	buf := make([]byte, 512)
	for i := range 200 {
		q := new(dns.Msg)
		q.SetQuestion("web.", dns.TypeA)
		q.Id = uint16(i)
		b, _ := q.Pack()
		start := time.Now()
		if _, err := local.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = local.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := local.Read(buf)
		if err != nil {
			t.Fatalf("query %d for web while forwards are pending: %v", i, err)
		}
		took = append(took, time.Since(start))
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil || m.Id != q.Id || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != web.addr.String() {
			t.Fatalf("query %d for web while forwards are pending: %v (%v)", i, m, err)
		}
	}
	slices.Sort(took)
	t.Logf("200 container-name queries with %d forwards pending: median %s, max %s",
		maxInflight, took[len(took)/2], took[len(took)-1])

	// The forwards are still pending: nothing but the REFUSED came back.
	mu.Lock()
	defer mu.Unlock()
	for rc, n := range rcodes {
		if rc != dns.RcodeRefused {
			t.Fatalf("%d forwarded queries were answered %s while the upstream is silent", n, dns.RcodeToString[rc])
		}
	}
	if got := hole.got.Load(); got != maxInflight {
		t.Fatalf("the silent upstream got %d queries, want %d (the in-flight bound)", got, maxInflight)
	}
}
