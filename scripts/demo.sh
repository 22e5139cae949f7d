#!/usr/bin/env bash
# The main job: hugering-diag (what this machine can do, what is wrong, the
# fix), then a contiguous region with its proof, a ring in hugepages, and
# hugering-bench --quick (ring memory modes side by side, ~20 s).
# As root, reserves 2 MiB hugepages for the run when the pool has too few,
# and restores the pool after.
set -euo pipefail
dir=${1:?usage: demo.sh BUILD_DIR}
pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

if [ "$(id -u)" -eq 0 ] && [ -w "$pool" ]; then
	prev=$(cat "$pool")
	if [ "$prev" -lt 16 ]; then
		trap 'echo "$prev" > "$pool"' EXIT
		echo 16 > "$pool"
		echo "demo: reserved $(cat "$pool") 2 MiB hugepages for this run (was $prev)"
	fi
fi
"$dir/tools/hugering-diag" || true	# a failed check is reported, not fatal here
echo
"$dir/examples/region-demo"
"$dir/examples/ring-demo" 4096 65536
echo
"$dir/bench/hugering-bench" --quick
