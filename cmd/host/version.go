package main

import (
	"context"
	"fmt"
	"runtime"
	"text/tabwriter"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/sdk"
)

// versions is what `sandnet version` prints.
type versions struct {
	Client api.Version  `json:"client"`
	Agent  *api.Version `json:"agent,omitempty"`
	Error  string       `json:"agent_error,omitempty"`
}

func versionCmd(args []string) int {
	return clientCmd(newFlags("version", ""), args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		out := versions{Client: api.Version{Version: agent.Version, APIVersion: "v1", GoVersion: runtime.Version(), PluginProtocol: sdk.ProtocolVersion, SDKVersion: sdk.Version}}
		var err error
		if out.Agent, err = c.Version(ctx); err != nil {
			out.Agent, out.Error = nil, err.Error()
		}
		cf.output(out, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "Client:\t%s\tapi %s\t%s\tplugin protocol %d\tsdk %s\n", out.Client.Version, out.Client.APIVersion, out.Client.GoVersion, out.Client.PluginProtocol, out.Client.SDKVersion)
			if out.Agent != nil {
				fmt.Fprintf(w, "Agent:\t%s\tapi %s\t%s\tplugin protocol %d\tsdk %s\n", out.Agent.Version, out.Agent.APIVersion, out.Agent.GoVersion, out.Agent.PluginProtocol, out.Agent.SDKVersion)
			} else {
				fmt.Fprintln(w, "Agent:\tunreachable") // the error says why, below
			}
		})
		// The client's version is printed either way; an unreachable
		// agent still fails the command, as it does every other.
		return err
	})
}
