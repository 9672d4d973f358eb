#!/usr/bin/env python3
"""Summarises an A/B results file from bench/ab.sh (stdlib only): per scenario and binary, the
median rows/s with its range, mean client / reader-thread / emulator CPU, peak client RSS range,
and throttles. Runs where read != applied + rejected, or that failed, are listed at the end.

    python3 bench/compare.py AB.jsonl
"""

import json
import re
import statistics
import sys


def scenario(name: str) -> str:
    # Scenario a's runs carry a repeat index (a-csv-2 -> a-csv); other names are kept whole
    # (h-jitter100-300 stays as it is).
    m = re.fullmatch(r"(a-[a-z]+)-\d+", name)
    return m.group(1) if m else name


def main() -> None:
    rs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    binaries = list(dict.fromkeys(r.get("binary", "?") for r in rs))
    groups: dict[str, dict[str, list[dict]]] = {}
    for r in rs:
        groups.setdefault(scenario(r["name"]), {}).setdefault(r.get("binary", "?"), []).append(r)
    print("| scenario | binary | runs | rows/s median (min–max) | client CPU s | reader CPU s | "
          "emulator CPU s | client peak RSS MB | throttles |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for sc in sorted(groups):
        for b in binaries:
            xs = groups[sc].get(b)
            if not xs:
                continue
            thr = [x["throughput"] for x in xs if x.get("throughput")]
            cpu = [x["client_user_s"] + x["client_sys_s"] for x in xs if "client_sys_s" in x]
            rd = [x["reader_cpu_s"] for x in xs if x.get("reader_cpu_s") is not None]
            emu = [x["emulator_cpu_s"] for x in xs]
            rss = [x["client_peak_rss_mb"] for x in xs if x.get("client_peak_rss_mb")]
            th = [x.get("throttles") for x in xs]
            mean = lambda v: f"{statistics.mean(v):.2f}" if v else ""
            print(f"| {sc} | {b} | {len(xs)} | "
                  + (f"{statistics.median(thr):.0f} ({min(thr)}–{max(thr)})" if thr else "")
                  + f" | {mean(cpu)} | {mean(rd)} | {mean(emu)} | "
                  + (f"{min(rss)}–{max(rss)}" if rss else "")
                  + f" | {'/'.join(str(t) for t in th) if any(th) else '0'} |")
    bad = [f"{r.get('binary')}:{r['name']}" for r in rs
           if r.get("exit") != 0 or r.get("rows_read") != (r.get("applied") or 0) + (r.get("rejected") or 0)]
    if bad:
        print(f"\n**Failed or inconsistent runs:** {', '.join(bad)}")


if __name__ == "__main__":
    main()
