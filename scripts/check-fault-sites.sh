#!/usr/bin/env bash
# Every syscall site in lib/ reached by fault injection (issue 16).
# The sites are read from the source: each hr_sys_*() call outside lib/sys.c,
# named by its syscall and the function around it.  The log is what
# tests/test_fault.c wrote ($HUGERING_FAULT_LOG: syscall, caller as addr2line
# names it, calls, failed, outcomes).  Prints one line per site with its
# outcomes and fails if a site that can be made to fail was never failed.
# munmap is listed but not required: the seam never fails it (see
# tests/fault/sys-fault.c).
# Usage: check-fault-sites.sh LOG
set -euo pipefail
log=${1:?usage: check-fault-sites.sh FAULT_LOG}
top=$(cd "$(dirname "$0")/.." && pwd)
[ -s "$log" ] || { echo "check-fault-sites: $log is empty or missing: did the fault tests run (make check-fault)?" >&2; exit 1; }

# "syscall<TAB>function<TAB>file:line" for each hr_sys_ call in lib/ and in
# the diag model (tools/diag/collect.c, built on lib/'s platform layer).
sites() {
	local f
	for f in "$top"/lib/*.c "$top"/tools/diag/collect.c; do
		[ "$(basename "$f")" = sys.c ] && continue
		awk -v file="$(basename "$f")" '
			# A definition starts in column 0 and is not a declaration.
			/^[A-Za-z_].*\(/ && !/;[ \t]*$/ && !/^(if|for|while|return)\b/ {
				s = $0; sub(/\(.*/, "", s); n = split(s, w, /[ \t*]+/); fn = w[n]
			}
			{
				line = $0
				while (match(line, /hr_sys_[a-z_]+\(/)) {
					name = substr(line, RSTART + 7, RLENGTH - 8)
					if (name == "pread") name = "pread(pagemap)"
					if (name == "ioctl") name = "ioctl"
					printf "%s\t%s\t%s:%d\n", name, fn, file, NR
					line = substr(line, RSTART + RLENGTH)
				}
			}' "$f"
	done
}

missing=0
while IFS=$'\t' read -r name fn where; do
	# The log names a caller "function file:line[ (discriminator N)]";
	# ioctl sites are logged with the request they made.
	hits=$(awk -F'\t' -v n="$name" -v fn="$fn" -v w="$where" '
		(n == "ioctl" ? index($1, "ioctl(") == 1 : $1 == n) &&
		split($2, c, " ") >= 2 && c[1] == fn && c[2] == w {
			calls += $3; failed += $4
			if ($5 != "-" && $5 != "not injectable") {
				m = split($5, o, "; ")
				for (i = 1; i <= m; i++) if (!(o[i] in seen)) { seen[o[i]] = 1; out = out (out ? "; " : "") o[i] }
			}
		}
		END { printf "%d\t%d\t%s", calls, failed, out }' "$log")
	IFS=$'\t' read -r calls failed outcomes <<<"$hits"
	if [ "$name" = munmap ]; then
		printf '  %-18s %-24s %-18s %6d calls  (not injected: result ignored by design)\n' \
			"$name" "$fn" "$where" "$calls"
	elif [ "$failed" -gt 0 ]; then
		printf '  %-18s %-24s %-18s %6d calls %4d failed: %s\n' "$name" "$fn" "$where" \
			"$calls" "$failed" "${outcomes:-?}"
	else
		printf '  %-18s %-24s %-18s %6d calls  NOT FAILED\n' "$name" "$fn" "$where" "$calls"
		missing=$((missing + 1))
	fi
done < <(sites)
if [ "$missing" -gt 0 ]; then
	echo "check-fault-sites: $missing syscall site(s) in lib/ never failed by tests/test_fault.c: add a case that reaches each (log: $log)" >&2
	exit 1
fi
echo "check-fault-sites: every injectable syscall site in lib/ failed at least once"
