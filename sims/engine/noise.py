"""Given (possibly corrupted) labels drawn from a corruption matrix.

``C`` is any K x K row-stochastic matrix: ``C[k, j]`` is the share of class-k
instances given label j. Named models come from :mod:`theory.corruption`
(symmetric, asymmetric (cyclic), superclass). Two ways to draw labels:

* exact counts: class k (with ``n_k`` instances) gets exactly ``C[k, j] * n_k``
  instances labelled j, assigned to a uniformly random subset of the class; an
  error if some ``C[k, j] * n_k`` is not a whole number;
* sampled: each instance's label is drawn independently from row ``C[y_i]``.

Both are deterministic given ``rng``.
"""

from __future__ import annotations

import numpy as np

from theory import corruption as _corruption
from theory.validate import check_bool, check_corruption_matrix, check_fraction, check_generator, check_int, check_labels, check_label_counts

__all__ = ["NOISE_MODELS", "noise_matrix", "superclass_from_groups", "exact_counts", "expected_counts", "corrupt_labels", "label_counts",
           "labels_from_counts", "one_hot"]

NOISE_MODELS = _corruption.NOISE_MODELS

# Same tolerance as theory.corruption.exact_label_counts: float round-off in e.g. 0.3 * 10.
_WHOLE_TOL = 1e-9


def superclass_from_groups(K: int, eta: float, groups) -> np.ndarray:
    """Superclass noise for an arbitrary partition ``groups`` of range(K).

    Groups of two or more classes spread ``eta`` evenly over the other members
    (:func:`theory.corruption.superclass`, one group at a time); a singleton group (possible for
    clustered real data) keeps its labels: its row of C is the unit vector.
    """
    K = check_int("K", K, minimum=2)
    eta = check_fraction("eta", eta)
    try:
        flat = sorted(int(j) for g in groups for j in g)
    except (TypeError, ValueError):  # not a list of lists of class indices
        flat = None
    if flat != list(range(K)):
        raise ValueError(f"groups == {groups!r}, must partition range({K})")
    if all(len(g) >= 2 for g in groups):
        return _corruption.superclass(K, eta, groups=[list(g) for g in groups])
    C = np.eye(K)
    for g in groups:
        if len(g) >= 2:
            idx = np.asarray(g, dtype=np.int64)
            C[np.ix_(idx, idx)] = _corruption.superclass(len(g), eta, size=len(g))
    return C


def noise_matrix(noise: str, K: int, eta: float, superclass_size: int = 2, groups=None) -> np.ndarray:
    """The corruption matrix of a named model; ``groups`` (superclass only) overrides ``superclass_size``."""
    if noise not in NOISE_MODELS:
        raise ValueError(f"noise == {noise!r}, must be one of {', '.join(NOISE_MODELS)}")
    if noise == "superclass" and groups is not None:
        return superclass_from_groups(K, eta, groups)
    return _corruption.corruption_matrix(noise, K, eta, superclass_size)


def exact_counts(C, class_sizes) -> np.ndarray:
    """Integer (K, K) counts ``C[k, j] * n_k``; ValueError if any is not a whole number.

    Equal class sizes go through :func:`theory.corruption.exact_label_counts`.
    """
    C = check_corruption_matrix(C)
    sizes = np.asarray(class_sizes, dtype=np.int64)
    if sizes.shape != (C.shape[0],):
        raise ValueError(f"class_sizes has shape {sizes.shape}, must be ({C.shape[0]},)")
    raw = C * sizes[:, None]
    counts = np.round(raw)
    off = np.abs(raw - counts)
    equal = bool(np.all(sizes == sizes[0]))
    if np.any(off > _WHOLE_TOL):
        k, j = np.argwhere(off > _WHOLE_TOL)[0]
        n_name = "n" if equal else f"n_{k}"
        raise ValueError(
            f"C[{k}, {j}] * {n_name} == {float(raw[k, j]):.6g} is not a whole number of instances "
            f"({n_name} == {sizes[k]}); use sampled labels or choose eta so that every C[k, j] * n is an integer"
        )
    if equal:
        return _corruption.exact_label_counts(C, int(sizes[0]))
    return counts.astype(np.int64)


def expected_counts(C, n: int) -> np.ndarray:
    """Whole-number label counts closest to n C that keep the noise model's symmetry.

    Each off-diagonal entry of n C is rounded to the nearest integer (halves up, within 1e-9 of a half
    counting as a half, so that round-off cannot decide), the diagonal takes the rest of the row; a row
    whose rounded off-diagonal sum exceeds n is floored instead. A largest-remainder rounding would break
    ties by class index and leave the given labels unbalanced (perfect rounds may then end again)."""
    raw = check_corruption_matrix(C) * check_int("n", n, minimum=1)
    off = np.floor(raw + 0.5 + 1e-9)
    np.fill_diagonal(off, 0.0)
    over = off.sum(axis=1) > n
    if over.any():
        low = np.floor(raw + 1e-9)
        np.fill_diagonal(low, 0.0)
        off[over] = low[over]
    counts = off.copy()
    np.fill_diagonal(counts, n - off.sum(axis=1))
    return counts.astype(np.int64)


def corrupt_labels(y, C, rng: np.random.Generator, exact: bool = False) -> np.ndarray:
    """Given labels ``z`` (same shape as the true labels ``y``) drawn from ``C``.

    ``exact=True``: class k gets exactly ``C[k, j] * n_k`` labels j, on a random
    subset (a permutation of the class's instances, then consecutive runs of
    labels 0, 1, ..., K-1). ``exact=False``: ``z_i ~ Categorical(C[y_i])``
    independently. Classes are processed in order 0..K-1, so the result is a
    deterministic function of ``y``, ``C`` and the state of ``rng``.
    """
    C = check_corruption_matrix(C)
    K = C.shape[0]
    y = check_labels("y", y, K)
    rng = check_generator("rng", rng)
    exact = check_bool("exact", exact)
    sizes = np.bincount(y, minlength=K)
    z = np.empty_like(y)
    if exact:
        counts = exact_counts(C, sizes)
        for k in range(K):
            idx = rng.permutation(np.flatnonzero(y == k))
            z[idx] = np.repeat(np.arange(K), counts[k])
    else:
        for k in range(K):
            idx = np.flatnonzero(y == k)
            z[idx] = rng.choice(K, size=idx.size, p=C[k] / C[k].sum())
    return z


def label_counts(y, z, K: int) -> np.ndarray:
    """(K, K) counts: [k, l] = instances of true class k given label l."""
    K = check_int("K", K, minimum=2)
    y = check_labels("y", y, K)
    z = check_labels("z", z, K, size=y.size)
    return _corruption.counts_from_labels(y, z, K)


def labels_from_counts(counts) -> tuple[np.ndarray, np.ndarray]:
    """Class-major true and given labels ``(y, z)`` with the (K, K) label counts ``counts``: class k's
    instances carry ``counts[k, 0]`` labels 0, then ``counts[k, 1]`` labels 1, ..."""
    counts = check_label_counts(counts)
    K = counts.shape[0]
    y = np.repeat(np.arange(K), counts.sum(axis=1))
    z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    return y, z


def one_hot(z, K: int) -> np.ndarray:
    """(K, N) one-hot targets of the given labels ``z``."""
    K = check_int("K", K, minimum=2)
    z = check_labels("z", z, K)
    Y = np.zeros((K, z.size))
    Y[z, np.arange(z.size)] = 1.0
    return Y
