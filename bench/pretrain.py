"""Benchmark: pretraining one size of the model family from nothing, against this machine's matmul peak.

Builds the world, corpus and tokenizer, then pretrains ``--size`` (default s) for ``--steps``
steps (default: the recipe's full run) and prints tokens per second, the model's FLOP rate
(PaLM's count: 6 x parameters + 12 x layers x width x context per token, forward + backward)
and that rate as a fraction of this machine's fp32 matmul peak, measured in the same run
(2048 x 2048 x 2048 torch.mm with the same threads, best of several, before and after
training; the higher is used). Last line: peak_fraction=<x>. Threads: torch's default unless
--threads. Usage: python bench/pretrain.py [--size m] [--steps 100] [--threads 2] [--out DIR]
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from proxygap.config import apply_overrides
from proxygap.pipeline.base_model import build_base_model, recipe_for_size

parser = argparse.ArgumentParser()
parser.add_argument("--size", default="s", help="model family size: xs, s, m or l")
parser.add_argument("--steps", type=int, help="override train.steps (a shorter measurement)")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
parser.add_argument("--out", help="where to write the model (default: a temporary directory, deleted)")
parser.add_argument("--profile", type=int, default=0, metavar="K",
                    help="also profile K training steps of this shape (torch.profiler) and print where the time goes")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t))
    return best


peak_before = matmul_peak()
recipe = recipe_for_size(args.size)
overrides = [f"train.threads={torch.get_num_threads()}"]
if args.steps:
    overrides += [f"train.steps={args.steps}", f"train.checkpoint_every={args.steps}", f"train.eval_every={args.steps}"]
recipe = apply_overrides(recipe, overrides)
out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="proxygap-bench-"))
start = time.time()
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
peak = max(peak_before, matmul_peak())
if args.profile:
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile

    from proxygap.lm.model import load_model

    model, _ = load_model(model_dir)
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
print(f"size={args.size} params={params} steps={recipe.train.steps} threads={torch.get_num_threads()}")
print(f"total_s={elapsed:.1f} train_loop_s={train_s:.1f} (includes {len(log)} validation evaluations)")
print(f"tokens_per_s={tokens / train_s:.0f}")
print(f"model_gflops_per_s={tokens * flops_per_token / train_s / 1e9:.1f}")
print(f"matmul_peak_gflops_per_s={peak / 1e9:.1f}")
print(f"peak_fraction={tokens * flops_per_token / train_s / peak:.3f}")
