"""Benchmark: one RL step of proxygap's loop vs TRL's GRPOTrainer, same model and work.

Same base model (the embedded default), same prompts, batch 64 (16 prompts x 4 samples),
same completion limit, same reward function (the rater), KL penalty on (a reference model is
run by both), one gradient step per batch, on this CPU. TRL runs with use_cpu=True,
bf16=False. Needs the bench extra: pip install -e '.[bench]'. Last line: speedup_vs_trl=<x>.
"""

import argparse
import tempfile
import time

import numpy as np
import torch

from proxygap.lm.base import load_base_model
from proxygap.oversight.judges import Judge
from proxygap.tasks.prompts import assistant_prompts
from proxygap.train.rl import RLConfig, train_rl

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=12, help="timed steps per trainer (after 2 warm-up steps)")
parser.add_argument("--max-new-tokens", type=int, default=24)
args = parser.parse_args()

base = load_base_model()
prompts = [p.text for p in assistant_prompts(base.world, 0)]
rater = Judge(base.world)
torch.manual_seed(0)


def proxygap_step_time() -> float:
    times = []
    for steps in (2, 2 + args.steps):
        cfg = RLConfig(steps=steps, prompts_per_step=16, samples_per_prompt=4, max_new_tokens=args.max_new_tokens,
                       kl_coef=0.05, eval_every=10_000, eval_samples_per_prompt=1)
        start = time.perf_counter()
        train_rl(base.model, base.tokenizer, prompts, prompts[:1], lambda p, c: np.array(rater(p, c)),
                 {"rater": rater, "gold": rater}, cfg, progress=False)
        times.append(time.perf_counter() - start)
    return (times[1] - times[0]) / args.steps  # the difference removes set-up and the two evaluations


def trl_step_time() -> float:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    stamps = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    dataset = Dataset.from_dict({"prompt": [f"{base.tokenizer.bos_token} {p}" for p in prompts]})
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, per_device_train_batch_size=64, num_generations=4,
            max_completion_length=args.max_new_tokens, beta=0.05, learning_rate=1e-4, max_steps=2 + args.steps,
            logging_steps=1000, save_strategy="no", report_to=[], use_cpu=True, bf16=False, temperature=1.0,
            num_iterations=1, disable_tqdm=True,
        )
        model = type(base.model).from_pretrained(base.path)
        trainer = GRPOTrainer(model=model, reward_funcs=[rater], args=config, train_dataset=dataset,
                              processing_class=base.tokenizer, callbacks=[Clock()])
        trainer.train()
    return (stamps[-1] - stamps[1]) / (len(stamps) - 2)


ours = proxygap_step_time()
print(f"proxygap_step_s={ours:.3f}")
try:
    theirs = trl_step_time()
except ImportError as e:
    raise SystemExit(f"TRL is not installed ({e}); pip install -e '.[bench]'") from None
print(f"trl_grpo_step_s={theirs:.3f}")
print(f"speedup_vs_trl={theirs / ours:.2f}")
