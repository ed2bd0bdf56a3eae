package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkSandboxCreateDelete measures creating a sandbox (namespace,
// resolution files, store record) and deleting it, and reports the median
// of the pair; BenchmarkAttachDetach adds connecting it to a network
// through the veth test driver and disconnecting.
func BenchmarkSandboxCreateDelete(b *testing.B) { benchLifecycle(b, false) }

// BenchmarkAttachDetach is BenchmarkSandboxCreateDelete with a connect and
// a disconnect in between.
func BenchmarkAttachDetach(b *testing.B) { benchLifecycle(b, true) }

func benchLifecycle(b *testing.B, connect bool) {
	e := newEnv(b)
	ctx := context.Background()
	if connect {
		e.network("bench", "veth", "10.110.0.0/16")
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		container := fmt.Sprintf("b%d", i)
		start := time.Now()
		if _, err := e.c.NewSandbox(ctx, SandboxCreate{ContainerID: container}); err != nil {
			b.Fatal(err)
		}
		if connect {
			if _, err := e.c.Connect(ctx, "bench", Connect{Container: container}); err != nil {
				b.Fatal(err)
			}
		}
		if err := e.c.DeleteSandbox(ctx, container); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "median-ms")
}
