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
		if !cf.tableOut() {
			cf.output(r, nil)
		} else {
			fmt.Println("reloaded;", r.Summary())
		}
		if len(r.Failed) > 0 {
			return errReported // the answer names them
		}
		return nil
	})
}
