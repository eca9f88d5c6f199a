"""Contract of theory.exact_level: the reduced float solver, the certificate and its report.

The certificate is checked against an independent reference: Newton's method in
mpmath (60 digits) on the documented reduced system
F_tau(r) = r_tau - T_tau + softmax(s (M r)_tau), M[tau, sigma] = (1-c) [tau = sigma]
+ ((c-d) [k_tau = k_sigma] + d) n_sigma, s = 1/(K n lam) -- written out here, sharing
no code with the library. At 128 bits the enclosures are ~1e-37 wide, so the
reference fixes the reported centres to the last float bit.

Float twins: sims.solver.fit_gram on the explicit N x N block Gram (dense, shares
no code with the reduction) and sims.solver.fit_block (the suite's type-reduced
float solver).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings

from sims.engine.fit.solver import fit_block, fit_gram
from theory import exact_level as el
from theory.block_model import block_gram
from theory.corruption import corruption_matrix, exact_label_counts
from theory.exact_level import (
    DEFAULT_PREC,
    UNDECIDED,
    _up,
    certified_rounds,
    exact_boundary,
    min_rounds_exact,
    mixing_matrix,
    solve_reduced,
)

from .strategies import labels_from_counts, small_cells

# Float outputs of two exact solvers of the same strictly convex problem agree
# to the solvers' residual tolerance (1e-10) times the conditioning of the
# fixed point (below 1e3 for the drawn problems): 1e-9 leaves room for both.
SOLVER_TOL = 1e-9


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


@pytest.mark.parametrize("full", [True, False])
def test_certified_enclosures_contain_the_60_digit_reference(full):
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


def test_full_certificate_raises_precision_for_late_rounds():
    """With ``full``, rounds left undecided at 53 bits (here 77 of 151, after the first perfect round 2 was
    decided) make certified_rounds double the precision; 106 bits decide every round."""
    from theory.exact_level import UNDECIDED, certified_rounds

    args = (3, 3, 0.5, 0.1, 0.05, np.array([[3, 0, 0], [0, 3, 0], [1, 0, 2]]), 150)
    low = certified_rounds(*args, prec=53, max_prec=53, full=True)
    assert low.first == 2 and UNDECIDED in low.per_round  # the undecided rounds come after a decided first
    high = certified_rounds(*args, prec=53, max_prec=106, full=True)
    assert high.prec == 106 and high.first == 2 and UNDECIDED not in high.per_round


def test_certified_max_radius_is_the_largest_output_radius():
    """max_radius[t] is the largest radius of round t's output enclosures (a finite float when certified)."""
    from theory.exact_level import certified_rounds

    rep = certified_rounds(3, 2, 0.5, 0.1, 0.2, np.array([[2, 0, 0], [1, 1, 0], [0, 1, 1]]), 3, full=True)
    assert len(rep.max_radius) == 4 and "undecided" not in rep.per_round
    for t, r in enumerate(rep.max_radius):
        assert isinstance(r, float) and 0 <= r < 1e-6
        assert r == np.nanmax(rep.outputs_rad[t])


def test_report_fields_and_early_stop():
    K, n = 4, 500
    counts = exact_label_counts(corruption_matrix("superclass", K, 0.1), n)
    rep = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 30)
    assert rep.first == len(rep.per_round) - 1
    assert rep.per_round[-1] == "perfect" and set(rep.per_round[:-1]) == {"not perfect"}
    assert rep.margin_bounds[-1][0] > 0 and all(hi < 0 for _, hi in rep.margin_bounds[:-1])
    assert all(0 <= x < 1 for x in rep.max_contraction)
    assert min_rounds_exact(K, n, 0.4, 0.1, 1e-5, counts, rep.first - 1) is None


def test_precision_bounds_are_inclusive():
    args = dict(K=2, n=2, c=0.5, d=0.1, lam=0.01, counts=np.array([[2, 0], [0, 2]]), rounds=0)
    rep = certified_rounds(**args, prec=53, max_prec=53)
    assert rep.prec == 53 and rep.first == 0


def test_missing_flint_is_reported(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "flint", None)  # makes ``import flint`` fail
    with pytest.raises(ImportError, match=r"python-flint"):  # names the package to install
        el._flint()


def test_ball_float_encloses_the_ball_with_a_rounding_allowance_only():
    """(m, r) floats with [m - r, m + r] containing the ball b, and rad(b) <= r <= rad(b) (1 + 4u) + 2u |m| + 1e-290
    (u = 2^-53: rounding of the midpoint and of the radius to float): the interval widens the ball by
    rounding-sized terms only."""
    import flint

    u = 2.0**-53
    old = flint.ctx.prec
    flint.ctx.prec = 200
    try:
        balls = [flint.arb(0), flint.arb(0, 1e-300), flint.arb(0, 1.0), flint.arb(1) / 3, flint.arb(-2) / 3 + flint.arb(0, 1e-20),
                 flint.arb(10) ** 20 / 7, flint.arb(1e-310) / 3, flint.arb(-5, 0.25),
                 flint.arb(1.5, 1e-3), flint.arb(-2.0, 0.25), flint.arb(1e-3)]
        for b in balls:
            m, r = el._ball_float(b)
            assert r >= float(b.rad()) >= 0
            lo, hi = flint.arb(m) - flint.arb(r), flint.arb(m) + flint.arb(r)  # exact: float values at 200 bits
            assert lo <= b.lower() and b.upper() <= hi, (b, m, r)
            assert r <= float(b.rad()) * (1 + 4 * u) + abs(m) * 2 * u + 1e-290, (b, m, r)
    finally:
        flint.ctx.prec = old


def test_up_is_an_upper_bound():
    """_up inflates a non-negative float bound: never below its argument, strictly above it, positive at 0."""
    v = np.array([0.0, 1e-300, 1.0, 3.5, 1e300])
    u = _up(v)
    assert np.all(u > v)
    assert np.all(u >= v * (1 + 1e-12))


def test_contraction_matrix_bounds_the_exact_residual_matrix():
    """The float bound of |I - Y J(X)| used by the certificate is entrywise >= the ball-arithmetic enclosure of
    |I - Y J(x)| at a point x (Y the float inverse of the midpoint Jacobian, so most entries are rounding-sized:
    that is where the float dot-product error term is needed)."""
    from theory.exact_level import _Cell, _contraction_matrix, _flint

    flint = _flint()
    K, n, c, d, lam = 3, 2, 0.5, 0.1, 0.2
    counts = np.array([[2, 0, 0], [1, 1, 0], [0, 1, 1]])
    cell = _Cell(flint, K, n, c, d, lam, counts)
    Km, m = cell.Km, cell.m
    x = flint.arb_mat(Km, 1, [float(v) for v in np.random.default_rng(0).normal(size=Km)])
    pX = cell.softmax_balls(cell.Mbig * x)
    # exact-ball Jacobian J[(a, i), (b, j)] = delta + (diag(p_a) - p_a p_a^T)[i, j] M[a, b]
    J = flint.arb_mat(Km, Km)
    for a in range(m):
        for i in range(K):
            pi = pX[a * K + i]
            for b in range(m):
                for j in range(K):
                    h = (pi if i == j else 0) - pi * pX[a * K + j]
                    J[a * K + i, b * K + j] = h * cell.Mbig[a * K, b * K] + (1 if a * K + i == b * K + j else 0)
    Jf = np.array([[float(J[i, j].mid()) for j in range(Km)] for i in range(Km)])
    Yf = np.linalg.inv(Jf)
    Y = flint.arb_mat(Km, Km, [float(v) for v in Yf.ravel()])
    E = flint.arb_mat(Km, Km, [float(v) for v in np.eye(Km).ravel()]) - Y * J
    exact_upper = np.array([[float(E[i, j].abs_upper()) for j in range(Km)] for i in range(Km)])
    bound = _contraction_matrix(cell, pX, Yf, np.abs(Yf), np.eye(Km))
    assert np.all(bound >= exact_upper)
    assert np.all(bound > 0)


def test_solve_reduced_contract():
    K, n, c, d, lam, counts = CELL
    with pytest.raises(RuntimeError, match=r"after 0 Newton steps.*1e-13"):
        solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K), max_iter=0)
    # tol == 0 is out of reach in float: the default limit of 100 Newton steps ends the solve
    with pytest.raises(RuntimeError, match=r"after 100 Newton steps"):
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


@settings(max_examples=15)
@given(small_cells())
def test_reduced_solution_equals_dense_solve(cell):
    K, n, c, d, lam, counts = cell
    G = block_gram(K, n, c, d)
    z = labels_from_counts(counts)
    y = np.repeat(np.arange(K), n)
    T = np.zeros((K, K * n))
    T[z, np.arange(K * n)] = 1.0
    dense = fit_gram(G, T, lam)
    red = solve_reduced(K, n, c, d, lam, counts, _one_hot_types(K))
    blk = fit_block(K, n, c, d, lam, counts, _one_hot_types(K))
    assert np.max(np.abs(red.outputs[y, z].T - dense.outputs)) < SOLVER_TOL
    assert np.max(np.abs(blk.outputs[y, z].T - dense.outputs)) < SOLVER_TOL


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


def test_mixing_matrix_reproduces_dense_logits():
    """s M r on types equals (U G)/(N lam) on instances for random type residuals."""
    K, n, c, d, lam = 3, 5, 0.6, 0.2, 0.01
    counts = np.array([[4, 1, 0], [0, 3, 2], [1, 1, 3]])
    ks, ls = np.nonzero(counts)
    rng = np.random.default_rng(0)
    r = rng.standard_normal((ks.size, K))
    z = labels_from_counts(counts)
    y = np.repeat(np.arange(K), n)
    index = {(k, l): a for a, (k, l) in enumerate(zip(ks, ls))}
    U = np.stack([r[index[(k, l)]] for k, l in zip(y, z)], axis=1)  # K x N
    Z = U @ block_gram(K, n, c, d) / (K * n * lam)
    Zr = mixing_matrix(K, n, c, d, lam, counts) @ r
    Zt = np.stack([Zr[index[(k, l)]] for k, l in zip(y, z)], axis=1)
    assert np.max(np.abs(Z - Zt)) < 1e-10 * np.max(np.abs(Z))  # float round-off of sums of <= N terms


def test_exact_boundary_and_ties():
    K, n, c, d, lam = 4, 20, 0.4, 0.1, 1e-3
    out = exact_boundary(K, n, c, d, lam, "superclass", [0.0, 0.2, 0.5, 0.9], 15)
    assert out[0] == 0  # clean labels: the teacher is already perfect
    assert isinstance(out[1], int) and out[1] >= 1
    # eta = 1/2: classes of a pair carry identical label shares, the own label wins: never perfect
    assert out[2] is None and out[3] is None
    with pytest.raises(ValueError, match="whole number"):
        exact_boundary(K, n, c, d, lam, "symmetric", [0.1], 5)

