#!/usr/bin/env bash
# The main job: hugering-diag (what this machine can do, what is wrong, the
# fix), then a contiguous region with its proof, a ring in hugepages, and
# hugering-bench --quick (ring memory modes side by side, ~20 s).
# As root, reserves 2 MiB hugepages for the run when the pool has too few,
# and restores the pool after.
set -euo pipefail
dir=${1:?usage: demo.sh BUILD_DIR}

# As root: at least 16 pages from compacted memory (hugering-diag --reserve,
# which also shows the largest contiguous run it got), with a contiguous
# 6 MiB run for the region example (pool.sh); the pool is restored at exit.
if [ "$(id -u)" -eq 0 ] && [ -d /sys/kernel/mm/hugepages/hugepages-2048kB ]; then
	. "$(dirname "$0")/pool.sh"
	saved_2m=$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages)
	trap '"$dir/tools/hugering-diag" --reserve "2M:$saved_2m" >/dev/null || true' EXIT
	if [ "$saved_2m" -lt 16 ]; then
		"$dir/tools/hugering-diag" --reserve 2M:16 ||
			echo "demo: fewer than 16 pages of 2 MiB: the region example may fall short"
		echo
	fi
	pool_ensure_run "$dir/examples/region-demo" 6M
fi
"$dir/tools/hugering-diag" || true	# a failed check is reported, not fatal here
echo
"$dir/examples/region-demo"
"$dir/examples/ring-demo" 4096 65536
echo
"$dir/bench/hugering-bench" --quick
