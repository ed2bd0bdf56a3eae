package nspool

import "testing"

// The choice of the next spare, from the pool's state alone.
func TestNext(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    state
		want want
	}{
		{"empty, no target: a plain one", state{size: 2}, want{plain: true}},
		{"plain short, no target", state{size: 2, plain: 1}, want{plain: true}},
		{"full, no target: nothing", state{size: 2, plain: 2}, want{}},
		{"both short: plain first", state{size: 2, target: "n1"}, want{plain: true}},
		{"both short, a create wanted a prepared one: prepared first",
			state{size: 2, target: "n1", wantPrepared: true}, want{target: "n1"}},
		{"plain full: prepared", state{size: 2, plain: 2, prepared: 1, target: "n1"}, want{target: "n1"}},
		{"prepared full, plain short: plain even when wanted prepared",
			state{size: 2, plain: 1, prepared: 2, target: "n1", wantPrepared: true}, want{plain: true}},
		{"both full: nothing", state{size: 2, plain: 2, prepared: 2, target: "n1", wantPrepared: true}, want{}},
		{"barren target: plain only", state{size: 2, target: "n1", barren: "n1", wantPrepared: true}, want{plain: true}},
		{"barren target, plain full: nothing", state{size: 2, plain: 2, target: "n1", barren: "n1"}, want{}},
		{"another network was barren: prepared", state{size: 2, plain: 2, target: "n2", barren: "n1"}, want{target: "n2"}},
		{"size 1, plain short, wanted prepared", state{size: 1, target: "n1", wantPrepared: true}, want{target: "n1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := next(tc.s); got != tc.want {
				t.Fatalf("next(%+v) = %+v; want %+v", tc.s, got, tc.want)
			}
		})
	}
}
