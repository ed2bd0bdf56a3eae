package main

import (
	"regexp"
	"strings"
	"testing"
)

// TestAuxAddresses: a network made with --aux-address, as Docker's, never
// gives those addresses to a container, neither picked nor asked for, and
// network inspect lists them; one that cannot be is refused naming it,
// and nothing is made.
func TestAuxAddresses(t *testing.T) {
	a := bridgeAgent(t)
	run := func(args ...string) (string, int) {
		return sandnetCmd(t, append([]string{"--socket", a.Socket}, args...)...)
	}
	// Docker's spellings -d and --opt work too, and ls -f.
	if out, code := run("network", "create", "-d", "bridge", "--opt", "com.docker.network.driver.mtu=1400", "--subnet", "10.51.0.0/29", "--aux-address", "router=10.51.0.2",
		"--aux-address", "printer=10.51.0.5", "aux"); code != 0 {
		t.Fatalf("network create: exit %d\n%s", code, out)
	}
	out, code := run("network", "inspect", "aux")
	for _, want := range []string{`(?m)^Aux address: +printer=10\.51\.0\.5$`, `(?m)^Aux address: +router=10\.51\.0\.2$`} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("network inspect: exit %d, want a line matching %s\n%s", code, want, out)
		}
	}
	// A /29 has the network, gateway and broadcast addresses, the two
	// auxiliary ones and three for containers.
	var got []string
	for _, c := range []string{"c1", "c2", "c3"} {
		if out, code := run("sandbox", "create", "--network", "aux", c); code != 0 {
			t.Fatalf("sandbox create %s: exit %d\n%s", c, code, out)
		}
		out, _ := run("sandbox", "inspect", "--format", "{{range .Endpoints}}{{.Address}}{{end}}", c)
		got = append(got, strings.TrimSpace(out))
	}
	if strings.Join(got, " ") != "10.51.0.3/29 10.51.0.4/29 10.51.0.6/29" {
		t.Errorf("the containers got %v, want 10.51.0.3, .4 and .6 (not the auxiliary .2 and .5)", got)
	}
	if out, code := run("sandbox", "create", "--network", "aux", "c4"); code == 0 || !strings.Contains(out, "pool is full") {
		t.Errorf("a fourth container: exit %d, want the pool full\n%s", code, out)
	}
	if out, code := run("sandbox", "create", "--network", "aux", "--ip", "10.51.0.2", "c5"); code == 0 || !strings.Contains(out, `address 10.51.0.2 is auxiliary address "router" of 10.51.0.0/29`) {
		t.Errorf("asking for the router's address: exit %d\n%s", code, out)
	}
	// Each address goes to the subnet of its family; as with docker, a
	// second --subnet (and --gateway) of IPv6 is the IPv6 one.
	if out, code := run("network", "create", "--subnet", "10.54.0.0/24", "--subnet", "fd00:54::/64", "--gateway", "fd00:54::fe", "--ip-range", "fd00:54::100/120",
		"--aux-address", "r4=10.54.0.2", "--aux-address", "r6=fd00:54::2", "aux6"); code != 0 {
		t.Fatalf("network create aux6: exit %d\n%s", code, out)
	}
	out, code = run("network", "inspect", "aux6")
	for _, want := range []string{`(?m)^Subnet: +10\.54\.0\.0/24 +gateway 10\.54\.0\.1\nAux address: +r4=10\.54\.0\.2$`, `(?m)^Subnet: +fd00:54::/64 +gateway fd00:54::fe +range fd00:54::100/120\nAux address: +r6=fd00:54::2$`} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("network inspect aux6: exit %d, want lines matching %s\n%s", code, want, out)
		}
	}
	if out, code := run("sandbox", "create", "--network", "aux6", "c7"); code != 0 {
		t.Errorf("sandbox create c7: exit %d\n%s", code, out)
	} else if out, _ := run("sandbox", "inspect", "--format", "{{range .Endpoints}}{{.AddressV6}}{{end}}", "c7"); out != "fd00:54::100/64\n" {
		t.Errorf("c7 got IPv6 address %q, want the first of the range --ip-range fd00:54::100/120", out)
	}
	if out, code := run("sandbox", "create", "--network", "aux6", "--ip6", "fd00:54::2", "c6"); code == 0 || !strings.Contains(out, `address fd00:54::2 is auxiliary address "r6" of fd00:54::/64`) {
		t.Errorf("asking for r6's address: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"--subnet", "10.52.0.0/24", "--aux-address", "router=10.53.0.2"}, `auxiliary address "router" (10.53.0.2) is not in subnet 10.52.0.0/24`},
		{[]string{"--subnet", "10.52.0.0/24", "--aux-address", "gw=10.52.0.1"}, `auxiliary address "gw" (10.52.0.1) is the gateway of 10.52.0.0/24`},
		{[]string{"--aux-address", "router=10.52.0.2"}, "aux_addresses.router: 10.52.0.2 needs the network's subnet given"},
		{[]string{"--subnet", "::ffff:10.52.0.0/120"}, "::ffff:10.52.0.0/120 is an IPv4-mapped IPv6 prefix"},
		{[]string{"--subnet", "10.52.0.0/24", "--aux-address", "router=x"}, `aux_addresses.router: "x" is not an IP address`},
		{[]string{"--subnet", "10.52.0.0/24", "--aux-address", "router"}, `-aux-address "router": want key=value`},
		{[]string{"--subnet", "10.52.0.0/24", "--aux-address", "r=10.52.0.9", "--aux-address", "r=10.52.0.10"}, `-aux-address r: given twice, as "10.52.0.9" and "10.52.0.10"`},
		{[]string{"--subnet", "10.52.0.0/24", "--ipv6", "--aux-address", "r6=fd00:52::2"}, "aux_addresses.r6: fd00:52::2 needs the network's subnet_v6 given"},
		{[]string{"--subnet", "10.52.0.0/24", "--subnet", "10.53.0.0/24"}, "-subnet 10.53.0.0/24: one IPv4 and one IPv6 subnet at most; -subnet is 10.52.0.0/24 already"},
		{[]string{"--subnet-v6", "fd00:52::/64", "--subnet", "fd00:53::/64"}, "-subnet fd00:53::/64: one IPv4 and one IPv6 subnet at most; -subnet-v6 is fd00:52::/64 already"},
		{[]string{"--subnet", "fd00:52::/64", "--ip-range", "fd00:53::/80"}, "range fd00:53::/80 is not inside subnet fd00:52::/64"},
	} {
		args := append(append([]string{"network", "create"}, tc.args...), "bad")
		if out, code := run(args...); code == 0 || !strings.Contains(out, tc.says) {
			t.Errorf("sandnet %s: exit %d, want it to say %q\n%s", strings.Join(args, " "), code, tc.says, out)
		}
	}
	if out, _ := run("network", "ls", "-q", "--filter", "name=bad"); out != "" {
		t.Errorf("a refused network is listed: %q", out)
	}
	if out, code := run("network", "ls", "--format", "{{.Name}} {{.Driver}} {{index .Options \"com.docker.network.driver.mtu\"}}", "-f", "name=aux", "-f", "driver=bridge"); code != 0 || out != "aux bridge 1400\naux6 bridge \n" {
		t.Errorf("network ls -f name=aux: exit %d, %q", code, out)
	}
	// "table TEMPLATE", as docker's: a header of the fields' names, the
	// columns aligned (it printed the word table on every row).
	// The format as typed in a shell: a backslash and a t, no space
	// after table.
	for _, format := range []string{"table {{.Name}}\t{{.Driver}}", `table {{.Name}}\t{{.Driver}}`, `table{{.Name}}\t{{.Driver}}`} {
		if out, code := run("network", "ls", "--format", format, "-f", "name=aux"); code != 0 || out != "NAME   DRIVER\naux    bridge\naux6   bridge\n" {
			t.Errorf("network ls --format %q: exit %d, %q", format, code, out)
		}
	}
	// -q prints the 12-character IDs, as Docker's, --no-trunc whole ones.
	short, _ := run("network", "ls", "-q", "-f", "name=aux6")
	long, _ := run("network", "ls", "-q", "--no-trunc", "-f", "name=aux6")
	if len(short) != 13 || len(long) != 65 || !strings.HasPrefix(long, strings.TrimSpace(short)) {
		t.Errorf("network ls -q: %q, with --no-trunc: %q; want the 12-character ID and the whole one", short, long)
	}
}
