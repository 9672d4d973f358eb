"""What the bench scripts share: starting `vikingsync emulator` in its own process and stopping it.

Python 3.11, stdlib only. Imported by cost.py, flow.py, objstore.py and serve.py (run as
`python3 bench/NAME.py`, so this directory is on the import path).

    proc, url = start_emulator(binary, work_dir, collections_toml)   # url: http://127.0.0.1:PORT
    stop(proc)                                                         # SIGTERM, then SIGKILL
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

# Credentials and endpoints of the caller's shell that must not reach a child: a bench run is
# against the emulator only.
SECRET_PREFIXES = ("VIKINGDB_", "VOLC_", "AWS_")


def clean_env(keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment without credentials (`SECRET_PREFIXES`), except the names in `keep`."""
    return {k: v for k, v in os.environ.items() if k in keep or not k.startswith(SECRET_PREFIXES)}


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int | None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`. The exit code (None if killed)."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def wait_for_address(proc: subprocess.Popen, path: str, what: str, timeout: float = 30.0) -> str:
    """The address from the first `listening on http://ADDR` line the process wrote to `path`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path, encoding="utf-8", errors="replace") as f:
            m = re.search(r"^listening on (http://[0-9.:]+)", f.read(), re.M)
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening; see {path}")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not print its address within {timeout} s")


def start_emulator(binary: str, work: str, collections: str) -> tuple[subprocess.Popen, str]:
    """`binary emulator` on 127.0.0.1 (an ephemeral port) with `collections` (the TOML text of
    its config) written to WORK/collections.toml; its stdout and stderr go to WORK/emulator.out
    and WORK/emulator.err. Returns the process and its base URL; stops it if it does not start."""
    os.makedirs(work, exist_ok=True)
    path = os.path.join(work, "collections.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(collections)
    out = os.path.join(work, "emulator.out")
    with open(out, "w") as stdout, open(os.path.join(work, "emulator.err"), "w") as stderr:
        proc = subprocess.Popen([binary, "--log-level", "warn", "emulator", "--listen", "127.0.0.1:0",
                                 "--collections", path], stdout=stdout, stderr=stderr, env=clean_env())
    try:
        return proc, wait_for_address(proc, out, "the emulator")
    except BaseException:
        stop(proc)
        raise
