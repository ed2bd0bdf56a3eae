package agent

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/sandnet/sandnet/core/api"
	"github.com/sandnet/sandnet/core/controller"
	"github.com/sandnet/sandnet/core/sandbox"
	"github.com/sandnet/sandnet/sdk"
)

// controllerRoutes serves networks, sandboxes and connections.
func (a *Agent) controllerRoutes() {
	c := a.ctrl
	h := a.handle // publishes each change's events
	h("POST /v1/networks", http.StatusCreated, func(r *http.Request) (any, error) {
		var req controller.NetworkCreate
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return c.CreateNetwork(r.Context(), req)
	})
	h("GET /v1/networks", 0, func(r *http.Request) (any, error) {
		q := r.URL.Query()
		if err := knownParams(q, "/v1/networks", "name", "id", "driver", "scope", "label"); err != nil {
			return nil, err
		}
		f := controller.NetworkFilter{Names: q["name"], IDs: q["id"], Drivers: q["driver"], Scopes: q["scope"], Labels: q["label"]}
		ns, err := c.Networks(r.Context())
		out := []*controller.Network{}
		for _, n := range ns {
			if f.Match(n) {
				out = append(out, n)
			}
		}
		return out, err
	})
	h("GET /v1/networks/{ref}", 0, func(r *http.Request) (any, error) {
		return c.Network(r.Context(), r.PathValue("ref"))
	})
	h("DELETE /v1/networks/{ref}", http.StatusNoContent, func(r *http.Request) (any, error) {
		return nil, c.DeleteNetwork(r.Context(), r.PathValue("ref"))
	})
	for _, method := range []string{"POST", "PATCH"} {
		h(method+" /v1/networks/{ref}/dns", 0, func(r *http.Request) (any, error) {
			var req controller.NetworkDNSUpdate
			if err := api.Decode(r, &req); err != nil {
				return nil, err
			}
			return c.UpdateNetworkDNS(r.Context(), r.PathValue("ref"), req)
		})
	}
	h("POST /v1/networks/{ref}/connect", http.StatusCreated, func(r *http.Request) (any, error) {
		var req controller.Connect
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return c.Connect(r.Context(), r.PathValue("ref"), req)
	})
	h("POST /v1/networks/{ref}/disconnect", http.StatusNoContent, func(r *http.Request) (any, error) {
		var req api.Disconnect
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		if req.Release {
			return nil, c.Release(r.Context(), r.PathValue("ref"), req.Container, req.Interface)
		}
		if req.Interface != "" {
			// A disconnect takes the container's one attachment to the
			// network, whatever its interface: naming one would not
			// keep another.
			return nil, fmt.Errorf("interface: only with release (a runtime front's DEL, which leaves an attachment under another interface): %w", sdk.ErrInvalid)
		}
		return nil, c.Disconnect(r.Context(), r.PathValue("ref"), req.Container)
	})
	h("GET /v1/hosts", 0, func(r *http.Request) (any, error) {
		return c.Hosts(r.Context())
	})
	h("DELETE /v1/hosts/{id}", http.StatusNoContent, func(r *http.Request) (any, error) {
		return nil, c.RemoveHost(r.Context(), r.PathValue("id"))
	})
	h("POST /v1/sandboxes", http.StatusCreated, func(r *http.Request) (any, error) {
		var req controller.SandboxCreate
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return c.NewSandbox(r.Context(), req)
	})
	h("GET /v1/sandboxes", 0, func(r *http.Request) (any, error) {
		all, err := allParam(r)
		if err != nil {
			return nil, err
		}
		sbs, err := c.ListSandboxes(r.Context(), all)
		if sbs == nil {
			sbs = []*controller.Sandbox{}
		}
		return sbs, err
	})
	h("GET /v1/sandboxes/{container}", 0, func(r *http.Request) (any, error) {
		return c.SandboxByContainer(r.Context(), r.PathValue("container"))
	})
	h("DELETE /v1/sandboxes/{container}", http.StatusNoContent, func(r *http.Request) (any, error) {
		return nil, c.DeleteSandbox(r.Context(), r.PathValue("container"))
	})
	h("POST /v1/sandboxes/{container}/key", 0, func(r *http.Request) (any, error) {
		var req api.SetKey
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return c.SetKey(r.Context(), r.PathValue("container"), req.Path)
	})
	h("POST /v1/sandboxes/{container}/rename", http.StatusNoContent, func(r *http.Request) (any, error) {
		var req api.Rename
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return nil, c.Rename(r.Context(), r.PathValue("container"), req.Name)
	})
	h("POST /v1/sandboxes/{container}/refresh", 0, func(r *http.Request) (any, error) {
		var req sandbox.Options
		if err := api.Decode(r, &req); err != nil {
			return nil, err
		}
		return c.Refresh(r.Context(), r.PathValue("container"), req)
	})
	h("POST /v1/sandboxes/{container}/restore", 0, func(r *http.Request) (any, error) {
		var none struct{} // no body, or {}: a field is refused, as on every route
		if err := api.DecodeOptional(r, &none); err != nil {
			return nil, err
		}
		return c.RestoreSandbox(r.Context(), r.PathValue("container"))
	})
	h("GET /v1/sandboxes/{container}/traffic", 0, func(r *http.Request) (any, error) {
		return c.Traffic(r.Context(), r.PathValue("container"))
	})
	h("GET /v1/traffic", 0, func(r *http.Request) (any, error) {
		return c.Traffic(r.Context(), "")
	})
}

// allParam reads GET /v1/sandboxes' one query parameter, all (true:
// stubs too); any other is refused, so that a misspelt one is not a
// silent listing without them.
func allParam(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if err := knownParams(q, "/v1/sandboxes", "all"); err != nil {
		return false, err
	}
	if !q.Has("all") {
		return false, nil
	}
	if len(q["all"]) > 1 {
		return false, fmt.Errorf("all: given %d times: %w", len(q["all"]), sdk.ErrInvalid)
	}
	all, err := strconv.ParseBool(q.Get("all"))
	if err != nil {
		return false, fmt.Errorf("all: %q is not true or false: %w", q.Get("all"), sdk.ErrInvalid)
	}
	return all, nil
}

// knownParams refuses, naming it, a query parameter of route that is not
// one of known: a misspelt filter must not pass for no filter.
func knownParams(q url.Values, route string, known ...string) error {
	for k := range q {
		switch {
		case len(known) == 0:
			return fmt.Errorf("%q: %s takes no parameters: %w", k, route, sdk.ErrInvalid)
		case !slices.Contains(known, k):
			return fmt.Errorf("%q: not a parameter of %s; use %s: %w", k, route, strings.Join(known, ", "), sdk.ErrInvalid)
		}
	}
	return nil
}
