"""P2 Clustering: as rounds grow, training predictions cluster by class and depend less on the own label."""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import theory

from .strategies import block_params, explicit_block_gram, explicit_operator, label_counts, labels_from_counts

# The explicit matrix power carries an error ~N eps s f_max^s ||Y - U|| (each product
# adds a relative error ~N eps against the largest filter f_max; N <= 30, s <= 26:
# ~2e-13 f_max^s ||Y - U||). The within-class spread can be far smaller than that
# scale after a few rounds, so it is compared in absolute terms against
# 1e-10 f_max^s ||Y - U||.
ATOL_REL = 1e-10


def _spreads(D, K, n):
    """Within-class and between-class spreads (Frobenius) of output deviations D (K x N, class-major)."""
    cls = D.reshape(D.shape[0], K, n)
    means = cls.mean(axis=2, keepdims=True)
    within = np.sqrt(((cls - means) ** 2).sum())
    overall = means.mean(axis=1, keepdims=True)
    between = np.sqrt(((means - overall) ** 2).sum() * n)
    return within, between


@given(block_params(max_K=5, max_n=6, min_n=2), st.data(), st.integers(0, 25))
def test_within_over_between_shrinks_like_alpha_over_beta(params, data, t):
    """spread_within/spread_between after round t = (alpha/beta)^(t+1) times the same ratio of the labels themselves."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n))
    z = labels_from_counts(counts)
    Y = np.eye(K)[:, z]
    w0, b0 = _spreads(Y, K, n)
    # identical class rows (no class contrast) or no own-label deviation: the ratio is undefined or 0.
    # Such draws are rejected (hypothesis draws another), so every example checks the ratio.
    assume(not (np.all(counts == counts[0]) or np.all(counts.max(axis=1) == n)))
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    D = (Y - 1.0 / K) @ np.linalg.matrix_power(A, t + 1)  # deviations from U, computed directly
    w, b = _spreads(D, K, n)
    expected = theory.clustering_ratio(K, n, c, d, lam, t) * (w0 / b0)
    f_max = max(theory.filters(K, n, c, d, lam))
    assert abs(w - expected * b) <= ATOL_REL * f_max ** (t + 1) * np.linalg.norm(Y - 1.0 / K)
    # and the ratio decreases strictly with every round (alpha < beta)
    assert theory.clustering_ratio(K, n, c, d, lam, t + 1) < theory.clustering_ratio(K, n, c, d, lam, t)


@given(block_params(max_K=5, max_n=6), st.integers(0, 25))
def test_self_influence_decays(params, t):
    """An instance's weight on its own label, diag(A^s), is alpha^s (1 - 1/n) + beta^s (1/n - 1/N) + g^s/N and falls with s."""
    K, n, c, d, lam = params
    N = K * n
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    a, b, g = theory.filters(K, n, c, d, lam)
    s = t + 1
    own = np.diag(np.linalg.matrix_power(A, s))
    formula = a**s * (1 - 1 / n) + b**s * (1 / n - 1 / N) + g**s / N
    assert np.max(np.abs(own - formula)) <= 1e-10
    # relative to the weight on a same-class neighbour (n >= 2), the own weight's excess decays like alpha^s
    if n >= 2:
        neighbour = np.linalg.matrix_power(A, s)[0, 1]
        assert abs((own[0] - neighbour) - a**s) <= 1e-10
