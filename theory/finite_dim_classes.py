"""Linearised self-distillation on Gaussian classes with measured means and a shared covariance.

Model: N = K n training points, class-major, x_i = mu_{k(i)} + xi_i with xi_i ~ N(0, Sigma) i.i.d., for any
class means mu_k (rows of ``means``, K x D) and any covariance Sigma (D x D, positive semi-definite). It
extends :mod:`theory.finite_dim`, whose mixture has its means (almost) orthogonal to an isotropic noise, to
real features such as the digits, whose class means lie inside the noise's own span: there the Gram
G = X X^T is an information-plus-noise matrix and its class-mean filters are not those of
:func:`theory.finite_dim.spike_filters`. Linearised SD (as in :mod:`theory.finite_dim`, mu = K N lambda):
training outputs P_t = U + (Y - U) f_s(G), f_s(x) = (x / (x + mu))^s, s = t + 1; a fresh x gets
U + R_s x with the weights R_s = (Y - U) X h_s(X^T X), h_s(x) = x^(s-1) / (x + mu)^s (f_s(G) = h_s(G) G, so
a training output is U + R_s x_i too).

Derivation
----------
1. Deterministic equivalent of the resolvent (information plus separable noise; the form of Hachem,
   Loubaton and Najim 2007 for X = M + W Sigma^(1/2), M = J mu the class-mean rows, J (N x K) the true-class
   indicators, W i.i.d. N(0, 1)): for z off the spectrum
       E (G - z)^-1 ~ T = [-z (1 + dt) I_N + M (I + d Sigma)^-1 M^T]^-1,
       E (X^T X - z)^-1 ~ Tt = [-z (I + d Sigma) + M^T M / (1 + dt)]^-1,
   with d = tr T and dt = tr(Sigma Tt) solved jointly. M = J mu makes both rank-K updates, solved by Woodbury
   in Sigma's eigenbasis at O(K^2 D) per node:
       T = I / a - J Psi J^T,  a = -z (1 + dt),  Psi = Om (a I + n Om)^-1 / a,  Om = mu (I + d Sigma)^-1 mu^T.
   Checks: Sigma = 0 gives T = (M M^T - z)^-1 exactly; M = 0 gives Silverstein's equation of
   :mod:`theory.finite_dim_aniso` with m -> N (``tests/theorems/test_finite_dim_classes.py``).
2. Training output means. f_s(G) = -(1 / 2 pi i) contour-integral f_s(z) (G - z)^-1 dz, so
   E f_s(G) ~ phi_s I + J Psi_s J^T, phi_s = -(1/2 pi i) int f_s / a dz, Psi_s = (1/2 pi i) int f_s Psi dz, and a
   class-k instance given label l has mean output U + phi_s (e_l - U) + sum_k' n Psi_s[k, k'] (C_k' - U)
   (C = counts / n). Y is independent of the features, so these are bilinear forms of deterministic vectors.
3. Weights. Q X = X (X^T X - z)^-1 and Sherman-Morrison on row i give E[(G - z)^-1 X] ~ M Tt / (1 + dt) (the
   O(1/n) term mu_k^T Tt mu_k of the denominator and the O(1/D) correlation of numerator and denominator are
   dropped), hence E R_s ~ Rbar_s = A mu Ht_s, A = (Y - U) J (A[r, k'] = n (C_k'r - 1/K)),
   Ht_s = -(1/2 pi i) int h_s Tt / (1 + dt) dz. The fresh mean output of class k is U + Rbar_s mu_k.
4. Fluctuations, Gaussian, the same for every type apart from the within-class term:
   * the instance's own noise along the weights: R_s xi has covariance ~ Rbar_s Sigma Rbar_s^T. This is zero in
     the mixture (its weights lie in the mean span, orthogonal to the noise) and the leading term for digits;
   * the within-class (E^perp) Haar term of :mod:`theory.finite_dim` step 4 with the law of Z Sigma Z^T
     (as :func:`theory.finite_dim_aniso.aniso_within_spectrum`, on this module's contour): training kappa_s [(1 - 1/n) Gamma + (1 - 2/m) u u^T],
     u = e_l - C_k; fresh tau_s Gamma with tau_s = (1/m) E tr[h_s(A)^2 Z Sigma^2 Z^T] = -(1/2 pi i) int h_s^2 w dz,
     w(z) = sum_a sigma_a^2 u(z) / (1 + m sigma_a u(z)) (Sherman-Morrison on the columns of Z; u the Stieltjes
     transform of Silverstein's equation);
   * neglected: the class means' estimation noise in the weights (O(1/n) against the first term), the
     E <-> E^perp cross terms beyond the first term, and the O(1/n) correlations between instances.
   Accuracy: P(own output is the strict maximum) by :func:`theory.finite_dim.orthant_probability`; training
   accuracy sums over types with the counts, fresh accuracy averages over classes (balanced test classes).

Numerics. Contour: the circle through -mu/2 and 1.5 times a bound of the spectrum's top
((sqrt(n ||mu mu^T||) + sqrt(N ||Sigma||) + sqrt(tr Sigma))^2), nodes clustered near -mu/2 as in
:mod:`theory.finite_dim_aniso`; at each node (d, dt) by fixed-point iteration from 0, damped by 1/2 once a step grows (the fixed-point
residual, the largest change of the last iteration relative to the iterate, is reported; RuntimeError above
1e-12). The trapezoid rule doubles from 256 nodes until two node counts agree within ``tol`` and the mass
-(1/2 pi i) int tr T dz / N = 1 holds within ``tol`` (``quadrature_error``). Orthant probabilities to ``prob_tol``
(``probability_error``).

Domain, measured (tests/theorems/test_finite_dim_classes.py and P6's finite-D level): against Monte Carlo on
Gaussian classes with the digits' means and pooled covariance (K = 10, n = 120, D = 64, lambda = 5e-4) the
training output means agree within the Monte Carlo error (rms z-score 1.0), the output variances within a few
per cent in the median, the training and fresh accuracies within about 2 points. Real digits are not Gaussian
classes: P6 reports how far they are. ``import theory.finite_dim_classes`` imports numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._generated import haar_bracket, haar_kappa, within_part
from .finite_dim import orthant_probability
from .finite_dim_aniso import contour_nodes, silverstein_stieltjes
from .validate import check_array, check_int, check_label_counts, check_positive, check_rounds, check_spectrum

__all__ = ["ClassesFilters", "ClassesPrediction", "classes_filters", "classes_prediction", "classes_resolvent"]

_MAX_NODES = 1 << 14
_FIXED_POINT_ITERS = 5000
_FIXED_POINT_TOL = 1e-14
# damped fixed-point steps before Newton in silverstein_stieltjes (its default 400 costs ~1 s per contour on digits;
# Newton converges from 60 on every problem measured, and the function refuses a wrong branch or residual)
_SILVERSTEIN_ITERS = 60


@dataclass(frozen=True)
class ClassesPrediction:
    """Rounds t = 0..rounds (first axis). train_accuracy / fresh_accuracy (T,); p_correct (T, K, K) per type
    (k true, l given; nan where absent); fresh_class (T, K); output_mean (T, K, K, K) [t, k, l, r]; fresh_mean
    (T, K, K) [t, k, r] (the mean output r of a fresh class-k point); weight_cov (T, K, K) = Rbar Sigma Rbar^T;
    phi (T,); kappa (T,) and tau (T,) the within-class terms; fixed_point_residual, quadrature_error,
    probability_error as reported (module doc)."""

    train_accuracy: np.ndarray
    fresh_accuracy: np.ndarray
    p_correct: np.ndarray
    fresh_class: np.ndarray
    output_mean: np.ndarray
    fresh_mean: np.ndarray
    weight_cov: np.ndarray
    phi: np.ndarray
    kappa: np.ndarray
    tau: np.ndarray
    fixed_point_residual: float
    quadrature_error: float
    probability_error: float


def _check_model(means, sigma, n):
    mu_k = check_array("means", means, ndim=2)
    K, D = mu_k.shape
    if K < 2:
        raise ValueError(f"means has shape {mu_k.shape}, must have at least 2 rows (one per class)")
    Sig = check_array("sigma", sigma, ndim=2)
    if Sig.shape != (D, D):
        raise ValueError(f"sigma has shape {Sig.shape}, must be ({D}, {D}) for means of shape {mu_k.shape}")
    if not np.allclose(Sig, Sig.T, rtol=0.0, atol=1e-12 * max(1.0, float(np.abs(Sig).max()))):
        raise ValueError("sigma is not symmetric, must be a covariance matrix")
    s, V = np.linalg.eigh(0.5 * (Sig + Sig.T))
    if s.min() < -1e-10 * max(1.0, float(s.max())):
        raise ValueError(f"sigma has eigenvalue {float(s.min())!r}, must be positive semi-definite")
    n = check_int("n", n, minimum=2)
    return mu_k, np.clip(s, 0.0, None), V, K, D, n


def _sandwich(mv, diag):
    """mv diag(diag[j]) mv^T for every node j: (M, K, K)."""
    return (mv[None] * diag[:, None, :]) @ mv.T


def classes_resolvent(z, mv, sigma, n: int):
    """(d, dt, a, Psi, MTt, residual) of step 1 at complex nodes z (off the spectrum): Psi (M, K, K); MTt (M, K, D)
    = mu Tt / (1 + dt), in Sigma's eigenbasis (mv = means @ eigenvectors (K, D), sigma = the eigenvalues (D,));
    residual = the fixed point's last relative change."""
    z = np.atleast_1d(check_array("z", z, dtype=np.complex128))
    mv = check_array("mv", mv, ndim=2)
    sig = check_spectrum("sigma", sigma)
    if sig.shape != (mv.shape[1],):
        raise ValueError(f"sigma has shape {sig.shape}, must be ({mv.shape[1]},) for mv of shape {mv.shape}")
    n = check_int("n", n, minimum=1)
    return _resolvent(z, mv, sig, n)


def _noise_blocks(z, mv, sig, n, d, dt):
    """Li = (-z (I + d Sigma))^-1 (diagonal), MLM = mu Li mu^T and Kinv = ((1 + dt) I / n + MLM)^-1 at (d, dt)."""
    Li = 1.0 / (-z[:, None] * (1.0 + d[:, None] * sig[None, :]))
    MLM = _sandwich(mv, Li)
    Kinv = np.linalg.inv((1.0 + dt)[:, None, None] * np.eye(mv.shape[0])[None] / n + MLM)
    return Li, MLM, Kinv


def _mean_blocks(z, mv, sig, n, d, dt):
    """a = -z (1 + dt) and Psi = Om (a I + n Om)^-1 / a, Om = mu (I + d Sigma)^-1 mu^T, at (d, dt)."""
    Om = _sandwich(mv, 1.0 / (1.0 + d[:, None] * sig[None]))
    a = -z * (1.0 + dt)
    Psi = Om @ np.linalg.inv(a[:, None, None] * np.eye(mv.shape[0])[None] + n * Om) / a[:, None, None]
    return a, Psi


def _resolvent(z, mv, sig, n):
    N = mv.shape[0] * n
    d = np.zeros(z.size, np.complex128)
    dt = np.zeros(z.size, np.complex128)
    step = last = np.inf
    damp = 0.0
    for _ in range(_FIXED_POINT_ITERS):
        # dt from (d, dt), then d from (d, dt_new): a Gauss-Seidel sweep of step 1's two equations
        Li, _, Kinv = _noise_blocks(z, mv, sig, n, d, dt)
        MLSLM = _sandwich(mv, Li * sig[None] * Li)
        dt_new = (sig[None] * Li).sum(axis=1) - np.einsum("mkl,mlk->m", Kinv, MLSLM)
        a, Psi = _mean_blocks(z, mv, sig, n, d, dt_new)
        d_new = N / a - n * np.einsum("mkk->m", Psi)
        step = max(float(np.max(np.abs(d_new - d) / (1.0 + np.abs(d_new)))),
                   float(np.max(np.abs(dt_new - dt) / (1.0 + np.abs(dt_new)))))
        if step > last:  # not contracting: damp from here on (undamped it takes ~9 steps on digits, damped ~50)
            damp = 0.5
        last = step
        d = damp * d + (1.0 - damp) * d_new
        dt = damp * dt + (1.0 - damp) * dt_new
        if step < _FIXED_POINT_TOL:
            break
    Li, MLM, Kinv = _noise_blocks(z, mv, sig, n, d, dt)
    a, Psi = _mean_blocks(z, mv, sig, n, d, dt)
    MvLi = mv[None] * Li[:, None, :]
    MTt = (MvLi - MLM @ (Kinv @ MvLi)) / (1.0 + dt)[:, None, None]
    return d, dt, a, Psi, MTt, step


def _integrals(mv, sig, n, mu, rounds, q):
    K, D = mv.shape
    N, m = K * n, K * n - K
    top = 1.5 * (math.sqrt(n * float(np.linalg.eigvalsh(mv @ mv.T).max())) + math.sqrt(N * float(sig.max()))
                 + math.sqrt(float(sig.sum()))) ** 2 + mu
    z, w = contour_nodes(q, mu, top)
    d, dt, a, Psi, MTt, res = _resolvent(z, mv, sig, n)
    s = np.arange(1, rounds + 2, dtype=np.float64)[:, None]
    f = (z[None] / (z[None] + mu)) ** s
    h = z[None] ** (s - 1.0) / (z[None] + mu) ** s
    phi = (f / a[None]) @ w
    PsiS = -np.einsum("tm,mkl->tkl", f * w[None], Psi)
    Ht = np.einsum("tm,mkd->tkd", h * w[None], MTt)
    # the within-class law (Z Sigma Z^T, m contrasts) on the same nodes: kappa_s from E f_s and E f_s^2
    u, ures = silverstein_stieltjes(z, sig, m, iters=_SILVERSTEIN_ITERS)
    within = (np.vstack([f, f * f]) * u[None]) @ w
    wz = (sig[:, None] ** 2 * u[None] / (1.0 + m * sig[:, None] * u[None])).sum(axis=0)
    tau = (h**2 * wz[None]) @ w
    # the cross terms of theory.finite_dim_classes_pll: E f_s for s = 1 .. 2 (rounds + 1) over the within-class law
    # (E f_s f_s' = E f_(s + s')) and tau_ss' = -(1/2 pi i) int h_s h_s' w dz
    s2 = np.arange(1, 2 * rounds + 3, dtype=np.float64)[:, None]
    moments = ((z[None] / (z[None] + mu)) ** s2 * u[None]) @ w
    tau_pairs = np.einsum("sm,rm->sr", h, h * (wz * w)[None])
    mass = max(abs(complex(d @ w) / N - 1.0), abs(complex(u @ w) - 1.0))
    return phi, PsiS, Ht, tau, within, moments, tau_pairs, max(res, ures), mass


@dataclass(frozen=True)
class ClassesFilters:
    """The label-independent part of the theory (steps 1-4 of the module doc) for rounds 0..rounds: phi (T,),
    PsiS (T, K, K), Ht (T, K, D) = mu Ht_s in Sigma's eigenbasis (V, sig), tau (T,), kappa (T,); moments (2 T,) =
    E f_s (s = 1 .. 2 T) and tau_pairs (T, T) = tau_ss' over the within-class law (the cross terms of
    :mod:`theory.finite_dim_classes_pll`); the model's n, lam; fixed_point_residual and quadrature_error as reported.
    One per (means, sigma, n, lam, rounds): reused for any label counts (:func:`classes_prediction`'s ``filters``)."""

    means: np.ndarray
    sigma: np.ndarray
    n: int
    lam: float
    rounds: int
    V: np.ndarray
    sig: np.ndarray
    phi: np.ndarray
    PsiS: np.ndarray
    Ht: np.ndarray
    tau: np.ndarray
    kappa: np.ndarray
    moments: np.ndarray
    tau_pairs: np.ndarray
    fixed_point_residual: float
    quadrature_error: float


def classes_filters(means, sigma, n: int, lam: float, rounds: int = 10, tol: float = 1e-10) -> ClassesFilters:
    """The contour integrals of the module doc (independent of the labels), converged to ``tol``."""
    mu_k, sig, V, K, D, n = _check_model(means, sigma, n)
    lam = check_positive("lam", lam)
    rounds = check_rounds("rounds", rounds)
    tol = check_positive("tol", tol)
    N, m = K * n, K * n - K
    mu = K * N * lam
    mv = mu_k @ V
    q = 256
    prev = _integrals(mv, sig, n, mu, rounds, q)
    while True:
        q *= 2
        cur = _integrals(mv, sig, n, mu, rounds, q)
        err = max(float(np.max(np.abs(x - y) / np.maximum(1.0, np.abs(x)))) for x, y in zip(cur[:7], prev[:7]))
        imag = max(float(np.max(np.abs(x.imag) / np.maximum(1.0, np.abs(x)))) for x in cur[:7])
        if cur[7] > 1e-12:
            raise RuntimeError(f"the deterministic equivalent's fixed point did not converge (residual {cur[7]:.3g})")
        if max(err, imag, cur[8]) <= tol:
            break
        if q >= _MAX_NODES:
            raise RuntimeError(f"contour integrals did not converge: difference {err:.3g}, imaginary part {imag:.3g}, "
                               f"mass residual {cur[8]:.3g} (tol {tol:.3g})")
        prev = cur
    phi, PsiS, Ht, tau, within, moments, tau_pairs = (x.real for x in cur[:7])
    fits = rounds + 1
    var = np.maximum(within[fits:] - within[:fits] ** 2, 0.0)
    kappa = haar_kappa(m * var, m)  # the Haar constant of theory.finite_dim step 4
    return ClassesFilters(mu_k, np.asarray(sigma, dtype=np.float64), n, lam, rounds, V, sig, phi, PsiS, Ht, tau, kappa,
                          moments, tau_pairs, cur[7], max(err, imag, cur[8]))


def _filters_for(means, sigma, n, lam, rounds, tol, filters, at_least=False):
    """``filters`` checked against the model (rounds equal, or at least ``rounds`` with ``at_least``), or computed."""
    if filters is None:
        return classes_filters(means, sigma, n, lam, rounds, tol)
    if not isinstance(filters, ClassesFilters):
        raise TypeError(f"filters == {filters!r}, must be None or the ClassesFilters of classes_filters")
    if not (filters.n == n and filters.lam == lam and (filters.rounds >= rounds if at_least else filters.rounds == rounds)
            and np.array_equal(filters.means, np.asarray(means, dtype=np.float64))
            and np.array_equal(filters.sigma, np.asarray(sigma, dtype=np.float64))):
        raise ValueError("filters were computed for other means, sigma, n, lam or rounds than the ones given")
    return filters


def classes_prediction(means, sigma, n: int, counts, lam: float, rounds: int = 10, tol: float = 1e-10,
                       prob_tol: float = 1e-4, filters: ClassesFilters | None = None) -> ClassesPrediction:
    """The theory of the module doc for rounds 0..rounds: counts[k, l] = training instances of class k given
    label l (rows sum to n), lam the ridge penalty (mu = K N lam). ``filters``: :func:`classes_filters` of the same
    means, sigma, n, lam and rounds, when already computed (they do not depend on the counts)."""
    F = _filters_for(means, sigma, n, lam, rounds, tol, filters)
    K = F.means.shape[0]
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K}) for {K} classes")
    prob_tol = check_positive("prob_tol", prob_tol)
    N, m = K * n, K * n - K
    phi, PsiS, Ht, tau, kappa, sig = F.phi, F.PsiS, F.Ht, F.tau, F.kappa, F.sig
    mv = F.means @ F.V
    fp_res, quad = F.fixed_point_residual, F.quadrature_error
    C = counts / n
    eye = np.eye(K)
    A = (n * (C - 1.0 / K)).T  # A[r, k'] = n (C_k'r - 1/K)
    Gam = n * sum(np.diag(C[k]) - np.outer(C[k], C[k]) for k in range(K))
    T = rounds + 1
    Rbar = np.einsum("rk,tkd->trd", A, Ht)  # (T, K, D), Sigma's eigenbasis
    weight_cov = np.einsum("trd,d,tjd->trj", Rbar, sig, Rbar)
    fresh_mean = 1.0 / K + np.einsum("trd,kd->tkr", Rbar, mv)
    dev = within_part(eye[None, :, :], C[:, None, :])  # e_l - C_k [k, l, r]
    out_mean = (1.0 / K + phi[:, None, None, None] * (eye[None, None] - 1.0 / K)
                + np.einsum("tkj,jr->tkr", n * PsiS, C - 1.0 / K)[:, :, None, :])
    p_correct = np.full((T, K, K), np.nan)
    fresh_class = np.empty((T, K))
    perr = 0.0
    present = counts > 0
    for k in range(K):
        o = np.array([j for j in range(K) if j != k])
        Dm = eye[k][None, :] - eye[o]  # margins: own output minus output j
        fc = weight_cov + tau[:, None, None] * Gam[None]
        pf, ef = orthant_probability(np.einsum("jr,tr->tj", Dm, fresh_mean[:, k]),
                                     np.einsum("jr,trs,is->tji", Dm, fc, Dm), prob_tol)
        fresh_class[:, k] = pf
        ls = np.flatnonzero(present[k])
        u = dev[k, ls]  # (L, K)
        cov = weight_cov[:, None] + kappa[:, None, None, None] * haar_bracket(
            n, m, Gam[None, None], u[None, :, :, None], u[None, :, None, :])
        pk, ek = orthant_probability(np.einsum("jr,tlr->tlj", Dm, out_mean[:, k, ls]),
                                     np.einsum("jr,tlrs,is->tlji", Dm, cov, Dm), prob_tol)
        p_correct[:, k, ls] = pk
        perr = max(perr, float(np.max(ef)), float(np.max(ek)))
    pc = np.where(present[None], p_correct, 0.0)
    train = (pc * counts[None]).sum(axis=(1, 2)) / N
    return ClassesPrediction(train, fresh_class.mean(axis=1), p_correct, fresh_class, out_mean, fresh_mean,
                             weight_cov, phi, kappa, tau, fp_res, quad, perr)
