#!/usr/bin/env bash
# The library's files form a one-way stack: each may call only files below
# it.  Read from the objects' symbols (what each file uses, what each
# defines), so a call through a macro or an inline counts too.
#   scripts/check-layers.sh BUILD   check BUILD/lib/*.o, then show that a
#                                   planted upward call is caught
set -euo pipefail

# Bottom first.  A new file must be placed here.
LAYERS=(sys error util worker cgroup hugepage pagemap region arena layout probe iopoll registry policy cpuset params place memlock resize kernelring emptypool usermem ringpool ring sqpoll bufring bufpool regbuf ringresize version)

build=${1:?usage: check-layers.sh BUILD}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rank() {
	local i
	for i in "${!LAYERS[@]}"; do
		[ "${LAYERS[$i]}" = "$1" ] && { echo "$i"; return; }
	done
	echo -1
}

# check DIR: every object in DIR against the stack; prints one line per
# upward (or sideways) call and fails if there is any.
check() {
	local dir=$1 bad=0 o f r
	for o in "$dir"/*.o; do
		f=$(basename "$o" .o)
		# Left over from a file since moved out of lib/: not in the library.
		[ -f "$top/lib/$f.c" ] || continue
		r=$(rank "$f")
		if [ "$r" -lt 0 ]; then
			echo "check-layers: lib/$f.c is in no layer: add it to LAYERS in scripts/check-layers.sh"
			bad=1
			continue
		fi
		nm --defined-only "$o" | awk -v f="$f" 'NF == 3 && $2 ~ /[TDBR]/ {print $3, f}'
	done > "$work/defs"
	for o in "$dir"/*.o; do
		f=$(basename "$o" .o)
		[ -f "$top/lib/$f.c" ] || continue
		r=$(rank "$f")
		[ "$r" -ge 0 ] || continue
		while read -r sym; do
			local owner
			owner=$(awk -v s="$sym" '$1 == s {print $2; exit}' "$work/defs")
			[ -n "$owner" ] || continue
			# The public API is the library's face, not its plumbing: layers
			# call each other's hr_* functions (no clearing of the caller's error).
			if [[ $sym == hugering_* ]]; then
				echo "check-layers: lib/$f.c calls the public $sym (lib/$owner.c): call its hr_* internal instead"
				bad=1
				continue
			fi
			if [ "$(rank "$owner")" -ge "$r" ]; then
				echo "check-layers: lib/$f.c calls $sym in lib/$owner.c, which is not below it (${LAYERS[*]}): move the code down or the call up"
				bad=1
			fi
		done < <(nm -u "$o" | awk '{print $2}')
	done
	return "$bad"
}

check "$build/lib" || exit 1

# The check must catch a planted upward call: util.c calling the region layer.
mkdir -p "$work/planted"
cp "$build"/lib/*.o "$work/planted/"
printf 'int hr_region_alloc(const void *o, void **out);\nint hr_planted(void);\nint hr_planted(void) { return hr_region_alloc(0, 0); }\n' > "$work/util.c"
${CC:-cc} -c -o "$work/planted/util.o" "$work/util.c"
if out=$(check "$work/planted"); then
	echo "check-layers: a planted call from util.c up to region.c was not caught: the check is broken"
	exit 1
fi
grep -q "lib/util.c calls hr_region_alloc in lib/region.c" <<<"$out" || {
	echo "check-layers: the planted upward call was reported wrongly: $out"
	exit 1
}
# And a planted call of the public API from inside (bufring.c reading hugering_last_error).
rm -rf "$work/planted" && mkdir -p "$work/planted"
cp "$build"/lib/*.o "$work/planted/"
printf 'const char *hugering_last_error(void);\nconst char *hr_planted(void);\nconst char *hr_planted(void) { return hugering_last_error(); }\n' > "$work/bufring.c"
${CC:-cc} -c -o "$work/planted/bufring.o" "$work/bufring.c"
if out=$(check "$work/planted"); then
	echo "check-layers: a planted call of the public hugering_last_error from bufring.c was not caught: the check is broken"
	exit 1
fi
grep -q "lib/bufring.c calls the public hugering_last_error" <<<"$out" || {
	echo "check-layers: the planted public call was reported wrongly: $out"
	exit 1
}
echo "check-layers: ${#LAYERS[@]} layers (${LAYERS[*]}), no upward call and no internal use of the public API; planted ones are caught"
