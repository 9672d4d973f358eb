#!/usr/bin/env python3
"""Flow-control benchmarks: the rate and concurrency controllers against a strict server.

The real binary syncs into `vikingsync emulator` (a token-bucket quota whose burst is a tenth of
a second of quota, as a real server), on 127.0.0.1 only, with no `concurrency` set. Each scenario
prints how much of the server's quota was used and how many requests were throttled.

    python3 bench/flow.py [--bin target/release/vikingsync] [--out results.jsonl] [SCENARIO ...]

Scenarios (default: all):
  q1  unknown quota: rows_per_second = 0 against 1,500 rows/s; 30k rows
  q2  ceiling above the quota: 1,500 configured, 1,000 real; 30k rows
  q3  vectorize collection (one row a request), 100 ms latency, 200 rows/s quota; 3,000 rows
  q4  exact quota known (1,500), 30 ms latency; 30k rows
  q5  two processes, one collection (1,500 rows/s), default config; 15k rows each
  q6  async upserts: 100k rows, async quota 15,000 rows/s
  q7  three shards of one config (run --shard I/3), one 30k-row file, 1,500 rows/s

Diagnosis: FLOW_CONCURRENCY=N pins the concurrency; FLOW_LOG_LEVEL=vikingsync=trace logs every
controller tick and cut; FLOW_KEEP=DIR keeps each client's log there.

Stdlib only (Python 3.11). Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import benchlib

AK, SK = "AKFLOWBENCH", "SKFLOWBENCHSECRET"
DIM = 8

SCENARIOS = {
    "q1": dict(desc="unknown quota (rows_per_second = 0) vs 1500 rows/s", rows=30_000, quota=1500,
               client={"rows_per_second": 0}),
    "q2": dict(desc="ceiling 1500 configured, real quota 1000", rows=30_000, quota=1000,
               client={"rows_per_second": 1500}),
    "q3": dict(desc="vectorize, 100 ms latency, quota 200 rows/s", rows=3_000, quota=200, vectorize=True,
               latency_ms=100, client={}),
    "q4": dict(desc="exact quota known (1500), 30 ms latency", rows=30_000, quota=1500, latency_ms=30,
               client={"rows_per_second": 1500}),
    "q5": dict(desc="two processes on one collection, quota 1500, default config", rows=15_000, quota=1500,
               client={}, processes=2),
    "q6": dict(desc="async upserts, async quota 15000 rows/s", rows=100_000, quota=1500, async_quota=15_000,
               client={"async": True}),
    "q7": dict(desc="three shards of one config (run --shard I/3), quota 1500, default config", rows=30_000,
               quota=1500, client={}, shards=3),
}


def write_rows(path: str, n: int, start: int, vectorize: bool) -> None:
    with open(path, "w", encoding="utf-8") as f:
        if vectorize:
            f.write("id,text\n")
            for i in range(start, start + n):
                f.write(f"k{i:07d},row number {i}\n")
        else:
            f.write("id,title,vec\n")
            for i in range(start, start + n):
                vec = ",".join(str(((i * 7 + j) % 64) / 64) for j in range(DIM))
                f.write(f'k{i:07d},title {i},"[{vec}]"\n')


def fields(vectorize: bool) -> str:
    return 'id = "string"\ntext = "text"\n' if vectorize else 'id = "string"\ntitle = "string"\nvec = "vector"\n'


def start_emulator(binary: str, work: str, sc: dict) -> tuple[subprocess.Popen, str]:
    vectorize = sc.get("vectorize", False)
    cfg = f"""seed = 7
quota_burst_seconds = 0.1
{f'async_quota_rows_per_second = {sc["async_quota"]}' if "async_quota" in sc else ""}

[[keys]]
access_key = "{AK}"
secret_key = "{SK}"

[faults]
latency_ms = {sc.get("latency_ms", 0)}

[[collections]]
name = "flow"
primary_key = "id"
vectorize = {str(vectorize).lower()}
quota_rows_per_second = {sc["quota"]}
{"" if vectorize else f"dim = {DIM}"}
[collections.fields]
{fields(vectorize)}"""
    return benchlib.start_emulator(binary, work, cfg)


def client_config(endpoint: str, sc: dict, data: str, state: str) -> str:
    c = sc["client"]
    vectorize = sc.get("vectorize", False)
    rate = ""
    if "rows_per_second" in c:
        rate = f"rows_per_second = {c['rows_per_second']}\n"
    if os.environ.get("FLOW_CONCURRENCY"):  # diagnosis: pin the concurrency
        rate += f"concurrency = {int(os.environ['FLOW_CONCURRENCY'])}\n"
    return f"""[target]
endpoint = "{endpoint}"
region = "cn-beijing"
api = "v2"

[collection]
name = "flow"
primary_key = "id"
vectorize = {str(vectorize).lower()}
async_upsert = {str(c.get("async", False)).lower()}
{"" if vectorize else f"dim = {DIM}"}

[collection.fields]
{fields(vectorize)}
[rate]
{rate}
[state]
dir = "{state}"

[[sources]]
path = "{data}"
op = "upsert"
"""


def summary(stderr_path: str) -> dict:
    for line in open(stderr_path, encoding="utf-8", errors="replace"):
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("message") == "summary" or j.get("fields", {}).get("message") == "summary":
            return j.get("fields", j)
    return {}


def run(binary: str, name: str, sc: dict, root: str) -> dict:
    work = os.path.join(root, name)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    emu, endpoint = start_emulator(binary, work, sc)
    try:
        procs = []
        shards = sc.get("shards")
        n = shards or sc.get("processes", 1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIKINGDB_")}
        env.update(VIKINGDB_AK=AK, VIKINGDB_SK=SK, NO_COLOR="1")
        for p in range(n):
            # Shards share one file, one config and one state dir (each its shard-I-of-N).
            q = 0 if shards else p
            data = os.path.join(work, f"rows-{q}.csv")
            cfg = os.path.join(work, f"sync-{q}.toml")
            if p == q:
                write_rows(data, sc["rows"], p * sc["rows"], sc.get("vectorize", False))
                with open(cfg, "w", encoding="utf-8") as f:
                    f.write(client_config(endpoint, sc, data, os.path.join(work, f"state-{p}")))
            err = os.path.join(work, f"client-{p}.err")
            level = ["--log-level", os.environ["FLOW_LOG_LEVEL"]] if os.environ.get("FLOW_LOG_LEVEL") else []
            shard = ["--shard", f"{p}/{n}"] if shards else []
            procs.append((subprocess.Popen([binary, "--log-format", "json", *level, "run", "--config", cfg, "--no-progress", *shard],
                                           stdout=subprocess.DEVNULL, stderr=open(err, "w"), env=env), err))
        clients = []
        for proc, err in procs:
            rc = proc.wait(timeout=600)
            s = summary(err)
            s["exit"] = rc
            if os.environ.get("FLOW_KEEP"):  # diagnosis: keep each client's log
                shutil.copy(err, os.path.join(os.environ["FLOW_KEEP"], f"{name}-{os.path.basename(err)}"))
            clients.append(s)
        stats = json.load(urllib.request.urlopen(f"{endpoint}/admin/stats", timeout=5))
    finally:
        benchlib.stop(emu)
    quota = sc.get("async_quota", sc["quota"])
    rows = sum(c.get("applied", 0) or 0 for c in clients)
    wall = max(c.get("elapsed_secs", 0) or 0 for c in clients)
    requests = sum(c.get("requests", 0) or 0 for c in clients)
    throttles = sum(c.get("throttles", 0) or 0 for c in clients)
    r = {
        "name": name, "desc": sc["desc"], "quota": quota, "rows": rows, "elapsed_s": round(wall, 2),
        "rows_per_second": round(rows / wall, 1) if wall else None,
        "used_pct": round(100 * rows / wall / quota, 1) if wall else None,
        "requests": requests, "throttles": throttles,
        "throttled_pct": round(100 * throttles / requests, 2) if requests else None,
        "exits": [c["exit"] for c in clients],
        "per_process_rows_per_second": [round(c.get("rows_per_second", 0) or 0, 1) for c in clients],
        "rate_cuts": [c.get("rate_cuts") for c in clients],
        "concurrency_peak": [c.get("concurrency_peak") for c in clients],
        "emulator_throttled": stats.get("throttled"),
    }
    if n > 1:
        rates = r["per_process_rows_per_second"]
        r["fairness_gap_pct"] = round(100 * (max(rates) - min(rates)) / max(rates), 1) if max(rates) else None
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "target", "release", "vikingsync"))
    ap.add_argument("--out", default=None, help="append one JSON line per scenario here")
    ap.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no binary at {binary}: cargo build --release")
    root = tempfile.mkdtemp(prefix="vikingsync-flow.")
    try:
        for name in args.scenarios:
            r = run(binary, name, SCENARIOS[name], root)
            print(f"{name}  {r['desc']}\n    {r['rows_per_second']} rows/s = {r['used_pct']}% of {r['quota']}; "
                  f"{r['throttles']}/{r['requests']} requests throttled ({r['throttled_pct']}%); "
                  f"per process {r['per_process_rows_per_second']}; cuts {r['rate_cuts']}; "
                  f"peak concurrency {r['concurrency_peak']}; exits {r['exits']}", flush=True)
            if args.out:
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
