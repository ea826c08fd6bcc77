"""Benchmark: wall time of the other experiments at preset quick, on the embedded default model.

Runs each as a user would (`proxygap run NAME --preset quick`) in a temporary directory and
prints one `NAME_s=<seconds>` line each. Targets on a 2-core CPU: loopholes at most 600 s,
kl-prior at most 1500 s, tampering at most 900 s. Pass experiment names to time only those.
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENTS = ("loopholes", "kl-prior", "tampering")

names = sys.argv[1:] or EXPERIMENTS
for name in names:
    if name not in EXPERIMENTS:
        raise SystemExit(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
figures = {}
with tempfile.TemporaryDirectory() as tmp:
    for name in names:
        start = time.time()
        subprocess.run([sys.executable, "-m", "proxygap.cli", "run", name, "--preset", "quick",
                        "--out", str(Path(tmp) / name)], check=True)
        figures[name] = time.time() - start
        print(f"{name.replace('-', '_')}_s={figures[name]:.1f}", flush=True)
