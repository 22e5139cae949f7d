#!/usr/bin/env bash
# make fuzz: run each libFuzzer target (tests/fuzz/) for SECONDS from its
# committed corpus.  Usage: scripts/fuzz.sh BUILD SECONDS TARGET...
# New inputs go to BUILD/corpus/TARGET (the repo's corpus is only read);
# a finding (crash, UB, leak, an input over 5 s) leaves BUILD/crash-* etc.
# and fails the run.  Nice'd, one process per target.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

[ $# -ge 3 ] || die "usage: $0 BUILD SECONDS TARGET..."
build=$1 secs=$2
shift 2
for t in "$@"; do
	bin=$build/fuzz/$t
	[ -x "$bin" ] || die "$bin missing: run make fuzz-build first"
	mkdir -p "$build/corpus/$t"
	dict=()
	[ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
	log=$build/fuzz-$t.log
	printf 'fuzz: %s for %s s\n' "$t" "$secs"
	if ! nice -n 10 "$bin" -max_total_time="$secs" -timeout=5 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$build/$t-" "${dict[@]}" \
		"$build/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
		tail -n 60 "$log" >&2
		die "$t found a problem (crash, UB, leak or timeout): see $log and $build/$t-*; reproduce with $bin <that file>"
	fi
	# The last status line: executions, coverage (cov: edges, ft: features).
	grep -E '^#[0-9]+' "$log" | tail -n 1 | sed "s/^/fuzz: $t: /"
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$log" |
		sed "s/^/fuzz: $t: /"
done
