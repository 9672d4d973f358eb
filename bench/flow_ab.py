#!/usr/bin/env python3
"""Interleaved A/B runs of bench/flow.py, keeping each client's first three rate cuts.

    python3 bench/flow_ab.py OUT ROUNDS LABEL=BIN[,LABEL=BIN...] SCENARIO...

Each round runs every binary on every scenario; the binaries' order is reversed every other
round (this machine's noise drifts). Appends flow.py's JSON lines to OUT-LABEL.jsonl and, per
run, the first three "rate cut" lines of each client's log to OUT-cuts.jsonl. q3 runs log at
debug level for them; the others at the default level, so their cuts are not kept. Runs flow.py
at `nice -n -10` (as root), as BENCHMARKS.md's flow figures were measured.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

FLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flow.py")


def first_cuts(log: str, n: int = 3) -> list:
    cuts = []
    with open(log, errors="replace") as f:
        for line in f:
            if '"rate cut"' not in line:
                continue
            try:
                j = json.loads(line)
            except ValueError:
                continue
            fields = j.get("fields", j)
            cut = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in fields.items() if k != "message"}
            cut["t"] = j.get("timestamp", "")
            cuts.append(cut)
            if len(cuts) >= n:
                break
    return cuts


def main() -> None:
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    out, rounds = sys.argv[1], int(sys.argv[2])
    bins = [b.split("=", 1) for b in sys.argv[3].split(",")]
    scenarios = sys.argv[4:]
    for r in range(rounds):
        for label, binary in (bins if r % 2 == 0 else bins[::-1]):
            for sc in scenarios:
                keep = tempfile.mkdtemp(prefix="flow-ab.")
                env = dict(os.environ, FLOW_KEEP=keep)
                if sc == "q3":
                    env["FLOW_LOG_LEVEL"] = "vikingsync=debug"
                p = subprocess.run(["nice", "-n", "-10", sys.executable, FLOW, "--bin", binary,
                                    "--out", f"{out}-{label}.jsonl", sc], env=env, capture_output=True, text=True)
                result = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-300:]
                cuts = {os.path.basename(f): first_cuts(f) for f in sorted(glob.glob(os.path.join(keep, "*.err")))}
                with open(f"{out}-cuts.jsonl", "a", encoding="utf-8") as g:
                    g.write(json.dumps({"round": r, "label": label, "sc": sc, "result": result, "cuts": cuts}) + "\n")
                print(r, label, sc, result.strip(), flush=True)
                shutil.rmtree(keep, ignore_errors=True)


if __name__ == "__main__":
    main()
