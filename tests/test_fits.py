"""Gao et al. 2022 fits: recover known alpha, beta; peak formulas; guards."""

import math

import numpy as np
import pytest

from proxygap.measure.fits import Fit, fit, fit_bon, fit_rl

ALPHA, BETA = 1.0, 0.3


def _bon(d):
    return d * (ALPHA - BETA * d)


def _rl(d):
    return d * (ALPHA - BETA * np.log(d))


def test_bon_recovers_alpha_beta_from_noisy_data():
    rng = np.random.default_rng(0)
    d = np.linspace(0.1, 4.0, 40)
    f = fit_bon(d, _bon(d) + rng.normal(0, 0.01, d.size))
    assert f.form == "bon"
    assert f.alpha == pytest.approx(ALPHA, rel=0.05)
    assert f.beta == pytest.approx(BETA, rel=0.05)
    assert f.d_star == pytest.approx(f.alpha / (2 * f.beta))
    assert f.peak_value == pytest.approx(f.predict(f.d_star))
    assert f.r2 > 0.99
    assert f.n_points == 40


def test_rl_recovers_alpha_beta_from_noisy_data():
    rng = np.random.default_rng(1)
    d = np.linspace(0.1, 12.0, 40)
    f = fit_rl(d, _rl(d) + rng.normal(0, 0.01, d.size))
    assert f.alpha == pytest.approx(ALPHA, rel=0.05)
    assert f.beta == pytest.approx(BETA, rel=0.05)
    assert f.d_star == pytest.approx(math.exp(f.alpha / f.beta - 1))
    assert f.peak_value == pytest.approx(f.predict(f.d_star))
    assert f.r2 > 0.99


@pytest.mark.parametrize(
    "form,curve,d", [("bon", _bon, np.linspace(0, 4, 9)), ("rl", _rl, np.linspace(0.2, 12, 9))]
)
def test_noiseless_r2_is_one_and_peak_is_exact(form, curve, d):
    f = fit(form, d, curve(np.where(d > 0, d, 1.0)) * (d > 0))
    assert f.r2 == pytest.approx(1.0, abs=1e-12)
    want = ALPHA / (2 * BETA) if form == "bon" else math.exp(ALPHA / BETA - 1)
    assert f.d_star == pytest.approx(want, rel=1e-9)
    # The peak really is the maximum of the fitted curve.
    grid = np.linspace(1e-3, 3 * want, 2001)
    assert f.predict(grid).max() <= f.peak_value + 1e-12


@pytest.mark.parametrize("fitter, curve", [(fit_rl, _rl), (fit_bon, _bon)])
def test_d_zero_is_dropped_and_predicted_zero(fitter, curve):
    d = np.array([0.0, 0.5, 1.0, 2.0])
    f = fitter(d, np.r_[0.7, curve(d[1:])])  # a d = 0 outlier must not count
    assert f.n_points == 3 and f.d_min == 0.5
    assert f.r2 == pytest.approx(1.0)
    assert f.predict(0.0) == 0.0


def test_r2_is_not_raised_by_points_that_are_zero_by_construction():
    rng = np.random.default_rng(3)
    d = np.repeat([0.0, 0.6, 1.0, 1.4, 1.8], 4)
    r = np.where(d > 0, _bon(d) + rng.normal(0, 0.1, d.size), 0.0)  # recentred: n = 1 scores exactly 0
    with_zeros, without = fit_bon(d, r), fit_bon(d[d > 0], r[d > 0])
    assert with_zeros.r2 == without.r2 and with_zeros.alpha == without.alpha


def test_where_the_fitted_curve_peaks():
    d = np.linspace(0.1, 3, 10)
    rising = fit_bon(d, d * (1.0 + 0.2 * d))  # beta = -0.2: no maximum, still rising (censored)
    assert rising.beta < 0 and rising.d_star is None and rising.peak_value is None and rising.peak == "none"
    assert fit_rl(d, d * (1.0 + 0.2 * np.log(d))).peak == "none"
    falling = fit_bon(d, d * (-0.5 - 0.2 * d))  # beta > 0, alpha < 0: only falls, so the maximum is the base
    assert falling.d_star == 0.0 and falling.peak_value == 0.0 and falling.peak == "at_base"
    assert fit_bon(d, _bon(d)).peak == "interior"  # d* = 1.67 within [0.1, 3]
    late = fit_bon(d[5:], _bon(d[5:]))  # measured from d = 1.71 on: the peak at 1.67 lies before the range
    assert late.peak == "below_range" and late.d_star == pytest.approx(ALPHA / (2 * BETA))
    far = fit_bon(d[:4], _bon(d[:4]))  # d_max 1.07 < d* 1.67: an extrapolation
    assert far.peak == "beyond_range" and far.d_star == pytest.approx(ALPHA / (2 * BETA))


def test_predict_shapes_and_to_dict():
    f = fit_bon([1.0, 2.0, 3.0], _bon(np.array([1.0, 2.0, 3.0])))
    assert isinstance(f.predict(1.5), float)
    assert f.predict(np.ones((2, 3))).shape == (2, 3)
    d = f.to_dict()
    assert set(d) >= {"form", "alpha", "beta", "r2", "d_star", "peak_value", "n_points"}
    assert Fit(**d) == f
    with pytest.raises(ValueError):
        f.predict(-1.0)


def test_r2_can_be_negative():
    d = np.linspace(0.5, 3, 12)
    # A constant offset (scores not recentred): the form has no intercept to absorb it.
    r = np.full_like(d, 5.0) + np.linspace(0, 0.01, 12)
    assert fit_bon(d, r).r2 < 0


@pytest.mark.parametrize("fitter", [fit_bon, fit_rl])
def test_too_few_points_raises(fitter):
    with pytest.raises(ValueError, match="at least 2 distinct d > 0"):
        fitter([0.0, 1.0, 1.0], [0.0, 0.5, 0.6])
    with pytest.raises(ValueError):
        fitter([], [])


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same length"):
        fit_bon([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match=">= 0"):
        fit_bon([-0.1, 1.0, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        fit_rl([1.0, np.nan, 2.0], [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="unknown form"):
        fit("ppo", [1.0, 2.0], [1.0, 2.0])


def test_fit_dict_records_why_a_fit_failed():
    from proxygap.measure.fits import fit_dict

    good = fit_dict("bon", [0.0, 0.5, 1.0, 1.5], [0.0, 0.4, 0.6, 0.6])
    assert {"alpha", "beta", "r2", "d_star"} <= set(good)
    assert "error" in fit_dict("rl", [0.0], [0.0])
