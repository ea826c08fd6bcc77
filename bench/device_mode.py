"""Benchmark: what torch's default-device mode costs an RL step, measured on the CPU.

On a GPU, ``lm.device.compute_on`` makes the GPU torch's default device with ``torch.device(...)``
as a context: a Python ``TorchFunctionMode`` that every torch call passes through. On the CPU it
is skipped (the CPU already is the default), so its cost never shows here; this benchmark turns
it on anyway and times proxygap's RL step (the same work as ``bench/rl_step.py``: batch 64,
KL penalty on) with and without it, in alternating rounds. The Python cost per call is the same
on any device, so the difference is what a GPU run pays on top of its kernels.
``lm.device.explicitly_placed`` takes the mode off inside sampling and the per-token log-probs;
what is left is the rest of the step (rewards, advantages, the loss, the optimizer). Beside the
times (noisy on a shared machine), it counts the torch calls per step that pass through the
mode, which is exact.
Last line: mode_overhead=<fraction of the step without the mode>.
"""

import argparse
import contextlib
import time

import numpy as np
import torch

from torch.utils._device import DeviceContext

from proxygap.oversight.judges import Judge
from proxygap.pipeline.base_model import load_base_model
from proxygap.tasks.prompts import assistant_prompts
from proxygap.train.rl import RLConfig, train_rl

parser = argparse.ArgumentParser()
parser.add_argument("--size", default="s", help="a shipped size of the model family (xs, s, m) or a model directory")
parser.add_argument("--steps", type=int, default=12, help="timed steps per condition and round (after 2 warm-up steps)")
parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (the order swaps each round)")
parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
args = parser.parse_args()
if args.threads:
    torch.set_num_threads(args.threads)
print(f"size={args.size} threads={torch.get_num_threads()} device=cpu")

base = load_base_model(args.size)
prompts = [p.text for p in assistant_prompts(base.world, 0)]
rater = Judge(base.world)


class CountingDeviceContext(DeviceContext):
    """torch.device(...)'s mode, counting the calls it intercepts."""

    calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        CountingDeviceContext.calls += 1
        return super().__torch_function__(func, types, args, kwargs)


calls_per_step = []


def step_time(with_mode: bool) -> float:
    stamps, counts = [], []

    def proxy(p, c):  # called once per training step: its call times mark the steps
        stamps.append(time.perf_counter())
        counts.append(CountingDeviceContext.calls)
        return np.array(rater(p, c))

    cfg = RLConfig(steps=2 + args.steps, prompts_per_step=16, samples_per_prompt=4, max_new_tokens=24,
                   eval_every=10_000, eval_samples_per_prompt=1)
    with CountingDeviceContext("cpu") if with_mode else contextlib.nullcontext():
        train_rl(base.model, base.tokenizer, prompts, prompts[:1], proxy, {"rater": rater, "gold": rater},
                 cfg, kl_coef=0.05, seed=0, progress=False)
    if with_mode:
        calls_per_step.append(float(np.median(np.diff(counts[2:-1]))))
    return float(np.median(np.diff(stamps[2:-1])))  # the evaluations before and after call the proxy too


ratios = []
for r in range(args.rounds):
    order = (False, True) if r % 2 == 0 else (True, False)
    times = {mode: step_time(mode) for mode in order}
    ratios.append(times[True] / times[False])
    print(f"round {r + 1}: without the mode {times[False] * 1e3:.1f} ms, with it {times[True] * 1e3:.1f} ms "
          f"(+{100 * (ratios[-1] - 1):.1f}%)")
print(f"torch calls through the mode per step: {np.median(calls_per_step):.0f}")
print(f"rounds' overhead range: {100 * (min(ratios) - 1):+.1f}% to {100 * (max(ratios) - 1):+.1f}%")
print(f"mode_overhead={np.median(ratios) - 1:.3f}")
