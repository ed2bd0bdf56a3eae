// Command sandnet is the sandnet host: `sandnet agent` runs it; the other
// commands are clients of a running agent's API socket, plus
// `sandnet config validate` and `sandnet version`.
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/sandnet/sandnet/core/agent"
	"github.com/sandnet/sandnet/sdk"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches to a command and returns the process exit code.
func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		usage(os.Stdout)
		return 0
	}
	switch {
	case args[0] == "help": // `sandnet help network ls`, as `docker help network ls`
		if subs := subcommands(commands(), args[1]); len(args) == 2 && len(subs) > 0 {
			fmt.Printf("Usage: sandnet %s COMMAND\n\nCommands: %s\n\n`sandnet help %s COMMAND` shows one.\n", args[1], strings.Join(subs, ", "), args[1])
			return 0
		}
		return run(append(args[1:], "-h"))
	case args[0] == "-v" || args[0] == "--version": // as `docker --version`; the agent's is `sandnet version`
		fmt.Printf("sandnet version %s, api v1, plugin protocol %d\n", agent.Version, sdk.ProtocolVersion)
		return 0
	}
	global, args, err := leadingFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sandnet: %v\n", err)
		return 2
	}
	cmd, rest := lookup(commands(), args)
	if cmd == nil {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "sandnet: name a command after the flags")
		} else if subs := subcommands(commands(), args[0]); len(subs) > 0 {
			fmt.Fprintf(os.Stderr, "sandnet: %q needs a subcommand: %s\n", args[0], strings.Join(subs, ", "))
			return 2
		} else {
			fmt.Fprintf(os.Stderr, "sandnet: unknown command %q\n\n", args[0])
		}
		usage(os.Stderr)
		return 2
	}
	return cmd.run(append(global, rest...))
}

// globalFlags are the client flags that may also come before the command,
// as `docker -H` and `podman --url` do: `sandnet --socket S network ls`.
var globalFlags = []string{"socket", "config", "format"}

// leadingFlags takes the global flags (with their values) off the front
// of args, to be handed to the command after its words. Any other flag
// there is an error naming it.
func leadingFlags(args []string) (global, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if !slices.Contains(globalFlags, name) {
			return nil, nil, fmt.Errorf("%s: before the command only --socket, --config and --format may be given; put the command's flags after it", args[0])
		}
		n := 1
		if !hasValue {
			if len(args) < 2 {
				return nil, nil, fmt.Errorf("%s needs a value", args[0])
			}
			n = 2
		}
		global, args = append(global, args[:n]...), args[n:]
	}
	return global, args, nil
}

// subcommands lists the subcommands of a group word ("network" → create,
// update, ls, …).
func subcommands(cmds []command, group string) []string {
	var out []string
	for _, c := range cmds {
		if g, sub, ok := strings.Cut(c.words, " "); ok && g == group {
			out = append(out, sub)
		}
	}
	return out
}
