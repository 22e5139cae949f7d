#!/usr/bin/env bash
# The main job for now: allocate a physically contiguous region and print
# what proves it.  As root, reserves 2 MiB hugepages for the run when the
# pool has too few, and restores the pool after.
set -euo pipefail
bin=${1:?usage: demo.sh REGION_DEMO_BINARY}
pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
shift

if [ "$(id -u)" -eq 0 ] && [ -w "$pool" ]; then
	prev=$(cat "$pool")
	if [ "$prev" -lt 16 ]; then
		trap 'echo "$prev" > "$pool"' EXIT
		echo 16 > "$pool"
		echo "demo: reserved $(cat "$pool") 2 MiB hugepages for this run (was $prev)"
	fi
fi
"$bin" "$@"
