"""theory.symbolic_finite_dim: the sympy derivations of the finite-D theory, and the printed twins the numeric
modules call (theory._generated).

Three kinds of check, each able to fail on its own:
* the derivations' residuals are zero (projector algebra, the explicit contraction, the label Gram matrices);
* the printed functions against an explicit construction in R^N that shares no code with the derivation
  (a labelled sample of K = 3 classes, its projectors as N x N matrices, Haar rotations of E^perp drawn
  with numpy): means exactly, covariances by Monte Carlo inside Bonferroni-corrected 99 % intervals;
* theory.finite_dim's moments against the printed functions, so that a module that stopped calling them
  (or called them with its arguments swapped) fails here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy as sp

from tests.theorems.test_finite_dim import z_bonferroni
from theory import _generated as G
from theory import finite_dim as fd
from theory import symbolic_finite_dim as SF

# a labelled sample: K = 3 classes of n = 4 instances; counts[k, l] = instances of class k given label l
K, n = 3, 4
COUNTS = np.array([[2, 1, 1], [0, 3, 1], [1, 1, 2]])


def _sample():
    """(labels, classes, Y, U, P_perp, P_class, P_const) of the sample as explicit arrays in R^N."""
    N = K * n
    cls = np.repeat(np.arange(K), n)
    lab = np.concatenate([np.repeat(np.arange(K), COUNTS[k]) for k in range(K)])
    Y = np.eye(K)[lab]
    U = np.full((N, K), 1.0 / K)
    Ind = np.eye(K)[cls]  # N x K class indicators
    P_E = Ind @ Ind.T / n
    P_const = np.ones((N, N)) / N
    return lab, cls, Y, U, np.eye(N) - P_E, P_E - P_const, P_const


@pytest.fixture(scope="module")
def projections():
    return SF.derive_type_projections()


def test_derivation_residuals_are_zero(projections):
    bil = SF.derive_bilinear_covariance()
    assert bil["residual"] == 0
    assert all(r == sp.zeros(3, 3) for r in projections["projector_residuals"])
    assert projections["u_ortho"] == 0
    fr = SF.derive_fresh_moments()
    assert fr["perp_part"] == 0 and fr["q_identity"] == 0
    grams = SF.derive_label_grams()
    for key in ("gamma_residual", "E_class_residual", "E_const_residual"):
        assert grams[key] == sp.zeros(3, 3), key
    # the ansatz: y = -2 x / m (the traceless condition), x = S / ((m - 1)(m + 2))
    hm = SF.derive_haar_fourth_moment()
    assert sp.simplify(hm["y"] + 2 * hm["x"] / SF.m) == 0
    assert sp.simplify(hm["x"] * (SF.m - 1) * (SF.m + 2) - SF.S) == 0


def test_printed_type_mean_and_within_part_against_explicit_projectors():
    """(Y - U)^T (phi P_perp + f_class P_class + f_const P_const) e_i + U and (Y^T P_perp e_i) for every instance,
    with N x N projectors, against the printed type_output_mean and within_part (exact up to rounding)."""
    lab, cls, Y, U, Pp, Pc, Pk = _sample()
    C = COUNTS / n
    Cbar = C.mean(axis=0)
    phi, fc, fk = 0.37, 0.81, 0.93
    M = phi * Pp + fc * Pc + fk * Pk
    eye = np.eye(K)
    for i in range(K * n):
        k, l = cls[i], lab[i]
        explicit = U[i] + (Y - U).T @ M[:, i]
        assert np.allclose(G.type_output_mean(K, phi, fc, fk, eye[l], C[k], Cbar), explicit, rtol=0, atol=1e-14)
        assert np.allclose(G.within_part(eye[l], C[k]), Y.T @ Pp[:, i], rtol=0, atol=1e-14)
        assert G.centred_norm(n) == pytest.approx(Pp[:, i] @ Pp[:, i], abs=1e-14)


def test_printed_output_covariance_against_haar_rotations():
    """Cov of (Y - U)^T F' e_i over F' = Q O diag(f') O^T Q^T (Q an orthonormal basis of E^perp, O Haar,
    f' centred) against kappa (1 - 1/n) Gamma + kappa (1 - 2/m) u u^T from the printed haar_kappa and
    haar_bracket, with Gamma from theory.finite_dim; 20000 rotations, every entry of two instances
    (one correctly, one wrongly labelled) inside z SE (Bonferroni over the 12 distinct entries)."""
    lab, cls, Y, U, Pp, _, _ = _sample()
    N, m = K * n, K * n - K
    rng = np.random.default_rng(11)
    w, V = np.linalg.eigh(Pp)
    Q = V[:, w > 0.5]
    assert Q.shape == (N, m)
    f = rng.random(m)
    f -= f.mean()
    kappa = G.haar_kappa(float(f @ f), m)
    R = 20000
    O, T = np.linalg.qr(rng.standard_normal((R, m, m)))
    O = O * np.sign(np.einsum("rii->ri", T))[:, None, :]  # Haar
    C = COUNTS / n
    Gam = fd._gamma_matrix(C, n)
    assert np.allclose(Gam, (Pp @ Y).T @ (Pp @ Y), atol=1e-12)  # Gamma = Y_perp^T Y_perp
    eye = np.eye(K)
    checks = []
    for i in (0, 2):  # class 0 given label 0 and class 0 given label 1
        k, l = cls[i], lab[i]
        A = (Y - U).T @ Q  # K x m
        b = Q[i]  # Q^T e_i
        vals = np.einsum("ka,rab,b,rcb,c->rk", A, O, f, O, b)  # (R, K)
        u = G.within_part(eye[l], C[k])
        pred = kappa * G.haar_bracket(n, m, Gam, u[:, None], u[None, :])
        prod = vals[:, :, None] * vals[:, None, :]
        est, se = prod.mean(axis=0), prod.std(axis=0) / math.sqrt(R)
        iu = np.triu_indices(K)
        checks.append((est[iu], se[iu], pred[iu]))
    z = z_bonferroni(sum(c[0].size for c in checks))
    for est, se, pred in checks:
        assert np.all(np.abs(est - pred) <= z * se), (est, pred, se)
    # the instance-specific part matters at this size: dropping it moves the prediction outside
    est, se, pred = checks[1]
    assert np.any(np.abs(est - kappa * (1 - 1 / n) * Gam[np.triu_indices(K)]) > z * se)


def test_printed_fresh_moments_against_explicit_projectors():
    """A fresh class-k sample: mu (Y - U)^T (h_c P_class + h_k P_const) m_x, m_x = d 1 + (c - d) 1_k, and the
    E-part Gram matrices (Y - U)^T P (Y - U), against fresh_logit_mean and the closed forms theory.finite_dim
    passes to fresh_logit_cov (E_class = n sum_k (C_k - Cbar)(C_k - Cbar)^T, E_const = N (Cbar - U)(Cbar - U)^T)."""
    lab, cls, Y, U, Pp, Pc, Pk = _sample()
    N = K * n
    C = COUNTS / n
    Cbar = C.mean(axis=0)
    mu, c, d, hc, hk = 0.3, 0.45, 0.12, 0.7, 0.2
    for k in range(K):
        m_x = d * np.ones(N) + (c - d) * (cls == k)
        assert np.allclose(Pp @ m_x, 0.0, atol=1e-14)  # no E^perp part
        explicit = mu * (Y - U).T @ ((hc * Pc + hk * Pk) @ m_x)
        assert np.allclose(G.fresh_logit_mean(mu, n, c, d, K, hc, hk, C[k], Cbar), explicit, rtol=0, atol=1e-14)
    E_class = (Y - U).T @ Pc @ (Y - U)
    E_const = (Y - U).T @ Pk @ (Y - U)
    assert np.allclose(E_class, n * (C - Cbar).T @ (C - Cbar), atol=1e-13)
    assert np.allclose(E_const, N * np.outer(Cbar - 1 / K, Cbar - 1 / K), atol=1e-13)
    Gam = fd._gamma_matrix(C, n)
    q, sig2, D = 0.8, 0.55, 40.0
    expect = mu**2 / D * (sig2 * q * Gam + sig2**2 * (hc**2 * E_class + hk**2 * E_const))
    assert np.allclose(G.fresh_logit_cov(mu, D, sig2, q, Gam, hc, hk, E_class, E_const), expect, rtol=1e-14, atol=0)


def test_finite_dim_moments_are_the_printed_forms():
    """theory.finite_dim's output means, margin covariances and fresh margins at one finite D, rebuilt from the
    printed functions and its own spectral averages: a module that stopped calling them, or swapped their
    arguments, differs here. The margin covariance also against the sympy form R Sigma R^T."""
    counts = COUNTS
    c, d, lam, D, t = 0.4, 0.1, 1e-3, 50.0, 2
    pred = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=t, probabilities=False, leak=False)
    with_leak = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=t, probabilities=False)
    C = counts / n
    Cbar = C.mean(axis=0)
    N, m = K * n, K * n - K
    fc, fk, hsc, hsk, _ = fd.spike_filters(K, n, c, d, lam, D, t)
    spec = fd.within_spectrum(K, n, c, lam, D, t)
    assert np.array_equal(pred.kappa, G.haar_kappa(m * spec.var, m))
    eye = np.eye(K)
    Gam = fd._gamma_matrix(C, n)
    mc = SF.derive_margin_covariance(K)
    for k in range(K):
        for l in range(K):
            if counts[k, l] == 0:
                continue
            mean = G.type_output_mean(K, spec.phi[t], fc[t], fk[t], eye[l], C[k], Cbar)
            assert np.allclose(pred.output_mean[t, k, l], mean, rtol=0, atol=1e-15)
            u = G.within_part(eye[l], C[k])
            Sig = pred.kappa[t] * G.haar_bracket(n, m, Gam, u[:, None], u[None, :])
            if k == 0:  # the sympy margin form is written for class 0
                M = np.array(mc["margin_cov"].subs({mc["Sigma"][i, j]: Sig[i, j] for i in range(K) for j in range(K)}),
                             dtype=float)
                assert np.allclose(pred.margin_cov[t, k, l], M, rtol=1e-12, atol=1e-18)
    fresh = G.fresh_logit_mean(K * N * lam, n, c, d, K, hsc[t], hsk[t], C, Cbar[None, :])
    assert np.allclose(pred.fresh_margin_mean[t], np.diag(fresh)[:, None] - fresh, rtol=0, atol=1e-15)
    # the leak (step 2b) adds the printed leak_output_cov (times m / N) to every present type's margins, and
    # leak_fresh_cov to the fresh ones; the means do not move
    Vf, Vh, _ = fd._spike_variances(np.array([n * (c - d), n * (c - d) + N * d]), 1 - c, N / D, K * N * lam,
                                    np.arange(1, t + 2.0), 1e-12)
    Vf, Vh = Vf[t] * m / N, Vh[t] * m / N
    E_class = n * (C - Cbar).T @ (C - Cbar)
    E_const = N * np.outer(Cbar - 1 / K, Cbar - 1 / K)
    R = [np.eye(K)[k][None, :] - np.eye(K) for k in range(K)]
    for k in range(K):
        for l in range(K):
            if counts[k, l] == 0:
                continue
            u = G.within_part(eye[l], C[k])
            L = G.leak_output_cov(m, n, K, Vf[0], Vf[1], Gam, E_class, E_const, u[:, None], u[None, :], C[k][:, None],
                                  C[k][None, :], Cbar[:, None], Cbar[None, :])
            assert np.allclose(with_leak.margin_cov[t, k, l] - pred.margin_cov[t, k, l], R[k] @ L @ R[k].T,
                               rtol=1e-9, atol=1e-18)
        Lf = G.leak_fresh_cov(K * N * lam, m, n, K, c, d, Vh[0], Vh[1], Gam)
        assert np.allclose(with_leak.fresh_margin_cov[t, k] - pred.fresh_margin_cov[t, k], R[k] @ Lf @ R[k].T,
                           rtol=1e-9, atol=1e-18)
    assert np.array_equal(with_leak.margin_mean, pred.margin_mean)
