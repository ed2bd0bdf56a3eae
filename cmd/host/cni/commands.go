package main

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// loadArgs reads the CNI_ARGS the plugin knows; unknown keys (runtimes
// pass keys meant for others) are ignored unless the runtime says
// IgnoreUnknown=0.
func loadArgs(s string) (*Args, error) {
	a := &Args{}
	a.IgnoreUnknown = true
	if s != "" {
		s = ";" + s
	}
	if err := types.LoadArgs("IgnoreUnknown=1"+s, a); err != nil {
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	return a, nil
}

// cmdAdd attaches the runtime's namespace to the conf's network: the
// container's sandbox is created on that namespace with the network in
// one request, or, when a first ADD made it already, connected to it.
func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	cargs, err := loadArgs(args.Args)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidNetNS, "CNI_NETNS: required for ADD", "")
	}
	// The agent takes the path as it is, from its own working directory.
	netns, err := filepath.Abs(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, "CNI_NETNS: "+err.Error(), "")
	}
	at, err := newAttachment(conf, cargs, args.ContainerID, args.IfName, netns)
	if err != nil {
		return err
	}
	prev, err := prevResult(conf)
	if err != nil {
		return err
	}
	ag := newAgent(conf.Socket)
	sb, ep, err := attach(ag, conf.Network, at)
	if err != nil {
		return err
	}
	return types.PrintResult(after(prev, result(sb, ep, at.netns)), conf.CNIVersion)
}

// attach makes the attachment: one request when the container has no
// sandbox yet; a connect to the sandbox an earlier ADD made on the same
// namespace, then the sandbox read again (the new endpoint may now hold
// its default route); and, should the container's sandbox sit on another namespace
// (a container re-created under its ID after a DEL that never came), that
// stale sandbox of a front removed first.
func attach(ag *agent, network string, at *attachment) (*sandbox, *endpoint, error) {
	c := connect{
		Network: network, Name: at.name, Aliases: at.aliases, IP: at.ip, IPv6: at.ip6, Priority: at.priority,
		Publish: at.publish, Interface: at.ifname, MAC: at.mac, DriverOpts: at.driverOpts,
	}
	deadline, staleGone := time.Now().Add(creatingWait), false
	for {
		sb, err := ag.createSandbox(sandboxCreate{ContainerID: at.container, Netns: at.netns, Front: "cni", Networks: []connect{c}})
		if err == nil {
			if len(sb.Endpoints) == 0 {
				return nil, nil, types.NewError(types.ErrInternal, "the agent answered the create with no endpoint", "")
			}
			return sb, &sb.Endpoints[0], nil
		}
		if status(err) != statusForbidden {
			return nil, nil, cniError(fmt.Sprintf("attaching container %s to network %s", at.container, network), err)
		}
		// The container has a sandbox already.
		sb, gerr := ag.sandbox(at.container)
		if status(gerr) == statusNotFound && time.Now().Before(deadline) {
			// Another ADD of the container is creating it (a runtime
			// should not run two at once, but may) or a DEL deleting
			// it: its end decides whether to connect or to create.
			time.Sleep(creatingPoll)
			continue
		}
		if gerr != nil {
			return nil, nil, cniError(fmt.Sprintf("attaching container %s to network %s", at.container, network), err)
		}
		if same, serr := sameNamespace(sb.Key, at.netns); serr != nil || !same {
			if sb.Front != "cni" {
				return nil, nil, types.NewError(types.ErrInternal, fmt.Sprintf("container %s has a sandbox on another namespace that the CNI plugin did not make", at.container), "")
			}
			if staleGone {
				return nil, nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("container %s: its sandbox changed during the ADD", at.container), "")
			}
			if derr := ag.deleteSandbox(at.container); derr != nil && status(derr) != statusNotFound {
				return nil, nil, cniError(fmt.Sprintf("removing the stale sandbox of container %s", at.container), derr)
			}
			staleGone = true
			continue
		}
		c.Network, c.Container, c.Publish = "", at.container, at.publishFor(sb)
		ep, err := ag.connect(network, c)
		if status(err) == statusConflict {
			if now, ep := existing(ag, network, at); ep != nil {
				return now, ep, nil
			}
		}
		if err != nil {
			return nil, nil, cniError(fmt.Sprintf("attaching container %s to network %s", at.container, network), err)
		}
		if now, err := ag.sandbox(at.container); err == nil {
			for i := range now.Endpoints {
				if now.Endpoints[i].ID == ep.ID {
					return now, &now.Endpoints[i], nil
				}
			}
		}
		return sb, ep, nil
	}
}

// existing returns the container's attachment to network when it is the
// one this ADD asks for, and in working order: under its interface name,
// with its address and MAC if it names them, the interface up with them
// in the namespace. A runtime that sends the ADD of an attachment
// that exists (podman connecting again after a disconnect that failed
// while the agent was down) gets the attachment's result; refused, it
// would send the DEL of its failed ADD, which takes the attachment that
// worked away. nil when there is none such.
func existing(ag *agent, network string, at *attachment) (*sandbox, *endpoint) {
	n, err := ag.network(network)
	if err != nil {
		return nil, nil
	}
	sb, err := ag.sandbox(at.container)
	if err != nil {
		return nil, nil
	}
	for i := range sb.Endpoints {
		ep := &sb.Endpoints[i]
		if ep.NetworkID != n.ID || ep.IfName != at.ifname {
			continue
		}
		if at.ip != "" && ep.Address.Addr().String() != at.ip || at.ip6 != "" && ep.AddressV6.Addr().String() != at.ip6 ||
			at.mac != "" && !strings.EqualFold(ep.MAC, at.mac) {
			return nil, nil
		}
		// Only one that works: an attachment whose removal failed
		// part-way has lost its interface, and its DEL must go on.
		if checkNamespace(at.netns, ep, ep.MAC, nil) != nil {
			return nil, nil
		}
		return sb, ep
	}
	return nil, nil
}

const (
	// creatingWait bounds how long an ADD waits for the container's
	// sandbox that another request is creating or deleting.
	creatingWait = 10 * time.Second
	// creatingPoll is how often it looks again.
	creatingPoll = 5 * time.Millisecond
)

// sameNamespace reports whether the files at a and b are the same
// network namespace (the same nsfs inode).
func sameNamespace(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sbi, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sbi), nil
}

// cmdDel detaches the container from the conf's network; the agent
// deletes the sandbox once it has no endpoint left. What is already gone —
// the sandbox, the attachment, the namespace — is success, as the spec
// requires; the namespace itself is the runtime's and stays. An
// attachment is the container's on the network under CNI_IFNAME: the DEL
// of another ifname (a runtime cleaning up an ADD that failed because the
// container is on the network already) leaves it.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ag := newAgent(conf.Socket)
	if err := ag.release(conf.Network, args.ContainerID, args.IfName); err != nil && status(err) != statusNotFound {
		return cniError(fmt.Sprintf("detaching container %s from network %s", args.ContainerID, conf.Network), err)
	}
	return nil
}

// cmdCheck verifies that the attachment exists in the agent and that the
// interface, its addresses and its routes are in the namespace as the
// agent recorded them; a difference is an error naming it.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if args.Netns == "" {
		return types.NewError(types.ErrInvalidNetNS, "CNI_NETNS: required for CHECK", "")
	}
	ag := newAgent(conf.Socket)
	n, err := ag.network(conf.Network)
	if err != nil {
		return cniError("network "+conf.Network, err)
	}
	sb, err := ag.sandbox(args.ContainerID)
	if err != nil {
		if status(err) == statusNotFound {
			return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("container %s has no sandbox", args.ContainerID), "")
		}
		return cniError("container "+args.ContainerID, err)
	}
	var ep *endpoint
	for i := range sb.Endpoints {
		if sb.Endpoints[i].NetworkID == n.ID {
			ep = &sb.Endpoints[i]
		}
	}
	switch {
	case ep == nil:
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("container %s is not attached to network %s", args.ContainerID, conf.Network), "")
	case ep.IfName != args.IfName:
		return types.NewError(types.ErrInternal, fmt.Sprintf("container %s is attached to network %s as %s, not %s", args.ContainerID, conf.Network, ep.IfName, args.IfName), "")
	}
	if same, err := sameNamespace(sb.Key, args.Netns); err != nil || !same {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("CNI_NETNS %s is not the namespace of container %s's sandbox", args.Netns, args.ContainerID), "")
	}
	prev, err := prevResult(conf)
	if err != nil {
		return err
	}
	mac, err := checkPrevResult(prev, ep)
	if err != nil {
		return err
	}
	return checkNamespace(args.Netns, ep, mac, append(defaultRoutes(sb, ep), ep.Routes...))
}

// prevResult is the runtime's prevResult as the current spec's result,
// or nil when the conf has none.
func prevResult(conf *NetConf) (*current.Result, error) {
	if conf.RawPrevResult == nil {
		return nil, nil
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "prevResult: "+err.Error(), "")
	}
	return prev, nil
}

// after is ADD's result when an earlier plugin of the chain gave prev:
// prev's interfaces, addresses and routes, then this plugin's (their
// interface indices shifted past prev's), as the spec asks a plugin to
// pass prevResult on. The DNS is this plugin's: the embedded resolver
// forwards what it does not answer.
func after(prev, r *current.Result) *current.Result {
	if prev == nil {
		return r
	}
	out := *prev
	out.CNIVersion = r.CNIVersion
	shift := len(prev.Interfaces)
	out.Interfaces = append(slices.Clone(prev.Interfaces), r.Interfaces...)
	out.IPs = slices.Clone(prev.IPs)
	for _, ipc := range r.IPs {
		c := *ipc
		if c.Interface != nil {
			c.Interface = current.Int(*c.Interface + shift)
		}
		out.IPs = append(out.IPs, &c)
	}
	out.Routes = append(slices.Clone(prev.Routes), r.Routes...)
	out.DNS = r.DNS
	return &out
}

// checkPrevResult compares the chain's result the runtime kept with the
// agent's record of the endpoint: the addresses prev gives the
// endpoint's interface (CNI_IFNAME inside the namespace) must be the
// recorded ones; other plugins' interfaces and addresses are theirs. It
// returns the MAC the interface should have: prev's, as a later plugin
// of the chain (tuning) may have changed it, else the agent's.
func checkPrevResult(prev *current.Result, ep *endpoint) (string, error) {
	if prev == nil {
		return ep.MAC, nil
	}
	idx, mac := -1, ep.MAC
	for i, in := range prev.Interfaces {
		if in.Name == ep.IfName && in.Sandbox != "" {
			idx = i
			if in.Mac != "" {
				mac = in.Mac
			}
		}
	}
	for _, ipc := range prev.IPs {
		if ipc.Interface != nil && *ipc.Interface != idx {
			continue
		}
		p, ok := prefixOf(&ipc.Address)
		if ok && p != ep.Address && p != ep.AddressV6 {
			return "", types.NewError(types.ErrInternal, fmt.Sprintf("CHECK: prevResult has address %s, the agent recorded %s", p, recorded(ep)), "")
		}
	}
	return mac, nil
}

func recorded(ep *endpoint) string {
	var s []string
	for _, p := range []netip.Prefix{ep.Address, ep.AddressV6} {
		if p.IsValid() {
			s = append(s, p.String())
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// cmdStatus says whether the plugin can take ADDs: the agent answers and
// the conf's network exists. Otherwise it is error 50, "plugin not
// available", with the reason.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := newAgent(conf.Socket).network(conf.Network); err != nil {
		msg := fmt.Sprintf("network %s: %v", conf.Network, err)
		if status(err) == 0 {
			msg = fmt.Sprintf("sandnet agent unreachable at %s", conf.Socket)
		}
		return types.NewError(types.ErrPluginNotAvailable, msg, err.Error())
	}
	return nil
}

// cmdGC removes the attachments to the conf's network that the CNI plugin
// made and that cni.dev/valid-attachments no longer lists. Sandboxes made
// through sandnet's own API or another front are never touched.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	ag := newAgent(conf.Socket)
	n, err := ag.network(conf.Network)
	if status(err) == statusNotFound {
		return nil // no network, nothing attached to it
	}
	if err != nil {
		return cniError("network "+conf.Network, err)
	}
	valid := map[types.GCAttachment]bool{}
	for _, v := range conf.ValidAttachments {
		valid[v] = true
	}
	sbs, err := ag.sandboxes()
	if err != nil {
		return cniError("listing sandboxes", err)
	}
	var errs []error
	for _, sb := range sbs {
		if sb.Front != "cni" {
			continue
		}
		for _, ep := range sb.Endpoints {
			if ep.NetworkID != n.ID || valid[types.GCAttachment{ContainerID: sb.ContainerID, IfName: ep.IfName}] {
				continue
			}
			if err := ag.release(n.ID, sb.ContainerID, ep.IfName); err != nil && status(err) != statusNotFound {
				errs = append(errs, fmt.Errorf("container %s: %w", sb.ContainerID, err))
			}
		}
	}
	if len(errs) > 0 {
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("GC of network %s left %d attachments", conf.Network, len(errs)), fmt.Sprint(errs))
	}
	return nil
}
