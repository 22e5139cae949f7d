#!/usr/bin/env bash
# Are the build and test dependencies here?  If not: install them when root,
# otherwise say exactly what to run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

missing=()
pkg-config --exists 'liburing >= 2.5' 2>/dev/null || missing+=("liburing >= 2.5")
[ -f /usr/include/criterion/criterion.h ] || missing+=(libcriterion-dev)
command -v cc >/dev/null || missing+=(a C compiler)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v setpriv >/dev/null || missing+=("setpriv (util-linux)")
command -v gnuplot >/dev/null || missing+=(gnuplot-nox)
command -v groff >/dev/null || missing+=(groff-base)
command -v man >/dev/null || missing+=(man-db)
command -v mandoc >/dev/null || missing+=(mandoc)
command -v sysctl >/dev/null || missing+=("procps (sysctl)")
# Only make fuzz (deps-ok.sh fuzz) needs clang with its libFuzzer runtime:
# make demo and make check do not pull a second compiler in for it.
if [ "${1:-}" != fuzz ]; then
	:
elif ! command -v clang >/dev/null; then
	missing+=(clang)
elif [ ! -f "$(clang -print-file-name=libclang_rt.fuzzer-$(uname -m).a 2>/dev/null)" ] &&
     [ ! -f "$(clang -print-runtime-dir 2>/dev/null)/libclang_rt.fuzzer.a" ]; then
	missing+=("libclang-rt-dev (libFuzzer)")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
	echo "deps: missing ${missing[*]}: running scripts/install-deps.sh"
	exec "$here/install-deps.sh"
fi
echo "deps: missing ${missing[*]}; run as root: sudo make deps" >&2
exit 1
