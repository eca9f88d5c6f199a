"""Contract of theory.exact_gap: the corrections that explain why the exact softmax needs more rounds.

Active classes, the class-decoupled limit (its Newton solver, the round horizon,
single-label and own-label-absent classes), the operating-point closed form and
the pair formula, each checked against an independent route (the linearised
round at a changed lambda, the pair closed form, 30-digit mpmath) and on the
paper's superclass grid.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import sympy as sp

from theory import exact_gap
from theory.conditions import min_rounds
from theory.corruption import corruption_matrix, exact_label_counts
from theory.exact_gap import (
    active_classes,
    active_set_rounds,
    decoupled_rounds,
    gap_table,
    operating_point_rounds,
    pair_formula_rounds,
)
from theory.exact_level import _softmax_rows

from .strategies import raises_naming


def test_active_classes_counts_distinct_labels_per_class():
    assert active_classes(np.diag([4, 4, 4])) == 2  # at least 2
    assert active_classes(np.array([[2, 1, 1], [0, 4, 0], [0, 0, 4]])) == 3  # a single count of 1 is a label
    # per row (class), not per column: label 0 occurs in 3 classes, but no class has more than 2 labels
    assert active_classes(np.array([[3, 1, 0, 0], [1, 3, 0, 0], [1, 0, 3, 0], [0, 0, 0, 4]])) == 2
    assert active_classes(np.array([[1, 1, 1, 1], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]])) == 4


def test_active_set_rounds_is_the_linearised_round_at_lambda_m_over_k():
    """Superclass pairs (m = 2 of K = 4): the linearised round at lambda 2/4 with the corruption matrix."""
    K, n, c, d, lam = 4, 100, 0.4, 0.1, 1e-4
    C = corruption_matrix("superclass", K, 0.3)
    counts = exact_label_counts(C, n)
    assert active_set_rounds(K, n, c, d, lam, counts) == min_rounds(K, n, c, d, lam * 2 / K, C)


def test_gap_corrections_symmetric_noise_no_active_set_effect():
    """Symmetric noise keeps every class active: correction 1 equals the linearised round."""
    K, n, c, d, lam = 4, 600, 0.4, 0.1, 1e-5
    C = corruption_matrix("symmetric", K, 0.6)
    counts = exact_label_counts(C, n)
    assert active_set_rounds(K, n, c, d, lam, counts) == min_rounds(K, n, c, d, lam, C)
    assert math.isfinite(decoupled_rounds(K, n, c, d, lam, counts, 40))


def _resid(a, w, T, r, L):
    P = _softmax_rows(a * r + L[None, :])
    return np.concatenate([(r - T + P).ravel(), w @ r + L.mean()])


@pytest.mark.parametrize("a, w", [(50.0, [0.7, 0.3]), (5000.0, [0.9, 0.1]), (500.0, [0.5, 0.3, 0.2])])
def test_limit_newton_solves_the_class_equations(a, w):
    """From the zero start (outputs far from the saturated solution): the returned residual is the true max
    residual of the returned (r, L), it is below the default tolerance 1e-13, and the solution has
    sum_tau w_tau r_tau = 0 and mean(L) = 0 (to 1e-12: entries of r are O(1))."""
    w = np.array(w)
    T = np.eye(w.size)
    r, L, res = exact_gap._limit_newton(a, w, T, np.zeros_like(T), np.zeros(w.size))
    assert res == float(np.max(np.abs(_resid(a, w, T, r, L))))
    assert res <= 1e-13
    assert np.max(np.abs(w @ r)) < 1e-12 and abs(L.mean()) < 1e-12


@pytest.mark.parametrize("a, w", [(50.0, [0.7, 0.3]), (5000.0, [0.9, 0.1]), (500.0, [0.5, 0.3, 0.2])])
def test_limit_newton_converges_quadratically(a, w):
    """Newton with the exact Jacobian: from the zero start these need 7-12 steps (damped early, quadratic
    at the end); 15 steps must reach 1e-13. A wrong Jacobian block only converges linearly."""
    w = np.array(w)
    T = np.eye(w.size)
    _, _, res = exact_gap._limit_newton(a, w, T, np.zeros_like(T), np.zeros(w.size), max_iter=15)
    assert res <= 1e-13


def test_limit_newton_stops_at_the_tolerance():
    """With tol = 1e-3 it stops at the first iterate at or below 1e-3 (max_iter=0 returns the start)."""
    a, w, T = 50.0, np.array([0.7, 0.3]), np.eye(2)
    r0, L0 = np.zeros((2, 2)), np.zeros(2)
    _, _, res0 = exact_gap._limit_newton(a, w, T, r0, L0, max_iter=0)
    assert res0 == float(np.max(np.abs(_resid(a, w, T, r0, L0))))
    steps = [exact_gap._limit_newton(a, w, T, r0, L0, tol=0.0, max_iter=i)[2] for i in range(12)]
    first = next(i for i, s in enumerate(steps) if s <= 1e-3)
    r, L, res = exact_gap._limit_newton(a, w, T, r0, L0, tol=steps[first])  # residual exactly at tol: stop
    assert res == steps[first]


def _superclass_cell(K=2, n=20, eta=0.3):
    return exact_label_counts(corruption_matrix("superclass", K, eta), n)


def test_decoupled_rounds_horizon_boundary():
    """The first perfect round R is found with rounds = R and not with rounds = R - 1."""
    K, n, c, d, lam = 2, 20, 0.4, 0.1, 1e-3
    counts = _superclass_cell(K, n, 0.3)
    R = decoupled_rounds(K, n, c, d, lam, counts, 60)
    assert isinstance(R, int) and R >= 2
    assert decoupled_rounds(K, n, c, d, lam, counts, R) == R
    assert decoupled_rounds(K, n, c, d, lam, counts, R - 1) is None


def test_decoupled_rounds_single_label_and_missing_own_label_classes():
    K, n, c, d, lam = 3, 4, 0.4, 0.1, 1e-3
    assert decoupled_rounds(K, n, c, d, lam, np.diag([n] * K), 5) == 0  # clean: one-hot targets, perfect at once
    swapped = np.array([[0, 4, 0], [4, 0, 0], [0, 0, 4]])  # class 0 only ever labelled 1: never correct
    assert decoupled_rounds(K, n, c, d, lam, swapped, 5) is None
    absent = np.array([[0, 2, 2], [0, 4, 0], [0, 0, 4]])  # class 0 has two labels, neither is 0
    assert decoupled_rounds(K, n, c, d, lam, absent, 5) is None
    # a noisy class next to a single-label class: the single-label class does not stop the search
    mixed = np.array([[3, 1, 0], [0, 4, 0], [0, 0, 4]])
    assert isinstance(decoupled_rounds(K, n, c, d, lam, mixed, 200), int)


def test_decoupled_rounds_depends_on_label_shares_not_on_n():
    """Scaling n and every count by 10^4 and lam by 10^-4 keeps a = (1 - c)/(K n lam) and the label shares:
    the same round (the solver works with the shares n_tau / n, so large n costs no accuracy)."""
    K, c, d = 2, 0.4, 0.1
    small = decoupled_rounds(K, 10, c, d, 1e-3, _superclass_cell(K, 10, 0.3), 60)
    large = decoupled_rounds(K, 100_000, c, d, 1e-7, _superclass_cell(K, 100_000, 0.3), 60)
    assert isinstance(small, int) and large == small


def test_decoupled_rounds_none_when_never_perfect():
    """eta = 1/2 in a pair: both labels equally common, the own label never strictly ahead."""
    K, n, c, d, lam = 2, 20, 0.4, 0.1, 1e-3
    assert decoupled_rounds(K, n, c, d, lam, _superclass_cell(K, n, 0.5), 5) is None


@pytest.mark.parametrize("res, raises", [(1e-10, False), (1.5e-10, True)])
def test_decoupled_rounds_residual_check_boundary(monkeypatch, res, raises):
    """The documented RuntimeError of a Newton solve that does not converge: a residual of exactly 1e-10 is
    accepted, 1.5e-10 is refused with the residual, round and class named. The real solver always converges on
    valid input, so its returned residual is replaced by a wrapper (the only way to reach this branch)."""
    real = exact_gap._limit_newton

    def fake(*args, **kwargs):
        r, L, _ = real(*args, **kwargs)
        return r, L, res

    monkeypatch.setattr(exact_gap, "_limit_newton", fake)
    K, n, c, d, lam = 2, 20, 0.4, 0.1, 1e-3
    counts = _superclass_cell(K, n, 0.3)
    if raises:
        with raises_naming("residual", "1.500e-10", "round 0", "class 0", "1e-10", exc=RuntimeError):
            decoupled_rounds(K, n, c, d, lam, counts, 3)
    else:
        monkeypatch.setattr(exact_gap, "_limit_newton", real)
        expected = decoupled_rounds(K, n, c, d, lam, counts, 60)
        monkeypatch.setattr(exact_gap, "_limit_newton", fake)
        assert decoupled_rounds(K, n, c, d, lam, counts, 60) == expected


def _pair_lam_for_round(s_star, eta, K, n, c):
    """lambda at which the pair closed form (test_operating_point_rounds_equal_pair_closed_form) puts the first perfect fit count at s_star:
    rate = 2 a p (1-p) / (1 + 2 a p (1-p)) with rate^s_star = (2p - 1)/(2p), a = (1 - c)/(K n lam)."""
    p = 1 - eta
    rate = math.exp(-math.log(2 * p / (2 * p - 1)) / s_star)
    a = rate / (1 - rate) / (2 * p * (1 - p))
    return (1 - c) / (K * n * a)


def test_operating_point_rounds_default_horizon_is_10000():
    """Documented default rounds = 10_000: a cell whose first perfect round is 10_001 is None by default."""
    K, n, c, eta = 2, 100, 0.4, 0.25
    counts = exact_label_counts(corruption_matrix("superclass", K, eta), n)
    lam = _pair_lam_for_round(10_001.5, eta, K, n, c)  # smallest fit count s > s* is 10_002: round 10_001
    assert operating_point_rounds(K, n, c, 0.1, lam, counts, 10_001) == 10_001
    assert operating_point_rounds(K, n, c, 0.1, lam, counts) is None


def test_operating_point_rounds_horizon_boundary():
    K, n, c, eta = 2, 100, 0.4, 0.25
    counts = exact_label_counts(corruption_matrix("superclass", K, eta), n)
    lam = _pair_lam_for_round(20.5, eta, K, n, c)  # fit count 21: round 20
    assert operating_point_rounds(K, n, c, 0.1, lam, counts, 20) == 20
    assert operating_point_rounds(K, n, c, 0.1, lam, counts, 19) is None


@pytest.mark.parametrize("eta", [0.1, 0.26, 0.4, 0.49])
def test_operating_point_rounds_equal_pair_closed_form(eta):
    """Superclass pairs: a noisy instance outputs p (1 - rate^s) for its true class, so the first perfect
    round is the smallest s with rate^s < (2p - 1)/(2p), minus one (p = 1 - eta, rate from the sympy pair_rate)."""
    K, n, c, d, lam = 4, 100, 0.4, 0.1, 1e-4
    counts = exact_label_counts(corruption_matrix("superclass", K, eta), n)
    a = (1 - c) / (K * n * lam)
    p = 1 - eta
    rate = 2 * a * p * (1 - p) / (1 + 2 * a * p * (1 - p))
    s_star = math.log(2 * p / (2 * p - 1)) / math.log(1 / rate)
    s = math.floor(s_star) + 1  # s_star is not an integer for these eta (checked: distance > 1e-3)
    assert abs(s_star - round(s_star)) > 1e-3
    assert operating_point_rounds(K, n, c, d, lam, counts) == s - 1


def test_pair_formula_single_label_and_three_label_classes():
    K, n, c, d, lam = 3, 6, 0.4, 0.1, 1e-3
    assert pair_formula_rounds(K, n, c, d, lam, np.diag([n] * K)) == 0
    assert pair_formula_rounds(K, n, c, d, lam, np.array([[0, 6, 0], [6, 0, 0], [0, 0, 6]])) is None
    assert pair_formula_rounds(K, n, c, d, lam, np.array([[0, 3, 3], [0, 6, 0], [0, 0, 6]])) is None  # eta = 1
    with raises_naming("class 1", "3 given labels"):
        pair_formula_rounds(K, n, c, d, lam, np.array([[6, 0, 0], [2, 2, 2], [0, 0, 6]]))


def test_pair_formula_validation():
    counts = exact_label_counts(corruption_matrix("symmetric", 4, 0.3), 30)
    with raises_naming("class 0", "4 given labels"):
        pair_formula_rounds(4, 30, 0.4, 0.1, 1e-4, counts)
    counts = exact_label_counts(corruption_matrix("superclass", 4, 0.5), 30)
    assert pair_formula_rounds(4, 30, 0.4, 0.1, 1e-4, counts) is None


def test_pair_formula_handles_a_single_wrong_label_in_a_large_class():
    # eta = 1/5000: the root bracket ends at 1 - 1e-15, where the unsimplified 1 - mu - eta * gap rounded
    # negative (math domain error before the fix). The teacher is perfect there, and so is the certified
    # exact softmax at round 0.
    from theory.exact_level import min_rounds_exact

    K, n, lam = 4, 5000, 1e-5
    counts = np.zeros((K, K), dtype=np.int64)
    for k in range(K):
        counts[k, k], counts[k, k ^ 1] = n - 1, 1
    assert exact_gap.pair_formula_rounds(K, n, 0.5, 0.1, lam, counts) == 0
    assert min_rounds_exact(K, n, 0.5, 0.1, lam, counts, 5) == 0


def test_pair_lambda_is_the_symbolic_lambda_of_the_pair_recursion():
    # The numeric Lambda used by pair_formula_rounds is a rewritten (cancellation-free) form of PAIR_LAMBDA, the
    # Lambda(g) from which verify_pair_recursion's "recursion" residual is built, at class mean mu = 1 - eta.
    # Compared at points spread over (0, 1) x (0, 1/2) against 30-digit mpmath; the values are O(1e-3)..O(30), so
    # a relative 1e-12 allows for float64 rounding only.
    from theory.exact_gap import _pair_lambda
    from theory.symbolic_gap import PAIR_LAMBDA, verify_pair_recursion

    assert sp.simplify(verify_pair_recursion()["recursion"]) == 0
    eta, mu, g = (sp.Symbol(name, positive=True) for name in ("eta", "mu", "g"))
    assert {eta, mu, g} == PAIR_LAMBDA.free_symbols
    reference = sp.lambdify((g, eta), PAIR_LAMBDA.subs(mu, 1 - eta), "mpmath")
    for gap in (1e-3, 0.1, 0.5, 0.9, 1 - 1e-6):
        for e in (1e-3, 0.05, 0.2, 0.45):
            with mpmath.workdps(30):
                want = float(reference(mpmath.mpf(gap), mpmath.mpf(e)))
            assert math.isclose(_pair_lambda(gap, e), want, rel_tol=1e-12), (gap, e)


def _three_class_cell(n, a, b):
    """Class 0 clean (a single label), class 1 with a of n labelled 2, class 2 with b of n labelled 0."""
    return np.array([[n, 0, 0], [0, n - a, a], [b, 0, n - b]])


@pytest.mark.parametrize("a, b", [(1, 4), (4, 1)])
@pytest.mark.parametrize("rule", ["decoupled", "operating_point", "pair_formula"])
def test_cell_round_is_the_latest_class(rule, a, b):
    """All three models treat each class on its own (the class offset is per class): a cell's first perfect
    round is the largest of the rounds of the cells in which only one of its classes is noisy, whatever the
    class order and with a clean single-label class first. eta = 0.1 vs 0.4 at lam = 1e-2: the low-noise
    class is perfect from the teacher on, the other is not (the precondition below)."""
    K, n, c, d, lam = 3, 10, 0.4, 0.1, 1e-2
    rounds = {"decoupled": lambda cnt: decoupled_rounds(K, n, c, d, lam, cnt, 50),
              "operating_point": lambda cnt: operating_point_rounds(K, n, c, d, lam, cnt, 50),
              "pair_formula": lambda cnt: pair_formula_rounds(K, n, c, d, lam, cnt)}[rule]
    only1, only2 = rounds(_three_class_cell(n, a, 0)), rounds(_three_class_cell(n, 0, b))
    assert sorted([only1, only2])[0] == 0 < sorted([only1, only2])[1]
    assert rounds(_three_class_cell(n, a, b)) == max(only1, only2)


def test_gap_table_rows_and_pair_formula_only_for_pairs():
    """Row keys; the pair formula only for superclass pairs (None for symmetric noise and superclass
    triples, where it would raise); small ``rounds`` make the horizon-bound columns None."""
    keys = {"noise", "eta", "linear", "active_set", "operating_point", "decoupled", "pair_formula", "exact"}
    sym = gap_table(4, 20, 0.4, 0.1, 1e-3, "symmetric", [0.15], 30)
    assert set(sym[0]) == keys and sym[0]["noise"] == "symmetric" and sym[0]["eta"] == 0.15
    assert sym[0]["pair_formula"] is None
    tri = gap_table(6, 30, 0.4, 0.1, 1e-3, "superclass", [0.2], 5, superclass_size=3)
    assert tri[0]["pair_formula"] is None
    C3 = corruption_matrix("superclass", 6, 0.2, 3)  # the table uses superclass_size for every column
    assert tri[0]["linear"] == min_rounds(6, 30, 0.4, 0.1, 1e-3, C3)
    assert tri[0]["active_set"] == active_set_rounds(6, 30, 0.4, 0.1, 1e-3, exact_label_counts(C3, 30))
    pair = gap_table(4, 20, 0.4, 0.1, 1e-3, "superclass", [0.2, 0.45], 2)
    assert [r["eta"] for r in pair] == [0.2, 0.45]
    counts = exact_label_counts(corruption_matrix("superclass", 4, 0.45), 20)
    assert pair[1]["pair_formula"] == pair_formula_rounds(4, 20, 0.4, 0.1, 1e-3, counts) > 2
    assert pair[1]["operating_point"] is None and pair[1]["decoupled"] is None and pair[1]["exact"] is None


def test_gap_table_paper_setting_superclass():
    """Measured (benchmarks/bench_exact_level.py --gap): the class-decoupled limit reproduces the certified
    exact round on the superclass grid; the closed forms bracket it at high noise."""
    rows = gap_table(4, 500, 0.4, 0.1, 1e-5, "superclass", [0.1, 0.3, 0.48], 60)
    assert [r["exact"] for r in rows] == [r["decoupled"] for r in rows] == [7, 15, 47]
    assert [r["linear"] for r in rows] == [6, 10, 26]
    assert [r["active_set"] for r in rows] == [12, 19, 50]
    assert [r["operating_point"] for r in rows] == [4, 16, 50]
    assert [r["pair_formula"] for r in rows] == [7, 15, 47]
