"""Parameter validation shared by every public entry point.

Each check raises ``ValueError`` with a message naming the parameter, the value
received and the allowed range, in the form ``"lam == -1.0, must be > 0"``.
Parameters are validated where they enter the public API; internal helpers
trust their inputs.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "check_int",
    "check_real",
    "check_positive",
    "check_fraction",
    "check_block_correlations",
    "check_corruption_matrix",
    "check_label_counts",
    "check_rounds",
    "check_bool",
    "check_within_correlation",
    "check_array",
    "check_spectrum",
    "check_labels",
    "check_generator",
]

# Row sums of a corruption matrix may differ from 1 by this much: a few ulps of
# float64 accumulated over at most a few hundred additions.
ROW_SUM_TOL = 1e-9


def check_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as int; it must be an integer (not bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, numbers.Real) and float(value).is_integer() and not isinstance(value, bool):
            value = int(value)
        else:
            raise ValueError(f"{name} == {value!r}, must be an integer")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} == {value}, must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} == {value}, must be <= {maximum}")
    return value


def check_real(name: str, value) -> float:
    """Return ``value`` as a finite float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} == {value!r}, must be a real number")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} == {value}, must be finite")
    return value


def check_positive(name: str, value) -> float:
    value = check_real(name, value)
    if value <= 0:
        raise ValueError(f"{name} == {value}, must be > 0")
    return value


def check_fraction(name: str, value) -> float:
    """A real number in the closed interval [0, 1]."""
    value = check_real(name, value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} == {value}, must be in [0, 1]")
    return value


def check_block_correlations(K: int, n: int, c, d) -> tuple[float, float]:
    """Validate the class-wise correlation model G = (1-c) I + (c-d) blockdiag(11^T) + d 11^T.

    Requires d < c < 1 (so that the three eigenvalues are ordered and the
    within-class one is positive) and a positive semidefinite Gram matrix,
    i.e. 1 - c + n (c - d) + K n d >= 0 (the constant-direction eigenvalue).
    ``d`` may be negative (centred features) as long as that holds.
    """
    c = check_within_correlation("c", c)
    d = check_real("d", d)
    if not d < c:
        raise ValueError(f"d == {d}, must be < c == {c} (between-class below within-class correlation)")
    mu_const = 1.0 - c + n * (c - d) + K * n * d
    # Round-off in this sum is a few ulps of its largest term (K n |d| <= K n), so a value
    # within 1e-12 K n of 0 is the boundary case mu_const = 0 (PSD, singular), not a violation.
    if mu_const < -1e-12 * K * n:
        d_min = -(1.0 - c + n * c) / (K * n - n)
        raise ValueError(
            f"d == {d}, must be >= {d_min:.6g} for K == {K}, n == {n}, c == {c}: "
            f"otherwise the Gram matrix is not positive semidefinite "
            f"(constant-direction eigenvalue {mu_const:.6g} < 0)"
        )
    return c, d


def check_corruption_matrix(C, K: int | None = None, name: str = "C") -> np.ndarray:
    """A K x K row-stochastic matrix with non-negative entries."""
    try:
        C = np.asarray(C, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} == {C!r}, must be a square array of real numbers") from None
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"{name} has shape {C.shape}, must be a square K x K matrix")
    if K is not None and C.shape != (K, K):
        raise ValueError(f"{name} has shape {C.shape}, must be ({K}, {K}) for K == {K}")
    if len(C) < 2:
        raise ValueError(f"{name} has shape {C.shape}, must have K >= 2 classes")
    if not np.all(np.isfinite(C)):
        raise ValueError(f"{name} has non-finite entries, must be finite")
    if np.any(C < 0):
        i, j = np.argwhere(C < 0)[0]
        raise ValueError(f"{name}[{i}, {j}] == {float(C[i, j])!r}, must be >= 0 (entries are label shares)")
    sums = C.sum(axis=1)
    # no mutate: |sums - 1| of a sum near 1 is a multiple of 2^-53 and never equals 1e-9, so > and >= agree
    bad = np.flatnonzero(np.abs(sums - 1.0) > ROW_SUM_TOL)  # pragma: no mutate
    if bad.size:
        i = bad[0]
        raise ValueError(f"row {i} of {name} sums to {float(sums[i])!r}, must sum to 1 (within {ROW_SUM_TOL})")
    return C


def check_label_counts(counts, n: int | None = None, name: str = "counts") -> np.ndarray:
    """K x K non-negative integer matrix; counts[k, l] = instances of class k given label l."""
    arr = np.asarray(counts)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or len(arr) < 2:
        raise ValueError(f"{name} has shape {arr.shape}, must be a square K x K matrix with K >= 2")
    # any real type (int, float, Fraction) holding whole numbers; counts are far below 2^53, exact in float64
    not_whole = f"{name} must hold whole numbers of instances, got {arr.tolist()}"
    try:
        as_float = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(not_whole) from None
    if not np.all(np.isfinite(as_float)) or not np.all(as_float == np.round(as_float)):
        raise ValueError(not_whole)
    arr = as_float.astype(np.int64)
    if np.any(arr < 0):
        i, j = np.argwhere(arr < 0)[0]
        raise ValueError(f"{name}[{i}, {j}] == {arr[i, j]}, must be >= 0")
    rows = arr.sum(axis=1)
    if n is not None and np.any(rows != n):
        i = int(np.flatnonzero(rows != n)[0])
        raise ValueError(f"row {i} of {name} sums to {rows[i]}, must sum to n == {n} (instances per class)")
    if np.any(rows == 0):
        raise ValueError(f"{name} has a class with no instances, each row must sum to n >= 1")
    return arr


def check_rounds(name: str, value) -> int:
    return check_int(name, value, minimum=0)


def check_bool(name: str, value) -> bool:
    """A flag: True or False (numpy's bool too), not any other truth value."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} == {value!r}, must be True or False")
    return bool(value)


def check_within_correlation(name: str, value) -> float:
    """A within-class correlation of unit-norm features: a real number < 1."""
    value = check_real(name, value)
    if not value < 1.0:
        raise ValueError(f"{name} == {value}, must be < 1 (within-class correlation; the Gram matrix has unit diagonal)")
    return value


def check_array(name: str, value, ndim: int | None = None, dtype=np.float64) -> np.ndarray:
    """An array of finite numbers of ``dtype`` (float64 or complex128), with ``ndim`` dimensions if given."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} == {value!r}, must be an array of numbers") from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}, must be a {ndim}-d array")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries, must be finite")
    return arr


def check_spectrum(name: str, value) -> np.ndarray:
    """A covariance's eigenvalues: a non-empty 1-d array of finite numbers >= 0."""
    sig = check_array(name, value, ndim=1, dtype=np.float64)
    if sig.size == 0:
        raise ValueError(f"{name} has shape {sig.shape}, must hold at least one eigenvalue")
    if np.any(sig < 0):
        i = int(np.flatnonzero(sig < 0)[0])
        raise ValueError(f"{name}[{i}] == {float(sig[i])!r}, must be >= 0 (an eigenvalue of a covariance)")
    return sig


def check_labels(name: str, labels, K: int, size: int | None = None) -> np.ndarray:
    """Class indices: a 1-d array (of ``size`` entries if given) of whole numbers in [0, K - 1], as int64."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or (size is not None and arr.size != size):
        raise ValueError(f"{name} has shape {arr.shape}, must be ({'N' if size is None else size},) (one label per instance)")
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} == {labels!r}, must hold class indices (integers)")
    # whole numbers far below 2^53 are exact in float64; NaN fails every comparison
    as_float = arr.astype(np.float64)
    bad = np.flatnonzero(~((as_float == np.round(as_float)) & (as_float >= 0) & (as_float <= K - 1)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] == {arr[i].item()!r}, must be a class index in [0, {K - 1}]")
    return as_float.astype(np.int64)


def check_generator(name: str, value) -> np.random.Generator:
    """A numpy random Generator (the one source of randomness of a call)."""
    if not isinstance(value, np.random.Generator):
        raise ValueError(f"{name} == {value!r}, must be a numpy.random.Generator (np.random.default_rng(seed))")
    return value
