"""Label corruption matrices and exact label counts.

A corruption matrix ``C`` is K x K and row-stochastic: ``C[k, j]`` is the share
of class-k instances given label j. The three models of the paper's experiments:

* symmetric: ``1 - eta`` on the diagonal, ``eta / (K - 1)`` elsewhere;
* asymmetric (cyclic): ``eta / K`` off the diagonal plus another ``eta / K`` to
  the next class ``(k + 1) mod K``, ``1 - eta`` on the diagonal;
* superclass: classes partitioned into consecutive groups of ``size`` classes,
  ``eta`` spread evenly over the other members of the group.

All three are doubly stochastic, so exact label counts give balanced labels.
"""

from __future__ import annotations

import numpy as np

from .validate import check_corruption_matrix, check_fraction, check_int, check_label_counts

__all__ = [
    "symmetric",
    "asymmetric",
    "superclass",
    "superclass_groups",
    "corruption_matrix",
    "exact_label_counts",
    "empirical_corruption",
    "counts_from_labels",
    "NOISE_MODELS",
]

NOISE_MODELS = ("symmetric", "asymmetric", "superclass")


def symmetric(K: int, eta: float) -> np.ndarray:
    """Symmetric noise: keep the label with probability ``1 - eta``, else a uniform wrong label."""
    K = check_int("K", K, minimum=2)
    eta = check_fraction("eta", eta)
    C = np.full((K, K), eta / (K - 1))
    np.fill_diagonal(C, 1.0 - eta)
    return C


def asymmetric(K: int, eta: float) -> np.ndarray:
    """Cyclic asymmetric noise: ``eta / K`` to every other class plus ``eta / K`` more to class k+1."""
    K = check_int("K", K, minimum=2)
    eta = check_fraction("eta", eta)
    C = np.full((K, K), eta / K)
    np.fill_diagonal(C, 1.0 - eta)
    for k in range(K):
        C[k, (k + 1) % K] += eta / K
    return C


def superclass_groups(K: int, size: int) -> list[list[int]]:
    """Consecutive groups of ``size`` classes: [[0..size-1], [size..2 size-1], ...]."""
    K = check_int("K", K, minimum=2)
    size = _check_group_size(K, size, "size")
    return [list(range(start, start + size)) for start in range(0, K, size)]


def _check_group_size(K: int, size, name: str) -> int:
    """A superclass size for a validated K: an integer in [2, K] dividing K, reported as ``name``."""
    size = check_int(name, size, minimum=2, maximum=K)
    if K % size:
        raise ValueError(f"{name} == {size}, must divide K == {K}")
    return size


def superclass(K: int, eta: float, size: int = 2, groups: list[list[int]] | None = None) -> np.ndarray:
    """Superclass noise: ``eta`` spread evenly over the other members of the class's group.

    ``groups`` (a partition of range(K) into sets of at least two classes)
    overrides the consecutive grouping by ``size``.
    """
    K = check_int("K", K, minimum=2)
    eta = check_fraction("eta", eta)
    if groups is None:
        groups = superclass_groups(K, size)
    else:
        flat = sorted(j for g in groups for j in g)
        if flat != list(range(K)):
            raise ValueError(f"groups == {groups!r}, must partition range({K})")
        if any(len(g) < 2 for g in groups):
            raise ValueError(f"groups == {groups!r}, every group must hold at least 2 classes")
    C = np.zeros((K, K))
    for g in groups:
        for k in g:
            for j in g:
                C[k, j] = 1.0 - eta if j == k else eta / (len(g) - 1)
    return C


def corruption_matrix(noise: str, K: int, eta: float, superclass_size: int = 2) -> np.ndarray:
    """Dispatch on the noise model's name (one of :data:`NOISE_MODELS`)."""
    if noise == "symmetric":
        return symmetric(K, eta)
    if noise == "asymmetric":
        return asymmetric(K, eta)
    if noise == "superclass":
        K = check_int("K", K, minimum=2)
        return superclass(K, eta, _check_group_size(K, superclass_size, "superclass_size"))
    raise ValueError(f"noise == {noise!r}, must be one of {', '.join(NOISE_MODELS)}")


def exact_label_counts(C, n: int) -> np.ndarray:
    """Integer counts ``C[k, j] * n`` (class k given label j); an error if any is not a whole number.

    A product within 1e-9 of an integer counts as that integer (float round-off
    in e.g. 0.3 * 10); anything further is rejected.
    """
    n = check_int("n", n, minimum=1)
    C = check_corruption_matrix(C)
    raw = C * n
    counts = np.round(raw)
    off = np.abs(raw - counts)
    if np.any(off > 1e-9):
        k, j = np.argwhere(off > 1e-9)[0]
        raise ValueError(
            f"C[{k}, {j}] * n == {float(raw[k, j]):.6g} is not a whole number of instances "
            f"(n == {n}); choose n or eta so that every C[k, j] * n is an integer"
        )
    # Rounding can only move a row sum if entries were within 1e-9 of .5, excluded above.
    # check_label_counts returns the whole-number floats as int64.
    return check_label_counts(counts, n)


def counts_from_labels(true_labels, given_labels, K: int) -> np.ndarray:
    """K x K counts: entry [k, l] = number of instances of true class k given label l."""
    K = check_int("K", K, minimum=2)
    y = np.asarray(true_labels)
    z = np.asarray(given_labels)
    if y.shape != z.shape or y.ndim != 1:
        raise ValueError(f"true_labels and given_labels must be 1-d of equal length, got {y.shape} and {z.shape}")
    for name, lab in (("true_labels", y), ("given_labels", z)):
        if lab.size and (lab.min() < 0 or lab.max() >= K):
            raise ValueError(f"{name} has values in [{lab.min()}, {lab.max()}], must be in [0, {K - 1}]")
    counts = np.zeros((K, K), dtype=np.int64)
    np.add.at(counts, (y, z), 1)
    return counts


def empirical_corruption(counts) -> np.ndarray:
    """Row-normalised counts: the empirical corruption matrix of a labelled sample."""
    counts = check_label_counts(counts)
    return counts / counts.sum(axis=1, keepdims=True)
