package ipam

import (
	"net/netip"
	"testing"
)

func TestCapacity(t *testing.T) {
	tests := []struct {
		subnet, gateway, rng string
		want                 float64
	}{
		{"10.0.0.0/24", "10.0.0.1", "", 253},
		{"10.0.0.0/24", "10.0.0.1", "10.0.0.128/25", 127},
		{"10.0.0.0/24", "10.0.0.200", "10.0.0.128/25", 126},
		{"10.0.0.0/30", "10.0.0.1", "", 1},
		{"fd00::/120", "fd00::1", "", 254},
	}
	for _, tt := range tests {
		var rng netip.Prefix
		if tt.rng != "" {
			rng = netip.MustParsePrefix(tt.rng)
		}
		if got := Capacity(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gateway), rng); got != tt.want {
			t.Errorf("Capacity(%s, %s, %s) = %v, want %v", tt.subnet, tt.gateway, tt.rng, got, tt.want)
		}
	}
}
