"""Monte Carlo estimators of KL(pi || pi_ref) from tokens sampled by pi (Schulman's k1, k3).

With r = pi_ref(x) / pi(x) at a sampled token x ~ pi:
  k1 = -log r             unbiased, any sign per sample, high variance
  k3 = (r - 1) - log r    unbiased (E_pi[r] = 1), always >= 0, lower variance when pi ~ pi_ref
Summed over a sequence's tokens, both estimate the sequence-level KL in nats, the x-axis of
Gao et al. 2022 (by the chain rule of KL for autoregressive models).
"""

from __future__ import annotations

import torch
from torch import Tensor


def kl_k1(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-token k1 = log pi - log pi_ref at the sampled tokens."""
    return logp - logp_ref


def kl_k3(logp: Tensor, logp_ref: Tensor) -> Tensor:
    """Per-token k3 = (r - 1) - log r with r = pi_ref / pi; >= 0 since log r <= r - 1."""
    log_r = logp_ref - logp
    return torch.expm1(log_r) - log_r


def sequence_kl(logp: Tensor, logp_ref: Tensor, mask: Tensor, estimator: str = "k1") -> Tensor:
    """KL per sequence in nats: per-token estimates (B, T) summed over real tokens -> (B,)."""
    per_token = {"k1": kl_k1, "k3": kl_k3}.get(estimator)
    if per_token is None:
        raise ValueError(f"unknown KL estimator {estimator!r}; use 'k1' or 'k3'")
    return torch.where(mask.bool(), per_token(logp, logp_ref), 0.0).sum(-1)
