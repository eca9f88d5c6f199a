"""Feature models for the simulations.

* :func:`block_gram` -- the exact class-wise correlation (block) model
  ``G = (1-c) I + (c-d) blockdiag(1 1^T) + d 1 1^T`` (class-major; ``theory.block_gram``).
* :func:`sample_gmm` -- a Gaussian mixture whose expected Gram matrix is the
  block model: ``x = sqrt(d) u_0 + sqrt(c-d) u_k + xi`` with ``u_0..u_K`` the
  first K+1 coordinate vectors and ``xi ~ N(0, (1-c)/D I_D)`` in D further
  coordinates. ``E <x_i, x_j>`` is ``1`` on the diagonal, ``c`` within a class and
  ``d`` between classes; the off-diagonal fluctuations have standard deviation
  ``(1-c)/sqrt(D)`` and the diagonal ones ``(1-c) sqrt(2/D)``.
* :func:`sample_gmm_gram` -- the same mixture's training Gram matrix and its
  cross-Gram with fresh points, sampled directly at a cost that does not grow
  with D (Bartlett decomposition of the Wishart part for D >= N).
* :func:`perturbed_gram` -- a *valid* Gram matrix (symmetric, positive
  semidefinite, unit diagonal) near the block model whose off-diagonal
  fluctuations match the paper's perturbed matrix in size.
* :func:`paper_perturbed_matrix` -- the paper's own construction (block model plus
  i.i.d. uniform(-0.05, 0.05) entries, diagonal reset to 1), which is neither
  symmetric nor positive semidefinite; :func:`gram_report` documents that.
* :func:`load_digits_data` -- scikit-learn's bundled digits (no download) with a
  fixed balanced train/test split and superclasses from complete-linkage
  clustering of class-mean correlations.

Layout: features ``X`` are (N, D) with rows = instances; block-model and mixture
instances are class-major (instance ``i`` is in class ``i // n``).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from dataclasses import dataclass, field

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from theory.block_model import block_gram
from theory.validate import check_block_correlations, check_generator, check_int, check_positive

__all__ = [
    "PAPER",
    "PAPER_HALF_WIDTH",
    "PAPER_OFFDIAG_STD",
    "block_gram",
    "class_major_labels",
    "check_gmm_params",
    "sample_gmm",
    "GmmGram",
    "sample_gmm_gram",
    "gmm_offdiag_std",
    "perturbed_dim",
    "perturbed_features",
    "perturbed_gram",
    "paper_perturbed_matrix",
    "GramReport",
    "gram_report",
    "DigitsData",
    "DIGITS_TRAIN_PER_CLASS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_CUT_FRACTION",
    "load_digits_data",
    "class_mean_superclasses",
]

# The paper's perturbation: i.i.d. uniform(-0.05, 0.05) entries; its standard
# deviation is (2 * 0.05) / sqrt(12).
PAPER_HALF_WIDTH = 0.05
PAPER_OFFDIAG_STD = 2 * PAPER_HALF_WIDTH / math.sqrt(12.0)


# The paper's numerical setting: block model K = 4 classes, n = 500 per class, c = 0.4, d = 0.1, lambda = 1e-5.
PAPER = MappingProxyType({"K": 4, "n": 500, "c": 0.4, "d": 0.1, "lam": 1e-5})


def _check_K_n(K, n) -> tuple[int, int]:
    return check_int("K", K, minimum=2), check_int("n", n, minimum=1)


def class_major_labels(K: int, n: int) -> np.ndarray:
    """True labels of the class-major ordering: ``[0]*n + [1]*n + ... + [K-1]*n``."""
    K, n = _check_K_n(K, n)
    return np.repeat(np.arange(K), n)


def check_gmm_params(K, n, c, d, D) -> tuple[int, int, float, float, int]:
    """Validate the mixture's parameters: 0 <= d < c < 1 and an integer D >= 1."""
    K, n = _check_K_n(K, n)
    c, d = check_block_correlations(K, n, c, d)
    if d < 0:
        raise ValueError(f"d == {d}, must be >= 0 for the Gaussian mixture (d is the squared length of the shared mean)")
    D = check_int("D", D, minimum=1)
    return K, n, c, d, D


def sample_gmm(K: int, n: int, c: float, d: float, D: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples per class from the mixture that realises the block model.

    Returns ``X`` of shape (K n, K + 1 + D) and class-major labels ``y``.
    Columns 0..K hold the means (``sqrt(d)`` in column 0, ``sqrt(c - d)`` in
    column ``k + 1`` for class k); the last D columns hold the noise
    ``xi ~ N(0, (1-c)/D I_D)``. Fresh samples from the same mixture: call again
    (with the same K, c, d, D) with the number of fresh samples per class.
    """
    K, n, c, d, D = check_gmm_params(K, n, c, d, D)
    rng = check_generator("rng", rng)
    y = np.repeat(np.arange(K), n)
    X = np.empty((K * n, K + 1 + D))
    X[:, : K + 1] = 0.0
    X[:, 0] = math.sqrt(d)
    X[np.arange(K * n), y + 1] = math.sqrt(c - d)
    X[:, K + 1 :] = rng.standard_normal((K * n, D)) * math.sqrt((1.0 - c) / D)
    return X, y


@dataclass(frozen=True)
class GmmGram:
    """Training Gram matrix and train-fresh cross-Gram of one mixture sample (:func:`sample_gmm_gram`).

    ``G`` (N, N) is exactly symmetric; ``cross`` (N, M) holds ``<x_i, x_fresh_m>``
    (shape (N, 0) without fresh points), the argument of ``GramFit.logits``;
    labels are class-major; ``method`` is "wishart" (Bartlett, D >= N) or
    "explicit" (features drawn, D < N).
    """

    G: np.ndarray
    cross: np.ndarray
    y: np.ndarray
    y_fresh: np.ndarray
    D: int
    method: str


def sample_gmm_gram(
    K: int, n: int, c: float, d: float, D: int, rng: np.random.Generator, fresh_per_class: int = 0
) -> GmmGram:
    """Gram matrices of the mixture of :func:`sample_gmm`, without forming D-dimensional features.

    With ``x = m_k + xi`` (``m_k`` the class mean, ``xi ~ N(0, (1-c)/D I_D)`` in
    coordinates orthogonal to the means) the Gram matrix of the N = K n
    training points and M = K ``fresh_per_class`` fresh points is
    ``d + (c - d) [same class] + (1-c)/D Z Z^T`` with ``Z`` (N + M, D) i.i.d.
    standard normal. Returned: the training block ``G`` and the train-fresh
    block ``cross`` (the fresh-fresh block is never needed).

    Method "wishart" (D >= N), exact in distribution: write the training rows
    ``Z_t = L Q^T`` (``Q`` (D, N) orthonormal, ``L`` lower triangular). By
    Bartlett's decomposition ``L`` has independent entries, ``L_ii = chi(D - i)``
    (i = 0..N-1) and standard normal entries below the diagonal, so
    ``Z_t Z_t^T = L L^T`` is Wishart(N, D, I). Reversing the order of the rows
    and columns (a permutation, which leaves Wishart(N, D, I) unchanged) makes
    the factor upper triangular, ``U_ii = chi(D - (N-1-i))``; the code uses
    that form (LAPACK ``dlauum`` forms ``U U^T`` in N^3/3 flops). Given
    ``Z_t = U Q^T``, the fresh rows' coordinates ``Z_f Q`` are (M, N) i.i.d.
    standard normal (rotation invariance, independence), so
    ``Z_t Z_f^T = U (Z_f Q)^T`` (BLAS ``dtrmm``). Cost O(N^3 / 3 + N^2 M),
    independent of D. Method "explicit" (D < N): features
    drawn by :func:`sample_gmm` (training, then fresh), cost O((N + M) N D).

    ``rng`` is the one source of randomness (same state -> same matrices). Draw
    order: training part, then fresh part.
    """
    import scipy.linalg.blas
    import scipy.linalg.lapack

    K, n, c, d, D = check_gmm_params(K, n, c, d, D)
    fresh_per_class = check_int("fresh_per_class", fresh_per_class, minimum=0)
    rng = check_generator("rng", rng)
    N, M = K * n, K * fresh_per_class
    y = np.repeat(np.arange(K), n)
    y_fresh = np.repeat(np.arange(K), fresh_per_class)
    if D >= N:
        method = "wishart"
        # Upper-triangular Bartlett factor (the lower one with rows and columns reversed,
        # which leaves the identity-scale Wishart law unchanged): U_ii = chi(D - (N-1-i)).
        U = np.zeros((N, N), order="F")
        rows, cols = np.triu_indices(N, 1)
        U[np.arange(N), np.arange(N)] = np.sqrt(rng.chisquare(D - np.arange(N - 1, -1, -1, dtype=np.float64)))
        U[rows, cols] = rng.standard_normal(rows.size)
        noise, info = scipy.linalg.lapack.dlauum(U, lower=0)  # U U^T (upper triangle), N^3/3 flops
        if info != 0:  # pragma: no cover - only for invalid arguments
            raise RuntimeError(f"dlauum failed with info == {info}")
        noise = np.triu(noise) + np.triu(noise, 1).T
        Zc = rng.standard_normal((M, N))
        noise_cross = scipy.linalg.blas.dtrmm(1.0, U, np.asfortranarray(Zc.T)) if M else np.zeros((N, 0))
        scale = (1.0 - c) / D
        G = _mixture_mean(y, y, c, d) + scale * noise
        cross = _mixture_mean(y, y_fresh, c, d) + scale * noise_cross
    else:
        method = "explicit"
        X, _ = sample_gmm(K, n, c, d, D, rng)
        G = X @ X.T
        if M:
            X_fresh, _ = sample_gmm(K, fresh_per_class, c, d, D, rng)
            cross = X @ X_fresh.T
        else:
            cross = np.zeros((N, 0))
    G = 0.5 * (G + G.T)  # exactly symmetric (a + b == b + a in floating point)
    return GmmGram(G=G, cross=np.ascontiguousarray(cross), y=y, y_fresh=y_fresh, D=D, method=method)


def _mixture_mean(y_rows, y_cols, c, d) -> np.ndarray:
    """Mean part of the mixture Gram, d + (c - d) [same class] (equal to <m_k, m_l>)."""
    return np.where(y_rows[:, None] == y_cols[None, :], c, d).astype(np.float64)


def gmm_offdiag_std(c: float, D: int) -> float:
    """Standard deviation of an off-diagonal entry of the (unnormalised) mixture Gram: (1-c)/sqrt(D)."""
    return (1.0 - c) / math.sqrt(D)


def _mean_sq_offdiag(K: int, n: int, c: float, d: float) -> float:
    """Mean of the squared off-diagonal block-model entries."""
    N = K * n
    within = K * n * (n - 1)
    between = N * (N - n)
    return (within * c * c + between * d * d) / (N * (N - 1))


def perturbed_dim(K: int, n: int, c: float, d: float, target_std: float = PAPER_OFFDIAG_STD) -> int:
    """Noise dimension D at which the row-normalised mixture Gram has off-diagonal std ``target_std``.

    To first order in 1/D, normalising rows multiplies ``G_ij`` by
    ``1 - (e_i + e_j)/2`` with ``e_i = |x_i|^2 - 1`` of variance ``2 (1-c)^2 / D``,
    which adds ``G_ij^2 (1-c)^2 / D`` to the variance ``(1-c)^2 / D`` of the
    unnormalised entry. Matching the mean over off-diagonal entries gives
    ``D = (1-c)^2 (1 + mean G_ij^2) / target_std^2`` (452.5 -> 452 for K=4,
    n=500, c=0.4, d=0.1; 432 without the normalisation correction).
    """
    K, n = _check_K_n(K, n)
    c, d = check_block_correlations(K, n, c, d)
    target_std = check_positive("target_std", target_std)
    m2 = _mean_sq_offdiag(K, n, c, d)
    return max(1, int(round((1.0 - c) ** 2 * (1.0 + m2) / target_std**2)))


def perturbed_features(
    K: int, n: int, c: float, d: float, rng: np.random.Generator, D: int | None = None
) -> np.ndarray:
    """Row-normalised mixture features whose Gram is :func:`perturbed_gram` (shape (K n, K + 1 + D))."""
    K, n = _check_K_n(K, n)
    rng = check_generator("rng", rng)
    if D is None:
        D = perturbed_dim(K, n, c, d)
    X, _ = sample_gmm(K, n, c, d, D, rng)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def perturbed_gram(K: int, n: int, c: float, d: float, rng: np.random.Generator, D: int | None = None) -> np.ndarray:
    """A valid Gram matrix near the block model with the paper's fluctuation size.

    Construction: draw ``n`` samples per class from :func:`sample_gmm` with noise
    dimension ``D`` (default :func:`perturbed_dim`, chosen so that the
    off-diagonal entries fluctuate with the standard deviation
    ``0.1 / sqrt(12) = 0.0289`` of the paper's uniform(-0.05, 0.05) entries),
    normalise every row to unit norm, and return ``X X^T``. The result is
    symmetric, positive semidefinite (a Gram matrix) and has unit diagonal;
    ``E G`` is the block model up to O(1/D) from the normalisation.

    Note: its rank is at most ``K + 1 + D``, so with ``D < N`` most within-class
    directions have eigenvalue 0 rather than ``1 - c``. Any symmetric matrix with
    i.i.d.-size fluctuations 0.0289 on N = 2000 rows has a noise spectrum of
    radius about ``2 * 0.0289 * sqrt(N) = 2.6`` (semicircle), which swamps the
    block model's within-class eigenvalue ``1 - c = 0.6``: fluctuations of this
    size cannot leave the within-class spectrum near the block model's.
    """
    X = perturbed_features(K, n, c, d, rng, D)
    G = X @ X.T
    G = 0.5 * (G + G.T)  # exact symmetry (X @ X.T is symmetric up to BLAS round-off)
    np.fill_diagonal(G, 1.0)  # already 1 up to round-off
    return G


def paper_perturbed_matrix(K: int, n: int, c: float, d: float, rng: np.random.Generator) -> np.ndarray:
    """The paper's perturbed correlation matrix: block model + i.i.d. uniform(-0.05, 0.05), diagonal reset to 1.

    Every entry (including both triangles independently) gets its own draw, as
    in the paper's code, so the matrix is not symmetric; it is not positive
    semidefinite either for N in the hundreds or more (see :func:`gram_report`).
    """
    G = block_gram(K, n, c, d)
    G = G + rng.uniform(-PAPER_HALF_WIDTH, PAPER_HALF_WIDTH, size=G.shape)
    np.fill_diagonal(G, 1.0)
    return G


@dataclass(frozen=True)
class GramReport:
    """Whether a square matrix is a Gram matrix.

    ``min_eigenvalue`` is that of the symmetric part ``(M + M^T)/2`` (a real
    matrix M has ``x^T M x >= 0`` for all x iff its symmetric part is PSD).
    """

    shape: tuple[int, int]
    max_asymmetry: float  # max |M - M^T|
    symmetric: bool
    min_eigenvalue: float
    max_eigenvalue: float
    psd: bool
    unit_diagonal: bool
    is_gram: bool  # symmetric and PSD


def gram_report(M, rtol: float = 1e-10) -> GramReport:
    """Symmetry, extreme eigenvalues of the symmetric part and the diagonal of ``M``.

    Tolerances: symmetric if ``max|M - M^T| <= rtol * max|M|``; PSD if the
    smallest eigenvalue of the symmetric part is ``>= -rtol * N * max|M|``
    (eigenvalue round-off of float64 eigh grows like N eps ||M||).
    """
    import scipy.sparse.linalg
    import scipy.linalg

    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M has shape {M.shape}, must be square")
    scale = max(float(np.max(np.abs(M))), 1e-300)
    asym = float(np.max(np.abs(M - M.T)))
    Ms = 0.5 * (M + M.T)
    # Only the extreme eigenvalues are needed: LAPACK's evr for the smallest (a few times
    # faster than a full eigvalsh at N = 2000), Lanczos for the largest.
    lo = float(scipy.linalg.eigh(Ms, eigvals_only=True, subset_by_index=[0, 0])[0])
    if M.shape[0] > 2:
        hi = float(scipy.sparse.linalg.eigsh(Ms, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0])
    else:
        hi = float(np.linalg.eigvalsh(Ms)[-1])
    ev = (lo, hi)
    symmetric = asym <= rtol * scale
    psd = bool(ev[0] >= -rtol * M.shape[0] * scale)
    unit = bool(np.all(np.abs(np.diag(M) - 1.0) <= 1e-12))
    return GramReport(
        shape=M.shape,
        max_asymmetry=asym,
        symmetric=bool(symmetric),
        min_eigenvalue=ev[0],
        max_eigenvalue=ev[1],
        psd=psd,
        unit_diagonal=unit,
        is_gram=bool(symmetric and psd),
    )


# ----------------------------------------------------------------------------- digits

DIGITS_TRAIN_PER_CLASS = 120  # of 174..183 per class; 1200 train, 597 test (ratio ~ 2/3)
DIGITS_SPLIT_SEED = 0
DIGITS_CUT_FRACTION = 0.8


@dataclass(frozen=True)
class DigitsData:
    """Digits features (centred by the training mean, rows normalised to unit norm).

    The training set is class-major (``n`` instances of class 0, then class 1, ...).
    """

    X_train: np.ndarray  # (K n, 64)
    y_train: np.ndarray  # (K n,)
    X_test: np.ndarray  # (M, 64)
    y_test: np.ndarray  # (M,)
    K: int
    n: int
    groups: list[list[int]]  # superclasses, each sorted, ordered by smallest member
    merge_distances: np.ndarray = field(repr=False)  # complete-linkage merge heights
    cut: float = 0.0  # DIGITS_CUT_FRACTION * largest merge distance
    split_seed: int = DIGITS_SPLIT_SEED


def class_mean_superclasses(X, y, K: int, cut_fraction: float = DIGITS_CUT_FRACTION):
    """Superclasses by complete-linkage clustering of ``1 - corr`` between class-mean features.

    The tree is cut at ``cut_fraction`` times the largest merge distance.
    Returns ``(groups, merge_distances, cut)``; groups may be singletons.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    means = np.stack([X[y == k].mean(axis=0) for k in range(K)])
    dist = 1.0 - np.corrcoef(means)
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    Z = linkage(squareform(dist, checks=False), method="complete")
    cut = cut_fraction * float(Z[:, 2].max())
    labels = fcluster(Z, t=cut, criterion="distance")
    groups = [sorted(int(k) for k in np.flatnonzero(labels == lab)) for lab in np.unique(labels)]
    groups.sort(key=lambda g: g[0])
    return groups, Z[:, 2].copy(), cut


def load_digits_data(train_per_class: int = DIGITS_TRAIN_PER_CLASS, split_seed: int = DIGITS_SPLIT_SEED) -> DigitsData:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes, no download).

    Split: for each class, ``train_per_class`` images chosen by
    ``np.random.default_rng(split_seed).permutation`` form the (balanced,
    stratified) training set, the rest (597 images for the defaults) the test
    set. The split is fixed: it does not depend on the simulation's seed.
    Features: pixel vectors centred by the training mean, then each row (train
    and test) scaled to unit norm, so the training Gram has unit diagonal.
    Superclasses: :func:`class_mean_superclasses` on the training features
    (for the defaults: [[0, 4, 6], [1, 2, 3, 5, 7, 8, 9]]).
    """
    from sklearn.datasets import load_digits

    train_per_class = check_int("train_per_class", train_per_class, minimum=1, maximum=174)
    split_seed = check_int("split_seed", split_seed, minimum=0)
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float64)
    K = int(y.max()) + 1
    split_rng = np.random.default_rng(split_seed)
    train_idx, test_idx = [], []
    for k in range(K):
        idx = split_rng.permutation(np.flatnonzero(y == k))
        train_idx.append(idx[:train_per_class])
        test_idx.append(idx[train_per_class:])
    train_idx = np.concatenate(train_idx)
    test_idx = np.sort(np.concatenate(test_idx))
    mean = X[train_idx].mean(axis=0)
    Z = X - mean
    Z /= np.linalg.norm(Z, axis=1, keepdims=True)
    X_train, y_train = Z[train_idx], y[train_idx]
    groups, merges, cut = class_mean_superclasses(X_train, y_train, K)
    return DigitsData(
        X_train=X_train,
        y_train=y_train.astype(np.int64),
        X_test=Z[test_idx],
        y_test=y[test_idx].astype(np.int64),
        K=K,
        n=train_per_class,
        groups=groups,
        merge_distances=merges,
        cut=cut,
        split_seed=split_seed,
    )
