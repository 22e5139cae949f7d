#!/usr/bin/env bash
# The ABI against the last release's record (abi/):
#   - every recorded symbol is still exported by the shared library, at its
#     recorded version node; a new symbol sits in a node the record lacks;
#   - every recorded public struct keeps its size, and each member its
#     offset and size;
#   - nothing but hugering_* is reachable, from the .so or the .a: a program
#     calling an internal function must fail to link against either.
# scripts/check-abi.sh BUILD            check
# scripts/check-abi.sh BUILD --record   rewrite abi/ (a release, or a
#                                       deliberate break: say so in the commit)
set -euo pipefail

build=${1:?usage: check-abi.sh BUILD [--record]}
mode=${2:-check}
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
so=$(ls "$build"/libhugering.so.*.*.* | head -n1)
ar=$build/libhugering.a
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0

die() { printf 'check-abi: %s\n' "$*" >&2; fail=1; }

# name@VERSION for each symbol the .so defines.
exported() {
	objdump -T "$so" | awk '$2 == "g" && $(NF-1) ~ /^HUGERING_/ && $NF != $(NF-1) {print $NF "@" $(NF-1)}' | sort
}

# The public structs, member by member, from include/hugering.h.
layout_program() {
	awk '
	{ sub(/\/\*.*\*\//, "") }
	incomment { if (sub(/.*\*\//, "")) incomment = 0; else next }
	/\/\*/ { sub(/\/\*.*/, ""); incomment = 1 }
	/^struct hugering_[a-z_0-9]* \{/ { s = $2; print "\tP(sizeof(struct " s "), \"" s "\", \"\");"; next }
	s && /^\};/ { s = ""; next }
	s && /;/ {
		line = $0; sub(/;.*/, "", line); sub(/\[.*\]/, "", line)
		n = split(line, w, /[ \t*]+/); m = w[n]
		if (m == "") next
		print "\tP(offsetof(struct " s ", " m "), \"" s "\", \"." m "@\");"
		print "\tP(sizeof(((struct " s " *)0)->" m "), \"" s "\", \"." m "#\");"
	}' include/hugering.h
}

struct_layout() {
	{
		printf '#include <stddef.h>\n#include <stdio.h>\n#include <hugering.h>\n'
		printf '#define P(v, s, m) printf("%%s%%s %%zu\\n", s, m, (size_t)(v))\n'
		printf 'int main(void)\n{\n'
		layout_program
		printf '\treturn 0;\n}\n'
	} > "$work/layout.c"
	${CC:-cc} -std=gnu11 -Iinclude -o "$work/layout-bin" "$work/layout.c"
	"$work/layout-bin"
}

exported > "$work/symbols"
struct_layout > "$work/layout"

if [ "$mode" = --record ]; then
	cp "$work/symbols" abi/symbols
	cp "$work/layout" abi/layout
	echo "check-abi: recorded $(wc -l < abi/symbols) symbols, $(grep -c '^[a-z_0-9]* ' abi/layout) structs in abi/"
	exit 0
fi

# Symbols: none lost or moved; new ones only in new version nodes.
nodes=$(sed 's/.*@//' abi/symbols | sort -u)
while read -r s; do
	grep -qxF "$s" "$work/symbols" || die "symbol $s is gone (or moved to another version node): removing a released name breaks every program linked to it; restore it"
done < abi/symbols
while read -r s; do
	grep -qxF "$s" abi/symbols && continue
	node=${s#*@}
	if grep -qxF "$node" <<<"$nodes"; then
		die "new symbol $s in released node $node: add it to a new version node in lib/hugering.map (HUGERING_x.y { ... } $node;)"
	fi
done < "$work/symbols"

# Structs: recorded sizes and member offsets unchanged.
while read -r key val; do
	got=$(awk -v k="$key" '$1 == k {print $2}' "$work/layout")
	[ -n "$got" ] || { die "public struct field $key is gone: released binaries still use it"; continue; }
	[ "$got" = "$val" ] || die "$key is $got, released as $val: struct layouts are ABI (use the reserved fields)"
done < abi/layout

# Internal names: not reachable from either library.
leaked=$(nm -g --defined-only "$ar" 2>/dev/null | awk 'NF == 3 && $3 !~ /^hugering_/ {print $3}' | sort -u | tr '\n' ' ')
[ -z "$leaked" ] || die "the static library exports internal names: $leaked (build with -fvisibility=hidden and localize hidden symbols)"
leaked=$(nm -D --defined-only "$so" | awk 'NF == 3 && $3 !~ /^hugering_|^HUGERING_/ {print $3}' | tr '\n' ' ')
[ -z "$leaked" ] || die "the shared library exports internal names: $leaked (lib/hugering.map)"
printf 'int hr_caps(void);\nint main(void) { return hr_caps() != 0; }\n' > "$work/internal.c"
for lib in "$ar" "$so"; do
	if ${CC:-cc} -o "$work/internal" "$work/internal.c" "$lib" -luring -lpthread 2>/dev/null; then
		die "a program calling the internal hr_caps() links against $lib: internal names must stay unreachable"
	fi
done
printf '#include <hugering.h>\nint main(void) { return hugering_check_version(0, 0); }\n' > "$work/public.c"
${CC:-cc} -Iinclude -o "$work/public" "$work/public.c" "$ar" -luring -lpthread ||
	die "a program calling only public names does not link against $ar"

[ "$fail" = 0 ] || exit 1
echo "check-abi: $(wc -l < "$work/symbols") symbols and $(grep -c '^[a-z_0-9]* ' "$work/layout") structs match abi/ (release record); internal names unreachable from the .a and the .so"
