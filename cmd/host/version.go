package main

import (
	"context"
	"fmt"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/sdk"
)

func versionCmd(args []string) int {
	fs := newFlags("version", "")
	var cf clientFlags
	cf.register(fs)
	if _, err := parse(fs, args); err != nil {
		return usageFail(err)
	}
	out := struct {
		Client api.Version  `json:"client"`
		Agent  *api.Version `json:"agent,omitempty"`
		Error  string       `json:"agent_error,omitempty"`
	}{Client: api.Version{Version: agent.Version, APIVersion: "v1", GoVersion: runtime.Version(), PluginProtocol: sdk.ProtocolVersion}}
	c, err := cf.client()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if out.Agent, err = c.Version(ctx); err != nil {
		out.Agent, out.Error = nil, err.Error()
	}
	cf.output(out, func(w *tabwriter.Writer) {
		fmt.Fprintf(w, "Client:\t%s\tapi %s\t%s\tplugin protocol %d\n", out.Client.Version, out.Client.APIVersion, out.Client.GoVersion, out.Client.PluginProtocol)
		if out.Agent != nil {
			fmt.Fprintf(w, "Agent:\t%s\tapi %s\t%s\tplugin protocol %d\n", out.Agent.Version, out.Agent.APIVersion, out.Agent.GoVersion, out.Agent.PluginProtocol)
		} else {
			fmt.Fprintf(w, "Agent:\tunreachable (%s)\n", out.Error)
		}
	})
	return 0
}
