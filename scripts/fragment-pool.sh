#!/usr/bin/env bash
# Leave the 2 MiB pool as a long-running host does: COUNT free pages, no two
# of them physically adjacent.  Reserve 2*COUNT pages, fill them from a
# hugetlbfs file, free every other one, shrink the pool to what is in use
# (the free pages go back to the kernel), then delete the file: the COUNT
# pages left are free and scattered.  As root; prints the pool it made.
set -euo pipefail
count=${1:-128}
HP=/sys/kernel/mm/hugepages/hugepages-2048kB
die() { printf 'fragment-pool: error: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it resizes the hugepage pool)"
[ -d "$HP" ] || die "no 2 MiB hugepage pool in this kernel"

mnt=$(mktemp -d /tmp/hugering-frag.XXXXXX)
cleanup() { rm -f "$mnt/fill" 2>/dev/null; umount "$mnt" 2>/dev/null; rmdir "$mnt"; }
trap cleanup EXIT
mount -t hugetlbfs -o pagesize=2M none "$mnt"

echo $((2 * count)) > "$HP/nr_hugepages"
[ "$(cat "$HP/free_hugepages")" -ge $((2 * count)) ] ||
	die "could not reserve $((2 * count)) free 2 MiB pages"
fallocate -l $((2 * count * 2))M "$mnt/fill"
for ((i = 0; i < 2 * count; i += 2)); do
	fallocate -p -o $((i * 2))M -l 2M "$mnt/fill"
done
echo "$count" > "$HP/nr_hugepages"
rm -f "$mnt/fill"
echo "fragment-pool: $(cat "$HP/nr_hugepages") pages, $(cat "$HP/free_hugepages") free, none adjacent to another"
