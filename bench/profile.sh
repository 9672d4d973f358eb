#!/usr/bin/env bash
# Where the client's CPU goes, per input format: one bench/cost.py run under `perf record -g`, then
# the top symbols by self time (the "top entries of the profile" table in BENCHMARKS.md).
#
#   bash bench/profile.sh FORMAT [COST.PY ARGS...]      FORMAT: csv | jsonl | parquet | parquet-1rg
#   bash bench/profile.sh csv --bin /tmp/old/target/release/vikingsync --rows 20000
#
# Same data, emulator and client config as bench/cost.py (50k rows, dim 768, the --wide fields;
# data reused from its work dir). Only the client runs under perf: the emulator is its own process.
# Prints the run's cost.py line, then the top PROFILE_TOP (15) entries of
#   perf report --no-children --sort symbol --stdio -g none
# and keeps perf.data and the full report in PROFILE_DIR (default /tmp/vikingsync-profile-FORMAT).
# CPU and RSS of a profiled run include perf's own overhead: take the figures from cost.py runs.
# Release builds have symbols but no frame pointers, so call chains are partial; self time is not.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 1 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
FORMAT="$1"; shift
case "$FORMAT" in csv | jsonl | parquet | parquet-1rg) ;; *) echo "unknown format $FORMAT" >&2; exit 2 ;; esac
command -v perf >/dev/null || { echo "perf is not installed" >&2; exit 1; }
DIR="${PROFILE_DIR:-/tmp/vikingsync-profile-$FORMAT}"
TOP="${PROFILE_TOP:-15}"
mkdir -p "$DIR"
rm -f "$DIR/perf.data"
python3 "$ROOT/bench/cost.py" --formats "$FORMAT" --repeat 1 --no-sample \
    --wrap "perf record -q -g -o $DIR/perf.data --" "$@"
perf report -i "$DIR/perf.data" --no-children --sort symbol --stdio -g none >"$DIR/report.txt" 2>"$DIR/report.stderr"
samples="$(grep -m1 -o '# Samples: [^ ]*.*' "$DIR/report.txt" || true)"
echo
echo "# perf report --no-children --sort symbol ($FORMAT; $samples; full report: $DIR/report.txt)"
# (awk, not grep | head: no SIGPIPE under pipefail; the empty parent/object columns are cut)
awk -v n="$TOP" '/^ +[0-9]+\.[0-9]+%/ { sub(/[ \t-]+$/, ""); print; if (++c >= n) exit }' "$DIR/report.txt"
