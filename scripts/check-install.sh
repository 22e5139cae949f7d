#!/usr/bin/env bash
# make install into a scratch DESTDIR, then build a program the way a user
# would (pkg-config --cflags --libs hugering), against the shared library,
# and run it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dest=$(mktemp -d /tmp/hugering-install.XXXXXX)
trap 'rm -rf "$dest"' EXIT
prefix=/usr/local

make -s -C "$top" install DESTDIR="$dest" PREFIX="$prefix" >/dev/null
export PKG_CONFIG_PATH=$dest$prefix/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$dest
flags=$(pkg-config --cflags --libs hugering)
cc -std=gnu11 -Wall -Werror -o "$dest/demo" "$top/examples/region-demo.c" $flags
# Not "ldd | grep -q": ld.so writes line by line, grep -q may leave first and
# ldd's SIGPIPE fails the pipeline (pipefail), now and then.
libs=$(LD_LIBRARY_PATH=$dest$prefix/lib ldd "$dest/demo")
grep -q "libhugering.so.0 => $dest" <<<"$libs" ||
	{ echo "check-install: demo is not linked against the installed libhugering.so.0" >&2; exit 1; }
for f in include/hugering.h lib/libhugering.a lib/libhugering.so lib/libhugering.so.0 \
	 lib/pkgconfig/hugering.pc bin/hugering-diag bin/hugering-bench share/man/man1/hugering-diag.1 \
	 share/man/man3/hugering_region_alloc.3 share/man/man7/hugering.7; do
	[ -e "$dest$prefix/$f" ] || { echo "check-install: $prefix/$f not installed" >&2; exit 1; }
done
out=$(LD_LIBRARY_PATH=$dest$prefix/lib "$dest/demo" 4K 4K)
echo "$out" | grep -q '^region: 4096 bytes' ||
	{ echo "check-install: installed demo did not run: $out" >&2; exit 1; }
echo "check-install: ok (pkg-config: $flags)"
