#!/usr/bin/env bash
# make check-packages: the Debian packages (debian/), built and used, in fresh
# minimal Debian 12 (bookworm) and Debian 13 (trixie) chroots.
#
#   scripts/check-packages.sh [--worktree] [SUITE...]   (default: bookworm trixie)
#
# Per suite:
#   base     the pristine minimal system check-distros.sh caches in
#            $HUGERING_DISTROS_CACHE (default /var/cache/hugering-distros),
#            made by it if missing (check-distros.sh --base-only).
#   build    a copy of the base; the committed HEAD (--worktree: the working
#            tree) copied in; make deps (scripts/install-deps.sh: on Debian 12
#            liburing 2.9 from trixie, pinned), apt-get build-dep, then
#            dpkg-buildpackage -us -uc -b; lintian on the .changes, failing
#            on errors (warnings are listed).  The .debs land in
#            build/packages/SUITE/.
#   install  another fresh copy of the base (on Debian 12 with install-deps's
#            apt source and pin for liburing, nothing installed):
#            apt-get install ./libhugering0_*.deb ./libhugering-dev_*.deb
#            ./hugering-tools_*.deb, plus gcc and pkgconf.
#   use      examples/region-demo.c built with `pkg-config --cflags --libs
#            hugering` against the installed -dev package, linked to the
#            installed libhugering.so.0, run (4 KiB pages: no hugepage pool
#            needed); hugering-diag --version and --help from hugering-tools.
#
# Nothing here touches the hugepage pool, so no heavy lock.  Mounts are made
# by check-distros.sh's __ns step, in a private mount namespace that dies
# with the step; before a chroot is removed, findmnt must show nothing
# mounted under it.  Downloaded .debs are shared with check-distros in
# $cache/SUITE.debs.  Logs: build/packages/SUITE.log.
set -euo pipefail

self=$(readlink -f "$0")
top=$(cd "$(dirname "$self")/.." && pwd)
distros=$top/scripts/check-distros.sh
out=$top/build/packages
cache=${HUGERING_DISTROS_CACHE:-/var/cache/hugering-distros}

say() { printf 'check-packages: %s\n' "$*"; }
die() { printf 'check-packages: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s; }

worktree=0
[ "${1:-}" != --worktree ] || { worktree=1; shift; }
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mounts); try: sudo make check-packages"
[ -x "$distros" ] || die "$distros missing: it makes and mounts the chroots"

version=$(make -s --no-print-directory -C "$top" print-version)
deb_version=$(sed -n '1s/^hugering (\([^)]*\)).*/\1/p' "$top/debian/changelog")
[ "$version" = "$deb_version" ] ||
	die "debian/changelog says $deb_version but include/hugering.h says $version: add a changelog entry (dch -v $version)"

# Is anything mounted at or under DIR, on the host?
mounted_under() {
	findmnt -rn -o TARGET | awk -v d="$1" '$0 == d || index($0, d "/") == 1 {f=1} END {exit !f}'
}

# rm -rf of a chroot, never through a mount (a bound /dev is the host's /dev).
remove_tree() {
	local dir=$1
	[ -e "$dir" ] || return 0
	if mounted_under "$dir"; then
		say "NOT removing $dir: something is still mounted under it (findmnt | grep $dir); unmount it, then remove it"
		return 1
	fi
	rm -rf --one-file-system "$dir"
}

# Chroots of this run, removed on any exit (kept when a step failed).
declare -a made=()
keep=()
cleanup() {
	local d
	for d in "${made[@]}"; do
		case " ${keep[*]} " in *" $d "*) continue ;; esac
		remove_tree "$d" || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# in_chroot ROOT LOG SUITE SCRIPT: SCRIPT with bash in ROOT, mounts only in a
# private namespace (check-distros.sh __ns), apt's archives in the cache.
in_chroot() {
	local root=$1 log=$2 suite=$3 script=$4 rc=0
	HUGERING_HOST_MNTNS=$(readlink /proc/self/ns/mnt) \
	unshare -m --propagation unchanged -- "$distros" __ns "$root" "$cache/$suite.debs" "$script" \
		</dev/null >>"$log" 2>&1 || rc=$?
	! mounted_under "$root" || die "mounts leaked to the host under $root (findmnt): unmount them before anything removes $root"
	return "$rc"
}

# fresh SUITE NAME: a new copy of the base at $out/SUITE-NAME, in $fresh_dir
# (not echoed: made+= must not happen in a subshell).
fresh_dir=
fresh() {
	fresh_dir=$out/$1-$2
	remove_tree "$fresh_dir" || die "cannot start: $fresh_dir still has mounts"
	made+=("$fresh_dir")
	cp -a "$cache/$1" "$fresh_dir"
	mkdir -p "$cache/$1.debs"
}

# The source tree to package: HEAD, or the working tree with --worktree.
export_source() {
	local dest=$1
	mkdir -p "$dest"
	if [ "$worktree" -eq 1 ]; then
		(cd "$top" && git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf -) | tar -xf - -C "$dest"
	else
		git -C "$top" archive HEAD | tar -xf - -C "$dest"
	fi
}

APT='export DEBIAN_FRONTEND=noninteractive; apt_get() { apt-get -y -q -o Dpkg::Use-Pty=0 "$@"; }'

declare -a summary=()
failed=0

# fail SUITE STEP ROOT: one line, the log's tail, the chroot kept for a look.
fail() {
	local log=$out/$1.log
	failed=1
	[ -z "${3:-}" ] || keep+=("$3")
	summary+=("$1: FAILED at $2 (log $log${3:+, chroot kept in $3})")
	say "$1: FAILED at $2; last lines of $log:"
	tail -n 25 "$log" | sed 's/^/    /'
}

run_suite() {
	local suite=$1 log=$out/$1.log debs=$out/$1 t t0 b c lint
	local -a times=()
	: > "$log"
	rm -rf "$debs"
	t0=$(now)

	t=$(now)
	"$distros" --base-only "$suite" >>"$log" 2>&1 || { fail "$suite" base; return 0; }
	[ -f "$cache/$suite/.hugering-base-done" ] || { fail "$suite" base; return 0; }
	times+=("base $(( $(now) - t ))s")

	# build: make deps, build-dep, dpkg-buildpackage, lintian
	t=$(now)
	fresh "$suite" build; b=$fresh_dir
	export_source "$b/root/src/hugering-$version"
	echo "== build in $b" >>"$log"
	in_chroot "$b" "$log" "$suite" "set -eo pipefail; $APT
		apt_get update; apt_get dist-upgrade
		cd /root/src/hugering-$version
		echo '== make deps'; scripts/install-deps.sh
		echo '== build-dep'; apt_get install --no-install-recommends lintian; apt_get build-dep ./
		echo '== dpkg-buildpackage'; dpkg-buildpackage -us -uc -b" ||
		{ fail "$suite" "dpkg-buildpackage" "$b"; return 0; }
	times+=("build $(( $(now) - t ))s")
	t=$(now)
	in_chroot "$b" "$log" "$suite" "set -eo pipefail; cd /root/src
		echo '== lintian'; lintian --version
		lintian --fail-on error --display-info hugering_${version}_*.changes | tee lintian.txt" ||
		{ fail "$suite" "lintian: errors (its E: lines in the log)" "$b"; return 0; }
	times+=("lintian $(( $(now) - t ))s")
	mkdir -p "$debs"
	cp "$b/root/src/"*.deb "$b/root/src/"*.changes "$b/root/src/"*.buildinfo "$b/root/src/lintian.txt" "$debs/"
	lint=$(grep -cE '^W: ' "$debs/lintian.txt" || true)

	# install into a clean system, then use
	t=$(now)
	fresh "$suite" install; c=$fresh_dir
	mkdir -p "$c/tmp/debs"
	cp "$debs/libhugering0_${version}_"*.deb "$debs/libhugering-dev_${version}_"*.deb \
	   "$debs/hugering-tools_${version}_"*.deb "$top/examples/region-demo.c" "$c/tmp/debs/"
	# Debian 12: liburing (>= 2.5) only from trixie, the project's pin.
	local f
	for f in etc/apt/sources.list.d/hugering-liburing.sources etc/apt/preferences.d/hugering-liburing; do
		[ ! -f "$b/$f" ] || cp "$b/$f" "$c/$f"
	done
	remove_tree "$b" || die "$b still has mounts"
	echo "== install in $c" >>"$log"
	in_chroot "$c" "$log" "$suite" "set -eo pipefail; $APT
		apt_get update; apt_get dist-upgrade
		cd /tmp/debs
		apt_get install --no-install-recommends ./libhugering0_*.deb ./libhugering-dev_*.deb ./hugering-tools_*.deb gcc libc6-dev pkgconf" ||
		{ fail "$suite" "apt install of the .debs" "$c"; return 0; }
	times+=("install $(( $(now) - t ))s")

	t=$(now)
	echo "== use" >>"$log"
	in_chroot "$c" "$log" "$suite" "set -eo pipefail; cd /tmp/debs
		dpkg -l libhugering0 libhugering-dev hugering-tools | grep '^ii'
		flags=\$(pkg-config --cflags --libs hugering); echo \"pkg-config: \$flags\"
		cc -std=gnu11 -Wall -Werror -o region-demo region-demo.c \$flags
		libs=\$(ldd ./region-demo); echo \"\$libs\"
		grep -qE 'libhugering.so.0 => (/usr)?/lib/[^ ]*/libhugering.so.0 ' <<<\"\$libs\" ||
			{ echo 'region-demo is not linked against the installed libhugering.so.0'; exit 1; }
		./region-demo 4K 4K | tee demo.txt; grep -q '^region: 4096 bytes' demo.txt
		hugering-diag --version; hugering-diag --help >/dev/null
		ls /usr/lib/*/hugering/libhugering-preload.so
		echo '== use: ok'" ||
		{ fail "$suite" "use of the installed packages" "$c"; return 0; }
	times+=("use $(( $(now) - t ))s")
	remove_tree "$c" || die "$c still has mounts"

	local -a made_debs=("$debs"/libhugering0_*.deb "$debs"/libhugering-dev_*.deb "$debs"/hugering-tools_*.deb)
	summary+=("$suite: ok, ${made_debs[*]##*/}, lintian: no errors, ${lint} warnings (in $debs/lintian.txt) [$(printf '%s, ' "${times[@]}")total $(( $(now) - t0 ))s]")
}

mkdir -p "$out" "$cache"
say "packaging $(git -C "$top" rev-parse --short HEAD)$([ "$worktree" -eq 0 ] || echo ' + working tree') ($version) on ${suites[*]}; logs in $out"
for s in "${suites[@]}"; do
	say "$s: running (log $out/$s.log)"
	run_suite "$s"
	say "${summary[-1]}"
	[ ! -s "$out/$s/lintian.txt" ] || sed 's/^/    lintian: /' "$out/$s/lintian.txt"
done
say "summary:"
for line in "${summary[@]}"; do say "  $line"; done
if [ "$failed" -ne 0 ]; then
	echo "check-packages: FAILED: $(printf '%s\n' "${summary[@]}" | grep FAILED | paste -sd ';')" >&2
	exit 1
fi
echo "check-packages: ok"
