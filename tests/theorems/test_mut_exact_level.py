"""Contracts of theory.exact_level and theory.rational that the broader tests leave implicit.

The certificate is checked against an independent reference: Newton's method in
mpmath (60 digits) on the documented reduced system
F_tau(r) = r_tau - T_tau + softmax(s (M r)_tau), M[tau, sigma] = (1-c) [tau = sigma]
+ ((c-d) [k_tau = k_sigma] + d) n_sigma, s = 1/(K n lam) -- written out here, sharing
no code with the library. At 128 bits the enclosures are ~1e-37 wide, so the
reference pins the reported centres to the last float bit.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp

from theory import exact_level as el
from theory import symbolic_exact
from theory.rational import (
    EXACT_POWER_LIMIT,
    exp_sum_sign,
    intersect_intervals,
    merge_terms,
    positive_rounds,
    rational,
    rational_matrix,
)
from theory.corruption import corruption_matrix, exact_label_counts
from theory.exact_level import (
    DEFAULT_PREC,
    UNDECIDED,
    certified_rounds,
    exact_boundary,
    min_rounds_exact,
    mixing_matrix,
    solve_reduced,
)
from theory.symbolic_exact import derive_type_system, verify_type_reduction

# A small cell with absent types, rounds 0, 1 "not perfect" and 2, 3 "perfect".
CELL = (3, 4, 0.5, 0.1, 0.02, np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]]))


def _one_hot_types(K):
    T = np.zeros((K, K, K))
    T[:, np.arange(K), np.arange(K)] = 1.0
    return T


def _reference_chain(K, n, c, d, lam, counts, rounds, dps=60):
    """Per round the m x K outputs (mpf) of the present types in row-major (k, l) order."""
    ks, ls = np.nonzero(counts)
    nm = [int(v) for v in counts[ks, ls]]
    m = len(ks)
    out = []
    with mpmath.workdps(dps):
        q = lambda x: mpmath.mpf(Fraction(str(x)).numerator) / Fraction(str(x)).denominator  # noqa: E731
        cq, dq, lq = q(c), q(d), q(lam)
        s = 1 / (K * n * lq)
        M = [[((1 - cq) if a == b else 0) + ((cq - dq) * (ks[a] == ks[b]) + dq) * nm[b] for b in range(m)] for a in range(m)]
        T = [[mpmath.mpf(int(j == ls[a])) for j in range(K)] for a in range(m)]
        r = [[mpmath.mpf(0)] * K for _ in range(m)]
        for _ in range(rounds + 1):
            for _ in range(100):
                P = []
                for a in range(m):
                    z = [s * sum(M[a][b] * r[b][j] for b in range(m)) for j in range(K)]
                    e = [mpmath.exp(v - max(z)) for v in z]
                    P.append([v / sum(e) for v in e])
                F = mpmath.matrix([r[a][j] - T[a][j] + P[a][j] for a in range(m) for j in range(K)])
                if mpmath.norm(F, mpmath.inf) < mpmath.mpf(10) ** (8 - dps):
                    break
                J = mpmath.eye(m * K)
                for a in range(m):
                    for i in range(K):
                        for b in range(m):
                            for j in range(K):
                                J[a * K + i, b * K + j] += P[a][i] * (int(i == j) - P[a][j]) * s * M[a][b]
                dx = mpmath.lu_solve(J, F)
                r = [[r[a][j] - dx[a * K + j] for j in range(K)] for a in range(m)]
            else:
                raise AssertionError("reference Newton did not converge")
            T = [[T[a][j] - r[a][j] for j in range(K)] for a in range(m)]
            out.append(T)
    return out


def _ref_margin(P, ks, K):
    return min(P[a][ks[a]] - P[a][j] for a in range(len(ks)) for j in range(K) if j != ks[a])


# ---------------------------------------------------------------------------- certificate vs reference


@pytest.mark.parametrize("full", [True, False])
def test_certified_enclosures_pin_the_reference_solution(full):
    K, n, c, d, lam, counts = CELL
    rounds = 3
    ref = _reference_chain(K, n, c, d, lam, counts, rounds)
    rep = certified_rounds(K, n, c, d, lam, counts, rounds, full=full)
    ks, ls = np.nonzero(counts)
    margins = [_ref_margin(P, ks, K) for P in ref]
    expected = ["perfect" if mg > 0 else "not perfect" for mg in margins]
    assert expected == ["not perfect", "not perfect", "perfect", "perfect"]  # the cell is what it claims
    checked = rounds + 1 if full else 3  # without ``full`` checking stops at the first perfect round
    assert rep.per_round == tuple(expected[:checked])
    assert rep.first == 2 and rep.rounds == rounds
    # decided at the starting precision: no doubling, with or without ``full``
    assert rep.prec == DEFAULT_PREC
    for field in (rep.margin_bounds, rep.max_radius, rep.max_contraction, rep.outputs_mid, rep.outputs_rad):
        assert len(field) == checked
    absent = counts == 0
    for t in range(checked):
        mid, rad = rep.outputs_mid[t], rep.outputs_rad[t]
        assert mid.dtype == np.float64 and mid.shape == (K, K, K)
        assert np.all(np.isnan(mid[absent])) and np.all(np.isnan(rad[absent]))
        for a, (k, l) in enumerate(zip(ks, ls)):
            for j in range(K):
                # the enclosure is ~1e-37 wide: its float centre is the float nearest the true output
                # (1 ulp of slack for a true value within 1e-37 of a rounding boundary)
                assert abs(mid[k, l, j] - float(ref[t][a][j])) <= math.ulp(float(ref[t][a][j]))
                assert 0 < rad[k, l, j] <= rep.max_radius[t]
        assert rep.max_radius[t] == np.nanmax(rad)
        # 128 bits (u = 2.9e-39); enclosures widen by a factor below 2 per round: 1e-30 leaves a 10^8 margin
        assert rep.max_radius[t] < 1e-30
        lo, hi = rep.margin_bounds[t]
        true = float(margins[t])
        assert lo <= hi
        assert abs(lo - true) <= math.ulp(true) and abs(hi - true) <= math.ulp(true)
        # Krawczyk's contraction ||I - Y J(X)||: Y is the float inverse of J, so the bound is float
        # round-off (~Km u cond(J)), far below 1 (1e-10: cond(J) < 10^4 for this cell)
        assert 0 < rep.max_contraction[t] < 1e-10


def test_ball_float_encloses_the_ball_with_a_rounding_allowance_only():
    """(m, r) floats with [m - r, m + r] containing the ball b, and r at most rad(b) (1 + 4u) + 2u |m| + 1e-290
    (u = 2^-53: rounding of the midpoint and of the radius to float)."""
    import flint

    u = 2.0**-53
    old = flint.ctx.prec
    flint.ctx.prec = 200
    try:
        balls = [flint.arb(0), flint.arb(0, 1e-300), flint.arb(0, 1.0), flint.arb(1) / 3, flint.arb(-2) / 3 + flint.arb(0, 1e-20),
                 flint.arb(10) ** 20 / 7, flint.arb(1e-310) / 3, flint.arb(-5, 0.25)]
        for b in balls:
            m, r = el._ball_float(b)
            assert r >= 0
            lo, hi = flint.arb(m) - flint.arb(r), flint.arb(m) + flint.arb(r)  # exact: float values at 200 bits
            assert lo <= b.lower() and b.upper() <= hi, (b, m, r)
            assert r <= float(b.rad()) * (1 + 4 * u) + abs(m) * 2 * u + 1e-290, (b, m, r)
    finally:
        flint.ctx.prec = old


def test_full_rounds_after_the_first_perfect_one_and_min_rounds_exact():
    K, n, c, d, lam, counts = CELL
    assert min_rounds_exact(K, n, c, d, lam, counts, 3) == 2
    assert min_rounds_exact(K, n, c, d, lam, counts, 1) is None  # rounds 0, 1 proved not perfect
    rep = certified_rounds(K, n, c, d, lam, counts, 1, full=True)
    assert rep.first is None and rep.per_round == ("not perfect", "not perfect")
    assert all(hi < 0 for _, hi in rep.margin_bounds)


def test_undecided_rounds_with_full_are_reported_as_unknown():
    """At 53 bits the paper's superclass cell (eta = 0.46) loses the Krawczyk test after a few rounds: with
    ``full`` every later round is undecided too, with NaN margin bounds and infinite radius/contraction."""
    K, n = 4, 500
    counts = exact_label_counts(corruption_matrix("superclass", K, 0.46), n)
    rep = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 40, prec=53, max_prec=53, full=True)
    assert rep.prec == 53 and rep.first == UNDECIDED and len(rep.per_round) == 41
    i = rep.per_round.index(UNDECIDED)
    assert 0 < i < 40
    assert set(rep.per_round[:i]) == {"not perfect"} and set(rep.per_round[i:]) == {UNDECIDED}
    for t in range(i, 41):
        assert all(math.isnan(b) for b in rep.margin_bounds[t])
        assert rep.max_radius[t] == math.inf and rep.max_contraction[t] == math.inf
        assert rep.outputs_mid[t] is None and rep.outputs_rad[t] is None
    for t in range(i):
        assert rep.max_radius[t] < 1e-3 and rep.max_contraction[t] < 1
    # without ``full`` the chain stops at the undecided round; more bits decide it
    short = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 40, prec=53, max_prec=53)
    assert short.per_round == rep.per_round[: i + 1] and short.first == UNDECIDED
    more = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, i, prec=53, max_prec=106, full=True)
    assert more.prec == 106 and UNDECIDED not in more.per_round


# ---------------------------------------------------------------------------- validation


def test_missing_flint_is_reported(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "flint", None)  # makes ``import flint`` fail
    with pytest.raises(ImportError, match=r"^theory\.exact_level needs python-flint \(pip install 'python-flint>=0\.6'\)$"):
        el._flint()


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(prec=52), r"^prec == 52, must be >= 53$"),
        (dict(prec=64, max_prec=63), r"^max_prec == 63, must be >= 64$"),
        (dict(n=0, counts=np.array([[0, 0], [0, 0]])), r"^n == 0, must be >= 1$"),
        (dict(K=1), r"^K == 1, must be >= 2$"),
        (dict(lam=-1.0), r"^lam == -1.0, must be > 0$"),
        (dict(c=1.0), r"^c == 1.0, must be < 1"),
        (dict(counts=np.array([[2, 0, 0], [0, 2, 0], [0, 0, 2]])), r"^counts has shape \(3, 3\), must be \(2, 2\)$"),
        (dict(counts=np.array([[1, 0], [0, 2]])), r"^row 0 of counts sums to 1, must sum to n == 2"),
        (dict(rounds=-1), r"^rounds == -1"),
    ],
)
def test_certified_rounds_validation_names_the_parameter(bad, match):
    args = dict(K=2, n=2, c=0.5, d=0.1, lam=0.01, counts=np.array([[2, 0], [0, 2]]), rounds=0)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        certified_rounds(**args)


def test_precision_bounds_are_inclusive():
    args = dict(K=2, n=2, c=0.5, d=0.1, lam=0.01, counts=np.array([[2, 0], [0, 2]]), rounds=0)
    rep = certified_rounds(**args, prec=53, max_prec=53)
    assert rep.prec == 53 and rep.first == 0


def test_solve_reduced_contract():
    K, n, c, d, lam, counts = CELL
    with pytest.raises(ValueError, match=r"^targets has shape \(3, 3\), must be \(3, 3, 3\)$"):
        solve_reduced(K, n, c, d, lam, counts, np.eye(3))
    with pytest.raises(ValueError, match=r"^n == 0, must be >= 1$"):
        solve_reduced(K, 0, c, d, lam, counts, _one_hot_types(K))
    with pytest.raises(RuntimeError, match=r"^solve_reduced: max\|F\| == .* after 0 Newton steps, must be <= tol == 1e-13$"):
        solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), max_iter=0)
    # tol == 0 is out of reach in float: the default limit of 100 Newton steps ends the solve
    with pytest.raises(RuntimeError, match=r"after 100 Newton steps, must be <= tol == 0$"):
        solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), tol=0.0)
    # targets given as exact fractions are read as float64
    frac = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K).astype(int) * Fraction(1))
    assert frac.outputs.dtype == np.float64
    # integer targets are read as float64; outputs NaN exactly for absent types
    sol = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K).astype(int))
    assert sol.outputs.dtype == np.float64 and sol.r.dtype == np.float64
    assert np.array_equal(np.isnan(sol.outputs).any(axis=2), counts == 0)
    assert sol.r.shape == (np.count_nonzero(counts), K)
    assert sol.residual <= 1e-13 and sol.iterations >= 1
    ref = _reference_chain(K, n, c, d, lam, counts, 0)[0]
    ks, ls = np.nonzero(counts)
    got = sol.outputs[ks, ls]
    # Newton stops at max|F| <= 1e-13 and the Jacobian's inverse is O(1) here: outputs to 1e-12
    assert np.max(np.abs(got - np.array([[float(v) for v in row] for row in ref]))) < 1e-12
    # ``iterations`` counts the Newton steps: the solve succeeds with that many allowed, fails with one fewer
    k = sol.iterations
    assert k >= 3
    assert solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), max_iter=k).iterations == k
    with pytest.raises(RuntimeError, match=f"after {k - 1} Newton steps"):
        solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), max_iter=k - 1)
    # a warm start at the solution needs no Newton step, also when max|F| equals tol (tol is inclusive)
    again = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), r0=sol.r, tol=sol.residual)
    assert again.iterations == 0 and np.array_equal(again.r, sol.r) and again.residual == sol.residual


def test_solve_reduced_saturated_softmax():
    """lam = 1e-5 with n = 3: logit scale 1/(N lam) ~ 1.7e4, the softmax saturates along the Newton path
    (trial logits far beyond exp's range); the solution still matches the reference."""
    K, n, c, d, lam = 2, 3, 0.5, 0.1, 1e-5
    counts = np.array([[2, 1], [0, 3]])
    sol = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K))
    ref = _reference_chain(K, n, c, d, lam, counts, 0)[0]
    ks, ls = np.nonzero(counts)
    assert np.max(np.abs(sol.outputs[ks, ls] - np.array([[float(v) for v in row] for row in ref]))) < 1e-11


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solve_reduced_converges_from_far_starts(seed):
    """The reduced objective is strictly convex: damped Newton reaches the unique solution from any start, here
    residuals r0 of size ~300 (logits ~1e5, full Newton steps overshoot and are cut back by the line search)."""
    K, n, c, d, lam = 3, 4, 0.5, 0.1, 1e-3
    counts = CELL[-1]
    near = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K))
    r0 = 300 * np.random.default_rng(seed).standard_normal(near.r.shape)
    far = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), r0=r0)
    # both stop at max|F| <= 1e-13; the Jacobian's inverse is O(1) here: solutions agree to 1e-12
    assert np.max(np.abs(far.r - near.r)) < 1e-12


def test_mixing_matrix_entries():
    """s M [tau, sigma] = ((1-c) [tau = sigma] + ((c-d) [same class] + d) n_sigma) / (K n lam)."""
    K, n, c, d, lam, counts = CELL
    ks, ls = np.nonzero(counts)
    nm = counts[ks, ls]
    got = mixing_matrix(K, n, c, d, lam, counts)
    m = ks.size
    want = np.array([[((1 - c) * (a == b) + ((c - d) * (ks[a] == ks[b]) + d) * nm[b]) / (K * n * lam) for b in range(m)]
                     for a in range(m)])
    assert got.dtype == np.float64 and got.shape == (m, m)
    assert np.max(np.abs(got - want)) <= 1e-13 * np.max(np.abs(want))  # a few float roundings


def test_exact_boundary_superclass_size():
    """superclass_size defaults to 2 (pairs); groups of 4 classes give different counts, hence rounds."""
    K, n, c, d, lam = 4, 30, 0.4, 0.1, 1e-3
    pairs = exact_boundary(K, n, c, d, lam, "superclass", [0.2], 8)
    assert pairs == exact_boundary(K, n, c, d, lam, "superclass", [0.2], 8, superclass_size=2)
    expected = min_rounds_exact(K, n, c, d, lam, exact_label_counts(corruption_matrix("superclass", K, 0.2, 4), n), 8)
    assert exact_boundary(K, n, c, d, lam, "superclass", [0.2], 8, superclass_size=4) == [expected]
    assert expected != pairs[0]


# ---------------------------------------------------------------------------- symbolic checks


def test_type_reduction_residual_shapes():
    res = verify_type_reduction()
    N, m, K = 9, 5, 3  # the default generic instance
    assert res["logits"].shape == (K, N) and res["reduced_logits"].shape == (K, N)
    assert res["invariant_subspace"].shape == (N, m)
    assert res["mixing_is_aggregated_gram"].shape == (m, m)
    assert res["permutation"].shape == (N, N)


def test_type_reduction_detects_a_gram_without_block_structure():
    """A Gram with one perturbed diagonal entry is neither class-symmetric nor reduced by the type mixing
    matrix: every Gram-dependent residual must be nonzero (the checks are not vacuous)."""
    e = sp.Symbol("e")

    def perturbed(classes):
        G = symbolic_exact._block_gram_sym(classes)
        G[0, 0] += e
        return G

    res = verify_type_reduction(gram=perturbed)
    for name in ("logits", "invariant_subspace", "mixing_is_aggregated_gram", "permutation", "reduced_logits"):
        assert any(sp.simplify(v) != 0 for v in res[name]), name
    assert sp.simplify(res["hessian_variance"]) == 0  # independent of the Gram


def test_derive_type_system_shapes_and_default_counts():
    types = [(0, 0), (0, 1), (1, 1)]
    eqs, r, t = derive_type_system(types)
    assert len(eqs) == 3 and all(len(row) == 2 for row in eqs)
    assert r.shape == (3, 2) and t.shape == (3, 2)
    # softmax rows sum to one: sum_j (F_aj - r_aj + t_aj) == 1
    for a in range(3):
        assert sp.simplify(sum(eqs[a]) - sum(r[a, :]) + sum(t[a, :]) - 1) == 0
    names = {str(x) for x in sp.Add(*[e for row in eqs for e in row]).free_symbols}
    assert {"n0", "n1", "n2"} <= names  # default counts are symbols n_0..n_{m-1}


# ---------------------------------------------------------------------------- theory.rational


def test_rational_snaps_within_relative_tolerance_only():
    # 1000 + 1.1e-13 is 1.1e-16 relative from 1000 (< 1e-15): read as 1000
    assert rational(1000.0000000000001) == 1000
    # 1 + 2^-40 is 9e-13 relative from the nearest short fraction (1): kept exactly
    assert rational(1 + 2**-40) == Fraction(1 + 2**-40) != 1
    assert rational(-0.1) == Fraction(-1, 10) and rational(0.0) == 0
    assert rational(np.float32(0.25)) == Fraction(1, 4) and rational(True) == 1
    assert rational(7) == 7 and isinstance(rational(7), Fraction)
    q = Fraction(1, 3)
    assert rational(q) is q
    assert rational_matrix([[0.5, 0.1], [2, Fraction(1, 7)]]) == [[Fraction(1, 2), Fraction(1, 10)], [2, Fraction(1, 7)]]


@pytest.mark.parametrize("s", [1, 7, EXACT_POWER_LIMIT, EXACT_POWER_LIMIT + 1, 400])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_exp_sum_sign_near_ties_are_exact(s, delta):
    """c1 b1^s + c2 b2^s == delta 1e-30 c1 b1^s exactly (c2 chosen so): far below float64 resolution, above the
    80-digit mpmath threshold beyond EXACT_POWER_LIMIT; the sign is delta's (0 for the exact tie)."""
    b1, b2 = Fraction(3, 4), Fraction(2, 3)
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - delta * Fraction(1, 10**30))
    assert exp_sum_sign([c1, c2], [b1, b2], s) == delta
    assert exp_sum_sign([c2, c1], [b2, b1], s) == delta  # order of the terms is irrelevant
    assert exp_sum_sign([-c1, -c2], [b1, b2], s) == -delta
    # with zero terms (and a zero base) mixed in
    assert exp_sum_sign([c1, Fraction(0), c2, Fraction(3)], [b1, Fraction(9, 10), b2, Fraction(0)], s) == delta


@pytest.mark.parametrize("s, rel, expected", [
    (EXACT_POWER_LIMIT, Fraction(4, 10**100), 1),  # exact up to EXACT_POWER_LIMIT: any difference counts
    (EXACT_POWER_LIMIT + 1, Fraction(4, 10**100), 0),  # beyond: below 10^-70 of the scale is a tie
    (EXACT_POWER_LIMIT + 1, Fraction(4, 10**70), 1),  # total / scale = 2e-70 > 1e-70
    (EXACT_POWER_LIMIT + 1, Fraction(1, 10**70), 0),  # total / scale = 5e-71 < 1e-70
])
def test_exp_sum_sign_tie_threshold(s, rel, expected):
    """c1 b1^s + c2 b2^s == rel c1 b1^s exactly, terms' scale ~ 2 c1 b1^s; default digits 80: threshold 10^-70."""
    b1, b2 = Fraction(3, 4), Fraction(2, 3)
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - rel)
    assert exp_sum_sign([c1, c2], [b1, b2], s) == expected


def test_exp_sum_sign_limited_digits_report_a_tie():
    """Beyond EXACT_POWER_LIMIT a sum below 10^-(digits - 10) of the terms' scale is reported as 0."""
    b1, b2, s = Fraction(3, 4), Fraction(2, 3), 400
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - Fraction(1, 10**30))  # relative size 1e-30 / 2
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=80) == 1
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=45) == 1  # threshold 1e-35
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=35) == 0  # threshold 1e-25


@pytest.mark.parametrize("s", [1, 2, EXACT_POWER_LIMIT + 1])
def test_exp_sum_sign_does_not_trust_float_cancellation(s):
    """(1 + 2^-52) - (1 + 2^-52 - 2^-54) - 2^-55 == 2^-55 > 0, but float64 rounds the second coefficient to
    1 + 2^-52 and gets -2^-55: the float fast path must not decide this sum (bases 1, any power)."""
    coefs = [1 + Fraction(1, 2**52), -(1 + Fraction(1, 2**52) - Fraction(1, 2**54)), -Fraction(1, 2**55)]
    assert math.fsum(float(c) for c in coefs) < 0  # the float64 sum has the wrong sign
    assert exp_sum_sign(coefs, [Fraction(1)] * 3, s) == 1


def test_exp_sum_sign_float_error_bound_grows_with_the_power():
    """1024 [1 - (1 - 2.7 * 2^-52)(1 + 0.49 * 2^-52)^9] < 0, but float64 reads the base as 1 and the coefficient
    as 1 - 2.5 * 2^-52: a float sum of +5.7e-13, within the documented (s + 4) 2^-52 relative error of the
    power (s = 9), which the fast path must respect (scale 2048: bound 8e-12)."""
    s = 9
    coefs = [Fraction(1024), -1024 * (1 - Fraction(27, 10) / 2**52)]
    bases = [Fraction(1), 1 + Fraction(49, 100) / 2**52]
    assert math.fsum(float(c) * float(b) ** s for c, b in zip(coefs, bases)) > 5e-13  # wrong sign in float
    assert sum(c * b**s for c, b in zip(coefs, bases)) < 0
    assert exp_sum_sign(coefs, bases, s) == -1


def test_exp_sum_sign_clear_signs_are_plain_ints():
    for s in (3, 400):
        for coefs, want in (([Fraction(1), Fraction(-1)], 1), ([Fraction(-1), Fraction(1)], -1)):
            got = exp_sum_sign(coefs, [Fraction(1, 2), Fraction(1, 3)], s)
            assert got == want and type(got) is int
    # terms below the float range (2^-2000 underflows) are decided exactly
    tiny = [Fraction(1, 2**1000), Fraction(1, 2**1000)]
    assert exp_sum_sign([Fraction(1), Fraction(-1) + Fraction(1, 10**20)], tiny, 2) == 1
    assert exp_sum_sign([Fraction(1), Fraction(-1)], tiny, 2) == 0
    # huge terms (float overflow) as well
    huge = [Fraction(2**1000), Fraction(2**1000)]
    assert exp_sum_sign([Fraction(1), Fraction(-1) - Fraction(1, 10**20)], huge, 2) == -1
    assert exp_sum_sign([Fraction(0), Fraction(0)], [Fraction(1, 2), Fraction(1, 3)], 400) == 0


def test_merge_terms_combines_and_sorts():
    cs, bs = merge_terms(
        [Fraction(1), Fraction(2), Fraction(3), Fraction(-1), Fraction(5), Fraction(0)],
        [Fraction(1, 2), Fraction(1, 3), Fraction(0), Fraction(1, 2), Fraction(2, 3), Fraction(1, 5)],
    )
    # 1/2 cancels (1 - 1), base 0 and coefficient 0 are dropped; largest base first
    assert bs == [Fraction(2, 3), Fraction(1, 3)] and cs == [Fraction(5), Fraction(2)]
    cs, bs = merge_terms([Fraction(1), Fraction(1)], [Fraction(1, 2), Fraction(1, 2)])
    assert (cs, bs) == ([Fraction(2)], [Fraction(1, 2)])


def test_positive_rounds_max_horizon():
    """1/2 - 3/2 (9/10)^s > 0 from s = 11 on (0.9^11 = 0.31 < 1/3 < 0.9^10): fine without a limit and with a
    generous one; a limit of 5 rounds is refused with a message naming it."""
    coefs, bases = [Fraction(1, 2), Fraction(-3, 2)], [Fraction(1), Fraction(9, 10)]
    assert positive_rounds(coefs, bases) == positive_rounds(coefs, bases, max_horizon=100) == [(11, None)]
    with pytest.raises(ValueError, match=r"^the sign pattern settles only after (\d+) rounds \(bases 0\.9 apart in ratio\), "
                       r"beyond max_horizon == 5$") as info:
        positive_rounds(coefs, bases, max_horizon=5)
    horizon = int(info.value.args[0].split()[6])
    assert horizon >= 11  # the stated horizon is past the last sign change
    # a limit equal to the stated horizon is accepted (the error is for patterns settling beyond the limit)
    assert positive_rounds(coefs, bases, max_horizon=horizon) == [(11, None)]


_F = Fraction
POSITIVE_ROUNDS_CASES = [
    # (coefficients, bases, positive rounds): two sign changes around a critical point, one, none
    ([_F(1), _F(-40), _F(60)], [_F(99, 100), _F(9, 10), _F(8, 10)], [(1, 3), (39, None)]),
    ([_F(-1), _F(40), _F(-60)], [_F(99, 100), _F(9, 10), _F(8, 10)], [(4, 38)]),
    ([_F(1), _F(-5), _F(5)], [_F(19, 20), _F(9, 10), _F(17, 20)], [(1, 5), (25, None)]),
    ([_F(1), _F(-10), _F(12)], [_F(1, 2), _F(1, 3), _F(1, 4)], [(1, 1), (5, None)]),
    ([_F(1, 1000), _F(-1), _F(1)], [_F(1), _F(1, 2), _F(1, 3)], [(10, None)]),
    ([_F(-1), _F(2)], [_F(1, 2), _F(1, 3)], [(1, 1)]),
    ([_F(1), _F(-2)], [_F(999, 1000), _F(1, 2)], [(2, None)]),
]


@pytest.mark.parametrize("coefs, bases, expected", POSITIVE_ROUNDS_CASES)
def test_positive_rounds_pinned_patterns(coefs, bases, expected):
    """The sign patterns (read off a direct exact evaluation below, up to s = 150, beyond every sign change)."""
    assert positive_rounds(coefs, bases) == expected
    powers = list(bases)
    for s in range(1, 151):
        total = sum(c * p for c, p in zip(coefs, powers))
        inside = any(a <= s and (b is None or s <= b) for a, b in expected)
        assert inside == (total > 0), s
        powers = [p * b for p, b in zip(powers, bases)]


def test_intersect_intervals_edges():
    assert intersect_intervals([(1, None)], [(1, None)]) == [(1, None)]
    assert intersect_intervals([(1, 5)], [(5, 9)]) == [(5, 5)]  # touching ends share one round
    assert intersect_intervals([(1, 4)], [(5, 9)]) == []
    assert intersect_intervals([(2, None)], [(1, 3), (6, 8), (10, None)]) == [(2, 3), (6, 8), (10, None)]
    assert intersect_intervals([(1, 3), (6, 8), (10, None)], [(2, None)]) == [(2, 3), (6, 8), (10, None)]
    assert intersect_intervals([], [(1, None)]) == []
    got = intersect_intervals([(1, 10)], [(3, None)])
    assert got == [(3, 10)] and type(got[0][1]) is int


def test_exp_sum_sign_with_overflowing_terms_of_both_signs():
    # 1e300 * (1e5)^3 overflows to +inf and the second term to -inf: fsum raised ValueError before the fix.
    # The sign is checked against the exact rational sum.
    coefs = [Fraction(10**300), Fraction(-(10**300)), Fraction(1)]
    bases = [Fraction(10**5), Fraction(10**5 + 1), Fraction(1, 2)]
    for s in (3, 4):
        exact = sum(cf * b**s for cf, b in zip(coefs, bases))
        assert exp_sum_sign(coefs, bases, s) == (exact > 0) - (exact < 0) == -1


def test_positive_rounds_settles_a_near_tie_beyond_the_exact_power_limit():
    # h(s) = -1 + (1 + 1e-20) (999/1000)^(s - 350): positive up to s = 350, where it is only 1e-20 (relative)
    # above 0. s = 350 > EXACT_POWER_LIMIT, so its sign comes from mpmath; the working digits must resolve
    # 1e-20 there (fewer digits would report a tie and end the interval at 349). Checked against exact sums.
    base = Fraction(999, 1000)
    coefs = [Fraction(-1), Fraction(10**20 + 1, 10**20) / base**350]
    bases = [Fraction(1), base]
    exact = {s: sum(cf * b**s for cf, b in zip(coefs, bases)) for s in (349, 350, 351)}
    assert exact[349] > 0 and exact[350] > 0 > exact[351]
    assert positive_rounds(coefs, bases) == [(1, 350)]
