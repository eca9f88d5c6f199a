"""Routes of :func:`sims.engine.fit.solver.fit_gram` (kernel form); use them through ``sims.engine.fit.solver``.

* Preparation (:func:`prepare`): validation of G and, per route, the one-off
  work that every fit on the same G shares.
* Route "lowrank": pivoted Cholesky ``G = F F^T + S`` and the primal Newton
  solver on F, then exact-G Newton refinement if the dropped remainder S
  spoils the residual (:func:`fit_lowrank`).
* Route "dense": Newton's method on the kernel-space fixed point with
  preconditioned conjugate gradients (:func:`fit_dense`), for full-rank G.

Dense route in detail. With ``s = 1/(N lam)``, unknowns ``u = E v`` (K x N,
columns summing to zero; ``E`` an orthonormal basis of the zero-sum vectors)
and logits ``Z = u G s``, the solution is the zero of ``F(v) = v + E^T g(Z)``
(g = d loss / d z). Newton's method on F is Newton's method on the objective
``phi(v) = sum_i loss(T_i, softmax(Z_i)) + (s/2) <v, v G>`` (N times the ridge
objective with weights ``W = u s Phi``), whose gradient is ``s F G``; every step
is a backtracking (Armijo) line search on phi, so the iteration is globally
convergent for CE (convex). The Newton system ``x + Hr (x G s) = b``
(per-instance reduced Hessians ``Hr_i``, K-1 x K-1, PSD for CE) is solved
through the symmetric positive definite system ``(I + S K S) w = S K b`` with
``S = Hr^(1/2)``, ``K = s G`` and ``x = b - S w`` (push-through identity
``(I + H K)^-1 = I - S (I + S K S)^-1 S K``), by conjugate gradients
preconditioned with the exact inverse (Woodbury) of the same matrix for the
model ``G ~ a I + V (Lam - a I) V^T`` (top Ritz pairs of G from a randomized
subspace iteration; ``a`` the mean of the remaining spectrum from the trace).
For the exact block model (top K eigenpairs plus the flat rest ``1 - c``) the
preconditioner is exact; for a Gaussian-mixture Gram at large D the rest of the
spectrum is flat within ``(1 +- sqrt(N/D))^2`` and CG needs a few iterations.
GCE: per-instance Hessians may be indefinite; their negative eigenvalues are
clipped to zero (a positive semidefinite modification, so the Newton direction
stays a descent direction of phi; it alone converges only linearly). Once a
full step has been accepted, the exact Newton direction is tried first: GMRES
on the exact (indefinite) system, preconditioned by the clipped operator with
the spectral model in place of G; it is used when it is a descent direction.
Measured at N = 2000 (PLL student from the CE teacher): 11-23 Newton steps
instead of 45-76 with clipping alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from .newton import (
    PSD_TOL,
    SYM_TOL,
    _ARMIJO,
    NotConvergedError,
    _as_float_array,
    _assemble_hessian,
    _factor_hessian,
    _loss_derivatives,
    _loss_value,
    _primal_newton,
    _reduced_hessians,
    _softmax,
    _zero_sum_basis,
)

METHODS = ("auto", "dense", "lowrank")
# Ritz pairs of the preconditioner's model (the top of the spectrum): enough for
# the K - 1 + 1 separated eigenvalues of block/mixture Gram matrices with K <= 15.
_RITZ = 16
_SUBSPACE_MAXITER = 50
# Conjugate-gradient iterations per Newton step before the step is taken as is.
_CG_MAXITER = 300
_REFINE_MAXITER = 20


@dataclass
class Prepared:
    """G validated and prepared once for many fits (see ``sims.engine.fit.solver.prepare_gram``)."""

    G: np.ndarray  # (N, N), exactly symmetric
    method: str  # "dense" or "lowrank"
    rank: int  # N for "dense" (G passed Cholesky), pivoted-Cholesky rank for "lowrank"
    F: np.ndarray | None = field(default=None, repr=False)  # lowrank factor (N, rank)
    V: np.ndarray | None = field(default=None, repr=False)  # dense: Ritz vectors (N, r)
    lam_top: np.ndarray | None = field(default=None, repr=False)  # dense: Ritz values (r,)
    a: float = 0.0  # dense: level of the rest of the spectrum

    @property
    def N(self) -> int:
        return self.G.shape[0]


def validate(G) -> np.ndarray:
    """Square, finite, symmetric within SYM_TOL * max|G|, positive max diagonal; returns the symmetrised copy."""
    G = _as_float_array("G", G, 2)
    N = G.shape[0]
    if G.shape != (N, N) or N < 1:
        raise ValueError(f"G has shape {G.shape}, must be a square (N, N) Gram matrix")
    scale = float(np.max(np.abs(G)))
    asym = float(np.max(np.abs(G - G.T)))
    if asym > SYM_TOL * scale:
        raise ValueError(f"G is not symmetric: max|G - G^T| == {asym:.3g}, must be <= {SYM_TOL:g} * max|G| == {SYM_TOL * scale:.3g}")
    G = 0.5 * (G + G.T)
    dmax = float(np.max(np.diag(G)))
    if dmax <= 0:
        raise ValueError(f"G has max diagonal entry {dmax!r}, must be > 0 (a Gram matrix of nonzero features)")
    return G


def pivoted_factor(G):
    """Pivoted Cholesky G = F F^T + S (pivots below N eps max G_ii dropped); ValueError if S shows G is not PSD."""
    from scipy.linalg import lapack

    N = G.shape[0]
    dmax = float(np.max(np.diag(G)))
    piv_tol = N * np.finfo(float).eps * dmax
    L, perm, rank, info = lapack.dpstrf(G, lower=1, tol=piv_tol)
    if info < 0:
        raise RuntimeError(f"dpstrf failed with info == {info}")
    perm = perm - 1  # LAPACK is 1-based
    F = np.zeros((N, rank))
    F[perm, :] = np.tril(L[:, :rank])
    rest = perm[rank:]
    if rest.size:
        Fr = F[rest]
        S = G[np.ix_(rest, rest)] - Fr @ Fr.T
        smax = float(np.max(np.abs(S)))
        if smax > PSD_TOL * dmax:
            raise ValueError(
                f"G is not positive semidefinite: after pivoted Cholesky of rank {rank} the remainder has "
                f"an entry of size {smax:.3g}, must be <= {PSD_TOL:g} * max_i G_ii == {PSD_TOL * dmax:.3g}"
            )
    return F, rank


def _positive_definite(G) -> bool:
    """Whether LAPACK's (unpivoted) Cholesky of G succeeds, i.e. G is numerically positive definite."""
    from scipy.linalg import lapack

    _, info = lapack.dpotrf(G, lower=1, clean=0, overwrite_a=0)
    return info == 0


def prepare(G, method="auto") -> Prepared:
    """Validate G and do the one-off work of the chosen route.

    Rule for ``method="auto"``: "dense" if G is numerically positive definite
    (LAPACK Cholesky succeeds; full rank), else "lowrank" (pivoted Cholesky,
    which also checks positive semidefiniteness). ``method="dense"`` on a
    matrix that fails Cholesky checks PSD by pivoted Cholesky first.
    """
    if method not in METHODS:
        raise ValueError(f"method == {method!r}, must be one of {METHODS}")
    G = validate(G)
    N = G.shape[0]
    pd = method != "lowrank" and _positive_definite(G)
    if method == "auto":
        method = "dense" if pd else "lowrank"
    if method == "lowrank":
        F, rank = pivoted_factor(G)
        return Prepared(G, "lowrank", rank, F=F)
    rank = N
    if not pd:
        _, rank = pivoted_factor(G)  # validates PSD
    V, lam_top, a = _spectral_model(G)
    return Prepared(G, "dense", rank, V=V, lam_top=lam_top, a=a)


# One prepared matrix kept for the next call with an equal matrix (rounds of
# self-distillation call fit_gram with the same G): see prepare_cached.
_CACHE: list = []


def prepare_cached(G, method="auto") -> Prepared:
    """:func:`prepare`, reusing the last result if ``G`` is a float64 array equal to its (symmetrised) matrix.

    The check compares every entry (O(N^2), a few ms at N = 2000, against
    O(N^3) for preparing), so a modified or different matrix is never mistaken
    for the cached one; a matrix that is not exactly symmetric is prepared again.
    """
    if isinstance(G, np.ndarray) and G.dtype == np.float64 and _CACHE:
        prep, requested = _CACHE[0]
        if requested == method and G.shape == prep.G.shape and np.array_equal(G, prep.G):
            return prep
    prep = prepare(G, method)
    _CACHE[:] = [(prep, method)]
    return prep


def _spectral_model(G):
    """Top Ritz pairs (V, Lam) of G and the mean a of the rest of the spectrum (trace-based).

    Subspace iteration with _RITZ columns from a random start (fixed internal
    seed: a numerical device; the fits are exact whatever the model) and
    Rayleigh-Ritz at every step, until the pairs clearly above the rest
    (Lam > 2 a) have residual |G v - Lam v| <= 1e-12 max(Lam), at most
    _SUBSPACE_MAXITER steps. Pairs with Lam <= a are dropped (the model keeps
    a I there).
    """
    N = G.shape[0]
    k = min(_RITZ, N)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((N, k)))
    for _ in range(_SUBSPACE_MAXITER):
        Z = G @ Q
        w, U = np.linalg.eigh(0.5 * (Q.T @ Z + Z.T @ Q))
        V = Q @ U
        if k == N:  # the whole spectrum: the model is G itself
            a = 0.0
            break
        a = max((float(np.trace(G)) - float(w.sum())) / (N - k), 0.0)
        sep = w > 2.0 * a
        resid = np.linalg.norm(Z @ U[:, sep] - V[:, sep] * w[sep], axis=0)
        if np.all(resid <= 1e-12 * w[-1]):
            break
        Q, _ = np.linalg.qr(Z)
    # Pairs at the level a (or at round-off level of a singular G) carry no information.
    keep = w > a * (1.0 + 1e-9) + 1e-12 * max(float(w[-1]), 0.0)
    return np.ascontiguousarray(V[:, keep]), w[keep], a


# ----------------------------------------------------------------------------- lowrank route


def fit_lowrank(prep: Prepared, T, lam, loss, q, coef0, tol, max_iter):
    """Primal Newton on the pivoted-Cholesky factor, then exact-G refinement if needed.

    Returns (P, R = -g(P), residual, iterations, refinement_steps)."""
    G, F, rank = prep.G, prep.F, prep.rank
    K, N = T.shape
    E = _zero_sum_basis(K)
    scale = 1.0 / (N * lam)
    V0 = np.zeros((K - 1, rank)) if coef0 is None else E.T @ (coef0 @ F)

    def residual_factor(P, R):
        return float(np.max(np.abs(P - _softmax(((R @ F) @ F.T) * scale))))

    st = _primal_newton(F, T, lam, loss, q, V0, tol, max_iter, residual_factor, E)
    P, R = st.P, -st.g
    res = float(np.max(np.abs(P - _softmax((R @ G) * scale))))
    refine = 0
    if res > tol:
        P, R, res, refine = _refine_exact(G, F, T, lam, loss, q, E, st, tol, scale)
    return P, R, res, st.iterations + refine, refine


def _refine_exact(G, F, T, lam, loss, q, E, st, tol, scale):
    """Newton on u + g(u G s) = 0 (s = 1/(N lam)), started from the primal solution."""
    import scipy.linalg as sla

    from scipy.sparse.linalg import LinearOperator, gmres

    K, N = T.shape
    shape = (K, N)
    chol = None  # the primal's last factor may be stale; factor once at the start
    u = -st.g
    res = np.inf
    for step in range(_REFINE_MAXITER + 1):
        Z = (u @ G) * scale
        P, g, extra = _loss_derivatives(Z, T, loss, q)
        res = float(np.max(np.abs(P - _softmax((-g @ G) * scale))))
        if res <= tol:
            return P, -g, res, step
        if step == _REFINE_MAXITER:
            break
        Hr = _reduced_hessians(P, extra, q, E)
        if chol is None:
            chol = _factor_hessian(_assemble_hessian(F, Hr, N, lam), loss == "ce")

        def apply_DH(Y):  # block-diagonal Hessian D_H = E Hr E^T applied to Y (K x N)
            return E @ np.einsum("nab,bn->an", Hr, E.T @ Y)

        def matvec(v):
            d = v.reshape(shape)
            return (d + apply_DH((d @ G) * scale)).ravel()

        def precond(v):
            b = v.reshape(shape)
            Y = lam * sla.cho_solve(chol, ((E.T @ b) @ F).ravel(), check_finite=False).reshape(K - 1, -1)
            return (b - apply_DH(((E @ Y) @ F.T) * scale)).ravel()

        A = LinearOperator((K * N, K * N), matvec=matvec, dtype=float)
        M = LinearOperator((K * N, K * N), matvec=precond, dtype=float)
        Fu = (u + g).ravel()
        delta, _ = gmres(A, -Fu, M=M, rtol=1e-6, atol=0.0, restart=30, maxiter=5)
        u = u + delta.reshape(shape)
    raise NotConvergedError(f"fit_gram ({loss}): exact-G refinement did not reach tol == {tol:g}", res, st.iterations + _REFINE_MAXITER)


# ----------------------------------------------------------------------------- dense route


class _Precond:
    """Exact inverse of I + S K^ S for the model K^ = s (a I + V (Lam - a) V^T), K^ applied per class row.

    M^ = B + U C U^T with B_i = I + s a Hr_i (per instance), U z = S (z V^T),
    C = s (Lam - a) (diagonal, > 0); Woodbury:
    M^-1 = B^-1 - B^-1 U (C^-1 + U^T B^-1 U)^-1 U^T B^-1.
    """

    def __init__(self, Sq, evals, evecs, s, prep: Prepared):
        import scipy.linalg as sla

        self.Sq = Sq
        # B^-1 = Q diag(1 / (1 + s a w)) Q^T
        self.Binv = _spectral_apply(evecs, 1.0 / (1.0 + s * prep.a * evals))
        self.V = prep.V
        r = self.V.shape[1]
        Km = Sq.shape[1]
        self.r, self.Km = r, Km
        if r:
            # S B^-1 S = Q diag(w / (1 + s a w)) Q^T
            SBS = _spectral_apply(evecs, evals / (1.0 + s * prep.a * evals))
            V = self.V
            small = np.empty((Km, r, Km, r))
            for i in range(Km):  # U^T B^-1 U, block (i, j) = V^T diag(SBS[:, i, j]) V
                for j in range(i, Km):
                    small[i, :, j, :] = V.T @ (SBS[:, i, j][:, None] * V)
                    small[j, :, i, :] = small[i, :, j, :].T
            small = small.reshape(Km * r, Km * r)
            cinv = 1.0 / (s * (prep.lam_top - prep.a))
            small[np.diag_indices(Km * r)] += np.tile(cinv, Km)
            self.chol = sla.cho_factor(small, lower=True, check_finite=False)

    def __call__(self, x):
        import scipy.linalg as sla

        y = np.einsum("nab,bn->an", self.Binv, x)
        if not self.r:
            return y
        t = _apply(self.Sq, y) @ self.V  # U^T B^-1 x, (Km, r)
        z = sla.cho_solve(self.chol, t.ravel(), check_finite=False).reshape(self.Km, self.r)
        return y - np.einsum("nab,bn->an", self.Binv, _apply(self.Sq, z @ self.V.T))


def _spectral_apply(evecs, vals):
    """Per-instance Q diag(vals) Q^T from eigenvectors (N, m, m) and values (N, m)."""
    return (evecs * vals[:, None, :]) @ evecs.transpose(0, 2, 1)


def _apply(Bl, x):
    """Per-instance matrices Bl (N, m, m) applied to the columns of x (m, N)."""
    return np.einsum("nab,bn->an", Bl, x)


def _pcg(G, Sq, c, s, precond, target):
    """CG on (I + S (s G) S) w = c until |S r| <= target; returns (w, (S w) G, iterations, converged).

    Stopping rule: for x = b - S w the Newton-equation residual is
    ``x + H (x G s) - b = S r`` (r = c - M w the CG residual), so CG stops when
    that, not r, is small: x is a difference of nearly equal terms when s G is
    large, and a small relative r alone does not make x accurate.
    """
    w = np.zeros_like(c)
    SwG = np.zeros_like(c)
    r = c.copy()
    if float(np.linalg.norm(_apply(Sq, r))) <= target:
        return w, SwG, 0, True
    z = precond(r)
    p = z.copy()
    rz = float(np.vdot(r, z))
    for it in range(1, _CG_MAXITER + 1):
        SpG = _apply(Sq, p) @ G
        Ap = p + s * _apply(Sq, SpG)
        alpha = rz / float(np.vdot(p, Ap))
        w += alpha * p
        SwG += alpha * SpG
        r -= alpha * Ap
        if float(np.linalg.norm(_apply(Sq, r))) <= target:
            return w, SwG, it, True
        z = precond(r)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return w, SwG, _CG_MAXITER, False


def fit_dense(prep: Prepared, T, lam, loss, q, coef0, tol, max_iter):
    """Newton-PCG on the kernel-space fixed point (module docstring).

    Returns (P, R = -g(P), residual, newton_iterations, cg_iterations)."""
    G = prep.G
    K, N = T.shape
    E = _zero_sum_basis(K)
    s = 1.0 / (N * lam)
    eps = np.finfo(float).eps
    v = np.zeros((K - 1, N)) if coef0 is None else E.T @ (coef0 * (N * lam))
    Y = v @ G

    def phi(v, Y, Z):
        return _loss_value(Z, T, loss, q) + 0.5 * s * float(np.vdot(v, Y))

    Z = s * (E @ Y)
    f = phi(v, Y, Z)
    it = cg_total = 0
    full_step = False
    while True:
        P, g, extra = _loss_derivatives(Z, T, loss, q)
        Fr = v + E.T @ g
        FG = Fr @ G
        # Fixed-point residual with the outputs P: logits of -g(P) = E (v - Fr) are s E (Y - F G).
        res = float(np.max(np.abs(P - _softmax(s * (E @ (Y - FG))))))
        if res <= tol:
            # Y = v G is updated along the steps (Y + t dY); check with a fresh product, which is the
            # reported residual, and resynchronise Y if round-off drift made the estimate optimistic.
            R = -g
            res = float(np.max(np.abs(P - _softmax(s * (R @ G)))))
            if res <= tol:
                return P, R, res, it, cg_total
            Y = v @ G
            Z = s * (E @ Y)
            f = phi(v, Y, Z)
            P, g, extra = _loss_derivatives(Z, T, loss, q)
            Fr = v + E.T @ g
            FG = Fr @ G
        if it >= max_iter:
            raise NotConvergedError(f"fit_gram dense route ({loss}) did not reach tol == {tol:g}", res, it)
        it += 1
        Hr = _reduced_hessians(P, extra, q, E)
        evals, evecs = np.linalg.eigh(Hr)
        indefinite = bool(np.any(evals < 0))
        evals = np.maximum(evals, 0.0)  # exact for CE (PSD); PSD modification for GCE
        Sq = _spectral_apply(evecs, np.sqrt(evals))
        precond = _Precond(Sq, evals, evecs, s, prep)
        # Inexact Newton: relative accuracy eta = min(1e-2, |F|) of the Newton equation (superlinear).
        Fnorm = float(np.linalg.norm(Fr))
        eta = min(1e-2, Fnorm)
        slope = 0.0
        if indefinite and full_step:
            # GCE near a solution (the last step was a full one): the exact Newton direction by
            # GMRES, if it is a descent direction (quadratic convergence; the clipped one is linear).
            dv, n_mv = _exact_newton(G, Hr, Fr, s, Sq, precond, prep, eta)
            cg_total += n_mv
            if dv is not None:
                dY = dv @ G
                slope = s * float(np.vdot(Fr, dY))
        if not slope < 0:
            # Newton system x + Hr (x G s) = b, b = -Fr: x = b - S w, (I + S sG S) w = S (s b G).
            c = -s * _apply(Sq, FG)
            # Stop CG at eta |F|, or at the round-off level of S r (r is a difference of terms of size |c|).
            target = max(eta * Fnorm, 16 * eps * float(np.linalg.norm(_apply(Sq, c))))
            w, SwG, cg_it, _ = _pcg(G, Sq, c, s, precond, target)
            cg_total += cg_it
            dv = -Fr - _apply(Sq, w)
            dY = -FG - SwG
            slope = s * float(np.vdot(Fr, dY))
        if not slope < 0:  # not a descent direction: steepest descent (slope -s <F, F G> <= 0)
            dv, dY = -Fr, -FG
            slope = -s * float(np.vdot(Fr, FG))
        t = 1.0
        while True:
            vn, Yn = v + t * dv, Y + t * dY
            Zn = s * (E @ Yn)
            fn = phi(vn, Yn, Zn)
            if fn <= f + _ARMIJO * t * slope + 16 * eps * abs(f):
                break
            t *= 0.5
            if t < 1e-12:
                raise NotConvergedError(f"fit_gram dense route ({loss}): line search failed", res, it)
        full_step = t == 1.0
        v, Y, Z, f = vn, Yn, Zn, fn


_GMRES_RESTART = 20


def _exact_newton(G, Hr, Fr, s, Sq, precond, prep, eta):
    """GMRES for x + Hr (x G s) = -Fr with the exact (indefinite) Hessians.

    Preconditioner: the exact inverse of the same operator with the clipped
    Hessians S^2 and the model s (a I + V (Lam - a) V^T) for s G, i.e.
    y - S M^-1 (S Kh y) (push-through identity; no product with G). Returns
    (x or None if GMRES failed, number of products with G)."""
    from scipy.sparse.linalg import LinearOperator, gmres

    shape = Fr.shape
    size = Fr.size
    count = [0]

    def matvec(x):
        x = x.reshape(shape)
        count[0] += 1
        return (x + _apply(Hr, (x @ G) * s)).ravel()

    def model_k(y):
        return s * (prep.a * y + ((y @ prep.V) * (prep.lam_top - prep.a)) @ prep.V.T)

    def pre(y):
        y = y.reshape(shape)
        return (y - _apply(Sq, precond(_apply(Sq, model_k(y))))).ravel()

    A = LinearOperator((size, size), matvec=matvec, dtype=float)
    M = LinearOperator((size, size), matvec=pre, dtype=float)
    x, info = gmres(A, -Fr.ravel(), M=M, rtol=eta, atol=0.0, restart=_GMRES_RESTART, maxiter=3)
    if info < 0 or not np.all(np.isfinite(x)):
        return None, count[0]
    return x.reshape(shape), count[0]
