package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/config"
)

// command is one CLI command: its words ("network create"), a one-line
// summary, and its body, which gets the arguments after the words.
type command struct {
	words   string
	summary string
	run     func(args []string) int
}

func commands() []command {
	return []command{
		{"agent", "run the sandnet agent in the foreground", agentCmd},
		{"version", "print the version of this binary and of the agent", versionCmd},
		{"config validate", "check a config file and print every problem with its position", validateCmd},
		{"plugins", "list the agent's plugins with their state", pluginsCmd},
		{"plugin check", "run the conformance suite against a plugin binary, started as the agent would", pluginCheckCmd},
		{"network create", "create a network", networkCreateCmd},
		{"network update", "add or drop a network's DNS servers (running containers follow at once)", networkUpdateCmd},
		{"network ls", "list networks", networkLsCmd},
		{"network inspect", "show networks with their endpoints", networkInspectCmd},
		{"network rm", "delete networks", networkRmCmd},
		{"network prune", "delete every network no container uses", networkPruneCmd},
		{"sandbox create", "create a container's sandbox", sandboxCreateCmd},
		{"sandbox ls", "list sandboxes", sandboxLsCmd},
		{"sandbox inspect", "show a sandbox: key, interfaces, addresses, gateway", sandboxInspectCmd},
		{"sandbox rm", "delete sandboxes", sandboxRmCmd},
		{"sandbox set-key", "hand a sandbox the namespace a runtime made", sandboxSetKeyCmd},
		{"sandbox rename", "rename a container on its networks: the name their DNS answers and PTR gives", sandboxRenameCmd},
		{"sandbox stats", "show what each container's interfaces carried: bytes, packets, drops (all sandboxes without arguments)", sandboxStatsCmd},
		{"connect", "attach a container to a network", connectCmd},
		{"disconnect", "detach a container from a network", disconnectCmd},
		{"oci prepare", "make a container's sandbox and ready an OCI bundle (runc, crun) to use it", ociPrepareCmd},
		{"oci-hook create", "OCI createRuntime hook: hand the container's namespace to its sandbox", ociHookCreateCmd},
		{"oci-hook delete", "OCI poststop hook: delete the container's sandbox", ociHookDeleteCmd},
		{"host ls", "list the hosts sharing the store, live or expired", hostLsCmd},
		{"host rm", "forget hosts whose lease expired, releasing their addresses", hostRmCmd},
		{"store migrate", "copy every sandnet key from one config's store to another's, and verify", storeMigrateCmd},
		{"events", "print the agent's events as they happen", eventsCmd},
		{"doctor", "check what the agent needs (kernel, sysctl, plugins, store, socket) and say what to fix", doctorCmd},
		{"reload", "have the agent read its config file again (as SIGHUP does)", reloadCmd},
	}
}

// lookup finds the command whose words start args, longest first.
func lookup(cmds []command, args []string) (*command, []string) {
	var best *command
	n := 0
	for i := range cmds {
		w := strings.Fields(cmds[i].words)
		if len(w) > len(args) || len(w) <= n {
			continue
		}
		if strings.Join(args[:len(w)], " ") == cmds[i].words {
			best, n = &cmds[i], len(w)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[n:]
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: sandnet COMMAND [flags] [args]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.words, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'sandnet COMMAND -h' for a command's flags.")
}

// argsUsages holds each command's argument summary, for its usage text.
var argsUsages = map[*flag.FlagSet]string{}

// newFlags returns a flag set for a command; usage text shows the command's
// words and argument summary. The usage is printed for -h only: a flag
// error, or arguments the command does not take, get one line saying
// what is wrong and where to look (see parse and wrongArgs), as Docker's
// CLI does.
func newFlags(words, argsUsage string) *flag.FlagSet {
	fs := flag.NewFlagSet("sandnet "+words, flag.ContinueOnError)
	fs.Usage = func() {} // parse prints the usage or the hint
	argsUsages[fs] = argsUsage
	return fs
}

// printUsage prints a command's usage — its words, arguments and flags —
// on stdout, as asked for (-h), so that it pipes into grep or less.
func printUsage(fs *flag.FlagSet) {
	out := fs.Output()
	fs.SetOutput(os.Stdout)
	defer fs.SetOutput(out)
	fmt.Fprintln(os.Stdout, strings.TrimSpace(fmt.Sprintf("Usage: %s [flags] %s", fs.Name(), argsUsages[fs])))
	fmt.Fprint(os.Stdout, "\nFlags:\n")
	fs.PrintDefaults()
}

// wrongArgs says which positional arguments a command wanted and which it
// got, and returns exit code 2.
func wrongArgs(fs *flag.FlagSet, pos []string) int {
	want := argsUsages[fs]
	if want == "" {
		want = "no arguments"
	}
	got := "none"
	if len(pos) > 0 {
		q := make([]string, len(pos))
		for i, p := range pos {
			q[i] = strconv.Quote(p)
		}
		got = strings.Join(q, " ")
	}
	fmt.Fprintf(fs.Output(), "%s: want %s; got %s\nSee '%s -h'.\n", fs.Name(), want, got, fs.Name())
	return 2
}

// parse parses flags that may stand before, between or after the
// positional arguments, and returns the positional ones; everything after
// "--" is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		before := args
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				printUsage(fs)
			} else { // the flag package printed what is wrong
				fmt.Fprintf(fs.Output(), "See '%s -h'.\n", fs.Name())
			}
			return nil, err
		}
		args = fs.Args()
		if used := len(before) - len(args); used > 0 && before[used-1] == "--" {
			return append(pos, args...), nil // Parse took the "--"
		}
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// clientFlags are the flags of every command that talks to an agent.
type clientFlags struct {
	socket string
	config string
	format string
	tmpl   *template.Template // -format as a Go template; nil for table or json
	// header is the header row of a "table TEMPLATE" format, as docker
	// prints it (the fields' names in capitals); its rows are aligned.
	header string
	// failed says the template failed on an item (reported): the command
	// exits 1.
	failed bool
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", "", "agent API socket (default: $SANDNET_SOCKET, else the socket of -config, else "+config.DefaultSocket+")")
	fs.StringVar(&c.config, "config", "", "read the socket path from this agent config file")
	fs.StringVar(&c.format, "format", "table", "output format: table, json, or a Go template applied to each item, as docker's --format ('{{.Name}} {{.ID}}'; functions json, join, lower, upper)")
}

// client returns an API client for the chosen socket.
func (c *clientFlags) client() (*api.Client, error) {
	switch {
	case c.format == "table" || c.format == "json":
	case strings.Contains(c.format, "{{"):
		// As docker's formatter prepares one: a leading "table" asks
		// for a header and aligned columns, and \t and \n typed in
		// the shell are a tab and a newline.
		text, table := strings.CutPrefix(c.format, "table")
		text = formatEscapes.Replace(strings.Trim(text, " "))
		if table {
			c.header = tableHeader(text)
		}
		t, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(text)
		if err != nil {
			return nil, fmt.Errorf("--format: %w", err)
		}
		c.tmpl = t
	default:
		return nil, fmt.Errorf("--format: %q is not table, json or a Go template ({{.Name}}, or \"table {{.Name}}\\t{{.ID}}\" for aligned columns under a header)", c.format)
	}
	socket, err := c.socketPath()
	if err != nil {
		return nil, err
	}
	return api.NewClient(socket), nil
}

// socketPath is the agent's socket: -socket, else $SANDNET_SOCKET, else
// the socket of -config, else the default.
func (c *clientFlags) socketPath() (string, error) {
	switch {
	case c.socket != "":
		return c.socket, nil
	case os.Getenv("SANDNET_SOCKET") != "":
		return os.Getenv("SANDNET_SOCKET"), nil
	case c.config != "":
		cfg, diags := config.Load(c.config)
		if diags.HasErrors() {
			return "", errors.New(diags.Error())
		}
		return cfg.API.Socket, nil
	}
	return config.DefaultSocket, nil
}

// templateFuncs are the functions a -format template may call, as
// docker's: json (the value as JSON), join, lower, upper.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
}

// tableOut reports whether output is the table (not json or a template).
func (c *clientFlags) tableOut() bool { return c.format == "table" }

// output prints v as JSON when -format json was given, through the
// template (once per element when v is a slice) when one was, else
// calls table.
func (c *clientFlags) output(v any, table func(w *tabwriter.Writer)) {
	switch {
	case c.tmpl != nil:
		out := io.Writer(os.Stdout)
		var tw *tabwriter.Writer
		if c.header != "" {
			tw = tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
			out = tw
			fmt.Fprintln(tw, c.header)
		}
		if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice {
			for i := 0; i < rv.Len() && !c.failed; i++ {
				c.emit(out, rv.Index(i).Interface())
			}
		} else {
			c.emit(out, v)
		}
		if tw != nil {
			tw.Flush()
		}
	case c.format == "json":
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	default:
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
		table(tw)
		tw.Flush()
	}
}

// emit prints one item as a line to out: through the template, else as
// JSON.
func (c *clientFlags) emit(out io.Writer, v any) {
	if c.tmpl == nil {
		_ = json.NewEncoder(out).Encode(v)
		return
	}
	var b strings.Builder
	if err := c.tmpl.Execute(&b, v); err != nil {
		if !c.failed {
			fmt.Fprintf(os.Stderr, "sandnet: --format: %v%s\n", err, fieldsHint(err, v))
		}
		c.failed = true
		return
	}
	fmt.Fprintln(out, b.String())
}

// emitStreamed is emit to stdout for a command that prints items as they
// come (events, stats --watch): a "table" format's header comes first,
// once, and rows are not aligned (they cannot wait for the next).
func (c *clientFlags) emitStreamed(v any) {
	if c.header != "" {
		fmt.Println(c.header)
		c.header = ""
	}
	c.emit(os.Stdout, v)
}

// tableHeader is the header row of a "table TEMPLATE" format: each action
// stands for the last field it names, in capitals ({{.Name}} is NAME,
// {{json .IPv4}} is IPV4), as docker's headers do; the rest (tabs, text)
// stays as written.
func tableHeader(text string) string {
	return templateAction.ReplaceAllStringFunc(text, func(a string) string {
		fields := templateField.FindAllStringSubmatch(templateString.ReplaceAllString(a, ""), -1)
		if len(fields) == 0 {
			return ""
		}
		return strings.ToUpper(fields[len(fields)-1][1])
	})
}

// formatEscapes turns a typed \t and \n into a tab and a newline.
var formatEscapes = strings.NewReplacer(`\t`, "\t", `\n`, "\n")

var (
	templateAction = regexp.MustCompile(`\{\{.*?\}\}`)
	templateField  = regexp.MustCompile(`\.([A-Za-z_][A-Za-z0-9_]*)`)
	templateString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|` + "`[^`]*`")
)

// fail prints err, unless it was printed already, and returns exit
// code 1.
func fail(err error) int {
	if !errors.Is(err, errReported) {
		printErr(err)
	}
	return 1
}

// printErr prints a command's error on stderr, without the API's error
// kind it ends with (api.Message).
func printErr(err error) { fmt.Fprintln(os.Stderr, "sandnet:", api.Message(err)) }

// errReported is the error of a command that has printed its failures.
var errReported = errors.New("failures reported")

// filterQuery reads --filter key=value flags into query parameters, each
// key one of keys; with emptyOK a value may be empty.
func filterQuery(filters, keys []string, emptyOK bool) (url.Values, error) {
	q := url.Values{}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || v == "" && !emptyOK || !slices.Contains(keys, k) {
			return nil, fmt.Errorf("--filter %q: want key=value with key one of %s", f, strings.Join(keys, ", "))
		}
		q.Add(k, v)
	}
	return q, nil
}

// removeEach removes every ref with rm, as docker rm does: it goes on
// past a failure, prints each ref removed on stdout (with -format json,
// one JSON array of them at the end) and each failure on stderr, and
// fails, exit 1, if any did.
func removeEach(out *clientFlags, refs []string, rm func(ref string) error) error {
	failed := false
	removed := []string{}
	for _, ref := range refs {
		if err := rm(ref); err != nil {
			printErr(err)
			failed = true
			continue
		}
		removed = append(removed, ref)
		if out.tableOut() {
			fmt.Println(ref)
		}
	}
	if !out.tableOut() {
		out.output(removed, nil)
	}
	if failed {
		return errReported
	}
	return nil
}

// usageFail returns the exit code for a flag error, which the flag package
// has already printed: 0 for -h, else 2.
func usageFail(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// anyArgs is clientCmd's nargs for any number of positional arguments,
// none included.
const anyArgs = math.MinInt

// clientCmd runs a command that talks to the agent: it adds the client
// flags to fs, parses args, checks that there are nargs positional
// arguments (at least -nargs when negative; any number for anyArgs),
// connects, and calls body with a context bounded to two minutes. body's
// error is printed.
func clientCmd(fs *flag.FlagSet, args []string, nargs int, body func(ctx context.Context, c *api.Client, out *clientFlags, pos []string) error) int {
	var cf clientFlags
	cf.register(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if nargs != anyArgs && (nargs >= 0 && len(pos) != nargs || nargs < 0 && len(pos) < -nargs) {
		return wrongArgs(fs, pos)
	}
	c, err := cf.client()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := body(ctx, c, &cf, pos); err != nil {
		return fail(err)
	}
	if cf.failed {
		return 1 // the template's error is printed
	}
	return 0
}

// fieldsHint lists the fields a template may use on v, for an error
// about a field it does not have.
func fieldsHint(err error, v any) string {
	if !strings.Contains(err.Error(), "can't evaluate field") {
		return ""
	}
	t := reflect.TypeOf(v)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	var names []string
	for f := range t.Fields() {
		if f.IsExported() {
			names = append(names, "."+f.Name)
		}
	}
	return " (its fields: " + strings.Join(names, " ") + ")"
}
