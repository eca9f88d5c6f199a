"""theory.finite_dim_exact: the effective ridge that carries the certified exact block model's first perfect
round to the finite-D linearised theory.

Against the exact softmax's Monte Carlo the module is checked on the quick grid of the finite-D study
(tests/sims/test_finite_dim_study.py) and, with more samples, by ``python -m sims.finite_dim`` (P3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import theory
from theory.finite_dim import first_perfect_quantiles
from theory.finite_dim_exact import (
    EffectiveLambda,
    _first_float,
    effective_lambda,
    exact_finite_dim_prediction,
)

K4 = dict(K=4, n=40, c=0.4, d=0.1, lam=1.25e-4)  # the quick grid of sims.finite_dim


def _sampled_counts(K, n, noise, eta, seed):
    rng = np.random.default_rng(seed)
    C = theory.corruption_matrix(noise, K, eta)
    y = np.repeat(np.arange(K), n)
    z = np.array([rng.choice(K, p=C[k]) for k in y])
    return theory.counts_from_labels(y, z, K)


CASES = {
    "symmetric 0.3, expected counts": (K4, theory.exact_label_counts(theory.symmetric(4, 0.3), 40)),
    "superclass 0.3, expected counts": (K4, theory.exact_label_counts(theory.superclass(4, 0.3, 2), 40)),
    "symmetric 0.3, sampled counts": (K4, _sampled_counts(4, 40, "symmetric", 0.3, 3)),
    "K = 3, symmetric 0.2, sampled counts": (dict(K=3, n=20, c=0.5, d=0.2, lam=2e-4),
                                             _sampled_counts(3, 20, "symmetric", 0.2, 1)),
}


@pytest.fixture(scope="module")
def calibrations():
    return {name: effective_lambda(**p, counts=counts, rounds=40) for name, (p, counts) in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_block_limit_reproduces_the_certified_exact_round(calibrations, name):
    """At D = infinity the theory at lam_eff reaches 100 % exactly at the certified exact round, which differs
    from the linearised round at lam (so the calibration is doing something)."""
    p, counts = CASES[name]
    cal = calibrations[name]
    assert isinstance(cal.exact_first, int) and cal.exact_first != cal.linear_first
    assert cal.exact_first == theory.min_rounds_exact(**p, counts=counts, rounds=40)
    got, pred = exact_finite_dim_prediction(**p, D=math.inf, counts=counts, rounds=40, calibration=cal)
    assert got is cal
    assert pred.block_first_round == cal.exact_first
    assert first_perfect_quantiles(pred.first_perfect_cdf, None)["median"] == cal.exact_first
    # without a calibration given, the same one is computed
    again, _ = exact_finite_dim_prediction(**p, D=math.inf, counts=counts, rounds=40)
    assert again == cal


@pytest.mark.parametrize("name", list(CASES))
def test_interval_ends_are_sharp_to_rel_tol(calibrations, name):
    """min_rounds equals the exact round at lo and hi and differs just outside them (2 rel_tol away)."""
    p, counts = CASES[name]
    cal = calibrations[name]
    C = counts / p["n"]
    args = {k: p[k] for k in ("K", "n", "c", "d")}
    assert cal.lo < cal.lam_eff < cal.hi and cal.lam_eff == pytest.approx(math.sqrt(cal.lo * cal.hi), rel=1e-15)
    assert theory.min_rounds(**args, lam=cal.lo, C=C) == cal.exact_first
    assert theory.min_rounds(**args, lam=cal.hi, C=C) == cal.exact_first
    assert theory.min_rounds(**args, lam=cal.lo / (1 + 2 * cal.rel_tol), C=C) > cal.exact_first
    assert theory.min_rounds(**args, lam=cal.hi * (1 + 2 * cal.rel_tol), C=C) < cal.exact_first
    assert cal.ratio == cal.lam_eff / p["lam"]


def test_float_first_round_equals_min_rounds_and_falls_with_lambda():
    """The float64 search path agrees with the exact min_rounds on a grid of ridges, and the first round is
    non-increasing in lambda on a fine grid (the monotonicity the bisection relies on)."""
    for name, (p, counts) in CASES.items():
        args = {k: p[k] for k in ("K", "n", "c", "d")}
        C = counts / p["n"]
        for lam in p["lam"] * np.logspace(-1, 1, 7):
            t = theory.min_rounds(**args, lam=lam, C=C)
            assert _first_float(**args, lam=lam, C=C, horizon=200) == (math.inf if t is None else t), (name, lam)
        fine = [_first_float(**args, lam=lam, C=C, horizon=400) for lam in p["lam"] * np.logspace(-1, 1, 300)]
        assert all(a >= b for a, b in zip(fine, fine[1:])), name
        assert fine[0] > fine[-1]


def test_no_calibration_when_the_exact_level_is_not_perfect_within_rounds():
    p, counts = CASES["superclass 0.3, expected counts"]
    cal = effective_lambda(**p, counts=counts, rounds=5)  # its exact first round is 16
    assert cal.exact_first is None and cal.lam_eff is None and cal.lo is None and cal.ratio is None
    got, pred = exact_finite_dim_prediction(**p, D=1e3, counts=counts, rounds=5, calibration=cal)
    assert got is cal and pred is None


def test_calibration_of_another_ridge_is_refused(calibrations):
    p, counts = CASES["symmetric 0.3, expected counts"]
    cal = calibrations["symmetric 0.3, expected counts"]
    with pytest.raises(ValueError, match="lam == 0.000125"):
        exact_finite_dim_prediction(**{**p, "lam": 2e-4}, D=1e3, counts=counts, rounds=40, calibration=cal)
    with pytest.raises(TypeError, match="EffectiveLambda"):
        exact_finite_dim_prediction(**p, D=1e3, counts=counts, rounds=40, calibration=(1e-4, 1e-4))
    assert isinstance(cal, EffectiveLambda)
