"""The engine's one loop over rounds (sims.engine.rounds), its engines' shared interface, the linear level
against the closed forms of theory, the exact engines against each other, the one agreement type
(sims.engine.Agreement) and the label helpers.

The linear level is brute-force linear algebra on explicit N x N matrices; here it is compared with the closed
forms of :mod:`theory` (its analytic twin)."""

from __future__ import annotations

import numpy as np
import pytest

import sims.engine as E
import theory
from sims.engine import features as F
from sims.engine import measures as M
from sims.engine import noise as Nm
from sims.engine.fit.solver import fit_features
from tests.theorems.strategies import raises_naming


class _Recorder:
    """An engine that records what each fit was asked (targets, loss, start) and returns targets + 1."""

    def __init__(self, warm_rounds):
        self.warm_rounds = warm_rounds
        self.calls = []

    def fit(self, targets, loss="ce", start=None):
        self.calls.append((targets, loss, start))
        return E.LinearFit(targets=targets, outputs=targets + 1, residual=0.0, lam=1.0)

    def next_targets(self, fit):
        return fit.outputs

    def pll_targets(self, fit, ties="share"):
        return -fit.outputs

    def start_from(self, fit):
        return ("state of", float(fit.targets))


def test_sd_chains_rounds_and_warm_starts_only_when_the_engine_says_so():
    for warm in (False, True):
        eng = _Recorder(warm)
        fits = E.sd(eng, 0.0, 3)
        assert [f.targets for f in fits] == [0.0, 1.0, 2.0, 3.0]  # round t on round t-1's outputs
        starts = [start for _, _, start in eng.calls]
        assert starts == ([None, ("state of", 0.0), ("state of", 1.0), ("state of", 2.0)] if warm else [None] * 4)
        assert all(loss == "ce" for _, loss, _ in eng.calls)


def test_sd_until_stops_after_the_first_round_that_satisfies_it_and_counts_progress():
    ticks = []
    fits = E.sd(_Recorder(False), 0.0, 10, until=lambda f: f.outputs >= 3, progress=lambda: ticks.append(1))
    assert [f.outputs for f in fits] == [1.0, 2.0, 3.0] and len(ticks) == 3
    assert len(E.sd(_Recorder(False), 0.0, 10, until=lambda f: False)) == 11


def test_sd_with_a_given_first_fit_does_not_refit_round_0():
    eng = _Recorder(True)
    first = eng.fit(5.0)
    fits = E.sd(eng, 5.0, 2, first=first)
    assert fits[0] is first and [f.targets for f in fits] == [5.0, 6.0, 7.0]
    assert [start for _, _, start in eng.calls] == [None, ("state of", 5.0), ("state of", 6.0)]  # one fit of round 0


def test_pll_starts_gce_from_the_teacher_and_ce_from_zero():
    eng = _Recorder(False)
    teacher = E.sd(eng, 2.0, 0)[0]
    E.pll(eng, teacher, "ce")
    E.pll(eng, teacher, "gce")
    assert eng.calls[1] == (-3.0, "ce", None)
    assert eng.calls[2] == (-3.0, "gce", ("state of", 2.0))


def test_first_perfect_uses_the_tie_convention():
    y = np.array([0, 1])
    fits = [E.LinearFit(None, P, 0.0, 1.0) for P in (np.array([[0.5, 0.5], [0.5, 0.5]]),  # ties fail
                                                     np.array([[0.9, 0.2], [0.1, 0.8]]))]
    assert E.first_perfect(fits, y) == 1
    assert E.first_perfect(fits[:1], y) is None
    assert E.perfect(fits[1].outputs, y) and not E.perfect(fits[0].outputs, y)


def test_the_three_exact_engines_and_the_linear_model_share_one_round_loop():
    """Rounds on the block model: type-reduced, Gram and feature engines give the same outputs; the
    linearised model at small lam / large n differs from them (it is another fit), but follows the same loop."""
    K, n, c, d, lam = 3, 6, 0.4, 0.1, 1e-2
    counts = np.array([[5, 1, 0], [0, 6, 0], [1, 1, 4]])
    y, z = E.labels_from_counts(counts)
    G = E.block_gram(K, n, c, d)
    w, V = np.linalg.eigh(G)
    X = V * np.sqrt(np.clip(w, 0, None))
    block = E.BlockExact(K, n, c, d, lam, y, z)
    out = {}
    for name, eng, first in (("block", block, block.one_hot_types()),
                             ("gram", E.GramExact(G, lam), E.one_hot(z, K)),
                             ("features", E.FeatureExact(X, lam), E.one_hot(z, K))):
        fits = E.sd(eng, first, 3)
        assert len(fits) == 4 and all(f.residual < 1e-9 for f in fits)
        out[name] = np.array([f.outputs for f in fits])
        student = E.pll(eng, fits[0], "gce")
        out[name + "_pll"] = student.outputs
    for name in ("gram", "features"):
        assert np.max(np.abs(out[name] - out["block"])) < 1e-7
        assert np.max(np.abs(out[name + "_pll"] - out["block_pll"])) < 1e-6
    lin = E.sd(E.LinearModel(G, K, lam), E.one_hot(z, K), 3)
    assert len(lin) == 4 and np.max(np.abs(lin[1].targets - lin[0].outputs)) == 0.0
    with raises_naming("loss", "'gce'"):
        E.pll(E.LinearModel(G, K, lam), lin[0], "gce")


def test_block_engine_ignores_absent_types():
    """A type with zero count has NaN outputs; the next round and the PLL targets still fit."""
    K, n = 3, 4
    counts = np.array([[4, 0, 0], [0, 3, 1], [0, 0, 4]])
    y, z = E.labels_from_counts(counts)
    eng = E.BlockExact(K, n, 0.4, 0.1, 1e-2, y, z)
    fits = E.sd(eng, eng.one_hot_types(), 2)
    assert np.isnan(eng.type_outputs(fits[0])[0, 1]).all()
    T = eng.pll_targets(fits[0])
    assert np.all(np.isfinite(T)) and np.allclose(T.sum(axis=2), 1.0)
    assert E.pll(eng, fits[0], "ce").residual < 1e-9


def test_stacked_linear_pll_targets_per_problem():
    K, n = 3, 5
    model = E.LinearModel(E.block_gram(K, n, 0.4, 0.1), K, 1e-2, explicit=True)
    rng = np.random.default_rng(1)
    Ts = [E.one_hot(rng.integers(0, K, K * n), K) for _ in range(2)]
    stacked = E.StackedLinear(model)
    teacher = stacked.fit(np.vstack(Ts))
    T = stacked.pll_targets(teacher)
    for i, Ti in enumerate(Ts):
        assert np.array_equal(T[i * K:(i + 1) * K], E.pll_targets(teacher.outputs[i * K:(i + 1) * K]))
    with raises_naming("model", "explicit"):
        E.StackedLinear(E.LinearModel(E.block_gram(K, n, 0.4, 0.1), K, 1e-2))



# ----------------------------------------------------------------------------- the linear level against theory

K, n, c, d = 3, 20, 0.4, 0.1


def _labels(eta=0.4, exact=False, seed=0, noise="symmetric", Kc=K, nc=n):
    y = np.repeat(np.arange(Kc), nc)
    z = Nm.corrupt_labels(y, Nm.noise_matrix(noise, Kc, eta), np.random.default_rng(seed), exact=exact)
    return y, z


def _block_features(Kc, nc):
    w, V = np.linalg.eigh(F.block_gram(Kc, nc, c, d))
    return V * np.sqrt(np.clip(w, 0, None))  # X X^T = block model


@pytest.mark.parametrize("lam", [1e-5, 1e-3, 1e-1])
@pytest.mark.parametrize("noise,eta,exact", [("symmetric", 0.4, False), ("asymmetric", 0.6, True), ("superclass", 0.3, False)])
def test_linear_level_equals_closed_form(lam, noise, eta, exact):
    # Brute force (Cholesky of G + K N lam I, N = 60 or 40) vs theory.type_outputs.
    # Tolerance 1e-11: cond(G + K N lam I) <= (mu_max + K N lam) / (1 - c) < 40, the
    # outputs are O(1), float64 round-off ~ 1e-15 * cond * rounds; measured max 7.7e-15.
    Kc = 4 if noise == "superclass" else K
    nc = 10 if noise != "symmetric" else n
    y, z = _labels(eta, exact, noise=noise, Kc=Kc, nc=nc)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    fits = E.sd(model, E.one_hot(z, Kc), rounds=6)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    for t, fit in enumerate(fits):
        closed = theory.type_outputs(Kc, nc, c, d, lam, C_emp, t)[y, z].T
        assert np.max(np.abs(fit.outputs - closed)) < 1e-11
        assert fit.residual < 1e-12


def test_linear_level_equals_operator_power_on_general_gram():
    # On a Gaussian-mixture Gram (not block structured): P_t - U = (Y - U) A^(t+1)
    # with A from theory.label_averaging_operator (explicit inverse). Same tolerance.
    rng = np.random.default_rng(1)
    X, y = F.sample_gmm(K, n, c, d, 50, rng)
    z = Nm.corrupt_labels(y, Nm.noise_matrix("symmetric", K, 0.4), rng)
    G = X @ X.T
    lam = 1e-3
    A = theory.label_averaging_operator(G, K, lam)
    Y = E.one_hot(z, K)
    fits = E.sd(E.LinearModel(G, K, lam), Y, rounds=4)
    PU = Y - 1 / K
    for fit in fits:
        PU = PU @ A
        assert np.max(np.abs(fit.outputs - 1 / K - PU)) < 1e-11


def test_linear_min_rounds_and_population_accuracy_agree_with_theory():
    # P3 brute force: every training instance correct from theory.min_rounds on, not
    # one round earlier; fresh (population) accuracy equals theory.population_accuracy.
    Kc, nc, lam = 4, 30, 1e-4
    y, z = _labels(0.5, exact=False, seed=3, Kc=Kc, nc=nc)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    t_star = theory.min_rounds(Kc, nc, c, d, lam, C_emp)
    assert t_star is not None and t_star >= 1
    fits = E.sd(E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam), E.one_hot(z, Kc), rounds=t_star + 3)
    acc = [M.accuracy(f.outputs, y) for f in fits]
    assert acc[t_star - 1] < 1.0 and all(a == 1.0 for a in acc[t_star:])
    cross = np.where(y[:, None] == np.arange(Kc)[None, :], c, d)  # Gram rows of fresh class-k samples
    for t, f in enumerate(fits):
        fresh = M.accuracy(f.logits(cross), np.arange(Kc))
        assert fresh == theory.population_accuracy(Kc, nc, c, d, lam, C_emp, t)


def test_linear_pll_student_block_model():
    # Exact counts, symmetric eta = 0.3 < threshold: linear PLL student on the
    # teacher's top-two targets predicts every training instance correctly
    # (P4 derivation: average PLL target gives < 1/2 to each wrong label).
    Kc, nc, lam = 4, 30, 1e-4
    y, z = _labels(0.3, exact=False, seed=4, Kc=Kc, nc=nc)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    teacher = model.fit(E.one_hot(z, Kc))
    student = E.pll(model, teacher)
    assert np.allclose(student.targets.sum(axis=0), 1.0)
    assert np.all((student.targets > 0).sum(axis=0) >= 2)
    assert M.accuracy(student.outputs, y) == 1.0


@pytest.mark.parametrize("ties", ["share", "lowest"])
@pytest.mark.parametrize(
    "noise,eta,exact",
    [("symmetric", 0.5, True), ("symmetric", 0.6, False), ("asymmetric", 1 / 3, True), ("superclass", 0.25, True)],
)
def test_linear_pll_equals_theory_pll_analysis(noise, eta, exact, ties):
    # Brute-force PLL student (numeric targets, ties within TIE_TOL) vs the exact
    # analysis of theory.pll_analysis: same targets per instance (to 1e-12), same
    # per-instance correctness, same fresh accuracy. Exact counts make the
    # teacher's outputs tie exactly (symmetric wrong classes, superclass pairs),
    # which exercises the tie rules; round-off (~1e-15) is far below TIE_TOL.
    Kc, nc, lam = 4, 12, 1e-4
    y, z = _labels(eta, exact, seed=9, noise=noise, Kc=Kc, nc=nc)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    rep = theory.pll_analysis(Kc, nc, c, d, lam, C_emp, ties=ties)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    student = E.pll(model, model.fit(E.one_hot(z, Kc)), "ce", ties)
    assert np.max(np.abs(student.targets - rep.targets[y, z].T)) < 1e-12
    assert np.array_equal(M.correct(student.outputs, y), rep.student_correct[y, z])
    assert M.accuracy(student.outputs, y) == pytest.approx(rep.student_train_accuracy, abs=1e-12)
    cross = np.where(y[:, None] == np.arange(Kc)[None, :], c, d)
    assert M.accuracy(student.logits(cross), np.arange(Kc)) == rep.student_fresh_accuracy


# ----------------------------------------------------------------------------- the exact engines


def test_exact_block_solver_matches_primal():
    # fit_block (type-reduced) vs the primal solver on explicit block features:
    # same fixed point, so outputs agree within the solvers' tolerance (1e-10 on
    # the residual; outputs within 1e-8).
    Kc, nc, lam = 3, 10, 1e-2
    y, z = _labels(0.4, Kc=Kc, nc=nc)
    X = _block_features(Kc, nc)
    eng = E.BlockExact(Kc, nc, c, d, lam, y, z)
    fits = E.sd(eng, eng.one_hot_types(), rounds=2)
    T = E.one_hot(z, Kc)
    for fit in fits:
        prim = fit_features(X, T, lam)
        assert np.max(np.abs(fit.outputs - prim.outputs)) < 1e-8
        T = prim.outputs


def test_gram_engine_matches_feature_engine():
    # The same mixture sample (D = 200 > N = 45: full-rank Gram, fit_gram's dense
    # route) through the Gram engine (fit_gram, warm-started, fresh logits from the
    # cross-Gram) and the feature engine (fit_features). Two exact solutions with
    # residual <= 1e-10 agree in the outputs to ~1e-10 times the conditioning of the
    # fixed point (small here): 1e-8 asserted; logits relative to their size, 1e-7.
    Kc, nc, lam = 3, 15, 1e-3
    rng = np.random.default_rng(12)
    X, _ = F.sample_gmm(Kc, nc, c, d, 200, rng)
    Xf, _ = F.sample_gmm(Kc, 4, c, d, 200, rng)
    y, z = _labels(0.3, seed=3, Kc=Kc, nc=nc)
    gram = E.GramExact(X @ X.T, lam, X @ Xf.T)
    feats = E.FeatureExact(X, lam, Xf)
    Y = E.one_hot(z, Kc)
    a, b = E.sd(gram, Y, rounds=2), E.sd(feats, Y, rounds=2)
    for fa, fb in zip(a, b):
        assert fa.raw.method == "dense" and fa.residual <= 1e-10
        np.testing.assert_allclose(fa.outputs, fb.outputs, atol=1e-8, rtol=0)
        scale = max(1.0, float(np.max(np.abs(fb.fresh_logits))))
        assert np.max(np.abs(fa.fresh_logits - fb.fresh_logits)) <= 1e-7 * scale
    for loss in ("ce", "gce"):
        pa, pb = E.pll(gram, a[0], loss), E.pll(feats, b[0], loss)
        np.testing.assert_allclose(pa.outputs, pb.outputs, atol=1e-8, rtol=0)


# ----------------------------------------------------------------------------- agreement


def test_agreement_counts_and_informative_share():
    a = E.Agreement.of([True, True, False, False, False, True], [True, False, True, False, False, True])
    assert a.counts() == {"both": 2, "only_theory": 1, "only_observed": 1, "neither": 2}
    assert a.informative == 4 and a.agreement == 0.5 and a.cells == 6 and a.all_cells_agreement == 4 / 6
    assert (a + a).counts() == {"both": 4, "only_theory": 2, "only_observed": 2, "neither": 4}
    assert E.Agreement.of([False, False], [False, False]).agreement is None
    assert E.Agreement().all_cells_agreement is None
    assert a.numbers("x") == {"x_both": 2, "x_only_theory": 1, "x_only_observed": 1, "x_neither": 2}
    assert "only theory: 1, only observed: 1; neither: 2" in a.text()
    with raises_naming("observed", "(1,)", "(2,)"):
        E.Agreement.of([True], [True, False])


# ----------------------------------------------------------------------------- labels


def test_labels_from_counts_and_one_hot():
    counts = np.array([[2, 1], [0, 3]])
    y, z = E.labels_from_counts(counts)
    assert y.tolist() == [0, 0, 0, 1, 1, 1] and z.tolist() == [0, 0, 1, 1, 1, 1]
    assert np.array_equal(E.label_counts(y, z, 2), counts)
    Y = E.one_hot(z, 2)
    assert Y.shape == (2, 6) and np.array_equal(Y.argmax(axis=0), z) and np.all(Y.sum(axis=0) == 1)


def test_superclass_noise_with_a_singleton_group_is_theory_s_per_group():
    C = E.noise.superclass_from_groups(5, 0.3, [[0, 3], [1], [2, 4]])
    assert np.array_equal(C[np.ix_([0, 3], [0, 3])], theory.superclass(2, 0.3))
    assert np.array_equal(C[np.ix_([2, 4], [2, 4])], theory.superclass(2, 0.3))
    assert C[1, 1] == 1.0 and C[1].sum() == 1.0 and C[0, 1] == 0.0
    assert np.array_equal(E.noise.superclass_from_groups(4, 0.3, [[0, 1], [2, 3]]), theory.superclass(4, 0.3, 2))


@pytest.mark.parametrize("lam", [1e-3, 1e-1])
def test_soft_engine_follows_the_exact_engine(lam):
    rng = np.random.default_rng(7)
    K, N, D = 3, 90, 6
    y = np.repeat(np.arange(K), N // K)
    X = rng.normal(size=(N, D)) + 1.5 * np.eye(K, D)[y]
    Xt = rng.normal(size=(30, D))
    z = Nm.corrupt_labels(y, Nm.noise_matrix("symmetric", K, 0.3), rng)
    soft = E.sd(E.SoftExact(X, lam, Xt), Nm.one_hot(z, K), 3)
    exact = E.sd(E.FeatureExact(X, lam, Xt), Nm.one_hot(z, K), 3)
    assert len(soft) == len(exact) == 4
    for s, e in zip(soft, exact):
        # both solve the same strictly convex problem: fit_soft stops at a gradient of 1e-8 (relative) and an
        # output change of 1e-9, the exact solver at a fixed-point residual of 1e-10; outputs within 1e-6
        assert np.max(np.abs(s.outputs - e.outputs)) < 1e-6
        assert np.max(np.abs(s.fresh_logits - e.fresh_logits)) < 1e-4 * max(1.0, np.max(np.abs(e.fresh_logits)))

