package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/sdk"
)

// handle registers a controller route that publishes the events of what
// it did once it succeeded. The controller announces its sandboxes and
// endpoints itself (controller.Config.OnEvent); networks are announced
// here.
func (a *Agent) handle(pattern string, status int, h api.HandlerFunc) {
	register := a.api.Handle
	if pattern == "GET /v1/networks" || pattern == "GET /v1/sandboxes" {
		register = a.api.HandleQuery // filters, all: checked there
	}
	register(pattern, status, func(r *http.Request) (any, error) {
		ctx, done := a.ctrl.Hold(r.Context()) // a reload drains the drivers in use
		defer done()
		r = r.WithContext(ctx)
		var before *controller.Network
		if pattern == "DELETE /v1/networks/{ref}" {
			// Read what the delete is about to remove, for its ID.
			before, _ = a.ctrl.Network(r.Context(), r.PathValue("ref"))
		}
		v, err := h(r)
		if err == nil {
			a.publishFor(pattern, r, v, before)
		}
		return v, err
	})
}

// publishFor publishes what a successful request did to a network.
func (a *Agent) publishFor(pattern string, r *http.Request, v any, before *controller.Network) {
	switch pattern {
	case "POST /v1/networks":
		n := v.(*controller.Network)
		a.events.Publish(events.Event{Type: events.TypeNetworkCreate, NetworkID: n.ID, Network: n.Name})
	case "DELETE /v1/networks/{ref}":
		e := events.Event{Type: events.TypeNetworkDelete, Network: r.PathValue("ref")}
		if before != nil {
			e.NetworkID, e.Network = before.ID, before.Name
		}
		a.events.Publish(e)
	}
}

// eventParams are the query parameters of GET /v1/events.
var eventParams = []string{"type", "network", "container", "plugin", "since", "until", "buffer"}

// serveEvents streams events as JSON lines until the client goes away or
// the agent stops. Query parameters: type, network, container, plugin
// (each repeatable: an event passes when it matches one value of every
// parameter given), since (RFC 3339 time: start with the events the agent
// kept from then on), until (RFC 3339 time: end the stream there) and
// buffer (events held for this reader before it
// misses some; default events.DefaultBuffer). Any other parameter is
// refused, so that a misspelt filter is not a silent stream of
// everything.
func (a *Agent) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if err := knownParams(q, "/v1/events", eventParams...); err != nil {
		a.eventsError(w, err)
		return
	}
	f := events.Filter{Types: q["type"], Networks: q["network"], Containers: q["container"], Plugins: q["plugin"]}
	for _, t := range f.Types {
		if !slices.Contains(events.Types, t) && !slices.ContainsFunc(events.Types, func(k string) bool { return strings.HasPrefix(k, t+".") }) {
			a.eventsError(w, fmt.Errorf("type: %q is not an event type; use one of %s, or a group (network, sandbox, endpoint, plugin, store): %w", t, strings.Join(events.Types, ", "), sdk.ErrInvalid))
			return
		}
	}
	var since, until time.Time
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"since", &since}, {"until", &until}} {
		if s := q.Get(p.name); s != "" {
			var err error
			if *p.t, err = time.Parse(time.RFC3339Nano, s); err != nil {
				a.eventsError(w, fmt.Errorf("%s: %q is not an RFC 3339 time: %w", p.name, s, sdk.ErrInvalid))
				return
			}
		}
	}
	size := 0
	if s := q.Get("buffer"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > events.MaxBuffer {
			a.eventsError(w, fmt.Errorf("buffer: %q is not a number from 1 to %d: %w", s, events.MaxBuffer, sdk.ErrInvalid))
			return
		}
		size = n
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		a.eventsError(w, fmt.Errorf("until: %s is before since (%s): %w", until.Format(time.RFC3339Nano), since.Format(time.RFC3339Nano), sdk.ErrInvalid))
		return
	}
	if n := a.streams.Add(1); n > int64(api.MaxStreams()) {
		a.streams.Add(-1)
		a.eventsError(w, fmt.Errorf("%d event streams are open, the most the agent serves at once (half its connections, so that other requests are still answered); close one: %w", n-1, sdk.ErrUnavailable))
		return
	}
	defer a.streams.Add(-1)
	sub := a.events.Subscribe(f, since, size)
	defer sub.Close()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	ctx := r.Context()
	if !until.IsZero() {
		// Past, the context is done at once: what was kept up to it is
		// sent (Next drains what is queued first), then the stream ends.
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, until)
		defer cancel()
	}
	enc := json.NewEncoder(w)
	for {
		e, ok := sub.Next(ctx)
		if !ok || !until.IsZero() && e.Time.After(until) {
			return
		}
		if enc.Encode(e) != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
	}
}

func (a *Agent) eventsError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(api.HTTPStatus(err))
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Message: err.Error()})
}
