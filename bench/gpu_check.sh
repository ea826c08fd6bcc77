#!/usr/bin/env bash
# The GPU check: on a machine with a CUDA GPU, every experiment's smoke preset with device=cuda
# (bf16), the RL-step benchmark (sizes s and m, against TRL on the same GPU) and the pretraining
# benchmark (sizes m and l: tokens/s and the fraction of the GPU's bf16 matmul peak, measured in
# the same run). Prints one name=value line per figure; last line gpu_check_failures=N.
# Budget: about 10 minutes on an H100-class GPU (each step has its own time limit).
#
# Usage: bash bench/gpu_check.sh [OUT_DIR]   (needs torch with CUDA, and '.[bench]' for TRL)
# Set-up on a fresh machine: pip install torch && pip install -e '.[bench]'.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/proxygap-gpu-check}}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
failures=0

python - <<'EOF' || { echo "gpu_check_failures=1 (no CUDA GPU: nothing to check)"; exit 1; }
import torch
assert torch.cuda.is_available(), "torch sees no CUDA GPU"
print(f"torch={torch.__version__} cuda={torch.version.cuda} gpu={torch.cuda.get_device_name(0)} "
      f"bf16={torch.cuda.is_bf16_supported(including_emulation=False)}")
EOF

step() {  # step NAME LIMIT_S COMMAND...: run it, log it, print NAME_s=wall seconds or NAME=failed
    local name="$1" limit="$2"; shift 2
    local start=$SECONDS
    if timeout "$limit" "$@" >"$out/$name.log" 2>&1; then
        echo "${name}_s=$((SECONDS - start))"
    else
        echo "${name}=failed (rc $?, after $((SECONDS - start)) s; last lines of $out/$name.log:)"
        tail -n 5 "$out/$name.log" | sed 's/^/    /'
        failures=$((failures + 1))
    fi
}

experiments=$(python -c "from proxygap.experiments.catalogue import MODULES; print(' '.join(MODULES))")
for experiment in $experiments; do
    step "smoke_${experiment//-/_}" 120 python -m proxygap.cli run "$experiment" --preset smoke --device cuda \
        --dtype bf16 --out "$out/runs/$experiment" --force --quiet
    python - "$out/runs/$experiment/results.json" <<'EOF' 2>/dev/null
import json, sys
meta = json.load(open(sys.argv[1]))["meta"]
print(f"    ran on {meta['device']} in {meta['dtype']}, {meta['wall_time_s']} s inside the runner")
EOF
done

for size in s m; do
    # --flop-steps 0: the roofline costs four more training runs of each trainer; the device budget is short
    step "rl_step_$size" 150 python bench/rl_step.py --size "$size" --device cuda --dtype bf16 --steps 10 --flop-steps 0
    grep -E "^(proxygap_step_s|trl_grpo_step_s|speedup_vs_trl)=" "$out/rl_step_$size.log" | sed "s/^/    $size: /"
done

for size in m l; do
    step "pretrain_$size" 150 python bench/pretrain.py --size "$size" --device cuda --dtype bf16 --steps 300
    grep -E "^(tokens_per_s|model_gflops_per_s|matmul_peak_bf16_gflops_per_s|peak_fraction)=" \
        "$out/pretrain_$size.log" | sed "s/^/    $size: /"
done

echo "gpu_check_failures=$failures"
