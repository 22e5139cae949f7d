#!/usr/bin/env bash
# The main job: hugering-diag (what this machine can do, what is wrong, the
# fix), then a contiguous region with its proof, a ring in hugepages, and
# hugering-bench --quick (ring memory modes side by side, ~20 s).
# As root, reserves 2 MiB hugepages for the run when the pool has too few,
# and restores the pool after.
set -euo pipefail
dir=${1:?usage: demo.sh BUILD_DIR}

# As root: at least 16 pages from compacted memory, with a contiguous 6 MiB
# run for the region example (pool.sh; restored at exit).
if [ "$(id -u)" -eq 0 ]; then
	HUGERING_TEST_PAGES_2M=16 HUGERING_TEST_PAGES_1G=0
	. "$(dirname "$0")/pool.sh"
	pool_reserve
	pool_ensure_run "$dir/examples/region-demo" 6M
fi
"$dir/tools/hugering-diag" || true	# a failed check is reported, not fatal here
echo
"$dir/examples/region-demo"
"$dir/examples/ring-demo" 4096 65536
echo
"$dir/bench/hugering-bench" --quick
