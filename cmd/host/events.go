package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sandnet/sandnet/core/events"
)

// eventFilterKeys are the keys `sandnet events --filter` takes, and the
// query parameter each becomes.
var eventFilterKeys = []string{"type", "network", "container", "plugin"}

// sinceFlag is --since: a duration back from now, or a time, as docker
// events takes it.
type sinceFlag struct{ t time.Time }

func (f *sinceFlag) String() string {
	if f.t.IsZero() {
		return ""
	}
	return f.t.Format(time.RFC3339)
}

func (f *sinceFlag) Set(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return fmt.Errorf("%s: must not be negative", d)
		}
		f.t = time.Now().Add(-d)
		return nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			f.t = t
			return nil
		}
	}
	return fmt.Errorf("%q is neither a duration (10m) nor an RFC 3339 time (2026-12-06T21:00:00Z) or date (2026-12-06)", s)
}

func eventsCmd(args []string) int {
	fs := newFlags("events", "")
	var cf clientFlags
	cf.register(fs)
	var filters stringList
	fs.Var(&filters, "filter", "only events matching key=value, key one of type, network, container, plugin (repeatable: one value of each key given must match; type=network matches every network.* type)")
	var since, until sinceFlag
	fs.Var(&since, "since", "start with the events the agent kept from this long ago (e.g. 10m) or from this RFC 3339 time (2026-12-06T21:00:00Z), then follow")
	fs.Var(&until, "until", "stop at this time (an RFC 3339 time or date, or a duration back from now): with --since, the events kept between the two")
	pos, err := parse(fs, args)
	if err != nil {
		return usageFail(err)
	}
	if len(pos) != 0 {
		return wrongArgs(fs, pos)
	}
	q, err := filterQuery(filters, eventFilterKeys, false)
	if err != nil {
		return fail(err)
	}
	if !since.t.IsZero() {
		q.Set("since", since.t.UTC().Format(time.RFC3339Nano))
	}
	if !until.t.IsZero() {
		q.Set("until", until.t.UTC().Format(time.RFC3339Nano))
	}
	c, err := cf.client()
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	s, err := c.Events(ctx, q)
	if err != nil {
		return fail(err)
	}
	defer s.Close()
	for {
		e, err := s.Next()
		switch {
		case ctx.Err() != nil:
			return 0
		case errors.Is(err, io.EOF) && !until.t.IsZero():
			return 0 // the agent ends the stream at --until
		case errors.Is(err, io.EOF):
			fmt.Fprintln(os.Stderr, "sandnet: the agent ended the event stream")
			return 1
		case err != nil:
			return fail(fmt.Errorf("reading events: %w", err))
		}
		if cf.tableOut() {
			fmt.Println(eventLine(e))
		} else if cf.emitStreamed(e); cf.failed { // a JSON line, or the template's
			return 1
		}
	}
}

// eventLine formats an event as `docker events` does: time, type, then
// the attributes that are set.
func eventLine(e events.Event) string {
	var attrs []string
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, k+"="+v)
		}
	}
	add("network", e.Network)
	add("network_id", short(e.NetworkID))
	add("container", e.Container)
	add("sandbox", short(e.SandboxID))
	add("endpoint", short(e.EndpointID))
	add("plugin", strings.Trim(e.PluginKind+"/"+e.Plugin, "/"))
	if e.PID > 0 {
		add("pid", fmt.Sprint(e.PID))
	}
	if e.Dropped > 0 {
		add("dropped", fmt.Sprint(e.Dropped))
	}
	add("message", e.Message)
	line := e.Time.Local().Format("2006-01-02T15:04:05.000000000Z07:00") + " " + e.Type
	if len(attrs) > 0 {
		line += " (" + strings.Join(attrs, ", ") + ")"
	}
	return line
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
