"""Benchmark: wall time of the README's quickstart (the overoptimization experiment, preset quick).

Runs it exactly as the README does, in a temporary directory, and prints the run's own
figures; the last line is `quickstart_s=<seconds>` (target: at most 300 on a 2-core CPU).
"""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "quickstart"
    start = time.time()
    subprocess.run([sys.executable, "-m", "proxygap.cli", "run", "overoptimization", "--preset", "quick",
                    "--out", str(out), *sys.argv[1:]], check=True)
    elapsed = time.time() - start
print(f"quickstart_s={elapsed:.1f}")
