#!/usr/bin/env bash
# The man pages: every public function of include/hugering.h has
# man/man3/<function>.3; every page renders without a warning through
# groff (-ww) and man(1), and passes `mandoc -T lint` when mandoc is
# installed; every .so stub names a page that exists.  One line per
# failure; exit 1 if any.
set -euo pipefail

# A locale the system lacks makes man(1) warn; C.UTF-8 is built into glibc.
export LC_ALL=C.UTF-8
root=$(cd "$(dirname "$0")/.." && pwd)
header=$root/include/hugering.h
mandir=$root/man
fails=0

fail() {
	printf 'check-man: %s\n' "$*" >&2
	fails=$((fails + 1))
}

for tool in groff man perl; do
	command -v "$tool" >/dev/null ||
		{ printf 'check-man: %s is not installed: run scripts/install-deps.sh (as root)\n' \
			"$tool" >&2; exit 1; }
done

# The stub's target, or nothing for a full page.
so_target() {
	sed -n '1s/^\.so[[:space:]]\{1,\}\([^[:space:]]*\).*/\1/p' "$1"
}

# (a) Declared functions: names followed by '(' once comments are gone.
mapfile -t funcs < <(perl -0777 -pe 's{/\*.*?\*/}{}gs; s{//[^\n]*}{}g' "$header" |
		     grep -o '\bhugering_[a-z_0-9]*[[:space:]]*(' | tr -d ' \t(' | sort -u)
[ ${#funcs[@]} -gt 0 ] || fail "no hugering_* function found in $header: is the parse wrong?"
for f in "${funcs[@]}"; do
	[ -f "$mandir/man3/$f.3" ] ||
		fail "$f (include/hugering.h) has no man page: write man/man3/$f.3"
done

# (b) and (c), page by page.  Relative .so paths resolve from man/.
cd "$mandir"
shopt -s nullglob
pages=(man3/*.3 man7/*.7 man1/*.1)
[ ${#pages[@]} -gt 0 ] || fail "no man pages under $mandir"
for p in "${pages[@]}"; do
	p=${p#./}
	target=$(so_target "$p")
	if [ -n "$target" ]; then
		[ -f "$target" ] || fail "man/$p: .so points to man/$target, which does not exist"
		continue	# rendering a stub renders its target, checked below
	fi
	out=$(groff -man -ww -z "$p" 2>&1) || fail "man/$p: groff failed: ${out:-exit status $?}"
	[ -z "$out" ] || fail "man/$p: groff -ww warns: $(printf '%s' "$out" | head -n 1)"
	err=$(MANWIDTH=80 man -l "$p" 2>&1 >/dev/null) || fail "man/$p: man -l failed: $err"
	[ -z "$err" ] || fail "man/$p: man -l warns: $(printf '%s' "$err" | head -n 1)"
	if command -v mandoc >/dev/null; then
		# Warnings and worse; its style hints (lower-case titles, long
		# source lines) are liburing's conventions too.
		out=$(mandoc -T lint -W warning "$p" 2>&1) || true
		[ -z "$out" ] || fail "man/$p: mandoc -T lint: $(printf '%s' "$out" | head -n 1)"
	fi
done

if [ "$fails" -gt 0 ]; then
	printf 'check-man: %d problem(s) in man/ (see above)\n' "$fails" >&2
	exit 1
fi
printf 'check-man: %d functions, %d pages: ok%s\n' "${#funcs[@]}" "${#pages[@]}" \
	"$(command -v mandoc >/dev/null || echo ' (mandoc not installed: lint skipped)')"
