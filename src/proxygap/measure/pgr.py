"""Performance gap recovered (Burns et al. 2023), overall and per supervisor error type.

PGR = (student − weak) / (ceiling − weak), all three accuracies on gold labels of the same
held-out examples: 0 = the student only reached its supervisor, 1 = it reached what gold labels
would have given it. Undefined (None) where the ceiling does not beat the supervisor by more
than the test items' sampling noise (``gap_resolved``): a gap of one or two items out of
hundreds would make PGR a ratio of noise, ±40 on one seed.

Per error type: on the held-out examples where the supervisor's label is wrong for one cause
(a named rater flaw, label noise, or a weak model's mistake), the supervisor's accuracy is 0 by
definition, so the type's PGR is the student's accuracy there over the ceiling's: the share of
that kind of error the student corrects, relative to what it could. Gold ties (a preference
where gold prefers neither answer) are left out of every accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxygap.measure.intervals import Interval


def hard(p: float) -> float:
    """A probability or soft label -> 1.0 / 0.0 (0.5 stays 0.5: no side)."""
    return 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5


def accuracy(predicted: Sequence[float], gold: Sequence[float]) -> float | None:
    """Share of examples (gold ties left out) where the hardened prediction matches gold."""
    pairs = [(hard(p), g) for p, g in zip(predicted, gold) if g != 0.5]
    return sum(p == g for p, g in pairs) / len(pairs) if pairs else None


def gap_resolved(weak: float, ceiling: float, n: int) -> bool:
    """Whether accuracy ``ceiling`` beats ``weak``, both on the same ``n`` items, beyond their
    sampling noise: Newcombe's 95% interval of the difference excludes 0 (it treats the two as
    independent samples, which is conservative for two predictors scored on the same items)."""
    gap = Interval.from_count_difference(ceiling * n, n, weak * n, n)
    return gap.lo is not None and gap.lo > 0


def pgr(weak: float | None, student: float | None, ceiling: float | None, n: int | None = None) -> float | None:
    """(student - weak) / (ceiling - weak); None where the ceiling does not beat the supervisor, or,
    given the number of items ``n`` the accuracies are on, does not beat it beyond their noise."""
    if weak is None or student is None or ceiling is None or ceiling <= weak:
        return None
    if n is not None and not gap_resolved(weak, ceiling, n):
        return None
    return (student - weak) / (ceiling - weak)


def pgr_by_error(student: Sequence[float], ceiling: Sequence[float], gold: Sequence[float],
                 causes: Sequence[str | None]) -> dict[str, dict]:
    """Per cause: how many held-out examples the supervisor gets wrong for it, the student's and the
    ceiling's accuracy on them, and their ratio (the type's PGR)."""
    out = {}
    for cause in sorted({c for c, g in zip(causes, gold) if c is not None and g != 0.5}):
        idx = [i for i, (c, g) in enumerate(zip(causes, gold)) if c == cause and g != 0.5]
        s = accuracy([student[i] for i in idx], [gold[i] for i in idx])
        c = accuracy([ceiling[i] for i in idx], [gold[i] for i in idx])
        out[cause] = {"n": len(idx), "student": s, "ceiling": c, "pgr": pgr(0.0, s, c, len(idx))}
    return out
