"""The class-wise correlation (block) model and the label-averaging operator, numerically.

The numeric functions here are the twins of :mod:`theory.symbolic`'s block
spectrum that ``python -m theory.generate`` printed into :mod:`theory._generated`; the brute-force helpers (explicit N x N matrices) are
what the tests compare them with.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from ._generated import block_eigenvalues_np, filters_arith, filters_np
from .rational import rational
from .validate import check_block_correlations, check_int, check_positive, check_rounds

__all__ = [
    "block_eigenvalues",
    "filters",
    "filters_exact",
    "block_gram",
    "block_projectors",
    "label_averaging_operator",
    "spectral_operator",
]



def _check_block(K, n, c, d):
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    c, d = check_block_correlations(K, n, c, d)
    return K, n, c, d


def block_eigenvalues(K: int, n: int, c: float, d: float) -> tuple[float, float, float]:
    """Eigenvalues of the block Gram matrix G = (1-c) I + (c-d) blockdiag(1 1^T) + d 1 1^T.

    Returns (mu_within, mu_class, mu_const) = (1 - c, 1 - c + n (c - d),
    1 - c + n (c - d) + N d) with multiplicities N - K, K - 1 and 1:
    within-class contrasts, class contrasts and the constant direction.
    """
    K, n, c, d = _check_block(K, n, c, d)
    # the constant-direction eigenvalue may be a round-off below 0 at the PSD boundary (validated above)
    return tuple(max(float(v), 0.0) for v in block_eigenvalues_np(K, n, c, d))


def filters(K: int, n: int, c: float, d: float, lam: float) -> tuple[float, float, float]:
    """Spectral filters (alpha, beta, g) = mu / (mu + K N lambda) of the label-averaging operator.

    One fit multiplies the targets' within-class contrasts by alpha, their
    class contrasts by beta and their constant part by g; with d < c,
    alpha < beta, and beta <= g when d >= 0.
    """
    K, n, c, d = _check_block(K, n, c, d)
    lam = check_positive("lam", lam)
    return tuple(max(float(v), 0.0) for v in filters_np(K, n, c, d, lam))


def filters_exact(K: int, n: int, c, d, lam) -> tuple[Fraction, Fraction, Fraction]:
    """The same filters as exact fractions (inputs read by :func:`theory.rational.rational`)."""
    K, n, _, _ = _check_block(K, n, c, d)
    check_positive("lam", lam)
    return tuple(filters_arith(K, n, rational(c), rational(d), rational(lam)))


def block_gram(K: int, n: int, c: float, d: float) -> np.ndarray:
    """Explicit N x N block Gram matrix, instances in class-major order (i in class i // n)."""
    K, n, c, d = _check_block(K, n, c, d)
    cls = np.repeat(np.arange(K), n)
    G = np.where(cls[:, None] == cls[None, :], c, d)  # float64: c and d are validated floats
    np.fill_diagonal(G, 1.0)
    return G


def block_projectors(K: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenprojectors (I - B, B - J, J): within-class, class-contrast and constant directions."""
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    N = K * n
    cls = np.repeat(np.arange(K), n)
    B = (cls[:, None] == cls[None, :]) / n
    J = np.full((N, N), 1.0 / N)
    return np.eye(N) - B, B - J, J


def label_averaging_operator(G, K: int, lam: float) -> np.ndarray:
    """Brute force A = G (G + K N lambda I)^-1 for an explicit symmetric PSD Gram matrix G (N x N).

    Computed as a linear solve, (G + K N lambda I)^-1 G, which equals
    G (G + K N lambda I)^-1 because the two factors commute.
    """
    G = np.asarray(G, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] != G.shape[1]:
        raise ValueError(f"G has shape {G.shape}, must be square N x N")
    if not np.allclose(G, G.T, rtol=0, atol=1e-12 * max(1.0, np.abs(G).max())):
        raise ValueError("G is not symmetric, must be a Gram matrix (symmetric positive semidefinite)")
    K = check_int("K", K, minimum=2)
    lam = check_positive("lam", lam)
    N = len(G)
    # PSD: the smallest eigenvalue may be a round-off below 0 (eigvalsh's error ~N eps ||G||)
    lo = float(np.linalg.eigvalsh(G).min())
    if lo < -1e-10 * N * max(1.0, float(np.abs(G).max())):
        raise ValueError(f"G has smallest eigenvalue {lo:.6g}, must be positive semidefinite (a Gram matrix)")
    M = G + K * N * lam * np.eye(N)
    return np.linalg.solve(M, G)


def spectral_operator(K: int, n: int, c: float, d: float, lam: float, t: int = 0) -> np.ndarray:
    """A^s, s = t + 1 (the operator of rounds 0..t), from the closed form: alpha^s (I - B) + beta^s (B - J)
    + g^s J (explicit N x N)."""
    fits = check_rounds("t", t) + 1
    alpha, beta, g = filters(K, n, c, d, lam)
    Pw, Pc, P0 = block_projectors(K, n)
    return alpha**fits * Pw + beta**fits * Pc + g**fits * P0
