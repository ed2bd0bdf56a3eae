package main

import (
	"context"
	"fmt"

	"github.com/sandnet/sandnet/core/api"
)

func reloadCmd(args []string) int {
	return clientCmd(newFlags("reload", ""), args, 0, func(ctx context.Context, c *api.Client, cf *clientFlags, _ []string) error {
		r, err := c.Reload(ctx)
		if err != nil {
			return err
		}
		if cf.format == "json" {
			cf.output(r, nil)
			return nil
		}
		fmt.Println("reloaded;", r.Summary())
		return nil
	})
}
