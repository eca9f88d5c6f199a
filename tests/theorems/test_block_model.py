"""Contract of theory.block_model: the default round count and the tolerances of the Gram-matrix checks."""

from __future__ import annotations

import numpy as np

import theory

from .strategies import brute_operator, raises_naming


def test_spectral_operator_default_is_one_fit():
    """Without ``t`` the closed form is round 0 (one fit): the brute-force operator A = (G + K N lam I)^-1 G
    (entries O(1), condition number of G + K N lam I below 1e3: agreement to 1e-12)."""
    A = brute_operator(3, 2, 0.4, 0.1, 1e-2)
    assert np.allclose(theory.spectral_operator(3, 2, 0.4, 0.1, 1e-2), A, rtol=0, atol=1e-12)
    assert np.allclose(theory.spectral_operator(3, 2, 0.4, 0.1, 1e-2, 0), A, rtol=0, atol=1e-12)
    assert np.allclose(theory.spectral_operator(3, 2, 0.4, 0.1, 1e-2, 1), A @ A, rtol=0, atol=1e-12)


def test_psd_tolerance_boundary():
    """Smallest eigenvalue down to -1e-10 N max(1, max|G|) is round-off (accepted, inclusive); below, rejected.

    Diagonal matrices: eigvalsh returns the diagonal exactly, so the boundary is hit exactly.
    """
    N, top = 2, 4.0
    tol = 1e-10 * N * top
    theory.label_averaging_operator(np.diag([top, -tol]), 2, 1e-3)
    with raises_naming("G", "-8.00001e-10"):
        theory.label_averaging_operator(np.diag([top, -tol * (1 + 1e-6)]), 2, 1e-3)
    # entries below 1: the scale is max(1, max|G|) = 1
    theory.label_averaging_operator(np.diag([0.5, -2e-10]), 2, 1e-3)
    with raises_naming("G", "-3e-10"):
        theory.label_averaging_operator(np.diag([0.5, -3e-10]), 2, 1e-3)


def test_symmetry_tolerance_boundary():
    """Asymmetry up to 1e-12 max(1, max|G|) (absolute, no relative part) is accepted; 1.5e-12 at scale 1 is not."""
    theory.label_averaging_operator(np.array([[1.0, 0.5 + 5e-13], [0.5, 1.0]]), 2, 1e-3)
    with raises_naming("G", "symmetric"):
        theory.label_averaging_operator(np.array([[1.0, 0.5 + 1.5e-12], [0.5, 1.0]]), 2, 1e-3)


def test_operator_symmetry_tolerance_scales_with_entries():
    """Asymmetry up to 1e-12 times the largest entry is round-off: accepted for a Gram matrix with entries ~1e4."""
    X = np.arange(6.0).reshape(3, 2) * 40.0
    G = X @ X.T
    G[0, 1] += 1e-9  # 1e-13 relative to ||G|| ~ 1e4
    A = theory.label_averaging_operator(G, 2, 1e-3)
    assert A.shape == (3, 3)


def test_operator_rejects_non_psd():
    with raises_naming("G", "-1"):
        theory.label_averaging_operator(np.array([[1.0, 2.0], [2.0, 1.0]]), 2, 1e-3)
