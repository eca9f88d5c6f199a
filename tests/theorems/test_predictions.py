"""Contract of theory.predictions: outputs for general (non one-hot) targets, exact class means, the overall-mean check."""

from __future__ import annotations

import numpy as np

import theory
from theory.predictions import margin_terms

from .strategies import brute_operator, raises_naming

K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)


C3 = theory.symmetric(3, 0.25)


def test_outputs_for_general_targets_match_brute_force():
    """Targets that are not one-hot (rows of PLL-like mixtures): the class mean is taken over the given labels l.

    Explicit: every instance of type (k, l) starts from T[k, l]; outputs U + (T_i - U) A^s to 1e-12.
    """
    K, n, c, d, lam = 3, 4, 0.4, 0.1, 1e-2
    z = np.array([0, 0, 0, 1, 1, 1, 1, 2, 0, 2, 2, 2])
    y = np.repeat(np.arange(K), n)
    C = theory.counts_from_labels(y, z, K) / n
    rng = np.random.default_rng(5)
    T = rng.dirichlet(np.ones(K), size=(K, K))  # T[k, l] sums to 1 over its last axis
    Y = T[y, z].T  # (K, N) per-instance targets
    A = brute_operator(K, n, c, d, lam)
    for t in (0, 1, 3):
        P = 1.0 / K + (Y - 1.0 / K) @ np.linalg.matrix_power(A, t + 1)
        assert np.allclose(theory.outputs_for_targets(K, n, c, d, lam, C, T, t)[y, z].T, P, rtol=0, atol=1e-12)


def test_fresh_logits_overall_tolerance():
    """``overall`` must equal the mean of class_mean's rows to 1e-12 (absolute): 1e-13 off is accepted, 1e-9 is not."""
    o = C3.mean(axis=0)
    theory.fresh_logits(*K3.values(), C3, o + 1e-13, 0)
    with raises_naming("overall", "(3,)"):
        theory.fresh_logits(*K3.values(), C3, o + np.array([1e-9, 0, 0]), 0)


def test_margin_terms_overall_mean_is_a_distribution():
    """The returned class means and overall mean are target averages: each sums to exactly 1 over classes, and the
    overall mean is the mean of the class means."""
    K, n, c, d, lam = 4, 4, 0.4, 0.1, 1e-3
    counts = np.array([[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 3, 1], [0, 0, 1, 3]])
    _, _, (m, o) = margin_terms(K, n, c, d, lam, counts / n)
    for k in range(K):
        assert sum(m[k]) == 1
    assert sum(o) == 1
    assert all(o[j] == sum(m[k][j] for k in range(K)) / K for j in range(K))
