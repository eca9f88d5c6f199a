"""Closed-form predictions of the linearised model on the block model (step (d)).

An *instance type* is a pair (true class k, given label l). Under the block
model every training instance of a type has the same output, so all results
are K x K x K arrays: ``out[k, l]`` is the output vector of a class-k
instance given label l. Types that do not occur (share ``C[k, l] == 0``)
are still filled in (the formula is defined) but carry no weight.

Label shares ``C`` are the rows of the empirical corruption matrix: ``C[k, l]``
is the share of class-k training instances given label l (each class has n
instances). For the idealised population, ``C`` is the corruption matrix itself.

The expressions are lambdified from :mod:`theory.symbolic`; the sign decisions
(:func:`margin_terms`) are made in exact arithmetic by :mod:`theory.rational`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ._generated import fresh_logits_arith, margin_coefficients_arith, type_score_arith, type_score_np
from .rational import rational, rational_matrix
from .validate import check_block_correlations, check_corruption_matrix, check_int, check_positive, check_rounds
from .block_model import filters, filters_exact

__all__ = [
    "type_outputs",
    "outputs_for_targets",
    "instance_outputs",
    "one_hot_type_targets",
    "margin_terms",
    "fresh_logits",
    "fresh_margin_sign",
    "clustering_ratio",
]

# pure-arithmetic twin of the type score: exact on Fractions (pass K as a Fraction so that 1/K stays exact)
score_exact = type_score_arith


def one_hot_type_targets(K: int) -> np.ndarray:
    """targets[k, l] = e_l: the given label of a type (k, l) as a one-hot vector."""
    return _one_hot_type_targets(check_int("K", K, minimum=2))


def _one_hot_type_targets(K: int) -> np.ndarray:
    T = np.zeros((K, K, K))
    T[:, np.arange(K), np.arange(K)] = 1.0
    return T


def outputs_for_targets(K, n, c, d, lam, C, targets, t: int) -> np.ndarray:
    """Linearised outputs after round t when round 0's targets are given per type.

    p = 1/K + alpha^s (t_i - tbar_k) + beta^s (tbar_k - tbar) + g^s (tbar - 1/K)
    with s = t + 1 fits, t_i the type's target, tbar_k = sum_l C[k, l] t_(k,l) the
    class mean and tbar the mean over classes. Returns (K, K, K).
    """
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    fits = check_rounds("t", t) + 1
    alpha, beta, g = filters(K, n, c, d, lam)
    T = np.asarray(targets, dtype=np.float64)
    if T.shape != (K, K, K):
        raise ValueError(f"targets has shape {T.shape}, must be ({K}, {K}, {K})")
    class_mean = (C[:, :, None] * T).sum(axis=1)  # tbar_k[j] = sum_l C[k, l] T[k, l, j]
    overall = class_mean.mean(axis=0)
    # (K, K, K) float64: the closed form always contains the type's own target T
    return type_score_np(alpha, beta, g, fits, T, class_mean[:, None, :], overall[None, None, :], K)


def type_outputs(K: int, n: int, c: float, d: float, lam: float, C, t: int) -> np.ndarray:
    """Linearised output of every instance type after round t (teacher = round 0, t + 1 fits).

    ``out[k, l] = U + alpha^s (e_l - C_k) + beta^s (C_k - Cbar) + g^s (Cbar - U)``,
    s = t + 1, C_k = row k of the label shares and Cbar their mean over
    classes (the overall given-label distribution). The own label's weight
    decays like (alpha/beta)^s against the class average; the last term
    vanishes when given labels are balanced (Cbar = U).
    """
    t = check_rounds("t", t)
    K = check_int("K", K, minimum=2)
    return outputs_for_targets(K, n, c, d, lam, C, _one_hot_type_targets(K), t)


def instance_outputs(K: int, n: int, c: float, d: float, lam: float, given_labels, t: int) -> np.ndarray:
    """Closed-form outputs (K x N) for an explicit label assignment (instances class-major).

    Equal to (Y - U) A^(t+1) + U computed with explicit matrices, which the
    tests check; here it is assembled from :func:`type_outputs`.
    """
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    z = np.asarray(given_labels)
    if z.shape != (K * n,):
        raise ValueError(f"given_labels has shape {z.shape}, must be ({K * n},) (class-major)")
    if z.min() < 0 or z.max() >= K:
        raise ValueError(f"given_labels has values in [{z.min()}, {z.max()}], must be in [0, {K - 1}]")
    y = np.repeat(np.arange(K), n)
    counts = np.zeros((K, K))
    np.add.at(counts, (y, z), 1.0)
    out = type_outputs(K, n, c, d, lam, counts / n, t)
    return out[y, z].T


def margin_terms(K, n, c, d, lam, C, targets=None, winner=None):
    """Exact margins of every present type as sums of three exponentials in s.

    For a type (k, l) and a class j != w (w = the true class k, or the fixed
    class ``winner`` when given), the output difference after s fits is
    ``ca * alpha^s + cb * beta^s + cg * g^s`` with coefficients
    (lambdified from :func:`theory.symbolic.derive_margin_coefficients`)

        ca = (t_w - t_j) - (m_w - m_j), cb = (m_w - m_j) - (o_w - o_j), cg = o_w - o_j

    (t: the type's target, m: its class mean, o: the overall mean). Returns
    (bases, terms) with bases = (alpha, beta, g) as Fractions and terms a dict
    mapping (k, l) to a list over j of coefficient triples (Fractions).
    ``targets`` (K, K, K) defaults to the one-hot given labels.
    """
    K = check_int("K", K, minimum=2)
    C = check_corruption_matrix(C, K)
    if targets is not None:
        _check_targets(targets, K)
    if winner is not None:
        winner = check_int("winner", winner, minimum=0, maximum=K - 1)
    bases = filters_exact(K, n, c, d, lam)
    Cq = rational_matrix(C)
    if targets is None:
        Tq = [[[Fraction(int(j == l)) for j in range(K)] for l in range(K)] for _ in range(K)]
    else:
        Tq = [[[rational(v) for v in targets[k][l]] for l in range(K)] for k in range(K)]
    # sums of K >= 2 Fractions: Fractions
    m = [[sum(Cq[k][l] * Tq[k][l][j] for l in range(K)) for j in range(K)] for k in range(K)]
    o = [sum(m[k][j] for k in range(K)) / K for j in range(K)]
    terms = {}
    for k in range(K):
        w = k if winner is None else winner
        for l in range(K):
            if Cq[k][l] == 0:
                continue
            tt = Tq[k][l]
            terms[(k, l)] = [
                tuple(margin_coefficients_arith(tt[w], tt[j], m[k][w], m[k][j], o[w], o[j]))
                for j in range(K)
                if j != w
            ]
    return bases, terms, (m, o)


def _check_targets(targets, K):
    """Per-type targets (K, K, K) of finite reals (floats or Fractions); the values are read by the caller."""
    try:
        T = np.asarray(targets, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"targets == {targets!r}, must be a ({K}, {K}, {K}) array of real numbers") from None
    if T.shape != (K, K, K):
        raise ValueError(f"targets has shape {T.shape}, must be ({K}, {K}, {K})")
    if not np.all(np.isfinite(T)):
        raise ValueError("targets has non-finite entries, must be finite")


def _check_overall(overall, class_mean, K):
    """``overall`` must be the mean of the rows of (the validated float) ``class_mean``."""
    overall = np.asarray(overall)  # floats or exact Fractions: only compared and evaluated by the caller
    if overall.shape != (K,) or not np.allclose(overall, class_mean.mean(axis=0), rtol=0, atol=1e-12):
        raise ValueError(f"overall has shape {overall.shape} or values not the mean of class_mean's rows, must be ({K},) and equal to it")
    return overall


def fresh_logits(K, n, c, d, lam, class_mean, overall, t: int) -> np.ndarray:
    """N lambda times the logits of a fresh sample of each class after round t (t + 1 fits; K x K, float).

    Row k: a fresh class-k sample (correlation c with its class, d with the
    rest). Only class sums of the residual enter, so the within-class filter
    alpha does not appear: this is the population-accuracy side of the paper's claim.
    """
    alpha, beta, g = filters(K, n, c, d, lam)
    fits = check_rounds("t", t) + 1
    class_mean = check_corruption_matrix(class_mean, K, name="class_mean")
    overall = _check_overall(overall, class_mean, K)
    out = np.empty((K, K))
    for k in range(K):
        for j in range(K):
            # logit_j = (c - d) R_k[j] + d R_all[j]; R_k depends on class k's mean label share
            out[k, j] = float(
                fresh_logits_arith(beta, g, class_mean[k][j], overall[j], c, d, n, K, fits)
            )
    return out


def fresh_margin_sign(K, n, c, d, lam, class_mean, overall, t: int, k: int, j: int) -> int:
    """Exact sign of logit_k - logit_j for a fresh class-k sample after round t (s = t + 1 fits).

    As a function of s it is (c - d) n (1 - beta) beta^(s-1) [(m_kk - m_kj) - (o_k - o_j)]
    + [(c - d) n + d N] (1 - g) g^(s-1) (o_k - o_j), evaluated exactly. ``class_mean`` (K x K label
    shares, floats or Fractions) and ``overall`` (the mean of its rows) are read exactly; k, j in 0..K-1.
    """
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    check_block_correlations(K, n, c, d)
    check_positive("lam", lam)
    _check_overall(overall, check_corruption_matrix(class_mean, K, name="class_mean"), K)
    t = check_rounds("t", t)
    k = check_int("k", k, minimum=0, maximum=K - 1)
    j = check_int("j", j, minimum=0, maximum=K - 1)
    return _fresh_margin_sign(K, n, c, d, lam, class_mean, overall, t, k, j)


def _fresh_margin_sign(K, n, c, d, lam, class_mean, overall, t: int, k: int, j: int) -> int:
    """:func:`fresh_margin_sign` without validating its input (callers in theory/ pass validated values)."""
    fits = t + 1
    _, beta, g = filters_exact(K, n, c, d, lam)
    cq, dq = rational(c), rational(d)
    mk = [rational(v) for v in class_mean[k]]
    oq = [rational(v) for v in overall]
    val = fresh_logits_arith(beta, g, mk[k], oq[k], cq, dq, n, K, fits) - fresh_logits_arith(beta, g, mk[j], oq[j], cq, dq, n, K, fits)
    return (val > 0) - (val < 0)


def clustering_ratio(K: int, n: int, c: float, d: float, lam: float, t: int) -> float:
    """(alpha/beta)^(t+1): how much of an instance's own-label deviation survives round t, relative to its class mean's.

    The within-class spread of the outputs (deviations y_i - ybar_k) is scaled
    by alpha^s and the between-class spread (ybar_k - ybar) by beta^s, so their
    ratio shrinks like (alpha/beta)^s: predictions cluster by class (claim P2).
    """
    t = check_rounds("t", t)
    alpha, beta, _ = filters(K, n, c, d, lam)
    return (alpha / beta) ** (t + 1)
