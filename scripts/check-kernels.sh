#!/usr/bin/env bash
# Boot real older Debian kernels under QEMU with tests/kernels/kinit.c as
# /init, and check that hugering chose what each kernel allows:
#   6.1  (no NO_MMAP):       probe "unsupported", every ring kernel-mapped with a reason
#   6.12 (vmap'ed user mem): probe "any", every ring NO_MMAP in hugepages
# and on both a buffer ring (IOU_PBUF_RING_INC on 6.12, refused with the reason
# on 6.1) and a registered buffer pool cloned into a second ring (shared on 6.12,
# registered again with the repeated charge on 6.1);
# and on both, with the package's null_blk loaded with a poll queue, that the
# IOPOLL probe's live polled read says yes and the factory keeps IOPOLL.
# Then 6.12 once more on two NUMA nodes (QEMU -numa, a CPU and half the
# memory each, 2 MiB pages reserved per node): a region and rings placed on
# node 1, and the local-node option from a thread on CPU 1 and for an SQPOLL
# thread on CPU 1, all on node 1 per move_pages; hugering-diag --json shows
# both nodes' pools.  (Debian's cloud kernel has CONFIG_NUMA and ACPI SRAT.)
# Usage: check-kernels.sh BUILD_DIR   (needs BUILD_DIR/libhugering.a and
# BUILD_DIR/tools/diag/model-lib.o, the diag model the tool links)
# Serial logs stay in BUILD_DIR/kernels/*.log.
set -uo pipefail
build=${1:?usage: check-kernels.sh BUILD_DIR}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$build/kernels
mkdir -p "$work"
work=$(cd "$work" && pwd)

say() { printf 'check-kernels: %s\n' "$*"; }
die() { printf 'check-kernels: error: %s\n' "$*" >&2; exit 1; }

# Expectations, one line per kernel series: suite-regex version-regex expect mode
KERNELS=(
	"bookworm-security|bookworm/main 6.1 unsupported kernel"
	"bookworm-backports 6.12 any nommap_huge"
)
# Overridable to prove the check can fail: HUGERING_KERNEL_EXPECT_6_12=contiguous,
# or HUGERING_KERNEL_POLL_QUEUES=0 (the disk meant to poll then cannot).
export DEBIAN_FRONTEND=noninteractive

install_qemu() {
	command -v qemu-system-x86_64 >/dev/null && command -v cpio >/dev/null && return 0
	[ "$(id -u)" -eq 0 ] || die "qemu-system-x86 and cpio are missing; run as root or: sudo apt-get install --no-install-recommends qemu-system-x86 cpio"
	say "installing qemu-system-x86 and cpio (no recommends)"
	if apt-get -s install --no-install-recommends qemu-system-x86 cpio |
		grep -qE '^(Inst|Remv) (libc6|libc-bin|libc6-dev) '; then
		die "refusing: installing QEMU would change libc"
	fi
	apt-get install -y -q --no-install-recommends qemu-system-x86 cpio >/dev/null ||
		die "apt-get install qemu-system-x86 cpio failed"
}

# The newest cloud kernel of a series from the configured suites: vmlinuz only.
newest() {	# SUITES SERIES
	apt-cache madison linux-image-cloud-amd64 |
		awk -F'|' -v s="$1" -v r="^ *$2\\." '$3 ~ s && $2 ~ r {gsub(/ /,"",$2); print $2}' |
		sort -V | tail -n1
}

fetch_kernel() {	# SUITES SERIES -> prints the vmlinuz path
	local suites=$1 series=$2 v dep deb
	v=$(newest "$suites" "$series")
	if [ -z "$v" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -q >/dev/null 2>&1
		v=$(newest "$suites" "$series")
	fi
	[ -n "$v" ] || { say "no linux-image-cloud-amd64 $series in apt (apt-get update? suites $suites)" >&2; return 1; }
	dep=$(apt-cache show "linux-image-cloud-amd64=$v" | awk '/^Depends:/ {gsub(/,/,"",$2); print $2; exit}')
	if ! ls "$work"/vmlinuz-"$series"-* >/dev/null 2>&1 || [ ! -e "$work/modules-$series.done" ]; then
		rm -f "$work"/vmlinuz-"$series"-*
		(cd "$work" && apt-get download -q "$dep" >/dev/null 2>&1) ||
			{ say "apt-get download $dep failed" >&2; return 1; }
		deb=$(ls "$work"/"$dep"_*.deb | head -n1)
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work" --wildcards './boot/vmlinuz-*' ||
			{ say "no vmlinuz in $deb" >&2; return 1; }
		mv "$work"/boot/vmlinuz-* "$work/vmlinuz-$series-${dep#linux-image-}"
		extract_modules "$deb" "$series" && touch "$work/modules-$series.done"
		rm -rf "$work/boot" "$deb"
	fi
	ls "$work"/vmlinuz-"$series"-* | head -n1
}

# null_blk (a disk with poll queues for the IOPOLL checks) and configfs, its
# one dependency, from the kernel package into $work/modules-SERIES.cpio.gz;
# no archive when the package has no null_blk (the IOPOLL checks are skipped).
extract_modules() {	# DEB SERIES
	local deb=$1 series=$2 tmp=$work/mods-$2
	rm -rf "$tmp" "$work/modules-$series.cpio.gz" && mkdir -p "$tmp/lib/modules"
	dpkg-deb --fsys-tarfile "$deb" |
		tar -x -C "$tmp/lib/modules" --transform='s|.*/||' --wildcards \
			'*/null_blk/null_blk.ko*' '*/fs/configfs/configfs.ko*' 2>/dev/null
	if ls "$tmp"/lib/modules/null_blk.ko* >/dev/null 2>&1; then
		(cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/modules-$series.cpio.gz"
	fi
	rm -rf "$tmp"
}

build_initramfs() {
	local root=$work/initramfs
	rm -rf "$root" && mkdir -p "$root/dev" "$root/proc" "$root/sys"
	cc -std=gnu11 -O2 -static -I"$top/include" -o "$root/init" "$top/tests/kernels/kinit.c" \
		"$build/libhugering.a" -luring -lpthread 2>"$work/cc.log" ||
		die "building the static /init failed: $(head -n3 "$work/cc.log")"
	# The diag for the NUMA boot's view of both nodes' pools.
	mkdir -p "$root/bin"
	cc -std=gnu11 -O2 -static -I"$top/include" -o "$root/bin/hugering-diag" \
		"$top/tools/hugering-diag.c" "$top/tools/diag/setup.c" \
		"$build/tools/diag/model-lib.o" -luring -lpthread 2>"$work/cc.log" ||
		die "building the static hugering-diag failed: $(head -n3 "$work/cc.log")"
	(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initramfs.gz"
}

# KVM only when the CPU advertises it: a /dev/kvm alone is not enough here.
# Under TCG without CMPXCHG16B: Debian 12's QEMU 7.2 emulates SLUB's per-CPU
# gs:cmpxchg16b wrongly for 6.12.95 (double fault in kmem_cache_alloc during
# boot, every time); without cx16 the kernel takes its fallback path.
accel() {
	if [ -w /dev/kvm ] && grep -qE '\b(vmx|svm)\b' /proc/cpuinfo; then
		echo "-accel kvm -cpu host"
	else
		echo "-accel tcg -cpu max,cx16=off"
	fi
}

boot() {	# VMLINUZ EXPECT MODE LOG MODULES|"" SERIES -> QEMU's exit status
	local kernel=$1 expect=$2 mode=$3 log=$4 mods=$5 series=$6 initrd=$work/initramfs.gz iopoll=0
	# Concatenated newc archives: the kernel unpacks both.
	if [ -n "$mods" ]; then
		initrd=$work/initrd-$series.gz
		cat "$work/initramfs.gz" "$mods" > "$initrd"
		iopoll=1
	fi
	# shellcheck disable=SC2046
	timeout -k 10 240 qemu-system-x86_64 $(accel) -m 1G -smp 1 -nographic -no-reboot \
		-kernel "$kernel" -initrd "$initrd" \
		-append "console=ttyS0 hugepages=16 panic=-1 quiet hugering.expect=$expect hugering.mode=$mode hugering.iopoll=$iopoll hugering.poll_queues=${HUGERING_KERNEL_POLL_QUEUES:-1}" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 -monitor none -serial stdio \
		</dev/null >"$log" 2>&1
}

# 6.12 on two nodes: CPU 0 and 512 MiB on node 0, CPU 1 and 512 MiB on node 1.
# No hugepages= on the command line: /init reserves them per node in sysfs.
boot_numa() {	# VMLINUZ LOG -> QEMU's exit status
	# shellcheck disable=SC2046
	timeout -k 10 240 qemu-system-x86_64 $(accel) -m 1G -smp 2 -nographic -no-reboot \
		-object memory-backend-ram,id=m0,size=512M -object memory-backend-ram,id=m1,size=512M \
		-numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 \
		-kernel "$1" -initrd "$work/initramfs.gz" \
		-append "console=ttyS0 panic=-1 quiet hugering.numa=1" \
		-device isa-debug-exit,iobase=0xf4,iosize=0x04 -monitor none -serial stdio \
		</dev/null >"$2" 2>&1
}

install_qemu
build_initramfs
numa_kernel=
failed=0
passed=0
for k in "${KERNELS[@]}"; do
	read -r suites series expect mode <<<"$k"
	var=HUGERING_KERNEL_EXPECT_${series//./_}
	expect=${!var:-$expect}
	kernel=$(fetch_kernel "$suites" "$series") || { failed=$((failed + 1)); continue; }
	[ "$series" = 6.12 ] && numa_kernel=$kernel
	log=$work/linux-$series.log
	start=$(date +%s)
	mods=$work/modules-$series.cpio.gz
	[ -f "$mods" ] || mods=
	boot "$kernel" "$expect" "$mode" "$log" "$mods" "$series"
	rc=$?
	grep -aoE '(kernel [0-9].*|region: .*|case .*|buffers .*|pool .*|iopoll.*|VERDICT .*)' "$log" | tr -d '\r' | sed 's/^/  /'
	# isa-debug-exit: /init wrote 0 (pass) -> 1, wrote 1 (fail) -> 3
	if [ "$rc" -eq 1 ] && grep -q 'VERDICT PASS' "$log"; then
		say "linux $series ($(basename "$kernel")): pass in $(( $(date +%s) - start )) s"
		passed=$((passed + 1))
	else
		say "linux $series: FAIL (qemu exit $rc, expected probe '$expect', mode '$mode'${mods:+, polled I/O on null_blk}); serial log: $log"
		failed=$((failed + 1))
	fi
done
if [ -n "$numa_kernel" ]; then
	log=$work/linux-6.12-numa.log
	start=$(date +%s)
	boot_numa "$numa_kernel" "$log"
	rc=$?
	grep -aoE '(numa [^d].*|numa diag (nodes|pool):.*|VERDICT .*)' "$log" | tr -d '\r' | sed 's/^/  /'
	if [ "$rc" -eq 1 ] && grep -q 'VERDICT PASS' "$log"; then
		say "linux 6.12 on two NUMA nodes ($(basename "$numa_kernel")): pass in $(( $(date +%s) - start )) s"
		passed=$((passed + 1))
	else
		say "linux 6.12 on two NUMA nodes: FAIL (qemu exit $rc; placement on node 1 or the local-node option not proven); serial log: $log"
		failed=$((failed + 1))
	fi
else
	say "linux 6.12 on two NUMA nodes: FAIL (no 6.12 kernel fetched: see above)"
	failed=$((failed + 1))
fi
echo "check-kernels: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
