"""Best-of-n: the no-training optimization regime of Gao et al. 2022.

Best-of-n samples n completions from the initial policy and keeps the one the proxy
(reward model or rater) scores highest. It is the cheapest way to push against a proxy,
and its KL from the initial policy is known in closed form, so it gives the reference
gold-vs-KL curve that RL is compared against at equal KL.

This module holds the regime: ``run_best_of_n`` samples one pool of N completions per
prompt and scores it with the proxy, the rater and gold; ``measure.best_of_n`` turns that
one pool into the whole curve n = 1..N.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from proxygap.config import Config, ConfigError, knob
from proxygap.measure.best_of_n import bon_curve

@dataclass
class BestOfNConfig(Config):
    pool_size: int = knob(64, "N: samples per prompt in the pool; the curve covers n = 1..N", lo=1)
    max_new_tokens: int = knob(24, "length limit of a completion, in tokens", lo=1)
    max_n: int = knob(0, "largest n reported (0: the pool size); must not exceed the pool size", lo=0)

    def check(self) -> None:
        if self.max_n > self.pool_size:
            raise ConfigError(f"best-of-n max_n={self.max_n} is larger than the pool (pool_size={self.pool_size})")


def powers_of_two(limit: int) -> list[int]:
    """1, 2, 4, ... up to ``limit``, with ``limit`` itself last."""
    ns = [1 << i for i in range(limit.bit_length()) if (1 << i) <= limit]
    return ns if ns[-1] == limit else ns + [limit]


def sample_pool(model, tokenizer, prompts: list[str], cfg: BestOfNConfig, *, seed: int) -> list[str]:
    """``cfg.pool_size`` samples per prompt, prompt by prompt (``texts[i * N + j]``)."""
    import torch

    from proxygap.lm.sampling import sample

    generator = torch.Generator().manual_seed(seed)
    repeated = [p for p in prompts for _ in range(cfg.pool_size)]
    return sample(model, tokenizer, repeated, cfg.max_new_tokens, generator=generator, batch_size=1024).texts


def score_pool(prompts: list[str], texts: list[str], scorers: Mapping[str, Callable], cfg: BestOfNConfig,
               proxy: str = "rm") -> dict:
    """Score a pool (from :func:`sample_pool`) with every scorer; the curve and the pool, as run_best_of_n."""
    repeated = [p for p in prompts for _ in range(cfg.pool_size)]
    scores = {name: np.asarray(f(repeated, texts), dtype=float).reshape(len(prompts), cfg.pool_size)
              for name, f in scorers.items()}
    ns = powers_of_two(cfg.max_n or cfg.pool_size)
    points = bon_curve(scores[proxy], scores, ns)
    return {"points": points, "pool": {"prompts": prompts, "texts": texts, "scores": scores}}


def run_best_of_n(model, tokenizer, prompts: list[str], scorers: Mapping[str, Callable], cfg: BestOfNConfig,
                  *, seed: int, proxy: str = "rm") -> dict:
    """Sample the pool, score it with every scorer, and return the curve and the pool.

    ``scorers`` maps a name ('rm', 'rater', 'gold') to ``f(prompts, completions) -> scores``;
    ``proxy`` names the one that picks the best of n. Returns ``{'points': [...], 'pool': {...}}``
    where the pool holds texts and score arrays of shape (P, N).
    """
    return score_pool(prompts, sample_pool(model, tokenizer, prompts, cfg, seed=seed), scorers, cfg, proxy)
