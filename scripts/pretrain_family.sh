#!/usr/bin/env bash
# Pretrain the shipped sizes of the model family (xs, s, m) into runs/family/<size>/ and copy each
# finished model into the package (src/proxygap/models/<size>/; m in half precision).
# Resumable: rerun after an interruption and each size continues from its last checkpoint.
# Usage: bash scripts/pretrain_family.sh [SIZE...]   (default: xs s m)
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("${@:-xs s m}")
for size in ${sizes[@]}; do
  out="runs/family/$size"
  proxygap pretrain --size "$size" --out "$out" --quiet
  python - "$out/model" "src/proxygap/models/$size" "$size" <<'PY'
import shutil, sys
from pathlib import Path
from proxygap.lm.model import load_model, save_model
src, dst, size = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
model, tokenizer = load_model(src)
if size == "m":  # half precision on disk keeps the package small; load_model computes in float32
    model = model.half()
extra = {p.name: p.read_bytes() for p in src.iterdir() if p.name.startswith(("proxygap_", "pretrain_config"))}
save_model(model, tokenizer, dst, extra)
print(f"{size}: copied to {dst}")
PY
done
