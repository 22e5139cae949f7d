#!/usr/bin/env bash
# The contiguity tests on a host whose free 2 MiB pages are scattered
# (scripts/fragment-pool.sh): the harness must build its pool from
# compacted memory.  As root; the pool is restored afterwards.
set -euo pipefail
bin=${1:?usage: check-fragmented.sh TEST_BINARY}
here=$(cd "$(dirname "$0")" && pwd)
nr=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
if [ "$(id -u)" -ne 0 ]; then
	echo "check-fragmented: skipped: needs root to fragment the hugepage pool"
	exit 0
fi
orig=$(cat "$nr")
trap 'echo "$orig" > "$nr"' EXIT
"$here/fragment-pool.sh" 128
"$here/run-tests.sh" --filter 'region/contig*' "$bin"
