package ipam

import (
	"math/rand/v2"
	"testing"
)

// TestBitmap checks the bitmap against a plain bool slice under random
// sets and clears, in sizes around the word and block boundaries.
func TestBitmap(t *testing.T) {
	for _, size := range []uint64{1, 5, 63, 64, 65, 4095, 4096, 4097, 3*blockBits + 17} {
		rng := rand.New(rand.NewPCG(size, 1))
		m, ref := newBitmap(size), make([]bool, size)
		var n uint64
		for step := range 20000 {
			i := rng.Uint64N(size)
			// Fill densely, then thin out, so full words and full blocks
			// come and go.
			if step%4000 < 3000 {
				if got := m.set(i); got == ref[i] {
					t.Fatalf("size %d: set(%d) = %v with bit %v", size, i, got, ref[i])
				}
				if !ref[i] {
					ref[i], n = true, n+1
				}
			} else {
				if got := m.clear(i); got != ref[i] {
					t.Fatalf("size %d: clear(%d) = %v with bit %v", size, i, got, ref[i])
				}
				if ref[i] {
					ref[i], n = false, n-1
				}
			}
			if m.n != n {
				t.Fatalf("size %d: n = %d, want %d", size, m.n, n)
			}
			from := rng.Uint64N(size)
			got, ok := m.nextClear(from)
			want, wok := naiveNextClear(ref, from)
			if got != want || ok != wok {
				t.Fatalf("size %d step %d: nextClear(%d) = %d, %v; want %d, %v", size, step, from, got, ok, want, wok)
			}
			if m.isSet(from) != ref[from] {
				t.Fatalf("size %d: isSet(%d) = %v", size, from, !ref[from])
			}
		}
	}
}

func naiveNextClear(ref []bool, from uint64) (uint64, bool) {
	for k := range uint64(len(ref)) {
		i := (from + k) % uint64(len(ref))
		if !ref[i] {
			return i, true
		}
	}
	return 0, false
}

// TestBitmapHuge checks that a 2^63-bit bitmap (an IPv6 /64) costs only
// the blocks in use and searches across its end.
func TestBitmapHuge(t *testing.T) {
	m := newBitmap(1 << 63)
	last := uint64(1<<63 - 1)
	m.set(last)
	m.set(0)
	if i, ok := m.nextClear(last); !ok || i != 1 {
		t.Errorf("nextClear(last) = %d, %v; want 1 after wrapping", i, ok)
	}
	for i := range uint64(blockBits) {
		m.set(i)
	}
	if i, ok := m.nextClear(5); !ok || i != blockBits {
		t.Errorf("nextClear(5) over a full block = %d, %v; want %d", i, ok, blockBits)
	}
	if len(m.blocks) != 2 {
		t.Errorf("%d blocks stored, want 2", len(m.blocks))
	}
	for i := range uint64(blockBits) {
		m.clear(i)
	}
	if len(m.blocks) != 1 {
		t.Errorf("%d blocks stored after clearing one, want 1", len(m.blocks))
	}
}
