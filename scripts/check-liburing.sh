#!/usr/bin/env bash
# Build and test hugering against an older liburing release (default 2.5,
# what Ubuntu 24.04 ships), from its upstream tarball:
#
#   1. liburing unpacked and built under build/peers/ (./configure
#      --prefix=build/peers/liburing-X.Y-install, make -C src, install there);
#   2. hugering's library, tools, examples, bench, preload object (compiled
#      only: it defines liburing's names, so it links to a shared liburing)
#      and Criterion tests built in their own, wiped directory (default
#      build-liburingXY)
#      with those headers ahead of the system's, -Werror, and any warning
#      in the log a failure;
#   3. liburing linked statically (its liburing.a, built -fPIC): the tests'
#      unprivileged pass runs a copy of the binary as nobody, who may not
#      reach an rpath inside this tree.  `ldd` must then show no liburing at
#      all, and the test liburing/runs_the_liburing_it_was_built_against
#      checks that the running liburing and the headers are both X.Y;
#   4. the liburing-dependent suites run through scripts/run-tests.sh (as
#      root and unprivileged) under the heavy lock.
#
#   scripts/check-liburing.sh [TARBALL]
#     TARBALL   default $HUGERING_LIBURING25, else
#               ../shared/peers/liburing-2.5.tar.gz beside the repository
#     HUGERING_LIBURING_BUILD  hugering's build directory, wiped first
#               (default build-liburingXY; not BUILD, which `make VAR=...`
#               would hand down from the main build)
#     HUGERING_LIBURING_TESTS  Criterion filter
#               (default '@(ring|layout|arena|persona|bench|liburing)/*')
#
# A missing tarball fails in CI (CI set, not "false"); elsewhere it is one
# explained SKIP line and exit 0.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

say() { printf 'check-liburing: %s\n' "$*"; }
die() { printf 'check-liburing: FAILED: %s\n' "$*" >&2; exit 1; }
in_ci() { [ -n "${CI:-}" ] && [ "${CI}" != false ]; }

tarball=${1:-${HUGERING_LIBURING25:-$top/../shared/peers/liburing-2.5.tar.gz}}
if [ ! -r "$tarball" ]; then
	what="no liburing release tarball at $tarball: put liburing-2.5.tar.gz (upstream \`git archive --prefix=liburing-2.5/ liburing-2.5\`) in ../shared/peers/, or name one with HUGERING_LIBURING25=PATH or as the argument"
	in_ci && die "$what"
	say "SKIP: $what"
	exit 0
fi
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")
filter=${HUGERING_LIBURING_TESTS:-'@(ring|layout|arena|persona|bench|liburing)/*'}
CC=${CC:-cc}
t0=$(date +%s)

# -- 1. liburing, rebuilt only when the tarball changed --------------------
name=$(tar -tzf "$tarball" | sed -n 1p) || die "cannot list $tarball (not a gzip tar?)"
name=${name%%/*}
[ -n "$name" ] || die "$tarball has no top directory (expected liburing-X.Y/)"
peers=$top/build/peers
src=$peers/$name
prefix=$peers/$name-install
stamp=$prefix/.built-from
sum=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
	say "building $name from $tarball (log: $peers/$name-build.log)"
	rm -rf "$src" "$prefix"
	mkdir -p "$peers"
	tar -C "$peers" -xzf "$tarball"
	[ -x "$src/configure" ] || die "$tarball did not unpack to $src/configure"
	log=$peers/$name-build.log
	# -fPIC: its liburing.a goes into libhugering.so too.
	if ! ( cd "$src" && unset MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES &&
	       ./configure --prefix="$prefix" --cc="$CC" &&
	       make -C src -j"$(nproc)" LIBURING_CFLAGS=-fPIC &&
	       make -C src install ) >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "building $name failed (full log $log): is a C compiler and make installed?"
	fi
	# Only the static library in the directory hugering links from.
	mkdir -p "$prefix/static"
	cp "$src/src/liburing.a" "$prefix/static/"
	echo "$sum" >"$stamp"
else
	say "$name already built in $prefix"
fi
vh=$prefix/include/liburing/io_uring_version.h
[ -r "$vh" ] || die "$vh missing: $name predates liburing 2.4's version header (hugering needs 2.5+)"
major=$(sed -n 's/^#define IO_URING_VERSION_MAJOR *\([0-9]*\).*/\1/p' "$vh")
minor=$(sed -n 's/^#define IO_URING_VERSION_MINOR *\([0-9]*\).*/\1/p' "$vh")
if [ -z "$major" ] || [ -z "$minor" ]; then die "no version in $vh"; fi
ver=$major.$minor

# -- 2. hugering against it, warning-free -----------------------------------
BUILD=${HUGERING_LIBURING_BUILD:-build-liburing$major$minor}
case $BUILD in
*/*|.*|"") die "HUGERING_LIBURING_BUILD=$BUILD: give a plain directory name (it is made at the top of the tree)";;
*liburing*) ;;
*) die "HUGERING_LIBURING_BUILD=$BUILD: the name must contain 'liburing' (the directory is wiped first)";;
esac
blog=$top/$BUILD/build.log
say "building hugering against liburing $ver in $BUILD/ (log: $blog)"
rm -rf "${top:?}/$BUILD"
mkdir -p "$top/$BUILD"
# A make of its own: no jobserver or variables from a calling make.
if ! env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES \
	make -j"$(nproc)" BUILD="$BUILD" CC="$CC" \
	CFLAGS="-O2 -g -I$prefix/include" LDFLAGS="-L$prefix/static" \
	lib tools examples bench "$BUILD/tools/preload/hugering-preload.o" \
	"$BUILD/tests/hugering-tests" >"$blog" 2>&1; then
	grep -E 'error|warning|multiple definition|undefined' "$blog" | grep -v -- -Werror |
		head -n 20 >&2 || tail -n 20 "$blog" >&2
	die "hugering does not build against liburing $ver (full log $blog)"
fi
if grep -i 'warning' "$blog" >&2; then
	die "the build against liburing $ver has warnings (above; full log $blog)"
fi
bin=$BUILD/tests/hugering-tests
for f in "$bin" "$BUILD/libhugering.so"; do
	if ldd "$f" | grep liburing >/dev/null; then
		ldd "$f" >&2
		die "$f loads a shared liburing: it must carry liburing $ver's liburing.a"
	fi
done
nm "$bin" | grep ' T io_uring_queue_init_mem$' >/dev/null ||
	die "$bin has no io_uring_queue_init_mem of its own: liburing $ver was not linked in"
say "built warning-free against liburing $ver; no shared liburing loaded"

# -- 3. the tests, liburing X.Y checked at run time ------------------------
# Criterion prints skipped tests only when verbose: a TAP report (written
# by each pass in turn, so the last, unprivileged one when root) lists them.
tap=$(mktemp -d /tmp/hugering-liburing-tap.XXXXXX)
trap 'rm -rf "$tap"' EXIT
chmod 755 "$tap"
: >"$tap/report.tap"
chmod 666 "$tap/report.tap"
list_skips() {
	local skips
	skips=$(grep ' # SKIP ' "$tap/report.tap" | grep -v ' # SKIP test was skipped$' |
		sed 's/^ok - /  /; s/  *# SKIP /: /') || true
	if [ -n "$skips" ]; then
		say "skipped, with the reason (last pass):"
		printf '%s\n' "$skips"
	else
		say "no test skipped"
	fi
}
say "running $filter (waiting for the heavy lock)"
t1=$(date +%s)
# shellcheck disable=SC2016 # the inner bash expands it
if ! HUGERING_TEST_LIBURING=$ver CRITERION_OUTPUTS=tap:$tap/report.tap \
	flock "${HUGERING_HEAVY_LOCK:-/tmp/hugering-heavy.lock}" bash -c \
	'echo "check-liburing: heavy lock taken after $(( $(date +%s) - $1 )) s"; shift; exec "$@"' \
	lock "$t1" scripts/run-tests.sh --filter "$filter" "$bin"; then
	list_skips
	die "tests against liburing $ver failed (above)"
fi
list_skips
say "liburing $ver: passed in $(( $(date +%s) - t0 )) s"
