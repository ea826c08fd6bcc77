"""The one interval every reported number carries, and the one test of whether something moved.

Every experiment's results.json writes an interval as ``Interval.to_dict()``::

    {"mean": m, "lo": l, "hi": h, "n": n, "method": "t" | "wilson" | "newcombe" | "hull(...)"}

(``None`` where a value is undefined, e.g. no seed had data), plus whatever an experiment
adds beside it (``per_seed``, ``k``, ``direction``). ``n`` is the number of seeds for a
t-interval and the number of trials (possibly a weighted count) for a Wilson interval.

Claims are made in one way only: ``moved(change)`` says 'up' or 'down' when the interval of a
change excludes 0, and nothing otherwise. An interval without spread is no interval (one
seed; or seeds that agree exactly, which under common random numbers happens when two policies
differ in a single sampled answer), so it never supports a claim. The one exception is
``paired_rate_change``: where every seed's change of a rate over a fixed set of episodes is
exactly the same (every seed 1.0 against 0.0, say), the seeds' interval is widened to hold
Newcombe's interval on the pooled episodes (conservative: it treats the two policies' episodes
as independent, though they share starts and random numbers). ``peak_along`` builds on it:
a curve "rises above its base" or "peaks and falls" only where the per-seed gain or drop clears
its interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from proxygap.measure.stats import fieller_interval, t_interval, wilson_interval

Direction = Literal["up", "down"]
# Where a quantity can lie, for ``bounds``: a rate or agreement; a difference of two; a KL.
UNIT, SIGNED_UNIT, NONNEGATIVE = (0.0, 1.0), (-1.0, 1.0), (0.0, math.inf)
_TOL = 1e-9  # a spread narrower than this (relative to max(1, |mean|)) is round-off, not an interval


def _num(x) -> float | None:
    """A JSON-ready float, None for None and nan."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


@dataclass(frozen=True)
class Interval:
    """A mean with its interval: ``lo <= mean <= hi``; any of the three None where undefined."""

    mean: float | None
    lo: float | None
    hi: float | None
    n: float  # seeds (method "t") or trials (method "wilson"); 0 without data
    method: str  # "t": Student-t across seeds; "wilson": Wilson score on counts; "hull": several combined

    @classmethod
    def from_values(cls, values: Iterable, confidence: float = 0.95,
                    bounds: tuple[float, float] | None = None) -> Interval:
        """Student-t interval of the mean of per-seed values (None and nan left out).

        ``bounds`` clips lo and hi to where the quantity can lie (a rate in [0, 1]); the mean is
        never clipped, nor an end past it (an estimate such as a k1 KL can come out below a bound
        the quantity itself keeps). One value gives lo = hi = mean: no spread, so no interval to
        claim from."""
        vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        if not vals:
            return cls(None, None, None, 0, "t")
        mean, lo, hi = t_interval(np.asarray(vals, dtype=float), confidence)
        if bounds is not None:
            lo, hi = min(max(lo, bounds[0]), mean), max(min(hi, bounds[1]), mean)
        return cls(_num(mean), _num(lo), _num(hi), len(vals), "t")

    @classmethod
    def from_ratio(cls, numerators: Sequence, denominators: Sequence, confidence: float = 0.95) -> Interval:
        """Fieller's interval of mean(numerators) / mean(denominators), paired by seed (a seed
        where either is None or nan is left out); lo and hi None where the denominators' mean is
        not clearly away from 0."""
        pairs = [(float(a), float(b)) for a, b in zip(numerators, denominators, strict=True)
                 if a is not None and b is not None and not (math.isnan(float(a)) or math.isnan(float(b)))]
        if not pairs:
            return cls(None, None, None, 0, "fieller")
        ratio, lo, hi = fieller_interval([a for a, _ in pairs], [b for _, b in pairs], confidence)
        return cls(_num(ratio), _num(lo), _num(hi), len(pairs), "fieller")

    @classmethod
    def from_counts(cls, k: float, n: float, confidence: float = 0.95) -> Interval:
        """Wilson interval of a rate of k hits in n trials (k, n may be weighted, fractional counts)."""
        if n is None or n <= 0:
            return cls(None, None, None, 0, "wilson")
        rate, lo, hi = wilson_interval(min(max(k, 0), n), n, confidence)
        return cls(_num(rate), _num(lo), _num(hi), n, "wilson")

    @classmethod
    def from_count_difference(cls, k1: float, n1: float, k2: float, n2: float, confidence: float = 0.95) -> Interval:
        """Newcombe's hybrid score interval (1998, method 10) of the difference of two independent
        rates k1/n1 - k2/n2, built from their Wilson intervals; it does not collapse at 0 or n hits."""
        if not all(math.isfinite(x) for x in (k1, n1, k2, n2)) or n1 <= 0 or n2 <= 0:
            return cls(None, None, None, 0, "newcombe")
        p1, l1, u1 = wilson_interval(min(max(k1, 0), n1), n1, confidence)
        p2, l2, u2 = wilson_interval(min(max(k2, 0), n2), n2, confidence)
        d = p1 - p2
        lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
        return cls(_num(d), _num(max(-1.0, lo)), _num(min(1.0, hi)), n1 + n2, "newcombe")

    @classmethod
    def hull(cls, *parts: Interval | Mapping, mean: float | None = None) -> Interval:
        """The smallest interval holding every part's (defined) interval; mean: the first part's
        unless given. For a rate, e.g., the seeds' t-interval together with the pooled Wilson
        interval: the t-interval collapses to a point when every seed saw 0 hits."""
        ivs = [as_interval(p) for p in parts]
        los = [i.lo for i in ivs if i.lo is not None]
        his = [i.hi for i in ivs if i.hi is not None]
        m = ivs[0].mean if mean is None and ivs else mean
        return cls(_num(m), min(los) if los else None, max(his) if his else None,
                   ivs[0].n if ivs else 0, "hull(" + ",".join(i.method for i in ivs) + ")")

    @classmethod
    def from_dict(cls, d: Mapping) -> Interval:
        """Back from ``to_dict`` (also reads an older ``{"mean", "ci": [lo, hi]}``)."""
        lo, hi = d.get("lo"), d.get("hi")
        if "ci" in d and lo is None and hi is None:
            lo, hi = d["ci"]
        return cls(_num(d.get("mean")), _num(lo), _num(hi), d.get("n", 0) or 0, d.get("method", "t"))

    @property
    def defined(self) -> bool:
        return self.mean is not None and self.lo is not None and self.hi is not None

    @property
    def has_spread(self) -> bool:
        """Whether this is an interval at all: defined, wider than round-off, and (for a
        t-interval) from at least two seeds."""
        if not self.defined or (self.method in ("t", "fieller") and self.n < 2):
            return False
        return self.hi - self.lo > _TOL * max(1.0, abs(self.mean))

    def to_dict(self) -> dict:
        n = self.n
        if isinstance(n, float) and n.is_integer():
            n = int(n)
        return {"mean": _num(self.mean), "lo": _num(self.lo), "hi": _num(self.hi), "n": n, "method": self.method}


def as_interval(iv: Interval | Mapping | None) -> Interval:
    if iv is None:
        return Interval(None, None, None, 0, "t")
    return iv if isinstance(iv, Interval) else Interval.from_dict(iv)


def seed_interval(values: Sequence, bounds: tuple[float, float] | None = None, per_seed: bool = False) -> dict:
    """``Interval.from_values(values).to_dict()``, with the per-seed values beside it if asked."""
    out = Interval.from_values(values, bounds=bounds).to_dict()
    if per_seed:
        out["per_seed"] = list(values)
    return out


def seed_differences(a: Sequence, b: Sequence) -> list[float | None]:
    """``a - b`` seed by seed, for two per-seed lists that line up (None kept where a seed lacks a
    value, as ``seed_interval(..., per_seed=True)`` writes them): None where either is None, so
    that ``Interval.from_values`` leaves that seed out of a paired interval."""
    if len(a) != len(b):
        raise ValueError(f"per-seed lists of different lengths ({len(a)} and {len(b)}) do not pair seed by seed")
    return [None if x is None or y is None else x - y for x, y in zip(a, b)]


def paired_rate_change(rates: Sequence[float], reference: Sequence[float], trials: int,
                       confidence: float = 0.95) -> dict:
    """The change of a rate against a reference measured on the same seeds, each seed's rate over
    ``trials`` episodes: the t-interval across seeds of the per-seed differences. Where there are
    two or more seeds and every seed's difference is the same (every seed 1.0 against 0.0, say),
    that interval has no spread and could never claim a change; it is then widened to hold
    Newcombe's interval on the counts pooled over seeds, the sampling uncertainty of the episodes
    themselves (for independent samples: conservative for these paired ones). One seed stays a
    point: one seed never claims. ``confidence`` applies to both intervals (a Bonferroni
    correction over a family of such changes raises it)."""
    pairs = [(a, b) for a, b in zip(rates, reference)
             if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    seeds = Interval.from_values([a - b for a, b in pairs], confidence, bounds=(-1.0, 1.0))
    if len(pairs) < 2 or seeds.has_spread:
        return seeds.to_dict()
    k1, k2, n = sum(a for a, _ in pairs) * trials, sum(b for _, b in pairs) * trials, len(pairs) * trials
    return Interval.hull(seeds, Interval.from_count_difference(k1, n, k2, n, confidence)).to_dict()


def curve_intervals(curves: Sequence[Sequence[Mapping]], index_keys: Sequence[str], keys: Sequence[str],
                    gain_keys: Sequence[str] = (), bounds: Mapping[str, tuple[float, float]] | None = None) -> list[dict]:
    """Per-seed curves (the same points in every seed) averaged point by point: each of ``keys`` an
    interval across seeds (clipped to ``bounds[key]`` where given, e.g. a KL at 0); each of
    ``gain_keys`` also as ``<key>_gain``, its gain over the seed's own first point (the base), with
    an interval on the per-seed gains: the paired, recentred quantity."""
    points = []
    for j, first in enumerate(curves[0]):
        point = {k: first[k] for k in index_keys}
        for key in keys:
            point[key] = seed_interval([c[j][key] for c in curves], bounds=(bounds or {}).get(key))
            if key in gain_keys:
                point[f"{key}_gain"] = seed_interval([c[j][key] - c[0][key] for c in curves])
        points.append(point)
    return points


def count_interval(k: float, n: float, design_effect: float = 1.0) -> dict:
    """``Interval.from_counts(k, n).to_dict()`` with the hit count ``k`` beside it; with a
    ``design_effect`` above 1 (correlated trials, e.g. several samples of each prompt), the Wilson
    interval is taken on the effective n / design_effect trials at the same rate, and the dict
    carries ``n_effective`` and ``design_effect`` beside the raw ``k`` and ``n``."""
    if not math.isfinite(design_effect) or design_effect < 1.0:
        raise ValueError(f"design_effect must be a finite number >= 1, got {design_effect}")
    if design_effect == 1.0:
        return {**Interval.from_counts(k, n).to_dict(), "k": k}
    n_eff = n / design_effect
    return {**Interval.from_counts(k / design_effect, n_eff).to_dict(), "n": n, "k": k,
            "n_effective": n_eff, "design_effect": design_effect}


def pooled_count_interval(parts: Sequence[Mapping]) -> dict:
    """One rate over several seeds' counts, each part ``{"k", "n"}`` with its own ``n_effective``
    (its trials' clustering; absent: independent trials). The pooled rate is sum k / sum n; its
    variance, given the seeds' policies, is sum (n_s / N)^2 p_s (1 - p_s) / n_eff_s (seeds are
    independent), so the pooled design effect is that over the binomial p (1 - p) / N, floored at 1;
    at a pooled rate of 0 or 1 the effective trials are the seeds' own summed. Seed-to-seed spread is
    not in it: that is what the seeds' t-interval is for."""
    parts = [p for p in parts if p.get("n")]
    k, n = sum(p["k"] for p in parts), sum(p["n"] for p in parts)  # ints stay ints in the JSON
    if n <= 0:
        return count_interval(0.0, 0.0)
    rate = k / n
    if rate <= 0.0 or rate >= 1.0:  # no spread to estimate a variance from: the seeds' own effective trials
        n_eff = sum(float(p.get("n_effective") or p["n"]) for p in parts)
        return count_interval(k, n, max(1.0, n / n_eff))
    variance = sum((float(p["n"]) / n) ** 2 * (float(p["k"]) / float(p["n"])) * (1 - float(p["k"]) / float(p["n"]))
                   / float(p.get("n_effective") or p["n"]) for p in parts)
    return count_interval(k, n, max(1.0, variance / (rate * (1 - rate) / n)))


# ---------------------------------------------------------------- claims
def moved(change: Interval | Mapping | None, value: float = 0.0) -> Direction | None:
    """'up' / 'down' when the interval of a change lies entirely above / below ``value`` (0: no
    change), else None. An interval without spread (one seed, seeds agreeing exactly) never
    claims: its mean may be 1e-16 or 0.3, either way nothing says how far it could be off."""
    iv = as_interval(change)
    if not iv.has_spread:
        return None
    if iv.lo > value:
        return "up"
    if iv.hi < value:
        return "down"
    return None


def excludes(iv: Interval | Mapping | None, value: float = 0.0) -> bool:
    """Whether the interval excludes ``value`` (see ``moved``)."""
    return moved(iv, value) is not None


def separated(a: Interval | Mapping | None, b: Interval | Mapping | None) -> Direction | None:
    """'up' / 'down' when a's interval lies entirely above / below b's. For two quantities with no
    paired change to test (a policy's rate against a base model measured once); where there is a
    per-seed change, test that with ``moved``. Both must be intervals with spread."""
    a, b = as_interval(a), as_interval(b)
    if not (a.has_spread and b.has_spread):
        return None
    if a.lo > b.hi:
        return "up"
    if a.hi < b.lo:
        return "down"
    return None


def peak_along(points: Sequence[Mapping], key: str, curves: Sequence[Sequence[Mapping]],
               x_key: str = "kl") -> dict:
    """Where the mean of ``key`` peaks along a curve, and what the seeds support claiming about it.

    ``curves`` holds each seed's own points (the same points in every seed; point 0 the base);
    ``points`` their mean curve, where ``key`` and ``x_key`` are numbers or interval dicts. The
    peak is the point of the highest mean. Claimed only where an interval of per-seed
    differences clears 0 (``moved``):

    - ``rises_above_base``: the gain peak − base;
    - ``interior_peak``: a rise that peaks before the end, with the drop peak − end clearing 0;
    - ``ends_below_base``: the gain end − base below 0.

    The peak is chosen, by the same seeds, as the best of the ``k`` points after the base, so the
    two intervals taken at it are Bonferroni's, at confidence 1 − 0.05 / k (``peak_confidence``):
    a 95% interval at the chosen point would clear 0 more often than 2.5% per side with no effect
    at all. The end is fixed in advance and keeps 95%.
    """
    mean = [_mean(p[key]) for p in points]
    last = len(points) - 1
    # a point without data (nan) is never the peak; argmax would return the first nan
    i = int(np.nanargmax(mean)) if not all(math.isnan(m) for m in mean) else 0
    at = lambda c, j: _mean(c[j][key])  # noqa: E731
    confidence = 1 - 0.05 / max(1, last)
    gain = Interval.from_values([at(c, i) - at(c, 0) for c in curves], confidence)
    end_gain = Interval.from_values([at(c, last) - at(c, 0) for c in curves])
    drop = Interval.from_values([at(c, i) - at(c, last) for c in curves], confidence)
    rises = moved(gain) == "up"
    return {
        "peak_index": i,
        "peak_x": max(0.0, _mean(points[i][x_key])),
        "end_x": _mean(points[last][x_key]),
        "peak": mean[i], "start": mean[0], "end": mean[last],
        "gain_at_peak": gain.to_dict(),
        "gain_at_end": end_gain.to_dict(),
        "drop_after_peak": drop.to_dict(),
        "peak_confidence": confidence,
        "rises_above_base": rises,
        "interior_peak": bool(rises and 0 < i < last and moved(drop) == "up"),
        "ends_below_base": moved(end_gain) == "down",
    }


def _mean(x) -> float:
    """A point's number: the mean of an interval dict, or the number itself."""
    if isinstance(x, Mapping):
        x = x["mean"]
    return math.nan if x is None else float(x)
