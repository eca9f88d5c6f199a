"""A primal solver for soft-target fits at scale: memory O(N D + N K + K D), no Hessian matrix.

It minimises the objective of :func:`.solver.fit_features` (see the module docstring of :mod:`.solver`)::

    f(W) = (1/N) sum_i loss(t_i, softmax(W x_i)) + (lam/2) ||W||_F^2

over the full K x D matrix ``W`` (the ridge makes f strictly convex in W for CE; rows of every
stationary W sum to zero, and a start with zero row mean keeps every iterate there), for CE and GCE
with soft targets. The exact Newton solvers of :mod:`.solver` assemble the (K-1) D x (K-1) D Hessian
and N per-instance Hessians; here only products with the Hessian are formed, at O(N D K) each.

Coordinates. The optimiser works on ``V`` with ``W = (V * s) U^T``: ``U`` the eigenvectors of the
feature covariance ``X^T X / N`` (estimated from at most 16 384 strided rows; eigenvalues ``c``),
``s = 1 / sqrt(kappa c + lam)`` and ``kappa`` the mean curvature of the softmax at the start point
(``(1 - |p|^2) / (K - 1)`` averaged over instances: 1/K at W = 0). In these coordinates the Hessian's
Kronecker model ``kappa I (x) C + lam I`` is the identity ("whiten"; "diag" uses the diagonal of C
instead, "none" s = 1; "auto" is "whiten" for D <= min(N, 4096), else "diag", so that the D x D
eigenbasis never exceeds the size of X). The ridge keeps its form, since U is orthogonal:
``||W||^2 = ||V * s||^2``. The map V -> W costs O(K D^2) per evaluation, against O(N D K) for the two
products with X; X itself is never copied (a read-only memory map works).

Method. A scipy.optimize.minimize optimiser on the flattened V with the analytic gradient: "lbfgs"
(L-BFGS-B) or "trust-ncg" / "trust-krylov" (trust-region Newton with ``hessp``, the exact Hessian-vector
product for CE and GCE, computed from the outputs P in O(N D K)), run until
``max |grad f(W)| <= max(gtol, h) * gscale``; then Newton-CG steps (the Newton system solved by
conjugate gradients with ``hessp`` to relative residual r, Armijo backtracking that judges a step by
its gradient where rounding hides its decrease in f) until the stopping rule holds. The CG is
hand-written (:func:`_pcg`) so that it keeps its directions' logits W X^T: a trial point's logits are
then the current ones plus a multiple of the step's, and its evaluation costs one product with X, not
two (measured at N = 50 000, D = 512, K = 100, with the settings of then: 49 products for the teacher
instead of 55, 31 instead of 37 for a warm round). For CE (K <= 256, whitened coordinates) the CG is
preconditioned by the class-block model of the Hessian of :mod:`.soft_blocks`, refreshed at every Newton
step, its instances grouped by the argmax of the current outputs, and updated L-BFGS-style by the last
10 pairs (p, H p) of the earlier steps' CG (:func:`_lmp_solve`), with h = 1e-2, r = 1e-1 (r the largest
rtol: the forcing below sets tighter ones near the optimum); otherwise it is not, with h = 1e-5, r = 1e-2
("newton_precondition"). With the class blocks an SD round's warm start (gradient lam W0, below h on the
benchmark) goes to the Newton steps at once, and the teacher after one L-BFGS-B iteration or none. A warm
start's logits take one product with X (they also give kappa); when its outputs are its targets to within
1e-3 gtol (an SD round), the gradient's data term, at most that times gscale, is left out of the first
evaluation (gradient lam W0, no second product); a point so evaluated is never returned.
Products with X at N = 50 000, D = 512, lam = 1e-4, noise 0.3 (benchmarks/bench_probe_solver.py; its
times, against scikit-learn's lbfgs in the same run, are in docs/benchmarks_probe_solver.md): K = 100,
teacher 24, each warm round 23 (before: h = r = 1e-3, groups by the targets' argmax, no CG pairs: 49 and
27-31); K = 10, teacher 34, warm rounds 26-29 (before 53 and 34-37). A warm round still costs about
as much as the teacher: its start is as far from its optimum, in Newton steps, as the teacher's
handover point. "auto" is "lbfgs": measured as
fast as the trust-region methods and never slower (benchmarks/bench_probe_solver.py). Memory: X, the targets and a
few K x N arrays, O(K D + D^2), plus K^3 for the class blocks.

Stopping rule (both must hold at the returned point; scipy's own tests are switched off):

* the gradient: ``max |grad f(W)| <= gtol * gscale`` with ``gscale = max_j (1/N) sum_i |x_ij|``, the
  largest value the data term's gradient can take anywhere (``|p_k - t_k| <= 1``, so
  ``|(P - T) X / N|_kj <= gscale``): gtol is relative to the scale of the objective's slope and
  independent of N and of the scale of the features;
* the outputs are within ``output_tol`` (max abs) of the optimum, by one of two estimates: the last
  Newton step changed them by at most output_tol (the change made by a Newton step estimates the
  distance of the outputs before the step from the optimum, so the returned outputs are closer than
  that); or, with the class blocks, the preconditioned Newton step at the returned point,
  linearised, changes them by at most output_tol / 2 (``predicted_change``: one product with X
  instead of a CG solve and an evaluation; on the benchmark's mixtures and the tests' problems it
  was 0.76-2.3x the true distance near the optimum, hence the factor 2). The same prediction sets
  CG's rtol for the next step: no tighter than the tolerance needs (output_tol / (4 x prediction)).

``max_iter`` bounds the optimiser's iterations plus the Newton steps; NotConvergedError otherwise.

The output-space fixed-point residual of :mod:`.solver`, ``max |P - softmax(-g(P) X X^T / (N lam))|``,
is computed at the returned point as ``((-g X) X^T) / (N lam)`` (without forming X X^T) and reported
next to both. It is the output change of the step ``-grad f / lam``, which for small lam is far longer
than the Newton step (for CE the Hessian is at least ``lam I``), so at an accurate solution it stays
well above the distance from the optimum (lam = 1e-4: residual 5e-10 at a distance of 5e-14): reported,
not the stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import hashlib

import numpy as np

# scipy (about 0.7 s to import) is imported inside the functions that solve, so that importing the engine,
# and every command's --help, stays fast.

from theory.validate import check_int, check_positive
from .newton import NotConvergedError, _as_float_array, _FLUSH_LOG, check_feature_problem
from .soft_blocks import MAX_CLASSES, ClassBlocks

__all__ = ["SoftFit", "fit_soft", "SOFT_METHODS", "PRECONDITIONERS", "NEWTON_PRECONDITIONERS"]

SOFT_METHODS = ("auto", "lbfgs", "trust-ncg", "trust-krylov")
PRECONDITIONERS = ("auto", "whiten", "diag", "none")
# "auto" whitens up to this many features (the D x D eigenbasis: 128 MB, an eigendecomposition of ~3 s).
_WHITEN_MAX_D = 4096
_DEFAULT_MAX_ITER = 5000
# Newton steps after the optimiser (each a CG solve of at most _CG_MAXITER Hessian products).
_NEWTON_STEPS = 12
_CG_MAXITER = 100
# The optimiser hands over to those Newton steps once max |grad f| <= max(gtol, handover) * gscale, and CG
# solves each Newton system to relative residual at most rtol. With the class-block preconditioner (CE,
# :mod:`.soft_blocks`) a CG iteration removes far more of the residual, so the Newton steps start much
# earlier (measured before the CG pairs below, D = 512, K = 100: teacher 29 products with X at N = 50 000; at
# N = 10 000, handover 1e-3: 35, 3e-3: 37, 1e-2: 30, Newton from W = 0: 42), and the first ones, far from the
# optimum, where the quadratic model is poor, need not be solved accurately (rtol 1e-1 instead of 1e-3 at
# N = 10 000: teacher 35 products instead of 37 at handover 1e-3; warm rounds from their start 26-28 instead
# of 32-34).
_HANDOVER = {"classes": 1e-2, "none": 1e-5}
_CG_RTOL = {"classes": 1e-1, "none": 1e-2}
NEWTON_PRECONDITIONERS = ("auto", "classes", "none")
# With the class blocks, the Newton steps also stop once the preconditioned step's predicted output change
# is at most this share of output_tol (module docstring), and CG's rtol never goes below _CG_RTOL_MIN.
_PREDICTED_SHARE = 0.5
_CG_RTOL_MIN = 1e-10
# With the class blocks, the preconditioner of a Newton step's CG (and of its prediction) is the blocks' inverse
# updated, as in L-BFGS, by the last this many pairs (p, H p) of the earlier steps' CG (:func:`_lmp_solve`): their
# Hessians differ little from the current one near the optimum, and the update makes the preconditioner exact on
# their directions. Measured at N = 50 000, D = 512: K = 100, teacher 24 products instead of 28, warm rounds 23
# instead of 25; K = 10, teacher 34 either way, warm rounds 26-29 instead of 28-31. Memory: 2 x 10 K x D arrays.
_CG_PAIRS = 10
# A trial point whose f cannot be told from the current one (_accept_step) may still be at most this many times
# the 16 eps |f| rounding allowance above it.
_ROUNDING_CAP = 64.0
# Rows of X checked for finiteness per block (a bounded temporary, also for a memory-mapped X).
_CHUNK = 8192
# The class blocks regroup the instances by the argmax of the outputs (:meth:`.ClassBlocks.regroup`) when more than
# this share of them changed group since the last grouping (a regrouping costs an O(D^3) eigendecomposition).
_REGROUP_SHARE = 0.01
# A warm start whose outputs are its targets (an SD round) to within this share of gtol: the data term of the
# gradient, at most max |P - T| gscale, is left out there (the gradient is lam W0), which saves one product.
_AT_TARGETS_SHARE = 1e-3


@dataclass(frozen=True)
class SoftFit:
    """Result of :func:`fit_soft`.

    W (K, D) weights; P (K, N) = softmax(W X^T), the training outputs (also ``outputs``);
    residual = max |P - softmax(-g(P) X X^T / (N lam))| (the fixed-point residual of
    :func:`.solver.fit_features`, computed without forming X X^T); gradient_norm = max |grad f(W)|;
    gradient_scale = the gscale of the stopping rule; output_change = max |P - P_prev| over the last
    Newton step; predicted_change = the class-block prediction of the outputs' distance from the optimum
    at the returned point (nan when not computed: no class blocks, or the last step's change decided);
    iterations = optimiser iterations; evaluations = evaluations of f and its gradient;
    hessian_products = Hessian-vector products; products = products of a K x D or K x N matrix with X
    (O(N D K) each, the solver's unit of cost: an evaluation takes two or one, a Hessian product two or one,
    the fixed-point residual one); converged is always True (otherwise
    NotConvergedError is raised); method = optimiser used; precondition = coordinates used;
    newton_precondition = preconditioner of the Newton steps' CG ("classes" or "none").
    """

    W: np.ndarray
    P: np.ndarray
    residual: float
    gradient_norm: float
    output_change: float
    iterations: int
    converged: bool
    loss: str
    q: float
    method: str
    precondition: str = "whiten"
    gradient_scale: float = 1.0
    evaluations: int = 0
    hessian_products: int = 0
    objective: float = field(default=float("nan"))
    newton_steps: int = 0
    newton_precondition: str = "none"
    predicted_change: float = float("nan")
    products: int = 0

    @property
    def outputs(self) -> np.ndarray:
        return self.P

    def logits(self, X_new) -> np.ndarray:
        """Logits W x for new points X_new (M, D); shape (K, M)."""
        X_new = _features("X_new", X_new)
        if X_new.shape[1] != self.W.shape[1]:
            raise ValueError(f"X_new has shape {X_new.shape}, must be (M, {self.W.shape[1]})")
        return (X_new @ self.W.T).T

    def predict_proba(self, X_new) -> np.ndarray:
        """softmax(W x) for new points X_new (M, D); shape (K, M)."""
        return _softmax_cols(np.ascontiguousarray(self.logits(X_new)))


def fit_soft(
    X,
    T,
    lam,
    *,
    loss: str = "ce",
    q: float = 0.7,
    W0=None,
    gtol: float = 1e-8,
    output_tol: float = 1e-9,
    max_iter: int = _DEFAULT_MAX_ITER,
    method: str = "auto",
    precondition: str = "auto",
    newton_precondition: str = "auto",
    blas_threads: int | None = 1,
) -> SoftFit:
    """Fit the linear softmax probe on features X (N, D) to soft targets T (K, N).

    Same objective, losses and conventions as :func:`.solver.fit_features` (``q`` for GCE); see the
    module docstring for the method and the stopping rule (``gtol`` on max |grad f| relative to
    ``max_j mean_i |x_ij|``, ``output_tol`` on the change of the training outputs made by the last
    Newton step). ``W0`` (K, D): the start (default zero); for CE a warm start (an SD round: the
    targets are the previous round's outputs ``fit.P``, ``W0`` its ``fit.W``), for GCE the
    initialisation (the teacher's weights); its row mean is removed first, as in fit_features.
    X may be a read-only (memory-mapped) float64 array: it is never copied. ``method``: "auto",
    "lbfgs", "trust-ncg", "trust-krylov"; ``precondition``: "auto", "whiten", "diag", "none" (module
    docstring); ``newton_precondition``: "auto" ("classes" for CE with K <= 256 and whitened coordinates,
    else "none"), "classes" (:mod:`.soft_blocks`; CE only), "none". ``max_iter`` bounds the optimiser's iterations plus the Newton steps;
    NotConvergedError is raised if the stopping rule is not met, ValueError (naming the parameter)
    for invalid input. ``blas_threads`` as in fit_features.
    """
    from .solver import limit_blas_threads

    with limit_blas_threads(blas_threads):
        return _fit_soft(X, T, lam, loss, q, W0, gtol, output_tol, max_iter, method, precondition,
                         newton_precondition)


def _features(name, X):
    """X as a float64 2-d array, without a copy when it already is one (memory-mapped arrays too)."""
    if isinstance(X, np.ndarray) and X.dtype == np.float64:
        if X.ndim != 2:
            raise ValueError(f"{name} has shape {X.shape}, must be a 2-d array")
        for start in range(0, X.shape[0], _CHUNK):
            if not np.all(np.isfinite(X[start:start + _CHUNK])):
                raise ValueError(f"{name} has non-finite entries, must be finite")
        return X
    return _as_float_array(name, X, 2)


def _fit_soft(X, T, lam, loss, q, W0, gtol, output_tol, max_iter, method, precondition, newton_precondition):
    X = _features("X", X)
    N, D, T, K, lam, loss, q = check_feature_problem(X, T, lam, loss, q)
    gtol = check_positive("gtol", gtol)
    output_tol = check_positive("output_tol", output_tol)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if method not in SOFT_METHODS:
        raise ValueError(f"method == {method!r}, must be one of {SOFT_METHODS}")
    if precondition not in PRECONDITIONERS:
        raise ValueError(f"precondition == {precondition!r}, must be one of {PRECONDITIONERS}")
    if newton_precondition not in NEWTON_PRECONDITIONERS:
        raise ValueError(f"newton_precondition == {newton_precondition!r}, must be one of {NEWTON_PRECONDITIONERS}")
    if W0 is not None:
        W0 = _as_float_array("W0", W0, 2)
        if W0.shape != (K, D):
            raise ValueError(f"W0 has shape {W0.shape}, must be ({K}, {D})")
        W0 = W0 - W0.mean(axis=0, keepdims=True)
    if method == "auto":
        method = "lbfgs"
    if precondition == "auto":
        precondition = "whiten" if D <= min(N, _WHITEN_MAX_D) else "diag"
    if newton_precondition == "classes" and loss != "ce":
        raise ValueError(f"newton_precondition == 'classes' with loss == {loss!r}: the class blocks model the "
                         "CE Hessian only")
    if newton_precondition == "classes" and precondition != "whiten":
        raise ValueError(f"newton_precondition == 'classes' with precondition == {precondition!r}: the class "
                         "blocks use the whitening's covariance")
    if newton_precondition == "auto":
        fits = loss == "ce" and K <= MAX_CLASSES and precondition == "whiten"
        newton_precondition = "classes" if fits else "none"
    prob = _Problem(X, T, lam, loss, q, precondition, W0, newton_precondition)
    return prob.solve(method, gtol, output_tol, max_iter)


# ----------------------------------------------------------------------------
# Softmax and losses, columns = instances
# ----------------------------------------------------------------------------
# Hand-written rather than scipy.special.log_softmax: in place (no temporaries of size N K beyond
# the ones kept) and with exp flushed to zero below 1e-300 (subnormals slow BLAS down several-fold).


def _log_softmax_cols(Z):
    """log softmax along columns (axis 0), overwriting Z."""
    Z -= Z.max(axis=0, keepdims=True)
    E = np.exp(Z)
    Z -= np.log(E.sum(axis=0, keepdims=True))
    return Z


def _flushed_exp(L):
    P = np.exp(L)
    P[L < _FLUSH_LOG] = 0.0
    return P


def _softmax_cols(Z):
    return _flushed_exp(_log_softmax_cols(Z))


def _log_softmax_and_softmax(Z):
    """(log softmax, softmax) along columns with one exp pass; Z is overwritten (it becomes the log)."""
    Z -= Z.max(axis=0, keepdims=True)
    P = np.exp(Z)
    P[Z < _FLUSH_LOG] = 0.0
    S = P.sum(axis=0, keepdims=True)
    P /= S
    Z -= np.log(S)
    return Z, P


class _Evaluation:
    """The loss and its derivatives at one point, columns = instances."""

    __slots__ = ("x", "f", "grad", "gW", "W", "P", "logP", "a", "A", "partial")


# Rows of X used for the covariance of the preconditioner (a strided subset: it only has to be close).
_COV_ROWS = 16384
_cov_cache: list = []  # [(digest of the rows used, (c, U))]: the last decomposition, for rounds on one X


def _covariance_eigh(X):
    """Eigenvalues and eigenvectors of X^T X / N from at most _COV_ROWS strided rows, cached."""
    import scipy.linalg as sla

    N = X.shape[0]
    step = -(-N // _COV_ROWS)
    Xs = np.ascontiguousarray(X[::step])
    key = (Xs.shape, hashlib.blake2b(Xs.data, digest_size=32).digest())
    if _cov_cache and _cov_cache[0][0] == key:
        return _cov_cache[0][1]
    C = Xs.T @ Xs
    C /= Xs.shape[0]
    c, U = sla.eigh(C, overwrite_a=True, check_finite=False)
    out = (np.maximum(c, 0.0), U)
    _cov_cache[:] = [(key, out)]
    return out


def _accept_step(f, f_new, decrease, gmax, gmax_new) -> bool:
    """Backtracking's acceptance of a trial point: Armijo (f_new <= f + 1e-4 decrease, ``decrease`` = t grad.step < 0)
    with room for round-off in f, ``16 eps |f|``; and, when the step's first-order decrease is itself below that
    round-off (f cannot tell the two points apart: near the optimum of a large problem, where f is a sum of N terms
    whose rounding exceeds 16 eps |f|), a smaller gradient instead, unless f rose by more than any rounding
    (_ROUNDING_CAP x that allowance). Hand-written: scipy's line searches take f at face value. Without the second
    rule a full Newton step near the optimum was rejected on rounding alone (N = 2e5, K = 100: f 2.1e-14 above,
    29 eps relative, while the gradient went from 1.8e-10 to 4.4e-14) and cut to 1/8, and a warm SD round took
    14 evaluations of f where the teacher took 7."""
    noise = 16.0 * np.finfo(float).eps * abs(f)
    if f_new <= f + 1e-4 * decrease + noise:
        return True
    return -decrease <= noise and f_new <= f + _ROUNDING_CAP * noise and gmax_new < gmax


class _Problem:
    def __init__(self, X, T, lam, loss, q, precondition, W0, newton_precondition="none"):
        self.X = X
        self.newton_precondition = newton_precondition
        self.T = T  # (K, N)
        self.N, self.D = X.shape
        self.K = T.shape[0]
        self.lam = lam
        self.loss = loss
        self.q = q
        self.precondition = precondition
        self.nfev = 0
        self.nhess = 0
        self.nprod = 0  # products of a K x D or K x N matrix with X (each O(N D K)), the unit of cost
        self._start_logits = None
        N = self.N
        # Largest value of the data term's gradient (stopping-rule scale), in row blocks.
        absmean = np.zeros(self.D)
        for start in range(0, N, _CHUNK):
            absmean += np.abs(X[start:start + _CHUNK]).sum(axis=0)
        self.gscale = float(np.max(absmean) / N) or 1.0

        B0 = np.zeros((self.K, self.D)) if W0 is None else W0
        # At W = 0 every output is 1/K and the mean curvature is exactly 1/K (no pass over X needed).
        kappa = 1.0 / self.K if W0 is None else self._start_curvature(B0)
        self.U = None
        if precondition == "whiten":
            c, self.U = _covariance_eigh(X)
            self.cov_eig = c
            self.s = 1.0 / np.sqrt(kappa * c + lam)
        elif precondition == "diag":
            c = np.zeros(self.D)
            for start in range(0, N, _CHUNK):
                Xb = X[start:start + _CHUNK]
                c += np.einsum("nd,nd->d", Xb, Xb)
            self.s = 1.0 / np.sqrt(kappa * c / N + lam)
        else:
            self.s = np.ones(self.D)
        self.V0 = self._to_V(B0) if W0 is not None else np.zeros((self.K, self.D))

    def _start_curvature(self, W):
        """The mean softmax curvature at the start W; its log-outputs are kept for the first evaluation."""
        logP = _log_softmax_cols(W @ self.X.T)
        self.nprod += 1
        P = _flushed_exp(logP)
        self._start_logits = logP
        k = float(np.mean(1.0 - np.einsum("kn,kn->n", P, P))) / (self.K - 1)
        return max(k, 1e-12)

    # V -> W = (V * s) U^T, and the gradient's pull-back (grad_W U) * s: O(K D^2) per evaluation,
    # against O(N D K) for the products with X, and no rotated copy of X.
    def _to_V(self, W):
        B = W @ self.U if self.U is not None else W
        return B / self.s

    def _to_W(self, V):
        B = V * self.s
        return B @ self.U.T if self.U is not None else B

    def _pull_back(self, gW):
        return (gW @ self.U if self.U is not None else gW) * self.s

    def evaluate(self, x, logits=None, at_targets=None):
        """f, its gradient and the outputs at V = x. ``logits``: the logits W X^T at x up to a shift per
        column (softmax ignores it), when the caller has them without a product with X (a Newton step's
        trial point: the last point's log-outputs plus t times the step's accumulated directional logits,
        :func:`_pcg`); they are overwritten. ``at_targets`` (CE, a warm start's first evaluation): when
        max |P - T| <= at_targets, the gradient's data term (P - T) X / N, at most at_targets x gscale, is left
        out (no product with X; ``partial`` is set, and a partial evaluation is never returned)."""
        ev = _Evaluation()
        ev.x = x.copy()
        W = self._to_W(x.reshape(self.K, self.D))
        if logits is None and not W.any():  # W = 0 (a cold start): the logits are zero, no product needed
            logits = np.zeros((self.K, self.N))
        elif logits is None:
            # (K, D) @ (D, N) with X^T a view: measured 1.3-1.6x faster with OpenBLAS than X @ W^T
            logits = W @ self.X.T
            self.nprod += 1
        logP, P = _log_softmax_and_softmax(logits)  # (K, N)
        T = self.T
        if self.loss == "ce":
            data = -float(np.vdot(T, logP))
            G = P - T
            ev.a = ev.A = None
        else:
            q = self.q
            Pq = _flushed_exp(q * logP)
            data = float(self.N - np.vdot(T, Pq)) / q
            a = T * Pq
            A = a.sum(axis=0)
            G = P * A - a
            ev.a, ev.A = a, A
        ev.f = data / self.N + 0.5 * self.lam * float(np.vdot(W, W))
        # CE at outputs within at_targets of the targets: the data term, at most max |P - T| gscale, left out
        ev.partial = at_targets is not None and self.loss == "ce" and float(np.max(np.abs(G))) <= at_targets
        if ev.partial:
            ev.gW = self.lam * W
        else:
            ev.gW = (G @ self.X) / self.N + self.lam * W
            self.nprod += 1
        ev.grad = self._pull_back(ev.gW).ravel()
        ev.W, ev.P, ev.logP = W, P, logP
        self.nfev += 1
        return ev

    def direction_logits(self, x_dir):
        """The directional logits S X^T (K, N) of a direction x_dir (flattened V), S = its W."""
        self.nprod += 1
        return self._to_W(x_dir.reshape(self.K, self.D)) @ self.X.T

    def hessp(self, ev, x_dir, Ud=None):
        """Hessian of f (in V) applied to the direction x_dir (flattened V); ``Ud``: its directional
        logits when already known (:meth:`direction_logits`), else computed (and not kept)."""
        self.nhess += 1
        S = self._to_W(x_dir.reshape(self.K, self.D))
        if Ud is None:
            Ud = S @ self.X.T  # (K, N): directional logits
            self.nprod += 1
        P = ev.P
        pu = np.einsum("kn,kn->n", P, Ud)
        Y = Ud - pu  # (diag p - p p^T) u, per instance, in one K x N array
        Y *= P
        if self.loss == "gce":
            q, a, A = self.q, ev.a, ev.A
            au = np.einsum("kn,kn->n", a, Ud)
            Y *= A
            Y -= q * a * Ud
            Y += q * (P * au + a * pu)
            Y -= q * A * P * pu
        HW = (Y @ self.X) / self.N + self.lam * S
        self.nprod += 1
        return self._pull_back(HW).ravel()

    def solve(self, method, gtol, output_tol, max_iter):
        import scipy.optimize as sopt

        # the last evaluations: L-BFGS-B asks for f and grad at the same point (one kept), the trust-region methods
        # also for hessp at the last accepted point while they try another (two kept); each holds K x N arrays
        cache = []
        keep = 1 if method == "lbfgs" else 2

        def lookup(x):
            for ev in reversed(cache):
                if np.array_equal(ev.x, x):
                    return ev
            logits, self._start_logits = self._start_logits, None  # the warm start's, at x0 only
            ev = self.evaluate(x, logits, None if logits is None else _AT_TARGETS_SHARE * gtol)
            cache.append(ev)
            del cache[:-keep]
            return ev

        state = {"change": np.inf, "it": 0, "ev": None, "gmax": np.inf, "done": False}
        gtarget = gtol * self.gscale
        handover = max(gtol, _HANDOVER[self.newton_precondition]) * self.gscale

        def check(x):
            ev = lookup(x)
            state["ev"] = ev
            state["gmax"] = self._gradient_max(ev)
            state["done"] = state["gmax"] <= handover
            return state["done"]

        def callback(intermediate_result):
            state["it"] += 1
            if check(intermediate_result.x):
                raise StopIteration

        fun = lambda x: lookup(x).f  # noqa: E731
        jac = lambda x: lookup(x).grad  # noqa: E731
        x0 = self.V0.ravel()
        if not check(x0):
            if method == "lbfgs":
                res = sopt.minimize(fun, x0, jac=jac, method="L-BFGS-B", callback=callback,
                                    options={"maxiter": max_iter, "maxfun": 20 * max_iter, "maxcor": 20,
                                             "ftol": 0.0, "gtol": 0.0, "maxls": 40})
            else:
                hessp = lambda x, p: self.hessp(lookup(x), p)  # noqa: E731
                res = sopt.minimize(fun, x0, jac=jac, hessp=hessp, method=method, callback=callback,
                                    options={"maxiter": max_iter, "gtol": 0.0})
            if not state["done"]:  # scipy stopped on its own (a line search at round-off, or maxiter)
                check(res.x)
        budget = max_iter - state["it"]
        cache.clear()  # only the last point is kept: memory for the Newton steps
        # popped: the Newton steps hold the only reference, so each point's K x N arrays go once it is left
        ev, newton, change, predicted = self._newton_finish(state.pop("ev"), state["change"], gtarget, output_tol,
                                                            budget)
        if ev.partial:  # the warm start is returned: its gradient in full
            ev = self.evaluate(ev.x)
        gmax = self._gradient_max(ev)
        near = change <= output_tol or predicted <= _PREDICTED_SHARE * output_tol  # nan compares False
        state.update(ev=ev, change=change, gmax=gmax, done=gmax <= gtarget and near)
        state["it"] += newton
        W = ev.W
        gradient_norm = float(np.max(np.abs(ev.gW)))
        Zr = (W - ev.gW / self.lam) @ self.X.T  # (-g X) X^T / (N lam), as W - grad f / lam
        self.nprod += 1
        residual = float(np.max(np.abs(ev.P - _softmax_cols(Zr))))
        if not state["done"]:
            raise NotConvergedError(
                f"fit_soft ({self.loss}, {method}) did not reach gtol == {gtol:g} (max |grad| "
                f"{state['gmax']:.3e} vs {gtarget:.3e}) and output_tol == {output_tol:g} (output change "
                f"{state['change']:.3e}, predicted {predicted:.3e})", residual, state["it"])
        return SoftFit(W, ev.P, residual, gradient_norm, state["change"],
                       state["it"], True, self.loss, self.q, method, self.precondition, self.gscale,
                       self.nfev, self.nhess, ev.f, newton, self.newton_precondition, predicted, self.nprod)

    def _class_blocks(self, P):
        """The class-block model (:mod:`.soft_blocks`) in the whitened coordinates' basis, the instances grouped
        by the argmax of the outputs P."""
        U = self.U
        cov = (U * self.cov_eig) @ U.T
        blocks = ClassBlocks(self.X, P, cov, self.lam)
        self._rotation = U.T @ blocks.E  # V-side rows (r / s) U^T E = (r / s) F
        return blocks

    def _block_solve(self, blocks, r):
        """The block model's inverse in V coordinates: M_V^-1 r = J^-1 M_W^-1 J^-T r, J: V -> W = (V s) U^T."""
        F = self._rotation
        Z = blocks.solve_rotated((r.reshape(self.K, self.D) / self.s) @ F)
        return ((Z @ F.T) / self.s).ravel()

    def _gradient_max(self, ev):
        """max |grad f(W)|."""
        return float(np.max(np.abs(ev.gW)))

    def _predicted_change(self, ev, blocks, pairs=()):
        """max |dP| of the preconditioned Newton step at ev, linearised: dP = (diag p - p p^T) (dW x).

        dW = M^-1 (-grad f) with M the class-block model (refreshed at ev.P), updated by the CG ``pairs`` of
        the earlier steps (:func:`_lmp_solve`). One product with X and
        one application of M^-1, against a Newton step's CG solve and evaluation. Returns (the prediction,
        the direction M^-1 (-grad f) in V and its directional logits): preconditioned CG's first direction,
        so that its first Hessian product needs one product with X instead of two (:func:`_pcg`).
        """
        if blocks.regroup(ev.P, _REGROUP_SHARE):
            self._rotation = self.U.T @ blocks.E
        blocks.refresh(ev.P)
        z = _lmp_solve(lambda r: self._block_solve(blocks, r), pairs, -ev.grad)
        Ud = self.direction_logits(z)
        dP = Ud - np.einsum("kn,kn->n", ev.P, Ud)[None, :]
        dP *= ev.P
        return float(np.max(np.abs(dP))), (z, Ud)

    def _newton_finish(self, ev, change, gtarget, output_tol, budget):
        """Newton steps from the optimiser's last point until the outputs are within output_tol.

        Each step solves H s = -grad (in V coordinates, where H is close to the identity) by conjugate
        gradients (:func:`_pcg`, Hessian-vector products only) and is taken if f does not
        increase beyond round-off. Its output change max |P(W + s) - P(W)| estimates the distance of
        the outputs before the step from the optimum (to second order); with the class blocks, the
        prediction of :meth:`_predicted_change` at each point may end the steps first and sets CG's rtol
        (module docstring). Trial points get their logits from CG's accumulated directional logits, so a
        step's evaluation costs one product with X (the gradient), not two. Hand-written because no scipy
        optimiser stops on a rule in output space. At most ``budget`` steps (the optimiser's
        iterations left). Returns (evaluation, steps taken, output change of the last step, the
        predicted change at the returned point or nan).
        """
        steps = 0
        blocks = self._class_blocks(ev.P) if self.newton_precondition == "classes" else None
        rtol = _CG_RTOL[self.newton_precondition]
        predicted = np.nan
        pairs = []  # (p, H p, 1 / p^T H p) of the earlier steps' CG, the last _CG_PAIRS (class blocks only)
        for _ in range(min(_NEWTON_STEPS, budget)):
            M = None
            first = None
            rtol_k = rtol
            if blocks is not None:
                predicted, first = self._predicted_change(ev, blocks, pairs)  # also refreshes the blocks at ev.P
                if predicted <= _PREDICTED_SHARE * output_tol and self._gradient_max(ev) <= gtarget:
                    break
                # Forcing: CG removes about as much of the outputs' distance as of its residual, so ask
                # for what the tolerance needs, never less than the distance itself (the quadratic term).
                rtol_k = min(rtol, max(predicted, output_tol / (4.0 * predicted), _CG_RTOL_MIN))
                M = lambda r, old=pairs: _lmp_solve(lambda q: self._block_solve(blocks, q), old, r)  # noqa: E731
            new_pairs = [] if blocks is not None else None
            step, Ustep = _pcg(lambda v, Ud=None, ev=ev: self.hessp(ev, v, Ud), self.direction_logits,
                               -ev.grad, M, rtol_k, _CG_MAXITER, first, new_pairs)
            if new_pairs:
                pairs = (pairs + new_pairs)[-_CG_PAIRS:]
            first = None  # its K x N logits are not needed any more (memory)
            predicted = np.nan  # it described the point before the step
            slope = float(np.vdot(ev.grad, step)) if step is not None else np.nan
            if not slope < 0:  # CG met negative curvature at once (a nonconvex loss): steepest descent
                step, Ustep, slope = -ev.grad, None, -float(np.vdot(ev.grad, ev.grad))
            t = 1.0
            logits = None
            if Ustep is not None:  # the trial's logits ev.logP + Ustep, built in Ustep's own array (memory)
                logits, Ustep = Ustep, None
                logits += ev.logP
            while True:  # Armijo backtracking, with room for round-off in f near the optimum (_accept_step)
                new = self.evaluate(ev.x + t * step, logits)
                if _accept_step(ev.f, new.f, t * slope, self._gradient_max(ev), self._gradient_max(new)):
                    break
                t *= 0.5
                if t < 1e-3:
                    new = None
                    break
                if logits is not None:
                    # half the step: ev.logP + t Ustep = (ev.logP + new.logP) / 2 up to a shift per column, which
                    # softmax ignores (new.logP = ev.logP + 2 t Ustep minus its log-normaliser)
                    logits = new.logP
                    logits += ev.logP
                    logits *= 0.5
            logits = None
            if new is None:
                break
            change = float(np.max(np.abs(new.P - ev.P)))
            ev = new
            steps += 1
            if change <= output_tol and self._gradient_max(ev) <= gtarget:
                break
        else:
            if blocks is not None and steps:  # the budget ended after a step: describe the returned point
                predicted = self._predicted_change(ev, blocks, pairs)[0]
        return ev, steps, change, predicted


def _lmp_solve(M, pairs, r):
    """The preconditioner M^-1 (a function) updated by the pairs (s, y = H s, 1 / s^T y), applied to r.

    L-BFGS's two-loop recursion with M^-1 as its initial inverse (a limited-memory preconditioner for a
    sequence of linear systems, Morales and Nocedal 2000): symmetric positive definite when M is and every
    s^T y > 0, and it maps y to s for the last pair (for CG's H-conjugate directions: for every pair, when
    H is the one they came from). O(len(pairs) K D) per application, no product with X."""
    if not pairs:
        return M(r)
    q = r.copy()
    alphas = []
    for sv, yv, rho in reversed(pairs):
        a = rho * float(np.vdot(sv, q))
        q -= a * yv
        alphas.append(a)
    z = M(q)
    for (sv, yv, rho), a in zip(pairs, reversed(alphas)):
        z += (a - rho * float(np.vdot(yv, z))) * sv
    return z


def _pcg(hessp, direction_logits, b, M, rtol, maxiter, first=None, pairs=None):
    """Preconditioned conjugate gradients for H s = b from s = 0, stopped at |r| <= rtol |b| or maxiter.

    ``hessp(v, Ud)`` is H v given v's directional logits Ud; ``direction_logits(v)`` computes them (one
    product with X); ``M(r)`` the preconditioner's inverse (None: none); ``first`` = (M^-1 b, its logits)
    when already computed; ``pairs`` (a list, optional) gets (p, H p, 1 / p^T H p) of every direction with
    positive curvature (:func:`_lmp_solve`). Returns (s, the directional logits of s: sum_i alpha_i Ud_i, accumulated at
    O(K N) per iteration), or (None, None) when the first direction has no positive curvature; later
    negative curvature ends CG with the descent direction built so far (truncated Newton-CG).
    Hand-written rather than scipy.sparse.linalg.cg: that one does not return the search directions, and
    their logits are what saves a Newton step's trial point one product with X (:meth:`_Problem.evaluate`).
    """
    bnorm = float(np.linalg.norm(b))
    s = np.zeros_like(b)
    Us = None
    r = b.copy()
    z, Ud = first if first is not None else ((M(r) if M is not None else r.copy()), None)
    first = None  # the caller's reference is the only other one: Ud is freed after its product (memory)
    p = z
    rz = float(np.vdot(r, z))
    for i in range(maxiter):
        if Ud is None:
            Ud = direction_logits(p)
        Hp = hessp(p, Ud)
        curvature = float(np.vdot(p, Hp))
        if not curvature > 0:
            return (None, None) if i == 0 else (s, Us)
        alpha = rz / curvature
        if pairs is not None:  # p and Hp are not changed in place below (p is rebound)
            pairs.append((p, Hp, 1.0 / curvature))
        s += alpha * p
        if Us is None:
            Us = alpha * Ud
        else:
            Us += alpha * Ud
        r -= alpha * Hp
        if float(np.linalg.norm(r)) <= rtol * bnorm:
            break
        z = M(r) if M is not None else r.copy()
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
        Ud = None
    return s, Us
