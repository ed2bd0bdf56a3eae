#!/usr/bin/env bash
# ab.sh REV [ROUNDS]: compares the attach path of the working tree against
# revision REV, in alternating runs of `bench-attach -sandnet-only` (the
# VM's speed drifts by ±20% within minutes, so only alternating runs tell
# a change from the drift). REV is built in a throwaway worktree. Run from
# the repository root, as root; every run is inside its own network and
# mount namespace.
set -euo pipefail
rev=${1:?usage: bench/attach/ab.sh REV [ROUNDS]}
rounds=${2:-4}
base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$base" "$rev"
make -C "$base" build >/dev/null
make build >/dev/null
go build -o bin/bench-attach ./bench/attach
field() { echo "$1" | grep "$2" | awk '{print $(NF-1)}'; }
# The order alternates from round to round (base first, then current
# first): whichever runs second in a round measured about 4% faster with
# the same code on both sides.
for round in $(seq "$rounds"); do
	order="base current"
	[ $((round % 2)) = 0 ] && order="current base"
	for who in $order; do
		dir=$PWD
		[ "$who" = base ] && dir=$base
		out=$(unshare --net --mount --propagation private bin/bench-attach \
			-sandnet "$dir/bin/sandnet" -plugins "$dir/bin/plugins" -n 150 -sandnet-only -scale 0 2>&1)
		printf '%-8s one request %s ms, two %s ms, detach %s ms\n' "$who" \
			"$(field "$out" 'attach, one')" "$(field "$out" 'attach, two')" "$(field "$out" 'sandnet: detach  ')"
	done
done
