"""Exact level: the type reduction (sympy), the certified rounds (ball arithmetic) and the gap corrections.

Twins: sims.solver.fit_gram on the explicit N x N block Gram (dense, shares no
code with the reduction), sims.solver.fit_block (the suite's type-reduced float
solver) and theory.exact_level.solve_reduced (this module's float solver).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sims.engine import measures as metrics
from sims.engine.fit.solver import fit_block, fit_gram
from theory.block_model import block_gram
from theory.conditions import min_rounds
from theory.corruption import corruption_matrix, exact_label_counts
from theory.exact_gap import (
    active_set_rounds,
    decoupled_rounds,
    gap_table,
    operating_point_rounds,
    pair_formula_rounds,
    verify_pair_recursion,
    verify_active_set_linearisation,
    verify_operating_point_linearisation,
)
from theory.exact_level import (
    UNDECIDED,
    certified_rounds,
    derive_type_system,
    exact_boundary,
    min_rounds_exact,
    mixing_matrix,
    solve_reduced,
    verify_type_reduction,
)

from .strategies import labels_from_counts

# Float outputs of two exact solvers of the same strictly convex problem agree
# to the solvers' residual tolerance (1e-10) times the conditioning of the
# fixed point (below 1e3 for the drawn problems): 1e-9 leaves room for both.
SOLVER_TOL = 1e-9
# A float margin this close to 0 is a near tie: the float chain's verdict there
# is not reliable (outputs accurate to ~1e-9 after a few rounds), so only the
# certificate decides; such rounds are labelled and skipped in the comparison.
NEAR_TIE = 1e-7
ROUNDS = 10


def _is_zero(expr) -> bool:
    return sp.simplify(expr) == 0


def _all_zero(value) -> bool:
    if isinstance(value, sp.MatrixBase):
        return all(_is_zero(e) for e in value)
    if isinstance(value, (list, tuple)):
        return all(_all_zero(v) for v in value)
    return _is_zero(value)


# ---------------------------------------------------------------------------- symbolic


@pytest.mark.parametrize("layout", [None, {(0, 0): 3, (0, 1): 2, (1, 0): 1, (1, 1): 1}])
def test_type_reduction_residuals_vanish(layout):
    res = verify_type_reduction(layout)
    assert set(res) == {"logits", "invariant_subspace", "mixing_is_aggregated_gram", "permutation", "hessian_variance", "reduced_logits"}
    for name, value in res.items():
        assert _all_zero(value), name


def test_active_set_linearisation_residuals_vanish():
    for name, value in verify_active_set_linearisation().items():
        assert _all_zero(value), name


def test_pair_recursion_residuals_vanish():
    for name, value in verify_pair_recursion().items():
        assert _all_zero(value), name


def test_operating_point_linearisation_residuals_vanish():
    for name, value in verify_operating_point_linearisation(K=2).items():
        assert _all_zero(value), name


def test_symbolic_type_system_vanishes_at_the_float_solution():
    """The sympy system over types, lambdified, is solved by solve_reduced's solution (to its tolerance)."""
    K, n, c, d, lam = 3, 4, 0.5, 0.1, 0.02
    counts = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]])
    T = _one_hot_types(K)
    sol = solve_reduced(K, n, c, d, lam, counts, T)
    ks, ls = np.nonzero(counts)
    types = list(zip(ks.tolist(), ls.tolist()))
    eqs, r, t = derive_type_system(types, counts[ks, ls].tolist())
    s_sym = sp.Symbol("s", positive=True)
    c_sym, d_sym = sp.symbols("c d", real=True)
    values = {s_sym: 1 / (K * n * lam), c_sym: c, d_sym: d}
    for a in range(len(types)):
        for j in range(K):
            values[r[a, j]] = sol.r[a, j]
            values[t[a, j]] = T[ks[a], ls[a], j]
    worst = max(abs(float(e.subs(values))) for row in eqs for e in row)
    assert worst < 1e-12  # solve_reduced stops at max|F| <= 1e-13; sympy evaluates with ~15 digits


# ---------------------------------------------------------------------------- reduction vs dense


@st.composite
def small_cells(draw, max_K=3, max_n=6):
    """(K, n, c, d, lam, counts): block model with d >= 0 and label counts with a majority of correct labels
    in every class and at least one noisy label in class 0 (so that perfect rounds occur late enough to
    differ), lambda log-uniform in [10^-2.5, 10^-1.5]: small enough for the softmax to saturate (logit
    scale 1/(N lambda) of 3 to 300), where the exact and linearised rounds differ in 9 of the 40 examples
    of the default profile (both signs of the difference occur)."""
    K = draw(st.integers(2, max_K))
    n = draw(st.integers(3, max_n))
    c = draw(st.integers(30, 90)) / 100
    d = draw(st.integers(0, round(c * 100) - 5)) / 100
    lam = 10 ** draw(st.floats(-2.5, -1.5))
    counts = np.zeros((K, K), dtype=np.int64)
    for k in range(K):
        noisy = draw(st.integers(1 if k == 0 else 0, (n - 1) // 2))
        counts[k, k] = n - noisy
        for _ in range(noisy):
            counts[k, draw(st.sampled_from([j for j in range(K) if j != k]))] += 1
    return K, n, c, d, lam, counts


def _one_hot_types(K):
    T = np.zeros((K, K, K))
    T[:, np.arange(K), np.arange(K)] = 1.0
    return T


def _dense_chain(K, n, c, d, lam, counts, rounds):
    """Per round: min over instances of the float margin (true class minus best other), dense fit_gram."""
    G = block_gram(K, n, c, d)
    y = np.repeat(np.arange(K), n)
    z = labels_from_counts(counts)
    T = np.zeros((K, K * n))
    T[z, np.arange(K * n)] = 1.0
    out, coef, outputs = [], None, []
    for _ in range(rounds + 1):
        fit = fit_gram(G, T, lam, coef0=coef)
        out.append(float(metrics.margins(fit.outputs, y).min()))
        outputs.append((fit.outputs, y, z))
        T, coef = fit.outputs, fit.coef
    return out, outputs


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


# ---------------------------------------------------------------------------- certified vs dense


def _check_certified_against_dense(cell, record, label=event):
    K, n, c, d, lam, counts = cell
    rep = certified_rounds(K, n, c, d, lam, counts, ROUNDS, full=True)
    margins, fits = _dense_chain(K, n, c, d, lam, counts, ROUNDS)
    assert len(rep.per_round) == ROUNDS + 1
    for t, (verdict, m) in enumerate(zip(rep.per_round, margins)):
        if verdict == UNDECIDED:
            # undecided only near a tie (or after an earlier undecided round)
            assert abs(m) < 1e-6 or UNDECIDED in rep.per_round[:t], (t, m)
            continue
        # soundness: the dense float outputs lie in the enclosures (up to the solvers' tolerance)
        P, y, z = fits[t]
        mid, rad = rep.outputs_mid[t][y, z].T, rep.outputs_rad[t][y, z].T
        assert np.all(np.abs(P - mid) <= rad + SOLVER_TOL * (t + 1))
        lo, hi = rep.margin_bounds[t]
        assert lo - SOLVER_TOL * (t + 1) <= m <= hi + SOLVER_TOL * (t + 1)
        if abs(m) < NEAR_TIE:
            label("near tie in the float chain")
            continue
        assert (verdict == "perfect") == (m > metrics.TIE_TOL), (t, verdict, m)
    float_first = next((t for t, m in enumerate(margins) if m > metrics.TIE_TOL), None)
    if rep.first != UNDECIDED and all(abs(m) >= NEAR_TIE for m in margins):
        assert rep.first == float_first
    lin = min_rounds(K, n, c, d, lam, counts / n)
    lin_capped = lin if lin is not None and lin <= ROUNDS else None
    differs = lin_capped != rep.first
    label("exact and linearised rounds differ" if differs else "exact and linearised rounds agree")
    record.append(differs)


def test_certified_rounds_match_dense_solves_and_reach_gap_cases():
    """Certified verdicts agree with a dense float chain; the strategy reaches cells where the exact and
    linearised first perfect rounds differ (asserted: the property is not vacuous for the gap)."""
    record: list[bool] = []

    @given(small_cells())
    def prop(cell):
        _check_certified_against_dense(cell, record)

    prop()
    assert any(record), "no drawn cell had different exact and linearised rounds"
    assert not all(record)


# Pinned cells found by a random search (seeded numpy, 150 draws of the cell distribution above):
# exact lags the linearised round, and (unbalanced labels) exact leads it.
GAP_CELLS = [
    ((3, 3, 0.77, 0.12, 10**-1.8389973971211682, np.array([[2, 1, 0], [0, 3, 0], [0, 0, 3]])), 1, 2),
    ((3, 6, 0.34, 0.04, 10**-2.141716471781614, np.array([[5, 1, 0], [0, 5, 1], [0, 0, 6]])), 2, 3),
    ((2, 5, 0.74, 0.09, 10**-2.5594037464297643, np.array([[5, 0], [1, 4]])), 5, 4),
]


@pytest.mark.parametrize("cell, linear, exact", GAP_CELLS)
def test_pinned_gap_cells(cell, linear, exact):
    K, n, c, d, lam, counts = cell
    assert min_rounds(K, n, c, d, lam, counts / n) == linear
    record: list[bool] = []
    _check_certified_against_dense(cell, record, label=lambda _: None)
    assert record == [True]
    assert min_rounds_exact(K, n, c, d, lam, counts, ROUNDS) == exact


# ---------------------------------------------------------------------------- API and the paper setting


def test_report_fields_and_early_stop():
    K, n = 4, 500
    counts = exact_label_counts(corruption_matrix("superclass", K, 0.1), n)
    rep = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 30)
    assert rep.first == len(rep.per_round) - 1
    assert rep.per_round[-1] == "perfect" and set(rep.per_round[:-1]) == {"not perfect"}
    assert rep.margin_bounds[-1][0] > 0 and all(hi < 0 for _, hi in rep.margin_bounds[:-1])
    assert all(0 <= x < 1 for x in rep.max_contraction)
    assert min_rounds_exact(K, n, 0.4, 0.1, 1e-5, counts, rep.first - 1) is None


def test_paper_setting_superclass_gap():
    """K=4, n=500, c=0.4, d=0.1, lam=1e-5, superclass pairs eta=0.46 (paper_checks: 20 predicted, 37 observed)."""
    K, n, c, d, lam = 4, 500, 0.4, 0.1, 1e-5
    C = corruption_matrix("superclass", K, 0.46)
    counts = exact_label_counts(C, n)
    assert min_rounds(K, n, c, d, lam, C) == 20
    rep = certified_rounds(K, n, c, d, lam, counts, 40)
    # the float chain of fit_block gives the same first round
    ks, ls = np.nonzero(counts)
    T = _one_hot_types(K)
    first = None
    for t in range(41):
        fit = fit_block(K, n, c, d, lam, counts, T)
        if np.all(metrics.correct(fit.outputs[ks, ls].T, ks)):
            first = t
            break
        T = np.where(np.isnan(fit.outputs), 1.0 / K, fit.outputs)
    assert rep.first == first == 37
    assert active_set_rounds(K, n, c, d, lam, counts) == 40  # correction 1 alone overshoots
    assert decoupled_rounds(K, n, c, d, lam, counts, 60) == 37  # correction 2 (class-decoupled limit)


def test_exact_boundary_and_ties():
    K, n, c, d, lam = 4, 20, 0.4, 0.1, 1e-3
    out = exact_boundary(K, n, c, d, lam, "superclass", [0.0, 0.2, 0.5, 0.9], 15)
    assert out[0] == 0  # clean labels: the teacher is already perfect
    assert isinstance(out[1], int) and out[1] >= 1
    # eta = 1/2: classes of a pair carry identical label shares, the own label wins: never perfect
    assert out[2] is None and out[3] is None
    with pytest.raises(ValueError, match="whole number"):
        exact_boundary(K, n, c, d, lam, "symmetric", [0.1], 5)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(K=1), "K == 1"),
        (dict(lam=0.0), "lam == 0.0"),
        (dict(rounds=-1), "rounds == -1"),
        (dict(counts=np.array([[2, 0], [1, 0]])), "counts"),
    ],
)
def test_validation_messages(bad, match):
    args = dict(K=2, n=2, c=0.5, d=0.1, lam=0.01, counts=np.array([[2, 0], [0, 2]]), rounds=3)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        certified_rounds(**args)


def test_gap_corrections_symmetric_noise_no_active_set_effect():
    """Symmetric noise keeps every class active: correction 1 equals the linearised round."""
    K, n, c, d, lam = 4, 600, 0.4, 0.1, 1e-5
    C = corruption_matrix("symmetric", K, 0.6)
    counts = exact_label_counts(C, n)
    assert active_set_rounds(K, n, c, d, lam, counts) == min_rounds(K, n, c, d, lam, C)
    assert math.isfinite(decoupled_rounds(K, n, c, d, lam, counts, 40))


def test_gap_table_paper_setting_superclass():
    """Measured (benchmarks/bench_exact_level.py --gap): the class-decoupled limit reproduces the certified
    exact round on the superclass grid; the closed forms bracket it at high noise."""
    rows = gap_table(4, 500, 0.4, 0.1, 1e-5, "superclass", [0.1, 0.3, 0.48], 60)
    assert [r["exact"] for r in rows] == [r["decoupled"] for r in rows] == [7, 15, 47]
    assert [r["linear"] for r in rows] == [6, 10, 26]
    assert [r["active_set"] for r in rows] == [12, 19, 50]
    assert [r["operating_point"] for r in rows] == [4, 16, 50]
    assert [r["pair_formula"] for r in rows] == [7, 15, 47]


def test_pair_formula_validation():
    counts = exact_label_counts(corruption_matrix("symmetric", 4, 0.3), 30)
    with pytest.raises(ValueError, match="class 0 has 4 given labels"):
        pair_formula_rounds(4, 30, 0.4, 0.1, 1e-4, counts)
    counts = exact_label_counts(corruption_matrix("superclass", 4, 0.5), 30)
    assert pair_formula_rounds(4, 30, 0.4, 0.1, 1e-4, counts) is None


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


def test_distill_json_reports_min_rounds_exact(capsys):
    """``python -m sims.distill --json``: theory.min_rounds_exact next to theory.min_rounds, equal to the
    certified round for the sample's counts, and equal to the first perfect round of the exact records."""
    import json

    from sims.studies import distill

    argv = ["--per-class", "20", "--noise", "superclass", "--eta", "0.3", "--exact-counts", "--lam", "1e-3",
            "--rounds", "12", "--level", "exact", "--json"]
    assert distill.main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    th = res["theory"]
    keys = list(th)
    assert keys.index("min_rounds_exact") == keys.index("min_rounds") + 1
    counts = np.array(res["params"]["label_counts"])
    assert th["min_rounds_exact"] == min_rounds_exact(4, 20, 0.4, 0.1, 1e-3, counts, 12)
    perfect = [r["round"] for r in res["records"] if r["method"] == "sd" and r["train_accuracy"] == 1.0]
    assert th["min_rounds_exact"] == (min(perfect) if perfect else None)
    # not reached within the rounds asked for: null
    assert distill.main(argv[:-5] + ["--rounds", "1", "--level", "exact", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["theory"]["min_rounds_exact"] is None


def test_insufficient_precision_gives_undecided_not_a_wrong_verdict():
    """At 53 bits the enclosures of the paper's superclass cell (eta = 0.46) outgrow the Krawczyk test after
    a few rounds: the answer is "undecided" (never a wrong round); allowing more bits recovers round 37."""
    K, n = 4, 500
    counts = exact_label_counts(corruption_matrix("superclass", K, 0.46), n)
    low = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 40, prec=53, max_prec=53)
    assert low.first == UNDECIDED and low.per_round[-1] == UNDECIDED
    assert set(low.per_round[:-1]) == {"not perfect"}
    rescued = certified_rounds(K, n, 0.4, 0.1, 1e-5, counts, 40, prec=53, max_prec=256)
    assert rescued.first == 37 and rescued.prec > 53
