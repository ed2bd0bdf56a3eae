package ipam

import (
	"net/netip"
	"testing"
)

func TestCapacity(t *testing.T) {
	tests := []struct {
		subnet, gateway, rng string
		aux                  []string
		want                 float64
	}{
		{"10.0.0.0/24", "10.0.0.1", "", nil, 253},
		{"10.0.0.0/24", "10.0.0.1", "10.0.0.128/25", nil, 127},
		{"10.0.0.0/24", "10.0.0.200", "10.0.0.128/25", nil, 126},
		{"10.0.0.0/30", "10.0.0.1", "", nil, 1},
		{"fd00::/120", "fd00::1", "", nil, 254},
		{"10.0.0.0/24", "10.0.0.1", "", []string{"10.0.0.5", "10.0.0.6"}, 251},
		{"10.0.0.0/24", "10.0.0.1", "10.0.0.128/25", []string{"10.0.0.5", "10.0.0.200"}, 126},
	}
	for _, tt := range tests {
		var rng netip.Prefix
		if tt.rng != "" {
			rng = netip.MustParsePrefix(tt.rng)
		}
		var aux []AuxAddress
		for _, a := range tt.aux {
			aux = append(aux, AuxAddress{Name: a, Addr: netip.MustParseAddr(a)})
		}
		if got := Capacity(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gateway), rng, aux); got != tt.want {
			t.Errorf("Capacity(%s, %s, %s, %v) = %v, want %v", tt.subnet, tt.gateway, tt.rng, tt.aux, got, tt.want)
		}
	}
}

// TestUsedInRange: static addresses outside a network's range count as
// used, but take nothing from what dynamic allocation may still hand out
// (the free gauge is the range's capacity less the range's used).
func TestUsedInRange(t *testing.T) {
	s := newStore(t)
	a := newAllocator(t, s, opts{})
	rng := netip.MustParsePrefix("10.60.0.128/25")
	p := createPool(t, a, s, PoolRequest{NetworkID: "n", Subnet: netip.MustParsePrefix("10.60.0.0/24"), Range: rng}).Subnet
	mustAllocate(t, a, s, p, "10.60.0.5", "static")
	mustAllocate(t, a, s, p, "10.60.0.130", "inside")
	all, in, err := a.Used(t.Context(), p, rng)
	if err != nil || all != 2 || in != 1 {
		t.Fatalf("Used = %d, %d in range, %v; want 2, 1", all, in, err)
	}
	if all, in, err := a.Used(t.Context(), p, netip.Prefix{}); err != nil || all != 2 || in != 2 {
		t.Fatalf("Used without a range = %d, %d, %v; want 2, 2", all, in, err)
	}
}
