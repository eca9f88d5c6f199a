"""The within-class spectrum of the finite-D mixture with a general (non-isotropic) noise covariance.

Model: phi_i = mean of its class + xi_i, xi_i ~ N(0, Sigma) independent, Sigma with eigenvalues
sigma_1..sigma_D (the isotropic mixture of :mod:`theory.finite_dim` is sigma_a = (1 - c) / D).
With an orthonormal basis O of E^perp (the within-class contrasts, m = N - K of them) the within-class
Gram block is A = O^T Xi Xi^T O = Z Sigma Z^T, Z (m x D) i.i.d. N(0, 1) (Xi = X Sigma^(1/2) and O^T X
is again i.i.d. Gaussian). A is orthogonally invariant, so steps 1, 3 and 4 of :mod:`theory.finite_dim`
(Haar eigenvectors: the mean filter phi_s = E[f_s], the Haar covariance constant kappa_s from Var[f_s])
carry over with the Marchenko-Pastur law replaced by the limit spectral law of A.

Derivation (Silverstein's equation in the companion form). Write A = (1/m) X^T T X with X = Z^T
(D x m) and T = m Sigma: the m x m companion of the sample covariance (1/m) T^(1/2) X X^T T^(1/2).
Its Stieltjes transform u(z) = lim (1/m) tr (A - z)^-1 solves
    z = -1/u + sum_a sigma_a / (1 + m sigma_a u),   Im u > 0 for Im z > 0,  u ~ -1/z at infinity.
Isotropic check: sigma_a = s / D gives z = -1/u + s / (1 + (m / D) s u), the Marchenko-Pastur law
of s W, W = Wishart(m, D) / D (the tests compare with :func:`theory.finite_dim.mp_stieltjes`).

What does not carry over (not implemented here): the class-mean filters (:func:`theory.finite_dim.spike_filters`)
use E^T (noise Gram - z)^-1 E ~ g(z) I, which still holds for any Sigma when the class means are orthogonal
to the noise, but for real features (digits) the means lie in the noise's own span and the Gram is an
information-plus-noise matrix (cross terms mean^T xi); and the fresh-sample noise term becomes
Xi Sigma Xi^T, not a function of A alone (it needs the second resolvent tr (A - z)^-1 Z Sigma^2 Z^T).

Numerics. Averages E[f(A)] = -(1 / 2 pi i) contour-integral f(z) u(z) dz on a circle through -mu/2 (f
analytic off -mu) and 1.5 times a bound of the spectrum's top ((sqrt(m max sigma) + sqrt(sum sigma))^2),
nodes clustered near -mu/2 as in spike_filters; u solved at each node by fixed-point iteration then Newton,
the largest relative residual of Silverstein's equation reported (RuntimeError above 1e-12 or with the
wrong branch); the trapezoid rule doubles until two node counts agree within ``tol`` and the mass
(E[1] = 1) and mean (E[x] = sum sigma) residuals are below ``tol``.
``import theory.finite_dim_aniso`` imports numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._generated import haar_kappa
from .validate import check_array, check_int, check_positive, check_real, check_rounds, check_spectrum

__all__ = ["contour_nodes", "silverstein_stieltjes", "AnisoWithin", "aniso_within_spectrum", "aniso_average"]


def silverstein_stieltjes(z, sigma, m: int, iters: int = 400):
    """u(z) = lim (1/m) tr (Z Sigma Z^T - z)^-1 (Z m x D i.i.d. N(0,1), Sigma = diag(sigma)) at complex z off
    the spectrum, by ``iters`` damped fixed-point steps from u = -1/z, then Newton. Returns (u, residual): the
    largest |F(u)| / (|z| + |1/u|) of Silverstein's equation F(u) = z + 1/u - sum sigma_a / (1 + m sigma_a u).
    RuntimeError if that exceeds 1e-12 (or is NaN: a diverged solve) or the branch is wrong (Im u Im z < 0)."""
    sig = check_spectrum("sigma", sigma)
    m = check_int("m", m, minimum=1)
    iters = check_int("iters", iters, minimum=0)
    z = np.atleast_1d(check_array("z", z, dtype=np.complex128))
    # equal eigenvalues enter the sum together (a measured spectrum of D values costs its distinct values)
    vals, counts = np.unique(sig, return_counts=True)
    sig, cnt = vals[:, None], counts[:, None].astype(np.float64)
    ms = m * sig

    def rhs(u):
        return (cnt * sig / (1.0 + ms * u[None, :])).sum(axis=0)

    # a diverging iteration overflows to inf / NaN; that is caught by the residual test below, not by warnings
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        u = -1.0 / z
        for _ in range(iters):  # the fixed point u = -1 / (z - rhs(u)), damped
            u = 0.5 * u + 0.5 * (-1.0 / (z - rhs(u)))
        for _ in range(30):  # Newton on F(u)
            den = 1.0 + ms * u[None, :]
            F = z + 1.0 / u - (cnt * sig / den).sum(axis=0)
            dF = -1.0 / u**2 + (cnt * ms * sig / den**2).sum(axis=0)
            u = u - F / dF
        F = z + 1.0 / u - rhs(u)
        res = float(np.max(np.abs(F) / (np.abs(z) + np.abs(1.0 / u))))
    wrong = (u.imag * z.imag < -1e-14 * np.abs(u) * np.abs(z))
    if not res <= 1e-12 or np.any(wrong):  # a diverged solve has a NaN residual, which fails "<="
        raise RuntimeError(f"Silverstein equation not solved: residual {res:.3g}, wrong branch at {int(wrong.sum())} nodes")
    return u, res


def contour_nodes(q: int, mu: float, right: float):
    """Nodes z (q,) and weights w (q,) of the trapezoid rule for -(1 / 2 pi i) contour-integral g(z) dz ~ sum g(z) w
    on the circle through -mu/2 and ``right`` (> -mu/2), counter-clockwise, the nodes clustered near -mu/2 where
    the filters (x / (x + mu))^s vary fastest. For g analytic on and outside the circle apart from the real
    interval it encloses (the spectrum, which starts at 0) the sum converges geometrically in q."""
    q = check_int("q", q, minimum=1)
    mu = check_positive("mu", mu)
    left = -0.5 * mu
    right = check_real("right", right)
    if not right > left:
        raise ValueError(f"right == {right!r}, must be > -mu/2 == {left!r} (the circle's other end)")
    xc, r = 0.5 * (left + right), 0.5 * (right - left)
    # no mutate: kappa only clusters the nodes near -mu/2; any kappa gives a smooth periodic parametrization of the
    # same circle, whose trapezoid sums converge to the same integral, and the callers' doubling loops assert that
    kappa = 1.0 - min(0.5, math.sqrt(0.5 * mu / r))  # pragma: no mutate
    tau = 2.0 * math.pi * (np.arange(q) + 0.5) / q
    th = tau + kappa * np.sin(tau)
    z = xc + r * np.exp(1j * th)
    return z, -(z - xc) * (1.0 + kappa * np.cos(tau)) / q


def aniso_average(funcs, sigma, m: int, mu: float, tol: float = 1e-11):
    """E over the limit spectral law of A = Z Sigma Z^T (m x m) of each function in funcs, analytic off
    (-inf, -mu]: ``funcs(z)`` maps complex nodes (M,) to values (F, M). Returns (values (F,), quadrature_error,
    silverstein_residual)."""
    sig = check_spectrum("sigma", sigma)
    m = check_int("m", m, minimum=1)
    mu = check_positive("mu", mu)
    tol = check_positive("tol", tol)
    top = (math.sqrt(m * float(sig.max())) + math.sqrt(float(sig.sum()))) ** 2
    right = 1.5 * top + 0.5 * mu
    mean_exact = float(sig.sum())  # E[x] = (1/m) tr E[A] = tr Sigma

    def rule(q):
        z, w = contour_nodes(q, mu, right)
        u, res = silverstein_stieltjes(z, sig, m)
        wts = w * u  # -(1 / 2 pi i) u dz
        vals = np.atleast_2d(funcs(z)) @ wts
        return vals, complex(wts.sum()) - 1.0, complex((z * wts).sum()) - mean_exact, res

    q = 256
    prev, _, _, _ = rule(q)
    while True:
        q *= 2
        cur, e_mass, e_mean, res = rule(q)
        err = float(np.max(np.abs(cur - prev) / np.maximum(1.0, np.abs(cur))))
        imag = float(np.max(np.abs(cur.imag) / np.maximum(1.0, np.abs(cur))))
        norm = max(abs(e_mass), abs(e_mean) / max(1.0, mean_exact))
        if err <= tol and imag <= tol and norm <= tol:
            return cur.real, max(err, imag, norm), res
        if q >= 1 << 16:
            raise RuntimeError(f"anisotropic spectral average did not converge: difference {err:.3g}, "
                               f"imaginary part {imag:.3g}, mass/mean residual {norm:.3g} (tol {tol:.3g})")
        prev = cur


@dataclass(frozen=True)
class AnisoWithin:
    """Averages over the within-class spectral law for s = 1..fits (arrays indexed by round t = s - 1):
    phi = E[f_s], var = Var[f_s], kappa = m var / ((m - 1)(m + 2)) (the Haar covariance constant of
    :mod:`theory.finite_dim` step 4); quadrature_error and silverstein_residual as reported."""

    phi: np.ndarray
    var: np.ndarray
    kappa: np.ndarray
    quadrature_error: float
    silverstein_residual: float


def aniso_within_spectrum(sigma, m: int, lam_mu: float, rounds: int, tol: float = 1e-11) -> AnisoWithin:
    """phi_s, Var f_s and kappa_s of the training filter f_s(x) = (x / (x + mu))^s, mu = ``lam_mu`` = K N lambda,
    over the within-class law of Z Sigma Z^T (m = N - K contrasts), rounds t = 0..rounds."""
    mu = check_positive("lam_mu", lam_mu)
    fits = check_rounds("rounds", rounds) + 1
    m = check_int("m", m, minimum=3)
    s = np.arange(1, fits + 1, dtype=np.float64)[:, None]

    def f(z):
        return (z[None, :] / (z[None, :] + mu)) ** s

    def f2(z):
        return (z[None, :] / (z[None, :] + mu)) ** (2 * s)

    vals, e1, r1 = aniso_average(lambda z: np.vstack([f(z), f2(z)]), sigma, m, mu, tol)
    phi, second = vals[:fits], vals[fits:]
    var = np.maximum(second - phi**2, 0.0)
    kappa = haar_kappa(m * var, m)
    return AnisoWithin(phi, var, kappa, e1, r1)
