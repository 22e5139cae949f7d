#!/usr/bin/env bash
# Run a command with the test hugepage pool reserved (as root), then restore it.
set -uo pipefail
. "$(dirname "$0")/pool.sh"
pool_reserve
"$@"
