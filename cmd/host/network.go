package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func networkCreateCmd(args []string) int {
	fs := newFlags("network create", "NAME")
	var req controller.NetworkCreate
	var opts, labels, dns, aux, subnets, gateways, ranges stringList
	fs.StringVar(&req.Driver, "driver", controller.DefaultDriver, "network driver")
	fs.StringVar(&req.Driver, "d", controller.DefaultDriver, "short for -driver")
	fs.Var(&dns, "dns", "DNS server the containers' resolvers forward to (repeatable)")
	fs.BoolVar(&req.DNSForwardSingleLabel, "dns-forward-single-label", false, "forward A/AAAA questions for single-label names that are not containers' (default: NXDOMAIN at once)")
	fs.StringVar(&req.Scope, "scope", "", "local, or global (needs a store shared by hosts); default: the driver's (global for overlay, else local)")
	fs.Var(&subnets, "subnet", "subnet in CIDR (default: the first free default pool); given twice, as docker takes it, one IPv4 and one IPv6 (which is --subnet-v6)")
	fs.Var(&gateways, "gateway", "gateway (default: the subnet's first address); an IPv6 one is --gateway-v6")
	fs.Var(&ranges, "ip-range", "allocate container addresses from this sub-range of the subnet; an IPv6 one is --ip-range-v6")
	fs.StringVar(&req.IPRangeV6, "ip-range-v6", "", "allocate container IPv6 addresses from this sub-range of the IPv6 subnet")
	fs.Var(&aux, "aux-address", "NAME=IP: an address of the subnet no container gets, such as a router's (repeatable)")
	fs.StringVar(&req.SubnetV6, "subnet-v6", "", "IPv6 subnet in CIDR (implies --ipv6)")
	fs.StringVar(&req.GatewayV6, "gateway-v6", "", "IPv6 gateway")
	fs.BoolVar(&req.EnableIPv6, "ipv6", false, "give containers IPv6 addresses too")
	fs.Var(optionalBool{&req.EnableIPv4}, "ipv4", "give containers IPv4 addresses (default true); --ipv4=false with --ipv6 makes an IPv6-only network")
	fs.BoolVar(&req.Internal, "internal", false, "no way out: no gateway route, no NAT")
	fs.Var(&opts, "o", "driver option key=value (repeatable)")
	fs.Var(&opts, "opt", "the same as -o, as docker names it")
	fs.Var(&labels, "label", "label key=value, or key for an empty value: metadata network ls --filter selects by (repeatable)")
	return clientCmd(fs, args, 1, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		req.Name, req.DNS = pos[0], dns
		if err := byFamily(&req, subnets, gateways, ranges); err != nil {
			return err
		}
		if err := ipv6Refused(fs, &req); err != nil {
			return err
		}
		var err error
		if req.Options, err = keyValues("-o", opts, true); err != nil {
			return err
		}
		if req.Labels, err = keyValues("-label", labels, false); err != nil {
			return err
		}
		if req.AuxAddresses, err = keyValues("-aux-address", aux, true); err != nil {
			return err
		}
		n, err := c.CreateNetwork(ctx, req)
		if err != nil {
			return err
		}
		cf.output(n, func(w *tabwriter.Writer) { fmt.Fprintln(w, n.ID) })
		return nil
	})
}

// optionalBool is a bool flag whose absence leaves *p nil.
type optionalBool struct{ p **bool }

func (o optionalBool) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.FormatBool(**o.p)
}

func (o optionalBool) Set(v string) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*o.p = &b
	return nil
}

func (optionalBool) IsBoolFlag() bool { return true }

// byFamily sets req's subnets, gateways and ranges from the -subnet,
// -gateway and -ip-range flags, each of its family, as docker takes an
// IPv6 subnet with a second -subnet: one of each family, an IPv6 one as
// -subnet-v6 would (-gateway-v6, -ip-range-v6); text that is no address
// goes as the IPv4 one, for the agent to say what is wrong with it.
func byFamily(req *controller.NetworkCreate, subnets, gateways, ranges []string) error {
	set := func(flag, v string, v4, v6 *string, is6 bool) error {
		dst, other := v4, "-"+flag
		if is6 {
			dst, other = v6, "-"+flag+"-v6"
		}
		if *dst != "" {
			return fmt.Errorf("-%s %s: one IPv4 and one IPv6 %s at most; %s is %s already", flag, v, flag, other, *dst)
		}
		*dst = v
		return nil
	}
	for _, v := range subnets {
		p, err := netip.ParsePrefix(v)
		if err := set("subnet", v, &req.Subnet, &req.SubnetV6, err == nil && p.Addr().Is6() && !p.Addr().Is4In6()); err != nil {
			return err
		}
	}
	for _, v := range ranges {
		p, err := netip.ParsePrefix(v)
		if err := set("ip-range", v, &req.IPRange, &req.IPRangeV6, err == nil && p.Addr().Is6() && !p.Addr().Is4In6()); err != nil {
			return err
		}
	}
	for _, v := range gateways {
		a, err := netip.ParseAddr(v)
		if err := set("gateway", v, &req.Gateway, &req.GatewayV6, err == nil && a.Is6() && !a.Is4In6()); err != nil {
			return err
		}
	}
	return nil
}

// ipv6Refused refuses an explicit --ipv6=false beside IPv6 settings, which
// would otherwise turn IPv6 on against what was said (as Docker refuses an
// IPv6 subnet with IPv6 disabled).
func ipv6Refused(fs *flag.FlagSet, req *controller.NetworkCreate) error {
	off := false
	fs.Visit(func(f *flag.Flag) { off = off || f.Name == "ipv6" && !req.EnableIPv6 })
	if !off {
		return nil
	}
	for _, s := range []struct{ flag, v string }{{"subnet", req.SubnetV6}, {"gateway", req.GatewayV6}, {"ip-range", req.IPRangeV6}} {
		if s.v != "" {
			return fmt.Errorf("--ipv6=false, but --%s %s is IPv6: drop one", s.flag, s.v)
		}
	}
	return nil
}

// networkFilterKeys are the keys network ls --filter takes, the query
// parameters of GET /v1/networks.
var networkFilterKeys = []string{"name", "id", "driver", "scope", "label"}

// keyValues reads key=value flags into a map (nil for none); without
// needValue, a bare key has an empty value, as Docker's --label. A key
// given twice with two values is an error rather than the last one
// silently winning.
func keyValues(flag string, list []string, needValue bool) (map[string]string, error) {
	var out map[string]string
	for _, o := range list {
		k, v, ok := strings.Cut(o, "=")
		if k == "" || needValue && !ok {
			return nil, fmt.Errorf("%s %q: want key=value", flag, o)
		}
		if out == nil {
			out = map[string]string{}
		}
		if was, dup := out[k]; dup && was != v {
			return nil, fmt.Errorf("%s %s: given twice, as %q and %q", flag, k, was, v)
		}
		out[k] = v
	}
	return out, nil
}

func networkUpdateCmd(args []string) int {
	fs := newFlags("network update", "NETWORK")
	var add, drop stringList
	fs.Var(&add, "dns-add", "add a DNS server (repeatable)")
	fs.Var(&drop, "dns-drop", "drop a DNS server (repeatable)")
	return clientCmd(fs, args, 1, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		n, err := c.UpdateNetworkDNS(ctx, pos[0], controller.NetworkDNSUpdate{Add: add, Drop: drop})
		if err != nil {
			return err
		}
		cf.output(n, func(w *tabwriter.Writer) { fmt.Fprintf(w, "%s\t%s\n", n.Name, dnsList(n.DNS)) })
		return nil
	})
}

// dnsList shows a network's DNS servers, "-" for none.
func dnsList(servers []netip.Addr) string {
	if len(servers) == 0 {
		return "-"
	}
	s := make([]string, len(servers))
	for i, a := range servers {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func networkLsCmd(args []string) int {
	fs := newFlags("network ls", "")
	var filters stringList
	fs.Var(&filters, "filter", "only networks matching key=value, key one of name (a part of it), id (a prefix), driver, scope, label (key or key=value) (repeatable: one value of each key given must match)")
	fs.Var(&filters, "f", "short for -filter")
	quiet := fs.Bool("q", false, "print the IDs only")
	noTrunc := fs.Bool("no-trunc", false, "print whole IDs (else the first 12 characters, which every command takes)")
	return clientCmd(fs, args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		id := func(n *controller.Network) string {
			if *noTrunc {
				return n.ID
			}
			return n.ID[:12]
		}
		q, err := filterQuery(filters, networkFilterKeys, true)
		if err != nil {
			return err
		}
		ns, err := c.NetworksWhere(ctx, q)
		if err != nil {
			return err
		}
		if *quiet && cf.tableOut() {
			for _, n := range ns {
				fmt.Println(id(n))
			}
			return nil
		}
		cf.output(ns, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "NETWORK ID\tNAME\tDRIVER\tSCOPE\tSUBNET")
			for _, n := range ns {
				var subnets []string
				for _, pools := range [][]controller.IPAMConfig{n.IPv4, n.IPv6} {
					for _, p := range pools {
						subnets = append(subnets, p.Subnet.String())
					}
				}
				subnet := "-"
				if len(subnets) > 0 {
					subnet = strings.Join(subnets, ", ")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", id(n), n.Name, n.Driver, n.Scope, subnet)
			}
		})
		return nil
	})
}

func networkInspectCmd(args []string) int {
	return clientCmd(newFlags("network inspect", "NETWORK..."), args, -1, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		// Every network found is shown, then what was not, as Docker does.
		var out []*controller.Network
		var missing []error
		for _, ref := range pos {
			n, err := c.Network(ctx, ref)
			switch {
			case errors.Is(err, sdk.ErrNotFound):
				missing = append(missing, err)
			case err != nil:
				return err
			default:
				out = append(out, n)
			}
		}
		if len(out) == 0 {
			return errors.Join(missing...)
		}
		defer func() { // after the networks found
			for _, err := range missing {
				printErr(err)
				cf.failed = true // exit 1
			}
		}()
		cf.output(out, func(w *tabwriter.Writer) {
			for _, n := range out {
				fmt.Fprintf(w, "Name:\t%s\nID:\t%s\nDriver:\t%s\nScope:\t%s\nInternal:\t%v\nDNS:\t%s\nDNS forwards single labels:\t%v\n", n.Name, n.ID, n.Driver, n.Scope, n.Internal, dnsList(n.DNS), n.DNSForwardSingleLabel)
				fmt.Fprintf(w, "IPv4:\t%v\nIPv6:\t%v\n", len(n.IPv4) > 0, len(n.IPv6) > 0)
				fmt.Fprintf(w, "Created:\t%s\n", n.Created.Format(time.RFC3339))
				for _, k := range slices.Sorted(maps.Keys(n.Options)) {
					fmt.Fprintf(w, "Option:\t%s=%s\n", k, n.Options[k])
				}
				for _, k := range slices.Sorted(maps.Keys(n.Labels)) {
					fmt.Fprintf(w, "Label:\t%s=%s\n", k, n.Labels[k])
				}
				for _, p := range append(append([]controller.IPAMConfig{}, n.IPv4...), n.IPv6...) {
					rng := ""
					if p.Range.IsValid() {
						rng = "\trange " + p.Range.String()
					}
					fmt.Fprintf(w, "Subnet:\t%s\tgateway %s%s\n", p.Subnet, show(p.Gateway), rng)
					for _, name := range slices.Sorted(maps.Keys(p.AuxAddresses)) {
						fmt.Fprintf(w, "Aux address:\t%s=%s\n", name, p.AuxAddresses[name])
					}
				}
				for _, ep := range n.Endpoints {
					addrs := show(ep.Address)
					if ep.AddressV6.IsValid() {
						addrs += " " + ep.AddressV6.String()
					}
					host := ""
					if ep.HostID != "" && ep.VTEP != "" {
						host = "\thost " + ep.HostID
					}
					fmt.Fprintf(w, "Endpoint:\t%s\t%s\t%s%s\n", ep.Name, addrs, ep.MAC, host)
				}
			}
		})
		return nil
	})
}

func networkRmCmd(args []string) int {
	return clientCmd(newFlags("network rm", "NETWORK..."), args, -1, func(ctx context.Context, c *api.Client, out *clientFlags, pos []string) error {
		return removeEach(out, pos, func(ref string) error { return c.DeleteNetwork(ctx, ref) })
	})
}

func networkPruneCmd(args []string) int {
	fs := newFlags("network prune", "")
	var filters stringList
	fs.Var(&filters, "filter", "only networks matching key=value, as network ls --filter (repeatable)")
	force := fs.Bool("f", false, "do not ask for confirmation")
	fs.BoolVar(force, "force", false, "do not ask for confirmation")
	return clientCmd(fs, args, 0, func(ctx context.Context, c *api.Client, out *clientFlags, _ []string) error {
		q, err := filterQuery(filters, networkFilterKeys, true)
		if err != nil {
			return err
		}
		if !*force && !confirm("This removes every sandnet network no container uses. Continue?") {
			return errors.New("nothing removed: not confirmed (give -f to prune without asking)")
		}
		ns, err := c.NetworksWhere(ctx, q)
		if err != nil {
			return err
		}
		removed := []string{}
		var failed error
		for _, n := range ns {
			// A network in use refuses its delete: it is kept.
			if err := c.DeleteNetwork(ctx, n.ID); errors.Is(err, sdk.ErrConflict) || errors.Is(err, sdk.ErrNotFound) {
				continue
			} else if err != nil {
				printErr(err)
				failed = errReported
				continue
			}
			removed = append(removed, n.Name)
			if out.tableOut() {
				fmt.Println(n.Name)
			}
		}
		if !out.tableOut() {
			out.output(removed, nil)
		}
		return failed
	})
}

// confirm asks question on the terminal and reports whether the answer
// was yes; with no terminal on stdin (a pipe, a file, /dev/null) it is
// no.
func confirm(question string) bool {
	if _, err := unix.IoctlGetTermios(int(os.Stdin.Fd()), unix.TCGETS); err != nil {
		return false
	}
	fmt.Fprintf(os.Stderr, "%s [y/N] ", question)
	var answer string
	_, _ = fmt.Scanln(&answer)
	return strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes")
}

func connectCmd(args []string) int {
	fs := newFlags("connect", "NETWORK CONTAINER")
	var req controller.Connect
	var aliases, publish, driverOpts stringList
	fs.Var(&aliases, "alias", "network-scoped alias (repeatable)")
	fs.Var(&driverOpts, "driver-opt", "key=value: an option for the network's driver about this endpoint (repeatable)")
	fs.Var(&publish, "publish", "publish a port or a range: [HOSTIP:][HOSTPORT[-END]:]PORT[-END][/tcp|udp] (repeatable)")
	fs.Var(&publish, "p", "short for -publish, as docker's")
	fs.StringVar(&req.IP, "ip", "", "static IPv4 address")
	fs.StringVar(&req.IPv6, "ip6", "", "static IPv6 address")
	fs.StringVar(&req.Name, "name", "", "endpoint name: what the networks' DNS answers and PTR gives (default: the container ID; a --hostname is answered beside it)")
	fs.IntVar(&req.Priority, "priority", 0, "endpoint priority: the highest one with a gateway gives the default route")
	fs.StringVar(&req.MAC, "mac", "", "the interface's MAC address (default: the driver's, derived from the IPv4 address)")
	fs.StringVar(&req.MAC, "mac-address", "", "the same as -mac, as docker names it")
	fs.StringVar(&req.Interface, "interface", "", "the interface's name in the container (default: the next ethN)")
	return clientCmd(fs, args, 2, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		req.Container, req.Aliases, req.Publish = pos[1], aliases, publish
		var err error
		if req.DriverOpts, err = keyValues("-driver-opt", driverOpts, true); err != nil {
			return err
		}
		ep, err := c.Connect(ctx, pos[0], req)
		if err != nil {
			return err
		}
		cf.output(ep, func(w *tabwriter.Writer) { printEndpoint(w, ep) })
		return nil
	})
}

// printEndpoint prints an endpoint as connect answers it: its ID,
// interface and address, then its published ports one per line.
func printEndpoint(w *tabwriter.Writer, ep *controller.Endpoint) {
	fmt.Fprintf(w, "%s\t%s\t%s", ep.ID[:12], ep.IfName, show(ep.Address))
	if ep.AddressV6.IsValid() {
		fmt.Fprintf(w, "\t%s", ep.AddressV6)
	}
	fmt.Fprintln(w)
	for _, p := range ep.Ports {
		fmt.Fprintln(w, portString(p))
	}
}

// portString shows a published port as docker ps does: HOST:PORT->PORT/PROTO,
// with "*" for every address of the host and IPv6 addresses bracketed.
func portString(p controller.PortBinding) string {
	host := "*:" + strconv.Itoa(int(p.HostPort))
	if p.HostIP.IsValid() {
		host = netip.AddrPortFrom(p.HostIP, p.HostPort).String() // [v6]:port
	}
	return fmt.Sprintf("%s->%d/%s", host, p.ContainerPort, p.Proto)
}

func disconnectCmd(args []string) int {
	return clientCmd(newFlags("disconnect", "NETWORK CONTAINER"), args, 2, func(ctx context.Context, c *api.Client, _ *clientFlags, pos []string) error {
		return c.Disconnect(ctx, pos[0], pos[1])
	})
}
