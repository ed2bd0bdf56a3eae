// Command sandnet is the sandnet host: `sandnet agent` runs it; the other
// commands are clients of a running agent's API socket, plus
// `sandnet config validate` and `sandnet version`.
package main

import (
	"fmt"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches to a command and returns the process exit code.
func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(os.Stdout)
		return 0
	}
	cmd, rest := lookup(commands(), args)
	if cmd == nil {
		fmt.Fprintf(os.Stderr, "sandnet: unknown command %q\n\n", args[0])
		usage(os.Stderr)
		return 2
	}
	return cmd.run(rest)
}
