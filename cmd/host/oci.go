package main

// The OCI front: `oci prepare` readies a bundle for any OCI runtime (runc,
// crun), and the runtime runs `oci-hook create` and `oci-hook delete` at
// the container's createRuntime and poststop hooks — what Docker's
// libnetwork-setkey does, with the sandbox made before the container.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/sdk"
)

// ociFront is the Front of the sandboxes `oci prepare` makes: the agent
// never reaps them as unclaimed stubs after a restart, since the runtime
// will not create them again; the poststop hook removes them.
const ociFront = "oci"

func ociPrepareCmd(args []string) int {
	fs := newFlags("oci prepare", "BUNDLE ID")
	var nets networkFlags
	nets.register(fs, false)
	var hostname string
	fs.StringVar(&hostname, "hostname", "", "the container's hostname: config.json's hostname, and a name the networks' DNS answers beside ID")
	return clientCmd(fs, args, 2, func(ctx context.Context, c *api.Client, cf *clientFlags, pos []string) error {
		dir, id := pos[0], pos[1]
		networks, err := nets.sandboxNetworks()
		if err != nil {
			return err
		}
		// The hooks run from wherever the runtime starts them: absolute
		// paths only.
		socket, err := cf.socketPath()
		if err != nil {
			return err
		}
		if socket, err = filepath.Abs(socket); err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding the sandnet binary for the hooks: %w", err)
		}
		// Prepares of one bundle at once take turns: each replaces the
		// sandbox the one before made, and config.json names the last.
		unlock, err := lockBundle(dir)
		if err != nil {
			return err
		}
		defer unlock()
		// Everything that can be checked is, before the sandbox is made.
		b, err := openBundle(dir)
		if err != nil {
			return err
		}
		if err := b.ownNamespace(specs.NetworkNamespace, "sandnet"); err != nil {
			return err
		}
		if hostname != "" {
			if err := b.setHostname(hostname); err != nil {
				return err
			}
		}
		if err := b.setHooks(ociHook(self, "create", socket), ociHook(self, "delete", socket)); err != nil {
			return err
		}
		req := controller.SandboxCreate{ContainerID: id, Front: ociFront, Networks: networks}
		req.ExternalKey, req.Hostname = true, hostname
		sb, err := createOCISandbox(ctx, c, req)
		if err != nil {
			return err
		}
		err = b.setMounts(
			specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: sb.ResolvConf, Options: []string{"rbind", "ro"}},
			specs.Mount{Destination: "/etc/hosts", Type: "bind", Source: sb.Hosts, Options: []string{"rbind", "ro"}},
		)
		if err == nil {
			err = b.save()
		}
		if err != nil {
			if derr := c.DeleteSandbox(context.WithoutCancel(ctx), id); derr != nil {
				err = errors.Join(err, fmt.Errorf("removing the sandbox again: %w", derr))
			}
			return err
		}
		cf.output(sb, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "%s\t%s\n", sb.ID, b.path)
			for i := range sb.Endpoints {
				printEndpoint(w, &sb.Endpoints[i])
			}
		})
		return nil
	})
}

// ociHook is the hook that runs `sandnet oci-hook STAGE` against socket.
func ociHook(self, stage, socket string) specs.Hook {
	return specs.Hook{Path: self, Args: []string{"sandnet", hookMarker, stage, "--socket", socket}}
}

// createOCISandbox creates the container's sandbox. One that an earlier
// prepare made and no container has started on yet (no key) is replaced,
// so that preparing a bundle again takes the new flags; any other sandbox
// of the container stays, and is an error.
func createOCISandbox(ctx context.Context, c *api.Client, req controller.SandboxCreate) (*controller.Sandbox, error) {
	sb, err := c.CreateSandbox(ctx, req)
	if !errors.Is(err, sdk.ErrForbidden) {
		return sb, err
	}
	old, gerr := c.Sandbox(ctx, req.ContainerID)
	switch {
	case gerr != nil:
		return nil, err
	case old.Front != ociFront:
		return nil, fmt.Errorf("container %s already has sandbox %.12s, not made by `oci prepare`; `sandnet sandbox rm %s` removes it", req.ContainerID, old.ID, req.ContainerID)
	case old.Key != "":
		return nil, fmt.Errorf("container %s already runs on sandbox %.12s (key %s); its poststop hook removes it", req.ContainerID, old.ID, old.Key)
	}
	if err := c.DeleteSandbox(ctx, req.ContainerID); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return nil, fmt.Errorf("replacing the unstarted sandbox of container %s: %w", req.ContainerID, err)
	}
	return c.CreateSandbox(ctx, req)
}

// ociHookCreateCmd is the createRuntime hook: the container's namespace
// exists, its process has not started; the sandbox takes the namespace
// as its key and joins the networks prepare connected it to.
func ociHookCreateCmd(args []string) int {
	fs := newFlags("oci-hook create", "< OCI-STATE")
	return clientCmd(fs, args, 0, func(ctx context.Context, c *api.Client, _ *clientFlags, _ []string) error {
		st, err := readState(os.Stdin)
		if err != nil {
			return err
		}
		if st.Pid <= 0 {
			return fmt.Errorf("container %s: the OCI state has no pid", st.ID)
		}
		netns := fmt.Sprintf("/proc/%d/ns/net", st.Pid)
		if _, err := os.Stat(netns); err != nil {
			return fmt.Errorf("container %s: its process %d is gone (%s: %w)", st.ID, st.Pid, netns, err)
		}
		_, err = c.SetKey(ctx, st.ID, netns)
		if errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("container %s has no sandbox: run `sandnet oci prepare %s %s` before the runtime", st.ID, st.Bundle, st.ID)
		}
		if err != nil {
			return fmt.Errorf("container %s: %w%s", st.ID, err, dropUnstarted(context.WithoutCancel(ctx), c, st.ID))
		}
		return nil
	})
}

// dropUnstarted deletes the sandbox of a container whose createRuntime
// hook failed, when prepare made it and no container runs on it (no key):
// the runtime will not start the container, and crun runs no poststop
// hook after a failed createRuntime one, so nothing else would remove it
// and its addresses and ports. It returns what to add to the hook's
// error.
func dropUnstarted(ctx context.Context, c *api.Client, id string) string {
	sb, err := c.Sandbox(ctx, id)
	if err != nil || sb.Front != ociFront || sb.Key != "" {
		return ""
	}
	if err := c.DeleteSandbox(ctx, id); err != nil && !errors.Is(err, sdk.ErrNotFound) {
		return fmt.Sprintf("; removing its sandbox failed too (`sandnet sandbox rm %s` removes it): %v", id, err)
	}
	return "; its sandbox is removed (`sandnet oci prepare` again before another run)"
}

// ociHookDeleteCmd is the poststop hook: the container is gone; its
// sandbox goes (the runtime's namespace only loses sandnet's key). A
// sandbox already gone is no error; one not made by prepare is left alone.
func ociHookDeleteCmd(args []string) int {
	fs := newFlags("oci-hook delete", "< OCI-STATE")
	return clientCmd(fs, args, 0, func(ctx context.Context, c *api.Client, _ *clientFlags, _ []string) error {
		st, err := readState(os.Stdin)
		if err != nil {
			return err
		}
		sb, err := c.Sandbox(ctx, st.ID)
		if errors.Is(err, sdk.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("container %s: %w", st.ID, err)
		}
		if sb.Front != ociFront {
			return fmt.Errorf("container %s: sandbox %.12s was not made by `oci prepare`; left alone", st.ID, sb.ID)
		}
		if err := c.DeleteSandbox(ctx, st.ID); err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("container %s: %w", st.ID, err)
		}
		return nil
	})
}

// maxState bounds what a hook reads of its stdin: a runtime's state is a
// few hundred bytes, with annotations a few KiB.
const maxState = 1 << 20

// readState decodes the OCI state a runtime writes to a hook's stdin.
func readState(r io.Reader) (*specs.State, error) {
	var st specs.State
	if err := json.NewDecoder(io.LimitReader(r, maxState)).Decode(&st); err != nil {
		return nil, fmt.Errorf("reading the OCI state on stdin: %w", err)
	}
	if st.ID == "" {
		return nil, errors.New("the OCI state on stdin has no id")
	}
	return &st, nil
}
