#!/usr/bin/env bash
# vikingsync end-to-end benchmarks: the real binary against `vikingsync emulator` on loopback.
#
#   bash bench/run.sh                 # every scenario: ~3 minutes on 2 cores (+ up to 60 s of
#                                     # waiting if other processes keep the CPU busy)
#   bash bench/run.sh a c             # only some scenarios (a b c d e h p)
#
# Scenarios (all over 127.0.0.1 only; every process is started here and stopped here):
#   a  100k rows, 128-dim, CSV and JSONL, unlimited quota, concurrency 8: raw pipeline throughput
#   b  30k rows, quota 1500 rows/s on client and emulator: the quota is used, nothing throttled;
#      then the client configured at 2x the emulator's quota: throttles, adaptive cut, no row lost
#   c  emulator latency 20 ms ± 10 ms (10 + uniform 0..20), unlimited, concurrency 1 / 8 / 32
#   d  the 100k CSV and JSONL files gzip-compressed
#   e  768-dim vectors, 10k vs 100k rows: peak RSS must not grow with the file
#   h  concurrency 8, latency 200 ms fixed vs 100 + uniform 0..200 ms (same mean): jitter should
#      cost nothing (it cost 13 % while the read-ahead window was only concurrency x batch_rows)
#   p  scenario a (CSV) again under `perf stat` (skipped when perf cannot count)
#
# Environment knobs:
#   VIKINGSYNC_BIN   binary to use (default target/release/vikingsync, built if missing)
#   VIKINGSYNC_EMULATOR_BIN  binary whose `emulator` serves the runs (default VIKINGSYNC_BIN);
#                    set it in A/B runs so both clients face the same server
#   BENCH_REBUILD=1  run `cargo build --release` even if the binary exists
#   BENCH_DIR        work dir (default: a fresh mktemp dir, removed at the end)
#   BENCH_KEEP=1     keep the work dir (data, configs, logs)
#   BENCH_QUOTA      the quota of scenario b (default 1500)
#   BENCH_ROWS       rows of the big files (default 100000)
#   BENCH_REPEAT     how many times scenario a runs each file (default 3)
#   BENCH_RUN_TIMEOUT  seconds before a run is killed (default 150)
#   BENCH_QUIET_MAX / BENCH_QUIET_BUDGET  see wait_quiet below
#
# Output: a table per scenario on stdout, and $BENCH_DIR/results.jsonl (one JSON object per run).
# Before/after comparisons between two binaries: bench/ab.sh (interleaved runs, same data).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${VIKINGSYNC_BIN:-$ROOT/target/release/vikingsync}"
QUOTA="${BENCH_QUOTA:-1500}"
ROWS="${BENCH_ROWS:-100000}"
REPEAT="${BENCH_REPEAT:-3}"  # runs of each scenario-a file (the numbers vary by ~10 % run to run)
SCENARIOS="${*:-a b c d e h p}"
AK="AKBENCHMARK"
SK="SKBENCHMARKSECRET"
RUN_TIMEOUT="${BENCH_RUN_TIMEOUT:-150}"  # seconds; a longer run is killed and reported as failed

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
RUN_PID=""
cleanup() {
    # `timeout` passes the TERM on to the client it runs.
    if [[ -n "$RUN_PID" ]] && kill -0 "$RUN_PID" 2>/dev/null; then
        kill -TERM "$RUN_PID" 2>/dev/null || true
        wait "$RUN_PID" 2>/dev/null || true
    fi
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

HAVE_TIME=0; if [[ -x /usr/bin/time ]] && /usr/bin/time -v true 2>/dev/null; then HAVE_TIME=1; fi
CLK_TCK="$(getconf CLK_TCK)"

# --- data -------------------------------------------------------------------------------------
# gen ARGS...: runs gen.py unless the same ARGS already ran in this work dir (BENCH_DIR reuse).
gen() {
    local stamp="$WORK/data/.$(printf '%s ' "$@" | cksum | cut -d' ' -f1)"
    if [[ -f "$stamp" ]]; then return 0; fi
    mkdir -p "$WORK/data"
    python3 "$ROOT/bench/gen.py" "$@" >&2
    touch "$stamp"
}
t0=$SECONDS
echo "# generating data in $WORK" >&2
if want a || want d || want p; then gen --rows "$ROWS" --out "$WORK/data/rows100k" --format csv jsonl; fi
if want d; then gen --rows "$ROWS" --out "$WORK/data/rows100k" --format csv jsonl --gzip; fi
if want b || want c || want h; then gen --rows 30000 --out "$WORK/data/rows30k" --format csv; fi
if want e; then
    gen --rows 10000 --dim 768 --out "$WORK/data/d768-10k" --format csv
    # 10k distinct keys, so the emulator stores the same 10k records in both runs (its store keeps
    # vectors as JSON values, ~60 KB a 768-dim record): the client is what this scenario measures.
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
        "${VIKINGSYNC_EMULATOR_BIN:-$BIN}" --log-level warn emulator --listen 127.0.0.1:0 --collections "$dir/collections.toml" \
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

# Busy CPU ticks of the whole machine (user+nice+system+irq+softirq+steal), from /proc/stat.
machine_busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
# CPU ticks (user+sys) of a live process.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
vm_hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }  # peak RSS

# wait_quiet: the machine may be shared (2 cores). Before a run, wait up to BENCH_QUIET_MAX seconds
# (default 10; at most BENCH_QUIET_BUDGET seconds in all, default 60) for other processes to use
# less than 0.3 cores, measured over 0.5 s. Each run reports the CPU other processes used while it
# ran ("other procs CPU s"), so a disturbed run can be told from a clean one.
QUIET_LEFT=$((${BENCH_QUIET_BUDGET:-60} * 2))  # in half-seconds
wait_quiet() {
    local max=$((${BENCH_QUIET_MAX:-10} * 2)) i b0 b1
    if ((max == 0 || QUIET_LEFT <= 0)); then return 0; fi
    for ((i = 0; i < max && QUIET_LEFT > 0; i++)); do
        b0=$(machine_busy_ticks); sleep 0.5; b1=$(machine_busy_ticks)
        # quiet: busy ticks in 0.5 s < 0.3 cores * 0.5 s * CLK_TCK
        if (((b1 - b0) * 20 < 3 * CLK_TCK)); then return 0; fi
        QUIET_LEFT=$((QUIET_LEFT - 1))
    done
    echo "  (other processes are using the CPU; running anyway)" >&2
}

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
    wait_quiet
    local emu_cpu0 busy0 load0
    emu_cpu0=$(cpu_ticks "$EMU_PID"); busy0=$(machine_busy_ticks); load0=$(cut -d' ' -f1 /proc/loadavg)
    local -a cmd=("$BIN" --log-format json run --config "$dir/config.toml" --no-progress)
    local -a wrap=()
    if [[ "$mode" == perf ]]; then
        wrap=(perf stat -x, -o "$dir/perf.csv" -e task-clock,context-switches,cpu-migrations,page-faults,cycles,instructions --)
    fi
    if [[ $HAVE_TIME == 1 ]]; then wrap=(/usr/bin/time -v -o "$dir/time.txt" "${wrap[@]}"); fi
    local rc=0 start end
    start=$(date +%s.%N)
    env -u VIKINGDB_API_KEY -u VIKINGDB_SESSION_TOKEN -u VOLC_SESSION_TOKEN \
        VIKINGDB_AK="$AK" VIKINGDB_SK="$SK" timeout -k 10 "$RUN_TIMEOUT" "${wrap[@]}" "${cmd[@]}" \
        >"$dir/stdout" 2>"$dir/stderr" &
    local run_pid=$!
    RUN_PID=$run_pid
    # Per-thread CPU and an RSS timeline of the client, from /proc, until it exits.
    python3 "$ROOT/bench/sample.py" "$run_pid" "$BIN" "$dir/sample.json" 0.1 &
    local sampler=$!
    wait "$run_pid" || rc=$?
    RUN_PID=""
    end=$(date +%s.%N)
    wait "$sampler" || true
    local emu_cpu1 emu_hwm busy1
    emu_cpu1=$(cpu_ticks "$EMU_PID"); emu_hwm=$(vm_hwm_kb "$EMU_PID"); busy1=$(machine_busy_ticks)
    curl -s --max-time 5 "$EMU_URL/admin/stats" >"$dir/emulator-stats.json" || echo '{}' >"$dir/emulator-stats.json"
    stop_emulator
    python3 - "$dir" "$name" "$file" "$quota" "$conc" "$dim" "$latency" "$jitter" "$rc" "$start" "$end" \
        "$emu_cpu0" "$emu_cpu1" "$emu_hwm" "$CLK_TCK" "$mode" "$emu_quota" "$busy0" "$busy1" "$load0" >>"$RESULTS" <<'PY'
import json, os, re, sys
(d, name, file, quota, conc, dim, latency, jitter, rc, start, end,
 e0, e1, ehwm, tck, mode, emu_quota, busy0, busy1, load0) = sys.argv[1:]
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
    for key, pat, conv in (
        ("client_peak_rss_mb", r"Maximum resident set size \(kbytes\): (\d+)", lambda v: round(int(v) / 1024, 1)),
        ("client_user_s", r"User time \(seconds\): ([\d.]+)", float),
        ("client_sys_s", r"System time \(seconds\): ([\d.]+)", float),
    ):
        m = re.search(pat, t)
        if m:
            r[key] = conv(m.group(1))
smp = {}
try:
    smp = json.load(open(os.path.join(d, "sample.json")))
except Exception:
    pass
# CPU the rest of the machine used meanwhile (other jobs, the sampler, this script): on 2 shared
# cores anything well above ~0.1 s per second of wall time means the run was disturbed.
busy = (int(busy1) - int(busy0)) / int(tck)
client = r.get("client_user_s", 0) + r.get("client_sys_s", 0) if "client_sys_s" in r \
    else sum(smp.get("threads_cpu_s", {}).values())
r["machine_busy_s"] = round(busy, 2)
r["foreign_cpu_s"] = round(max(0.0, busy - client - r["emulator_cpu_s"]), 2)
r["loadavg_before"] = float(load0)
if "client_peak_rss_mb" not in r and smp.get("peak_rss_kb"):
    r["client_peak_rss_mb"] = round(smp["peak_rss_kb"] / 1024, 1)
th = smp.get("threads_cpu_s", {})
if th:
    # Thread names: the reader thread, tokio's workers, and the main thread (the coordinator
    # runs in block_on there; its name is the executable's). Last sample: up to 0.1 s short.
    r["reader_cpu_s"] = th.get("vikingsync-read")
    r["workers_cpu_s"] = round(sum(v for k, v in th.items() if k.startswith("tokio")), 2)
    r["other_cpu_s"] = round(sum(v for k, v in th.items() if k != "vikingsync-read" and not k.startswith("tokio")), 2)
tl = smp.get("rss_timeline", [])
if tl:
    # RSS (MB) at 25 / 50 / 75 / 100 % of the run: flat means memory does not grow with the file.
    r["rss_quartiles_mb"] = [round(tl[min(len(tl) - 1, int(len(tl) * q))][1] / 1024, 1) for q in (0.25, 0.5, 0.75, 0.999)]
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
print("  %-14s exit=%s rows/s=%s wall=%ss requests=%s retries=%s throttles=%s rss=%sMB client_cpu=%s+%ss reader=%ss emu_cpu=%ss other=%ss" % (
    r["name"], r["exit"], r.get("throughput"), r["wall_s"], r.get("requests"), r.get("retries"),
    r.get("throttles"), r.get("client_peak_rss_mb"), r.get("client_user_s"), r.get("client_sys_s"),
    r.get("reader_cpu_s"), r["emulator_cpu_s"], r["foreign_cpu_s"]))' >&2
    if [[ $rc != 0 ]]; then echo "  run $name failed (exit $rc); see $dir/stderr" >&2; fi
}

# --- scenarios --------------------------------------------------------------------------------
D="$WORK/data"
if want a; then
    echo "# a: raw throughput, unlimited quota, concurrency 8" >&2
    for i in $(seq 1 "$REPEAT"); do
        bench "a-csv-$i" "$D/rows100k.csv" 0 8 128 0 0
        bench "a-jsonl-$i" "$D/rows100k.jsonl" 0 8 128 0 0
    done
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
if want h; then
    echo "# h: same mean latency (200 ms), fixed vs jittered, concurrency 8, 30k rows" >&2
    bench h-fixed200 "$D/rows30k.csv" 0 8 128 200 0
    bench h-jitter100-300 "$D/rows30k.csv" 0 8 128 100 200
fi
if want p; then
    if command -v perf >/dev/null && perf stat -e task-clock -o /dev/null -- true 2>/dev/null; then
        echo "# p: scenario a (CSV) under perf stat" >&2
        bench p-csv-perf "$D/rows100k.csv" 0 8 128 0 0 perf
    else
        echo "# p: skipped (perf stat cannot count here)" >&2
    fi
fi

# --- tables -------------------------------------------------------------------------------------
python3 "$ROOT/bench/report.py" "$RESULTS"
if [[ "${BENCH_KEEP:-0}" != 1 && -z "${BENCH_DIR:-}" ]]; then
    echo "# total $((SECONDS - t0))s; work dir removed (BENCH_KEEP=1 keeps it)" >&2
else
    echo "# total $((SECONDS - t0))s; results: $RESULTS" >&2
fi
