#!/usr/bin/env bash
# A/B: two vikingsync binaries, alternately, on the same data and the same machine state.
#
#   bash bench/ab.sh OLD_BIN NEW_BIN ROUNDS SCENARIO...     e.g.  bash bench/ab.sh /tmp/old/vikingsync \
#                                                                  target/release/vikingsync 5 a
#
# Each round runs bench/run.sh with OLD_BIN then NEW_BIN (scenario a once per file per run), in one
# shared work dir so the data is generated once. Every result line is tagged with "binary" (the
# label: OLD_LABEL / NEW_LABEL, default "old" / "new") and "round", appended to
# $BENCH_DIR/ab.jsonl, and summarised by bench/compare.py at the end.
#
# Comparing against numbers from another day is confounded by whatever else ran on the machine
# then (BENCHMARKS.md: the old binary measured 22-24k rows/s in a busy session and 26-28k in a quiet
# one); interleaving is what makes a before/after attributable to the code.
#
# An older commit's binary, without touching the repository:
#   git archive COMMIT | tar -x -C /tmp/old && (cd /tmp/old && cargo build --release --offline)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ $# -ge 4 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
OLD="$1" NEW="$2" ROUNDS="$3"; shift 3
OLD_LABEL="${OLD_LABEL:-old}" NEW_LABEL="${NEW_LABEL:-new}"
[[ -x "$OLD" && -x "$NEW" ]] || { echo "both binaries must exist and be executable" >&2; exit 1; }
export BENCH_DIR="${BENCH_DIR:-$(mktemp -d /tmp/vikingsync-ab.XXXXXX)}"
export BENCH_REPEAT="${BENCH_REPEAT:-1}"
AB="$BENCH_DIR/ab.jsonl"
: >"$AB"
for ((i = 1; i <= ROUNDS; i++)); do
    for side in old new; do
        if [[ $side == old ]]; then bin="$OLD" label="$OLD_LABEL"; else bin="$NEW" label="$NEW_LABEL"; fi
        echo "# round $i: $label ($bin)" >&2
        VIKINGSYNC_BIN="$bin" bash "$ROOT/bench/run.sh" "$@" >/dev/null
        python3 - "$BENCH_DIR/results.jsonl" "$label" "$i" >>"$AB" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line); r["binary"] = sys.argv[2]; r["round"] = int(sys.argv[3])
        print(json.dumps(r, ensure_ascii=False))
PY
    done
done
python3 "$ROOT/bench/compare.py" "$AB"
echo "# results: $AB (work dir $BENCH_DIR is kept; remove it when done)" >&2
