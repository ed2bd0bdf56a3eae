package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/sandnet/sandnet/core/agent/agenttest"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk/nstest"
)

// sandnetCmd runs the built sandnet binary and returns its combined
// output and exit code.
func sandnetCmd(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(bins.Sandnet, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// A second agent on the netns_dir of a running one refuses to start,
// naming the directory and the first agent's PID, and touches nothing:
// the first keeps its sandboxes (namespaces and addresses) and its spare
// namespaces, and its next creates work.
func TestSecondAgentOnSameNetnsDirRefuses(t *testing.T) {
	nstest.RequireRoot(t)
	ctx := context.Background()
	dirA := t.TempDir()
	agenttest.CleanupMounts(t, dirA)
	a := agenttest.NewEnv(t, bins, boltAndBridge(dirA, "  spare_namespaces = 2\n")).Start(t)
	t.Cleanup(func() { removeAll(t, a.Client) })
	if _, err := a.Client.CreateNetwork(ctx, controller.NetworkCreate{Name: "locked", Subnet: "10.46.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	first := attach(t, a.Client, "locked", "first")
	addrs := nsAddrs(t, first.key)
	netnsDir := filepath.Join(dirA, "netns")
	// Spare namespaces mounted: what the probe saw a second agent unmount.
	spares := func() int {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), filepath.Join(netnsDir, ".creating", "spare-"))
	}
	// Two plain and, its first sandbox having been created and then
	// connected, two prepared for the network.
	const full = 4
	agenttest.Eventually(t, "the first agent's spares made", func() bool { return spares() == full })

	dirB := t.TempDir()
	b := agenttest.NewEnv(t, bins, boltAndBridge(dirB, ""))
	cfg, err := os.ReadFile(b.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), filepath.Join(dirB, "netns"), netnsDir, 1))
	if err := os.WriteFile(b.ConfigPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("sandbox netns_dir %s is in use by another sandnet agent (pid %d", netnsDir, a.Cmd.Process.Pid)
	if log := refusedStart(t, b); !strings.Contains(log, want) || strings.Count(strings.TrimSpace(log), "\n") != 0 {
		t.Fatalf("second agent's output is not the one line %q:\n%s", want, log)
	}
	if _, err := os.Stat(b.Socket); err == nil {
		t.Errorf("the refused agent left its socket %s", b.Socket)
	}

	if got := nsAddrs(t, first.key); got != addrs {
		t.Fatalf("first sandbox's addresses after the refused start: %s, before: %s", got, addrs)
	}
	if n := spares(); n != full {
		t.Fatalf("the first agent has %d spare namespaces after the refused start, want %d", n, full)
	}

	// A second agent with directories of its own, in the same network
	// namespace: refused too, before its start removes the first's
	// interfaces as ones its store does not hold.
	c := agenttest.NewEnv(t, bins, boltAndBridge(t.TempDir(), ""))
	want = fmt.Sprintf("another sandnet agent (pid %d) runs in this network namespace", a.Cmd.Process.Pid)
	if log := refusedStart(t, c); !strings.Contains(log, want) {
		t.Fatalf("the third agent's output lacks %q:\n%s", want, log)
	}
	if got := nsAddrs(t, first.key); got != addrs {
		t.Fatalf("first sandbox's addresses after the third agent's refused start: %s, before: %s", got, addrs)
	}
	for i := range 4 {
		c := attach(t, a.Client, "locked", "next"+strconv.Itoa(i))
		if nsAddrs(t, c.key) == "" {
			t.Fatalf("sandbox next%d has no addresses", i)
		}
	}
}

// A client command with no agent behind its socket says so and how to
// start one, not a raw dial error.
func TestNoAgentRunning(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	out, code := sandnetCmd(t, "network", "ls", "--socket", sock)
	if code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", code, out)
	}
	want := "sandnet: no sandnet agent is running at " + sock + "; start one with `sandnet agent --config FILE`"
	if !strings.HasPrefix(out, want) || strings.Contains(out, "unavailable") {
		t.Fatalf("output:\n%s\nwant it to start with %q and not end in a sentinel", out, want)
	}
}

// `make install PREFIX=…` lays out the agent, every plugin, the CNI
// plugin and the systemd unit, and systemd-analyze verifies the installed
// unit without a warning (it checks, among the rest, that ExecStart's
// binary is there and executable).
func TestInstallAndUnitFile(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; .ci/deps installs it)")
	}
	prefix := t.TempDir()
	cmd := exec.Command("make", "-s", "install", "PREFIX="+prefix)
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"bin/sandnet", "lib/sandnet/plugins/sandnet-driver-bridge", "lib/sandnet/plugins/sandnet-store-bolt", "lib/cni/sandnet"} {
		st, err := os.Stat(filepath.Join(prefix, f))
		if err != nil || st.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s not installed as an executable: %v", f, err)
		}
	}
	unit := filepath.Join(prefix, "lib/systemd/system/sandnet.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecStart=" + prefix + "/bin/sandnet agent", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("unit file lacks %q:\n%s", want, b)
		}
	}
	out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}

// `sandnet doctor` passes on a working setup (one line per check, none
// failing) and, with a plugin binary removed, fails naming that plugin
// and its path.
func TestDoctor(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"sandnet-store-bolt", "sandnet-driver-none"} {
		b, err := os.ReadFile(filepath.Join(bins.PluginDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pluginDir, name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "config.hcl")
	body := fmt.Sprintf("data_dir = %q\nplugin_dir = %q\napi {\n  socket = %q\n}\n", filepath.Join(dir, "data"), pluginDir, filepath.Join(dir, "run", "sandnet.sock")) + boltAndNone(dir)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// Before the first start: the store's file is not there yet, and a
	// check does not make it.
	out, code := sandnetCmd(t, "doctor", "--config", cfg)
	if code != 0 || strings.Contains(out, "FAIL") {
		t.Fatalf("doctor on a good setup: exit %d\n%s", code, out)
	}
	storeFile := filepath.Join(dir, "store.db")
	for _, want := range []string{"ok    kernel: veth", "ok    kernel: nf_tables", `ok    plugin driver "none"`, `ok    store "bolt": no store file at ` + storeFile + " yet: the agent's first start creates it", "ok    socket directory"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor's output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(storeFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("doctor made the store's file %s: %v", storeFile, err)
	}
	// Once there, it is opened.
	if err := os.WriteFile(storeFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _ := sandnetCmd(t, "doctor", "--config", cfg); !strings.Contains(out, `ok    store "bolt": reachable`) {
		t.Errorf("doctor with the store's file there:\n%s", out)
	}
	// advertise_addr as the agent's start resolves it: an interface that
	// is not there stops the start; an address no interface has carries
	// no overlay traffic.
	cases := []struct{ addr, want string }{
		{"nosuch0", "FAIL  advertise_addr: interface nosuch0: Link not found: the agent would not start"},
		{"192.0.2.77", "warn  advertise_addr: 192.0.2.77 is on no interface of this host"},
		{"127.0.0.1", "Invalid advertise address; 127.0.0.1 cannot be this host's address for other hosts"},
	}
	if nstest.Isolated() {
		// An address on an interface: lo, in the test's own namespace.
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			t.Fatal(err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 78), Mask: net.CIDRMask(32, 32)}}
		if err := netlink.AddrAdd(lo, addr); err != nil {
			t.Fatal(err)
		}
		defer netlink.AddrDel(lo, addr)
		cases = append(cases, struct{ addr, want string }{"192.0.2.78", "ok    advertise_addr: 192.0.2.78, on lo"})
	}
	for _, tc := range cases {
		adv := filepath.Join(dir, "adv.hcl")
		if err := os.WriteFile(adv, []byte(body+fmt.Sprintf("advertise_addr = %q\n", tc.addr)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, _ := sandnetCmd(t, "doctor", "--config", adv); !strings.Contains(out, tc.want) {
			t.Errorf("doctor with advertise_addr %s: want %q:\n%s", tc.addr, tc.want, out)
		}
	}
	// A file that is not there says so, one with errors shows the first.
	missing := filepath.Join(dir, "nosuch.hcl")
	out, code = sandnetCmd(t, "doctor", "--config", missing)
	if want := "FAIL  config: " + missing + ": no such file or directory; name the agent's config file with --config FILE"; code != 1 || !strings.Contains(out, want) {
		t.Errorf("doctor with no config file: exit %d, want 1 and a line %q:\n%s", code, want, out)
	}
	bad := filepath.Join(dir, "bad.hcl")
	if err := os.WriteFile(bad, []byte(body+"log {\n  level = 5\n  colour = true\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = sandnetCmd(t, "doctor", "--config", bad)
	if want := "FAIL  config: " + bad + ":"; code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "(and 1 more); run `sandnet config validate "+bad+"`") {
		t.Errorf("doctor with two errors in the config: exit %d, want 1, a line %q with the first error and the count:\n%s", code, want, out)
	}
	removed := filepath.Join(pluginDir, "sandnet-driver-none")
	if err := os.Remove(removed); err != nil {
		t.Fatal(err)
	}
	out, code = sandnetCmd(t, "doctor", "--config", cfg)
	want := `FAIL  plugin driver "none": ` + removed + ": no such file or directory"
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("doctor without the none driver: exit %d, want 1 and a line %q:\n%s", code, want, out)
	}
}

// `sandnet doctor` lists the running agent's networks whose driver the
// config does not load (its block removed before a restart), naming the
// network and the driver and how to bring it back; with the agent's own
// config, every network is on a loaded driver.
func TestDoctorNetworksDrivers(t *testing.T) {
	e, a := bridgeEnv(t)
	if _, err := a.Client.CreateNetwork(context.Background(), controller.NetworkCreate{Name: "orphan", Subnet: "10.47.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := sandnetCmd(t, "doctor", "--config", e.ConfigPath)
	if !strings.Contains(out, "ok    networks' drivers: the running agent's 1 network(s) are each on a driver this config loads") {
		t.Errorf("doctor with the agent's config:\n%s", out)
	}
	without := filepath.Join(t.TempDir(), "without-bridge.hcl")
	if err := os.WriteFile(without, []byte(strings.Replace(string(b), "driver \"bridge\" {}\n", "driver \"none\" {}\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = sandnetCmd(t, "doctor", "--config", without)
	if !strings.Contains(out, `warn  networks' drivers: orphan (driver "bridge"): this config loads no such driver`) || !strings.Contains(out, "sandnet reload") {
		t.Errorf("doctor with a config without the bridge driver: want a warning naming network orphan and driver bridge\n%s", out)
	}
}

// api { socket_group } gives the socket to that group, mode 0660, so its
// members may use the CLI.
func TestSocketGroup(t *testing.T) {
	nstest.RequireRoot(t)
	dir := t.TempDir()
	e := agenttest.NewEnv(t, bins, boltAndNone(dir))
	cfg, err := os.ReadFile(e.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	// daemon (GID 1) is in every Debian base system.
	cfg = []byte(strings.Replace(string(cfg), "api {\n", "api {\n  socket_group = \"daemon\"\n", 1))
	if err := os.WriteFile(e.ConfigPath, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	e.Start(t)
	var st syscall.Stat_t
	if err := syscall.Stat(e.Socket, &st); err != nil {
		t.Fatal(err)
	}
	if st.Gid != 1 || st.Mode&0o777 != 0o660 {
		t.Fatalf("socket group %d mode %o; want group 1 (daemon), mode 660", st.Gid, st.Mode&0o777)
	}
}

// The client flags may come before the command, as with `docker -H`;
// any other flag there, a group word without its subcommand, the wrong
// arguments or a bad flag value get one line saying what is wrong and
// where to look instead of the whole usage, which -h prints.
func TestFlagsBeforeTheCommand(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"--socket", sock, "network", "ls"}, 1, "no sandnet agent is running at " + sock},
		{[]string{"-socket=" + sock, "--format", "json", "sandbox", "ls"}, 1, "no sandnet agent is running at " + sock},
		{[]string{"--zzz", "network", "ls"}, 2, "--zzz: before the command only --socket, --config and --format may be given"},
		{[]string{"--socket"}, 2, "--socket needs a value"},
		{[]string{"--socket", filepath.Dir(sock), "network", "ls"}, 1, filepath.Dir(sock) + " is not a socket (a directory)"},
		{[]string{"network"}, 2, `"network" needs a subcommand: create, update, ls, inspect, rm`},
		{[]string{"connect", "n1"}, 2, "sandnet connect: want NETWORK CONTAINER; got \"n1\"\nSee 'sandnet connect -h'."},
		{[]string{"doctor", "x"}, 2, "sandnet doctor: want no arguments; got \"x\""},
		{[]string{"connect", "--priority", "x", "n1", "c1"}, 2, "invalid value \"x\" for flag -priority: parse error\nSee 'sandnet connect -h'."},
	} {
		out, code := sandnetCmd(t, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.says) || strings.Contains(out, "Usage:") {
			t.Errorf("sandnet %s: exit %d\n%s\nwant exit %d saying %q, without the usage", strings.Join(tc.args, " "), code, out, tc.code, tc.says)
		}
	}
	if out, code := sandnetCmd(t, "connect", "-h"); code != 0 || !strings.HasPrefix(out, "Usage: sandnet connect [flags] NETWORK CONTAINER\n") || !strings.Contains(out, "-priority int") {
		t.Errorf("sandnet connect -h: exit %d\n%s", code, out)
	}
	// The usage asked for goes to stdout, to pipe into grep.
	if out, err := exec.Command(bins.Sandnet, "network", "ls", "-h").Output(); err != nil || !strings.Contains(string(out), "Usage: sandnet network ls [flags]\n") || !strings.Contains(string(out), "-filter") {
		t.Errorf("sandnet network ls -h on stdout: %v\n%s", err, out)
	}
	// Docker's forms: --version needs no agent, help takes a command.
	for args, want := range map[string]string{
		"--version":       "sandnet version ",
		"help network":    "Commands: create, update, ls, inspect, rm, prune\n",
		"help network ls": "Usage: sandnet network ls [flags]\n",
	} {
		if out, err := exec.Command(bins.Sandnet, strings.Fields(args)...).Output(); err != nil || !strings.Contains(string(out), want) {
			t.Errorf("sandnet %s: %v\n%s\nwant %q", args, err, out, want)
		}
	}
	// After "--" every argument is positional, however it looks.
	out, code := sandnetCmd(t, "--socket", sock, "network", "rm", "--", "-a", "-b")
	if code != 1 || !strings.Contains(out, "no sandnet agent is running") {
		t.Errorf("sandnet network rm -- -a -b: exit %d\n%s\nwant the two names taken as networks", code, out)
	}
}

// network inspect shows what the network was made with — its options
// (Docker's names as given), IP range, both subnets — and each
// endpoint's addresses of both families; sandbox inspect shows each
// network by name with the endpoint's aliases and published ports.
func TestInspectShowsAll(t *testing.T) {
	a := bridgeAgent(t)
	for _, args := range [][]string{
		{"network", "create", "--socket", a.Socket, "-o", "com.docker.network.driver.mtu=1400", "--subnet", "10.49.0.0/24",
			"--ip-range", "10.49.0.128/25", "--ipv6", "--subnet-v6", "fd00:49::/64", "--label", "project=shop", "--label", "tier", "ins"},
		{"network", "create", "--socket", a.Socket, "--label", "project=blog", "other"},

		{"sandbox", "create", "--socket", a.Socket, "--network", "ins", "--alias", "www", "--publish", "8080:80", "--hostname", "h1", "--mac-address", "02:00:00:00:00:49", "c1"},
		{"connect", "--socket", a.Socket, "--interface", "net1", "--mac", "02:00:00:00:01:49", "--driver-opt", "com.example.tier=gold", "other", "c1"},
	} {
		if out, code := sandnetCmd(t, args...); code != 0 {
			t.Fatalf("sandnet %s: exit %d\n%s", strings.Join(args, " "), code, out)
		} else if args[1] == "create" && args[0] == "sandbox" && !strings.Contains(out, "\n*:8080->80/tcp\n") {
			t.Errorf("sandnet sandbox create does not show the published port as *:8080->80/tcp:\n%s", out)
		}
	}
	out, code := sandnetCmd(t, "sandbox", "inspect", "--socket", a.Socket, "c1")
	for _, want := range []string{
		`(?m)^Hostname: +h1$`,
		`(?m)^ins +eth0 +02:00:00:00:00:49 +10\.49\.0\.128/24 +fd00:49::\w+/64 +10\.49\.0\.1, fd00:49::1 +www +\*:8080->80/tcp$`,
		`(?m)^other +net1 +02:00:00:00:01:49 +\S+/\d+ +- +\S+ +- +-$`,
	} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("sandnet sandbox inspect c1: exit %d, want a line matching %s:\n%s", code, want, out)
		}
	}
	// The connect's driver options are the endpoint's.
	if out, code := sandnetCmd(t, "sandbox", "inspect", "--socket", a.Socket, "--format", `{{range .Endpoints}}[{{index .DriverOpts "com.example.tier"}}]{{end}}`, "c1"); code != 0 || out != "[][gold]\n" {
		t.Errorf("sandbox inspect: exit %d, driver options %q, want [][gold]", code, out)
	}
	out, code = sandnetCmd(t, "network", "inspect", "--socket", a.Socket, "ins")
	for _, want := range []string{
		`(?m)^IPv4: +true\nIPv6: +true$`,
		`(?m)^Option: +com\.docker\.network\.driver\.mtu=1400$`,
		`(?m)^Label: +project=shop$`,
		`(?m)^Label: +tier=$`,
		`(?m)^Subnet: +10\.49\.0\.0/24 +gateway 10\.49\.0\.1 +range 10\.49\.0\.128/25$`,
		`(?m)^Subnet: +fd00:49::/64 +gateway fd00:49::1$`,
		`(?m)^Endpoint: +c1 +10\.49\.0\.128/24 fd00:49::\w+/64 +02:00:00:00:00:49`,
	} {
		if code != 0 || !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("sandnet network inspect ins: exit %d, want a line matching %s:\n%s", code, want, out)
		}
	}
	// sandbox ls names each sandbox's networks and filters by them.
	if out, code := sandnetCmd(t, "sandbox", "ls", "--socket", a.Socket); code != 0 || !regexp.MustCompile(`(?m)^\w{12} +c1 +ins,other +\S+ +ready$`).MatchString(out) {
		t.Errorf("sandbox ls: exit %d, want c1 on ins,other\n%s", code, out)
	}
	// network inspect of a network and a missing one shows the first,
	// then says what was not found, and exits 1, as Docker's does.
	// The error says what is not found once (the API's kind, "not
	// found", is its status code, not part of what the CLI prints).
	if out, code := sandnetCmd(t, "network", "inspect", "--socket", a.Socket, "--format", "{{.Name}}", "ins", "nosuch"); code != 1 || !strings.HasPrefix(out, "ins\n") || !strings.HasSuffix(out, "sandnet: network \"nosuch\" not found\n") {
		t.Errorf("network inspect ins nosuch: exit %d\n%s\nwant ins shown, then nosuch not found, exit 1", code, out)
	}
	other, err := a.Client.Network(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	for filter, want := range map[string]string{"network=other": "c1\n", "network=nosuch": "", "network=" + other.ID[:12]: "c1\n"} {
		if out, code := sandnetCmd(t, "sandbox", "ls", "-q", "--filter", filter, "--socket", a.Socket); code != 0 || out != want {
			t.Errorf("sandbox ls -q --filter %s: exit %d, %q, want %q", filter, code, out, want)
		}
	}
	// network ls --filter selects by label, name and driver.
	for filter, want := range map[string]string{
		"label=project":        "ins other",
		"label=project=shop":   "ins",
		"label=tier":           "ins",
		"name=oth":             "other",
		"driver=bridge":        "ins other",
		"driver=none":          "",
		"label=project=nosuch": "",
	} {
		out, code := sandnetCmd(t, "network", "ls", "--socket", a.Socket, "--format", "json", "--filter", filter)
		var ns []controller.Network
		if err := json.Unmarshal([]byte(out), &ns); code != 0 || err != nil {
			t.Fatalf("sandnet network ls --filter %s: exit %d, %v\n%s", filter, code, err, out)
		}
		var names []string
		for _, n := range ns {
			names = append(names, n.Name)
		}
		if got := strings.Join(names, " "); got != want {
			t.Errorf("network ls --filter %s: %q, want %q", filter, got, want)
		}
	}
	if out, code := sandnetCmd(t, "network", "ls", "--socket", a.Socket, "--filter", "colour=red"); code != 1 || !strings.Contains(out, `--filter "colour=red": want key=value with key one of name, id, driver, scope, label`) {
		t.Errorf("network ls with an unknown filter: exit %d\n%s", code, out)
	}
	if status, msg := rawRequest(t, a.Socket, "GET", "/v1/networks?colour=red", nil); status != 400 || !strings.HasPrefix(msg, `"colour": not a parameter of /v1/networks`) {
		t.Errorf("GET /v1/networks?colour=red: %d %s", status, msg)
	}
	if status, msg := rawRequest(t, a.Socket, "POST", "/v1/networks", []byte(`{"name":"bad","labels":{"k":"a\nb"}}`)); status != 400 || !strings.HasPrefix(msg, `labels.k: the value "a\nb" has a control character`) {
		t.Errorf("a label value with a newline: %d %s", status, msg)
	}
}

// network prune removes the networks no container uses, those its
// filters select; it asks first, and without a terminal to ask on it
// needs -f.
func TestNetworkPrune(t *testing.T) {
	a := bridgeAgent(t)
	for _, args := range [][]string{
		{"network", "create", "--subnet", "10.51.0.0/24", "used"},
		{"network", "create", "--subnet", "10.51.1.0/24", "--label", "tmp", "spare1"},
		{"network", "create", "--subnet", "10.51.2.0/24", "spare2"},
		{"sandbox", "create", "--network", "used", "c1"},
	} {
		if out, code := sandnetCmd(t, append(args, "--socket", a.Socket)...); code != 0 {
			t.Fatalf("sandnet %s: exit %d\n%s", strings.Join(args, " "), code, out)
		}
	}
	names := func() string {
		ns, err := a.Client.Networks(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range ns {
			out = append(out, n.Name)
		}
		return strings.Join(out, " ")
	}
	if out, code := sandnetCmd(t, "network", "prune", "--socket", a.Socket); code != 1 || !strings.Contains(out, "not confirmed (give -f to prune without asking)") ||
		strings.Contains(out, "Continue?") || names() != "spare1 spare2 used" {
		t.Fatalf("network prune without -f and no terminal: exit %d, networks %q\n%s", code, names(), out)
	}
	if out, code := sandnetCmd(t, "network", "prune", "-f", "--filter", "label=tmp", "--socket", a.Socket); code != 0 || out != "spare1\n" || names() != "spare2 used" {
		t.Fatalf("network prune -f --filter label=tmp: exit %d, networks %q\n%s", code, names(), out)
	}
	if out, code := sandnetCmd(t, "network", "prune", "--force", "--format", "json", "--socket", a.Socket); code != 0 || strings.TrimSpace(out) != "[\n  \"spare2\"\n]" || names() != "used" {
		t.Fatalf("network prune --force --format json: exit %d, networks %q\n%s", code, names(), out)
	}
}

// --format takes a Go template, as docker's does, applied to each item of
// a listing; a template that fails on an item exits 1 saying why.
func TestFormatTemplate(t *testing.T) {
	a := bridgeAgent(t)
	for _, tc := range []struct {
		args []string
		code int
		out  string // the whole stdout and stderr, or a part of it when the code is not 0
	}{
		{[]string{"network", "create", "--subnet", "10.53.0.0/24", "--label", "team=web", "--format", "{{.Name}} {{.Scope}}", "tpl"}, 0, "tpl local\n"},
		{[]string{"network", "create", "--subnet", "10.53.1.0/24", "tpl2"}, 0, ""},
		{[]string{"network", "ls", "--format", "{{.Name}}: {{(index .IPv4 0).Subnet}} {{json .Labels}} {{upper .Driver}}"}, 0, "tpl: 10.53.0.0/24 {\"team\":\"web\"} BRIDGE\ntpl2: 10.53.1.0/24 null BRIDGE\n"},
		{[]string{"sandbox", "create", "--network", "tpl", "--format", "{{.ContainerID}} {{(index .Endpoints 0).Address}}", "c1"}, 0, "c1 10.53.0.2/24\n"},
		{[]string{"network", "ls", "--format", "{{.Nope}}"}, 1, "-format: template: format:1:2: executing \"format\" at <.Nope>: can't evaluate field Nope"},
		{[]string{"version", "--format", "{{.client}}"}, 1, "(its fields: .Client .Agent .Error)"},
		{[]string{"network", "ls", "--format", "{{.Name"}, 1, "-format: template: format:1: unclosed action"},
		{[]string{"network", "ls", "--format", "yaml"}, 1, `-format: "yaml" is not table, json or a Go template`},
		{[]string{"sandbox", "rm", "--format", "{{.}} removed", "c1"}, 0, "c1 removed\n"},
	} {
		out, code := sandnetCmd(t, append(tc.args, "--socket", a.Socket)...)
		if code != tc.code || tc.code == 0 && tc.out != "" && out != tc.out || tc.code != 0 && !strings.Contains(out, tc.out) {
			t.Errorf("sandnet %s: exit %d, %q; want exit %d and %q", strings.Join(tc.args, " "), code, out, tc.code, tc.out)
		}
	}
}
