package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// stepMetric is the agent's histogram of the named steps of a create and
// an attach (docs/architecture.md).
const stepMetric = "sandnet_controller_step_duration_seconds"

// apiMetric is the agent's histogram of answered API requests.
const apiMetric = "sandnet_api_request_duration_seconds"

// rpcMetric is the agent's histogram of calls to its plugins (the
// store's among them): what a step waits on.
const rpcMetric = "sandnet_plugin_rpc_duration_seconds"

// stepOrder is the order the steps run in; the create's persist holds
// its first network's whole attach.
var stepOrder = []string{
	"request/POST /v1/sandboxes", "request/POST /v1/networks/{ref}/connect",
	"create/acquire-namespace", "create/persist", "create/commit-namespace", "create/connect-rest", "create/register",
	"attach/reserve", "attach/await-namespace", "attach/start-side-work", "attach/call-driver",
	"attach/join-sandbox", "attach/await-commit", "attach/reconcile",
}

// stepTotal is the time spent in one step and how often it ran.
type stepTotal struct {
	seconds float64
	count   uint64
}

// stepTimes are the agent's totals of successful steps by "flow/step",
// and of answered requests by "request/route".
type stepTimes map[string]stepTotal

// steps reads the agent's step totals from its metrics.
func (a *agent) steps() (stepTimes, error) {
	text, err := a.c.Metrics(context.Background())
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		return nil, err
	}
	st := stepTimes{}
	for _, m := range fams[stepMetric].GetMetric() {
		l := labels(m)
		if l["outcome"] == "ok" {
			h := m.GetHistogram()
			st[l["flow"]+"/"+l["step"]] = stepTotal{h.GetSampleSum(), h.GetSampleCount()}
		}
	}
	// The whole request, beside its steps: what the handler does
	// around them (decoding, checks, the answer).
	for _, m := range fams[apiMetric].GetMetric() {
		l := labels(m)
		if strings.HasPrefix(l["code"], "2") {
			h := m.GetHistogram()
			k := "request/" + l["route"]
			t := st[k]
			st[k] = stepTotal{t.seconds + h.GetSampleSum(), t.count + h.GetSampleCount()}
		}
	}
	for _, m := range fams[rpcMetric].GetMetric() {
		l := labels(m)
		if l["code"] == "OK" {
			h := m.GetHistogram()
			st["rpc/"+l["plugin"]+"."+l["method"]] = stepTotal{h.GetSampleSum(), h.GetSampleCount()}
		}
	}
	return st, nil
}

// labels returns m's labels by name.
func labels(m *dto.Metric) map[string]string {
	l := map[string]string{}
	for _, p := range m.GetLabel() {
		l[p.GetName()] = p.GetValue()
	}
	return l
}

// since is what ran between before and s.
func (s stepTimes) since(before stepTimes) stepTimes {
	d := stepTimes{}
	for k, v := range s {
		b := before[k]
		if v.count > b.count {
			d[k] = stepTotal{v.seconds - b.seconds, v.count - b.count}
		}
	}
	return d
}

// printStepMeans prints the mean of each step that ran, in order.
func printStepMeans(name string, s stepTimes) {
	if len(s) == 0 {
		return
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int {
		// Steps in their order, then the plugin calls by name.
		ix, iy := slices.Index(stepOrder, x), slices.Index(stepOrder, y)
		if ix < 0 {
			ix = len(stepOrder)
		}
		if iy < 0 {
			iy = len(stepOrder)
		}
		if ix != iy {
			return ix - iy
		}
		return strings.Compare(x, y)
	})
	fmt.Printf("  %s, the agent's requests and steps (means; a create's persist holds its first attach):\n", name)
	for _, k := range keys {
		v := s[k]
		fmt.Printf("    %-46s %8.3f ms\n", k, v.seconds*1e3/float64(v.count))
	}
}
