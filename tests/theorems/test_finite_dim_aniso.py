"""theory.finite_dim_aniso: the within-class spectral law for a general noise covariance (Silverstein's equation).

* isotropic Sigma reproduces the Marchenko-Pastur Stieltjes transform and theory.finite_dim.within_spectrum;
* a two-level Sigma against Monte Carlo eigenvalues of Z Sigma Z^T (own sampler), where the isotropic law
  with the same trace is far off (so the check can tell the two apart);
* unconverged or invalid input is refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from theory import finite_dim as fd
from theory.finite_dim_aniso import aniso_average, aniso_within_spectrum, silverstein_stieltjes

K, n, c, lam = 4, 50, 0.4, 5e-5
N = K * n
m = N - K
MU = K * N * lam


@pytest.mark.parametrize("D", [50, 400])  # D < m (atom at 0) and D > m
def test_isotropic_sigma_is_marchenko_pastur(D):
    sig = np.full(D, (1 - c) / D)
    z = np.array([0.3 + 0.2j, -0.01 + 0.5j, 2.0 + 0.01j, -0.5 - 0.3j])
    u, res = silverstein_stieltjes(z, sig, m)
    # both sides are closed-form / Newton-converged to ~1e-15; 1e-12 leaves room for conditioning
    assert res <= 1e-12
    assert np.abs(u - fd.mp_stieltjes(z, m / D, 1 - c)).max() <= 1e-12
    a = aniso_within_spectrum(sig, m, MU, 10)
    w = fd.within_spectrum(K, n, c, lam, D, 10)
    # two independent quadratures (contour vs theta-midpoint), each converged to <= 1e-11
    assert np.abs(a.phi - w.phi).max() <= 1e-9
    assert np.abs(a.var - w.var).max() <= 1e-9
    assert np.abs(a.kappa - w.kappa).max() <= 1e-9 * max(1.0, float(np.abs(w.kappa).max()))  # the Haar constant too
    assert a.quadrature_error <= 1e-11 and 0.0 <= a.silverstein_residual <= 1e-12


def test_two_level_sigma_against_monte_carlo():
    D, S = 150, 40
    sig = np.concatenate([np.full(D // 2, 0.2), np.full(D - D // 2, 1.8)]) * (1 - c) / D
    a = aniso_within_spectrum(sig, m, MU, 10)
    rng = np.random.default_rng(20261203)
    s = np.arange(1, 12)[:, None]
    phis, vars_ = [], []
    for _ in range(S):
        Z = rng.standard_normal((m, D))
        ev = np.linalg.eigvalsh((Z * sig) @ Z.T)
        f = (ev[None, :] / (ev[None, :] + MU)) ** s
        phis.append(f.mean(axis=1))
        vars_.append(f.var(axis=1))
    phis, vars_ = np.array(phis), np.array(vars_)
    se = phis.std(axis=0, ddof=1) / math.sqrt(S)
    # 4 standard errors (11 rounds, ~1e-3 false-alarm rate) plus 1/m for the O(1/m) finite-size bias of the
    # real Wishart, which the limit law neglects (measured ~6e-4 here)
    assert np.all(np.abs(a.phi - phis.mean(axis=0)) <= 4 * se + 1.0 / m)
    # the spread: relative 10 % (the variance over eigenvalues has an O(1/m) bias too, and ~2 % sampling error)
    assert np.all(np.abs(a.var - vars_.mean(axis=0)) <= 0.1 * vars_.mean(axis=0))
    # the isotropic law with the same trace is excluded by the same tolerance
    iso = fd.within_spectrum(K, n, c, lam, D, 10)
    assert np.any(np.abs(iso.phi - phis.mean(axis=0)) > 4 * se + 1.0 / m)


def test_mass_and_mean_are_exact():
    sig = np.array([0.5, 0.5, 0.1, 0.02, 0.0])
    vals, err, res = aniso_average(lambda z: np.vstack([np.ones_like(z), z, z * z]), sig, 7, 0.05)
    # E[x^2] of Z Sigma Z^T's law: (1/m) E tr A^2 -> m sum sigma^2 + (sum sigma)^2 in the limit law
    assert abs(vals[0] - 1) <= 1e-10 and abs(vals[1] - sig.sum()) <= 1e-10
    assert abs(vals[2] - (7 * (sig**2).sum() + sig.sum() ** 2)) <= 1e-9
    assert err <= 1e-11 and res <= 1e-12


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        silverstein_stieltjes(1j, np.array([-1.0, 1.0]), 5)
    with pytest.raises(ValueError):
        aniso_within_spectrum(np.ones(3), 10, -1.0, 3)


ISO_D, ISO_S = 50, 1 - c  # isotropic reference: Silverstein's law is the Marchenko-Pastur law of ISO_S W (ratio m / D)
ISO = np.full(ISO_D, ISO_S / ISO_D)


def _mp(z):
    return fd.mp_stieltjes(np.asarray(z, dtype=complex), m / ISO_D, ISO_S)


def test_newton_alone_converges_far_from_the_spectrum_and_at_infinity():
    """Without fixed-point steps, Newton from u = -1/z converges where -1/z is already close (far from the spectrum
    [0, ~5.4]); at |z| = 1e8 the law's tail u ~ -1/z holds and the relative residual stays at round-off. Newton's
    end point is the closed form's to 1e-12 (both round-off limited; the closed form's conditioning is O(1))."""
    far = np.array([-1.0 + 1.0j, 20.0 + 5.0j, -3.0 - 2.0j, 2.0 + 8.0j])
    u, res = silverstein_stieltjes(far, ISO, m, iters=0)
    assert res <= 1e-12 and np.abs(u - _mp(far)).max() <= 1e-12
    huge = 1e8 * np.array([1.0 + 1.0j, -1.0 + 0.5j, 0.3 - 1.0j])
    u, res = silverstein_stieltjes(huge, ISO, m)
    assert res <= 1e-12
    assert np.abs(u * huge + 1).max() <= 1e-6  # u = -1/z - E[x]/z^2 + ...: |E[x] / z| = 0.6e-8
    assert np.abs(u / _mp(huge) - 1).max() <= 1e-12


def test_just_off_the_real_axis_outside_the_spectrum():
    """At Im z = 1e-9 left of 0 and right of the spectrum's edge, Im u is tiny but of the right sign: accepted,
    equal to the closed form (to 1e-10: the closed form's square root is evaluated 1e-9 from its branch cut)."""
    z = np.array([-0.05 + 1e-9j, -2.0 - 1e-9j, 7.0 + 1e-9j, 12.0 - 1e-9j])
    u, res = silverstein_stieltjes(z, ISO, m)
    assert res <= 1e-12 and np.abs(u - _mp(z)).max() <= 1e-10
    assert np.all(u.imag * z.imag > 0)


def test_an_unconverged_or_wrong_branch_solve_is_refused():
    """Near the spectrum, Newton without the fixed-point steps diverges (NaN) or lands on the conjugate root (the
    wrong branch, Im u Im z < 0). Every node then either raises, showing the residual, or returns the closed form's
    value to 1e-10; both failure kinds occur on this grid."""
    z = np.concatenate([np.linspace(0.5, 5.0, 10) + 1e-3j, [5.0 + 0.01j]])
    refused = 0
    for zi in z:
        try:
            u, _ = silverstein_stieltjes(zi, ISO, m, iters=0)
        except RuntimeError as err:
            refused += 1
            assert "residual" in str(err)
            continue
        assert abs(u[0] - _mp(zi)) <= 1e-10, zi
    assert refused >= 5
    with pytest.raises(RuntimeError, match="nan"):  # diverged: NaN residual
        silverstein_stieltjes(1.0 + 1e-3j, ISO, m, iters=0)
    with pytest.raises(RuntimeError):  # converged to the conjugate root
        silverstein_stieltjes(5.0 + 0.01j, ISO, m, iters=0)


@pytest.mark.parametrize("scale", [1e-4, 1e4])
def test_scaling_sigma_and_mu_together_changes_nothing(scale):
    """f_s(x) = (x / (x + mu))^s is invariant under x -> a x, mu -> a mu, and the law of Z (a Sigma) Z^T is that of
    a A: phi and Var f_s are unchanged (both runs converged to 1e-11, 1e-9 leaves room for conditioning)."""
    sig = np.concatenate([np.full(20, 0.2), np.full(30, 1.8)]) * (1 - c) / 50
    ref = aniso_within_spectrum(sig, m, MU, 4)
    got = aniso_within_spectrum(sig * scale, m, MU * scale, 4)
    assert np.abs(got.phi - ref.phi).max() <= 1e-9 and np.abs(got.var - ref.var).max() <= 1e-9


def test_an_unreachable_tolerance_is_refused():
    """tol = 1e-18 is below float64's resolution of values ~1: the average raises, showing the tolerance asked for,
    rather than return a result that does not meet it (aniso_within_spectrum passes its tol on)."""
    with pytest.raises(RuntimeError, match="1e-18"):
        aniso_within_spectrum(np.array([0.02]), 8, 0.05, 1, tol=1e-18)


def test_a_loose_tolerance_reports_an_honest_error():
    """With tol = 1e-3 and a small ridge (mu = MU / 100, the pole at -mu close to the spectrum's atom at 0), the first
    accepted rule is still off by ~3e-4 from the isotropic reference (theory.finite_dim.within_spectrum, converged to
    1e-12): the reported quadrature_error must cover that error and stay within tol."""
    D = 400
    a = aniso_within_spectrum(np.full(D, (1 - c) / D), m, MU / 100, 10, tol=1e-3)
    ref = fd.within_spectrum(K, n, c, lam / 100, D, 10, quad_tol=1e-12)
    assert np.abs(a.phi - ref.phi).max() <= a.quadrature_error <= 1e-3
