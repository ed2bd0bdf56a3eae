package resolver

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sandnet/sandnet/sdk/nstest"
	"github.com/sandnet/sandnet/sdk/polltest"
)

// TestDnsperfVsDnsmasq measures local answers with dnsperf against this
// resolver and against dnsmasq serving the same names, alternating runs,
// and fails when sandnet answers fewer queries per second or loses any.
// It takes half a minute, so it runs only with SANDNET_DNSPERF=1 (and
// SANDNET_DNSPERF_ARGS for extra dnsperf flags, e.g. "-c 4 -q 500").
func TestDnsperfVsDnsmasq(t *testing.T) {
	if os.Getenv("SANDNET_DNSPERF") == "" {
		t.Skip("set SANDNET_DNSPERF=1 to compare with dnsmasq")
	}
	nstest.RequireRoot(t)
	for _, tool := range []string{"dnsperf", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	r := newTestResolver(t, Config{}, testBackend())
	ours := startLoopback(t, r)
	theirs := startDnsmasq(t)

	data := filepath.Join(t.TempDir(), "queries")
	if err := os.WriteFile(data, []byte("web A\nweb.net A\ndb A\nweb AAAA\ndb AAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Both must give the same answers first.
	for _, q := range []*dns.Msg{query("web.", dns.TypeA), query("db.", dns.TypeAAAA)} {
		for _, addr := range []netip.AddrPort{ours, theirs} {
			m, _, err := exchange(t, "udp", addr, q, time.Second)
			if err != nil || m.Rcode != dns.RcodeSuccess {
				t.Fatalf("%s %v: %v, %v", addr, q.Question[0], m, err)
			}
		}
	}

	extra := strings.Fields(os.Getenv("SANDNET_DNSPERF_ARGS"))
	var qps [2][]float64
	for round := range 3 {
		for i, addr := range []netip.AddrPort{theirs, ours} {
			drops := udpRcvbufErrors(t)
			res := dnsperf(t, addr, data, extra)
			drops = udpRcvbufErrors(t) - drops
			name := [2]string{"dnsmasq", "sandnet"}[i]
			t.Logf("round %d %-8s %9.0f qps, %d sent, %d lost; %d datagrams dropped by full receive buffers",
				round, name, res.qps, res.sent, res.lost, drops)
			if i == 1 && res.lost > 0 {
				t.Errorf("sandnet lost %d of %d queries", res.lost, res.sent)
			}
			qps[i] = append(qps[i], res.qps)
		}
	}
	best := func(v []float64) float64 {
		m := 0.0
		for _, x := range v {
			m = max(m, x)
		}
		return m
	}
	ratio := best(qps[1]) / best(qps[0])
	t.Logf("sandnet/dnsmasq: %.2f (best of 3 each)", ratio)
	if ratio < 1 {
		t.Errorf("sandnet answers %.0f qps, dnsmasq %.0f", best(qps[1]), best(qps[0]))
	}
}

type perfResult struct {
	sent, lost int
	qps        float64
}

func dnsperf(t *testing.T, addr netip.AddrPort, data string, extra []string) perfResult {
	t.Helper()
	args := append([]string{"-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())), "-d", data, "-l", "5"}, extra...)
	out, err := exec.Command("dnsperf", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsperf %v: %v\n%s", args, err, out)
	}
	var res perfResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[0] == "Queries" && f[1] == "sent:":
			res.sent, _ = strconv.Atoi(f[2])
		case len(f) >= 3 && f[0] == "Queries" && f[1] == "lost:":
			res.lost, _ = strconv.Atoi(f[2])
		case len(f) >= 4 && f[0] == "Queries" && f[1] == "per" && f[2] == "second:":
			res.qps, _ = strconv.ParseFloat(f[3], 64)
		}
	}
	if res.sent == 0 || res.qps == 0 {
		t.Fatalf("cannot read dnsperf's output:\n%s", out)
	}
	return res
}

// startDnsmasq serves testBackend's web and db names from dnsmasq on a
// loopback port, without upstreams, until the test ends.
func startDnsmasq(t *testing.T) netip.AddrPort {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--pid-file=",
		"--user=root", "--no-resolv", "--no-hosts", "--bind-interfaces", "--listen-address=127.0.0.1",
		fmt.Sprintf("--port=%d", port),
		"--host-record=web,10.0.0.2", "--host-record=web,10.0.0.3", "--host-record=web,10.0.0.4",
		"--host-record=web,fd00::2", "--host-record=web.net,10.0.0.2", "--host-record=db,10.0.0.5",
		"--local=/web/", "--local=/db/", "--local=/net/")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	polltest.Until(t, 5*time.Second, "dnsmasq to answer", func() bool {
		_, _, err := exchange(t, "udp", addr, query("db.", dns.TypeA), 100*time.Millisecond)
		return err == nil
	})
	return addr
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.LocalAddr().(*net.UDPAddr).Port
}

// udpRcvbufErrors reads the namespace's count of UDP datagrams dropped
// because a socket's receive buffer was full (either side's).
func udpRcvbufErrors(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var head []string
	for l := range strings.Lines(string(b)) {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i, name := range head {
			if name == "RcvbufErrors" && i < len(f) {
				n, _ := strconv.Atoi(f[i])
				return n
			}
		}
	}
	t.Fatal("no Udp RcvbufErrors in /proc/net/snmp")
	return 0
}
