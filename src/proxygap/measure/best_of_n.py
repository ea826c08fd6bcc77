"""Best-of-n estimators: the curve n = 1..N from one pool of N samples per prompt.

- ``bon_kl(n)``: analytic KL of best-of-n, log n - (n-1)/n nats (an upper bound).
- ``bon_kl_pool``: the KL best-of-n actually pays where samples repeat, measured on the pool.
- ``bon_expected``: the unbiased estimator (Nakano et al. 2021, "WebGPT", App. I) of the
  expected score of the proxy-best of n, from one pool of N >= n samples per prompt.
- ``bon_weights``: the weight each pool rank gets in that estimator.
- ``bon_curve``: the whole curve over n, for several scores (proxy, rater, gold) at once.
- ``value_at_kl``: a curve's value at a given KL (RL's, say), so the two are compared at equal KL;
  ``gain_beyond_best_of_n``: a policy's gain over the base minus best-of-n's at the policy's KL.

Ties in the proxy: with ``ties="average"`` (default) the scores of samples tied on the
proxy are averaged before weighting, which is exactly the expectation under breaking ties
uniformly at random — the result does not depend on the order of the pool. This matters
when the proxy is coarse (a 0/1 rater ties most of the pool). ``ties="stable"`` instead
breaks ties by pool position (a stable sort: among tied samples the later one counts as
better), which is unbiased for "draw n, keep the tied winner with the largest pool index".
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln

Ties = Literal["average", "stable"]
_RESERVED_KEYS = ("n", "kl", "d", "kl_pool", "d_pool")


def _check_n(n: int, pool_size: int | None = None) -> int:
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or int(n) != n:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be at least 1, got n={n}")
    if pool_size is not None and n > pool_size:
        raise ValueError(f"n={n} is larger than the pool size N={pool_size}")
    return n


def bon_kl(n: int) -> float:
    """KL(best-of-n || initial policy) = log n - (n - 1)/n, in nats per sequence.

    The formula used by Stiennon et al. 2020 and Gao et al. 2022 (who plot against
    d = sqrt(bon_kl(n))). Beirami et al. 2024 ("Theoretical guarantees on the best-of-n
    alignment policy") show it is an upper bound on the true KL, tight when the proxy
    rarely ties (near-continuous outputs) and loose when the pool repeats itself — e.g.
    two equally likely outputs cap the true KL at log 2. A small LM that repeats
    completions sits on the loose side; report that beside any curve drawn on this axis.
    """
    n = _check_n(n)
    return math.log(n) - (n - 1) / n


def bon_kl_pool(proxy: ArrayLike, n: int) -> float:
    """KL(best-of-n || initial policy) measured on the pool, in nats, averaged over prompts.

    The pool's empirical distribution stands in for the initial policy: per prompt, the distinct
    proxy values v_1 < ... < v_K with pool shares q_k (repeated completions and ties pooled) and
    cdf F_k. Best-of-n's winner lands in level k with P_k = F_k^n - F_(k-1)^n and, within a level,
    is distributed as the policy is there (ties broken at random), so
    KL = sum_k P_k log(P_k / q_k) exactly, for that distribution (the discrete best-of-n of
    Beirami et al. 2024, §2). It equals log n - (n-1)/n only when all N samples are distinct and
    N >> n; a pool that repeats itself (a small LM, a coarse proxy) pays less — as little as 0
    when every sample ties. The plug-in is biased low for n near N (few distinct samples in view).
    proxy: shape (N,) or (P, N).
    """
    p = _as_pools(proxy, "proxy")
    n = _check_n(n)
    total = 0.0
    for row in p:
        _, counts = np.unique(row, return_counts=True)  # ascending proxy levels
        q = counts / counts.sum()
        cdf = np.cumsum(q)
        cdf[-1] = 1.0
        win = cdf ** n - np.concatenate([[0.0], cdf[:-1]]) ** n
        keep = win > 0
        total += float(np.sum(win[keep] * np.log(win[keep] / q[keep])))
    return max(0.0, total / len(p))  # exactly 0 at n = 1; round-off can dip below it


def bon_weights(pool_size: int, n: int) -> np.ndarray:
    """Weights w_i = C(i-1, n-1) / C(N, n), i = 1..N, over the pool in ascending proxy order.

    w_i is the probability that the i-th lowest-proxy sample is the maximum of a uniformly
    random n-subset (Nakano et al. 2021, App. I); w_i = 0 for i < n and sum_i w_i = 1.
    Computed in log space with gammaln so N ~ 1e5 neither overflows nor underflows. Shape (N,).
    """
    if pool_size < 1:
        raise ValueError(f"the pool must hold at least one sample, got N={pool_size}")
    n = _check_n(n, pool_size)
    i = np.arange(n, pool_size + 1, dtype=float)  # 1-indexed ranks that can win
    log_c_i = gammaln(i) - gammaln(n) - gammaln(i - n + 1)  # log C(i-1, n-1)
    log_c_total = gammaln(pool_size + 1) - gammaln(n + 1) - gammaln(pool_size - n + 1)
    w = np.zeros(pool_size)
    w[n - 1 :] = np.exp(log_c_i - log_c_total)
    # The weights sum to 1 exactly (hockey-stick identity); renormalising removes the
    # ~1e-12 gammaln round-off so n = 1 gives the pool mean to machine precision.
    return w / w.sum()


def _as_pools(x: ArrayLike, name: str) -> np.ndarray:
    """(N,) or (P, N) -> (P, N) float array; finite values only."""
    a = np.asarray(x, dtype=float)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N,) or (P, N) with N >= 1, got {np.shape(x)}")
    if not np.all(np.isfinite(a)):
        # A nan proxy would sort as the best sample; refuse rather than guess.
        raise ValueError(f"{name} must be finite (no nan or inf)")
    return a


def _sorted_scores(proxy: np.ndarray, scores: np.ndarray, ties: Ties) -> np.ndarray:
    """Scores reordered by ascending proxy per prompt, tie groups averaged if asked. (P, N)."""
    order = np.argsort(proxy, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    if ties == "stable":
        return s
    p = np.take_along_axis(proxy, order, axis=1)
    starts = np.ones(p.shape, dtype=bool)  # (P, N): True where a new tie group begins
    starts[:, 1:] = p[:, 1:] != p[:, :-1]
    # Column 0 always starts a group, so one cumsum over the flattened array gives ids
    # that never span two prompts.
    gid = np.cumsum(starts.ravel()) - 1
    means = np.bincount(gid, weights=s.ravel()) / np.bincount(gid)
    return means[gid].reshape(s.shape)


def _check_ties(ties: str) -> None:
    if ties not in ("average", "stable"):
        raise ValueError(f"ties must be 'average' or 'stable', got {ties!r}")


def bon_expected(proxy: ArrayLike, scores: ArrayLike, n: int, ties: Ties = "average") -> float:
    """Unbiased estimate of E[score of the proxy-best of n], averaged over prompts.

    Nakano et al. 2021, App. I: with the pool of N samples sorted by proxy ascending,
    E = sum_{i=n..N} C(i-1, n-1) / C(N, n) * s_(i)  (1-indexed), the expectation over
    n-subsets drawn without replacement from the pool. proxy, scores: shape (N,) for one
    prompt or (P, N) for a pool of N per prompt; the per-prompt estimates are averaged.
    Pass scores=proxy for the proxy's own curve. See the module docstring for ties.
    """
    _check_ties(ties)
    p = _as_pools(proxy, "proxy")
    s = _as_pools(scores, "scores")
    if s.shape != p.shape:
        raise ValueError(f"proxy and scores must have the same shape, got {p.shape} and {s.shape}")
    w = bon_weights(p.shape[1], n)
    return float((_sorted_scores(p, s, ties) @ w).mean())


def bon_curve(
    proxy: ArrayLike,
    scores_by_name: Mapping[str, ArrayLike],
    ns: Iterable[int],
    ties: Ties = "average",
) -> list[dict]:
    """The best-of-n curve: for each n, {'n', 'kl', 'd', 'kl_pool', 'd_pool', <name>: expected score, ...}.

    kl = bon_kl(n) in nats, d = sqrt(kl) (the x-axis of Gao et al. 2022); kl_pool = bon_kl_pool
    (the KL measured on the pool, at most kl), d_pool = sqrt(kl_pool). Each score array
    has proxy's shape, (N,) or (P, N); values are bon_expected averaged over prompts.
    Include the proxy itself in scores_by_name to get its curve too. Names are used as
    keys as given (e.g. 'reward/rm', 'reward/gold'); 'n', 'kl', 'd', 'kl_pool' and 'd_pool' are reserved.
    """
    _check_ties(ties)
    p = _as_pools(proxy, "proxy")
    sorted_by_name: dict[str, np.ndarray] = {}
    for name, scores in scores_by_name.items():
        if name in _RESERVED_KEYS:
            raise ValueError(f"score name {name!r} clashes with a reserved key {_RESERVED_KEYS}")
        s = _as_pools(scores, f"scores[{name!r}]")
        if s.shape != p.shape:
            raise ValueError(f"scores[{name!r}] has shape {s.shape}, proxy has {p.shape}")
        # Sort once per score; each n then costs one (P, N) @ (N,) product.
        sorted_by_name[name] = _sorted_scores(p, s, ties)
    rows = []
    for n in ns:
        w = bon_weights(p.shape[1], n)
        kl, kl_pool = bon_kl(n), bon_kl_pool(p, n)
        row: dict = {"n": int(n), "kl": kl, "d": math.sqrt(kl), "kl_pool": kl_pool, "d_pool": math.sqrt(kl_pool)}
        for name, s in sorted_by_name.items():
            row[name] = float((s @ w).mean())
        rows.append(row)
    return rows


def value_at_kl(points: Sequence[Mapping], key: str, kl: float, kl_key: str = "kl_pool") -> float | None:
    """A best-of-n curve's ``key`` at a KL it does not list, linear between the two points around
    it (``kl_key``: the measured KL, or 'kl' for the formula's); None outside the curve's range,
    since a larger n than the pool holds is not measured and extrapolating would invent it."""
    xs = np.array([p[kl_key] for p in points], dtype=float)
    ys = np.array([p[key] for p in points], dtype=float)
    if len(xs) == 0 or not math.isfinite(kl) or kl < xs.min() or kl > xs.max():
        return None
    order = np.argsort(xs, kind="stable")  # measured KL rises with n; sorted in case ties break it
    return float(np.interp(kl, xs[order], ys[order]))


def gain_beyond_best_of_n(gain: float, kl: float | None, curve: Sequence[Mapping], key: str = "gold") -> float | None:
    """A policy's gain in ``key`` over the base (``gain``, at its KL ``kl``) minus best-of-n's gain at
    that KL, read on best-of-n's measured-KL curve (``curve``: point 0 the base, each point with its
    ``kl_pool``); None where the curve does not reach that KL or has no measured KL (an older run).
    A policy's KL is a k1 estimate from its samples, which can come out below 0 near the base: it is
    read at 0, the base's own point, not as a KL the curve does not reach."""
    if kl is None or len(curve) < 2 or any("kl_pool" not in p for p in curve):
        return None
    gains = [{"kl_pool": p["kl_pool"], "gain": p[key] - curve[0][key]} for p in curve]
    at = value_at_kl(gains, "gain", max(0.0, kl) if math.isfinite(kl) else kl)
    return None if at is None else gain - at
