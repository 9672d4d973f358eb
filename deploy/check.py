#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/kubernetes (run by .ci/run):

1. every manifest validates against the Kubernetes schemas, strictly (kubernetes-validate);
2. every container command line in them is accepted by the real binary: it must parse (not exit
   64, EX_USAGE) and get as far as loading its config, which does not exist here (exit 78,
   EX_CONFIG);
3. the pod specs the Job, the CronJob and the Deployment share do not drift apart: the same
   security context, container security context, volumes of config/credentials/state, and
   automountServiceAccountToken: false.

    python deploy/check.py --bin target/debug/vikingsync
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
EX_USAGE, EX_CONFIG = 64, 78


def pod_spec(doc: dict) -> dict | None:
    kind = doc.get("kind")
    if kind in ("Job", "Deployment"):
        return doc["spec"]["template"]["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--kubernetes-version", default="1.37.0")
    args = ap.parse_args()
    manifests = sorted(glob.glob(os.path.join(HERE, "kubernetes", "*.yaml")))
    failures = []

    out = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "--kubernetes-version",
         args.kubernetes_version, *manifests],
        capture_output=True, text=True)
    print(out.stdout.strip())
    if out.returncode != 0:
        failures.append("kubernetes-validate: " + (out.stderr.strip() or out.stdout.strip()))

    shared = {}
    for path in manifests:
        for doc in yaml.safe_load_all(open(path, encoding="utf-8")):
            if not doc:
                continue
            spec = pod_spec(doc)
            if spec is None:
                continue
            name = f"{os.path.basename(path)} ({doc['kind']})"
            for c in spec.get("containers", []):
                # The Job controller sets JOB_COMPLETION_INDEX in an Indexed Job's pods.
                cmd = [args.bin, *(a.replace("$(JOB_COMPLETION_INDEX)", "0") for a in c.get("args", []))]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                   env={k: v for k, v in os.environ.items() if not k.startswith("VIKINGDB_")})
                if r.returncode != EX_CONFIG:
                    failures.append(f"{name}: `{' '.join(c.get('args', []))}` exited {r.returncode}, expected "
                                    f"{EX_CONFIG} (parsed, then no config here); stderr: {r.stderr.strip()[:300]}")
                else:
                    print(f"ok: {name}: args parse ({' '.join(c.get('args', []))})")
            if spec.get("automountServiceAccountToken") is not False:
                failures.append(f"{name}: automountServiceAccountToken must be false")
            volumes = {v["name"]: {k: v2 for k, v2 in v.items() if k != "name"} for v in spec.get("volumes", [])}
            shared[name] = {
                "securityContext": spec.get("securityContext"),
                "containerSecurityContext": [c.get("securityContext") for c in spec.get("containers", [])],
                "volumes": {k: volumes.get(k) for k in ("config", "credentials")},
                "image": [c.get("image") for c in spec.get("containers", [])],
            }
    names = list(shared)
    for other in names[1:]:
        for key in shared[names[0]]:
            if shared[other][key] != shared[names[0]][key]:
                failures.append(f"pod specs drifted: {key} differs between {names[0]} and {other}:\n"
                                f"  {json.dumps(shared[names[0]][key])}\n  {json.dumps(shared[other][key])}")
    if len(names) < 4:
        failures.append(f"expected the Job, the Indexed Job, the CronJob and the Deployment, found {names}")
    for f in failures:
        print("FAIL:", f)
    print(f"{len(manifests)} manifests, {len(names)} pod specs: " + ("ok" if not failures else f"{len(failures)} failures"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
