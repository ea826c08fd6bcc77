"""Benchmark: one sweep, serial vs on a local 2-worker Ray instance.

Runs `overoptimization --preset quick --seeds 4` twice, once with the local executor and once
with `--executor ray` on a local Ray instance of 2 CPUs (each seed a Ray task of one CPU), with
one torch thread per unit in both, checks the two results.json agree (timings aside), and prints
both wall times. The last line is `ray_efficiency=serial_s / (2 * ray_s)`: 1.0 would be a
perfect 2x speed-up from 2 workers. On a 2-core machine expect it below 1: Ray's own processes
(raylet, GCS, the workers' start-up and each worker loading the base model) share the same two
cores, and 4 units over 2 workers leave no room for stragglers.

    python bench/sweep.py [--seeds K] [--preset P]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--seeds", type=int, default=4)
parser.add_argument("--preset", default="quick")
args = parser.parse_args()


def run(out: Path, *extra: str) -> float:
    start = time.time()
    subprocess.run([sys.executable, "-m", "proxygap.cli", "run", "overoptimization", "--preset", args.preset,
                    "--seeds", str(args.seeds), "--set", "threads=1", "--quiet", "--out", str(out), *extra],
                   check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def comparable(path: Path) -> dict:
    results = json.loads((path / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in ("meta", "timings")}


def differences(a, b, path: str = "") -> list[str]:
    """Where two results differ: each path with both values (shortened)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in (differences(a[k], b[k], f"{path}/{k}") if k in a and k in b else [f"{path}/{k}: only in one"])]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {str(a)[:60]} vs {str(b)[:60]}"]


with tempfile.TemporaryDirectory() as tmp:
    serial_s = run(Path(tmp) / "serial")
    ray_s = run(Path(tmp) / "ray", "--executor", "ray", "--ray-cpus", "2")
    diff = differences(comparable(Path(tmp) / "serial"), comparable(Path(tmp) / "ray"))
for line in diff[:10]:
    print(f"differs: {line}")
if len(diff) > 10:
    print(f"differs: ... {len(diff) - 10} more")
same = not diff
print(f"preset={args.preset} seeds={args.seeds} threads_per_unit=1 ray_workers=2")
print(f"serial_s={serial_s:.1f}")
print(f"ray_s={ray_s:.1f}")
print(f"identical_results={same}")
print(f"ray_efficiency={serial_s / (2 * ray_s):.3f}")
