"""Benchmark: one RL step of proxygap's loop vs TRL's GRPOTrainer, same model and work.

Same base model (a size of the family: --size, default s), same prompts, batch 64 (16 prompts x 4 samples),
same completion limit, same reward function (the rater), KL penalty on (a reference model is
run by both), one gradient step per batch, on the same device in the same precision (``--device``,
default auto; ``--dtype``, default fp32: TRL's ``use_cpu`` and ``bf16`` follow them). Each figure is the median time between consecutive steps (robust to the noise of a
shared machine). The two trainers are timed in ``--rounds`` alternating rounds (the order swaps
each round), so a machine whose speed drifts slows both alike; the speed-up is the median of the
rounds' ratios, printed beside their range. Needs the bench extra: pip install -e '.[bench]'.
Last line: speedup_vs_trl=<x>.
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from proxygap.lm.device import compute_on, describe, resolve_device, resolve_dtype
from proxygap.pipeline.base_model import load_base_model
from proxygap.oversight.judges import Judge
from proxygap.tasks.prompts import assistant_prompts
from proxygap.train.rl import RLConfig, train_rl

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=20, help="timed steps per trainer and round (after 2 warm-up steps)")
parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both trainers (the order swaps each round)")
parser.add_argument("--max-new-tokens", type=int, default=24)
parser.add_argument("--size", default="s", help="a shipped size of the model family (xs, s, m) or a model directory")
parser.add_argument("--threads", type=int, default=0, help="torch threads for both trainers (0: torch's default)")
parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"), help="fp32, or bf16 mixed precision")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device = resolve_device(args.device)
resolve_dtype(args.dtype, device)
print(f"size={args.size} threads={torch.get_num_threads()} device={describe(device)} dtype={args.dtype}")

base = load_base_model(args.size)
prompts = [p.text for p in assistant_prompts(base.world, 0)]
rater = Judge(base.world)
torch.manual_seed(0)


def proxygap_step_time() -> float:
    stamps = []

    def proxy(p, c):  # called once per training step, so its call times mark the steps
        stamps.append(time.perf_counter())
        return np.array(rater(p, c))

    cfg = RLConfig(steps=2 + args.steps, prompts_per_step=16, samples_per_prompt=4,
                   max_new_tokens=args.max_new_tokens, eval_every=10_000, eval_samples_per_prompt=1)
    with compute_on(device, args.dtype):
        train_rl(base.model.to(device), base.tokenizer, prompts, prompts[:1], proxy, {"rater": rater, "gold": rater},
                 cfg, kl_coef=0.05, seed=0, progress=False)
    # The evaluations (before the first and after the last step) call the proxy too: drop them.
    return float(np.median(np.diff(stamps[2:-1])))


def trl_step_time() -> float:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from proxygap.integrations.trl import reward_functions

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    dataset = Dataset.from_dict({"prompt": [f"{base.tokenizer.bos_token} {p}" for p in prompts]})
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=64, num_generations=4,
            max_completion_length=args.max_new_tokens, beta=0.05, learning_rate=1e-4, max_steps=2 + args.steps,
            logging_steps=1000, save_strategy="no", report_to=[], use_cpu=device.type == "cpu", bf16=args.dtype == "bf16", temperature=1.0,
            num_iterations=1, disable_tqdm=True,
        )
        model = type(base.model).from_pretrained(base.path, dtype=torch.float32)  # m is fp16 on disk
        trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(optimize={"rater": rater})[0], args=config,
                              train_dataset=dataset,
                              processing_class=base.tokenizer, callbacks=[Clock()])
        trainer.train()
    return float(np.median(np.diff(stamps[1:])))


if args.rounds < 1 or args.steps < 2:
    raise SystemExit("--rounds must be >= 1 and --steps >= 2")
try:
    import trl  # noqa: F401
except ImportError as e:
    raise SystemExit(f"TRL is not installed ({e}); pip install -e '.[bench]'") from None
ours, theirs = [], []
for r in range(args.rounds):
    for trainer in ((proxygap_step_time, trl_step_time) if r % 2 == 0 else (trl_step_time, proxygap_step_time)):
        (ours if trainer is proxygap_step_time else theirs).append(trainer())
    print(f"round {r + 1}: proxygap {ours[-1]:.3f} s, TRL {theirs[-1]:.3f} s, ratio {theirs[-1] / ours[-1]:.2f}", flush=True)
ratios = np.array(theirs) / np.array(ours)
print(f"proxygap_step_s={np.median(ours):.3f}")
print(f"trl_grpo_step_s={np.median(theirs):.3f}")
print(f"speedup_range={ratios.min():.2f}..{ratios.max():.2f} over {args.rounds} rounds")
print(f"speedup_vs_trl={np.median(ratios):.2f}")
