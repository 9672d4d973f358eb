#!/usr/bin/env python3
"""Turns bench/run.sh's results.jsonl into one Markdown table per scenario (stdlib only).

    python3 bench/report.py RESULTS.jsonl
"""

import json
import statistics
import sys


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def fmt(v, nd=2) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def cpu(r: dict) -> str:
    if "client_user_s" in r and "client_sys_s" in r:
        return f"{r['client_user_s'] + r['client_sys_s']:.2f}"
    return ""


def table(header: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def quota(v: int) -> str:
    return "unlimited" if v == 0 else str(v)


def main() -> None:
    rs = load(sys.argv[1])
    by = lambda prefix: [r for r in rs if r["name"].startswith(prefix)]
    failed = [r["name"] for r in rs if r.get("exit") != 0]

    a = by("a-")
    if a:
        print("### (a) raw throughput: 100k rows, dim 128, unlimited quota, concurrency 8\n")
        table(
            ["run", "rows", "rows/s", "wall s", "requests", "retries", "throttles", "client peak RSS MB",
             "client CPU s", "reader thread CPU s", "emulator CPU s", "other procs CPU s"],
            [[r["name"], fmt(r.get("rows_read")), fmt(r.get("throughput")), fmt(r["wall_s"]),
              fmt(r.get("requests")), fmt(r.get("retries")), fmt(r.get("throttles")),
              fmt(r.get("client_peak_rss_mb"), 1), cpu(r), fmt(r.get("reader_cpu_s")),
              fmt(r["emulator_cpu_s"]), fmt(r.get("foreign_cpu_s"))] for r in a],
        )
        for kind in ("csv", "jsonl"):
            xs = [r["throughput"] for r in a if r["name"].startswith(f"a-{kind}-") and r.get("throughput")]
            if xs:
                print(f"- {kind.upper()}: median {statistics.median(xs):.0f} rows/s "
                      f"(min {min(xs)}, max {max(xs)}, {len(xs)} runs)")
        print()

    b = by("b-")
    if b:
        print("### (b) at the quota: 30k rows\n")
        table(
            ["run", "client rows_per_second", "emulator quota", "rows", "rows/s", "wall s", "requests",
             "retries", "throttles (client)", "429s (emulator)", "client peak RSS MB", "other procs CPU s"],
            [[r["name"], quota(r["quota"]), quota(r.get("emulator_quota", r["quota"])), fmt(r.get("rows_read")),
              fmt(r.get("throughput")), fmt(r["wall_s"]), fmt(r.get("requests")), fmt(r.get("retries")),
              fmt(r.get("throttles")), fmt(r.get("emulator_throttled")), fmt(r.get("client_peak_rss_mb"), 1),
              fmt(r.get("foreign_cpu_s"))] for r in b],
        )

    c = by("c-")
    if c:
        print("### (c) latency 20 ms ± 10 ms (10 + uniform 0..20 ms): 30k rows, unlimited quota\n")
        table(
            ["concurrency", "rows/s", "latency-only bound rows/s", "wall s", "requests",
             "client peak RSS MB", "client CPU s", "emulator CPU s", "other procs CPU s"],
            [[fmt(r["concurrency"]), fmt(r.get("throughput")), fmt(r["concurrency"] * 100 * 50),
              fmt(r["wall_s"]), fmt(r.get("requests")), fmt(r.get("client_peak_rss_mb"), 1), cpu(r),
              fmt(r["emulator_cpu_s"]), fmt(r.get("foreign_cpu_s"))] for r in c],
        )
        print("(latency-only bound = concurrency × 100 rows per request / 20 ms mean latency)\n")

    d = by("d-")
    if d:
        print("### (d) gzip-compressed 100k files, unlimited quota, concurrency 8\n")
        table(
            ["run", "compressed MB", "rows/s", "wall s", "requests", "client peak RSS MB", "client CPU s",
             "reader thread CPU s", "emulator CPU s", "other procs CPU s"],
            [[r["name"], f"{r['file_bytes'] / 1e6:.1f}", fmt(r.get("throughput")), fmt(r["wall_s"]),
              fmt(r.get("requests")), fmt(r.get("client_peak_rss_mb"), 1), cpu(r), fmt(r.get("reader_cpu_s")),
              fmt(r["emulator_cpu_s"]), fmt(r.get("foreign_cpu_s"))] for r in d],
        )

    e = by("e-")
    if e:
        print("### (e) 768-dim vectors: memory vs file size (unlimited quota, concurrency 8)\n")
        table(
            ["run", "rows", "file MB", "rows/s", "wall s", "requests", "client peak RSS MB",
             "client RSS at 25/50/75/100 % MB", "client CPU s", "reader thread CPU s", "emulator CPU s",
             "emulator peak RSS MB", "other procs CPU s"],
            [[r["name"], fmt(r.get("rows_read")), f"{r['file_bytes'] / 1e6:.0f}", fmt(r.get("throughput")),
              fmt(r["wall_s"]), fmt(r.get("requests")), fmt(r.get("client_peak_rss_mb"), 1),
              " / ".join(fmt(x, 1) for x in r.get("rss_quartiles_mb") or []), cpu(r),
              fmt(r.get("reader_cpu_s")), fmt(r["emulator_cpu_s"]), fmt(r.get("emulator_peak_rss_mb"), 0),
              fmt(r.get("foreign_cpu_s"))] for r in e],
        )

    h = by("h-")
    if h:
        print("### (h) jitter vs a fixed latency of the same mean (200 ms): concurrency 8, 30k rows\n")
        table(
            ["run", "latency ms", "rows/s", "latency-only bound rows/s", "wall s", "requests",
             "client CPU s", "emulator CPU s", "other procs CPU s"],
            [[r["name"], f"{r['latency_ms']} + U(0..{r['jitter_ms']})" if r["jitter_ms"] else str(r["latency_ms"]),
              fmt(r.get("throughput")),
              fmt(round(r["concurrency"] * 100 / ((r["latency_ms"] + r["jitter_ms"] / 2) / 1000))),
              fmt(r["wall_s"]), fmt(r.get("requests")), cpu(r), fmt(r["emulator_cpu_s"]),
              fmt(r.get("foreign_cpu_s"))] for r in h],
        )

    p = by("p-")
    for r in p:
        print(f"### (p) {r['name']}: scenario (a) CSV under `perf stat` (software events only in this VM)\n")
        perf = {k[5:]: v for k, v in r.items() if k.startswith("perf_")}
        table(["rows/s", "wall s", "client CPU s", "reader thread CPU s", "tokio workers CPU s",
               "main thread CPU s", "emulator CPU s"] + list(perf),
              [[fmt(r.get("throughput")), fmt(r["wall_s"]), cpu(r), fmt(r.get("reader_cpu_s")),
                fmt(r.get("workers_cpu_s")), fmt(r.get("other_cpu_s")), fmt(r["emulator_cpu_s"])]
               + list(perf.values())])

    if failed:
        print(f"**Failed runs:** {', '.join(failed)}\n")


if __name__ == "__main__":
    main()
