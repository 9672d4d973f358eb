#!/usr/bin/env python3
"""Samples a running vikingsync client from /proc until it exits (Linux, stdlib only).

    python3 bench/sample.py ROOT_PID EXE OUT.json [INTERVAL_S]

ROOT_PID is the process that (directly or through wrappers such as timeout, /usr/bin/time,
perf) runs EXE. The first descendant whose /proc/PID/exe is EXE is sampled every INTERVAL_S
(default 0.1 s): RSS and VmHWM, and the CPU time of each thread (threads of the same name are
summed, so `tokio-rt-worker` covers every runtime worker; a thread that exits keeps its last
reading, so a figure can be up to one interval short). OUT.json gets CPU seconds per thread name, the peak VmHWM (KB) and the RSS timeline [[t_s, rss_kb], ...].
"""

import json
import os
import sys
import time


def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def find(root: int, exe: str) -> int | None:
    todo = [root]
    while todo:
        p = todo.pop()
        try:
            if os.path.realpath(f"/proc/{p}/exe") == exe:
                return p
        except OSError:
            pass
        todo += children(p)
    return None


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def thread_cpu(pid: int, tck: int, seen: dict[str, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per thread name; `seen` keeps the last reading of threads that have exited."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1 : s.rindex(")")]
        fields = s[s.rindex(")") + 2 :].split()
        # utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after "pid (comm)".
        seen[tid] = (name, (int(fields[11]) + int(fields[12])) / tck)
    cpu: dict[str, float] = {}
    for name, secs in seen.values():
        cpu[name] = cpu.get(name, 0.0) + secs
    return cpu


def main() -> None:
    root, exe, out = int(sys.argv[1]), os.path.realpath(sys.argv[2]), sys.argv[3]
    interval = float(sys.argv[4]) if len(sys.argv) > 4 else 0.1
    tck = os.sysconf("SC_CLK_TCK")
    start = time.monotonic()
    pid = None
    while pid is None and os.path.exists(f"/proc/{root}") and time.monotonic() - start < 10:
        pid = find(root, exe)
        if pid is None:
            time.sleep(0.01)
    seen: dict[str, tuple[str, float]] = {}
    result = {"pid": pid, "threads_cpu_s": {}, "peak_rss_kb": 0, "rss_timeline": []}
    while pid is not None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            if state in ("Z", "X"):  # exited, not yet reaped: nothing left to read
                break
            cpu = thread_cpu(pid, tck, seen)
            rss = status_kb(pid, "VmRSS")
            hwm = status_kb(pid, "VmHWM")
        except (OSError, ValueError):
            break
        if rss == 0:
            break
        result["threads_cpu_s"] = {k: round(v, 2) for k, v in sorted(cpu.items())}
        result["peak_rss_kb"] = max(result["peak_rss_kb"], hwm)
        result["rss_timeline"].append([round(time.monotonic() - start, 2), rss])
        time.sleep(interval)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
