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
  within stated tolerances); two routes (implementation in ``sims.engine.fit.gram``):
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
import functools
from dataclasses import dataclass

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from theory.validate import (
    check_block_correlations,
    check_int,
    check_label_counts,
    check_positive,
)
from .newton import (
    check_feature_problem,
    DEFAULT_TOL,
    NotConvergedError,
    PSD_TOL,  # noqa: F401  (re-exported: the tolerances of the validation of G)
    SYM_TOL,  # noqa: F401
    _ARMIJO,
    _DEFAULT_MAX_ITER,
    _as_float_array,
    _check_loss,
    _check_simplex_columns,
    _check_targets,
    _check_tol,
    _log_softmax,
    _loss_derivatives,
    _primal_newton,
    _softmax,
    _zero_sum_basis,
    _loss_value,  # noqa: F401  (re-exported for the tests of the losses)
    LOSSES,
    SIMPLEX_TOL,
    fixed_point_residual,
)
from . import gram as _gram
from .gram import Prepared as PreparedGram

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
    with limit_blas_threads(blas_threads):
        return _fit_features(X, T, lam, loss, q, W0, tol, max_iter)


def limit_blas_threads(threads: int | None):
    """Context manager: at most ``threads`` BLAS threads inside (None: leave as set).

    scipy's linear algebra is loaded first: threadpoolctl limits only the libraries already loaded, and
    scipy brings its own OpenBLAS, which the engine imports lazily. Without that, a first solve inside the
    block would load it unlimited, and the main process (--jobs 1) would sum in a different order than a
    one-thread worker."""
    if threads is None:
        return contextlib.nullcontext()
    threads = check_int("blas_threads", threads, minimum=1)
    return _blas_controller().limit(limits=threads, user_api="blas")


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """One threadpoolctl controller per process, made after scipy's BLAS is loaded.

    ``threadpool_limits`` rescans the process's shared libraries at every call (about 6 ms here); the
    protocol makes thousands of fits, each inside a limit, and the rescan was a quarter of its time. The
    libraries do not change after scipy.linalg is imported, so one scan serves every later limit."""
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS so that the controller covers it)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _fit_features(X, T, lam, loss, q, W0, tol, max_iter):
    X = _as_float_array("X", X, 2)
    N, D, T, K, lam, loss, q = check_feature_problem(X, T, lam, loss, q)
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
    return _gram.prepare(G, method)


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
      CG iteration, no factorisation (details in ``sims.engine.fit.gram``). For GCE
      the per-instance Hessians' negative eigenvalues are clipped (modified
      Newton, still a descent method).

    ``coef0`` (K x N) gives the starting weights W0 = coef0 Phi (for GCE the
    teacher's coef; for CE a warm start). ``blas_threads`` as in :func:`fit_features`.
    """
    with limit_blas_threads(blas_threads):
        return _fit_gram(G, T, lam, loss, q, coef0, tol, max_iter, method)


def _fit_gram(G, T, lam, loss, q, coef0, tol, max_iter, method):
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
    # absent types may hold NaN placeholders (the outputs of a previous round): only present types are checked
    targets = _as_float_array("targets", targets, 3, finite=False)
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
        Z0 = _as_float_array("init_logits", init_logits, 3, finite=False)
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
    from scipy.linalg import lapack

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
