"""Benchmark: pretraining one size of the model family from nothing, against this machine's matmul peak.

Builds the world, corpus and tokenizer, then pretrains ``--size`` (default s) for ``--steps``
steps (default: the recipe's full run) and prints tokens per second, the model's FLOP rate
(PaLM's count: 6 x parameters + 12 x layers x width x context per token, forward + backward)
and that rate as a fraction of this machine's matmul peak in the run's precision, measured in
the same run (torch.mm of 2048^3 on a CPU, 8192^3 on a GPU, with the same threads, best of
several, before and after training; the higher is used): fp32's peak for ``--dtype fp32``,
bf16's for ``--dtype bf16``. Last line: peak_fraction=<x>. Threads: torch's default unless
--threads. Usage: python bench/pretrain.py [--size m] [--steps 100] [--threads 2] [--device cuda --dtype bf16] [--out DIR]
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from _peak import matmul_peak

from proxygap.config import apply_overrides
from proxygap.lm.device import compute_on, describe, resolve_device, resolve_dtype
from proxygap.pipeline.base_model import build_base_model, recipe_for_size

parser = argparse.ArgumentParser()
parser.add_argument("--size", default="s", help="model family size: xs, s, m or l")
parser.add_argument("--steps", type=int, help="override train.steps (a shorter measurement)")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
parser.add_argument("--out", help="where to write the model (default: a temporary directory, deleted)")
parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="fp32, or bf16 mixed precision (autocast)")
parser.add_argument("--profile", type=int, default=0, metavar="K",
                    help="also profile K training steps of this shape (torch.profiler) and print where the time goes")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device = resolve_device(args.device)
precision = resolve_dtype(args.dtype, device)

peak_before = matmul_peak(device, precision)
recipe = recipe_for_size(args.size)
overrides = [f"train.threads={torch.get_num_threads()}"]
if args.steps:
    overrides += [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}", f"train.eval_every={args.steps}"]
recipe = apply_overrides(recipe, overrides)
out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="proxygap-bench-"))
start = time.time()
with compute_on(device, args.dtype):
    model_dir = build_base_model(recipe, out, progress=True)
elapsed = time.time() - start
log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
train_s = log[-1]["time/elapsed_s"]  # the training loop alone (world, corpus, tokenizer and saving excluded)
config = json.loads((model_dir / "config.json").read_text())
params = sum(p.numel() for p in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
    str(model_dir / "model.safetensors")).values())
L, d, T = config["n_layer"], config["n_embd"], recipe.train.seq_len
tokens = recipe.train.steps * recipe.train.batch_size * T
flops_per_token = 6 * params + 12 * L * d * T
peak = max(peak_before, matmul_peak(device, precision))
if args.profile:
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from proxygap.lm.model import load_model

    model, _ = load_model(model_dir)  # on the CPU: the profile is of the CPU path
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(3, config["vocab_size"], (recipe.train.batch_size, T + 1))

    def train_step() -> None:
        loss = F.cross_entropy(model(input_ids=x[:, :-1]).logits.flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.profile):
            train_step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
if not args.out:
    shutil.rmtree(out, ignore_errors=True)
print(f"size={args.size} params={params} steps={recipe.train.steps} threads={torch.get_num_threads()} "
      f"device={describe(device)} dtype={args.dtype}")
print(f"total_s={elapsed:.1f} train_loop_s={train_s:.1f} (includes {len(log)} validation evaluations)")
print(f"tokens_per_s={tokens / train_s:.0f}")
print(f"model_gflops_per_s={tokens * flops_per_token / train_s / 1e9:.1f}")
print(f"matmul_peak_{args.dtype}_gflops_per_s={peak / 1e9:.1f}")
print(f"peak_fraction={tokens * flops_per_token / train_s / peak:.3f}")
