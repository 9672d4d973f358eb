#!/usr/bin/env bash
# vikingsync end-to-end benchmarks: the real binary against `vikingsync emulator` on loopback.
#
#   bash bench/run.sh                 # every scenario, ~4-5 minutes on 2 cores
#   bash bench/run.sh a c             # only some scenarios (a b c d e p)
#
# Scenarios (all over 127.0.0.1 only; every process is started here and stopped here):
#   a  100k rows, 128-dim, CSV and JSONL, unlimited quota, concurrency 8: raw pipeline throughput
#   b  30k rows, quota 1500 rows/s on client and emulator: the quota is used, nothing throttled;
#      then the client configured at 2x the emulator's quota: throttles, adaptive cut, no row lost
#   c  emulator latency 20 ms ± 10 ms (10 + uniform 0..20), unlimited, concurrency 1 / 8 / 32
#   d  the 100k CSV and JSONL files gzip-compressed
#   e  768-dim vectors, 10k vs 100k rows: peak RSS must not grow with the file
#   p  scenario a (CSV) again under `perf stat` (skipped when perf cannot count)
#
# Environment knobs:
#   VIKINGSYNC_BIN   binary to use (default target/release/vikingsync, built if missing)
#   BENCH_REBUILD=1  run `cargo build --release` even if the binary exists
#   BENCH_DIR        work dir (default: a fresh mktemp dir, removed at the end)
#   BENCH_KEEP=1     keep the work dir (data, configs, logs)
#   BENCH_QUOTA      the quota of scenario b (default 1500)
#   BENCH_ROWS       rows of the big files (default 100000)
#
# Output: a table per scenario on stdout, and $BENCH_DIR/results.jsonl (one JSON object per run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${VIKINGSYNC_BIN:-$ROOT/target/release/vikingsync}"
QUOTA="${BENCH_QUOTA:-1500}"
ROWS="${BENCH_ROWS:-100000}"
SCENARIOS="${*:-a b c d e p}"
AK="AKBENCHMARK"
SK="SKBENCHMARKSECRET"
RUN_TIMEOUT=150          # seconds; a run that takes longer is killed and reported as failed

want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# --- binary -----------------------------------------------------------------------------------
if [[ "${BENCH_REBUILD:-0}" == 1 || ! -x "$BIN" ]]; then
    echo "# building the release binary (cargo build --release)" >&2
    (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x "$BIN" ]] || { echo "no binary at $BIN" >&2; exit 1; }

# --- work dir and cleanup -----------------------------------------------------------------------
if [[ -n "${BENCH_DIR:-}" ]]; then
    WORK="$BENCH_DIR"; mkdir -p "$WORK"
else
    WORK="$(mktemp -d /tmp/vikingsync-bench.XXXXXX)"
fi
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"
EMU_PID=""
cleanup() {
    if [[ -n "$EMU_PID" ]] && kill -0 "$EMU_PID" 2>/dev/null; then
        kill -TERM "$EMU_PID" 2>/dev/null || true
        wait "$EMU_PID" 2>/dev/null || true
    fi
    if [[ "${BENCH_KEEP:-0}" != 1 && -z "${BENCH_DIR:-}" ]]; then
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

HAVE_TIME=0; [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null && HAVE_TIME=1
CLK_TCK="$(getconf CLK_TCK)"

# --- data -------------------------------------------------------------------------------------
gen() { python3 "$ROOT/bench/gen.py" "$@" >&2; }
t0=$SECONDS
echo "# generating data in $WORK" >&2
if want a || want d || want p; then gen --rows "$ROWS" --out "$WORK/data/rows100k" --format csv jsonl; fi
if want d; then gen --rows "$ROWS" --out "$WORK/data/rows100k" --format csv jsonl --gzip; fi
if want b || want c; then gen --rows 30000 --out "$WORK/data/rows30k" --format csv; fi
if want e; then
    gen --rows 10000 --dim 768 --out "$WORK/data/d768-10k" --format csv
    # 10k distinct keys, so the emulator stores the same 10k records in both runs (its store keeps
    # vectors as JSON values, ~40 KB a 768-dim row): the client is what this scenario measures.
    gen --rows "$ROWS" --dim 768 --keys 10000 --out "$WORK/data/d768-100k" --format csv
fi
echo "# data ready in $((SECONDS - t0))s" >&2

# --- emulator ---------------------------------------------------------------------------------
# start_emulator QUOTA DIM LATENCY_MS JITTER_MS: starts it on a free loopback port, sets EMU_PID, EMU_URL.
start_emulator() {
    local quota=$1 dim=$2 latency=$3 jitter=$4 dir="$WORK/emu"
    mkdir -p "$dir"
    cat >"$dir/collections.toml" <<EOF
seed = 7

[[keys]]
access_key = "$AK"
secret_key = "$SK"

[faults]
latency_ms = $latency
jitter_ms = $jitter

[[collections]]
name = "bench"
primary_key = "id"
dim = $dim
quota_rows_per_second = $quota
[collections.fields]
id = "string"
title = "string"
score = "float32"
tags = "list<string>"
vec = "vector"
EOF
    rm -f "$dir/stdout"
    env -u VIKINGDB_AK -u VIKINGDB_SK -u VIKINGDB_SESSION_TOKEN \
        "$BIN" --log-level warn emulator --listen 127.0.0.1:0 --collections "$dir/collections.toml" \
        >"$dir/stdout" 2>"$dir/stderr" &
    EMU_PID=$!
    local i
    for i in $(seq 1 100); do
        if grep -q '^listening on ' "$dir/stdout" 2>/dev/null; then break; fi
        kill -0 "$EMU_PID" 2>/dev/null || { cat "$dir/stderr" >&2; echo "emulator died" >&2; exit 1; }
        sleep 0.05
    done
    EMU_URL="$(sed -n 's/^listening on //p' "$dir/stdout" | head -n1)"
    [[ "$EMU_URL" == http://127.0.0.1:* ]] || { echo "emulator did not start: $(cat "$dir/stderr")" >&2; exit 1; }
}

stop_emulator() {
    kill -TERM "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
    EMU_PID=""
}

# CPU ticks (user+sys) of a live process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
vm_hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- one run ------------------------------------------------------------------------------------
# bench NAME FILE QUOTA CONCURRENCY DIM LATENCY JITTER [MODE] [EMULATOR_QUOTA]
#   QUOTA is the client's rows_per_second and, unless EMULATOR_QUOTA is given, the emulator's.
#   MODE: "" or "perf" (wrap the client in perf stat).
bench() {
    local name=$1 file=$2 quota=$3 conc=$4 dim=$5 latency=$6 jitter=$7 mode=${8:-} emu_quota=${9:-$3}
    local dir="$WORK/runs/$name"
    rm -rf "$dir"; mkdir -p "$dir"
    start_emulator "$emu_quota" "$dim" "$latency" "$jitter"
    cat >"$dir/config.toml" <<EOF
[target]
endpoint = "$EMU_URL"
region = "cn-beijing"
api = "v2"

[collection]
name = "bench"
primary_key = "id"
dim = $dim

[collection.fields]
id = "string"
title = "string"
score = "float32"
tags = "list<string>"
vec = "vector"

[rate]
rows_per_second = $quota
concurrency = $conc

[state]
dir = "state"

[[sources]]
path = "$file"
op = "upsert"
EOF
    local emu_cpu0; emu_cpu0=$(cpu_ticks "$EMU_PID")
    local -a cmd=("$BIN" --log-format json run --config "$dir/config.toml" --no-progress)
    local -a wrap=()
    if [[ "$mode" == perf ]]; then
        wrap=(perf stat -x, -o "$dir/perf.csv" -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions --)
    fi
    if [[ $HAVE_TIME == 1 ]]; then wrap=(/usr/bin/time -v -o "$dir/time.txt" "${wrap[@]}"); fi
    local rc=0 start end
    start=$(date +%s.%N)
    VIKINGDB_AK="$AK" VIKINGDB_SK="$SK" timeout "$RUN_TIMEOUT" "${wrap[@]}" "${cmd[@]}" \
        >"$dir/stdout" 2>"$dir/stderr" &
    local run_pid=$! peak=0 v child
    if [[ $HAVE_TIME == 0 ]]; then
        # No GNU time: sample VmHWM of the vikingsync process until it exits.
        while kill -0 "$run_pid" 2>/dev/null; do
            child=$(pgrep -P "$run_pid" -n 2>/dev/null || true)
            if [[ -n "$child" ]]; then v=$(vm_hwm_kb "$child"); ((v > peak)) && peak=$v; fi
            sleep 0.05
        done
    fi
    wait "$run_pid" || rc=$?
    end=$(date +%s.%N)
    local emu_cpu1 emu_hwm
    emu_cpu1=$(cpu_ticks "$EMU_PID"); emu_hwm=$(vm_hwm_kb "$EMU_PID")
    curl -s --max-time 5 "$EMU_URL/admin/stats" >"$dir/emulator-stats.json" || echo '{}' >"$dir/emulator-stats.json"
    stop_emulator
    python3 - "$dir" "$name" "$file" "$quota" "$conc" "$dim" "$latency" "$jitter" "$rc" "$start" "$end" \
        "$peak" "$emu_cpu0" "$emu_cpu1" "$emu_hwm" "$CLK_TCK" "$mode" "$emu_quota" >>"$RESULTS" <<'PY'
import json, os, re, sys
(d, name, file, quota, conc, dim, latency, jitter, rc, start, end,
 peak, e0, e1, ehwm, tck, mode, emu_quota) = sys.argv[1:]
r = {"name": name, "file": os.path.basename(file), "file_bytes": os.path.getsize(file),
     "quota": int(quota), "emulator_quota": int(emu_quota), "concurrency": int(conc), "dim": int(dim),
     "latency_ms": int(latency), "jitter_ms": int(jitter), "exit": int(rc),
     "wall_s": round(float(end) - float(start), 3),
     "emulator_cpu_s": round((int(e1) - int(e0)) / int(tck), 2),
     "emulator_peak_rss_mb": round(int(ehwm) / 1024, 1)}
# The summary line: `--log-format json` logs it with every counter.
for line in open(os.path.join(d, "stderr"), encoding="utf-8", errors="replace"):
    try:
        j = json.loads(line)
    except ValueError:
        continue
    if j.get("message") == "summary":
        for k in ("rows_read", "applied", "rejected", "requests", "retries", "throttles",
                  "elapsed_secs", "rows_per_second", "unfinished"):
            r[k] = j.get(k)
# The printed summary's `throughput` line, as the user sees it.
out = open(os.path.join(d, "stdout"), encoding="utf-8", errors="replace").read()
m = re.search(r"throughput\s+(\d+) rows/s", out)
r["throughput"] = int(m.group(1)) if m else None
tf = os.path.join(d, "time.txt")
if os.path.exists(tf):
    t = open(tf).read()
    g = lambda pat: re.search(pat, t)
    r["client_peak_rss_mb"] = round(int(g(r"Maximum resident set size \(kbytes\): (\d+)").group(1)) / 1024, 1)
    r["client_user_s"] = float(g(r"User time \(seconds\): ([\d.]+)").group(1))
    r["client_sys_s"] = float(g(r"System time \(seconds\): ([\d.]+)").group(1))
else:
    r["client_peak_rss_mb"] = round(int(peak) / 1024, 1)
try:
    s = json.load(open(os.path.join(d, "emulator-stats.json")))
    r["emulator_throttled"] = s.get("throttled")
    r["emulator_rows_applied"] = s.get("rows_applied_upsert")
except Exception:
    pass
if mode == "perf":
    pf = os.path.join(d, "perf.csv")
    if os.path.exists(pf):
        for line in open(pf):
            parts = line.strip().split(",")
            if len(parts) > 3 and parts[2] and not line.startswith("#"):
                r["perf_" + parts[2].replace("-", "_")] = parts[0]
print(json.dumps(r, ensure_ascii=False))
PY
    tail -n1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("  %-14s exit=%s rows/s=%s wall=%ss requests=%s retries=%s throttles=%s rss=%sMB client_cpu=%s+%ss emu_cpu=%ss" % (
    r["name"], r["exit"], r.get("throughput"), r["wall_s"], r.get("requests"), r.get("retries"),
    r.get("throttles"), r.get("client_peak_rss_mb"), r.get("client_user_s"), r.get("client_sys_s"),
    r["emulator_cpu_s"]))' >&2
    if [[ $rc != 0 ]]; then echo "  run $name failed (exit $rc); see $dir/stderr" >&2; fi
}

# --- scenarios --------------------------------------------------------------------------------
D="$WORK/data"
if want a; then
    echo "# a: raw throughput, unlimited quota, concurrency 8" >&2
    bench a-csv "$D/rows100k.csv" 0 8 128 0 0
    bench a-jsonl "$D/rows100k.jsonl" 0 8 128 0 0
fi
if want b; then
    echo "# b: quota $QUOTA rows/s on both sides, 30k rows" >&2
    bench b-quota "$D/rows30k.csv" "$QUOTA" 8 128 0 0
    # The client told twice the real quota: throttles, the adaptive cut, and still every row.
    bench b-overshoot "$D/rows30k.csv" $((QUOTA * 2)) 8 128 0 0 "" "$QUOTA"
fi
if want c; then
    echo "# c: latency 20 ms ± 10 ms, unlimited, 30k rows" >&2
    for c in 1 8 32; do bench "c-conc$c" "$D/rows30k.csv" 0 "$c" 128 10 20; done
fi
if want d; then
    echo "# d: gzip-compressed 100k files" >&2
    bench d-csv-gz "$D/rows100k.csv.gz" 0 8 128 0 0
    bench d-jsonl-gz "$D/rows100k.jsonl.gz" 0 8 128 0 0
fi
if want e; then
    echo "# e: 768-dim vectors, 10k vs 100k rows" >&2
    bench e-d768-10k "$D/d768-10k.csv" 0 8 768 0 0
    bench e-d768-100k "$D/d768-100k.csv" 0 8 768 0 0
fi
if want p; then
    if perf stat -e task-clock -o /dev/null -- true 2>/dev/null; then
        echo "# p: scenario a (CSV) under perf stat" >&2
        bench p-csv-perf "$D/rows100k.csv" 0 8 128 0 0 perf
    else
        echo "# p: skipped (perf stat cannot count here)" >&2
    fi
fi

# --- tables -------------------------------------------------------------------------------------
python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cols = [("name", "run"), ("file", "file"), ("file_bytes", "MB"), ("quota", "quota"),
        ("emulator_quota", "emu quota"),
        ("concurrency", "conc"), ("rows_read", "rows"), ("throughput", "rows/s"),
        ("wall_s", "wall s"), ("requests", "requests"), ("retries", "retries"),
        ("throttles", "throttles"), ("emulator_throttled", "emu 429s"),
        ("client_peak_rss_mb", "client RSS MB"), ("client_user_s", "client user s"),
        ("client_sys_s", "client sys s"), ("emulator_cpu_s", "emu cpu s"),
        ("emulator_peak_rss_mb", "emu RSS MB"), ("exit", "exit")]
def cell(r, k):
    v = r.get(k)
    if k == "file_bytes" and v is not None:
        return f"{v / 1e6:.1f}"
    if k in ("quota", "emulator_quota") and v == 0:
        return "∞"
    return "" if v is None else str(v)
print("| " + " | ".join(h for _, h in cols) + " |")
print("|" + "---|" * len(cols))
for r in rows:
    print("| " + " | ".join(cell(r, k) for k, _ in cols) + " |")
perf = [r for r in rows if any(k.startswith("perf_") for k in r)]
for r in perf:
    print()
    print(f"perf stat ({r['name']}): " + ", ".join(f"{k[5:]}={v}" for k, v in r.items() if k.startswith("perf_")))
PY
echo "# results: $RESULTS (total $((SECONDS - t0))s)" >&2
