package ipam

import "math/bits"

// blockBits is the number of bits in one bitmap block: 64 words of 64.
const blockBits = 64 * 64

// bitmap is a sparse set of bit positions in [0, size), size up to 2^63.
// It is split into blocks of 4096 bits; a block with no bit set is not
// stored, so an IPv6 /64 costs memory only for the addresses in use. Each
// block keeps a summary word with bit w set when its word w is full, so
// finding the next clear bit inside a block takes two TrailingZeros64 and
// a full block is skipped by its count without reading its words.
//
// nextClear costs O(1 + k), k the number of consecutive full blocks it
// walks over: at most n/4096 for n bits set (15 for 60 000 addresses in a
// /16), and 0 in practice, since the cursor sits just past the last
// allocation.
type bitmap struct {
	size   uint64
	n      uint64 // bits set
	blocks map[uint64]*block
}

type block struct {
	words [64]uint64
	full  uint64 // bit w set: words[w] is all ones
	n     int    // bits set
}

func newBitmap(size uint64) *bitmap { return &bitmap{size: size, blocks: map[uint64]*block{}} }

func (m *bitmap) isSet(i uint64) bool {
	b := m.blocks[i/blockBits]
	return b != nil && b.words[i%blockBits/64]&(1<<(i%64)) != 0
}

// set sets bit i and reports whether it was clear.
func (m *bitmap) set(i uint64) bool {
	b := m.blocks[i/blockBits]
	if b == nil {
		b = &block{}
		m.blocks[i/blockBits] = b
	}
	w, bit := i%blockBits/64, uint64(1)<<(i%64)
	if b.words[w]&bit != 0 {
		return false
	}
	b.words[w] |= bit
	if b.words[w] == ^uint64(0) {
		b.full |= 1 << w
	}
	b.n++
	m.n++
	return true
}

// clear clears bit i and reports whether it was set.
func (m *bitmap) clear(i uint64) bool {
	b := m.blocks[i/blockBits]
	w, bit := i%blockBits/64, uint64(1)<<(i%64)
	if b == nil || b.words[w]&bit == 0 {
		return false
	}
	b.words[w] &^= bit
	b.full &^= 1 << w
	b.n--
	m.n--
	if b.n == 0 {
		delete(m.blocks, i/blockBits)
	}
	return true
}

// nextClear returns the first clear bit at or after from, wrapping around
// to 0 after size-1; ok is false when every bit is set.
func (m *bitmap) nextClear(from uint64) (i uint64, ok bool) {
	if m.n >= m.size {
		return 0, false
	}
	if from >= m.size {
		from = 0
	}
	if i, ok := m.clearIn(from, m.size); ok {
		return i, true
	}
	return m.clearIn(0, from)
}

// clearIn returns the first clear bit in [from, to).
func (m *bitmap) clearIn(from, to uint64) (uint64, bool) {
	for from < to {
		bi := from / blockBits
		b := m.blocks[bi]
		if b == nil {
			return from, true
		}
		if b.n < blockBits {
			if j, ok := b.firstClear(from % blockBits); ok {
				i := bi*blockBits + j
				return i, i < to
			}
		}
		from = (bi + 1) * blockBits
	}
	return 0, false
}

// firstClear returns the first clear bit of b at or after j.
func (b *block) firstClear(j uint64) (uint64, bool) {
	w := j / 64
	if free := ^b.words[w] & (^uint64(0) << (j % 64)); free != 0 {
		return w*64 + uint64(bits.TrailingZeros64(free)), true
	}
	// Words after w that are not full; a shift by 64 gives 0.
	notFull := ^b.full & (^uint64(0) << (w + 1))
	if notFull == 0 {
		return 0, false
	}
	w = uint64(bits.TrailingZeros64(notFull))
	return w*64 + uint64(bits.TrailingZeros64(^b.words[w])), true
}

// each calls fn with every set bit, in no particular order of blocks.
func (m *bitmap) each(fn func(i uint64)) {
	for bi, b := range m.blocks {
		for w, word := range b.words {
			for word != 0 {
				fn(bi*blockBits + uint64(w)*64 + uint64(bits.TrailingZeros64(word)))
				word &= word - 1
			}
		}
	}
}
