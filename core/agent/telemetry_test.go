package agent

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sandnet/sandnet/core/events"
	"github.com/sandnet/sandnet/core/telemetry"
	"github.com/sandnet/sandnet/sdk"
)

// TestStoreBackOnlyFromItsOwnCalls: store.unreachable and store.back
// follow the store's own calls, which reach its backend; a health check
// the plugin answers while its backend is down is no sign of it back.
func TestStoreBackOnlyFromItsOwnCalls(t *testing.T) {
	m, err := telemetry.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{metrics: m, events: events.NewBus(nil)}
	sub := a.events.Subscribe(events.Filter{}, time.Time{}, 16)
	defer sub.Close()
	down := status.Error(codes.Unavailable, "consul at 127.0.0.1:8500 did not answer within 2s")
	next := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if e, ok := sub.Next(ctx); ok {
			return string(e.Type)
		}
		return ""
	}
	for _, c := range []struct {
		method string
		err    error
		want   string // the event it brings, if any
	}{
		{"/sandnet.v1.Store/Txn", down, events.TypeStoreUnreachable},
		{"/grpc.health.v1.Health/Check", nil, ""},
		{"/sandnet.v1.Plugin/Info", nil, ""},
		{"/sandnet.v1.Store/Close", nil, ""},
		{"/sandnet.v1.Store/Get", nil, events.TypeStoreBack},
	} {
		a.observePlugin(sdk.KindStore, "consul", c.method, time.Millisecond, c.err)
		if got := next(); got != c.want {
			t.Fatalf("after %s (%v): event %q, want %q", c.method, c.err, got, c.want)
		}
	}
}
