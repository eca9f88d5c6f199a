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
    # (covered on its own in test_exact_arithmetic.py).
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
