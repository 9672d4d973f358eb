#!/usr/bin/env python3
"""Service benchmarks: `vikingsync serve` watching a directory, against a strict server.

The release binary serves (`vikingsync serve`) into `vikingsync emulator` (a token-bucket quota
whose burst is a tenth of a second of quota, as a real server), both on 127.0.0.1 only. Files are
written in a staging directory and renamed into the watched one; every time is measured from the
rename to the service's `file done` JSON log line (the log's timestamps and this script read the
same wall clock).

    python3 bench/serve.py [--bin target/release/vikingsync] [--out results.jsonl] [SCENARIO ...]

Scenarios (default: both):
  trickle    40 files of 50 rows, one renamed in every 250 ms, quota 1,500 rows/s:
             latency from rename to `file done`, p50 / p99 / max
  sustained  one 30,000-row file renamed in, quota 1,500 rows/s: rows/s from the rename to
             `file done`, as a share of the quota

The service runs with its default `[serve]` and `[rate]` settings (rows_per_second 1,500, the
quota). SERVE_KEEP=DIR keeps each run's log and config there.

Stdlib only (Python 3.11). Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchlib import clean_env, stop, wait_for_address
from benchlib import start_emulator as start_emulator_with

AK, SK = "AKSERVEBENCH", "SKSERVEBENCHSECRET"
DIM = 8
QUOTA = 1500

SCENARIOS = {
    "trickle": dict(desc="40 files x 50 rows, one renamed in every 250 ms, quota 1500 rows/s",
                    files=40, rows=50, every=0.25),
    "sustained": dict(desc="one 30,000-row file renamed in, quota 1500 rows/s", files=1, rows=30_000, every=0.0),
}


def write_rows(path: str, n: int, start: int) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,title,vec\n")
        for i in range(start, start + n):
            vec = ",".join(str(((i * 7 + j) % 64) / 64) for j in range(DIM))
            f.write(f'k{i:07d},title {i},"[{vec}]"\n')


def start_emulator(binary: str, work: str) -> tuple[subprocess.Popen, str]:
    cfg = f"""seed = 7
quota_burst_seconds = 0.1

[[keys]]
access_key = "{AK}"
secret_key = "{SK}"

[[collections]]
name = "serve"
primary_key = "id"
quota_rows_per_second = {QUOTA}
dim = {DIM}
[collections.fields]
id = "string"
title = "string"
vec = "vector"
"""
    return start_emulator_with(binary, work, cfg)


def serve_config(endpoint: str, work: str) -> str:
    return f"""[target]
endpoint = "{endpoint}"
region = "cn-beijing"
api = "v2"

[collection]
name = "serve"
primary_key = "id"
dim = {DIM}

[collection.fields]
id = "string"
title = "string"
vec = "vector"

[state]
dir = "{os.path.join(work, "state")}"

[[sources]]
path = "{os.path.join(work, "in", "*.csv")}"
op = "upsert"
"""


def start_serve(binary: str, work: str, endpoint: str) -> tuple[subprocess.Popen, str, str]:
    cfg = os.path.join(work, "sync.toml")
    with open(cfg, "w", encoding="utf-8") as f:
        f.write(serve_config(endpoint, work))
    out, log = os.path.join(work, "serve.out"), os.path.join(work, "serve.log")
    env = clean_env()
    env.update(VIKINGDB_AK=AK, VIKINGDB_SK=SK, NO_COLOR="1")
    proc = subprocess.Popen([binary, "--log-format", "json", "serve", "--config", cfg, "--listen", "127.0.0.1:0"],
                            stdout=open(out, "w"), stderr=open(log, "w"), env=env)
    try:
        addr = wait_for_address(proc, out, "serve")
        deadline = time.monotonic() + 30
        while http_status(f"{addr}/readyz") != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited with {proc.returncode}; log:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"serve not ready within 30 s; log:\n{tail(log)}")
            time.sleep(0.1)
        return proc, addr, log
    except BaseException:
        stop(proc)
        raise


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def metrics(addr: str) -> str:
    with urllib.request.urlopen(f"{addr}/metrics", timeout=5) as r:
        return r.read().decode("utf-8", "replace")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 if none)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)", line)
        if not m:
            continue
        have = dict(re.findall(r'(\w+)\s*=\s*"((?:[^"\\]|\\.)*)"', m.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def tail(path: str, n: int = 20) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return "".join(f.readlines()[-n:])


def parse_ts(s: str) -> float:
    """An RFC 3339 timestamp (any number of fraction digits) as seconds since the epoch."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", s.strip())
    if not m:
        raise ValueError(f"timestamp {s!r}")
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = m.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    return datetime.datetime.fromisoformat(f"{m.group(1)}.{frac}{tz}").timestamp()


def file_done(log: str) -> dict[str, tuple[float, dict]]:
    """File name -> (time, fields) of its first `file done` log line."""
    done: dict[str, tuple[float, dict]] = {}
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue
            fields = {**j.get("fields", {}), **{k: v for k, v in j.items() if k != "fields"}}
            if fields.get("message") != "file done" or "file" not in fields:
                continue
            name = os.path.basename(str(fields["file"]))
            if name not in done and "timestamp" in fields:
                done[name] = (parse_ts(fields["timestamp"]), fields)
    return done


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))]


def run(binary: str, name: str, sc: dict, root: str) -> dict:
    work = os.path.join(root, name)
    shutil.rmtree(work, ignore_errors=True)
    for d in ("in", "staging"):
        os.makedirs(os.path.join(work, d))
    files = [f"f{i:03d}.csv" for i in range(sc["files"])]
    for i, f in enumerate(files):
        write_rows(os.path.join(work, "staging", f), sc["rows"], i * sc["rows"])
    total = sc["files"] * sc["rows"]
    emu, endpoint = start_emulator(binary, work)
    serve = None
    exit_code = None
    try:
        serve, addr, log = start_serve(binary, work, endpoint)
        renamed: dict[str, float] = {}
        t0 = time.monotonic()
        for i, f in enumerate(files):
            delay = t0 + i * sc["every"] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            renamed[f] = time.time()
            os.rename(os.path.join(work, "staging", f), os.path.join(work, "in", f))
        deadline = time.monotonic() + 120 + total / QUOTA * 3
        while True:
            done = file_done(log)
            if all(f in done for f in files):
                break
            if serve.poll() is not None:
                raise RuntimeError(f"serve exited with {serve.returncode}; log:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(done)}/{len(files)} files done before the deadline; log:\n{tail(log)}")
            time.sleep(0.1)
        m = metrics(addr)
        stats = json.load(urllib.request.urlopen(f"{endpoint}/admin/stats", timeout=5))
        exit_code = stop(serve)
        serve = None
        if os.environ.get("SERVE_KEEP"):
            for src in (log, os.path.join(work, "sync.toml")):
                shutil.copy(src, os.path.join(os.environ["SERVE_KEEP"], f"{name}-{os.path.basename(src)}"))
    finally:
        if serve is not None:
            stop(serve)
        stop(emu)
    latencies = [done[f][0] - renamed[f] for f in files]
    requests = metric(m, "vikingsync_requests_total")
    r = {
        "name": name, "desc": sc["desc"], "quota": QUOTA, "files": len(files), "rows": total,
        "rows_applied_by_server": stats.get("rows_applied_upsert"),
        "rows_accepted_by_server": stats.get("rows_accepted_sync"),
        "applied": metric(m, "vikingsync_rows_total", outcome="applied"),
        "rejected": metric(m, "vikingsync_rows_total", outcome="rejected"),
        "files_failed": metric(m, "vikingsync_files", state="failed"),
        "requests": requests, "throttles": metric(m, "vikingsync_throttled_total"),
        "retries": metric(m, "vikingsync_retries_total"),
        "emulator_throttled": stats.get("throttled"),
        "serve_exit": exit_code,
    }
    if len(files) > 1:
        r.update(latency_p50_s=round(percentile(latencies, 50), 3), latency_p99_s=round(percentile(latencies, 99), 3),
                 latency_max_s=round(max(latencies), 3), latency_min_s=round(min(latencies), 3))
    else:
        elapsed = latencies[0]
        r.update(elapsed_s=round(elapsed, 2), rows_per_second=round(total / elapsed, 1),
                 used_pct=round(100 * total / elapsed / QUOTA, 1))
    return r


def show(r: dict) -> str:
    if "latency_p50_s" in r:
        head = (f"rename -> file done: p50 {r['latency_p50_s']} s, p99 {r['latency_p99_s']} s "
                f"(min {r['latency_min_s']}, max {r['latency_max_s']})")
    else:
        head = (f"{r['rows']} rows in {r['elapsed_s']} s = {r['rows_per_second']} rows/s "
                f"= {r['used_pct']}% of {r['quota']}")
    return (f"{r['name']}  {r['desc']}\n    {head}\n    server applied {r['rows_applied_by_server']}/{r['rows']} "
            f"(admitted {r['rows_accepted_by_server']}); applied {r['applied']:.0f}, rejected {r['rejected']:.0f}, "
            f"failed files {r['files_failed']:.0f}; {r['throttles']:.0f}/{r['requests']:.0f} requests throttled, "
            f"{r['retries']:.0f} retries; serve exit {r['serve_exit']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "vikingsync"))
    ap.add_argument("--out", default=None, help="append one JSON line per scenario here")
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS), help=" ".join(SCENARIOS))
    args = ap.parse_args()
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no binary at {binary}: cargo build --release")
    root = tempfile.mkdtemp(prefix="vikingsync-serve.")
    try:
        for name in args.scenarios:
            r = run(binary, name, SCENARIOS[name], root)
            print(show(r), flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
