"""Pinned formulas: tests that fix details the broader property tests left free (found by mutation testing)."""

from fractions import Fraction

import numpy as np

import theory
from theory.rational import exp_sum_sign, intersect_intervals
from theory.exact_level import _up
from theory.predictions import margin_terms

from .strategies import explicit_block_gram, explicit_operator
from .test_p4_pll import FLOOR, _brute_pll


def _teacher_deviations(K, n, c, d, lam, counts):
    """Explicit one-fit teacher deviations (K, N) and the true/given label of every instance."""
    y, z, _, margin = _brute_pll(K, n, c, d, lam, counts, "share")
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    return (np.eye(K)[:, z] - 1.0 / K) @ A, y, z, margin


# Small lambda: the teacher memorises the given labels and errs on the noisy types; large lambda: it smooths
# them to the class majority; together the cases have teacher-correct and teacher-wrong present types.
TEACHER_CASES = [
    (4, 4, 0.4, 0.1, 1e-3, np.array([[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 3, 1], [0, 0, 1, 3]])),
    (3, 3, 0.6, 0.3, 0.1, np.array([[0, 1, 2], [0, 0, 3], [2, 1, 0]])),
]


def test_pll_teacher_correct_matches_explicit_teacher():
    """teacher_correct[k, l] is "the teacher's true-class output beats every other class", as in the explicit fit;
    teacher_train_accuracy is the share of such instances."""
    verdicts = set()
    for K, n, c, d, lam, counts in TEACHER_CASES:
        rep = theory.pll_analysis(K, n, c, d, lam, counts / n)
        D, y, z, _ = _teacher_deviations(K, n, c, d, lam, counts)
        N = K * n
        right = np.zeros(N, dtype=bool)
        for i in range(N):
            col = D[:, i]
            gap = col[y[i]] - np.delete(col, y[i]).max()
            # explicit deviations carry ~N eps of the filter scale; the drawn gaps are >= 1e-3 of it
            assert abs(gap) > FLOOR * np.abs(col).max()
            right[i] = gap > 0
            assert rep.teacher_correct[y[i], z[i]] == right[i], f"type {(y[i], z[i])}"
        verdicts.update(right.tolist())
        assert abs(rep.teacher_train_accuracy - right.mean()) <= 1e-14  # a float sum of <= 16 shares
    assert verdicts == {True, False}  # the cases exercise both verdicts


def test_pll_student_is_one_round():
    """The student's verdict is its margin after ONE fit on the PLL targets (this case's margin changes sign
    between one and two fits of type (2, 1))."""
    K, n, c, d, lam, counts = TEACHER_CASES[1]
    rep = theory.pll_analysis(K, n, c, d, lam, counts / n)
    _, y, z, margin = _teacher_deviations(K, n, c, d, lam, counts)
    floor = FLOOR * max(theory.filters(K, n, c, d, lam))
    for i in range(K * n):
        assert abs(margin[i]) > floor  # decided by float64 (see test_p4_pll.FLOOR)
        assert rep.student_correct[y[i], z[i]] == (margin[i] > 0), f"type {(y[i], z[i])}"
    assert not rep.student_correct[2, 1]


def test_margin_terms_overall_mean_is_a_distribution():
    """The returned class means and overall mean are target averages: each sums to exactly 1 over classes, and the
    overall mean is the mean of the class means."""
    K, n, c, d, lam, counts = TEACHER_CASES[0]
    _, _, (m, o) = margin_terms(K, n, c, d, lam, counts / n)
    for k in range(K):
        assert sum(m[k]) == 1
    assert sum(o) == 1
    assert all(o[j] == sum(m[k][j] for k in range(K)) / K for j in range(K))


def test_exp_sum_sign_float_path_beats_low_precision():
    """A sum far above the float64 error bound gets its sign from the fast path even when the mpmath fallback's
    precision (12 digits: relative 1e-2 reported as 0) could not resolve it; the exact sign agrees."""
    coefs, bases, s = [Fraction(1), Fraction(-1)], [Fraction(1), Fraction(999999, 10**6)], 1000
    exact = sum(cf * b**s for cf, b in zip(coefs, bases))
    assert 0 < exact < Fraction(1, 500)  # relative size ~5e-4: below the 12-digit fallback's 1e-2 threshold
    assert exp_sum_sign(coefs, bases, s, digits=12) == 1
    assert exp_sum_sign([-cf for cf in coefs], bases, s, digits=12) == -1


def test_intersect_intervals_many_pieces():
    """Several intervals of one list inside a single interval of the other are all kept."""
    a = [(1, 2), (4, 5), (7, 8), (10, None)]
    assert intersect_intervals(a, [(1, None)]) == a
    assert intersect_intervals([(1, None)], a) == a
    assert intersect_intervals(a, [(2, 11)]) == [(2, 2), (4, 5), (7, 8), (10, 11)]


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


def test_certified_max_radius_is_the_largest_output_radius():
    """max_radius[t] is the largest radius of round t's output enclosures (a finite float when certified)."""
    from theory.exact_level import certified_rounds

    rep = certified_rounds(3, 2, 0.5, 0.1, 0.2, np.array([[2, 0, 0], [1, 1, 0], [0, 1, 1]]), 3, full=True)
    assert len(rep.max_radius) == 4 and "undecided" not in rep.per_round
    for t, r in enumerate(rep.max_radius):
        assert isinstance(r, float) and 0 <= r < 1e-6
        assert r == np.nanmax(rep.outputs_rad[t])


def test_ball_float_is_a_tight_enclosure():
    """_ball_float's float interval contains the ball and widens it by rounding-sized terms only."""
    from theory.exact_level import _ball_float, _flint

    arb = _flint().arb
    for mid, rad in ((1.5, 1e-3), (-2.0, 0.25), (1e-3, 0.0)):
        b = arb(mid, rad)
        m, r = _ball_float(b)
        assert float(b.rad()) <= r <= float(b.rad()) * (1 + 1e-12) + abs(m) * 1e-15 + 1e-280
        assert m - r <= float(b.lower()) and float(b.upper()) <= m + r


def test_type_system_with_symbolic_counts():
    """Without counts the type system carries count symbols n0, n1, ...; substituting numbers gives the numeric
    system."""
    import sympy as sp

    from theory.symbolic_exact import derive_type_system

    types = [(0, 0), (0, 1), (1, 1)]
    eqs, r, t = derive_type_system(types)
    n = sp.symbols("n0:3", positive=True)
    assert {s.name for e in eqs for x in e for s in x.free_symbols} >= {"n0", "n1", "n2"}
    num, _, _ = derive_type_system(types, [2, 1, 3])
    sub = dict(zip(n, (2, 1, 3)))
    for a in range(len(types)):
        for j in range(2):
            assert sp.simplify(eqs[a][j].subs(sub) - num[a][j]) == 0


def test_symbolic_report_keys():
    """The named checks of the symbolic reports (their keys are the public names of the checks)."""
    from theory import symbolic, symbolic_gap

    assert set(symbolic.derive_fixed_point()) == {"L", "grad", "claimed", "W", "Phi", "T", "P", "N"}
    assert set(symbolic_gap.verify_pair_recursion()) == {"pair_logit", "mean", "recursion", "step_time"}
    explicit = set(symbolic.verify_block_spectrum_explicit(2, 1))
    assert {f"algebra_{a}{b}" for a in "BJ" for b in "BJ"} <= explicit
    assert {f"algebra_unnormalised_{a}{b}" for a in "BJ" for b in "BJ"} <= explicit
    groups = {key.split(".")[0] for key in symbolic.verify_all()}
    assert groups == {"explicit_K2_n1", "explicit_K2_n3", "explicit_K3_n2", "fixed_point", "fresh_logits",
                      "linearisation", "spectrum", "threshold", "type_scores"}



def test_operating_point_linearisation_three_classes():
    """The operating-point identities hold for K = 3 (the pair direction e_1 - e_2 padded with zeros)."""
    import sympy as sp

    from theory.symbolic_gap import verify_operating_point_linearisation

    for name, value in verify_operating_point_linearisation(K=3).items():
        assert sp.simplify(value) == sp.zeros(*value.shape), name


def test_full_certificate_raises_precision_for_late_rounds():
    """With ``full``, rounds left undecided at 53 bits (here 77 of 151, after the first perfect round 2 was
    decided) make certified_rounds double the precision; 106 bits decide every round."""
    from theory.exact_level import UNDECIDED, certified_rounds

    args = (3, 3, 0.5, 0.1, 0.05, np.array([[3, 0, 0], [0, 3, 0], [1, 0, 2]]), 150)
    low = certified_rounds(*args, prec=53, max_prec=53, full=True)
    assert low.first == 2 and UNDECIDED in low.per_round  # the undecided rounds come after a decided first
    high = certified_rounds(*args, prec=53, max_prec=106, full=True)
    assert high.prec == 106 and high.first == 2 and UNDECIDED not in high.per_round


def test_full_certificate_after_a_failed_round():
    """With ``full``, once a round's Krawczyk test fails (53 bits on the paper's superclass cell) there is no
    enclosure of the targets any more: every later round is reported undecided with an infinite radius."""
    from theory.corruption import corruption_matrix, exact_label_counts
    from theory.exact_level import UNDECIDED, certified_rounds

    K, n = 4, 500
    counts = exact_label_counts(corruption_matrix("superclass", K, 0.46), n)
    rep = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 40, prec=53, max_prec=53, full=True)
    fail = rep.per_round.index(UNDECIDED)
    assert 0 < fail < 40 and rep.first == UNDECIDED
    assert set(rep.per_round[:fail]) == {"not perfect"} and set(rep.per_round[fail:]) == {UNDECIDED}
    assert all(r == np.inf for r in rep.max_radius[fail:]) and all(np.isfinite(rep.max_radius[:fail]))
