"""Exact solvers for one fit of the softmax linear probe with ridge penalty.

One fit minimises over ``W`` (K x D)::

    f(W) = (1/N) sum_i loss(T_i, softmax(W x_i)) + (lam/2) ||W||_F^2

with features ``X`` of shape (N, D) (rows = instances), soft targets ``T`` of
shape (K, N) (columns on the simplex) and no bias. Two losses:

* ``loss="ce"`` (cross-entropy): ``loss(t, p) = -sum_j t_j log p_j``. Strictly
  convex in W, so the optimum is unique; it satisfies ``W = (T - P) X / (N lam)``
  and the training outputs solve the fixed point
  ``P = softmax((T - P) G / (N lam))`` (columnwise), ``G = X X^T``.
* ``loss="gce"`` (generalised cross-entropy, the paper's PLL student, Zhang &
  Sabuncu 2018 applied to soft / candidate targets):
  ``loss(t, p) = sum_j t_j (1 - p_j^q) / q`` with ``q`` in (0, 1]. It tends to
  cross-entropy (up to a constant) as ``q -> 0``; ``q = 1`` gives
  ``1 - t . p``. Same ridge term; not convex. Its gradient w.r.t. the logits is
  ``g = p A - a`` with ``a_j = t_j p_j^q``, ``A = sum_j a_j`` (``g = p - t`` for
  CE), so stationary points satisfy ``W = -g(P) X / (N lam)`` and
  ``P = softmax(-g(P) G / (N lam))``. The GCE fit is the local minimiser reached
  by damped (modified) Newton descent from the given start (default: zero, in
  the paper the teacher's weights), the objective decreasing at every step.

Residual (reported by every solver, the convergence criterion, default
``tol = 1e-10``): the output-space fixed-point residual
``max |P - softmax(-g(P) G / (N lam))|`` where ``P`` are the returned training
outputs; for CE ``-g(P) = T - P`` and this is exactly
``max |P - softmax((T - P) G / (N lam))|``. For GCE it is the KKT (stationarity)
condition written in output space: it vanishes iff ``grad f(W) = 0`` for
``W = -g(P) X / (N lam)``. Output space makes residuals of the three forms
(features, Gram, type-reduced block) directly comparable; the gradient itself,
``max |grad f(W)|``, is reported as well by the primal and Gram forms
(``gradient_max``). Solvers raise :class:`NotConvergedError` rather than return
a fit whose residual exceeds ``tol``.

Three forms:

* :func:`fit_features` (primal, explicit features): Newton's method with
  Armijo backtracking in the (K-1) D coordinates of ``W`` with rows summing to
  zero (``W = E V``, ``E`` an orthonormal basis of the complement of the all-ones
  vector). Rows of every stationary ``W`` sum to zero, since the loss depends on
  ``W`` only through differences of logits. The Hessian
  ``(1/N) sum_i (E^T H_i E) (x) x_i x_i^T + lam I`` is assembled with K(K-1)/2
  symmetric rank-N updates (BLAS ``syrk``) and Cholesky-factored; for GCE,
  where it can be indefinite, a multiple of the identity is added until the
  factorisation succeeds (Levenberg-style modification). Later Newton steps
  reuse that factor as preconditioner of conjugate gradients with the exact
  Hessian (inexact Newton) and re-factor only when CG stalls: at the paper's
  scale one factorisation and ~10 CG steps per Newton step suffice. ``D > N``
  is first reduced exactly to N coordinates by a QR factorisation of ``X^T``.
  BLAS runs single-threaded by default (``blas_threads=1``): measured faster on
  the shared 2-core machine, see :func:`fit_features`.
* :func:`fit_gram` (kernel form, only ``G``; :func:`prepare_gram` validates
  and prepares G once for many fits). ``G`` is validated (symmetric, PSD
  within stated tolerances); two routes (implementation in ``sims._gram``):
  "lowrank" factors ``G = F F^T + S`` by pivoted Cholesky (LAPACK ``dpstrf``,
  stopping when every remaining pivot is below ``N eps max_i G_ii``) and runs
  the primal solver on the features ``F`` (N x rank), then refines with the
  full ``G`` if the dropped remainder ``S`` spoils the residual (cost
  K^2 N r^2 + (K r)^3 per factorisation: ranks up to about a thousand);
  "dense" runs Newton's method on the kernel-space fixed point with
  preconditioned conjugate gradients (cost K N^2 per CG iteration: full-rank
  G, e.g. the block model or a Gaussian-mixture Gram with D >= N). The
  default "auto" takes "dense" when G is numerically positive definite.
* :func:`fit_block` (the exact block Gram model reduced by symmetry to
  instance types (true class k, given label l)): Newton's method with
  backtracking on the type-reduced objective: K unknowns per present type, a
  dense system of at most K^3 unknowns (64 for K = 4).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from theory.validate import (
    check_block_correlations,
    check_int,
    check_label_counts,
    check_positive,
    check_real,
)

__all__ = [
    "NotConvergedError",
    "FeatureFit",
    "GramFit",
    "BlockFit",
    "fit_features",
    "fit_gram",
    "prepare_gram",
    "PreparedGram",
    "fit_block",
    "fixed_point_residual",
    "LOSSES",
    "DEFAULT_TOL",
    "SIMPLEX_TOL",
]

LOSSES = ("ce", "gce")

# Default convergence tolerance on the output-space fixed-point residual.
DEFAULT_TOL = 1e-10
# Columns of T must sum to 1 within this (a few ulps accumulated over K terms,
# with generous room for targets that are themselves computed outputs).
SIMPLEX_TOL = 1e-9
# G is accepted as symmetric if max|G - G^T| <= SYM_TOL * max|G|: a few hundred
# ulps, enough for X @ X.T computed by a general (non-syrk) matrix product.
SYM_TOL = 1e-12
# G is accepted as PSD if, after pivoted Cholesky, every entry of the remainder
# S = G - F F^T is at most PSD_TOL * max_i G_ii in absolute value. A PSD
# remainder has |S_ij| <= max pivot dropped (N eps max G_ii, about 4e-13 for
# N = 2000), so this only rejects matrices with a genuinely negative direction;
# it guarantees lambda_min(G) >= -(N - rank) PSD_TOL max G_ii.
PSD_TOL = 1e-10
# Armijo constant of the backtracking line search.
_ARMIJO = 1e-4
_DEFAULT_MAX_ITER = 200


class NotConvergedError(RuntimeError):
    """A solver stopped before its residual fell to ``tol``.

    Attributes: ``residual`` (the last residual, float) and ``iterations`` (int).
    """

    def __init__(self, message: str, residual: float, iterations: int):
        super().__init__(f"{message} (residual {residual:.3e} after {iterations} iterations)")
        self.residual = float(residual)
        self.iterations = int(iterations)


# ----------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------


def _check_loss(loss, q):
    if loss not in LOSSES:
        raise ValueError(f"loss == {loss!r}, must be one of {LOSSES}")
    q = check_real("q", q)
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q == {q}, must be in (0, 1]")
    return loss, q


def _check_tol(tol, max_iter):
    tol = check_positive("tol", tol)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    return tol, max_iter


def _as_float_array(name, value, ndim):
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: callers' arrays are never modified
    except (TypeError, ValueError):
        raise ValueError(f"{name} == {value!r}, must be an array of real numbers") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}, must be a {ndim}-d array")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite entries, must be finite")
    return arr


def _check_targets(T, N, name="T"):
    """Targets: (K, N), K >= 2, entries >= 0, columns summing to 1 within SIMPLEX_TOL."""
    T = _as_float_array(name, T, 2)
    if T.shape[0] < 2:
        raise ValueError(f"{name} has shape {T.shape}, must be (K, N) with K >= 2 classes")
    if N is not None and T.shape[1] != N:
        raise ValueError(f"{name} has shape {T.shape}, must be (K, {N}) (one column per instance)")
    _check_simplex_columns(name, T)
    return T


def _check_simplex_columns(name, T):
    if np.any(T < 0):
        idx = tuple(int(v) for v in np.argwhere(T < 0)[0])
        raise ValueError(f"{name}[{idx}] == {T[idx]}, must be >= 0 (targets are probability vectors)")
    sums = T.sum(axis=0)
    bad = np.flatnonzero(np.abs(sums - 1.0) > SIMPLEX_TOL)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"column {i} of {name} sums to {sums.flat[i]!r}, must sum to 1 (within {SIMPLEX_TOL})")


# ----------------------------------------------------------------------------
# Losses (columns = instances)
# ----------------------------------------------------------------------------


def _log_softmax(Z):
    Zmax = Z.max(axis=0, keepdims=True)
    S = Z - Zmax
    return S - np.log(np.exp(S).sum(axis=0, keepdims=True))


def _softmax(Z):
    return _exp_flush(_log_softmax(Z))


# exp(x) for x < _FLUSH_LOG is replaced by 0. Such values (< 1e-300) are below
# any tolerance used here, and subnormal floats slow BLAS down by 10x or more.
_FLUSH_LOG = -690.0


def _exp_flush(L):
    out = np.exp(L)
    out[L < _FLUSH_LOG] = 0.0
    return out


def _loss_value(Z, T, loss, q, weights=None):
    """Sum over instances (columns) of the loss, optionally weighted."""
    logP = _log_softmax(Z)
    if loss == "ce":
        per = -(T * logP).sum(axis=0)
    else:
        per = (T * (1.0 - np.exp(q * logP))).sum(axis=0) / q
    return float(per.sum() if weights is None else per @ weights)


def _loss_derivatives(Z, T, loss, q):
    """Outputs P, gradient g = d loss / d z (K x N) and the GCE pieces (a, A) or None."""
    logP = _log_softmax(Z)
    P = _exp_flush(logP)
    if loss == "ce":
        return P, P - T, None
    a = T * _exp_flush(q * logP)  # a_j = t_j p_j^q
    A = a.sum(axis=0)
    return P, P * A - a, (a, A)


def _reduced_hessians(P, extra, q, E):
    """Per-instance E^T H_i E, shape (N, K-1, K-1), H_i = d^2 loss / dz^2.

    CE: H = diag(p) - p p^T. GCE: H = A (diag(p) - p p^T) - q diag(a)
    + q (p a^T + a p^T) - q A p p^T (see the module docstring for a, A).
    """
    Pt = P.T  # (N, K)
    EP = Pt @ E  # rows E^T p_i
    Hr = np.einsum("ka,nk,kb->nab", E, Pt, E) - EP[:, :, None] * EP[:, None, :]
    if extra is None:
        return _flush_small(Hr)
    a, A = extra
    at = a.T
    Ea = at @ E
    Hr *= A[:, None, None]
    Hr -= q * np.einsum("ka,nk,kb->nab", E, at, E)
    Hr += q * (EP[:, :, None] * Ea[:, None, :] + Ea[:, :, None] * EP[:, None, :])
    Hr -= (q * A)[:, None, None] * EP[:, :, None] * EP[:, None, :]
    return _flush_small(Hr)


def _flush_small(Hr):
    """Zero Hessian weights below 1e-100: they change the Hessian (whose smallest
    eigenvalue is at least lam) by nothing measurable, and their products would be
    subnormal floats, which slow BLAS and LAPACK down several-fold."""
    Hr[np.abs(Hr) < 1e-100] = 0.0
    return Hr


def _zero_sum_basis(K):
    """Orthonormal K x (K-1) basis of the vectors whose entries sum to zero."""
    M = np.eye(K)[:, : K - 1] - 1.0 / K
    Q, _ = np.linalg.qr(np.column_stack([np.ones(K), M]))
    return Q[:, 1:]


def fixed_point_residual(P, T, G, lam, loss="ce", q=0.7):
    """``max |P - softmax(-g(P) G / (N lam))|`` for outputs P (K x N), Gram G (N x N).

    For CE ``-g(P) = T - P``. A reference implementation with an explicit Gram
    matrix; the solvers compute the same quantity without forming G when they can.
    """
    P = np.asarray(P, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    G = np.asarray(G, dtype=np.float64)
    N = P.shape[1]
    R = _minus_gradient_from_outputs(P, T, loss, q)
    return float(np.max(np.abs(P - _softmax(R @ G / (N * lam)))))


def _minus_gradient_from_outputs(P, T, loss, q):
    """-g as a function of the outputs P (it depends on the logits only through P)."""
    if loss == "ce":
        return T - P
    with np.errstate(divide="ignore"):
        a = T * np.where(T > 0, P, 1.0) ** q
    return a - P * a.sum(axis=0)


# ----------------------------------------------------------------------------
# Primal Newton
# ----------------------------------------------------------------------------


@dataclass
class _PrimalState:
    V: np.ndarray  # (K-1, D)
    P: np.ndarray
    g: np.ndarray
    residual: float
    iterations: int
    factorizations: int
    chol: tuple | None = field(default=None, repr=False)  # last Hessian factor (a preconditioner)
    Hr: np.ndarray | None = field(default=None, repr=False)  # per-instance reduced Hessians at V


def _primal_newton(X, T, lam, loss, q, V0, tol, max_iter, residual_fn, E):
    """Damped Newton on f(V) = (1/N) sum loss(T_i, softmax(E V x_i)) + lam/2 |V|^2.

    ``residual_fn(P, minus_g)`` returns the convergence residual.

    Newton directions: the Hessian is assembled and Cholesky-factored; at the
    following steps its (stale) factor first serves as preconditioner of a
    conjugate-gradient solve with the exact current Hessian (Hessian-vector
    products cost O(K N D)), to relative accuracy eta = min(0.1, |grad| /
    |grad at the last factorisation|) (a superlinearly convergent inexact Newton
    method); if that needs more than _PCG_MAXITER iterations or meets
    non-positive curvature, the Hessian is re-assembled and re-factored.
    """
    N, D = X.shape
    K = T.shape[0]
    Km = K - 1
    V = V0.copy()
    it = 0
    nfact = 0
    eps = np.finfo(float).eps
    Xt = X.T  # (D, N), a view
    convex = loss == "ce"

    def objective(V, Z):
        return _loss_value(Z, T, loss, q) / N + 0.5 * lam * float(np.vdot(V, V))

    Z = E @ (V @ Xt)
    f = objective(V, Z)
    chol = None
    gnorm_fact = None
    while True:
        P, g, extra = _loss_derivatives(Z, T, loss, q)
        res = residual_fn(P, -g)
        grad = (E.T @ g) @ X / N + lam * V
        Hr = _reduced_hessians(P, extra, q, E)
        if res <= tol:
            return _PrimalState(V, P, g, res, it, nfact, chol, Hr)
        if it >= max_iter:
            raise NotConvergedError(f"primal Newton ({loss}) did not reach tol == {tol:g}", res, it)
        it += 1
        gnorm = float(np.linalg.norm(grad))
        step = None
        if chol is not None:
            eta = min(0.1, gnorm / gnorm_fact)
            step = _pcg(lambda S: _hessian_vector(X, Hr, S, N, lam), grad, chol, eta)
        if step is None:
            Hess = _assemble_hessian(X, Hr, N, lam)
            chol = _factor_hessian(Hess, convex)
            nfact += 1
            gnorm_fact = gnorm
            step = -sla.cho_solve(chol, grad.ravel(), check_finite=False).reshape(Km, D)
        # Backtracking (Armijo) with room for round-off in f near the optimum.
        slope = float(np.vdot(grad, step))
        if slope >= 0:  # not a descent direction (a nonconvex loss): steepest descent
            step = -grad
            slope = -gnorm**2
        t = 1.0
        while True:
            Vn = V + t * step
            Zn = E @ (Vn @ Xt)
            fn = objective(Vn, Zn)
            if fn <= f + _ARMIJO * t * slope + 16 * eps * abs(f):
                break
            t *= 0.5
            if t < 1e-12:
                raise NotConvergedError(f"primal Newton ({loss}): line search failed", res, it)
        V, Z, f = Vn, Zn, fn


_PCG_MAXITER = 30


def _hessian_vector(X, Hr, S, N, lam):
    """(sum_i Hr_i (x) x_i x_i^T / N + lam I) applied to S ((K-1) x D)."""
    U = S @ X.T  # (K-1, N)
    Y = np.einsum("nab,bn->an", Hr, U)
    return Y @ X / N + lam * S


def _pcg(hv, grad, chol, eta):
    """Solve Hess s = -grad by CG preconditioned with a Cholesky factor; None on failure."""
    shape = grad.shape
    b = -grad
    bnorm = float(np.linalg.norm(b))
    x = np.zeros(shape)
    r = b.copy()
    z = sla.cho_solve(chol, r.ravel(), check_finite=False).reshape(shape)
    p = z.copy()
    rz = float(np.vdot(r, z))
    for _ in range(_PCG_MAXITER):
        Hp = hv(p)
        curv = float(np.vdot(p, Hp))
        if curv <= 0:
            return None
        alpha = rz / curv
        x += alpha * p
        r -= alpha * Hp
        if float(np.linalg.norm(r)) <= eta * bnorm:
            return x
        z = sla.cho_solve(chol, r.ravel(), check_finite=False).reshape(shape)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return None


def _factor_hessian(Hess, convex):
    """Cholesky factor of Hess; for a nonconvex loss of Hess + tau I, tau grown until it succeeds."""
    try:
        return sla.cho_factor(Hess, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        if convex:
            raise
    scale = float(np.max(np.abs(np.diag(Hess))))
    tau = 1e-8 * scale
    while True:
        try:
            Hs = Hess.copy()
            Hs.flat[:: Hs.shape[0] + 1] += tau
            return sla.cho_factor(Hs, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            tau *= 10.0


def _assemble_hessian(X, Hr, N, lam):
    """sum_i Hr_i (x) x_i x_i^T / N + lam I, with symmetric rank-N products.

    Diagonal blocks use weights h_aa; off-diagonal blocks use
    X^T diag(h_ab) X = (X^T diag(h_aa + h_bb + 2 h_ab) X - B_aa - B_bb) / 2 when the
    combined weights are nonnegative (always for CE), otherwise a general product.
    """
    _, D = X.shape
    Km = Hr.shape[1]
    Hess = np.empty((Km * D, Km * D))
    diag_blocks = []
    for a in range(Km):
        Baa = _weighted_gram(X, Hr[:, a, a])
        diag_blocks.append(Baa)
        Hess[a * D : (a + 1) * D, a * D : (a + 1) * D] = Baa
    for a in range(Km):
        for b in range(a + 1, Km):
            w = Hr[:, a, a] + Hr[:, b, b] + 2.0 * Hr[:, a, b]
            if np.all(Hr[:, a, a] >= 0) and np.all(Hr[:, b, b] >= 0) and np.all(w >= 0):
                Bab = 0.5 * (_weighted_gram(X, w) - diag_blocks[a] - diag_blocks[b])
            else:
                Bab = (X * Hr[:, a, b][:, None]).T @ X
            Hess[a * D : (a + 1) * D, b * D : (b + 1) * D] = Bab
            Hess[b * D : (b + 1) * D, a * D : (a + 1) * D] = Bab.T
    Hess /= N
    Hess.flat[:: Km * D + 1] += lam
    return Hess


def _weighted_gram(X, w):
    """X^T diag(w) X; a symmetric (syrk) product when w >= 0."""
    if np.all(w >= 0):
        B = X * np.sqrt(w)[:, None]
        return B.T @ B
    return (X * w[:, None]).T @ X


# ----------------------------------------------------------------------------
# Feature (primal) form
# ----------------------------------------------------------------------------


@dataclass
class FeatureFit:
    """Result of :func:`fit_features`.

    W (K x D) weights; outputs P (K x N) = softmax(W X^T) on the training set;
    residual = max |P - softmax(-g(P) X X^T / (N lam))| (CE: -g = T - P; GCE: the
    KKT condition in output space, see the module docstring), computed as
    ((-g X) X^T) / (N lam) without forming X X^T; gradient_max = max |grad f(W)|;
    iterations = Newton steps; converged is always True (otherwise
    NotConvergedError is raised).
    """

    W: np.ndarray
    outputs: np.ndarray
    residual: float
    iterations: int
    gradient_max: float
    loss: str = "ce"
    q: float = 0.7
    converged: bool = True

    def logits(self, X_new) -> np.ndarray:
        """Logits W x for new points X_new (M, D); shape (K, M)."""
        X_new = _as_float_array("X_new", X_new, 2)
        if X_new.shape[1] != self.W.shape[1]:
            raise ValueError(f"X_new has shape {X_new.shape}, must be (M, {self.W.shape[1]})")
        # (X_new W^T)^T: OpenBLAS is much faster with the long operand on the left than for a
        # K-row matrix on the left (measured ~7x at K=4, M=800).
        return (X_new @ self.W.T).T

    def predict_proba(self, X_new) -> np.ndarray:
        """softmax(W x) for new points X_new (M, D); shape (K, M)."""
        return _softmax(self.logits(X_new))


def fit_features(
    X,
    T,
    lam,
    *,
    loss: str = "ce",
    q: float = 0.7,
    W0=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = _DEFAULT_MAX_ITER,
    blas_threads: int | None = 1,
) -> FeatureFit:
    """Fit the linear softmax probe on explicit features X (N, D) to targets T (K, N).

    ``W0`` (K x D) is the starting point (default zero): a warm start for CE
    (the optimum is unique), the initialisation (e.g. the teacher's weights) for
    GCE. Its row mean is removed first: that leaves every loss unchanged and
    only lowers the ridge term, and stationary points have zero row mean.
    Raises ValueError for invalid input and NotConvergedError if the residual
    does not reach ``tol`` within ``max_iter`` Newton steps.

    ``blas_threads``: BLAS threads used during the fit (None: leave as set). The
    default 1 is deliberate: on the shared 2-core machine, OpenBLAS with 2
    threads made a fit 10x slower whenever another process held a core (each of
    the many small BLAS calls waits for the busy core); see
    benchmarks/bench_solver.py.
    """
    with _blas_limit(blas_threads):
        return _fit_features(X, T, lam, loss, q, W0, tol, max_iter)


def _blas_limit(threads):
    if threads is None:
        return contextlib.nullcontext()
    threads = check_int("blas_threads", threads, minimum=1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _fit_features(X, T, lam, loss, q, W0, tol, max_iter):
    X = _as_float_array("X", X, 2)
    N, D = X.shape
    if N < 1 or D < 1:
        raise ValueError(f"X has shape {X.shape}, must have at least one row and one column")
    T = _check_targets(T, N)
    K = T.shape[0]
    lam = check_positive("lam", lam)
    loss, q = _check_loss(loss, q)
    tol, max_iter = _check_tol(tol, max_iter)
    if W0 is not None:
        W0 = _as_float_array("W0", W0, 2)
        if W0.shape != (K, D):
            raise ValueError(f"W0 has shape {W0.shape}, must be ({K}, {D})")
    E = _zero_sum_basis(K)

    # D > N: X = R^T Q^T with Q (D x N) orthonormal columns; W = W_F Q^T exactly.
    if D > N:
        Q, R = np.linalg.qr(X.T)  # X^T = Q R
        F = R.T
    else:
        Q, F = None, X
    V0 = np.zeros((K - 1, F.shape[1]))
    if W0 is not None:
        V0 = E.T @ (W0 if Q is None else W0 @ Q)

    scale = 1.0 / (N * lam)

    def residual_fn(P, R):
        return float(np.max(np.abs(P - _softmax(((R @ F) @ F.T) * scale))))

    st = _primal_newton(F, T, lam, loss, q, V0, tol, max_iter, residual_fn, E)
    W = E @ st.V
    if Q is not None:
        W = W @ Q.T
    gradient_max = float(np.max(np.abs(st.g @ X / N + lam * W)))
    return FeatureFit(W, st.P, st.residual, st.iterations, gradient_max, loss, q)


# ----------------------------------------------------------------------------
# Gram (kernel) form
# ----------------------------------------------------------------------------


@dataclass
class GramFit:
    """Result of :func:`fit_gram`.

    coef (K x N) = -g(P) / (N lam) (CE: (T - P) / (N lam)), so that the weights
    are W = coef Phi and the logits of a new point are coef <phi_i, x_new>;
    outputs P (K x N); residual = max |P - softmax(-g(P) G / (N lam))| with the
    full G; iterations = Newton steps (primal plus refinement); rank = rank of
    the pivoted-Cholesky factor used (dense route: N when G passed Cholesky);
    refinement_steps = exact-G Newton steps after the primal solve (0 when the
    factor reproduces G to round-off; always 0 for the dense route).
    """

    coef: np.ndarray
    outputs: np.ndarray
    residual: float
    iterations: int
    rank: int
    refinement_steps: int
    loss: str = "ce"
    q: float = 0.7
    converged: bool = True
    method: str = "lowrank"  # the fit_gram route: "lowrank" or "dense"
    cg_iterations: int = 0  # dense route: products with G in CG (and, for GCE, GMRES) over all Newton steps

    def logits(self, cross_gram) -> np.ndarray:
        """Logits for new points from cross_gram (N, M) = <x_i, x_new_m>; shape (K, M)."""
        cross_gram = _as_float_array("cross_gram", cross_gram, 2)
        if cross_gram.shape[0] != self.coef.shape[1]:
            raise ValueError(f"cross_gram has shape {cross_gram.shape}, must be ({self.coef.shape[1]}, M)")
        return (cross_gram.T @ self.coef.T).T

    def predict_proba(self, cross_gram) -> np.ndarray:
        return _softmax(self.logits(cross_gram))


_GRAM_METHODS = ("auto", "dense", "lowrank")


def prepare_gram(G, method: str = "auto"):
    """Validate the Gram matrix G (N, N) once and do the one-off work of a :func:`fit_gram` route.

    Pass the result to :func:`fit_gram` in place of G for many fits on the same
    G (rounds of self-distillation): validation, the factorisation and the
    spectral model are then not repeated. ``method``: "lowrank" (pivoted
    Cholesky factor, for low-rank G), "dense" (top Ritz pairs of G for the
    preconditioner, for full-rank G) or "auto": "dense" if G is numerically
    positive definite (LAPACK Cholesky succeeds), else "lowrank". Validation:
    square, finite, symmetric within SYM_TOL * max|G|, positive semidefinite
    (Cholesky success, or pivoted Cholesky leaving a remainder with entries
    <= PSD_TOL * max_i G_ii), else ValueError. Cost O(N^3) (one Cholesky) plus
    O(N^2) per Ritz column. Returns a :class:`PreparedGram` (attributes ``G``,
    ``method``, ``rank``, ``N``).
    """
    from . import _gram

    return _gram.prepare(G, method)


def __getattr__(name):
    if name == "PreparedGram":  # defined in sims._gram, which imports this module
        from ._gram import Prepared

        return Prepared
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit_gram(
    G,
    T,
    lam,
    *,
    loss: str = "ce",
    q: float = 0.7,
    coef0=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = _DEFAULT_MAX_ITER,
    blas_threads: int | None = 1,
    method: str = "auto",
) -> GramFit:
    """Fit the probe given only the Gram matrix G (N, N) of the training features.

    ``G`` is an array or the result of :func:`prepare_gram` (then ``method``
    must be "auto" or the prepared route). The last prepared array is kept and
    reused when the next call passes an equal array (entry-by-entry check), so
    rounds on the same G pay the preparation once. Two exact routes, chosen by
    ``method`` ("auto": the rule of :func:`prepare_gram`):

    * "lowrank": factor G = F F^T + S by pivoted Cholesky (rank r: pivots below
      N eps max_i G_ii are dropped) and run the primal Newton solver of
      :func:`fit_features` on F (cost per Hessian factorisation
      O(K^2 N r^2 + (K r)^3): for r up to about a thousand). If the remainder S
      spoils the residual (evaluated with the full G), Newton steps on the exact
      fixed-point equations u + g(u G / (N lam)) = 0 (u = -g = N lam coef)
      refine it, their linear systems solved by GMRES preconditioned with the
      exact inverse of the rank-r Jacobian.
    * "dense": Newton's method with backtracking on the same fixed point in
      kernel space, the Newton systems solved by conjugate gradients on a
      symmetric form, preconditioned by the exact (Woodbury) inverse for the
      model G ~ a I + V (Lam - a I) V^T (top Ritz pairs); cost O(K N^2) per
      CG iteration, no factorisation (details in ``sims._gram``). For GCE
      the per-instance Hessians' negative eigenvalues are clipped (modified
      Newton, still a descent method).

    ``coef0`` (K x N) gives the starting weights W0 = coef0 Phi (for GCE the
    teacher's coef; for CE a warm start). ``blas_threads`` as in :func:`fit_features`.
    """
    with _blas_limit(blas_threads):
        return _fit_gram(G, T, lam, loss, q, coef0, tol, max_iter, method)


def _fit_gram(G, T, lam, loss, q, coef0, tol, max_iter, method):
    from . import _gram

    if method not in _GRAM_METHODS:
        raise ValueError(f"method == {method!r}, must be one of {_GRAM_METHODS}")
    if isinstance(G, _gram.Prepared):
        prep = G
        if method not in ("auto", prep.method):
            raise ValueError(f"method == {method!r}, must be 'auto' or {prep.method!r} (the route G was prepared for)")
    else:
        prep = _gram.prepare_cached(G, method)
    N = prep.N
    T = _check_targets(T, N)
    K = T.shape[0]
    lam = check_positive("lam", lam)
    loss, q = _check_loss(loss, q)
    tol, max_iter = _check_tol(tol, max_iter)
    if coef0 is not None:
        coef0 = _as_float_array("coef0", coef0, 2)
        if coef0.shape != (K, N):
            raise ValueError(f"coef0 has shape {coef0.shape}, must be ({K}, {N})")
    scale = 1.0 / (N * lam)
    if prep.method == "dense":
        P, R, res, it, cg = _gram.fit_dense(prep, T, lam, loss, q, coef0, tol, max_iter)
        return GramFit(R * scale, P, res, it, prep.rank, 0, loss, q, method="dense", cg_iterations=cg)
    P, R, res, it, refine = _gram.fit_lowrank(prep, T, lam, loss, q, coef0, tol, max_iter)
    return GramFit(R * scale, P, res, it, prep.rank, refine, loss, q, method="lowrank")


# ----------------------------------------------------------------------------
# Exact block model, reduced by symmetry to instance types
# ----------------------------------------------------------------------------


@dataclass
class BlockFit:
    """Result of :func:`fit_block`.

    outputs (K, K, K): outputs[k, l] = output vector of every training instance
    of type (true class k, given label l), NaN for types with zero count;
    residual = max over present types of |P - softmax(logits(-g(P)))| (the
    fixed point of the full N x N problem restricted to type-symmetric
    solutions, which is exact since the optimum is unique for CE and the GCE
    Newton flow preserves type symmetry); iterations = Newton steps;
    fresh_logits (K, K): row k = logits [(c-d) R_k + d R_tot] / (N lam) of a
    fresh sample of class k (correlation c with class-k training instances, d
    with the rest); fresh_outputs = softmax of each row.
    """

    outputs: np.ndarray
    residual: float
    iterations: int
    fresh_logits: np.ndarray
    logits: np.ndarray
    loss: str = "ce"
    q: float = 0.7
    converged: bool = True

    @property
    def fresh_outputs(self) -> np.ndarray:
        return _softmax(self.fresh_logits.T).T


def fit_block(
    K,
    n,
    c,
    d,
    lam,
    counts,
    targets,
    *,
    loss: str = "ce",
    q: float = 0.7,
    init_logits=None,
    tol: float = DEFAULT_TOL,
    max_iter: int = _DEFAULT_MAX_ITER,
) -> BlockFit:
    """Exact fit on the block Gram model G = (1-c) I + (c-d) blockdiag(11^T) + d 11^T.

    Instances of the same type (true class k, given label l) have the same
    target (targets[k, l], a (K,) probability vector) and, at the solution, the
    same output. With r_tau = -g(P_tau) (CE: T_tau - P_tau) per type tau, count
    n_tau, R_k = sum_{tau in class k} n_tau r_tau and R_tot = sum_tau n_tau r_tau,
    the logits of a type-(k, l) instance are
    [(1-c) r_kl + (c-d) R_k + d R_tot] / (N lam).

    Method: unknowns u_tau (= r_tau at the solution), logits z = M u / (N lam)
    with the m x m type-mixing matrix M (m = number of present types); Newton's
    method with backtracking on the convex (CE) reduced objective
    N f(u) = sum_tau n_tau [loss(T_tau, softmax(z_tau)) + u_tau . z_tau / 2],
    whose Newton system is (I + D_H M / (N lam)) delta = -(u + g) (dense, K m
    unknowns). For GCE the same system with I replaced by (1 + tau) I, tau grown
    until delta is a descent direction, started from ``init_logits`` (the
    teacher's per-type logits (K, K, K), required then; for CE an optional warm
    start). ``counts`` (K x K ints, rows summing to n) are validated with
    theory.validate.check_label_counts; c, d with check_block_correlations.
    """
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    c, d = check_block_correlations(K, n, c, d)
    lam = check_positive("lam", lam)
    loss, q = _check_loss(loss, q)
    tol, max_iter = _check_tol(tol, max_iter)
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K})")
    targets = np.asarray(targets, dtype=np.float64)
    if targets.shape != (K, K, K):
        raise ValueError(f"targets has shape {targets.shape}, must be ({K}, {K}, {K})")
    ks, ls = np.nonzero(counts)
    Tm = targets[ks, ls].T.copy()  # (K, m)
    if not np.all(np.isfinite(Tm)):
        raise ValueError("targets has non-finite entries for a type with nonzero count, must be finite")
    _check_simplex_columns("targets (present types, as columns)", Tm)
    if loss == "gce" and init_logits is None:
        raise ValueError("init_logits == None, must be given (K, K, K) teacher logits for loss == 'gce'")
    N = K * n
    m = ks.size
    nm = counts[ks, ls].astype(np.float64)
    same = ks[:, None] == ks[None, :]
    Mh = ((1.0 - c) * np.eye(m) + ((c - d) * same + d) * nm[None, :]) / (N * lam)
    U0 = np.zeros((K, m))
    if init_logits is not None:
        Z0 = np.asarray(init_logits, dtype=np.float64)
        if Z0.shape != (K, K, K):
            raise ValueError(f"init_logits has shape {Z0.shape}, must be ({K}, {K}, {K})")
        Z0 = Z0[ks, ls].T
        if not np.all(np.isfinite(Z0)):
            raise ValueError("init_logits has non-finite entries for a type with nonzero count, must be finite")
        Z0 = Z0 - Z0.mean(axis=0, keepdims=True)  # softmax is shift invariant; see fit_features
        U0 = np.linalg.solve(Mh, Z0.T).T  # Z0 = U0 Mh^T
    U, P, res, it = _block_newton(Tm, nm, Mh, U0, loss, q, tol, max_iter)
    R = -_loss_derivatives(U @ Mh.T, Tm, loss, q)[1]
    outputs = np.full((K, K, K), np.nan)
    outputs[ks, ls] = P.T
    logits = np.full((K, K, K), np.nan)
    logits[ks, ls] = (U @ Mh.T).T
    Rn = R * nm[None, :]
    Rk = np.zeros((K, K))  # row k = R_k
    np.add.at(Rk, ks, Rn.T)
    fresh = ((c - d) * Rk + d * Rn.sum(axis=1)[None, :]) / (N * lam)
    return BlockFit(outputs, res, it, fresh, logits, loss, q)


def _block_newton(Tm, nm, Mh, U, loss, q, tol, max_iter):
    K, m = Tm.shape
    eps = np.finfo(float).eps
    Km = K * m
    convex = loss == "ce"
    eyeK = np.eye(K)[None]
    S = nm[:, None] * Mh  # diag(n) Mh, symmetric

    def objective(U, Z):
        logP = _log_softmax(Z)
        if convex:
            per = -(Tm * logP).sum(axis=0)
        else:
            per = (Tm * (1.0 - np.exp(q * logP))).sum(axis=0) / q
        return float(nm @ (per + 0.5 * (U * Z).sum(axis=0)))

    Z = U @ Mh.T
    f = objective(U, Z)
    it = 0
    while True:
        P, g, extra = _loss_derivatives(Z, Tm, loss, q)
        Fm = U + g  # Newton residual; zero at the solution
        # Fixed-point residual with the outputs P (logits of r = -g(P)); evaluated
        # once the Newton residual is small, since only then can it pass.
        res = np.inf
        if float(np.max(np.abs(Fm))) < 1e3 * tol or it >= max_iter:
            res = float(np.max(np.abs(P - _softmax(-g @ Mh.T))))
            if res <= tol:
                return U, P, res, it
        if it >= max_iter:
            raise NotConvergedError(f"fit_block ({loss}) did not reach tol == {tol:g}", res, it)
        it += 1
        # Per-type Hessians of the loss w.r.t. the logits, (m, K, K).
        Pt = P.T
        H = Pt[:, :, None] * eyeK - Pt[:, :, None] * Pt[:, None, :]
        if not convex:
            a, A = extra
            at = a.T
            H *= A[:, None, None]
            H -= q * at[:, :, None] * eyeK
            H += q * (Pt[:, :, None] * at[:, None, :] + at[:, :, None] * Pt[:, None, :])
            H -= (q * A)[:, None, None] * Pt[:, :, None] * Pt[:, None, :]
        # J[(tau, a), (sigma, b)] = delta + H_tau[a, b] Mh[tau, sigma]; unknowns ordered (type, class).
        J = (H[:, :, None, :] * Mh[:, None, :, None]).reshape(Km, Km)
        Fv = Fm.T.ravel()
        grad = Fm @ S  # gradient of N f w.r.t. U: S (g + U)
        shift = 1.0
        while True:
            Js = J.copy()
            Js.flat[:: Km + 1] += shift
            _, _, x, info = lapack.dgesv(Js, Fv)
            if info != 0:
                raise NotConvergedError(f"fit_block ({loss}): singular Newton system", res, it)
            delta = -x.reshape(m, K).T
            slope = float(np.vdot(grad, delta))
            if slope < 0 or convex:
                break
            shift *= 10.0
            if shift > 1e12:
                raise NotConvergedError(f"fit_block ({loss}): no descent direction", res, it)
        t = 1.0
        while True:
            Un = U + t * delta
            Zn = Un @ Mh.T
            fn = objective(Un, Zn)
            if fn <= f + _ARMIJO * t * slope + 16 * eps * abs(f):
                break
            t *= 0.5
            if t < 1e-12:
                raise NotConvergedError(f"fit_block ({loss}): line search failed", res, it)
        U, Z, f = Un, Zn, fn
