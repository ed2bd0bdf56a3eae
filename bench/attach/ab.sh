#!/usr/bin/env bash
# ab.sh REV [ROUNDS] [front]: compares the attach path of the working tree
# against revision REV, in alternating runs of `bench-attach -sandnet-only`
# (the VM's speed drifts by ±20% within minutes, so only alternating runs
# tell a change from the drift); with "front", the CNI plugin's ADD and DEL
# against CNI's bridge plugin instead (`bench-attach -front-only`: each
# side's agent, plugins and CNI plugin). REV is built in a throwaway
# worktree. Run from the repository root, as root; every run is inside its
# own network and mount namespace.
set -euo pipefail
rev=${1:?usage: bench/attach/ab.sh REV [ROUNDS] [front]}
rounds=${2:-4}
mode=${3:-attach}
base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add -q --detach "$base" "$rev"
make -C "$base" build >/dev/null
make build >/dev/null
go build -o bin/bench-attach ./bench/attach
field() { echo "$1" | grep "$2" | awk '{print $(NF-1)}'; }
ratio() { echo "$1" | grep "$2" | awk '{print $(NF-2)}'; }
# The order alternates from round to round (base first, then current
# first): whichever runs second in a round measured about 4% faster with
# the same code on both sides.
for round in $(seq "$rounds"); do
	order="base current"
	[ $((round % 2)) = 0 ] && order="current base"
	for who in $order; do
		dir=$PWD
		[ "$who" = base ] && dir=$base
		if [ "$mode" = front ]; then
			out=$(unshare --net --mount --propagation private bin/bench-attach -front-only -n 60 \
				-sandnet "$dir/bin/sandnet" -plugins "$dir/bin/plugins" -cni-front "$dir/bin/cni/sandnet" 2>&1)
			printf '%-8s CNI ADD %s ms (ratio %s), DEL %s ms (ratio %s)\n' "$who" \
				"$(field "$out" 'plugin ADD')" "$(ratio "$out" 'ADD / bridge')" \
				"$(field "$out" 'plugin DEL')" "$(ratio "$out" 'DEL / bridge')"
			continue
		fi
		out=$(unshare --net --mount --propagation private bin/bench-attach \
			-sandnet "$dir/bin/sandnet" -plugins "$dir/bin/plugins" -n 150 -sandnet-only -scale 0 2>&1)
		printf '%-8s one request %s ms, two %s ms, detach %s ms\n' "$who" \
			"$(field "$out" 'attach, one')" "$(field "$out" 'attach, two')" "$(field "$out" 'sandnet: detach  ')"
	done
done
