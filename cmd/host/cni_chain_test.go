package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/sandnet/sandnet/sdk/polltest"
)

// referencePlugins is where Debian's containernetworking-plugins puts
// CNI's reference plugins.
const referencePlugins = "/usr/lib/cni"

// TestCNIChain: sandnet's plugin in a chain with CNI's reference
// plugins, as a runtime's conflist has them: loopback before it, whose
// result sandnet's passes on (its lo and addresses, then sandnet's
// interfaces with their indices after them); tuning changes the
// container's interface that sandnet made (MTU, MAC, a sysctl) and CHECK
// takes the chain's MAC over the agent's, as the spec's example of
// tuning changing a MAC has it; bandwidth
// shapes traffic on the host interface sandnet's result names (and adds
// its own ifb device to the result), CHECK passes every plugin of the
// chain (sandnet's given the chain's result, with the other plugins'
// interfaces), and DEL through the chain leaves nothing: no link, no
// qdisc, no endpoint.
func TestCNIChain(t *testing.T) {
	for _, p := range []string{"loopback", "tuning", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(referencePlugins, p)); err != nil {
			t.Fatalf("CNI's %s plugin is not installed (Debian containernetworking-plugins): %v", p, err)
		}
	}
	r := newCNIRig(t, "")
	r.network("chain", "10.79.0.0/24")
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "chain", "plugins": []any{
		map[string]any{"type": "loopback"},
		map[string]any{"type": "sandnet", "network": "chain", "socket": r.env.Socket},
		map[string]any{"type": "tuning", "mtu": 1400, "mac": "02:11:22:33:44:55", "sysctl": map[string]string{"net.ipv4.conf.eth0.log_martians": "1"}},
		map[string]any{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
	}})
	if err := os.WriteFile(filepath.Join(r.confDir, "chain.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"CNI_PATH=" + filepath.Dir(bins.CNI) + ":" + referencePlugins,
		`CAP_ARGS={"bandwidth":{"ingressRate":1000000,"ingressBurst":100000,"egressRate":1000000,"egressBurst":100000}}`,
	}
	netns := runtimeNamespace(t, "chained")
	res := r.add("chain", netns, env...)

	host := hostInterface(res)
	if host == "" || !slices.ContainsFunc(res.Interfaces, func(i *current.Interface) bool { return strings.HasPrefix(i.Name, "bwp") }) {
		t.Fatalf("the chain's result lacks sandnet's host interface or bandwidth's ifb device: %s", jsonOf(res.Interfaces))
	}
	if out, err := inNS(netns, "ip", "-o", "link", "show", "eth0"); err != nil || !strings.Contains(out, "mtu 1400") || !strings.Contains(out, "02:11:22:33:44:55") {
		t.Errorf("tuning's MTU and MAC on the container's eth0: %v %s", err, out)
	}
	if i := slices.IndexFunc(res.Interfaces, func(i *current.Interface) bool { return i.Name == "lo" }); i < 0 ||
		!slices.ContainsFunc(res.IPs, func(ip *current.IPConfig) bool {
			return ip.Address.IP.IsLoopback() && ip.Interface != nil && *ip.Interface == i
		}) {
		t.Errorf("the chain's result lost loopback's lo and its address: %s", jsonOf(res))
	}
	if eth0 := slices.IndexFunc(res.Interfaces, func(i *current.Interface) bool { return i.Name == "eth0" }); eth0 < 0 ||
		!slices.ContainsFunc(res.IPs, func(ip *current.IPConfig) bool {
			return strings.HasPrefix(ip.Address.IP.String(), "10.79.0.") && ip.Interface != nil && *ip.Interface == eth0
		}) {
		t.Errorf("sandnet's address does not name eth0 in the chain's result: %s", jsonOf(res))
	}
	if out, err := inNS(netns, "sysctl", "-n", "net.ipv4.conf.eth0.log_martians"); err != nil || out != "1" {
		t.Errorf("tuning's sysctl in the container: %v %q", err, out)
	}
	if out, err := hostCmd("tc", "qdisc", "show", "dev", host); err != nil || !strings.Contains(out, "tbf") {
		t.Errorf("bandwidth's shaping on the host interface %s: %v %s", host, err, out)
	}
	if out, err := r.cnitool(env, "check", "chain", netns); err != nil {
		t.Errorf("cnitool check through the chain: %v\n%s", err, out)
	}
	if out, err := r.cnitool(env, "del", "chain", netns); err != nil {
		t.Fatalf("cnitool del through the chain: %v\n%s", err, out)
	}
	waitOnlyLoopback(t, netns)
	polltest.UntilEmpty(t, 10*time.Second, "no veth or ifb device left on the host", func() string {
		out, _ := hostCmd("ip", "-o", "link", "show")
		var left []string
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && (strings.HasPrefix(f[1], "sn") && !strings.HasPrefix(f[1], "snbr-") || strings.HasPrefix(f[1], "bwp")) {
				left = append(left, f[1])
			}
		}
		return strings.Join(left, " ")
	})
	n, err := r.agent.Client.Network(t.Context(), "chain")
	if err != nil || len(n.Endpoints) != 0 {
		t.Fatalf("network chain after DEL: %+v, %v; want no endpoint", n, err)
	}
}

// hostInterface is the interface of a CNI result outside any sandbox that
// sandnet reports: the host end of the container's veth pair.
func hostInterface(res *current.Result) string {
	for _, i := range res.Interfaces {
		if i.Sandbox == "" && strings.HasPrefix(i.Name, "sn") {
			return i.Name
		}
	}
	return ""
}

// hostCmd runs a command in the test's host namespace.
func hostCmd(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
