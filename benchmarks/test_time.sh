#!/usr/bin/env bash
# Wall time of `make test` from a fresh clone, for one or more revisions run one after the
# other on the same machine (the VM's speed drifts between hours: compare revisions within one
# call, never across calls).
#
#   bash benchmarks/test_time.sh                  # HEAD
#   bash benchmarks/test_time.sh b7aa85f HEAD     # an A/B pair, in this order
#
# Each revision is cloned from this checkout into a temporary folder (nothing installed is
# shared: the clone creates its own .venv, as CI does); prints one line per revision:
#   REV  SECONDS  RC  pytest's summary line
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
revs=("$@")
[ ${#revs[@]} -eq 0 ] && revs=(HEAD)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for rev in "${revs[@]}"; do
    sha="$(git -C "$repo" rev-parse --short "$rev")"
    dir="$work/$sha"
    git clone -q "$repo" "$dir"
    git -C "$dir" checkout -q "$sha"
    start=$(date +%s)
    rc=0
    make -C "$dir" test > "$work/$sha.log" 2>&1 || rc=$?
    end=$(date +%s)
    summary="$(grep -E '^[0-9]+ (passed|failed)' "$work/$sha.log" | tail -1 || true)"
    printf '%s  %ss  rc=%s  %s\n' "$sha" "$((end - start))" "$rc" "$summary"
    rm -rf "$dir"
done
