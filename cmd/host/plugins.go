package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/plugin"
)

func pluginsCmd(args []string) int {
	return clientCmd(newFlags("plugins", ""), args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		ps, err := c.Plugins(ctx)
		if err != nil {
			return err
		}
		cf.output(ps, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "KIND\tNAME\tVERSION\tSDK\tPROTOCOL\tPID\tHEALTH\tRESTARTS")
			for _, p := range ps {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\n", p.Kind, p.Name, p.Version, sdkVersion(p.SDKVersion), p.Protocol, p.PID, health(p), p.Restarts)
			}
		})
		return nil
	})
}

// sdkVersion shows the SDK version a plugin reports; a plugin built
// before the SDK reported one reports none.
func sdkVersion(v string) string {
	if v == "" {
		return "before 0.1.0"
	}
	return v
}

func health(p plugin.Status) string {
	switch {
	case !p.Running:
		return "down"
	case !p.Healthy:
		return "unhealthy"
	}
	return "healthy"
}
