#!/usr/bin/env bash
# The main job for now: allocate a physically contiguous region and print
# what proves it, then make an io_uring ring in hugepages and run NOPs on it.
# As root, reserves 2 MiB hugepages for the run when the pool has too few,
# and restores the pool after.
set -euo pipefail
dir=${1:?usage: demo.sh EXAMPLES_DIR}
pool=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

if [ "$(id -u)" -eq 0 ] && [ -w "$pool" ]; then
	prev=$(cat "$pool")
	if [ "$prev" -lt 16 ]; then
		trap 'echo "$prev" > "$pool"' EXIT
		echo 16 > "$pool"
		echo "demo: reserved $(cat "$pool") 2 MiB hugepages for this run (was $prev)"
	fi
fi
"$dir/region-demo"
"$dir/ring-demo" 4096 65536
