package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
)

func sandboxCreateCmd(args []string) int {
	fs := newFlags("sandbox create", "CONTAINER")
	var req controller.SandboxCreate
	var dns, search, opts, hosts stringList
	var nets networkFlags
	nets.register(fs, true)
	fs.StringVar(&req.Hostname, "hostname", "", "the container's hostname, which the networks' DNS answers beside CONTAINER")
	fs.StringVar(&req.DomainName, "domainname", "", "the container's domain name")
	fs.BoolVar(&req.HostMode, "host", false, "use the host's network namespace")
	fs.BoolVar(&req.ExternalKey, "external-key", false, "the runtime makes the namespace and hands it over with 'sandbox set-key'")
	fs.BoolVar(&req.Ingress, "ingress", false, "make this the ingress sandbox (at most one)")
	fs.Var(&dns, "dns", "DNS server: the embedded resolver's upstream once the sandbox has an addressed network, else written to resolv.conf (repeatable)")
	fs.Var(&search, "dns-search", "DNS search domain (repeatable)")
	fs.Var(&opts, "dns-option", "resolv.conf option (repeatable)")
	fs.Var(&hosts, "add-host", "extra hosts line NAME:IP, or NAME:host-gateway for the host as the container reaches it, its default gateway (repeatable)")
	return clientCmd(fs, args, 1, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		req.ContainerID = pos[0]
		for _, d := range dns {
			a, err := netip.ParseAddr(d)
			if err != nil {
				return fmt.Errorf("-dns %q: not an IP address", d)
			}
			req.DNS = append(req.DNS, a)
		}
		req.DNSSearch, req.DNSOptions = search, opts
		for _, h := range hosts {
			name, ip, ok := strings.Cut(h, ":")
			if ok && name != "" && ip == "host-gateway" {
				req.ExtraHosts = append(req.ExtraHosts, sandbox.HostEntry{Name: name, HostGateway: true})
				continue
			}
			a, err := netip.ParseAddr(ip)
			if !ok || err != nil || name == "" {
				return fmt.Errorf("-add-host %q: want NAME:IP or NAME:host-gateway", h)
			}
			req.ExtraHosts = append(req.ExtraHosts, sandbox.HostEntry{Name: name, IP: a})
		}
		var err error
		if req.Networks, err = nets.sandboxNetworks(); err != nil {
			return err
		}
		sb, err := c.CreateSandbox(ctx, req)
		if err != nil {
			return err
		}
		cf.output(sb, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s\t%s\n", sb.ID, orDash(sb.Key))
			for i := range sb.Endpoints {
				printEndpoint(w, &sb.Endpoints[i])
			}
		})
		return nil
	})
}

func sandboxLsCmd(args []string) int {
	fs := newFlags("sandbox ls", "")
	all := fs.Bool("all", false, "also the stubs an agent restart left that no container has claimed yet (STATE stub)")
	fs.BoolVar(all, "a", false, "short for -all")
	var onNets stringList
	fs.Var(&onNets, "filter", "network=NAME-OR-ID: only the sandboxes on that network (repeatable: on one of them)")
	quiet := fs.Bool("q", false, "print the container IDs only")
	return clientCmd(fs, args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		q, err := filterQuery(onNets, []string{"network"}, false)
		if err != nil {
			return err
		}
		want := q["network"]
		for i, ref := range want {
			// A name, an ID or its first 12 characters (as `network ls`
			// prints it), resolved as every command resolves a network.
			if n, err := c.Network(ctx, ref); err == nil {
				want[i] = n.ID
			}
		}
		list := c.Sandboxes
		if *all {
			list = c.AllSandboxes
		}
		sbs, err := list(ctx)
		if err != nil {
			return err
		}
		names := networkNames(ctx, c)
		sbs = slices.DeleteFunc(sbs, func(sb *controller.Sandbox) bool {
			return len(want) > 0 && !slices.ContainsFunc(sb.Endpoints, func(ep controller.Endpoint) bool {
				return slices.Contains(want, ep.NetworkID) || slices.Contains(want, names[ep.NetworkID])
			})
		})
		if *quiet && cf.tableOut() {
			for _, sb := range sbs {
				fmt.Println(sb.ContainerID)
			}
			return nil
		}
		cf.output(sbs, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "SANDBOX ID\tCONTAINER\tNETWORKS\tKEY\tSTATE")
			for _, sb := range sbs {
				var nets []string
				for _, ep := range sb.Endpoints {
					nets = append(nets, cmp.Or(names[ep.NetworkID], short(ep.NetworkID)))
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", sb.ID[:12], sb.ContainerID, orDash(strings.Join(nets, ",")), orDash(sb.Key), sandboxState(sb))
			}
		})
		return nil
	})
}

// sandboxState is sandbox ls's STATE: stub (not claimed since a
// restart), deleting (a delete failed part-way), or ready.
func sandboxState(sb *controller.Sandbox) string {
	switch {
	case sb.Stub:
		return "stub"
	case sb.InDelete:
		return "deleting"
	}
	return "ready"
}

func sandboxInspectCmd(args []string) int {
	return clientCmd(newFlags("sandbox inspect", "CONTAINER"), args, 1, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		sb, err := c.Sandbox(ctx, pos[0])
		if err != nil {
			return err
		}
		cf.output(sb, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ID:\t%s\nContainer:\t%s\nKey:\t%s\nResolv.conf:\t%s\nHosts:\t%s\n", sb.ID, sb.ContainerID, orDash(sb.Key), sb.ResolvConf, sb.Hosts)
			if sb.Front != "" {
				fmt.Fprintf(w, "Front:\t%s\n", sb.Front)
			}
			if sb.RuntimeNetns != "" {
				fmt.Fprintf(w, "Runtime netns:\t%s\n", sb.RuntimeNetns)
			}
			if sb.Options.Hostname != "" {
				fmt.Fprintf(w, "Hostname:\t%s\n", sb.Options.Hostname)
			}
			if len(sb.Endpoints) == 0 {
				fmt.Fprintln(w, "Networks:\tnone")
				return
			}
			names := networkNames(ctx, c)
			fmt.Fprintln(w, "NETWORK\tINTERFACE\tMAC\tADDRESS\tADDRESS V6\tGATEWAY\tALIASES\tPORTS")
			for _, ep := range sb.Endpoints {
				name := names[ep.NetworkID]
				if name == "" {
					name = ep.NetworkID[:12]
				}
				ports := make([]string, len(ep.Ports))
				for i, p := range ep.Ports {
					ports[i] = portString(p)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, ep.IfName, ep.MAC, show(ep.Address), show(ep.AddressV6), gateways(ep.Gateway, ep.GatewayV6),
					orDash(strings.Join(ep.Aliases, ", ")), orDash(strings.Join(ports, ", ")))
			}
		})
		return nil
	})
}

// gateways is the GATEWAY column: an endpoint's IPv4 and IPv6 gateways,
// whichever it has, or "-".
func gateways(v4, v6 netip.Addr) string {
	var gws []string
	for _, gw := range []netip.Addr{v4, v6} {
		if gw.IsValid() {
			gws = append(gws, gw.String())
		}
	}
	return orDash(strings.Join(gws, ", "))
}

// networkNames maps the agent's networks' IDs to their names; a listing
// that fails leaves the IDs to be shown.
func networkNames(ctx context.Context, c *api.Client) map[string]string {
	out := map[string]string{}
	nets, _ := c.Networks(ctx)
	for _, n := range nets {
		out[n.ID] = n.Name
	}
	return out
}

// orDash is s, or "-" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// show prints a zero address or prefix as "-".
func show(v interface {
	IsValid() bool
	String() string
}) string {
	if !v.IsValid() {
		return "-"
	}
	return v.String()
}

func sandboxRmCmd(args []string) int {
	return clientCmd(newFlags("sandbox rm", "CONTAINER..."), args, -1, func(ctx context.Context, c *api.Client, out *clientFlags, pos []string) error {
		return removeEach(out, pos, func(ref string) error { return c.DeleteSandbox(ctx, ref) })
	})
}

func sandboxSetKeyCmd(args []string) int {
	return clientCmd(newFlags("sandbox set-key", "CONTAINER PATH"), args, 2, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		// The agent takes the path from its own working directory.
		path, err := filepath.Abs(pos[1])
		if err != nil {
			return err
		}
		sb, err := c.SetKey(ctx, pos[0], path)
		if err != nil {
			return err
		}
		cf.output(sb, func(w *tabwriter.Writer) { fmt.Fprintf(w, "%s\t%s\n", sb.ID, orDash(sb.Key)) })
		return nil
	})
}

func sandboxRenameCmd(args []string) int {
	return clientCmd(newFlags("sandbox rename", "CONTAINER NAME"), args, 2, func(ctx context.Context, c *api.Client, _ *clientFlags, pos []string) error {
		return c.Rename(ctx, pos[0], pos[1])
	})
}

// networkFlags are the -network flags of a create, which connects the
// sandbox to those networks in the same request, and the -ip, -ip6,
// -mac, -alias, -publish and -driver-opt that apply to the first, as
// with `docker run`.
type networkFlags struct {
	networks, aliases, publish, driverOpts stringList
	first                                  controller.Connect
}

// register adds the flags to fs; -ip6 only with ip6.
func (n *networkFlags) register(fs *flag.FlagSet, ip6 bool) {
	fs.Var(&n.networks, "network", "connect to this network before answering, in the same request (repeatable; if one fails, nothing is created)")
	fs.StringVar(&n.first.IP, "ip", "", "static IPv4 address on the first -network")
	if ip6 {
		fs.StringVar(&n.first.IPv6, "ip6", "", "static IPv6 address on the first -network")
	}
	fs.Var(&n.aliases, "alias", "network-scoped alias on the first -network (repeatable)")
	fs.StringVar(&n.first.MAC, "mac", "", "the MAC address of the interface on the first -network")
	fs.StringVar(&n.first.MAC, "mac-address", "", "the same as -mac, as docker names it")
	fs.Var(&n.publish, "publish", "publish a port or a range on the first -network: [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp] (repeatable)")
	fs.Var(&n.publish, "p", "short for -publish, as docker's")
	fs.Var(&n.driverOpts, "driver-opt", "key=value: an option for the first -network's driver about this endpoint (repeatable)")
}

// sandboxNetworks returns the networks of a SandboxCreate, the first with
// its options; options without a network are an error.
func (n *networkFlags) sandboxNetworks() ([]controller.SandboxNetwork, error) {
	first := n.first
	first.Aliases, first.Publish = n.aliases, n.publish
	var err error
	if first.DriverOpts, err = keyValues("-driver-opt", n.driverOpts, true); err != nil {
		return nil, err
	}
	if len(n.networks) == 0 && (first.IP != "" || first.IPv6 != "" || first.MAC != "" || len(first.Aliases) > 0 || len(first.Publish) > 0 || len(first.DriverOpts) > 0) {
		return nil, fmt.Errorf("-ip, -ip6, -mac, -alias, -publish and -driver-opt apply to the first -network; none given")
	}
	var out []controller.SandboxNetwork
	for i, name := range n.networks {
		sn := controller.SandboxNetwork{Network: name}
		if i == 0 {
			sn.Connect = first
		}
		out = append(out, sn)
	}
	return out, nil
}
