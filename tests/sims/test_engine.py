"""The engine's one loop over rounds (sims.engine.rounds), its engines' shared interface, the one agreement
type (sims.engine.Agreement) and the label helpers."""

from __future__ import annotations

import numpy as np
import pytest

import sims.engine as E
import theory


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
    with pytest.raises(ValueError, match="loss == 'gce'"):
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
    with pytest.raises(ValueError, match="explicit=True"):
        E.StackedLinear(E.LinearModel(E.block_gram(K, n, 0.4, 0.1), K, 1e-2))


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
    with pytest.raises(ValueError, match="must be equal 1-d"):
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
