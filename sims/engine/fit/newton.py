"""Numerical pieces shared by the exact solvers of :mod:`.solver` and the Gram routes of :mod:`.gram`:
tolerances, validation of targets and losses, softmax and the losses' derivatives, per-instance
reduced Hessians, the fixed-point residual and the damped primal Newton iteration (see :mod:`.solver`
for the problem and the conventions)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from theory.validate import check_int, check_positive, check_real

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


def _as_float_array(name, value, ndim, finite=True):
    """A float64 copy of ``value`` with ``ndim`` dimensions, finite unless ``finite`` is False (NaN placeholders)."""
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: callers' arrays are never modified
    except (TypeError, ValueError):
        raise ValueError(f"{name} == {value!r}, must be an array of real numbers") from None
    if arr.ndim != ndim:
        raise ValueError(f"{name} has shape {arr.shape}, must be a {ndim}-d array")
    if finite and not np.all(np.isfinite(arr)):
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
        raise ValueError(f"column {i} of {name} sums to {float(sums[i])!r}, must sum to 1 (within {SIMPLEX_TOL})")


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
    # optimize=True lets einsum contract pairwise through BLAS; the plain three-operand loop is ~40x slower at K = 100
    Hr = np.einsum("ka,nk,kb->nab", E, Pt, E, optimize=True) - EP[:, :, None] * EP[:, None, :]
    if extra is None:
        return _flush_small(Hr)
    a, A = extra
    at = a.T
    Ea = at @ E
    Hr *= A[:, None, None]
    Hr -= q * np.einsum("ka,nk,kb->nab", E, at, E, optimize=True)
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
    import scipy.linalg as sla

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
    import scipy.linalg as sla

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
    import scipy.linalg as sla

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


def check_feature_problem(X, T, lam, loss, q):
    """The checked pieces of a fit on features X (a float64 (N, D) array): (N, D, T, K, lam, loss, q), T as
    (K, N) targets on the simplex; ValueError naming the parameter otherwise."""
    N, D = X.shape
    if N < 1 or D < 1:
        raise ValueError(f"X has shape {X.shape}, must have at least one row and one column")
    T = _check_targets(T, N)
    lam = check_positive("lam", lam)
    loss, q = _check_loss(loss, q)
    return N, D, T, T.shape[0], lam, loss, q
