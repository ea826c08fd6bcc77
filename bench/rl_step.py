"""Benchmark: one RL step of proxygap's loop vs TRL's GRPOTrainer, same model and work.

Same base model (a size of the family: --size, default s), same prompts, batch 64 (16 prompts x 4 samples),
same completion limit, same reward function (the rater), KL penalty on (a reference model is
run by both), one gradient step per batch, on the same device in the same precision (``--device``,
default auto; ``--dtype``, default fp32: TRL's ``use_cpu`` and ``bf16`` follow them). Each figure is the median time between consecutive steps (robust to the noise of a
shared machine). The two trainers are timed in ``--rounds`` alternating rounds (the order swaps
each round), so a machine whose speed drifts slows both alike; the speed-up is the median of the
rounds' ratios, printed beside their range. Needs the bench extra: pip install -e '.[bench]'.

A roofline beside it: the floating-point work of proxygap's step (its matrix products, forward
and backward, counted by torch's FlopCounterMode over ``--flop-steps`` steps after the first two;
TRL's counted alike; the fused CPU attention kernel is not in FlopCounterMode's table, about 5% of
the arithmetic at these lengths), the matmul peak measured in the same run (torch.mm, as bench/pretrain.py),
and the fraction of that peak each trainer's step reaches on that work (TRL's may do more
arithmetic for the same work: its fraction is of proxygap's count), and the fraction a step 3x
faster than TRL's would need. Last line: speedup_vs_trl=<x>.
"""

import argparse
import tempfile
import time

import numpy as np
import torch
from _peak import matmul_peak

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
parser.add_argument("--flop-steps", type=int, default=4, help="steps whose floating-point work is counted (0: no roofline)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
device = resolve_device(args.device)
precision = resolve_dtype(args.dtype, device)
print(f"size={args.size} threads={torch.get_num_threads()} device={describe(device)} dtype={args.dtype}")

base = load_base_model(args.size)
prompts = [p.text for p in assistant_prompts(base.world, 0)]
rater = Judge(base.world)
torch.manual_seed(0)


def proxygap_run(steps: int, proxy) -> None:
    cfg = RLConfig(steps=steps, prompts_per_step=16, samples_per_prompt=4,
                   max_new_tokens=args.max_new_tokens, eval_every=10_000, eval_samples_per_prompt=1)
    with compute_on(device, args.dtype):
        train_rl(base.model.to(device), base.tokenizer, prompts, prompts[:1], proxy, {"rater": rater, "gold": rater},
                 cfg, kl_coef=0.05, seed=0, progress=False)


def proxygap_step_time() -> float:
    stamps = []

    def proxy(p, c):  # called once per training step, so its call times mark the steps
        stamps.append(time.perf_counter())
        return np.array(rater(p, c))

    proxygap_run(2 + args.steps, proxy)
    # The evaluations (before the first and after the last step) call the proxy too: drop them.
    return float(np.median(np.diff(stamps[2:-1])))


def trl_run(steps: int, callbacks: list) -> None:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from proxygap.integrations.trl import reward_functions

    dataset = Dataset.from_dict({"prompt": [f"{base.tokenizer.bos_token} {p}" for p in prompts]})
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=64, num_generations=4,
            max_completion_length=args.max_new_tokens, beta=0.05, learning_rate=1e-4, max_steps=steps,
            logging_steps=1000, save_strategy="no", report_to=[], use_cpu=device.type == "cpu", bf16=args.dtype == "bf16", temperature=1.0,
            num_iterations=1, disable_tqdm=True,
        )
        model = type(base.model).from_pretrained(base.path, dtype=torch.float32)  # m is fp16 on disk
        trainer = GRPOTrainer(model=model, reward_funcs=reward_functions(optimize={"rater": rater})[0], args=config,
                              train_dataset=dataset,
                              processing_class=base.tokenizer, callbacks=callbacks)
        trainer.train()


def trl_step_time() -> float:
    from transformers import TrainerCallback

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    trl_run(2 + args.steps, [Clock()])
    return float(np.median(np.diff(stamps[1:])))


def step_flops(run) -> float:
    """Floating-point operations of one step of ``run(steps)``: a run of 2 + K steps minus a run of
    2 (the same seed, so the same first steps and evaluations), over K."""
    from torch.utils.flop_counter import FlopCounterMode

    totals = []
    for steps in (2, 2 + args.flop_steps):
        counter = FlopCounterMode(display=False)
        with counter:
            run(steps)
        totals.append(counter.get_total_flops())
    return (totals[1] - totals[0]) / args.flop_steps


if args.rounds < 1 or args.steps < 2 or args.flop_steps < 0:
    raise SystemExit("--rounds must be >= 1, --steps >= 2 and --flop-steps >= 0")
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
if args.flop_steps:
    flops = step_flops(lambda steps: proxygap_run(steps, lambda p, c: np.array(rater(p, c))))
    trl_flops, peak = step_flops(lambda steps: trl_run(steps, [])), matmul_peak(device, precision)
    print(f"step_gflop={flops / 1e9:.2f} (proxygap's step: matrix products, forward and backward)")
    print(f"trl_step_gflop={trl_flops / 1e9:.2f} (TRL's step on the same work, counted alike)")
    print(f"matmul_peak_gflops_per_s={peak / 1e9:.1f}")
    print(f"proxygap_peak_fraction={flops / np.median(ours) / peak:.3f}")
    print(f"trl_peak_fraction={flops / np.median(theirs) / peak:.3f} (on proxygap's count of the work)")
    print(f"peak_fraction_for_3x={3 * flops / np.median(theirs) / peak:.3f}")
print(f"speedup_vs_trl={np.median(ratios):.2f}")
