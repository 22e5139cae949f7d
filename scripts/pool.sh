# Sourced: reserve the hugepages tests need, restore the pool on exit.
# HUGERING_TEST_PAGES_2M / _1G override the counts.
NEED_2M=${HUGERING_TEST_PAGES_2M:-128}
NEED_1G=${HUGERING_TEST_PAGES_1G:-1}
HP=/sys/kernel/mm/hugepages
declare -A saved_pool=()

# DIR COUNT: a pool of at least COUNT pages, made from compacted memory.
# Free 2 MiB pages reserved earlier may be scattered (a long-running host):
# the tests need physically adjacent ones, so the free pages go back first,
# memory is compacted, and the pool is reserved again.  Pages in use stay.
pool_reserve_one() {
	local dir=$HP/$1 want=$2 cur free got target
	[ -d "$dir" ] || { echo "pool: no $1 pool in this kernel"; return 0; }
	cur=$(cat "$dir/nr_hugepages")
	free=$(cat "$dir/free_hugepages")
	saved_pool[$1]=$cur
	target=$(( cur > want ? cur : want ))
	# Not for 1 GiB pages: one given back may not come back on a busy host.
	if [ "$1" = hugepages-2048kB ] && [ "$free" -gt 0 ]; then
		echo $((cur - free)) > "$dir/nr_hugepages" 2>/dev/null || true
	fi
	echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
	echo "$target" > "$dir/nr_hugepages" 2>/dev/null || true
	got=$(cat "$dir/nr_hugepages")
	echo "pool: $1: nr_hugepages $cur -> $got (wanted $want; $free free pages released and memory compacted first)"
}

pool_restore() {
	for k in "${!saved_pool[@]}"; do
		echo "${saved_pool[$k]}" > "$HP/$k/nr_hugepages" 2>/dev/null || true
	done
}

# At exit: the pools as they were, and whatever hugetlb_cgroup_prepare made.
pool_cleanup() {
	pool_restore
	hugetlb_cgroup_cleanup
}

# As root: reserve both sizes now and restore at exit.
pool_reserve() {
	[ "$(id -u)" -eq 0 ] || return 0
	trap pool_cleanup EXIT
	pool_reserve_one hugepages-2048kB "$NEED_2M"
	pool_reserve_one hugepages-1048576kB "$NEED_1G"
}

# As root: a hugetlb cgroup the tests may put themselves under
# (HUGERING_TEST_HUGETLB_CGROUP), delegated to nobody for the unprivileged
# run: in the unified hierarchy if it has the controller, else in the v1
# hugetlb hierarchy, mounted where nothing had.  Cleanup undoes only what
# prepare did (the cgroup it made, the controller it enabled, the mount).
HUGETLB_CG_MOUNTED= HUGETLB_CG_CREATED= HUGETLB_CG_ENABLED=
hugetlb_cgroup_prepare() {
	[ "$(id -u)" -eq 0 ] || return 0
	local base v2mnt v2= dir
	base=$(awk '$3 == "cgroup" && $4 ~ /(^|,)hugetlb(,|$)/ {print $2; exit}' /proc/self/mounts)
	v2mnt=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/self/mounts)
	if [ -z "$base" ] && [ -n "$v2mnt" ] && grep -qw hugetlb "$v2mnt/cgroup.controllers" 2>/dev/null; then
		base=$v2mnt v2=1
		if ! grep -qw hugetlb "$base/cgroup.subtree_control"; then
			echo +hugetlb > "$base/cgroup.subtree_control" 2>/dev/null &&
				HUGETLB_CG_ENABLED=$base
		fi
	elif [ -z "$base" ] && awk '$1 == "hugetlb" && $4 == 1 {f=1} END {exit !f}' /proc/cgroups; then
		base=/run/hugering-hugetlb
		mkdir -p "$base" && mount -t cgroup -o hugetlb hugering-hugetlb "$base" ||
			{ echo "cgroup: cannot mount the hugetlb hierarchy"; return 0; }
		HUGETLB_CG_MOUNTED=$base
	fi
	[ -n "$base" ] || { echo "cgroup: no hugetlb controller"; return 0; }
	hugetlb_cgroup_remove_stale "$base"
	dir=$base/hugering-tests-$$
	mkdir "$dir" || return 0
	HUGETLB_CG_CREATED=$dir
	if [ -n "$v2" ]; then
		echo +hugetlb > "$dir/cgroup.subtree_control" 2>/dev/null
		grep -qw hugetlb "$dir/cgroup.subtree_control" ||
			{ echo "cgroup: cannot enable hugetlb below $dir"; return 0; }
	fi
	chown 65534:65534 "$dir" "$dir/cgroup.procs" 2>/dev/null
	export HUGERING_TEST_HUGETLB_CGROUP=$dir
	echo "cgroup: tests may use $dir"
}

# A run that was killed leaves its cgroup behind; a later run with the same
# pid could not create its own. Remove those of runs no longer alive (an
# rmdir of a cgroup that still holds a process fails, and is left).
hugetlb_cgroup_remove_stale() {	# BASE
	local d pid
	for d in "$1"/hugering-tests-*; do
		[ -d "$d" ] || continue
		pid=${d##*-}
		# Ours by its name, before this run made it: a dead run's.
		[ "$pid" != "$$" ] && kill -0 "$pid" 2>/dev/null && continue
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
		rmdir "$d" 2>/dev/null
	done
	return 0
}

# The tests' leftover cgroups are empty once their processes are gone.
hugetlb_cgroup_cleanup() {
	local d=$HUGETLB_CG_CREATED
	if [ -n "$d" ] && [ -d "$d" ]; then
		find "$d" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null
		rmdir "$d" 2>/dev/null
	fi
	[ -n "$HUGETLB_CG_ENABLED" ] &&
		echo -hugetlb > "$HUGETLB_CG_ENABLED/cgroup.subtree_control" 2>/dev/null
	[ -n "$HUGETLB_CG_MOUNTED" ] && umount "$HUGETLB_CG_MOUNTED" 2>/dev/null &&
		rmdir "$HUGETLB_CG_MOUNTED" 2>/dev/null
	return 0
}

# As root: make sure the 2 MiB pool holds a physically contiguous run of
# SIZE (the largest the contiguity tests take), checked with region-demo
# (the library's own pagemap proof; the tests then check with their own
# reader).  The kernel refills a pool from its free lists, lone scattered
# blocks first and 4 MiB blocks in list order, so on a long-running host
# adjacent pages are found only among many: double the pool until a run
# exists, at most to an eighth of memory.
pool_ensure_run() {	# REGION_DEMO SIZE
	local demo=$1 size=$2 dir=$HP/hugepages-2048kB cur cap
	[ "$(id -u)" -eq 0 ] && [ -x "$demo" ] && [ -d "$dir" ] || return 0
	cap=$(awk '/^MemTotal:/ {print int($2 / 8 / 2048)}' /proc/meminfo)
	while ! "$demo" "$size" 2M >/dev/null 2>&1; do
		cur=$(cat "$dir/nr_hugepages")
		if [ "$cur" -ge "$cap" ]; then
			echo "pool: no contiguous $size run among $cur free 2 MiB pages: the contiguity tests will say so"
			return 0
		fi
		echo 1 > /proc/sys/vm/compact_memory 2>/dev/null || true
		echo $(( 2 * cur < cap ? 2 * cur : cap )) > "$dir/nr_hugepages" 2>/dev/null || true
		echo "pool: no contiguous $size run among the free 2 MiB pages: nr_hugepages $cur -> $(cat "$dir/nr_hugepages")"
		[ "$(cat "$dir/nr_hugepages")" -gt "$cur" ] || return 0
	done
	return 0
}
