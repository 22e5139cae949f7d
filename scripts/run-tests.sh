#!/usr/bin/env bash
# Run the Criterion suite binaries given as arguments.
#
# As root: reserve the hugepages the tests need (2 MiB, and 1 GiB where the
# kernel can give them) and a hugetlb cgroup they may limit themselves in,
# run every binary privileged, then again as nobody
# (PFNs hidden) to check the unprivileged path, and restore the pools after.
# Not root: run each binary once, unprivileged.
#
# Tests run one at a time (-j1): several of them count pool pages or empty the
# pool on purpose, which concurrent tests would disturb.
set -uo pipefail

. "$(dirname "$0")/pool.sh"

say() { printf 'run-tests: %s\n' "$*"; }

total_tested=0
total_failed=0
failed_runs=()

# Criterion's runner listens on /tmp/criterion_<pid>.sock and leaves the file
# behind when it is killed. A later runner that gets the same pid unlinks a
# stale file only if it may: nobody cannot unlink root's in sticky /tmp, and
# the run aborts with "Address already in use" before a single test. Remove
# every such file no live socket is bound to (/proc/net/unix lists the bound
# ones); as non-root this removes only our own.
clear_stale_criterion_sockets() {
	local sock bound
	bound=$(awk 'NR > 1 && $8 ~ /^\/tmp\/criterion_/ { print $8 }' /proc/net/unix 2>/dev/null)
	for sock in /tmp/criterion_*.sock; do
		[ -S "$sock" ] || continue
		grep -qxF "$sock" <<<"$bound" && continue
		rm -f "$sock" 2>/dev/null || true
	done
}

# run_once OUT EXPECT_PFN CMD...: the binary's output goes to the terminal and OUT.
run_once() {
	local out=$1 expect=$2
	shift 2
	clear_stale_criterion_sockets
	HUGERING_TEST_EXPECT_PFN=$expect "$@" -j1 "${filter[@]}" 2>&1 | tee "$out"
	return "${PIPESTATUS[0]}"
}

# run LABEL EXPECT_PFN CMD...
run() {
	local label=$1 expect=$2 out rc tested passing
	shift 2
	say "== $label"
	out=$(mktemp)
	run_once "$out" "$expect" "$@"
	rc=$?
	# A stale socket this user cannot remove (another user's, as non-root):
	# a second runner gets another pid.
	if [ "$rc" -ne 0 ] && grep -q 'Could not initialize the message server' "$out"; then
		say "criterion could not bind its socket; running again under another pid"
		run_once "$out" "$expect" "$@"
		rc=$?
	fi
	tested=$(sed -n 's/.*Synthesis: Tested: \([0-9]*\) | Passing: \([0-9]*\).*/\1/p' "$out" | tail -n1)
	passing=$(sed -n 's/.*Synthesis: Tested: \([0-9]*\) | Passing: \([0-9]*\).*/\2/p' "$out" | tail -n1)
	rm -f "$out"
	tested=${tested:-0}
	passing=${passing:-0}
	total_tested=$((total_tested + tested))
	total_failed=$((total_failed + tested - passing))
	if [ "$rc" -ne 0 ] || [ "$tested" -eq 0 ]; then
		failed_runs+=("$label (exit $rc, $tested tests)")
		[ "$tested" -eq "$passing" ] && total_failed=$((total_failed + 1))
	fi
}

top=$(cd "$(dirname "$0")/.." && pwd)
# The diag tests run the tool and read fake /sys trees.
export HUGERING_DIAG_BIN=${HUGERING_DIAG_BIN:-$top/build/tools/hugering-diag}
export HUGERING_BENCH_BIN=${HUGERING_BENCH_BIN:-$top/build/bench/hugering-bench}
export HUGERING_TEST_DATA=${HUGERING_TEST_DATA:-$top/tests/data}
# The preload tests LD_PRELOAD the drop-in into a plain liburing program.
export HUGERING_PRELOAD_LIB=${HUGERING_PRELOAD_LIB:-$top/build/libhugering-preload.so}
export HUGERING_PLAIN_RING=${HUGERING_PLAIN_RING:-$top/build/tests/progs/plain-ring}

# The tools built alongside a test binary (build/ or build-asan/), so the
# sanitizer run checks them too.
tools_for() {
	local root
	root=$(dirname "$(dirname "$1")")
	[ -x "$root/tools/hugering-diag" ] && export HUGERING_DIAG_BIN=$root/tools/hugering-diag
	[ -x "$root/bench/hugering-bench" ] && export HUGERING_BENCH_BIN=$root/bench/hugering-bench
	[ -e "$root/libhugering-preload.so" ] && export HUGERING_PRELOAD_LIB=$root/libhugering-preload.so
	[ -x "$root/tests/progs/plain-ring" ] && export HUGERING_PLAIN_RING=$root/tests/progs/plain-ring
	return 0
}

filter=()
if [ "${1:-}" = --filter ]; then
	filter=(--filter "$2")
	shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--filter PATTERN] TEST_BINARY..." >&2; exit 2; }

if [ "$(id -u)" -eq 0 ]; then
	pool_reserve
	pool_ensure_run "$top/build/examples/region-demo" 20M
	hugetlb_cgroup_prepare
	unpriv_dir=$(mktemp -d /tmp/hugering-unpriv.XXXXXX)
	chmod 755 "$unpriv_dir"
	for bin in "$@"; do
		tools_for "$bin"
		run "$bin (root)" 1 "$bin"
	done
	# The binaries are static in libhugering; copy them, the tool and the
	# test data where nobody can read them (the clone may sit under a
	# private home directory).
	cp -r "$HUGERING_TEST_DATA" "$unpriv_dir/data"
	chmod -R a+rX "$unpriv_dir/data"
	for bin in "$@"; do
		copy=$unpriv_dir/$(echo "$bin" | tr / _)
		install -m 755 "$bin" "$copy"
		tools_for "$bin"
		install -m 755 "$HUGERING_DIAG_BIN" "$copy-diag"
		install -m 755 "$HUGERING_BENCH_BIN" "$copy-bench"
		install -m 755 "$HUGERING_PRELOAD_LIB" "$copy-preload.so"
		install -m 755 "$HUGERING_PLAIN_RING" "$copy-plain-ring"
		pushd "$unpriv_dir" >/dev/null
		HUGERING_DIAG_BIN=$copy-diag HUGERING_TEST_DATA=$unpriv_dir/data \
			HUGERING_BENCH_BIN=$copy-bench \
			HUGERING_PRELOAD_LIB=$copy-preload.so HUGERING_PLAIN_RING=$copy-plain-ring \
			run "$bin (unprivileged)" 0 \
			setpriv --reuid=65534 --regid=65534 --clear-groups "$copy"
		popd >/dev/null
	done
	rm -rf "$unpriv_dir"
else
	say "not root: running unprivileged only (no hugepage reservation, no pagemap PFNs)"
	for bin in "$@"; do
		tools_for "$bin"
		run "$bin" 0 "$bin"
	done
fi

if [ ${#failed_runs[@]} -gt 0 ]; then
	say "FAILED: ${failed_runs[*]}"
fi
echo "check: $((total_tested - total_failed)) passed, $total_failed failed"
[ ${#failed_runs[@]} -eq 0 ]
