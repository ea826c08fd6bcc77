"""Gao et al. 2022 functional forms: score as a function of d = sqrt(KL).

Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization":
with d = sqrt(KL(pi || pi_init)), KL in nats per sequence,

    best-of-n:  R(d) = d (alpha - beta d)        peak d* = alpha / (2 beta)
    RL:         R(d) = d (alpha - beta log d)    peak d* = exp(alpha / beta - 1)

Both forms pass through R(0) = 0 and have no intercept, by design: the caller recentres
scores so that the initial policy scores 0 (subtract the initial policy's mean score, as
Gao et al. do for their RMs) before fitting. Feeding un-recentred scores gives a poor fit
and a meaningless d*.

Both forms are linear in (alpha, beta) — features (d, -d^2) and (d, -d log d) — so ordinary
least squares gives the exact minimiser; no iterative curve fitting, no starting guesses.
Points at d = 0 are left out of the fit and of R²: both features vanish there, so they say
nothing about (alpha, beta), and after recentring their score is 0 by construction, so keeping
them would only add fitted-exactly points to R².

Where the fitted curve peaks (``Fit.peak``): ``interior`` (d_min <= d* <= d_max), ``below_range``
(0 < d* < d_min: the peak lies before the first measured point, so the fit says only that the
curve falls over the whole measured range), ``beyond_range`` (d* > d_max: an extrapolation, as
Gao et al.'s predictions to n = 60,000 were), ``at_base``
(best-of-n with alpha <= 0 < beta: the curve only falls, so its maximum over d >= 0 is at
d* = 0, the base policy), or ``none`` (beta <= 0: no maximum, the curve still rises or bends up
at the end of the range; d* is censored, not small).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Form = Literal["bon", "rl"]


def _d_log_d(d: np.ndarray) -> np.ndarray:
    """d * log d with its limit 0 at d = 0 (np.log(0) would give -inf * 0 = nan)."""
    out = np.zeros_like(d, dtype=float)
    pos = d > 0
    out[pos] = d[pos] * np.log(d[pos])
    return out


def _features(form: Form, d: np.ndarray) -> np.ndarray:
    """Design matrix X with R(d) = X @ [alpha, beta]. Shape (len(d), 2)."""
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    return np.stack([d, -_d_log_d(d)], axis=1)


@dataclass(frozen=True)
class Fit:
    """A fitted Gao et al. 2022 curve.

    form: 'bon' for R(d) = d(alpha - beta d), 'rl' for R(d) = d(alpha - beta log d).
    r2: 1 - SS_res / SS_tot over the points used; negative when the form fits worse than
        a constant, reported as is (a warning sign, not an error).
    d_star, peak_value: where the curve peaks over d >= 0 and its value there (0 and 0 when it
        peaks at the base); None when it has no maximum (beta <= 0).
    peak: interior, below_range, beyond_range, at_base or none (the module docstring says which is which).
    d_min, d_max: range of d > 0 the fit saw — predictions beyond d_max are extrapolation
        (Gao et al. fitted best-of-n on n <= 1,000 and predicted to n = 60,000).
    """

    form: Form
    alpha: float
    beta: float
    r2: float
    d_star: float | None
    peak_value: float | None
    n_points: int
    d_min: float
    d_max: float
    peak: str

    def predict(self, d: ArrayLike) -> np.ndarray | float:
        """R(d) under this fit; a float for scalar d, an array otherwise."""
        arr = np.asarray(d, dtype=float)
        if np.any(arr < 0):
            raise ValueError("d = sqrt(KL) must be >= 0")
        flat = arr.ravel()  # _features wants 1-D; the shape is restored below
        out = _features(self.form, flat) @ np.array([self.alpha, self.beta])
        return float(out[0]) if arr.ndim == 0 else out.reshape(arr.shape)

    def to_dict(self) -> dict:
        """JSON-safe dict of all fields (None stays None)."""
        return {
            "form": self.form,
            "alpha": self.alpha,
            "beta": self.beta,
            "r2": self.r2,
            "d_star": self.d_star,
            "peak_value": self.peak_value,
            "n_points": self.n_points,
            "d_min": self.d_min,
            "d_max": self.d_max,
            "peak": self.peak,
        }


def _peak(form: Form, alpha: float, beta: float) -> float | None:
    """d* of the fitted curve over d >= 0 (0 where it only falls), or None if it has no maximum."""
    if not beta > 0:  # also catches nan
        return None
    if form == "bon":
        # alpha <= 0 puts the vertex at d <= 0: on d >= 0 the curve only falls from R(0) = 0.
        return alpha / (2 * beta) if alpha > 0 else 0.0
    # R'(d) = alpha - beta (log d + 1) = 0; R''(d) = -beta / d < 0, so always a maximum.
    expo = alpha / beta - 1
    if expo > 700:  # exp would overflow: the peak lies absurdly far out.
        return math.inf
    return math.exp(expo)


def peak_kind(d_star: float | None, d_max: float, d_min: float = 0.0) -> str:
    """interior, below_range, beyond_range, at_base or none: where a fitted d* lies against the
    fitted range [d_min, d_max]."""
    if d_star is None:
        return "none"
    if d_star == 0:
        return "at_base"
    if d_star > d_max:
        return "beyond_range"
    return "below_range" if d_star < d_min else "interior"


def _fit(form: Form, d: ArrayLike, r: ArrayLike) -> Fit:
    d_arr = np.asarray(d, dtype=float).ravel()
    r_arr = np.asarray(r, dtype=float).ravel()
    if d_arr.shape != r_arr.shape:
        raise ValueError(f"d and r must have the same length, got {d_arr.size} and {r_arr.size}")
    if not (np.all(np.isfinite(d_arr)) and np.all(np.isfinite(r_arr))):
        raise ValueError("d and r must be finite (no nan or inf)")
    if np.any(d_arr < 0):
        raise ValueError(
            "d = sqrt(KL) must be >= 0; clip a slightly negative KL estimate to 0 before sqrt"
        )

    # d = 0 rows carry no information about alpha, beta (both features are 0), and once scores are
    # recentred on the base their value is 0 by construction: in R² they would count as fitted
    # exactly. (For the log form, Gao et al. also note it is not meant to hold near d = 0.)
    keep = d_arr > 0
    d_arr, r_arr = d_arr[keep], r_arr[keep]

    n_distinct = np.unique(d_arr).size
    if n_distinct < 2:
        raise ValueError(
            f"fitting the '{form}' form needs at least 2 distinct d > 0 points to determine "
            f"alpha and beta, got {n_distinct}"
        )

    x = _features(form, d_arr)
    (alpha, beta), *_ = np.linalg.lstsq(x, r_arr, rcond=None)
    alpha, beta = float(alpha), float(beta)

    resid = r_arr - x @ np.array([alpha, beta])
    ss_res = float(resid @ resid)
    ss_tot = float(((r_arr - r_arr.mean()) ** 2).sum())
    if ss_tot > 0:
        r2 = 1.0 - ss_res / ss_tot
    else:  # constant r: r2 is undefined unless the fit is exact too.
        r2 = 1.0 if ss_res == 0 else float("nan")

    d_star = _peak(form, alpha, beta)
    peak_value = None
    if d_star == 0:
        peak_value = 0.0
    elif d_star is not None:
        # bon: R(d*) = alpha^2 / (4 beta); rl: R(d*) = beta d*. Both > 0 and finite iff d* is.
        peak_value = alpha * alpha / (4 * beta) if form == "bon" else beta * d_star
    return Fit(
        form=form,
        alpha=alpha,
        beta=beta,
        r2=float(r2),
        d_star=d_star,
        peak_value=peak_value,
        n_points=int(d_arr.size),
        d_min=float(d_arr.min()),
        d_max=float(d_arr.max()),
        peak=peak_kind(d_star, float(d_arr.max()), float(d_arr.min())),
    )


def fit_bon(d: ArrayLike, r: ArrayLike) -> Fit:
    """Least-squares fit of Gao et al. 2022's best-of-n form R(d) = d(alpha - beta d).

    d: sqrt(KL) per point, KL in nats per sequence (for best-of-n, KL = log n - (n-1)/n).
    r: scores recentred so the initial policy (n = 1, d = 0) scores 0. No intercept is fitted;
    points at d = 0 are dropped (they are 0 by construction).
    """
    return _fit("bon", d, r)


def fit_rl(d: ArrayLike, r: ArrayLike) -> Fit:
    """Least-squares fit of Gao et al. 2022's RL form R(d) = d(alpha - beta log d).

    d: sqrt(KL) per point, KL in nats per sequence. Points with d = 0 are dropped before
    fitting, as for best-of-n (and the form has infinite slope there); predict(0) still returns 0. r: scores recentred so the initial policy scores 0; no intercept.
    """
    return _fit("rl", d, r)


def fit(form: Form, d: ArrayLike, r: ArrayLike) -> Fit:
    """fit_bon or fit_rl by name, for experiment specs that name the form."""
    if form not in ("bon", "rl"):
        raise ValueError(f"unknown form {form!r}; use 'bon' or 'rl'")
    return _fit(form, d, r)


def fit_dict(form: Form, d: ArrayLike, r: ArrayLike) -> dict:
    """``fit(form, d, r).to_dict()``, or ``{'error': why}`` where the points cannot be fitted (too
    few, or no spread in d): an experiment records the reason in results.json instead of failing."""
    try:
        return fit(form, d, r).to_dict()
    except ValueError as e:
        return {"error": str(e)}
