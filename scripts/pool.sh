# Sourced: reserve the hugepages tests need, restore the pool on exit.
# HUGERING_TEST_PAGES_2M / _1G override the counts.
NEED_2M=${HUGERING_TEST_PAGES_2M:-128}
NEED_1G=${HUGERING_TEST_PAGES_1G:-1}
HP=/sys/kernel/mm/hugepages
declare -A saved_pool=()

pool_reserve_one() {	# DIR COUNT: raise the pool to COUNT, never lower it
	local dir=$HP/$1 want=$2 cur got
	[ -d "$dir" ] || { echo "pool: no $1 pool in this kernel"; return 0; }
	cur=$(cat "$dir/nr_hugepages")
	saved_pool[$1]=$cur
	[ "$cur" -ge "$want" ] && return 0
	echo "$want" > "$dir/nr_hugepages" 2>/dev/null
	got=$(cat "$dir/nr_hugepages")
	echo "pool: $1: nr_hugepages $cur -> $got (wanted $want)"
}

pool_restore() {
	for k in "${!saved_pool[@]}"; do
		echo "${saved_pool[$k]}" > "$HP/$k/nr_hugepages" 2>/dev/null || true
	done
}

# As root: reserve both sizes now and restore at exit.
pool_reserve() {
	[ "$(id -u)" -eq 0 ] || return 0
	trap pool_restore EXIT
	pool_reserve_one hugepages-2048kB "$NEED_2M"
	pool_reserve_one hugepages-1048576kB "$NEED_1G"
}
