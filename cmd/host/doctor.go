package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/config"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/plugin"
	"github.com/sandnet/sandnet/sdk"
)

// check is one line of `sandnet doctor`.
type check struct {
	status string // ok, warn, FAIL, skip
	what   string
	detail string
}

func doctorCmd(args []string) int {
	fs := newFlags("doctor", "")
	file := fs.String("config", "/etc/sandnet/config.hcl", "agent config file (HCL)")
	if pos, err := parse(fs, args); err != nil {
		return usageFail(err)
	} else if len(pos) != 0 {
		return wrongArgs(fs, pos)
	}
	var checks []check
	add := func(status, what, format string, a ...any) {
		checks = append(checks, check{status, what, fmt.Sprintf(format, a...)})
	}
	cfg, diags := config.Load(*file)
	checks = append(checks, configCheck(*file, diags))
	kernelChecks(add)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err != nil {
		add("warn", "net.ipv4.ip_forward", "%v", err)
	} else if strings.TrimSpace(string(b)) != "1" {
		add("warn", "net.ipv4.ip_forward", "is 0: containers on non-internal networks cannot reach out until it is 1 (the bridge driver sets it when it creates such a network unless enable_ip_forwarding = false; `sysctl -w net.ipv4.ip_forward=1`)")
	} else {
		add("ok", "net.ipv4.ip_forward", "1")
	}
	if !diags.HasErrors() {
		for _, b := range cfg.Plugins() {
			what := fmt.Sprintf("plugin %s", b)
			path := b.Binary(cfg.PluginDir)
			st, err := os.Stat(path)
			switch {
			case err != nil:
				add("FAIL", what, "%s: %v; install it (make install) or fix plugin_dir or the block's command", path, errors.Unwrap(err))
			case st.IsDir() || st.Mode().Perm()&0o111 == 0:
				add("FAIL", what, "%s is not an executable file", path)
			case b.Checksum != "":
				if err := plugin.VerifyChecksum(path, b.Checksum); err != nil {
					add("FAIL", what, "%v", err)
				} else {
					add("ok", what, "%s, sha256 as pinned", path)
				}
			default:
				add("ok", what, "%s", path)
			}
		}
		if c, ok := advertiseCheck(cfg.AdvertiseAddr); ok {
			checks = append(checks, c)
		}
		checks = append(checks, storeCheck(cfg))
		checks = append(checks, socketDirCheck(cfg.API.Socket))
		checks = append(checks, networksCheck(cfg))
	}
	failed := false
	for _, c := range checks {
		fmt.Printf("%-4s  %s: %s\n", c.status, c.what, c.detail)
		failed = failed || c.status == "FAIL"
	}
	if failed {
		return 1
	}
	return 0
}

// configCheck is doctor's line for the config file: a file that cannot
// be read says why (and how to name another), one with errors shows the
// first, as `config validate` prints it, and how many there are.
func configCheck(file string, diags hcl.Diagnostics) check {
	if _, err := os.Stat(file); err != nil {
		return check{"FAIL", "config", fmt.Sprintf("%s: %v; name the agent's config file with --config FILE", file, errors.Unwrap(err))}
	}
	errs := slices.DeleteFunc(slices.Clone(diags), func(d *hcl.Diagnostic) bool { return d.Severity != hcl.DiagError })
	if len(errs) == 0 {
		return check{"ok", "config", file}
	}
	var first strings.Builder
	_ = config.FormatDiagnostics(&first, nil, errs[:1])
	more := ""
	if len(errs) > 1 {
		more = fmt.Sprintf(" (and %d more)", len(errs)-1)
	}
	return check{"FAIL", "config", fmt.Sprintf("%s%s; run `sandnet config validate %s`", strings.TrimSpace(first.String()), more, file)}
}

// kernelChecks tries what the agent needs from the kernel in a network
// namespace of its own, made for the check and gone after it: a veth
// pair, a bridge, a VXLAN device and an nftables table.
func kernelChecks(add func(status, what, format string, a ...any)) {
	if os.Geteuid() != 0 {
		for _, f := range []string{"network namespaces", "veth", "bridge", "vxlan", "nf_tables"} {
			add("skip", "kernel: "+f, "needs root to try")
		}
		return
	}
	type result struct {
		what string
		err  error
	}
	var res []result
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends inside the throwaway namespace,
		// and the runtime discards it when this goroutine exits.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			res = append(res, result{"network namespaces", err})
			return
		}
		res = append(res, result{"network namespaces", nil})
		h, err := netlink.NewHandle()
		if err != nil {
			res = append(res, result{"netlink", err})
			return
		}
		defer h.Close()
		res = append(res,
			result{"veth", h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "sndoctor0"}, PeerName: "sndoctor1"})},
			result{"bridge", h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "sndoctorbr"}})},
			result{"vxlan", h.LinkAdd(&netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "sndoctorvx"}, VxlanId: 42, Port: 4789})})
		nft, err := nftables.New()
		if err == nil {
			nft.AddTable(&nftables.Table{Name: "sandnet_doctor", Family: nftables.TableFamilyINet})
			err = nft.Flush()
		}
		res = append(res, result{"nf_tables", err})
	}()
	<-done
	for _, r := range res {
		if r.err != nil {
			add("FAIL", "kernel: "+r.what, "%v (load its module, or use a kernel built with it)", r.err)
		} else {
			add("ok", "kernel: "+r.what, "works")
		}
	}
}

// storeCheck asks a running agent for its store's health, or, with no
// agent running, starts the store plugin and lists sandnet's keys.
func storeCheck(cfg *config.Config) check {
	what := fmt.Sprintf("store %q", cfg.Store.Name)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := api.NewClient(cfg.API.Socket)
	if h, err := client.Health(ctx); err == nil {
		for _, p := range h.Plugins {
			if p.Kind != sdk.KindStore {
				continue
			}
			if !p.Running || !p.Healthy {
				return check{"FAIL", what, fmt.Sprintf("the running agent reports it down (%s)", p.LastError)}
			}
			// The plugin answers; its backend (Consul, etcd) may not: a
			// listing through the agent reads the store.
			if _, err := client.Networks(ctx); err != nil {
				return check{"FAIL", what, fmt.Sprintf("the running agent at %s cannot read it: %v", cfg.API.Socket, err)}
			}
			return check{"ok", what, "reachable through the running agent at " + cfg.API.Socket}
		}
	}
	m := plugin.NewManager(hclog.NewNullLogger(), plugin.Options{})
	defer m.Shutdown()
	hostID := agent.ReadHostID(cfg.DataDir)
	// A check makes nothing: the bolt store would create a file it is
	// pointed at, so a missing one is reported, not opened.
	if path := absentStoreFile(ctx, m, cfg); path != "" {
		left, _ := controller.Unrecorded(ctx, nil, cfg.Sandbox.NetnsDir, hostID)
		if len(left) == 0 {
			return check{"ok", what, fmt.Sprintf("no store file at %s yet: the agent's first start creates it", path)}
		}
		return storeHolds(cfg, what, fmt.Sprintf("no store file at %s (a mistyped path?), so no sandbox of this host for the", path), left, hostID)
	}
	p, err := m.Start(ctx, agent.PluginSpec(cfg, cfg.Store))
	if err != nil {
		return check{"FAIL", what, err.Error()}
	}
	s, err := p.Store()
	if err == nil {
		_, err = s.List(ctx, "sandnet/v1/")
	}
	var left []string
	if err == nil {
		left, err = controller.Unrecorded(ctx, s, cfg.Sandbox.NetnsDir, hostID)
	}
	if err != nil {
		return check{"FAIL", what, "not reachable: " + err.Error()}
	}
	if len(left) == 0 {
		return check{"ok", what, "reachable"}
	}
	return storeHolds(cfg, what, "reachable, but it holds no sandbox of this host for", left, hostID)
}

// absentStoreFile returns the path of the bolt store's file when the
// config names one (absolute) that does not exist; "" otherwise.
func absentStoreFile(ctx context.Context, m *plugin.Manager, cfg *config.Config) string {
	info, err := m.Inspect(ctx, agent.PluginSpec(cfg, cfg.Store))
	if err != nil || info.GetName() != config.DefaultStore {
		return ""
	}
	js, diags := config.DecodePluginConfig(cfg.Store, info.GetConfigSchema())
	var c struct {
		Path string `json:"path"`
	}
	if diags.HasErrors() || json.Unmarshal(js, &c) != nil || !filepath.IsAbs(c.Path) {
		return ""
	}
	if _, err := os.Stat(c.Path); errors.Is(err, fs.ErrNotExist) {
		return c.Path
	}
	return ""
}

// storeHolds is the warning of a store that holds no sandbox of this host
// for the namespaces left in its netns_dir (why says how): the next start
// removes them.
func storeHolds(cfg *config.Config, what, why string, left []string, hostID string) check {
	held := fmt.Sprintf("%s %d namespace(s) in %s (%s)", why, len(left), cfg.Sandbox.NetnsDir, filepath.Base(left[0])[:12]+"…")
	removes := "The agent's next start removes them, and the bridges and ports of networks the store does not hold for this host"
	if hostID == "" {
		return check{"warn", what, fmt.Sprintf("%s: data_dir %s has no host-id, so the next start makes this host a new one, and the store's records are another host's. %s; "+
			"to keep them, put back the host-id file of the data_dir they were made with", held, cfg.DataDir, removes)}
	}
	return check{"warn", what, fmt.Sprintf("%s: made with another store? %s; to keep them, start on the store they were made with, stop, and `sandnet store migrate` to this one", held, removes)}
}

// advertiseCheck resolves advertise_addr as the agent's start does (an
// interface name that is not there stops the start) and checks that this
// host has the address (one it does not have carries no overlay traffic);
// false when the config sets none.
func advertiseCheck(s string) (check, bool) {
	const what = "advertise_addr"
	if s == "" {
		return check{}, false
	}
	a, err := agent.ResolveAdvertiseAddr(s)
	if err != nil {
		return check{"FAIL", what, strings.TrimPrefix(err.Error(), "advertise_addr: ") + ": the agent would not start"}, true
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return check{"warn", what, fmt.Sprintf("%s: listing this host's addresses: %v", a, err)}, true
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return check{"ok", what, fmt.Sprintf("%s, on %s", a, linkName(x.LinkIndex))}, true
		}
	}
	return check{"warn", what, fmt.Sprintf("%s is on no interface of this host: other hosts would send its overlay traffic nowhere; set it to this host's address on the network the hosts share", a)}, true
}

// linkName is the name of the link with index i, or its index.
func linkName(i int) string {
	if l, err := netlink.LinkByIndex(i); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("link %d", i)
}

// socketDirCheck checks that the agent can make its socket: the socket's
// directory, or the nearest existing parent it would be made in, is
// writable.
func socketDirCheck(socket string) check {
	what := "socket directory"
	dir := filepath.Dir(socket)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return check{"FAIL", what, fmt.Sprintf("%s (for %s) is not writable: %v", dir, socket, err)}
	}
	return check{"ok", what, fmt.Sprintf("%s writable (for %s)", dir, socket)}
}

// networksCheck asks a running agent for its networks and finds those
// whose driver the config does not load (its block removed and the agent
// restarted): what is on them can be neither used nor removed until the
// block is back.
func networksCheck(cfg *config.Config) check {
	what := "networks' drivers"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nets, err := api.NewClient(cfg.API.Socket).Networks(ctx)
	if noAgent := (*api.NoAgentError)(nil); errors.As(err, &noAgent) {
		return check{"skip", what, fmt.Sprintf("no agent answers at %s to list its networks", cfg.API.Socket)}
	} else if err != nil {
		return check{"skip", what, fmt.Sprintf("the agent at %s could not list its networks: %v", cfg.API.Socket, err)}
	}
	loaded := map[string]bool{}
	for _, b := range cfg.Drivers {
		loaded[b.Name] = true
	}
	var orphans []string
	for _, n := range nets {
		if !loaded[n.Driver] {
			orphans = append(orphans, fmt.Sprintf("%s (driver %q)", n.Name, n.Driver))
		}
	}
	if len(orphans) > 0 {
		return check{"warn", what, fmt.Sprintf("%s: this config loads no such driver, so the containers on them can be neither connected nor removed; add the driver's block back and run `sandnet reload`", strings.Join(orphans, ", "))}
	}
	return check{"ok", what, fmt.Sprintf("the running agent's %d network(s) are each on a driver this config loads", len(nets))}
}
