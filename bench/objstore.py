#!/usr/bin/env python3
"""Object storage benchmark: the same files read from a bucket (moto_server) vs from local disk.

For each format (CSV.gz, JSONL, Parquet) the release binary runs a one-shot backfill of the same
rows into `vikingsync emulator` (no quota, no latency), once with `path = "/local/file"` and once
with `path = "s3://bench/file"` served by `moto_server` on 127.0.0.1 (path style, plain http).
Measured per run: rows/s (the summary's throughput), wall time and peak RSS of the client
(`/usr/bin/time -v`), its user+sys CPU, the CPU moto_server and the emulator used meanwhile
(/proc), and the CPU every other process used (/proc/stat), which tells a disturbed run.

    python3 bench/objstore.py [--bin target/release/vikingsync] [--moto .venv/bin/moto_server]
                              [--rows 200000] [--dim 64] [--rounds 2] [--out results.jsonl]

Data: bench/gen.py (CSV.gz level 1 and JSONL); the Parquet file is written from the JSONL by the
ignored test `objstore::bench_jsonl_to_parquet` (stdlib Python cannot write Parquet), row groups
of 16,384 rows. Objects are uploaded with plain PUTs (moto checks no signature by default).
Runs alternate local / s3 inside each round, so a disturbance hits both sides alike.

Stdlib only (Python 3.11), plus moto_server (tests/objstore/requirements.txt). Every process it
starts is stopped before it exits; everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import clean_env, stop
from benchlib import start_emulator as start_emulator_with

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AK, SK = "AKOBJBENCH", "SKOBJBENCHSECRET"
S3_KEY, S3_SECRET = "AKIAOBJBENCH", "objbench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except OSError:
        return 0.0


def machine_busy_s() -> float:
    """CPU seconds all processes used so far (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK


def start_emulator(binary: str, work: str, dim: int) -> tuple[subprocess.Popen, str]:
    return start_emulator_with(binary, work, f"""seed = 7

[[keys]]
access_key = "{AK}"
secret_key = "{SK}"

[[collections]]
name = "bench"
primary_key = "id"
dim = {dim}
quota_rows_per_second = 0
[collections.fields]
id = "string"
title = "string"
score = "float32"
tags = "list<string>"
vec = "vector"
""")


def start_moto(moto: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=clean_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=2).read()
            return proc, url
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("moto_server did not start")


def put(url: str, path: str | None = None) -> None:
    data = open(path, "rb") if path else None
    size = os.path.getsize(path) if path else 0
    # An explicit type: urllib's default (a form) makes moto's server parse the body as a form.
    req = urllib.request.Request(url, data=data, method="PUT",
                                 headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, timeout=600) as r:
        r.read()


def config(endpoint: str, dim: int, source: str, moto: str | None) -> str:
    text = f"""[target]
endpoint = "{endpoint}"
region = "cn-beijing"
api = "v2"

[collection]
name = "bench"
primary_key = "id"
dim = {dim}

[collection.fields]
id = "string"
title = "string"
score = "float32"
tags = "list<string>"
vec = "vector"

[rate]
rows_per_second = 0

[state]
dir = "state"

[[sources]]
path = "{source}"
op = "upsert"
"""
    if moto:
        text += f'\n[storage]\nendpoint = "{moto}"\nallow_http = true\nregion = "us-east-1"\n'
    return text


def run_once(args, work: str, fmt: str, where: str, source: str, moto_url: str | None,
             moto_pid: int | None) -> dict:
    run_dir = os.path.join(work, "runs", f"{fmt}-{where}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    emu, emu_url = start_emulator(args.bin, run_dir, args.dim)
    try:
        with open(os.path.join(run_dir, "sync.toml"), "w") as f:
            f.write(config(emu_url, args.dim, source, moto_url))
        env = clean_env()
        env.update(VIKINGDB_AK=AK, VIKINGDB_SK=SK, NO_COLOR="1",
                   AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
        moto0 = cpu_s(moto_pid) if moto_pid else 0.0
        busy0, emu0 = machine_busy_s(), cpu_s(emu.pid)
        t0 = time.monotonic()
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", os.path.join(run_dir, "time.txt"), args.bin,
                               "--log-format", "json", "run", "--config", "sync.toml", "--no-progress"],
                              cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=900)
        wall = time.monotonic() - t0
        moto1 = cpu_s(moto_pid) if moto_pid else 0.0
        busy1, emu1 = machine_busy_s(), cpu_s(emu.pid)
    finally:
        stop(emu)
    timing = open(os.path.join(run_dir, "time.txt")).read()
    num = lambda pat: float(re.search(pat, timing).group(1)) if re.search(pat, timing) else None
    summary = {}
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        fields = j.get("fields", j)
        if fields.get("message") == "summary":
            summary = fields
    if proc.returncode != 0:
        raise RuntimeError(f"{fmt} {where}: exit {proc.returncode}\n{proc.stderr.decode()[-3000:]}")
    rss_kb = num(r"Maximum resident set size \(kbytes\): (\d+)")
    client = (num(r"User time \(seconds\): ([\d.]+)") or 0) + (num(r"System time \(seconds\): ([\d.]+)") or 0)
    return {
        "format": fmt, "source": where, "rows": int(summary.get("rows_read", 0)),
        "rows_per_s": round(float(summary.get("rows_per_second", 0)), 1),
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss_kb / 1024, 1) if rss_kb else None,
        "client_cpu_s": round(client, 2),
        "moto_cpu_s": round(moto1 - moto0, 2) if moto_pid else None,
        "emulator_cpu_s": round(emu1 - emu0, 2),
        # Everything else the machine ran meanwhile (a disturbed run shows here).
        "other_cpu_s": round((busy1 - busy0) - client - (moto1 - moto0) - (emu1 - emu0), 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "vikingsync"))
    p.add_argument("--moto", default=os.path.join(ROOT, ".venv", "bin", "moto_server"))
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", help="append one JSON line per run to this file")
    args = p.parse_args()
    args.bin = os.path.abspath(args.bin)
    for need in (args.bin, args.moto):
        if not os.access(need, os.X_OK):
            print(f"not executable: {need}", file=sys.stderr)
            return 2
    work = tempfile.mkdtemp(prefix="vikingsync-objbench-")
    moto = None
    try:
        data = os.path.join(work, "data")
        os.makedirs(data)
        base = os.path.join(data, "rows")
        gen = [sys.executable, os.path.join(ROOT, "bench", "gen.py"), "--rows", str(args.rows),
               "--dim", str(args.dim), "--out", base]
        subprocess.run(gen + ["--format", "csv", "--gzip"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(gen + ["--format", "jsonl"], check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ, VIKINGSYNC_BENCH_JSONL=base + ".jsonl", VIKINGSYNC_BENCH_PARQUET=base + ".parquet")
        subprocess.run(["nice", "-n", "19", "cargo", "test", "--quiet", "--test", "it",
                        "objstore::bench_jsonl_to_parquet", "--", "--ignored"],
                       cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        files = {"csv.gz": base + ".csv.gz", "jsonl": base + ".jsonl", "parquet": base + ".parquet"}
        moto, moto_url = start_moto(args.moto)
        put(f"{moto_url}/bench")
        for name, path in files.items():
            put(f"{moto_url}/bench/{os.path.basename(path)}", path)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
        results = []
        for rnd in range(args.rounds):
            for fmt, path in files.items():
                for where in ("local", "s3"):
                    source = path if where == "local" else f"s3://bench/{os.path.basename(path)}"
                    r = run_once(args, work, fmt, where, source, moto_url if where == "s3" else None,
                                 moto.pid if where == "s3" else None)
                    r.update(round=rnd, file_bytes=os.path.getsize(path), dim=args.dim, commit=commit,
                             date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    if args.out:
                        with open(args.out, "a") as f:
                            f.write(json.dumps(r) + "\n")
        print()
        print(f"{'format':8} {'source':6} {'rows/s (median)':>16} {'peak RSS MB':>12} {'client CPU s':>13} "
              f"{'moto CPU s':>11} {'other CPU s':>12}")
        for fmt in files:
            for where in ("local", "s3"):
                rs = sorted((r for r in results if r["format"] == fmt and r["source"] == where),
                            key=lambda r: r["rows_per_s"])
                mid = rs[len(rs) // 2]
                print(f"{fmt:8} {where:6} {mid['rows_per_s']:>16.0f} {max(r['peak_rss_mb'] for r in rs):>12.1f} "
                      f"{mid['client_cpu_s']:>13.2f} {mid['moto_cpu_s'] if mid['moto_cpu_s'] is not None else '-':>11} "
                      f"{mid['other_cpu_s']:>12.2f}")
        return 0
    finally:
        if moto:
            stop(moto)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
