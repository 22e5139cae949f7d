#!/usr/bin/env bash
# make check-distros: the README's two commands, exactly, as root, in fresh
# minimal Debian 12 (bookworm) and Debian 13 (trixie) chroots.
#
#   scripts/check-distros.sh [--worktree | --with PATH...] [SUITE...]
#   scripts/check-distros.sh --base-only [SUITE...]   (the cached bases only)
#                            (SUITE: bookworm, trixie; default both)
#
# Per suite:
#   base    debootstrap --variant=minbase, the security and updates suites a
#           real install has, brought up to date, plus the README's
#           prerequisites (apt-get install git make).  Cached, pristine, in
#           $HUGERING_DISTROS_CACHE (default /var/cache/hugering-distros),
#           outside the clone so that every clone on this machine (CI's too)
#           reuses it; a stamp file marks a finished one.  It never runs
#           anything of hugering.
#   copy    a fresh copy of the base into build/distros/SUITE, so that
#           install-deps really starts from scratch on every run.
#   update  apt-get update + dist-upgrade: a fresh install is up to date
#           (the cached base may be older than the archive's last point release).
#   clone   git clone of the committed HEAD (a bundle).  For development:
#           --worktree tests the whole working tree, --with PATH (repeatable)
#           HEAD plus that working-tree file; either is committed in a
#           scratch repository, the repository itself is left alone.
#   demo, check   the README's "Two commands", read from README.md, run as root,
#           under flock $HUGERING_HEAVY_LOCK (they use the host's hugepage
#           pool, which is saved before and restored after whatever happens).
#
# Each step runs in a private mount namespace (unshare -m, mount
# --make-rprivate /) with what a real system has mounted: the chroot bound
# onto itself, /proc, /sys, cgroup2 at /sys/fs/cgroup (never v1), /dev, a new
# devpts, /dev/shm, the host's /etc/resolv.conf.  The host's /proc/self/mounts
# is compared before and after.  Downloaded .debs are kept per suite in the
# cache (apt's archive directory is bound there) so reruns do not fetch them
# again; the system itself starts pristine.
#
# Logs: build/distros/SUITE.log.  Exit 0 only if every suite passed.
set -euo pipefail

self=$(readlink -f "$0")
top=$(cd "$(dirname "$self")/.." && pwd)
out=$top/build/distros
cache=${HUGERING_DISTROS_CACHE:-/var/cache/hugering-distros}
lock=${HUGERING_HEAVY_LOCK:-/tmp/hugering-heavy.lock}
# What the README tells a minimal system to install before the two commands.
PREREQ_CMD="apt-get install git make"
ROOT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

say() { printf 'check-distros: %s\n' "$*"; }
die() { printf 'check-distros: error: %s\n' "$*" >&2; exit 1; }

# ---- inside the private mount namespace: mount, chroot, run -------------
# __ns ROOT APT_ARCHIVES SCRIPT: run SCRIPT with bash in the chroot ROOT.
# Only ever in the namespace in_chroot made: run in the host's namespace,
# these mounts would stay on the host (and a later rm -rf of the chroot
# would go through its /dev).
if [ "${1:-}" = __ns ]; then
	root=$2 archives=$3 script=$4
	if [ -z "${HUGERING_HOST_MNTNS:-}" ] || [ "$(readlink /proc/self/ns/mnt)" = "$HUGERING_HOST_MNTNS" ]; then
		die "__ns is internal: it must run under in_chroot's unshare -m, not in the host's mount namespace"
	fi
	mount --make-rprivate /
	mount --bind "$root" "$root"
	mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
	mount -t sysfs -o nosuid,nodev,noexec sysfs "$root/sys"
	mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
	mount --bind /dev "$root/dev"
	mount -t devpts -o newinstance,nosuid,noexec,gid=5,mode=620,ptmxmode=666 devpts "$root/dev/pts"
	mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$root/dev/shm"
	# apt needs a resolver; a symlink there would be followed out of the chroot.
	if [ -L "$root/etc/resolv.conf" ] || [ ! -f "$root/etc/resolv.conf" ]; then
		rm -f "$root/etc/resolv.conf"
		: > "$root/etc/resolv.conf"
	fi
	mount --bind /etc/resolv.conf "$root/etc/resolv.conf"
	if [ -n "$archives" ]; then
		mkdir -p "$archives/partial"
		mount --bind "$archives" "$root/var/cache/apt/archives"
	fi
	env=("PATH=$ROOT_PATH" HOME=/root LANG=C.UTF-8 SHELL=/bin/bash USER=root LOGNAME=root)
	[ -n "${CI:-}" ] && env+=(CI="$CI")
	exec chroot "$root" /usr/bin/env -i "${env[@]}" /bin/bash -c "$script"
fi

# ---- on the host ---------------------------------------------------------
worktree=0
base_only=0
with=()
while [ $# -gt 0 ]; do
	case $1 in
	--worktree) worktree=1; shift ;;
	--base-only) base_only=1; shift ;;	# check-packages.sh: the cached bases only
	--with) [ $# -ge 2 ] || die "--with needs a path"; with+=("$2"); shift 2 ;;
	*) break ;;
	esac
done
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(bookworm trixie)

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, chroot, mounts); try: sudo make check-distros"
[ "$(uname -m)" = x86_64 ] || die "only amd64 hosts are handled (debootstrap of amd64 suites)"

# The README's two commands, from its "Two commands" sh block, comments cut.
readme_commands() {
	awk '/^## Two commands/ {s=1; next} s && /^## / {exit}
	     s && /^```sh/ {b=1; next} b && /^```/ {exit}
	     b {sub(/[ \t]*#.*/, ""); if ($0 != "") print}' "$top/README.md"
}
mapfile -t commands < <(readme_commands)
[ ${#commands[@]} -eq 2 ] ||
	die "README.md's 'Two commands' sh block has ${#commands[@]} commands, expected 2: fix README.md or this script"
grep -qF "$PREREQ_CMD" "$top/README.md" ||
	die "README.md no longer says '$PREREQ_CMD' (the prerequisites this script installs): make them agree"

mirror() {
	local uri
	uri=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list \
		/etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -n1 | tr -d ' ' || true)
	echo "${uri%/}"
}
MIRROR=${HUGERING_DEBIAN_MIRROR:-$(mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

# debootstrap from Debian's packages, simulated first like install-deps does.
need_debootstrap() {
	command -v debootstrap >/dev/null && return 0
	say "installing debootstrap"
	apt-get -q update >/dev/null
	local plan
	plan=$(apt-get -s -q install --no-install-recommends debootstrap)
	if grep -qE '^(Remv|Inst [^ ]+ \[)' <<<"$plan"; then
		die "refusing: installing debootstrap would change or remove installed packages: $(printf '%s\n' "$plan" | grep -E '^(Remv|Inst)' | xargs)"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends debootstrap >/dev/null
}

# Every mount is made in a private namespace and dies with it: none of them
# may show up in the host's table.  (Other new host mounts are someone else's.)
mounts_before=
mounts_check() {
	local root=$1 new
	new=$(comm -13 <(printf '%s\n' "$mounts_before" | sort) <(sort /proc/self/mounts))
	if grep -qF " $root" <<<"$new"; then
		die "mounts leaked to the host from the chroot $root: $(printf '%s\n' "$new" | grep -F " $root" | xargs)"
	fi
	[ -z "$new" ] || say "note: new host mounts appeared meanwhile (not from $root): $(tr '\n' ' ' <<<"$new")"
	return 0
}

# in_chroot ROOT LOG SCRIPT [ARCHIVES]: run SCRIPT in ROOT, output to LOG.
in_chroot() {
	local root=$1 log=$2 script=$3 archives=${4:-} rc=0
	mounts_before=$(cat /proc/self/mounts)
	HUGERING_HOST_MNTNS=$(readlink /proc/self/ns/mnt) \
	unshare -m --propagation unchanged -- "$self" __ns "$root" "$archives" "$script" \
		</dev/null >>"$log" 2>&1 || rc=$?
	mounts_check "$root"
	return "$rc"
}

# The host's hugepage pools, saved before a heavy step and put back after it.
# Persistent pages only: nr_hugepages counts surplus (overcommit) pages too,
# which come and go with the processes using them.
declare -A pool_saved=()
persistent() {	# POOL_DIR
	echo $(( $(cat "$1/nr_hugepages") - $(cat "$1/surplus_hugepages") ))
}
pool_save() {
	local d
	pool_saved=()
	for d in /sys/kernel/mm/hugepages/hugepages-*; do
		[ -e "$d/nr_hugepages" ] && pool_saved[$d]=$(persistent "$d")
	done
	return 0
}
pool_restore() {
	local d cur
	for d in "${!pool_saved[@]}"; do
		cur=$(persistent "$d")
		if [ "$cur" != "${pool_saved[$d]}" ]; then
			echo "${pool_saved[$d]}" > "$d/nr_hugepages" 2>/dev/null || true
			say "restored ${d##*/}: $cur -> $(persistent "$d") persistent pages (${pool_saved[$d]} before the step)"
		fi
	done
	pool_saved=()
}
trap 'pool_restore' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# heavy ROOT LOG SCRIPT ARCHIVES: in_chroot under the shared lock, pool kept.
# lock_wait: seconds the last call waited for the lock (others' heavy runs).
lock_wait=0
heavy() {
	local rc=0 fd t
	lock_wait=0
	exec {fd}>"$lock"
	t=$(date +%s)
	flock "$fd" || { say "cannot take $lock"; exec {fd}>&-; return 1; }
	lock_wait=$(( $(date +%s) - t ))
	pool_save
	in_chroot "$@" || rc=$?
	pool_restore
	exec {fd}>&-
	return "$rc"
}

now() { date +%s; }

# rm -rf of a chroot, never through a mount (its /dev is the host's /dev).
remove_tree() {
	local dir=$1
	[ -e "$dir" ] || return 0
	if awk -v d="$dir" '$2 == d || index($2, d "/") == 1 {f=1} END {exit !f}' /proc/self/mounts; then
		die "$dir still has mounts on the host (see /proc/self/mounts): not removing it; unmount them first"
	fi
	rm -rf --one-file-system "$dir"
}

# base SUITE: the pristine minimal system plus the README's prerequisites.
base() {
	local fd rc=0
	# one builder per suite on this machine (other clones may run too)
	exec {fd}>"$cache/$1.lock"
	flock "$fd" || die "cannot lock $cache/$1.lock"
	base_locked "$1" || rc=$?
	exec {fd}>&-
	return "$rc"
}
base_locked() {
	local suite=$1 dir=$cache/$1 tmp=$cache/$1.new log=$out/$1.log sec
	if [ -f "$dir/.hugering-base-done" ]; then
		echo "base: cached $dir ($(cat "$dir/.hugering-base-done"))" >>"$log"
		return 0
	fi
	need_debootstrap
	remove_tree "$tmp"
	mkdir -p "$tmp"
	echo "base: debootstrap --variant=minbase $suite $tmp $MIRROR" >>"$log"
	debootstrap --variant=minbase "$suite" "$tmp" "$MIRROR" >>"$log" 2>&1 ||
		{ say "$suite: debootstrap failed: see $log"; return 1; }
	case $MIRROR in
	*/debian) sec=${MIRROR}-security ;;
	*) sec=http://deb.debian.org/debian-security ;;
	esac
	cat > "$tmp/etc/apt/sources.list" <<EOF
deb $MIRROR $suite main
deb $MIRROR $suite-updates main
deb $sec $suite-security main
EOF
	echo "base: up to date, then the README's prerequisites: $PREREQ_CMD" >>"$log"
	in_chroot "$tmp" "$log" "set -e; export DEBIAN_FRONTEND=noninteractive
		apt-get -q update
		apt-get -y -q dist-upgrade
		$PREREQ_CMD -y -q
		apt-get clean" ||
		{ say "$suite: installing the prerequisites failed: see $log"; return 1; }
	remove_tree "$dir"
	date -u +%FT%TZ > "$tmp/.hugering-base-done"
	mv "$tmp" "$dir"
}

# The repository under test as a git bundle.
bundle() {
	local b=$bundle_file tmp
	rm -f "$b"
	if [ "$worktree" -eq 0 ] && [ ${#with[@]} -eq 0 ]; then
		git -C "$top" bundle create "$b" HEAD 2>/dev/null
		return
	fi
	tmp=$(mktemp -d "$out/worktree.XXXXXX")
	if [ "$worktree" -eq 1 ]; then
		(cd "$top" && git ls-files -z --cached --others --exclude-standard |
			while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
			tar --null -T - -cf -) | tar -xf - -C "$tmp"
		git -C "$tmp" init -q
	else
		git clone -q "$top" "$tmp"
		(cd "$top" && tar -cf - "${with[@]}") | tar -xf - -C "$tmp"
	fi
	git -C "$tmp" add -A
	git -C "$tmp" -c user.name=check-distros -c user.email=check-distros@localhost \
		commit -q --allow-empty -m "check-distros: working tree of $top"
	git -C "$tmp" bundle create "$b" HEAD 2>/dev/null
	rm -rf "$tmp"
}

declare -a summary=()
total_pass=0 total_fail=0 failed=0

# early SUITE STEP: a step before the two commands failed.
early() {
	summary+=("$1: FAILED at $2 (see $out/$1.log)")
	failed=1
	total_fail=$((total_fail + 1))
}

# run SUITE: copy, update, clone, the two commands; one summary line.
run_suite() {
	local suite=$1 root=$out/$1 log=$out/$1.log t t0 rc=0 step
	local -a times=()
	local result=ok counts="" facts
	: > "$log"
	t0=$(now)

	t=$(now)
	base "$suite" || { early "$suite" base; return 0; }
	times+=("base $(( $(now) - t ))s")

	t=$(now)
	remove_tree "$root"
	cp -a "$cache/$suite" "$root"
	mkdir -p "$cache/$suite.debs"
	times+=("copy $(( $(now) - t ))s")

	t=$(now)
	in_chroot "$root" "$log" "set -e; export DEBIAN_FRONTEND=noninteractive
		echo '== update'; apt-get -q update; apt-get -y -q dist-upgrade" "$cache/$suite.debs" ||
		{ early "$suite" update; return 0; }
	times+=("update $(( $(now) - t ))s")

	t=$(now)
	cp "$bundle_file" "$root/tmp/hugering.bundle"
	in_chroot "$root" "$log" "set -e; echo '== git clone'
		git clone -q /tmp/hugering.bundle /root/hugering; git -C /root/hugering log --oneline -1" ||
		{ early "$suite" clone; return 0; }
	times+=("clone $(( $(now) - t ))s")

	# Both commands, each on its own like a user would, whatever the first did.
	local -a bad=()
	for step in "${commands[@]}"; do
		t=$(now)
		echo "== $step" >>"$log"
		heavy "$root" "$log" "cd /root/hugering && $step" "$cache/$suite.debs" ||
			{ rc=1; bad+=("'$step'"); }
		times+=("'$step' $(( $(now) - t - lock_wait ))s")
		[ "$lock_wait" -eq 0 ] || times+=("waited ${lock_wait}s for $lock")
	done
	[ "$rc" -eq 0 ] || result="FAILED: ${bad[*]}"

	in_chroot "$root" "$log.facts" ". /etc/os-release; echo \"\$PRETTY_NAME\";
		gcc -dumpfullversion 2>/dev/null || echo none
		pkg-config --modversion liburing 2>/dev/null || echo none" || true
	mapfile -t facts < "$log.facts"
	cat "$log.facts" >>"$log"
	rm -f "$log.facts"
	# make check prints a count per suite binary set (main suite, fault seam): sum them.
	counts=$(sed -n 's/^check: \([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" |
		 awk '{p += $1; f += $2} END {if (NR) printf "%d passed, %d failed", p, f}')
	if [ -n "$counts" ]; then
		total_pass=$((total_pass + $(echo "$counts" | awk '{print $1}')))
		total_fail=$((total_fail + $(echo "$counts" | awk '{print $3}')))
	fi
	if [ "$rc" -ne 0 ]; then
		failed=1
		# a failed command counts once unless its tests already did
		case $counts in *" 0 failed"|"") total_fail=$((total_fail + 1)) ;; esac
		say "$suite: $result; what failed, from $log:"
		grep -E '\[FAIL\]|Assertion|error:|\*\*\*|FAILED|failed: ' "$log" |
			grep -vE '^(Get|Setting up|Preparing|Unpacking)' | tail -n 30 | sed 's/^/    /' || true
	fi
	summary+=("${facts[0]:-$suite}: gcc ${facts[1]:-?}, liburing ${facts[2]:-?}, ${counts:-no test counts}, $result [$(printf '%s, ' "${times[@]}")total $(( $(now) - t0 ))s]")
	[ "$rc" -ne 0 ] || remove_tree "$root"	# kept for a look when it failed
	return 0
}

mkdir -p "$out" "$cache"
if [ "$base_only" -eq 1 ]; then
	for s in "${suites[@]}"; do base "$s" || die "$s: no base system: see $out/$s.log"; done
	exit 0
fi
bundle_file=$out/hugering.$$.bundle
bundle
extra=
[ "$worktree" -eq 0 ] || extra=" + working tree"
[ ${#with[@]} -eq 0 ] || extra=" + ${with[*]}"
say "testing $(git -C "$top" rev-parse --short HEAD)$extra on ${suites[*]}; mirror $MIRROR; logs in $out"
for s in "${suites[@]}"; do
	say "$s: running (log $out/$s.log)"
	run_suite "$s"
	say "${summary[-1]}"
done
rm -f "$bundle_file"
say "summary (host mounts: nothing leaked from the chroots):"
for line in "${summary[@]}"; do say "  $line"; done
echo "check-distros: $total_pass passed, $total_fail failed"
[ "$failed" -eq 0 ]
