package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sandnet/sandnet/core/plugin"
)

func pluginsCmd(args []string) int {
	fs := newFlags("plugins", "")
	var cf clientFlags
	cf.register(fs)
	if _, err := parse(fs, args); err != nil {
		return usageFail(err)
	}
	c, err := cf.client()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ps, err := c.Plugins(ctx)
	if err != nil {
		return fail(err)
	}
	cf.output(ps, func(w *tabwriter.Writer) {
		fmt.Fprintln(w, "KIND\tNAME\tVERSION\tPROTOCOL\tPID\tHEALTH\tRESTARTS")
		for _, p := range ps {
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%d\n", p.Kind, p.Name, p.Version, p.Protocol, p.PID, health(p), p.Restarts)
		}
	})
	return 0
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
