"""Benchmark: reproduce the embedded default base model from nothing (world, tokenizer, pretraining).

Prints the time of each stage; the last line is `pretrain_s=<seconds>`. Target: at most 1800 s
on a 2-core CPU. Usage: python bench/pretrain.py [--out DIR] [--steps N]
"""

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from proxygap.config import apply_overrides
from proxygap.pipeline.base_model import BaseModelRecipe, build_base_model

parser = argparse.ArgumentParser()
parser.add_argument("--out", help="where to write the model (default: a temporary directory, deleted)")
parser.add_argument("--steps", type=int, help="override train.steps (for a shorter timing run)")
args = parser.parse_args()

recipe = BaseModelRecipe()
if args.steps:
    recipe = apply_overrides(recipe, [f"train.steps={args.steps}"])
out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="proxygap-bench-"))
start = time.time()
model_dir = build_base_model(recipe, out, progress=True)
elapsed = time.time() - start
print(f"model: {model_dir}  steps: {recipe.train.steps}")
if not args.out:
    shutil.rmtree(out, ignore_errors=True)
print(f"pretrain_s={elapsed:.1f}")
