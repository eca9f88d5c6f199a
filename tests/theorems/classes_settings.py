"""Gaussian-class settings shared by the tests of theory.finite_dim_classes and theory.finite_dim_classes_pll."""

from __future__ import annotations

import numpy as np


def mixture_means(K, c, d, dims):
    """The mixture's class means sqrt(d) e_0 + sqrt(c - d) e_k in ``dims`` coordinates (K x dims)."""
    return np.sqrt(d) * np.eye(dims)[0][None, :] + np.sqrt(c - d) * np.eye(dims)[1:K + 1]


def noisy_counts(K, n, eta):
    """Exact symmetric label counts: round(n eta / (K - 1)) instances of each class given each wrong label."""
    off = round(n * eta / (K - 1))
    counts = np.full((K, K), off)
    np.fill_diagonal(counts, n - off * (K - 1))
    return counts


def gram_draws(means, sigma, n, counts, reps, rng, per_test=100):
    """Own sampler of Gaussian classes x = mu_k + xi, xi ~ N(0, sigma): returns (y, y_test, Y, draws) with the true
    training and test classes, the centred one-hot given labels Y = e_l - 1/K (N x K, class-major, ``counts``) and
    an iterator over ``reps`` draws of (ev, U, cross): the training Gram's eigenvalues (clipped at 0) and
    eigenvectors, and U^T X X_test^T (per_test test points per class)."""
    K, D = means.shape
    L = np.linalg.cholesky(sigma)
    y = np.repeat(np.arange(K), n)
    given = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    y_test = np.repeat(np.arange(K), per_test)
    Y = np.eye(K)[given] - 1.0 / K

    def draws():
        for _ in range(reps):
            X = means[y] + rng.standard_normal((K * n, D)) @ L.T
            Xt = means[y_test] + rng.standard_normal((K * per_test, D)) @ L.T
            ev, U = np.linalg.eigh(X @ X.T)
            yield np.clip(ev, 0.0, None), U, U.T @ (X @ Xt.T)

    return y, y_test, Y, draws()
