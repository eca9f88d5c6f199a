"""Hypothesis strategies that generate only valid inputs, and brute-force twins of the theory.

The brute-force side builds explicit N x N matrices (block Gram, matrix powers
of A = G (G + K N lambda I)^-1) and takes the argmax over every instance; it
shares no code with theory/ beyond block_gram (itself checked against its
definition in test_p1).
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

# A float margin within this distance of 0 is a tie for the brute force. Exact
# ties in the theory show up in float64 as |margin| ~ 1e-16 (a few ulps of
# outputs of order 1/K after at most ~N^2 operations); real margins of the
# drawn problems are far larger (>= 1e-6 in practice, filtered below).
TIE_TOL = 1e-9


@st.composite
def block_params(draw, max_K=5, max_n=6, min_K=2, min_n=1, min_d=None):
    """(K, n, c, d, lam) with d < c < 1 and a positive semidefinite Gram matrix.

    c in [0.05, 0.95], d drawn below c (possibly negative down to the PSD
    limit), lam log-uniform in [1e-4, 1].
    """
    K = draw(st.integers(min_K, max_K))
    n = draw(st.integers(min_n, max_n))
    # c and d on a grid of 1e-4: keeps hypothesis away from d ~ 1e-300, where
    # beta and g agree to 300 digits and the exact analysis needs that many
    # (covered on its own in test_rational.py).
    c = draw(st.integers(500 if min_d is None else round(min_d * 10_000) + 300, 9500)) / 10_000
    d_min = -(1 - c + n * c) / (n * (K - 1))
    lo = math.ceil(max(d_min, -0.5 if min_d is None else min_d) * 10_000)
    hi = round((c - 0.02) * 10_000)
    d = draw(st.integers(lo, hi)) / 10_000 if lo < hi else lo / 10_000
    lam = 10 ** draw(st.floats(-4, 0))
    return K, n, c, d, lam


@st.composite
def label_counts(draw, K, n, balanced=False):
    """K x K counts, rows summing to n: counts[k, l] = class-k instances given label l.

    With ``balanced``, also columns sum to n (a sum of permutation matrices),
    i.e. the given labels are balanced.
    """
    if balanced:
        counts = np.zeros((K, K), dtype=np.int64)
        for _ in range(n):
            perm = draw(st.permutations(list(range(K))))
            counts[np.arange(K), perm] += 1
        return counts
    rows = []
    for _ in range(K):
        cuts = sorted(draw(st.lists(st.integers(0, n), min_size=K - 1, max_size=K - 1)))
        parts = np.diff([0, *cuts, n])
        rows.append(parts)
    return np.array(rows, dtype=np.int64)


@st.composite
def row_stochastic(draw, K):
    """A K x K row-stochastic matrix with entries on a grid of 1/8 (rows on the simplex)."""
    rows = []
    for _ in range(K):
        cuts = sorted(draw(st.lists(st.integers(0, 8), min_size=K - 1, max_size=K - 1)))
        rows.append(np.diff([0, *cuts, 8]) / 8)
    return np.array(rows)


def labels_from_counts(counts):
    """Given labels (class-major) realising the counts: class k's first counts[k,0] get label 0, ..."""
    K = counts.shape[0]
    return np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])


def explicit_block_gram(K, n, c, d):
    N = K * n
    G = np.full((N, N), d, dtype=np.float64)
    for k in range(K):
        G[k * n:(k + 1) * n, k * n:(k + 1) * n] = c
    np.fill_diagonal(G, 1.0)
    return G


def explicit_operator(G, K, lam):
    N = G.shape[0]
    return G @ np.linalg.inv(G + K * N * lam * np.eye(N))


def brute_outputs(K, n, c, d, lam, z, t):
    """U + (Y - U) A^(t+1) with explicit matrices (K x N)."""
    G = explicit_block_gram(K, n, c, d)
    A = explicit_operator(G, K, lam)
    Y = np.eye(K)[:, z]
    U = np.full_like(Y, 1.0 / K)
    return U + (Y - U) @ np.linalg.matrix_power(A, t + 1)


def brute_margins(P, y):
    """Per-instance margin: output of the true class minus the best other output."""
    N = P.shape[1]
    true = P[y, np.arange(N)]
    other = P.copy()
    other[y, np.arange(N)] = -np.inf
    return true - other.max(axis=0)


# ----------------------------------------------------------------------------
# Strategies aimed at the informative region
# ----------------------------------------------------------------------------
# A block problem is "informative" for P3 when its first perfect round lies in
# [1, max_round]: the teacher is wrong somewhere and SD fixes it within reach
# of the brute force. The closed-form threshold of the balanced case,
# s* = log((1 + Delta)/Delta) / log(beta/alpha), is inverted for lambda:
# beta/alpha = mu_c (mu_w + L) / (mu_w (mu_c + L)) with L = K N lambda is
# increasing in L from 1 to mu_c/mu_w, so a target ratio r in (1, mu_c/mu_w)
# gives L = mu_w mu_c (r - 1) / (mu_c - r mu_w).


def _eigs(K, n, c, d):
    return 1 - c, 1 - c + n * (c - d), 1 - c + n * (c - d) + K * n * d


def min_gap(counts):
    """Smallest C_kk - C_kl over present wrong labels (None without noise)."""
    K, n = counts.shape[0], counts[0].sum()
    gaps = [(counts[k, k] - counts[k, l]) / n for k in range(K) for l in range(K) if l != k and counts[k, l] > 0]
    return min(gaps) if gaps else None


def lam_for_ratio(K, n, c, d, r):
    """lambda with beta/alpha == r (requires 1 < r < mu_c/mu_w)."""
    mu_w, mu_c, _ = _eigs(K, n, c, d)
    L = mu_w * mu_c * (r - 1) / (mu_c - r * mu_w)
    return L / (K * K * n)


@st.composite
def noisy_counts(draw, K, n, balanced):
    """Label counts with label noise in at least one class and C_kk > C_kl for every wrong label l.

    Balanced: identity plus ``m`` random permutations (m <= (n - 1) // 2), so
    every off-diagonal count is at most m < n - m <= C_kk. Unbalanced: each
    class sends at most (n - 1) // 2 instances to random wrong labels.
    """
    limit = (n - 1) // 2
    counts = np.zeros((K, K), dtype=np.int64)
    if balanced:
        m = draw(st.integers(1, limit))
        counts[np.arange(K), np.arange(K)] += n - m
        for _ in range(m):
            perm = draw(st.permutations(list(range(K))))
            if all(perm[i] == i for i in range(K)):
                perm = perm[1:] + perm[:1]  # a cyclic shift: some instance is mislabelled
            counts[np.arange(K), perm] += 1
        return counts
    noisy_rows = draw(st.lists(st.integers(0, limit), min_size=K, max_size=K))
    if not any(noisy_rows):
        noisy_rows[draw(st.integers(0, K - 1))] = 1
    for k, r in enumerate(noisy_rows):
        counts[k, k] = n - r
        for _ in range(r):
            counts[k, draw(st.sampled_from([j for j in range(K) if j != k]))] += 1
    return counts


@st.composite
def p3_case(draw, max_K=4, max_n=6, max_round=60, balanced=True, generic_share=True):
    """(K, n, c, d, lam, counts, mode) aimed at a first perfect round in [1, max_round].

    mode: "aimed" (balanced threshold strictly inside (t, t + 1) for a drawn
    target round t), "near_tie" (threshold within 1e-6 of an integer: the
    margin nearly vanishes at that round), "generic" (old uniform draw, a
    minority). Unbalanced counts use the same lambda; their first round is
    then near the target, not at it.
    """
    modes = ["aimed", "aimed", "near_tie"] + (["generic"] if generic_share else [])
    mode = draw(st.sampled_from(modes))
    if mode == "generic":
        K, n, c, d, lam = draw(block_params(max_K=max_K, max_n=max_n))
        counts = draw(label_counts(K, n, balanced=balanced))
        return K, n, c, d, lam, counts, mode
    K = draw(st.integers(2, max_K))
    n = draw(st.integers(3, max_n))
    c = draw(st.integers(20, 90)) / 100
    d = draw(st.integers(0, round(c * 100) - 15)) / 100
    counts = draw(noisy_counts(K, n, balanced))
    delta = min_gap(counts)
    mu_w, mu_c, _ = _eigs(K, n, c, d)
    theta_min = math.log((1 + delta) / delta) / math.log(mu_c / mu_w)  # lambda -> infinity
    lo = max(1, math.ceil(theta_min + 1e-9))
    if lo > max_round:
        # unreachable within max_round for these correlations: move d down to 0 and c up
        c, d = 0.9, 0.0
        mu_w, mu_c, _ = _eigs(K, n, c, d)
        theta_min = math.log((1 + delta) / delta) / math.log(mu_c / mu_w)
        lo = max(1, math.ceil(theta_min + 1e-9))
    t = draw(st.integers(lo, max(lo, max_round)))
    if mode == "aimed":
        u = draw(st.floats(0.05, 0.95))
    else:
        u = draw(st.sampled_from([1e-7, 1 - 1e-7, 1e-9, 1 - 1e-9]))
    theta = max(t + 1 - u, theta_min * (1 + 1e-9) + 1e-12)
    r = ((1 + delta) / delta) ** (1 / theta)
    lam = lam_for_ratio(K, n, c, d, r)
    return K, n, c, d, lam, counts, mode


@st.composite
def noise_rate_near(draw, threshold):
    """A noise rate in [0, 1], half the time within 1e-3 of ``threshold`` (a third of those exactly on it)."""
    where = draw(st.sampled_from(["near", "at", "anywhere"]))
    if where == "anywhere":
        return draw(st.floats(0.0, 1.0))
    if where == "at":
        return threshold
    return min(1.0, max(0.0, threshold + draw(st.floats(-1e-3, 1e-3))))


@st.composite
def pll_case(draw, max_K=4, max_n=6):
    """(K, n, c, d, lam, counts, mode) for the PLL student, aimed at ties and at teachers that are wrong.

    * "first_tie": balanced labels and lambda chosen with beta/alpha == (1 + Delta)/Delta
      exactly (rational c, d, Delta), so for the worst noisy type the teacher's outputs
      for the true class and the given label tie for first place (checked exactly).
    * "second_tie": class rows with equal wrong-label counts (identity times a plus
      b on every wrong label), so the wrong classes of a clean instance tie for second.
    * "wrong_teacher": a P3 case whose first perfect round is >= 1 (the teacher errs).
    * "generic": the old uniform draw (unbalanced labels, any shares).
    """
    from fractions import Fraction

    from theory.rational import rational

    mode = draw(st.sampled_from(["wrong_teacher", "first_tie", "second_tie", "generic"]))
    if mode == "generic":
        K, n, c, d, lam = draw(block_params(max_K=max_K, max_n=max_n))
        return K, n, c, d, lam, draw(label_counts(K, n)), mode
    if mode == "wrong_teacher":
        K, n, c, d, lam, counts, _ = draw(p3_case(max_K=max_K, max_n=max_n, max_round=8, balanced=draw(st.booleans()), generic_share=False))
        return K, n, c, d, lam, counts, mode
    K = draw(st.integers(3 if mode == "second_tie" else 2, max_K))
    n = draw(st.integers(3, max_n))
    if mode == "second_tie":
        b = draw(st.integers(0, (n - 1) // K))
        counts = np.full((K, K), b, dtype=np.int64)
        np.fill_diagonal(counts, n - b * (K - 1))
        K_, n_, c, d, lam = draw(block_params(max_K=K, max_n=n, min_K=K, min_n=n))
        return K, n, c, d, lam, counts, mode
    # first_tie: exact rational problem
    counts = draw(noisy_counts(K, n, balanced=True))
    cq = Fraction(draw(st.integers(6, 18)), 20)
    dq = Fraction(draw(st.integers(0, int(cq * 20) - 3)), 20)
    delta = Fraction(min(int(counts[k, k] - counts[k, l]) for k in range(K) for l in range(K) if l != k and counts[k, l] > 0), n)
    r = (1 + delta) / delta
    mu_w, mu_c, _ = _eigs(K, n, cq, dq)
    if not r < mu_c / mu_w:
        cq, dq = Fraction(9, 10), Fraction(0)
        mu_w, mu_c, _ = _eigs(K, n, cq, dq)
    L = mu_w * mu_c * (r - 1) / (mu_c - r * mu_w)
    lam_q = L / (K * K * n)
    lam = float(lam_q)
    # the float must read back as the exact fraction (denominators stay small here)
    if not (r < mu_c / mu_w and lam > 0 and rational(lam) == lam_q and rational(float(cq)) == cq and rational(float(dq)) == dq):
        K_, n_, c, d, lam = draw(block_params(max_K=K, max_n=n, min_K=K, min_n=n))
        return K, n, c, d, lam, counts, "generic"
    return K, n, float(cq), float(dq), lam, counts, mode


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


def informative_share(strategy, classify, max_examples=None):
    """(informative, total): how many of the examples ``strategy`` yields under the active hypothesis profile
    ``classify`` calls non-trivial (with ``ci``, derandomised, the count is deterministic). ``max_examples``:
    draw that many instead, without the example database (a share of the strategy, not of one run's replays)."""
    from hypothesis import given, settings

    seen = []

    def body(case):
        seen.append(bool(classify(case)))

    run = given(strategy)(body)
    if max_examples is not None:
        run = settings(max_examples=max_examples, database=None)(run)
    run()
    return sum(seen), len(seen)


def raises_naming(name, *shown, exc=ValueError):
    """``pytest.raises`` for an error whose message names ``name`` and shows each of ``shown`` (the offending value,
    shape or bound), whatever the wording around them."""
    import re

    import pytest

    parts = [rf"(?=.*(?<![\w.]){re.escape(name)}(?!\w))"] + [rf"(?=.*{re.escape(s)})" for s in shown]
    return pytest.raises(exc, match="(?s)^" + "".join(parts))


# ------------------------------------------------------------------ references shared by several test files
def brute_operator(K, n, c, d, lam):
    """A = (G + K N lam I)^-1 G for the explicit block Gram matrix, plain numpy (no theory code)."""
    y = np.repeat(np.arange(K), n)
    G = np.where(y[:, None] == y[None, :], c, d)
    np.fill_diagonal(G, 1.0)
    N = K * n
    return np.linalg.solve(G + K * N * lam * np.eye(N), G)


def is_zero(expr) -> bool:
    """A sympy expression that simplifies to exactly 0."""
    import sympy as sp

    return sp.simplify(expr) == 0


def all_zero(value) -> bool:
    """Every entry of a sympy matrix, list or tuple (nested) simplifies to exactly 0."""
    import sympy as sp

    if isinstance(value, sp.MatrixBase):
        return all(is_zero(e) for e in value)
    if isinstance(value, (list, tuple)):
        return all(all_zero(v) for v in value)
    return is_zero(value)
