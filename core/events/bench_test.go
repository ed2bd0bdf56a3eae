package events

import (
	"testing"
	"time"
)

// BenchmarkPublish publishes onto a bus whose history is full, with one
// subscriber the events do not pass: the cost every request pays.
func BenchmarkPublish(b *testing.B) {
	bus := NewBus(nil)
	sub := bus.Subscribe(Filter{Types: []string{TypeReload}}, time.Time{}, 0)
	defer sub.Close()
	e := Event{Type: TypeConnect, NetworkID: "n", Network: "net", SandboxID: "s", Container: "c", EndpointID: "e"}
	for range historySize {
		bus.Publish(e)
	}
	b.ReportAllocs()
	for b.Loop() {
		bus.Publish(e)
	}
}
