package plugin

import (
	"context"
	"slices"
	"testing"
	"time"

	pb "github.com/sandnet/sandnet/sdk/proto"
)

// BenchmarkDriverCall measures one no-op driver call (EndpointOperInfo on
// the none driver) from the host to the plugin process and back, through
// go-plugin, gRPC and AutoMTLS, and reports the median.
func BenchmarkDriverCall(b *testing.B) { benchDriverCall(b, 0) }

// BenchmarkDriverCallAfterIdle is BenchmarkDriverCall with both processes
// idle for a millisecond before each call (untimed), as between the steps
// of an attach: what waking them costs.
func BenchmarkDriverCallAfterIdle(b *testing.B) { benchDriverCall(b, time.Millisecond) }

func benchDriverCall(b *testing.B, idle time.Duration) {
	m := newManager(b)
	_, d := startNone(b, m)
	ctx := context.Background()
	req := &pb.EndpointRequest{Network: &pb.Network{Id: "n1"}, Endpoint: &pb.Endpoint{Id: "e1"}}
	for range 100 { // warm the connection
		if _, err := d.EndpointOperInfo(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		if idle > 0 {
			b.StopTimer()
			time.Sleep(idle)
			b.StartTimer()
		}
		start := time.Now()
		if _, err := d.EndpointOperInfo(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2])/1e3, "median-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100])/1e3, "p99-µs")
}
