#!/usr/bin/env python3
"""Client CPU per row, peak RSS and rows/s of `vikingsync run`, per input format (issue 13).

Python 3.11, stdlib only. Linux (os.wait4, /proc).

    python3 bench/cost.py                                    # 50k rows, dim 768, every format, once
    python3 bench/cost.py --repeat 3 --out /tmp/cost.jsonl   # three runs of each, JSON lines kept
    python3 bench/cost.py --bin /tmp/old/vikingsync --bin target/release/vikingsync --repeat 3
                                                             # A/B: binaries interleaved per round
    python3 bench/cost.py --read-threads 2                   # [read] threads = 2 in the client config
    python3 bench/cost.py --vector-encoding array            # Parquet's vectors as numbers (no check)
    python3 bench/cost.py --env KEY=VAL                      # a client environment knob
    python3 bench/cost.py --big                              # peak RSS on ~1 GB and ~4 GB CSV inputs

Data (generated once into --work, default /tmp/vikingsync-cost, and reused while the arguments
are the same): --rows rows (default 50,000) of dim --dim (768) with bench/gen.py --wide's fields

    id (string, the key), title (string), score (float32), tags (list<string>),
    count (int64), ok (bool), at (date_time), vec (vector)

i.e. six fields besides the key and the vector, as

    csv            bench/gen.py --format csv
    jsonl          bench/gen.py --format jsonl
    parquet        examples/gen_parquet.rs, 2,000-row groups (snappy, list<float32> vectors)
    parquet-1rg    --rows-1rg rows (default 100,000: issue 13's "one 100k-row group") as one row
                   group for the whole file; the first --rows of them are the other files' rows

--keys (default 10,000) distinct keys cycle over the rows, so the emulator stores 10k records
whatever --rows is (it keeps vectors as JSON values, ~60 KB a 768-dim record): the client is what
this measures. The Parquet generator is target/release/examples/gen_parquet (built with
`cargo build --release --example gen_parquet` when missing; --gen-parquet to point elsewhere).

Each run: a fresh `vikingsync emulator` in its own process (no quota, no latency, the same
fields, dim), then `vikingsync run` (concurrency --concurrency, default 8, rows_per_second 0)
as a child of this script, reaped with os.wait4 for its rusage. Recorded per run (one JSON line
appended to --out, and a line on stderr):

    cpu_s, cpu_us_per_row     client user+sys CPU (all threads, whole process lifetime) / rows
    peak_rss_mib              ru_maxrss of the client
    wall_s, rows_per_second   around the client process; rows/s = rows / wall_s
    reader_cpu_s              CPU of the reader thread (bench/sample.py, /proc at 10 Hz)
    applied, emulator_applied the client's summary vs the emulator's /admin/stats count
    ok                        exit 0 and every row applied on both counts (the emulator's one more
                              when vector_encoding = "auto" checked with a row: `vectors` is set)
    vectors, emulator_packed_vectors  the summary's vectors line (auto's verdict), vectors sent packed
    emulator_cpu_s, foreign_cpu_s, loadavg, nproc, date, bin, commit, format, rows, env

commit is --commit's value for that --bin, else the HEAD (with "-dirty" for uncommitted changes to
tracked files) of the checkout the binary sits in: a guess, since the binary may be older than
the checkout. Pass --commit for binaries built from `git archive` (no checkout to ask).

The machine may be shared: foreign_cpu_s is the CPU every other process used while the client ran
(from /proc/stat), and loadavg the 1-minute load average at the start. Compare binaries only
within one invocation (several --bin: each round runs every binary once per format, in turn, on
the same data and emulator binary), like bench/ab.sh. The summary is the median per binary ×
format.

--big: peak RSS on a ~1 GB and a ~4 GB CSV input (dim 768, same fields; generated into --work,
~5 GB of disk; skipped with a message when the work dir's file system has < 12 GB free). Slow:
several minutes per run on 2 cores.

--wrap "CMD ARGS" runs the client under CMD (bench/profile.sh uses it for `perf record`); such
runs are marked "wrapped" (their CPU and RSS include the wrapper).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request

import benchlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AK = "AKBENCHMARK"
SK = "SKBENCHMARKSECRET"
FORMATS = ["csv", "jsonl", "parquet", "parquet-1rg"]
FIELDS = [
    ("id", "string"),
    ("title", "string"),
    ("score", "float32"),
    ("tags", "list<string>"),
    ("count", "int64"),
    ("ok", "bool"),
    ("at", "date_time"),
    ("vec", "vector"),
]
CLK_TCK = os.sysconf("SC_CLK_TCK")
BIG_MIN_FREE = 12 * 1024**3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- data ---------------------------------------------------------------------------------------


def stamped(path: str, key: str) -> bool:
    """True when `path` exists and was made with the arguments `key`."""
    try:
        with open(path + ".args") as f:
            return os.path.exists(path) and f.read() == key
    except OSError:
        return False


def stamp(path: str, key: str) -> None:
    with open(path + ".args", "w") as f:
        f.write(key)


def gen_parquet_bin(args) -> str:
    if args.gen_parquet:
        return args.gen_parquet
    exe = os.path.join(ROOT, "target", "release", "examples", "gen_parquet")
    if not os.path.exists(exe):
        log("# building examples/gen_parquet (cargo build --release --example gen_parquet)")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "gen_parquet"], cwd=ROOT, check=True)
    return exe


def gen_text(args, fmt: str, rows: int, base: str) -> str:
    path = f"{base}.{fmt}"
    cmd = [sys.executable, os.path.join(ROOT, "bench", "gen.py"), "--rows", str(rows), "--dim", str(args.dim),
           "--keys", str(min(args.keys, rows) or rows), "--wide", "--out", base, "--format", fmt]
    key = " ".join(cmd[2:])
    if not stamped(path, key):
        log(f"# generating {path}")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        stamp(path, key)
    return path


def gen_pq(args, rows: int, group: int, path: str) -> str:
    cmd = ["--rows", str(rows), "--dim", str(args.dim),
           "--keys", str(min(args.keys, rows) or rows), "--wide", "--row-group-rows", str(group), "--out", path]
    key = " ".join(cmd)
    if not stamped(path, key):
        log(f"# generating {path}")
        subprocess.run([gen_parquet_bin(args)] + cmd, check=True, stdout=subprocess.DEVNULL)
        stamp(path, key)
    return path


def data_file(args, fmt: str) -> str:
    d = os.path.join(args.work, "data")
    os.makedirs(d, exist_ok=True)
    base = os.path.join(d, f"rows{args.rows}-d{args.dim}")
    if fmt in ("csv", "jsonl"):
        return gen_text(args, fmt, args.rows, base)
    if fmt == "parquet":
        return gen_pq(args, args.rows, 2000, base + ".rg2000.parquet")
    if fmt == "parquet-1rg":
        n = args.rows_1rg
        return gen_pq(args, n, max(n, 1), os.path.join(d, f"rows{n}-d{args.dim}.rg1.parquet"))
    raise ValueError(fmt)


def rows_of(args, fmt: str) -> int:
    return args.rows_1rg if fmt == "parquet-1rg" else args.rows


# --- processes ----------------------------------------------------------------------------------


def machine_busy_ticks() -> int:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu "):
                v = [int(x) for x in line.split()[1:]]
                return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]  # user nice system irq softirq steal
    return 0


def proc_cpu_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])
    except (OSError, IndexError, ValueError):
        return 0


def proc_hwm_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def client_env(extra: list[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIKINGDB_API_KEY", "VIKINGDB_SESSION_TOKEN", "VOLC_SESSION_TOKEN")}
    env["VIKINGDB_AK"], env["VIKINGDB_SK"] = AK, SK
    for kv in extra:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


class Emulator:
    def __init__(self, exe: str, run_dir: str, dim: int) -> None:
        fields = "\n".join(f'{k} = "{t}"' for k, t in FIELDS)
        self.proc, self.url = benchlib.start_emulator(exe, run_dir, f"""seed = 7

[[keys]]
access_key = "{AK}"
secret_key = "{SK}"

[[collections]]
name = "bench"
primary_key = "id"
dim = {dim}
quota_rows_per_second = 0
[collections.fields]
{fields}
""")

    def stats(self) -> dict:
        try:
            with urllib.request.urlopen(self.url + "/admin/stats", timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError):
            return {}

    def stop(self) -> None:
        benchlib.stop(self.proc)


def write_config(path: str, url: str, dim: int, data: str, conc: int, read_threads: int | None = None,
                 vector_encoding: str | None = None) -> None:
    fields = "\n".join(f'{k} = "{t}"' for k, t in FIELDS)
    with open(path, "w") as f:
        f.write(f"""[target]
endpoint = "{url}"
region = "cn-beijing"
api = "v2"

[collection]
name = "bench"
primary_key = "id"
dim = {dim}
{f'vector_encoding = "{vector_encoding}"' if vector_encoding else ""}

[collection.fields]
{fields}

[rate]
rows_per_second = 0
concurrency = {conc}

[state]
dir = "state"

[[sources]]
path = "{data}"
op = "upsert"
""")
        if read_threads is not None:
            # Binaries before 5a93419 refuse the [read] section (unknown keys are an error).
            f.write(f"\n[read]\nthreads = {read_threads}\n")


def summary_line(stderr_path: str) -> dict:
    try:
        with open(stderr_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    j = json.loads(line)
                except ValueError:
                    continue
                if isinstance(j, dict) and j.get("message") == "summary":
                    return j
    except OSError:
        pass
    return {}


def commit_of(exe: str, given: str | None) -> str | None:
    if given:
        return given
    # target/release/vikingsync (or CARGO_TARGET_DIR under the checkout) → the checkout's HEAD.
    d = os.path.dirname(os.path.abspath(exe))
    for _ in range(4):
        d = os.path.dirname(d)
        try:
            out = subprocess.run(["git", "-C", d, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0:
            dirty = subprocess.run(["git", "-C", d, "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return out.stdout.strip() + ("-dirty" if dirty else "")
    return None


def one_run(args, exe: str, commit: str | None, fmt: str, data: str, rows: int, tag: str) -> dict:
    run_dir = os.path.join(args.work, "runs", tag)
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    emu = Emulator(args.emulator_bin or exe, run_dir, args.dim)
    rec: dict = {}
    try:
        cfg = os.path.join(run_dir, "config.toml")
        write_config(cfg, emu.url, args.dim, os.path.abspath(data), args.concurrency, args.read_threads,
                     args.vector_encoding)
        cmd = shlex.split(args.wrap) if args.wrap else []
        cmd += [exe, "--log-format", "json", "run", "--config", cfg, "--no-progress"]
        with open("/proc/loadavg") as f:
            load = [float(x) for x in f.read().split()[:3]]
        emu_cpu0, busy0 = proc_cpu_ticks(emu.proc.pid), machine_busy_ticks()
        with open(os.path.join(run_dir, "stdout"), "w") as out, open(os.path.join(run_dir, "stderr"), "w") as err:
            t0 = time.monotonic()
            child = subprocess.Popen(cmd, stdout=out, stderr=err, env=client_env(args.env), cwd=run_dir)
            sampler = None
            if not args.no_sample:
                sampler = subprocess.Popen([sys.executable, os.path.join(ROOT, "bench", "sample.py"), str(child.pid),
                                            os.path.realpath(exe), os.path.join(run_dir, "sample.json"), "0.1"])
            deadline = t0 + args.timeout
            while True:
                pid, status, ru = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    child.kill()
                    pid, status, ru = os.wait4(child.pid, 0)
                    break
                time.sleep(0.02)
            wall = time.monotonic() - t0
            child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
            if sampler:
                sampler.wait()
        busy1, emu_cpu1 = machine_busy_ticks(), proc_cpu_ticks(emu.proc.pid)
        stats = emu.stats()
        emu_hwm = proc_hwm_kb(emu.proc.pid)
    finally:
        emu.stop()
    s = summary_line(os.path.join(run_dir, "stderr"))
    cpu = ru.ru_utime + ru.ru_stime
    applied = s.get("applied")
    emu_applied = stats.get("rows_applied_upsert")
    rec = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bin": os.path.abspath(exe),
        "commit": commit,
        "format": fmt,
        "file": os.path.basename(data),
        "file_bytes": os.path.getsize(data),
        "rows": rows,
        "dim": args.dim,
        "concurrency": args.concurrency,
        "env": args.env,
        "read_threads": args.read_threads,
        "vector_encoding": args.vector_encoding,
        "exit": child.returncode,
        "cpu_user_s": round(ru.ru_utime, 3),
        "cpu_sys_s": round(ru.ru_stime, 3),
        "cpu_s": round(cpu, 3),
        "cpu_us_per_row": round(cpu / rows * 1e6, 1) if rows else None,
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1),
        "wall_s": round(wall, 3),
        "rows_per_second": round(rows / wall) if wall > 0 else None,
        "summary_rows_per_second": s.get("rows_per_second"),
        "rows_read": s.get("rows_read"),
        "applied": applied,
        "rejected": s.get("rejected"),
        "emulator_applied": emu_applied,
        "emulator_packed_vectors": stats.get("packed_vectors"),
        "vectors": s.get("vectors"),
        # vector_encoding = "auto"'s check upserts one row more (sent again in its place after it).
        "ok": child.returncode == 0 and applied == rows and emu_applied == rows + (1 if s.get("vectors") else 0),
        "emulator_cpu_s": round((emu_cpu1 - emu_cpu0) / CLK_TCK, 2),
        "emulator_peak_rss_mib": round(emu_hwm / 1024, 1),
        "foreign_cpu_s": round(max(0.0, (busy1 - busy0) / CLK_TCK - cpu - (emu_cpu1 - emu_cpu0) / CLK_TCK), 2),
        "loadavg": load,
        "nproc": os.cpu_count(),
    }
    if args.wrap:
        rec["wrapped"] = args.wrap
    try:
        with open(os.path.join(run_dir, "sample.json")) as f:
            th = json.load(f).get("threads_cpu_s", {})
        rec["reader_cpu_s"] = th.get("vikingsync-read")
        rec["threads_cpu_s"] = th
    except (OSError, ValueError):
        pass
    return rec


def report_line(r: dict) -> str:
    return (f"  {r['format']:<11} {r['label'][-24:]:<24} "
            f"exit={r['exit']} ok={r['ok']} cpu={r['cpu_s']:.2f}s ({r['cpu_us_per_row']} us/row) "
            f"reader={r.get('reader_cpu_s')}s rss={r['peak_rss_mib']}MiB wall={r['wall_s']:.2f}s "
            f"rows/s={r['rows_per_second']} emu_cpu={r['emulator_cpu_s']}s foreign={r['foreign_cpu_s']}s "
            f"load={r['loadavg'][0]}")


def summarise(results: list[dict]) -> None:
    keys = []
    for r in results:
        k = (r["label"], r["format"], r["rows"])
        if k not in keys:
            keys.append(k)
    print()
    print("| binary | format | rows | runs | CPU-µs/row | reader CPU-µs/row | peak RSS MiB | rows/s | all applied |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for b, fmt, rows in keys:
        rs = [r for r in results if (r["label"], r["format"], r["rows"]) == (b, fmt, rows)]
        med = lambda k: statistics.median([r[k] for r in rs if r.get(k) is not None]) if any(
            r.get(k) is not None for r in rs) else None
        rd = med("reader_cpu_s")
        span = lambda k: f" ({min(r[k] for r in rs):g}–{max(r[k] for r in rs):g})" if len(rs) > 1 else ""
        reader = f"{rd / rows * 1e6:.0f}" if rd is not None else "–"
        print(f"| {b} | {fmt} | {rows} | {len(rs)} | {med('cpu_us_per_row'):.0f}{span('cpu_us_per_row')} "
              f"| {reader} | {med('peak_rss_mib'):.1f}{span('peak_rss_mib')} | {med('rows_per_second'):.0f} "
              f"| {all(r['ok'] for r in rs)} |")


def big_inputs(args) -> list[tuple[str, str, int]]:
    free = shutil.disk_usage(args.work).free
    if free < BIG_MIN_FREE:
        log(f"# --big skipped: {free / 1024**3:.1f} GB free in {args.work}, needs 12 GB")
        return []
    # ~6.9 KB a --wide CSV row at dim 768 (measured: 1.413 GiB for 219,130 rows): 1 GiB ≈ 155k
    # rows, 4 GiB ≈ 622k rows.
    per_row = 6924 * args.dim / 768
    out = []
    d = os.path.join(args.work, "data")
    os.makedirs(d, exist_ok=True)
    for gb in (1, 4):
        rows = int(gb * 1024**3 / per_row)
        path = gen_text(args, "csv", rows, os.path.join(d, f"big{gb}g-d{args.dim}"))
        out.append((f"csv-{gb}g", path, rows))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", action="append", help="client binary (repeat for A/B; default target/release/vikingsync)")
    p.add_argument("--commit", action="append", default=[], help="commit of each --bin, in order (default: "
                   "the git HEAD of the checkout the binary sits in, if any)")
    p.add_argument("--emulator-bin", help="binary whose `emulator` serves every run (default: the first --bin)")
    p.add_argument("--gen-parquet", help="the gen_parquet example binary (default target/release/examples/gen_parquet)")
    p.add_argument("--rows", type=int, default=50000)
    p.add_argument("--rows-1rg", type=int, default=100000, help="rows of the one-row-group Parquet file")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--keys", type=int, default=10000, help="distinct keys (default 10000; bounds the emulator's memory)")
    p.add_argument("--formats", nargs="+", choices=FORMATS, default=FORMATS)
    p.add_argument("--repeat", type=int, default=1, help="rounds (each runs every binary on every format)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--read-threads", type=int, help="[read] threads in the client config (default: not set; "
                   "binaries before 5a93419 refuse the key)")
    p.add_argument("--vector-encoding", choices=["auto", "array", "base64"],
                   help="[collection] vector_encoding in the client config (default: not set: the binary's "
                   "default: \"auto\" from 2026-11-29, \"array\" before; binaries before 6a40930 refuse the key, and "
                   "binaries before \"auto\" refuse that value)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VAL", help="set in the client's environment")
    p.add_argument("--out", help="append one JSON line per run to this file")
    p.add_argument("--work", default="/tmp/vikingsync-cost", help="data and run dirs (kept; data is reused)")
    p.add_argument("--big", action="store_true", help="instead: peak RSS on ~1 GB and ~4 GB CSV inputs")
    p.add_argument("--wrap", help="run the client under this command prefix (e.g. perf record -g -o F --)")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a client run is killed")
    p.add_argument("--no-sample", action="store_true", help="no per-thread sampling (bench/sample.py)")
    args = p.parse_args()
    bins = [os.path.abspath(b) for b in (args.bin or [os.path.join(ROOT, "target", "release", "vikingsync")])]
    for b in bins:
        if not os.access(b, os.X_OK):
            p.error(f"no executable at {b}")
    for kv in args.env:
        if "=" not in kv:
            p.error(f"--env {kv}: KEY=VAL")
    os.makedirs(args.work, exist_ok=True)
    commits = [commit_of(b, args.commit[i] if i < len(args.commit) else None) for i, b in enumerate(bins)]
    # A binary is named by its commit, unless two share one (or one is unknown): then by its path,
    # and by its position too if the paths are the same.
    labels = commits if len(set(commits)) == len(bins) and all(commits) else bins
    if len(set(labels)) < len(bins):
        labels = [f"{b}#{i + 1}" for i, b in enumerate(bins)]

    if args.big:
        inputs = big_inputs(args)
        if not inputs:
            return 0
    else:
        inputs = [(fmt, data_file(args, fmt), rows_of(args, fmt)) for fmt in args.formats]

    log(f"# nproc {os.cpu_count()}, work dir {args.work}, binaries: " + ", ".join(labels))
    results = []
    for rnd in range(1, args.repeat + 1):
        for fmt, data, rows in inputs:
            for i, b in enumerate(bins):
                tag = f"{fmt}-r{rnd}-b{i}"
                r = one_run(args, b, commits[i], fmt, data, rows, tag)
                r["round"] = rnd
                r["label"] = labels[i]
                results.append(r)
                log(report_line(r))
                if not r["ok"]:
                    log(f"  run {tag} did not apply every row (exit {r['exit']}); see {args.work}/runs/{tag}")
                if args.out:
                    with open(args.out, "a") as f:
                        f.write(json.dumps(r, ensure_ascii=False) + "\n")
    summarise(results)
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
