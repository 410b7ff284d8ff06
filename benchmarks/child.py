"""What the side-by-side benchmarks share: each side runs in a child process of its own (so peak
memory is per side) with the same runtime settings, and reports one JSON line."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB: Linux's VmHWM (``ru_maxrss`` survives exec, so a
    child would report its parent's peak when that is higher)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(script: str, which: str, flags: list[str], environ: dict | None = None) -> dict:
    """Run ``script --child WHICH FLAGS...`` (in ``environ``, default this one's) and return the JSON of its
    last stdout line."""
    cmd = [sys.executable, script, "--child", which, *flags]
    env = {**(os.environ if environ is None else environ), "OMP_WAIT_POLICY": "PASSIVE",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{which} run failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_sides(run, sides=("trl", "swiftkit")) -> dict[str, dict]:
    """``run(side)`` for each side in turn, adding ``tokens_per_s`` (from ``tokens`` / ``seconds``)
    and the side's wall time."""
    results = {}
    for side in sides:
        start = time.perf_counter()
        results[side] = r = run(side)
        r["tokens_per_s"] = r["tokens"] / r["seconds"]
        r["wall_s"] = time.perf_counter() - start
    return results
