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


# ---------------------------------------------------------------- the search, on first-round functions of known shape
# (the theory's own first rounds always agree between the float search and min_rounds, so the fallback to the exact
# search, the ends of the search range and a jump over the exact round are reached with stand-ins)

import theory.finite_dim_exact as fde  # noqa: E402

P = dict(K=4, n=40, c=0.4, d=0.1, lam=1e-3, counts=np.diag([40] * 4), rounds=10)


def _stand_in(monkeypatch, exact, steps, float_offset=0):
    """min_rounds_exact -> exact; min_rounds (and the float search, plus float_offset) -> the step function
    ``steps``: first(lambda) = the value of the first (edge, value) with lambda < edge, else 0. Returns the list of
    ridges at which min_rounds was called."""
    calls = []

    def first(lm):
        return next((v for edge, v in steps if lm < edge), 0)

    monkeypatch.setattr(fde, "min_rounds_exact", lambda *a, **k: exact)
    monkeypatch.setattr(fde, "min_rounds", lambda K, n, c, d, lm, C: calls.append(lm) or first(lm))
    monkeypatch.setattr(fde, "_first_float", lambda K, n, c, d, lm, C, cap: first(lm) + float_offset)
    return calls


def test_search_finds_a_step_of_known_ends_with_one_exact_call_beyond_lambda(monkeypatch):
    # rounds: 5 below 2e-4, 3 on [2e-4, 5e-3), 1 from 5e-3: the exact round 3 holds on [2e-4, 5e-3)
    calls = _stand_in(monkeypatch, 3, [(2e-4, 5), (5e-3, 3), (math.inf, 1)])
    cal = effective_lambda(**P, rel_tol=1e-4)
    assert cal.exact_first == 3 and cal.linear_first == 3
    assert 2e-4 <= cal.lo <= 2e-4 * (1 + 1e-4) and 5e-3 / (1 + 1e-4) <= cal.hi < 5e-3
    assert cal.lam_eff == pytest.approx(math.sqrt(cal.lo * cal.hi), rel=1e-15)
    # the float search decided; min_rounds ran at lam and at the midpoint only
    assert calls == [P["lam"], cal.lam_eff]


def test_a_float_search_that_disagrees_falls_back_to_the_exact_search(monkeypatch):
    steps = [(2e-4, 5), (5e-3, 3), (math.inf, 1)]
    _stand_in(monkeypatch, 3, steps)
    right = effective_lambda(**P, rel_tol=1e-4)
    calls = _stand_in(monkeypatch, 3, steps, float_offset=1)  # float64 one round late everywhere
    cal = effective_lambda(**P, rel_tol=1e-4)
    assert (cal.lo, cal.hi, cal.lam_eff) == (right.lo, right.hi, right.lam_eff) and cal.exact_first == 3
    assert len(calls) > 20  # the bisections ran on min_rounds


def test_interval_reaching_the_ends_of_the_search_range(monkeypatch):
    # the same round at every ridge: the interval is the whole range, its midpoint lam itself
    _stand_in(monkeypatch, 2, [(math.inf, 2)])
    cal = effective_lambda(**P)
    assert (cal.lo, cal.hi) == (P["lam"] / fde.SEARCH_FACTOR, P["lam"] * fde.SEARCH_FACTOR)
    assert cal.lam_eff == pytest.approx(P["lam"], rel=1e-12)
    # a step only above lam: lo is the range's lower end, hi the step
    _stand_in(monkeypatch, 2, [(3e-2, 2), (math.inf, 0)])
    cal = effective_lambda(**P, rel_tol=1e-4)
    assert cal.lo == P["lam"] / fde.SEARCH_FACTOR and 3e-2 / (1 + 1e-4) <= cal.hi < 3e-2


def test_a_linearised_round_that_jumps_over_the_exact_one_gives_no_calibration(monkeypatch):
    _stand_in(monkeypatch, 3, [(1e-3, 5), (math.inf, 1)])  # 5 rounds below 1e-3, 1 from there: never 3
    cal = effective_lambda(**P)
    assert cal.exact_first == 3 and cal.linear_first == 1
    assert (cal.lam_eff, cal.lo, cal.hi) == (None, None, None)
    _, pred = exact_finite_dim_prediction(**{k: v for k, v in P.items() if k != "rounds"}, D=1e4, rounds=10,
                                          calibration=cal)
    assert pred is None


def test_prediction_uses_the_given_probability_tolerance(calibrations):
    from theory.finite_dim import finite_dim_prediction

    name = "symmetric 0.3, expected counts"
    (p, counts), cal = CASES[name], calibrations[name]
    _, pred = exact_finite_dim_prediction(**p, D=200.0, counts=counts, rounds=40, prob_tol=1e-2, calibration=cal)
    ref, coarser = (finite_dim_prediction(p["K"], p["n"], p["c"], p["d"], cal.lam_eff, 200.0, counts, rounds=40,
                                          prob_tol=tol) for tol in (1e-2, 3e-2))
    assert np.array_equal(pred.train_accuracy, ref.train_accuracy)
    assert pred.probability_error == ref.probability_error != coarser.probability_error


def test_a_linearised_model_never_perfect_at_lambda_still_calibrates_through_the_exact_search(monkeypatch):
    # min_rounds is None (never perfect) at lam = 1e-3; 3 rounds on [2e-3, 5e-2); the float search one round late
    calls = _stand_in(monkeypatch, 3, [(2e-3, None), (5e-2, 3), (math.inf, 1)], float_offset=1)
    monkeypatch.setattr(fde, "_first_float", lambda K, n, c, d, lm, C, cap: (
        math.inf if lm < 2e-3 else (4 if lm < 5e-2 else 2)))
    cal = effective_lambda(**P, rel_tol=1e-4)
    assert cal.linear_first is None and cal.exact_first == 3 and len(calls) > 20
    assert 2e-3 <= cal.lo <= 2e-3 * (1 + 1e-4) and 5e-2 / (1 + 1e-4) <= cal.hi < 5e-2


def test_the_default_horizon_is_60_rounds(monkeypatch):
    _stand_in(monkeypatch, 3, [(2e-4, 5), (5e-3, 3), (math.inf, 1)])
    monkeypatch.setattr(fde, "min_rounds_exact", lambda K, n, c, d, lam, counts, rounds: 3 if rounds <= 60 else 99)
    assert effective_lambda(**{k: v for k, v in P.items() if k != "rounds"}).exact_first == 3
    assert effective_lambda(**{k: v for k, v in P.items() if k != "rounds"}, rounds=61).exact_first == 99


def test_float_first_round_is_found_at_its_horizon_and_smallest_class_size():
    # the horizon is the last round searched: a first round equal to it is found, one beyond it is not
    p, counts = CASES["superclass 0.3, expected counts"]
    C = counts / p["n"]
    args = (p["K"], p["n"], p["c"], p["d"], p["lam"], C)
    t = _first_float(*args, 60)
    assert 1 <= t < 60 and _first_float(*args, int(t)) == t and _first_float(*args, int(t) - 1) == math.inf
    # n = 2 is the smallest class size with a within-class spectrum; n = 1 is refused by name
    two = effective_lambda(3, 2, 0.5, 0.2, 1e-3, np.diag([2, 2, 2]), rounds=5)
    assert two.exact_first == 0
    with pytest.raises(ValueError, match="n =="):
        effective_lambda(3, 1, 0.5, 0.2, 1e-3, np.diag([1, 1, 1]), rounds=5)
