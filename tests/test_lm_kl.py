import math

import pytest
import torch

from proxygap.lm.kl import kl_k1, kl_k3, sequence_kl


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_unbiased_against_exact_kl(estimator):
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])  # policy
    q = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2])  # reference
    exact = (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = (kl_k1 if estimator == "k1" else kl_k3)(p.log()[x], q.log()[x])
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - exact) < 4 * se
    if estimator == "k3":
        assert (est >= 0).all()


def test_k3_nonnegative_everywhere():
    logp, logp_ref = torch.randn(1000) * 3, torch.randn(1000) * 3
    assert (kl_k3(logp, logp_ref) >= 0).all()
    assert torch.allclose(kl_k3(logp, logp), torch.zeros(1000))


def test_sequence_kl_sums_real_tokens_only():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -float("inf"), -float("inf")]])
    logp_ref = torch.tensor([[-1.5, -1.0, 0.0], [-0.7, -3.0, -float("inf")]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.allclose(sequence_kl(logp, logp_ref, mask, "k1"), torch.tensor([0.5 - 1.0, 0.2]))
    k3 = sequence_kl(logp, logp_ref, mask, "k3")
    assert torch.isfinite(k3).all() and (k3 >= 0).all()
    with pytest.raises(ValueError, match="k2"):
        sequence_kl(logp, logp_ref, mask, "k2")


def test_sequence_kl_of_independent_tokens_adds_up():
    # Two i.i.d. tokens: KL of the sequence is twice the per-token KL (chain rule).
    g = torch.Generator().manual_seed(1)
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.3, 0.3, 0.4])
    exact = 2 * (p * (p / q).log()).sum().item()
    x = torch.multinomial(p, 2 * 100_000, replacement=True, generator=g).view(-1, 2)  # (N, 2)
    for est in ("k1", "k3"):
        kl = sequence_kl(p.log()[x], q.log()[x], torch.ones_like(x), est)
        assert abs(kl.mean().item() - exact) < 4 * kl.std().item() / math.sqrt(len(kl))
