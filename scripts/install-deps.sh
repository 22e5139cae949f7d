#!/usr/bin/env bash
# Install what hugering needs to build and test: liburing >= 2.5,
# Criterion, the build tools.  Idempotent; run as root.  Supported: Debian 12,
# Debian 13, Ubuntu 24.04.
#
# Debian 12 ships liburing 2.3, too old (no io_uring_queue_init_mem).  We take
# only liburing2/liburing-dev from Debian 13 (trixie), pinned so that nothing
# else ever comes from trixie, and linux-libc-dev from bookworm-backports
# (trixie's liburing headers include <linux/blkdev.h>, absent from 6.1 headers).
# libc6 and the compiler are never touched: the install is simulated first and
# refused if it would upgrade or downgrade them, or remove anything.
set -euo pipefail

say()  { printf 'install-deps: %s\n' "$*"; }
die()  { printf 'install-deps: error: %s\n' "$*" >&2; exit 1; }

MIN_LIBURING=2.5
# gnuplot-nox: hugering-bench --plot (and its test) draws with it.
# groff-base, man-db, mandoc: scripts/check-man.sh renders and lints man/.
# clang, libclang-rt-dev (libFuzzer, ASan/UBSan runtimes): make fuzz.
# procps: sysctl, which the --persist test runs on what hugering-diag wrote.
COMMON_PKGS=(build-essential pkg-config make gcc libcriterion-dev
             util-linux gnuplot-nox groff-base man-db mandoc procps
             clang libclang-rt-dev)
SOURCES_FILE=/etc/apt/sources.list.d/hugering-liburing.sources
PIN_FILE=/etc/apt/preferences.d/hugering-liburing

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install); try: sudo $0"
[ -r /etc/os-release ] || die "/etc/os-release missing: cannot tell the distribution"
# shellcheck disable=SC1091
. /etc/os-release

export DEBIAN_FRONTEND=noninteractive
APT_GET=(apt-get -y -q -o Dpkg::Use-Pty=0)
updated=0
apt_update() {
	if [ "$updated" -eq 0 ]; then
		say "apt-get update"
		"${APT_GET[@]}" update >/dev/null
		updated=1
	fi
}

liburing_ok() {
	local v
	v=$(pkg-config --modversion liburing 2>/dev/null) || return 1
	dpkg --compare-versions "$v" ge "$MIN_LIBURING"
}

# Debian 12: trixie and bookworm-backports as extra suites, trixie pinned to 1
# except for the two liburing packages.
setup_bookworm_sources() {
	local uri
	uri=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
		/etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -n1 | tr -d ' ' || true)
	[ -n "$uri" ] || uri=http://deb.debian.org/debian
	local want
	want=$(cat <<EOF
Types: deb
URIs: $uri
Suites: bookworm-backports trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
)
	if [ ! -f "$SOURCES_FILE" ] || [ "$(cat "$SOURCES_FILE")" != "$want" ]; then
		say "adding bookworm-backports and trixie (pinned) to $SOURCES_FILE"
		printf '%s\n' "$want" > "$SOURCES_FILE"
		updated=0
	fi
	local pin
	pin=$(cat <<'EOF'
# hugering: nothing from trixie except liburing (Debian 12 has only 2.3).
Package: *
Pin: release n=trixie
Pin-Priority: 1

Package: liburing2 liburing-dev
Pin: release n=trixie
Pin-Priority: 990

Package: linux-libc-dev
Pin: release n=bookworm-backports
Pin-Priority: 990
EOF
)
	if [ ! -f "$PIN_FILE" ] || [ "$(cat "$PIN_FILE")" != "$pin" ]; then
		say "pinning trixie to priority 1 in $PIN_FILE"
		printf '%s\n' "$pin" > "$PIN_FILE"
	fi
}

# The version trixie offers, so the install names it explicitly.
trixie_version() {
	apt-cache madison "$1" | awk -F'|' '$3 ~ /trixie/ {gsub(/ /,"",$2); print $2; exit}'
}

# Core packages: libc and the compiler's runtime, and the compiler itself when
# it is already installed.  Installing one fresh changes nothing (libc6-dev at
# the installed libc6's version, say); upgrading, downgrading or removing an
# installed one is what we refuse.
CORE_RE='^(libc6|libc-bin|libc6-dev|libstdc\+\+6|libgcc-s1|gcc|gcc-[0-9]+|cpp|cpp-[0-9]+|gcc-[0-9]+-base|libgcc-[0-9]+-dev)$'

# Refuse a plan that changes an installed core package, removes anything, or
# brings a libc6-dev that does not match the installed libc6.
# apt-get -s prints "Inst PKG [OLDVER] (NEWVER ...)": [OLDVER] only when PKG
# is installed (an upgrade or a downgrade); "Remv PKG [VER]".
check_plan() {
	local plan changed removed libc dev
	plan=$("${APT_GET[@]}" -s install --no-install-recommends "$@")
	changed=$(printf '%s\n' "$plan" | awk '$1 == "Inst" && $3 ~ /^\[/ {print $2}' |
		grep -E "$CORE_RE" || true)
	[ -z "$changed" ] ||
		die "refusing: installing would upgrade or downgrade core packages: $(xargs <<<"$changed"); bring the system up to date first (apt-get update && apt-get upgrade), then rerun"
	removed=$(printf '%s\n' "$plan" | awk '$1 == "Remv" {print $2}' | xargs)
	[ -z "$removed" ] || die "refusing: installing would remove packages: $removed"
	dev=$(printf '%s\n' "$plan" | awk '$1 == "Inst" && $2 == "libc6-dev" {gsub(/[()]/, "", $3); print $3}')
	libc=$(dpkg-query -W -f='${Version}' libc6 2>/dev/null || true)
	if [ -n "$dev" ] && [ "$dev" != "$libc" ]; then
		die "refusing: libc6-dev $dev would not match the installed libc6 ${libc:-(none)}; bring the system up to date first (apt-get update && apt-get upgrade), then rerun"
	fi
}

install_pkgs() {
	check_plan "$@"
	say "installing: $*"
	"${APT_GET[@]}" install --no-install-recommends "$@" >/dev/null
}

case "${ID:-}:${VERSION_ID:-}" in
debian:12)
	setup_bookworm_sources
	apt_update
	lv=$(trixie_version liburing-dev)
	[ -n "$lv" ] || die "trixie offers no liburing-dev: check $SOURCES_FILE and network"
	kv=$(apt-cache madison linux-libc-dev | awk -F'|' '$3 ~ /bookworm-backports/ {gsub(/ /,"",$2); print $2; exit}')
	[ -n "$kv" ] || die "bookworm-backports offers no linux-libc-dev"
	install_pkgs "${COMMON_PKGS[@]}" "liburing2=$lv" "liburing-dev=$lv" "linux-libc-dev=$kv"
	;;
debian:13|ubuntu:24.04)
	apt_update
	install_pkgs "${COMMON_PKGS[@]}" liburing-dev
	;;
*)
	die "unsupported distribution '${PRETTY_NAME:-unknown}' (${ID:-?} ${VERSION_ID:-?}); supported: Debian 12, Debian 13, Ubuntu 24.04. Install liburing-dev >= $MIN_LIBURING and libcriterion-dev by hand."
	;;
esac

liburing_ok || die "liburing >= $MIN_LIBURING not found by pkg-config after install"
say "ok: liburing $(pkg-config --modversion liburing), libc6 $(dpkg-query -W -f='${Version}' libc6), criterion $(dpkg-query -W -f='${Version}' libcriterion-dev)"
