package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/sandnet/sandnet/core/api"
)

func hostLsCmd(args []string) int {
	return clientCmd(newFlags("host ls", ""), args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		hs, err := c.Hosts(ctx)
		if err != nil {
			return err
		}
		cf.output(hs, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "HOST\tSTATE\tADVERTISE\tENDPOINTS\tNETWORKS\tSINCE")
			for _, h := range hs {
				id, addr, since := h.ID, "-", "-"
				if h.Self {
					id += " (this host)"
				}
				if h.AdvertiseAddr.IsValid() {
					addr = h.AdvertiseAddr.String()
				}
				if !h.Since.IsZero() {
					since = h.Since.Local().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\n", id, h.State, addr, h.Endpoints, h.Networks, since)
			}
		})
		return nil
	})
}

func hostRmCmd(args []string) int {
	return clientCmd(newFlags("host rm", "HOST..."), args, -1, func(ctx context.Context, c *api.Client, out *clientFlags, pos []string) error {
		return removeEach(out, pos, func(id string) error { return c.RemoveHost(ctx, id) })
	})
}
