"""Linearised self-distillation on the finite-D Gaussian mixture: a deterministic-equivalent theory.

Model (the suite's sampler): N = K n points, class-major,
G = d J + (c - d) B + (1 - c) W,  W = Z Z^T / D,  Z (N x D) i.i.d. N(0, 1),
J all ones, B block-diagonal ones. Linearised SD with one-hot given labels Y:
P_t = U + (Y - U) f_s(G), f_s(x) = (x / (x + mu))^s, mu = K N lambda, s = t + 1.
The block model is the D -> infinity limit (W -> I).

Derivation (summary; :mod:`theory.symbolic_finite_dim` derives the symbolic steps 3, 4 and 6 in sympy
and :mod:`theory.generate` prints them into theory._generated, which this module calls)
---------------------------------------------------------------------------------------
1. Split R^N = E + E^perp, E = span of the K class indicators (dim K),
   m = N - K. The mean part d J + (c - d) B lives in E with eigenvalues
   n (c - d) and n (c - d) + N d (plus (1 - c) from W's E-block, E[W] = I).
   Let O be an orthonormal basis of E^perp. Then O^T W O = (O^T Z)(O^T Z)^T / D
   is *exactly* a real Wishart(m, D) / D: orthogonally invariant on E^perp,
   spectrum -> Marchenko-Pastur with ratio gamma = m / D (atom 1 - D/m at 0 when
   D < m), eigenvectors Haar and independent of the spectrum.
2. Decoupling approximation: on E^perp, f_s(G) ~ F_s = f_s((1 - c) O^T W O) (exact when the
   class-mean eigenvalues n (c - d) -> infinity; the Schur-complement correction, a rank-K
   perturbation of relative size (1 - c) / (n (c - d)), is neglected). On E, the deformed-model
   (spiked Wishart) deterministic equivalent: G = (1 - c) W + E M E^T with the *full* W,
   E^T (G - z)^-1 E ~ (M + 1 / g(z))^-1, g the Stieltjes transform of (1 - c) MP(N / D), so the
   block filters beta^s, g^s become e^T f_s(G) e (outlier plus bulk, :func:`spike_filters`).
   At D < N this matters: e.g. K = 4, n = 25, D = 25 raises the fresh-sample logit margin by 7 %.
2b. Leak (the E <-> E^perp cross blocks; mean zero). G is invariant under rotations of E^perp, so the leak
   x_a = P_perp f(G) e_a of a spike direction e_a is isotropic there, E[x_a x_b^T] = delta_ab (V_a / m) P_perp,
   with V_a = e_a^T f(G)^2 e_a - (e_a^T f(G) e_a)^2, the variance of f under e_a's spectral measure (outlier
   plus bulk: :func:`_spike_variances`). Instance i's output gains sum_a [(Y - U)^T e_a (x_a . b) + (e_a . 1_k / n)
   Y_perp^T x_a]; summed over the class block and the shared-mean direction this is the covariance
   ``leak_output_cov`` (theory.symbolic_finite_dim, step g), and a fresh sample's logits gain ``leak_fresh_cov``.
   It matters when the shared-mean direction's filter (l_const / (l_const + mu))^s outlives the class
   filter (d > 0 and mu not small against l_class, many rounds): the leak then grows against the signal like
   their ratio to the power s, and SD ends by predicting one class for everything (accuracy 1/K) at every finite
   D. The E-block fluctuations (e_a^T f(G) e_b around its equivalent) are neglected.
3. Mean. For Haar eigenvectors, E[a^T F b] = (a . b) E_MP[f_s((1 - c) x)], so the
   block model's alpha^s becomes phi_s = E_MP[f_s((1 - c) x)]; the type-(k, l)
   output mean is U + phi_s (e_l - C_k) + b_s (C_k - Cbar) + c_s (Cbar - U),
   C = counts / n, b_s, c_s the deformed filters of step 2 (theory.type_outputs with
   alpha^s, beta^s, g^s -> phi_s, b_s, c_s).
4. Fluctuation. With F' = F - tr(F)/m, Haar invariance and tr F' = 0 force
   E[F'_ij F'_kl] = kappa (d_ik d_jl + d_il d_jk - (2/m) d_ij d_kl),
   kappa = sum_a f'_a^2 / ((m - 1)(m + 2)) ~ m Var_MP(f_s) / ((m - 1)(m + 2)).
   For instance i of type (k, l): b = (e_i)_perp (|b|^2 = 1 - 1/n), a_r = within-class
   part of row r of Y, a_r . b = u_r, u = e_l - C_k, and a_r . a_r' = Gamma_rr',
   Gamma = Y_perp Y_perp^T = n sum_k (diag(C_k) - C_k C_k^T). The output vector
   of the instance has covariance
       Sigma_s = kappa_s [(1 - 1/n) Gamma + (1 - 2/m) u u^T],
   Var_MP(f_s) = O(gamma) = O(N / D): variances scale like 1/D at large D.
   Margins (own class k minus class j) are Gaussian with the differences of
   these moments (their covariance across wrong classes j, j' included).
   Fluctuations of tr(F)/m (O(1/m^2)) are neglected.
5. All correct. Distinct instances are correlated only at O(1/n) (the within-class
   sum constraint and a rank-one common mode), neglected: P(all correct at t) =
   prod over types of p_kl(t)^counts[k, l]. First perfect round: perfection is
   treated as absorbing, so its CDF is the running maximum of P(all correct).
6. Fresh sample x of class k: N lambda times its logits is
   mu (Y - U) h_s(G) g_x, h_s(x) = x^(s-1) / (x + mu)^s, g_x = m_x + (1 - c) Z z / D.
   Mean: mu n [(c - d) h~_class (C_kj - Cbar_j) + (K d + c - d) h~_const (Cbar_j - 1/K)] with the
   deformed weights h~ = e^T h_s(G) e (theory.fresh_logits at D = infinity, a test checks it).
   Noise: given the training sample, Z z / D ~ N(0, W / D), hence the covariance
       mu^2 (1 - c) / D * E_MP[q_s((1 - c) x)] Gamma
     + mu^2 (1 - c)^2 / D * [h_s(mu_class)^2 n sum_k (C_k - Cbar)(C_k - Cbar)^T
                             + h_s(mu_const)^2 N (Cbar - U)(Cbar - U)^T],
   q_s(y) = y h_s(y)^2 (E^perp part with the Haar average tr(q)/m; E part with W_EE ~ I).
   Fresh accuracy = mean over k of P(logit k is the strict maximum).

Numerics. MP averages: the midpoint rule in theta on x = (a + b)/2 + (b - a)/2 cos(theta)
(the square-root edges become smooth and periodic: spectral convergence); the node count doubles until two orders agree
within ``quad_tol``, the difference is reported (``quadrature_error``); otherwise
RuntimeError. Gaussian orthant probabilities: exact for one margin; bounds from the union bound
settle the clear cases; else Genz's sequential conditioning with a randomly shifted rank-1 lattice
(fixed seed, deterministic), doubling the points (at most 2^18) until 3 standard errors plus the
bound below are < ``prob_tol`` (``probability_error`` reports the largest), otherwise RuntimeError.
Singular margin covariances (rank below K - 1: e.g. the training margins under superclass noise,
where Gamma and u live in the span of the within-superclass differences, so that
o_0 - o_1 = (o_0 - o_2) + (o_0 - o_3)) are treated as Genz and Bretz do: the correlation matrix's
rounding-level eigen-directions are dropped, and a component that is a linear combination of
earlier ones bounds an earlier variable instead of being integrated as a variable of rounding-level
variance (whose integrand is a step along a slanted line: its lattice error fell only like
~N^-0.8, so at K = 4, n = 25, D = 5 more than 2^18 points were needed). Each dropped part B_j, a Gaussian
independent of the kept part A_j, can change the probability by at most 2 sd(B_j) / (pi sd(A_j));
these bounds (within a budget of prob_tol / 4) are added to the reported error. Full-rank
problems are integrated as before (their estimates bitwise unchanged). Problems that are
identical after the ordering (e.g. the classes of symmetric counts) are integrated once, each
problem's estimate being the one it gets alone. D = math.inf gives the block model exactly
(signs decided by theory.correct_types / theory.population_accuracy in exact arithmetic).

Domain and known failures (measured in the tests and the step-1 report): any K >= 2 (the
lattice takes the first K - 2 primes; the orthant integrals' cost grows with K, below), n >= 2
and d >= 0 at finite D (the mixture needs d >= 0); checked against Monte Carlo for n = 20..100,
D/N = 0.2..100 (means within the Monte Carlo error; variances within a few per cent, too
high by up to ~6-10 % when D <~ 25, where the margins are visibly non-Gaussian). At
D/N = 0.05 (K = 4, n = 25, D = 5, superclass pairs, lambda = 1e-3; 2000 Monte Carlo samples) the
training accuracy is 0.013 / 0.021 / 0.030 / 0.016 below the linearised Monte Carlo at rounds 0 / 5 / 20 / 60
(without step 2b: 0.014-0.022 below at rounds 0-20 and 0.12 above at round 60), the fresh accuracy
0.040 / 0.048 / 0.045 below at rounds 0 / 5 / 20 and 0.085 above at round 60 (unchanged by step 2b). The
neglected pieces are O(1/m) finite-size corrections of the real Wishart (the spectral
variance is ~2 % low at m = 57, D = 600), the E-block fluctuations (step 2b), the O(1/n)
correlations between instances, and the absorbing-perfection assumption of step 5 (with
unbalanced given labels perfect rounds may end again).

Many rounds at a large lambda (step 2b; tests/theorems/test_finite_dim.py): K = 4, n = 25, c = 0.4, d = 0.1,
lambda = 0.1 (mu = 40 against l_class = 8.1), symmetric noise 0.36, 200 Monte Carlo samples: the linearised
Monte Carlo's training accuracy falls from 1.0 to 1/K around round 8-10 at D / N = 1, 12-15 at D / N = 100 and
18-20 at D / N = 1e5; the theory falls at the same rounds (the first round below 0.625 within one round) but
about half a round late, up to 0.16 too high during the fall (0.66 against 0.51 at round 8, D / N = 1). Without
step 2b it said 1.0 at every round, as the block model does. At the suite's default lambda = 5e-5 the filter
ratio is 1.0015 per round and the collapse is thousands of rounds away. Values far below the rounding of 1/K
are handled: margins are differences of the outputs' shifts from U, spike filters below the contour's
round-off floor are recomputed on the real line, and the orthant probabilities are scale invariant.

Cost (CPU seconds of one call with 60 rounds and the default prob_tol, on a shared 2-core
machine, two runs: docs/benchmarks_finite_dim.md, generated by benchmarks/bench_finite_dim.py):
K = 4, lambda = 5e-5, symmetric noise: ~0.15-0.2 s at D/N = 32, ~0.5-0.7 s at 1.25, ~2 s at 0.25;
the superclass case above at D/N = 0.05: ~2 s (it raised after ~85-95 s before the dependent
components were split off); superclass noise at D = N/2 (nearly singular fresh margins, 2^18
points): ~5-6 s; K = 5: ~3-4 s at lambda = 5e-5, D/N = 0.25, ~22-26 s at lambda = 1e-6 and
~52-56 s at D/N = 0.05 (n = 25: 720 distinct 4-dimensional integrals at up to 16384 points each).
K = 30 (n = 3, D/N = 3.3, round 0 only): ~1.5 s; at D <~ N the 28-dimensional fresh integrals do not
reach 1e-5 within 2^18 points (n = 3, D = 45: RuntimeError after ~30 s): use prob_tol 1e-4 or 1e-3 there.
``import theory.finite_dim`` imports numpy only (scipy.special and sympy are
imported inside the functions that need them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._generated import (
    fresh_logit_cov,
    fresh_logit_mean,
    haar_bracket,
    haar_kappa,
    leak_fresh_cov,
    leak_output_cov,
    type_output_shift,
    within_part,
)
from .validate import (
    check_array,
    check_block_correlations,
    check_bool,
    check_int,
    check_label_counts,
    check_positive,
    check_rounds,
    check_within_correlation,
)

__all__ = [
    "mp_average",
    "mp_stieltjes",
    "WithinSpectrum",
    "within_spectrum",
    "spike_filters",
    "margin_moments",
    "orthant_probability",
    "FiniteDimPrediction",
    "finite_dim_prediction",
    "first_perfect_quantiles",
]

_MAX_NODES = 1 << 18
_ORTHANT_POINTS = 1 << 18


def _mp_edges(ratio: float) -> tuple[float, float, float]:
    """(a, b, continuous mass) of Marchenko-Pastur with ratio gamma (mean 1)."""
    r = math.sqrt(ratio)
    return (1.0 - r) ** 2, (1.0 + r) ** 2, min(1.0, 1.0 / ratio)


def mp_average(funcs, ratio: float, quad_tol: float = 1e-12, order: int = 64):
    """E over Marchenko-Pastur(ratio) (mean 1, atom 1 - 1/ratio at 0 when ratio > 1) of each g in funcs.

    ``funcs(x)`` maps an array of nodes (shape (M,)) to an array (F, M) of values
    (F functions at once; the value at 0 is used for the atom). Returns
    (values (F,), quadrature_error): the largest difference (relative for averages
    above 1, else absolute) between the midpoint rules in theta with q and 2 q
    nodes (x = (a + b)/2 + (b - a)/2 cos theta), q doubling from ``order`` until
    that difference and the normalisation residuals (mass and mean against their
    exact values) are below ``quad_tol`` (RuntimeError beyond 2^18 nodes); the
    larger of the two is returned.
    """
    ratio = check_positive("ratio", ratio)
    quad_tol = check_positive("quad_tol", quad_tol)
    a, b, mass = _mp_edges(ratio)
    atom = 1.0 - mass

    def rule(q):
        # midpoint rule in theta: spectrally accurate, the integrand h(cos theta) sin^2 theta being
        # smooth, even and 2 pi-periodic
        th = math.pi * (np.arange(q) + 0.5) / q
        # x = (a + b)/2 + (b - a)/2 cos(th) with (a + b)/2 = 1 + ratio, (b - a)/2 = 2 sqrt(ratio)
        # (written without the difference b - a, which loses digits at tiny ratios)
        x = (1.0 + ratio) + 2.0 * math.sqrt(ratio) * np.cos(th)
        # density sqrt((b - x)(x - a)) / (2 pi ratio x) dx, dx = (b - a)/2 sin(th) dth
        wt = (math.pi / q) * 4.0 * np.sin(th) ** 2 / (2.0 * math.pi * x)
        vals = np.atleast_2d(funcs(x)) @ wt
        # the normalisation (mass, mean) converges with the averages
        norm = np.array([wt.sum() - mass, (wt * x).sum() - 1.0])
        if atom > 0:
            vals = vals + atom * np.atleast_2d(funcs(np.zeros(1)))[:, 0]
        return np.concatenate([vals, norm])

    q = check_int("order", order, minimum=8)
    prev = rule(q)
    while True:
        q *= 2
        cur = rule(q)
        # relative to the size of the averages (absolute below 1); the last two entries are
        # the normalisation residuals (exactly 0)
        err = float(np.max(np.abs(cur[:-2] - prev[:-2]) / np.maximum(1.0, np.abs(cur[:-2]))))
        norm_err = float(np.max(np.abs(cur[-2:])))
        if err <= quad_tol and norm_err <= quad_tol:
            break
        if q >= _MAX_NODES:
            raise RuntimeError(
                f"MP quadrature did not converge (ratio {ratio}): order difference {err:.3g}, "
                f"normalisation residual {norm_err:.3g}, quad_tol {quad_tol:.3g}, order {q}"
            )
        prev = cur
    cur = cur[:-2]
    return cur, max(err, norm_err)


@dataclass(frozen=True)
class WithinSpectrum:
    """Spectral averages over the within-class spectrum, for s = 1..fits (arrays indexed s - 1).

    phi: E_MP[f_s((1-c) x)] (alpha^s of the block model); var: Var_MP(f_s((1-c) x));
    kappa: the Haar covariance constant m var / ((m-1)(m+2)); fresh_q: E_MP[q_s((1-c) x)];
    ratio: (N - K)/D; quadrature_error: reported by :func:`mp_average`.
    """

    phi: np.ndarray
    var: np.ndarray
    kappa: np.ndarray
    fresh_q: np.ndarray
    ratio: float
    quadrature_error: float


def within_spectrum(K: int, n: int, c: float, lam: float, D: float, rounds: int, quad_tol: float = 1e-12) -> WithinSpectrum:
    """Averages of the training filter f_s and the fresh weight q_s over the within-class spectrum (see module doc),
    for rounds t = 0..rounds (s = t + 1 fits; arrays indexed by t)."""
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=2)
    c = check_within_correlation("c", c)
    fits = check_rounds("rounds", rounds) + 1
    lam = check_positive("lam", lam)
    D = _check_D(D)
    quad_tol = check_positive("quad_tol", quad_tol)
    N = K * n
    m = N - K
    sig2 = 1.0 - c
    mu = K * N * lam
    s = np.arange(1, fits + 1, dtype=np.float64)[:, None]
    if D == math.inf:
        a1 = sig2 / (sig2 + mu)
        phi = a1 ** s[:, 0]
        fq = sig2 * (sig2 ** (s[:, 0] - 1) / (sig2 + mu) ** s[:, 0]) ** 2
        z = np.zeros(fits)
        return WithinSpectrum(phi, z, z.copy(), fq, 0.0, 0.0)
    ratio = m / D

    def logf(x):
        y = sig2 * x
        with np.errstate(divide="ignore"):
            return s * (np.log(y) - np.log(y + mu))  # -inf at y = 0: f_s(0) = 0 for s >= 1

    def f_vals(x):
        return np.exp(logf(x))

    phi, e1 = mp_average(f_vals, ratio, quad_tol)
    var, e2 = mp_average(lambda x: (f_vals(x) - phi[:, None]) ** 2, ratio, quad_tol)

    def q_vals(x):
        y = sig2 * x
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.exp((2 * s - 1) * np.log(y) - 2 * s * np.log(y + mu))
        return np.where(y > 0, out, 0.0)  # q_s(0) = 0 for s >= 1

    # relative tolerance: q_s ~ 1/(1-c) at most
    fq, e3 = mp_average(q_vals, ratio, quad_tol)
    kappa = haar_kappa(m * var, m)
    return WithinSpectrum(phi, var, kappa, fq, ratio, max(e1, e2, e3))


def mp_stieltjes(z, ratio: float, scale: float = 1.0):
    """g(z) = E[1 / (scale x - z)], x ~ Marchenko-Pastur(ratio) (mean 1, atom 1 - 1/ratio at 0 when ratio > 1).

    Closed form m(w) = (1 - ratio - w + sqrt(w - a) sqrt(w - b)) / (2 ratio w), w = z / scale,
    principal square roots: analytic off [a, b] and 0, ~ -1/w at infinity, residue
    -(1 - 1/ratio) at w = 0 when ratio > 1 (the atom); evaluated as 2 / (1 - ratio - w - root)
    where that avoids cancellation. The tests compare it with
    :func:`mp_average` of 1 / (scale x - z).
    """
    ratio = check_positive("ratio", ratio)
    scale = check_positive("scale", scale)
    w = check_array("z", z, dtype=np.complex128) / scale
    a, b, _ = _mp_edges(ratio)
    root = np.sqrt(w - a) * np.sqrt(w - b)
    plus, minus = 1.0 - ratio - w + root, 1.0 - ratio - w - root
    # the same value two ways, (plus) / (2 ratio w) = 2 / (minus) (their product is 4 ratio w):
    # take the one without cancellation
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(np.abs(minus) >= np.abs(plus), 2.0 / minus, plus / (2.0 * ratio * w))
    return m / scale


def _spike_outliers(ells, sig2: float, ratio: float):
    """Outliers of e's spectral measure for the spikes ``ells``: (above, w_above, gap, w_gap), arrays over the
    spikes (0, 0 where there is none). Above the bulk: the root lambda* > top of 1 + l g(lambda) = 0 (g < 0 and
    increasing there), none when l <= -1 / g(top) (below the BBP threshold). When D < N (ratio > 1) MP has an atom
    at 0 and a gap (0, bottom) below its continuous part, where g increases from -infinity: a second root lies
    there when 1 + l g(bottom) > 0 (e.g. K = 4, n = 25, D = 5, where the spikes sit below the bulk).
    Roots by bisection, weights 1 / (l^2 g'(lambda*))."""
    a, b, _ = _mp_edges(ratio)
    top, bottom = sig2 * b, sig2 * a

    def g_real(x):
        return float(mp_stieltjes(x + 0j, ratio, sig2).real)

    def weight(lam_star, ell):
        w_ = lam_star / sig2
        m_ = mp_stieltjes(w_ + 0j, ratio, 1.0).real
        dm = -(ratio * m_ * m_ + m_) / (2.0 * ratio * w_ * m_ + w_ - 1.0 + ratio)  # m'(w)
        return 1.0 / (ell * ell * dm / sig2**2)

    def root(lo, hi, ell):  # 1 + l g is increasing in lambda on (lo, hi), negative at lo, positive at hi
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if 1.0 + ell * g_real(mid) < 0:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 4e-16 * hi:
                break
        return 0.5 * (lo + hi)

    nsp = len(ells)
    above, w_above, gap, w_gap = np.zeros(nsp), np.zeros(nsp), np.zeros(nsp), np.zeros(nsp)
    g_top = g_real(top * (1 + 1e-15))
    g_bottom = g_real(bottom * (1 - 1e-15)) if ratio > 1 else None
    for i, ell in enumerate(ells):
        if ell <= 0:
            continue
        if 1.0 + ell * g_top < 0:
            above[i] = root(top * (1 + 1e-15), top + 2.0 * ell + 1.0, ell)
            w_above[i] = weight(above[i], ell)
        if g_bottom is not None and 1.0 + ell * g_bottom > 0:
            gap[i] = root(bottom * 1e-12, bottom * (1 - 1e-15), ell)
            w_gap[i] = weight(gap[i], ell)
    return above, w_above, gap, w_gap


def _spike_variances(ells, sig2: float, ratio: float, mu: float, s, tol: float):
    """Var of f_s(x) = (x / (x + mu))^s and of h_s(x) = x^(s-1) / (x + mu)^s under e's spectral measure for each
    spike in ``ells`` (step 2b of the module doc: E|P_perp f(G) e|^2 = e^T f(G)^2 e - (e^T f(G) e)^2): the
    outliers (:func:`_spike_outliers`: above the bulk and, at D < N, in the gap below it) plus the bulk on the
    real line, density rho_MP(x) / |1 + l g(x + i0)|^2
    over (1 - c) MP(ratio), in two passes (mean, then the average of the squared deviation: no cancellation when
    the outlier carries nearly all the mass). Each function is divided by its largest value on the measure's
    support (f_s increases; h_s peaks at min(top, (s - 1) mu)), so the quadrature's absolute tolerance (the
    difference of two orders of mp_average's midpoint rule in theta, and the total mass 1) is one relative to
    that value. Returns (Vf (fits, spikes), Vh (fits, spikes), error relative to the largest value
    squared)."""
    a, b, _ = _mp_edges(ratio)
    above, w_above, gap, w_gap = _spike_outliers(ells, sig2, ratio)
    s = np.asarray(s, dtype=np.float64)
    fits, nsp = s.size, len(ells)
    top = max(sig2 * b, float(above.max()))
    logf_max = s * (math.log(top) - math.log(top + mu))
    pk = np.minimum(top, (s - 1.0) * mu)
    with np.errstate(divide="ignore"):
        logh_max = np.where(s > 1, (s - 1.0) * np.log(np.where(s > 1, pk, 1.0)), 0.0) - s * np.log(pk + mu)

    def normalised(y):  # (2 fits, M): f_s / max, h_s / max at y > 0
        logy, logym = np.log(y), np.log(y + mu)
        return np.vstack([np.exp(s[:, None] * (logy - logym) - logf_max[:, None]),
                          np.exp((s[:, None] - 1.0) * logy - s[:, None] * logym - logh_max[:, None])])

    def rule(q, transform):
        # the midpoint rule in theta of mp_average, on the continuous part of MP times e's weight
        # 1 / |1 + l g|^2; that weight vanishes like x at x -> 0, where MP's density has its 1 / x (ratio near 1):
        # the product stays smooth, so the rule converges where MP's own normalisation check would not
        th = math.pi * (np.arange(q) + 0.5) / q
        x = (1.0 + ratio) + 2.0 * math.sqrt(ratio) * np.cos(th)
        wt = (math.pi / q) * 4.0 * np.sin(th) ** 2 / (2.0 * math.pi * x)
        pos = x > 0
        y = sig2 * x[pos]
        g = mp_stieltjes(y + 0j, ratio, sig2)
        vals = normalised(y)
        out = np.empty((nsp, 2 * fits + 1))
        for i, ell in enumerate(ells):
            we = wt[pos] / np.abs(1.0 + ell * g) ** 2
            out[i, :-1] = transform(vals, i) @ we
            out[i, -1] = we.sum()  # the bulk's share of e's measure
        return out

    def average(transform):
        """E over e's measure of transform(normalised values, spike index) for every spike: (nsp, 2 fits), with
        the difference of two orders (absolute on the normalised values) and the mass residual."""
        q = 64
        prev = rule(q, transform)
        while True:
            q *= 2
            cur = rule(q, transform)
            err = float(np.abs(cur[:, :-1] - prev[:, :-1]).max())
            mass_res = float(np.abs(cur[:, -1] + w_above + w_gap - 1.0).max())
            if err <= tol and mass_res <= max(tol, 1e-11):
                break
            if q >= _MAX_NODES:
                raise RuntimeError(f"leak variances: the quadrature of e's spectral measure did not converge (ratio "
                                   f"{ratio:.6g}): order difference {err:.3g}, mass residual {mass_res:.3g}, tol {tol:.3g}")
            prev = cur
        bulk = cur[:, :-1].copy()
        for i in range(nsp):
            for loc, w in ((above[i], w_above[i]), (gap[i], w_gap[i])):
                if w > 0:
                    bulk[i] += w * transform(normalised(np.array([loc])), i)[:, 0]
        return bulk, max(err, mass_res)

    mean, e1 = average(lambda v, i: v)
    var, e2 = average(lambda v, i: (v - mean[i][:, None]) ** 2)
    Vf = var[:, :fits].T * np.exp(2.0 * logf_max)[:, None]
    Vh = var[:, fits:].T * np.exp(2.0 * logh_max)[:, None]
    return Vf, Vh, max(e1, e2)


def _spike_variances_contour(K, n, c, d, lam, D, rounds, tol):
    """Var of f_s and h_s under e's spectral measure from :func:`spike_filters` at 2 (rounds + 1) fits (the
    fallback of :func:`finite_dim_prediction` near a BBP threshold): (Vf, Vh (fits, 2), error relative to Var)."""
    T = rounds + 1
    mu = K * K * n * lam
    f_c, f_k, h_c, h_k, err = spike_filters(K, n, c, d, lam, D, 2 * T - 1, tol)
    F = np.stack([f_c, f_k], axis=1)  # F[s - 1] = E[f_s]
    H = np.stack([h_c, h_k], axis=1)
    s = np.arange(1, T + 1)
    second_f = F[2 * s - 1]  # E[f_2s]
    second_h = (H[2 * s - 2] - H[2 * s - 1]) / mu  # E[h_s^2] = E[h_(2s-1) - h_2s] / mu
    Vf = np.maximum(second_f - F[:T] ** 2, 0.0)
    Vh = np.maximum(second_h - H[:T] ** 2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        amp = np.nanmax(np.where(Vf > 0, second_f / Vf, 1.0)), np.nanmax(np.where(Vh > 0, second_h / Vh, 1.0))
    return Vf, Vh, float(err * max(amp))


def spike_filters(K: int, n: int, c: float, d: float, lam: float, D: float, rounds: int, tol: float = 1e-12):
    """Class-mean filters of the deformed model: e^T phi_s(G) e for the K class-mean directions.

    G = (1 - c) W + E M E^T (E: normalised class indicators, M = n (c - d) I + n d 1 1^T,
    eigenvalues l_class = n (c - d) (K - 1 times) and l_const = n (c - d) + N d; W the full
    N x N Wishart / D). Woodbury with the deterministic equivalent E^T ((1-c) W - z)^-1 E ~ g(z) I
    (g = :func:`mp_stieltjes`, ratio N / D) gives e^T (G - z)^-1 e = 1 / (l + 1 / g(z)), so
    e^T phi(G) e = -(1 / 2 pi i) contour-integral of phi(z) / (l + 1 / g(z)) around the spectrum.
    The outlier (root lambda* of 1 + l g = 0 above the bulk, found by bisection) contributes
    phi(lambda*) / (l^2 g'(lambda*)); the bulk, a contour integral on a circle through -mu/2
    (where |z / (z + mu)| = 1, so phi_s stays bounded) and half-way between the bulk's edge and
    the outlier, nodes clustered near -mu/2 (an outlier within a tenth of that distance of the edge,
    near the BBP threshold, is enclosed with the bulk and its residue left to the contour); the trapezoid rule doubles until two node counts
    agree within ``tol`` (relative) and outlier weight plus bulk mass is 1 within ``tol``
    (RuntimeError beyond 2^20 nodes). Values below the contour's round-off floor (many fits at a large mu)
    are recomputed on the real line (:func:`_bulk_on_real_line`, a positive integrand: relative precision).

    Returns (f_class, f_const, h_class, h_const, error): arrays over rounds t = 0..rounds (s = t + 1) of the
    training filter f_s(x) = (x / (x + mu))^s and the fresh weight h_s(x) = x^(s-1) / (x + mu)^s
    (the block model's beta^s, g^s and h_s(mu_class), h_s(mu_const) at D = infinity, where
    g(z) = 1 / (1 - c - z)), and the largest of the convergence error and the imaginary residue.
    """
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    c, d = check_block_correlations(K, n, c, d)
    lam = check_positive("lam", lam)
    D = _check_D(D)
    fits = check_rounds("rounds", rounds) + 1
    tol = check_positive("tol", tol)
    N = K * n
    mu = K * N * lam
    sig2 = 1.0 - c
    s = np.arange(1, fits + 1)[:, None]
    ells = np.array([n * (c - d), n * (c - d) + N * d])
    if D == math.inf:
        th = ells + sig2
        f = (th[None, :] / (th[None, :] + mu)) ** s
        h = th[None, :] ** (s - 1.0) / (th[None, :] + mu) ** s
        return f[:, 0], f[:, 1], h[:, 0], h[:, 1], 0.0
    ratio = N / D
    edge = sig2 * (1.0 + math.sqrt(ratio)) ** 2  # top of the bulk
    outl, wout, gap_l, gap_w = _spike_outliers(ells, sig2, ratio)
    # An outlier close to the bulk (near the BBP threshold, where its weight -> 0) is enclosed by the
    # contour with the bulk instead of being split off: a contour squeezed between them converges
    # only with ~ r / gap nodes. The right point goes into the first wide gap of edge < outliers,
    # wide meaning at least a tenth of the distance from -mu/2; past the last point when there is none.
    pts = np.concatenate([[edge], np.sort(outl[wout > 0])])
    right = None
    for lo_pt, hi_pt in zip(pts[:-1], pts[1:]):
        if hi_pt - lo_pt >= 0.1 * (lo_pt + 0.5 * mu):
            right = lo_pt + 0.5 * (hi_pt - lo_pt)
            break
        # else: the pole at hi_pt is inside the contour, its residue part of the contour integral
    if right is None:
        right = 1.5 * pts[-1] + 1.0
    has = (wout > 0) & (outl > right)
    wout_all = wout.copy()  # every outlier, enclosed or not (for the real-line bulk below)
    wout = np.where(has, wout, 0.0)
    left = -0.5 * mu
    xc, r = 0.5 * (left + right), 0.5 * (right - left)
    # nodes cluster at the left point, the singularities (0 and -mu) being mu/2 away from it:
    # theta = tau + kappa sin(tau), tau uniform (a smooth periodic map keeps the trapezoid rule spectral)
    kappa = 1.0 - min(0.5, math.sqrt(0.5 * mu / r))

    def rule(q):
        tau = 2.0 * math.pi * (np.arange(q) + 0.5) / q
        th = tau + kappa * np.sin(tau)
        dth = 1.0 + kappa * np.cos(tau)
        z = xc + r * np.exp(1j * th)
        g = mp_stieltjes(z, ratio, sig2)
        sl = g[None, :] / (1.0 + ells[:, None] * g[None, :])  # (2, q)
        ratio_z = z / (z + mu)
        f = ratio_z[None, :] ** s  # (fits, q)
        h = f / z[None, :]  # z^(s-1) / (z + mu)^s
        wts = -(z - xc) * dth / q  # -(1 / 2 pi i) dz
        F = (f[:, None, :] * sl[None]) @ wts  # (fits, 2): the bulk's part
        H = (h[:, None, :] * sl[None]) @ wts
        mass = sl @ wts  # the bulk's share of |e|^2 = 1
        # round-off floor of each sum: 1e-13 of the sum of the terms' moduli
        fl_F = 1e-13 * (np.abs(f)[:, None, :] * np.abs(sl * wts)[None]).sum(axis=-1)
        fl_H = 1e-13 * (np.abs(h)[:, None, :] * np.abs(sl * wts)[None]).sum(axis=-1)
        return F, H, mass, fl_F, fl_H

    q = 256
    F0, H0, _, _, _ = rule(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        f_out = np.where(has, (outl / (outl + mu))[None, :] ** s, 0.0) * wout
        h_out = np.where(has, outl[None, :] ** (s - 1.0) / (outl + mu)[None, :] ** s, 0.0) * wout
    while True:
        q *= 2
        F, H, mass, fl_F, fl_H = rule(q)
        # relative error, or absolute against the round-off floor where the value is below it
        # (e.g. f_s ~ 1e-30 at many fits, while |f_s| = 1 on the contour near -mu/2)
        scaleF = np.maximum(np.abs(F + f_out), fl_F / tol)
        scaleH = np.maximum(np.abs(H + h_out), fl_H / tol)
        err = float(max((np.abs(F - F0) / scaleF).max(), (np.abs(H - H0) / scaleH).max()))
        imag = float(max((np.abs(F.imag) / scaleF).max(), (np.abs(H.imag) / scaleH).max()))
        norm = float(np.abs(mass + wout - 1.0).max())  # total spectral mass of e is 1
        if err <= tol and imag <= max(tol, 1e-11) and norm <= max(tol, 1e-11):
            break
        if q >= 1 << 20:
            raise RuntimeError(
                f"spike-filter contour integral did not converge: error {err:.3g}, imaginary residue {imag:.3g}, "
                f"mass residual {norm:.3g} (tol {tol:.3g})"
            )
        F0, H0 = F, H
    F, H = F.real + f_out, H.real + h_out
    # Where a value is below the contour's round-off floor (f_s and h_s decay like (x / (x + mu))^s, while the
    # contour passes where |z / (z + mu)| = 1), the contour has no correct digits left: e.g. K = 4, n = 100,
    # lambda = 0.1, D = N, round 22 gave f_class = -1e-17 (a filter is positive). There the bulk's part is
    # recomputed on the real line, as the average over (1 - c) MP(N / D) of f_s(x) / |1 + l g(x + i0)|^2 (the
    # density of e's spectral measure, positive: relative precision at every s), plus every outlier's residue.
    # (replaced where the floor leaves fewer than 8 guaranteed digits; above that the contour's value and its
    # error, relative to max(|value|, floor / tol) as in the loop, stand)
    lowF, lowH = fl_F > 1e-8 * np.abs(F), fl_H > 1e-8 * np.abs(H)
    if lowF.any() or lowH.any():
        with np.errstate(divide="ignore", invalid="ignore", under="ignore"):
            out_all = np.where(wout_all > 0, 1.0, 0.0)
            fo = np.where(out_all > 0, (outl / (outl + mu))[None, :] ** s, 0.0) * wout_all
            ho = np.where(out_all > 0, outl[None, :] ** (s - 1.0) / (outl + mu)[None, :] ** s, 0.0) * wout_all
            # outliers in the gap below the bulk (D < N): enclosed by the contour, added here
            fo = fo + np.where(gap_w > 0, (gap_l / (gap_l + mu))[None, :] ** s, 0.0) * gap_w
            ho = ho + np.where(gap_w > 0, gap_l[None, :] ** (s - 1.0) / (gap_l + mu)[None, :] ** s, 0.0) * gap_w
        # the quadrature's tolerance is absolute on values normalised by their largest value on the bulk: it is
        # tightened (down to 1e-15) until the error relative to each replaced value is within tol
        qt, best = min(tol, 1e-12), None
        while True:
            try:
                Fb, Hb, mass_b, err_b = _bulk_on_real_line(ells, sig2, ratio, mu, s[:, 0], qt)
            except RuntimeError:
                if best is None:
                    raise
                break  # the tighter tolerance is out of the quadrature's reach: keep the last result
            Fr, Hr = Fb + fo, Hb + ho  # all positive
            rel = max(float(np.max(np.where(lowF, err_b[0] / Fr, 0.0))), float(np.max(np.where(lowH, err_b[1] / Hr, 0.0))))
            best = (Fr, Hr, mass_b, rel)
            if rel <= tol or qt <= 1e-15:
                break
            qt = max(qt * max(tol / rel, 1e-3) / 2.0, 1e-15)
        Fr, Hr, mass_b, rel = best
        if rel > tol:
            raise RuntimeError(f"spike filters below the contour's round-off floor: the real-line quadrature reached a "
                               f"relative error {rel:.3g}, above tol {tol:.3g}")
        F = np.where(lowF, Fr, F)
        H = np.where(lowH, Hr, H)
        norm = max(norm, float(np.abs(mass_b + wout_all + gap_w - 1.0).max()))
        err = max(err, rel)
    return F[:, 0], F[:, 1], H[:, 0], H[:, 1], max(err, imag, norm)


def _bulk_on_real_line(ells, sig2: float, ratio: float, mu: float, s, tol: float):
    # tol: mp_average's quad_tol
    """The bulk's part of e^T f_s(G) e and e^T h_s(G) e for the spikes ``ells`` on the real line (see
    :func:`spike_filters`): E over MP(ratio) (continuous part; e's measure has no atom at 0, where g has its pole)
    of f_s((1 - c) x) w_l(x), w_l = 1 / |1 + l g((1 - c) x + i0)|^2 (g = :func:`mp_stieltjes`, whose principal
    roots give the limit from above on the bulk). Each f_s and h_s is divided by its largest value on the bulk
    (analytic: f_s increases; h_s peaks at min(top, (s - 1) mu)) so that :func:`mp_average`'s absolute tolerance
    is one relative to that largest value; returns (F (fits, 2), H (fits, 2), bulk masses (2,), the absolute
    errors of F and H)."""
    a, b, _ = _mp_edges(ratio)
    top = sig2 * b
    logf_max = s * (math.log(top) - math.log(top + mu))
    pk = np.minimum(top, (s - 1.0) * mu)
    with np.errstate(divide="ignore"):
        logh_max = np.where(s > 1, (s - 1.0) * np.log(np.where(s > 1, pk, 1.0)), 0.0) - s * np.log(pk + mu)
    fits = s.size

    def funcs(x):
        out = np.zeros((len(ells) * (2 * fits + 1), x.size))
        pos = x > 0
        if not pos.any():
            return out
        y = sig2 * x[pos]
        g = mp_stieltjes(y + 0j, ratio, sig2)
        logy, logym = np.log(y), np.log(y + mu)
        f = np.exp(s[:, None] * (logy - logym) - logf_max[:, None])
        h = np.exp((s[:, None] - 1.0) * logy - s[:, None] * logym - logh_max[:, None])
        for i, ell in enumerate(ells):
            w = 1.0 / np.abs(1.0 + ell * g) ** 2
            at = i * (2 * fits + 1)
            out[at:at + fits, pos] = f * w
            out[at + fits:at + 2 * fits, pos] = h * w
            out[at + 2 * fits, pos] = w
        return out

    vals, err = mp_average(funcs, ratio, tol)
    vals = vals.reshape(len(ells), 2 * fits + 1)
    fn, hn, mass = vals[:, :fits], vals[:, fits:2 * fits], vals[:, 2 * fits]
    F = fn.T * np.exp(logf_max)[:, None]
    H = hn.T * np.exp(logh_max)[:, None]
    # mp_average's error is absolute on the normalised values
    return F, H, mass, (err * np.exp(logf_max)[:, None], err * np.exp(logh_max)[:, None])


def _gamma_matrix(C: np.ndarray, n: int) -> np.ndarray:
    """Gamma = Y_perp Y_perp^T = n sum_k (diag(C_k) - C_k C_k^T), C = counts / n."""
    return n * (np.diag(C.sum(axis=0)) - C.T @ C)


def margin_moments(K, n, c, d, lam, D, counts, t: int, quad_tol: float = 1e-12):
    """Mean and covariance of the margins of every type after round t.

    Returns (mean (K, K, K), cov (K, K, K, K)): mean[k, l, j] = E[own-class output
    minus class-j output] for a class-k instance given label l (0 at j == k),
    cov[k, l] = the K x K covariance of those K margins (row/column k zero).
    """
    t = check_int("t", t, minimum=0)
    pred = finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=t, quad_tol=quad_tol, probabilities=False)
    return pred.margin_mean[t], pred.margin_cov[t]


# --------------------------------------------------------------------------------------------
# Gaussian orthant probabilities P(X > 0), X ~ N(mean, cov), batched


def _primes(count: int) -> np.ndarray:
    """The first ``count`` primes (trial division by the primes found so far; count is at most a few hundred)."""
    found: list[int] = []
    cand = 2
    while len(found) < count:
        if all(cand % q for q in found if q * q <= cand):
            found.append(cand)
        cand += 1
    return np.array(found, dtype=np.float64)


def _lattice(dim: int, npts: int) -> np.ndarray:
    """Rank-1 (Richtmyer) lattice: frac(i * sqrt(primes)) for i = 1..npts, shape (npts, dim), the first dim primes."""
    # any square-free integers serve (their square roots and 1 are linearly independent over Q, which is all the
    # lattice needs); the estimates, not the generator, are what the tests can observe
    i = np.arange(1, npts + 1, dtype=np.float64)[:, None]
    return np.mod(i * np.sqrt(_primes(dim))[None, :], 1.0)


def orthant_probability(mean, cov, tol: float = 1e-6, seed: int = 12345, max_points: int = 1 << 16):
    """P(X_j > 0 for all j) for X ~ N(mean, cov), batched over leading axes.

    mean (..., p), cov (..., p, p) positive semidefinite (an eigenvalue of the correlation matrix below -1e-8
    times the largest raises ValueError), any p. Returns (prob (...), error (...)): the error is a bound
    (union-bound cases, exact cases 0) or 3 standard errors of the randomised lattice (Genz's separation of
    variables) plus, for singular covariances, the bound on the parts dropped to split off dependent
    components (:func:`_dependent_factor`), below ``tol`` or RuntimeError (at ``max_points`` lattice points).
    Zero-variance components are decided by their sign (ties, mean 0, fail).
    """
    from scipy.special import ndtr, ndtri

    mean = check_array("mean", mean)
    if mean.ndim < 1 or mean.shape[-1] < 1:
        raise ValueError(f"mean has shape {mean.shape}, must be (..., p) with p >= 1")
    shape = mean.shape[:-1]
    p = mean.shape[-1]
    cov = check_array("cov", cov)
    if cov.shape != mean.shape + (p,):
        raise ValueError(f"cov has shape {cov.shape}, must be {mean.shape + (p,)} (mean's shape plus ({p},))")
    tol = check_positive("tol", tol)
    seed = check_int("seed", seed, minimum=0)
    max_points = check_int("max_points", max_points, minimum=1)
    mflat = mean.reshape(-1, p)
    cflat = cov.reshape(-1, p, p)
    B = len(mflat)
    prob = np.empty(B)
    err = np.zeros(B)
    sd = np.sqrt(np.clip(np.diagonal(cflat, axis1=1, axis2=2), 0.0, None))
    # deterministic: a standard deviation below 1e-13 of the problem's own scale (its largest |mean| or standard
    # deviation; P(X > 0) does not change when X is scaled, and margins after many rounds at a large lambda are
    # ~1e-20); a problem of all zeros is all ties
    scale = np.maximum(np.abs(mflat).max(axis=1), sd.max(axis=1))
    tiny = 1e-13 * scale[:, None]
    det = sd <= tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(det, np.where(mflat > 0, np.inf, -np.inf), mflat / np.where(det, 1.0, sd))
    upper = ndtr(z).min(axis=1)
    lower = np.maximum(1.0 - ndtr(-z).sum(axis=1), 0.0)  # (never above 1: a sum of probabilities is subtracted)
    settled = (upper - lower) <= tol
    prob[settled] = 0.5 * (upper[settled] + lower[settled])
    err[settled] = 0.5 * (upper[settled] - lower[settled])
    todo = np.flatnonzero(~settled)
    if todo.size:
        rng = np.random.default_rng(seed)
        prob[todo], err[todo] = _genz_batch(mflat[todo], cflat[todo], det[todo], tol, rng, max_points, ndtr, ndtri)
    return prob.reshape(shape), err.reshape(shape)


def _dependent_factor(R: np.ndarray, tol: float):
    """Factor of a singular correlation matrix R (B, p, p) in the given order, dependent rows split off (Genz and Bretz).

    X ~ N(0, R) is replaced by B z, z ~ N(0, I), B = V_r Lambda_r^(1/2) from R's eigendecomposition without its
    smallest eigenvalues, as many as keep the bound below within tol / 8 (exactly singular R: the rounding-level ones).
    Gram-Schmidt on the rows of B, in order, makes them L Q with Q orthonormal: row j is a pivot (a new integration
    variable, L[j, j] > 0) when its part orthogonal to the earlier pivots is above delta = pi tol / (16 p); else it is a
    linear combination of earlier pivot variables (L[j, j] = 0, L[., j] = 0 below), and its constraint
    sum_k L_jk w_k < m_j bounds w_t, t = tgt[j] its last pivot column, from above (L_jt > 0) or below. Its residual and
    trailing coefficients are dropped as long as their variance stays within delta^2.

    Every dropped part B_j is a Gaussian independent of the kept part A_j of its component (orthogonal directions of z,
    or of the eigenbasis), so replacing A_j + B_j by A_j changes the event only where |A_j - m_j| < |B_j|, of
    probability at most 2 sd(B_j) / (pi sd(A_j)) (A_j's density is at most 1 / (sqrt(2 pi) sd(A_j)),
    E|B_j| = sd(B_j) sqrt(2 / pi)). ``bias`` is the sum of these bounds over components (eigenvalues taken in absolute
    value: up to the rounding of the eigendecomposition), at most about tol / 4.

    Returns (L, piv (B, p) bool, tgt (B, p) int, bias (B,), dropped (B,) the number of eigenvalues dropped: 0 means R
    is treated as of full rank, and L, piv, tgt, bias are then not meaningful). An eigenvalue below -1e-8 times the
    largest (beyond rounding: R indefinite) raises ValueError.
    """
    B, p = R.shape[:2]
    lam, V = np.linalg.eigh(R)  # ascending
    bad = lam[:, 0] < -1e-8 * lam[:, -1]
    if bad.any():
        b = int(np.flatnonzero(bad)[0])
        raise ValueError(f"cov is not positive semidefinite: eigenvalue {float(lam[b, 0]):.3g} of the correlation "
                         f"matrix of problem {b} (largest {float(lam[b, -1]):.3g})")
    # dd[b, j, k]: the variance of component j in the k + 1 smallest eigen-directions
    dd = np.cumsum(V**2 * np.abs(lam)[:, None, :], axis=2)
    cost = (2.0 / math.pi) * (np.sqrt(dd) / np.sqrt(np.clip(1.0 - dd, 1e-300, None))).sum(axis=1)  # (B, p)
    ok = cost <= tol / 8.0
    ok[:, -1] = False  # at least one direction stays
    dropped = np.cumprod(ok, axis=1).sum(axis=1)
    bias = np.where(dropped > 0, np.take_along_axis(cost, np.maximum(dropped - 1, 0)[:, None], axis=1)[:, 0], 0.0)
    L = np.zeros_like(R)
    piv = np.ones((B, p), dtype=bool)
    tgt = np.tile(np.arange(p), (B, 1))
    sing = np.flatnonzero(dropped > 0)
    if sing.size == 0:
        return L, piv, tgt, bias, dropped
    keep = np.arange(p)[None, :] >= dropped[sing, None]
    Bm = V[sing] * np.sqrt(np.where(keep, np.clip(lam[sing], 0.0, None), 0.0))[:, None, :]  # (rows, directions)
    Ls, Q = np.zeros_like(Bm), np.zeros_like(Bm)  # Q[:, i]: the unit direction of pivot i (zero for dependent rows)
    ps, ts, bs = piv[sing], tgt[sing], bias[sing]
    delta = math.pi * tol / (16.0 * p)
    for j in range(p):
        v = Bm[:, j, :]
        coef = np.einsum("bid,bd->bi", Q[:, :j], v)
        res = v - np.einsum("bi,bid->bd", coef, Q[:, :j])
        again = np.einsum("bid,bd->bi", Q[:, :j], res)  # a second pass (classical Gram-Schmidt twice)
        coef, res = coef + again, res - np.einsum("bi,bid->bd", again, Q[:, :j])
        nr = np.sqrt(np.einsum("bd,bd->b", res, res))
        ps[:, j] = nr > delta
        Ls[:, j, :j] = coef
        Ls[:, j, j] = np.where(ps[:, j], nr, 0.0)
        Q[:, j] = np.where(ps[:, j, None], res / np.where(ps[:, j], nr, 1.0)[:, None], 0.0)
        for b in np.flatnonzero(~ps[:, j]):
            row = Ls[b, j]
            lost = float(nr[b]) ** 2
            cols = np.flatnonzero(row[:j])  # pivot columns with a nonzero coefficient, increasing
            if cols.size == 0:  # unreachable: component j has unit variance (zero-variance ones are the caller's det)
                raise ValueError(f"component {j} of a problem has no variance and was not marked deterministic")
            n_keep = cols.size
            while n_keep > 1 and lost + row[cols[n_keep - 1]] ** 2 <= delta * delta:
                n_keep -= 1
                lost += row[cols[n_keep]] ** 2
                row[cols[n_keep]] = 0.0
            ts[b, j] = cols[n_keep - 1]
            bs[b] += 2.0 * math.sqrt(lost) / (math.pi * math.sqrt(float(row @ row)))
    L[sing], piv[sing], tgt[sing], bias[sing] = Ls, ps, ts, bs
    return L, piv, tgt, bias, dropped


def _genz_batch(m, S, det, tol, rng, max_points, ndtr, ndtri, nshift: int = 12):
    """Genz's method for P(Y < m), Y ~ N(0, S) (the same as P(X > 0) for X ~ N(m, S)), batched.

    Deterministic components (``det``) become indicator factors; variables are ordered by
    increasing standardised bound; components that are linear combinations of earlier ones (S singular, e.g. the
    training margins of superclass noise, whose covariance has rank below K - 1) bound an earlier variable instead of
    being integrated (Genz and Bretz's treatment of singular covariances, :func:`_dependent_factor`; the dropped
    parts' bound ``bias`` is added to the error); the randomised lattice doubles per problem until
    3 standard errors over ``nshift`` shifts plus that bias are below ``tol``.
    """
    B, p = m.shape
    sd = np.sqrt(np.clip(np.diagonal(S, axis1=1, axis2=2), 0.0, None))
    key = np.where(det, -np.inf, m / np.where(det, 1.0, sd))  # deterministic first (indicator factors)
    order = np.argsort(key, axis=1)
    m = np.take_along_axis(m, order, axis=1)
    S = np.take_along_axis(np.take_along_axis(S, order[:, :, None], axis=1), order[:, None, :], axis=2)
    det = np.take_along_axis(det, order, axis=1)
    # a deterministic component: its row and column of S become those of the identity, so the Cholesky
    # factor is the identity there too and its bound +-inf below makes it the factor [mean > 0] whatever the
    # uniform drawn for it
    S = np.where(det[:, :, None] | det[:, None, :], 0.0, S) + det[:, :, None] * np.eye(p)
    # identical problems (after the ordering; e.g. the classes of symmetric label counts) are integrated once: a
    # problem's estimate depends only on its own inputs and the shifts, which are the same for every problem
    _, first, back = np.unique(np.concatenate([m, S.reshape(B, -1), det], axis=1), axis=0, return_index=True,
                               return_inverse=True)
    m, S, det, back, B = m[first], S[first], det[first], back.reshape(-1), first.size
    # singular covariances (dependent components, e.g. the training margins of superclass noise): the standardised
    # problem, factored by _dependent_factor; the others by LAPACK's Cholesky with a 1e-14 relative jitter (as before
    # the dependent components were split off: their estimates are unchanged)
    sd = np.sqrt(np.diagonal(S, axis1=1, axis2=2))  # > 0: deterministic components have unit variance now
    L, piv, tgt, bias, dropped = _dependent_factor(S / (sd[:, :, None] * sd[:, None, :]), tol)
    full = dropped == 0
    m = np.where(full[:, None], m, m / sd)
    if full.any():
        Sf = S[full]
        jitter = 1e-14 * np.trace(Sf, axis1=1, axis2=2)[:, None, None] * np.eye(p)
        L[full] = np.linalg.cholesky(Sf + jitter)
    # rows bounding an earlier variable (in some problem of the batch), by that variable's position
    extra = [np.flatnonzero(np.any((tgt == i) & ~piv, axis=0)) for i in range(p)]
    # deterministic rows: bound +-inf by the sign of the mean (a tie, mean 0, fails)
    m = np.where(det, np.where(m > 0, np.inf, -np.inf), m)
    prob = np.empty(B)
    err = np.empty(B)
    todo = np.arange(B)
    npts = 256
    while todo.size:
        base = _lattice(max(p - 1, 1), npts)
        est = np.empty((todo.size, nshift))
        # problems per chunk: about 2^21 lattice coordinates in memory at a time
        chunk = max(1, (1 << 21) // (npts * p))
        for r in range(nshift):
            u = np.abs(2.0 * np.mod(base + rng.random(base.shape[1])[None, :], 1.0) - 1.0)  # baker's transform
            for c0 in range(0, todo.size, chunk):
                sel = todo[c0:c0 + chunk]
                est[c0:c0 + chunk, r] = _genz_pass(m[sel], L[sel], piv[sel], tgt[sel], extra, u, ndtr, ndtri)
        val = est.mean(axis=1)
        se = 3.0 * est.std(axis=1, ddof=1) / math.sqrt(nshift)
        tot = se + bias[todo]
        done = tot <= tol
        prob[todo[done]] = val[done]
        err[todo[done]] = tot[done]
        if not done.all() and npts >= max_points:
            w = int(np.argmax(np.where(done, -np.inf, tot)))
            extra_msg = (f" plus {float(bias[todo[w]]):.3g} for the dropped dependent parts" if bias[todo[w]] > 0 else "")
            raise RuntimeError(f"orthant probability did not converge: 3 s.e. {float(se[w]):.3g}{extra_msg} > tol {tol:.3g}")
        todo = todo[~done]
        npts *= 2
    return prob[back], err[back]


def _genz_pass(m, L, piv, tgt, extra, u, ndtr, ndtri):
    """Mean over the points u (npts, >= p - 1) of Genz's integrand, for problems (b,) with factors L (b, p, p)."""
    b, p = m.shape
    npts = u.shape[0]
    w = np.zeros((b, npts, p))
    e = np.ones((b, npts))
    for i in range(p):
        with np.errstate(invalid="ignore"):
            lim = (m[:, i, None] - np.einsum("bqj,bj->bq", w[:, :, :i], L[:, i, :i])) / np.where(piv[:, i], L[:, i, i], 1.0)[:, None]
        lim = np.where(np.isnan(lim), -np.inf, lim)
        hi = np.where(piv[:, i, None], lim, np.inf)  # a dependent position is integrated at its target
        lo = None
        for j in extra[i]:
            on = (tgt[:, j] == i) & ~piv[:, j]
            if not on.any():
                continue
            coef = np.where(on, L[:, j, i], 1.0)
            bound = (m[:, j, None] - np.einsum("bqj,bj->bq", w[:, :, :i], L[:, j, :i])) / coef[:, None]
            up, down = (on & (coef > 0))[:, None], (on & (coef < 0))[:, None]
            hi = np.where(up, np.minimum(hi, bound), hi)
            lo = np.full_like(hi, -np.inf) if lo is None else lo
            lo = np.where(down, np.maximum(lo, bound), lo)
        if lo is None:
            ei = ndtr(hi)
            if i < p - 1:
                w[:, :, i] = ndtri(np.clip(u[None, :, i] * ei, 1e-300, 1.0 - 1e-16))
        else:
            plo = ndtr(lo)
            ei = np.clip(ndtr(hi) - plo, 0.0, None)
            if i < p - 1:
                w[:, :, i] = ndtri(np.clip(plo + u[None, :, i] * ei, 1e-300, 1.0 - 1e-16))
        e = e * ei
    return e.mean(axis=1)


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FiniteDimPrediction:
    """Finite-D linearised prediction for rounds t = 0..rounds (arrays indexed by t first).

    output_mean[t, k, l] (K,): mean outputs of a type-(k, l) instance; margin_mean[t, k, l, j]
    own-class minus class-j output (0 at j = k); margin_cov[t, k, l] (K, K) covariance of
    those margins; p_correct[t, k, l] P(type correct) (nan for absent types);
    train_accuracy[t] expected accuracy against true labels; p_all_correct[t] P(every
    training instance correct); first_perfect_cdf[t] P(first perfect round <= t) (running
    max of p_all_correct); fresh_accuracy[t] and fresh_accuracy_class[t, k];
    fresh_margin_mean / fresh_margin_cov as for training (row k: a fresh class-k sample,
    in units of N lambda times the logits); block_first_round: theory.min_rounds;
    first_perfect: median, q10, q90 (None: beyond the rounds), p_equal_block;
    quadrature_error, probability_error: the largest reported errors.
    """

    K: int
    n: int
    c: float
    d: float
    lam: float
    D: float
    counts: np.ndarray
    rounds: int
    phi: np.ndarray
    kappa: np.ndarray
    output_mean: np.ndarray
    margin_mean: np.ndarray
    margin_cov: np.ndarray
    fresh_margin_mean: np.ndarray
    fresh_margin_cov: np.ndarray
    p_correct: np.ndarray | None = None
    train_accuracy: np.ndarray | None = None
    p_all_correct: np.ndarray | None = None
    first_perfect_cdf: np.ndarray | None = None
    fresh_accuracy: np.ndarray | None = None
    fresh_accuracy_class: np.ndarray | None = None
    block_first_round: int | None = None
    first_perfect: dict = field(default_factory=dict)
    quadrature_error: float = 0.0
    probability_error: float = 0.0


def _check_D(D):
    if isinstance(D, (int, float)) and not isinstance(D, bool) and D == math.inf:
        return math.inf
    return check_positive("D", D)


def first_perfect_quantiles(cdf: np.ndarray, block_round: int | None) -> dict:
    """median, q10, q90 (least t with CDF >= q; None beyond the rounds) and p_equal_block.

    p_equal_block = P(first = block_round), or P(not perfect within the rounds) when the
    block model never reaches a perfect round (block_round None).
    """
    cdf = check_array("cdf", cdf, ndim=1)
    if cdf.size == 0:
        raise ValueError(f"cdf has shape {cdf.shape}, must hold one value per round (at least one)")
    if block_round is not None:
        block_round = check_rounds("block_round", block_round)

    def quant(q):
        idx = np.flatnonzero(cdf >= q)
        return int(idx[0]) if idx.size else None

    if block_round is None:
        p_eq = float(1.0 - cdf[-1])
    elif block_round >= len(cdf):
        p_eq = float("nan")
    else:
        p_eq = float(cdf[block_round] - (cdf[block_round - 1] if block_round > 0 else 0.0))
    return {"median": quant(0.5), "q10": quant(0.1), "q90": quant(0.9), "p_equal_block": p_eq}


def finite_dim_prediction(
    K: int,
    n: int,
    c: float,
    d: float,
    lam: float,
    D: float,
    counts,
    rounds: int = 60,
    quad_tol: float = 1e-12,
    prob_tol: float = 1e-5,
    probabilities: bool = True,
    leak: bool = True,
) -> FiniteDimPrediction:
    """The finite-D linearised theory for rounds 0..rounds (see the module doc).

    counts: K x K, counts[k, l] = instances of class k given label l (rows sum to n).
    D: feature noise dimension, > 0, or math.inf for the block model.
    leak: include step 2b, the spike directions' leak into E^perp (default); False gives the model without it
    (as theory.finite_dim_classes and the PLL student's own fluctuations are), for comparisons.
    """
    from . import conditions, predictions

    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=2)
    c, d = check_block_correlations(K, n, c, d)
    lam = check_positive("lam", lam)
    D = _check_D(D)
    if D != math.inf and d < 0:
        raise ValueError(f"d == {d}, must be >= 0 at finite D (d is the squared length of the mixture's shared mean)")
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K}) for K == {K}")
    rounds = check_int("rounds", rounds, minimum=0)
    quad_tol = check_positive("quad_tol", quad_tol)
    prob_tol = check_positive("prob_tol", prob_tol)
    probabilities = check_bool("probabilities", probabilities)
    leak = check_bool("leak", leak)
    N, m = K * n, K * n - K
    mu = K * N * lam
    sig2 = 1.0 - c
    C = counts / n
    Cbar = C.mean(axis=0)
    T = rounds + 1
    fits = np.arange(1, T + 1)
    spec = within_spectrum(K, n, c, lam, D, rounds, quad_tol)
    from .block_model import filters, block_eigenvalues

    alpha, beta, g = filters(K, n, c, d, lam)
    _, mu_class, mu_const = block_eigenvalues(K, n, c, d)
    # the contour integral's round-off floor is ~1e-13 relative: its tolerance is at least 1e-10
    f_class, f_const, hs_class, hs_const, spike_err = spike_filters(K, n, c, d, lam, D, rounds, max(quad_tol, 1e-10))
    eye = np.eye(K)
    # output means, [t, k, l, r] (the closed forms are theory.symbolic_finite_dim's, printed into theory._generated)
    dev = within_part(eye[None, :, :], C[:, None, :])  # e_l - C_k, (K, K, K) [k, l, r]
    # the mean minus U: margins are differences of shifts, so that they keep their relative precision when the
    # filters have decayed below the rounding of U = 1/K (many rounds at a large lambda)
    shift = type_output_shift(
        K, spec.phi[:, None, None, None], f_class[:, None, None, None], f_const[:, None, None, None],
        eye[None, None, :, :], C[None, :, None, :], Cbar[None, None, None, :],
    )
    out_mean = 1.0 / K + shift
    own = np.take_along_axis(shift, np.arange(K)[None, :, None, None].repeat(T, 0).repeat(K, 2), axis=3)
    margin_mean = own - shift  # [t, k, l, j]
    Gam = _gamma_matrix(C, n)
    out_cov = spec.kappa[:, None, None, None, None] * haar_bracket(
        n, m, Gam[None, None, None], dev[None, :, :, :, None], dev[None, :, :, None, :]
    )  # [t, k, l, r, r']
    leak_err = 0.0
    Dc = C - Cbar
    E_class = n * Dc.T @ Dc
    E_const = N * np.outer(Cbar - 1.0 / K, Cbar - 1.0 / K)
    Vh = np.zeros((T, 2))
    if D != math.inf and leak:
        # step 2b: the spike directions' leak into E^perp (the class block and the shared-mean direction). The
        # deterministic equivalent spreads e's bulk share over N directions, the leak has m = N - K of them: times
        # m / N (the exact E|P_perp f(G) e|^2 on sampled Grams over the uncorrected V: 0.91-0.93 at K = 3, n = 12,
        # m / N = 0.917; 0.95-0.97 at K = 4, n = 25, m / N = 0.96; with the factor within 0.2-0.5 % at K = 3, n = 12,
        # D = N, 6000 samples: test_the_leak_covariance_is_the_exact_cross_blocks_covariance)
        try:
            Vf, Vh, leak_err = _spike_variances(np.array([n * (c - d), n * (c - d) + N * d]), sig2, N / D, mu, fits,
                                                max(quad_tol, 1e-12))
        except RuntimeError:
            # a spike next to its BBP threshold puts a peak of e's density at the bulk's edge that the real-line
            # rule cannot resolve; the contour (which encloses such an outlier with the bulk) gives the moments
            # instead: f_s^2 = f_2s and h_s^2 = (h_(2s-1) - h_2s) / mu, so Var = E[f_2s] - E[f_s]^2 etc. (no
            # cancellation there: the outlier's weight is small near the threshold; the error is amplified by
            # E[f^2] / Var and reported)
            Vf, Vh, leak_err = _spike_variances_contour(K, n, c, d, lam, D, rounds, max(quad_tol, 1e-10))
        Vf, Vh = Vf * (m / N), Vh * (m / N)
        # an absent type has no instance, whose own row of Y the cross part needs: it gets no leak term
        present_kl = (counts > 0)[None, :, :, None, None]
        out_cov = out_cov + present_kl * leak_output_cov(
            m, n, K, Vf[:, 0, None, None, None, None], Vf[:, 1, None, None, None, None], Gam[None, None, None],
            E_class[None, None, None], E_const[None, None, None], dev[None, :, :, :, None], dev[None, :, :, None, :],
            C[None, :, None, :, None], C[None, :, None, None, :], Cbar[None, None, None, :, None],
            Cbar[None, None, None, None, :],
        )
    # margin_j = o_k - o_j: cov(j, j') = S_kk - S_kj' - S_jk + S_jj'
    kk = np.arange(K)
    S = out_cov
    Skk = S[:, kk, :, kk, kk].transpose(1, 0, 2)  # [t, k, l]
    Skj = S[:, kk, :, kk, :].transpose(1, 0, 2, 3)  # [t, k, l, j]
    Sjk = S[:, kk, :, :, kk].transpose(1, 0, 2, 3)
    margin_cov = Skk[..., None, None] - Skj[..., None, :] - Sjk[..., :, None] + S
    # fresh samples: N lambda x logits
    # N lambda x logit_j of a fresh class-k sample:
    # mu n [(c - d) h_class (C_kj - Cbar_j) + (K d + c - d) h_const (Cbar_j - 1/K)]
    fresh_mean = fresh_logit_mean(
        mu, n, c, d, K, hs_class[:, None, None], hs_const[:, None, None], C[None], Cbar[None, None, :]
    )  # [t, k, j]
    h_class = mu_class ** (fits - 1.0) / (mu_class + mu) ** fits
    h_const = mu_const ** (fits - 1.0) / (mu_const + mu) ** fits
    if D == math.inf:
        fresh_cov_logit = np.zeros((T, K, K))
    else:
        fresh_cov_logit = fresh_logit_cov(
            mu, D, sig2, spec.fresh_q[:, None, None], Gam[None], h_class[:, None, None], h_const[:, None, None],
            E_class[None], E_const[None],
        ) + leak_fresh_cov(mu, m, n, K, c, d, Vh[:, 0, None, None], Vh[:, 1, None, None], Gam[None])
    own_f = fresh_mean[:, kk, kk]  # [t, k]
    fresh_margin_mean = own_f[:, :, None] - fresh_mean
    Fk = fresh_cov_logit  # same for every class k
    fresh_margin_cov = (
        Fk[:, kk, kk][:, :, None, None]
        - Fk[:, kk, :][:, :, None, :]
        - Fk[:, :, kk].transpose(0, 2, 1)[:, :, :, None]
        + Fk[:, None, :, :]
    )  # [t, k, j, j']
    pred = dict(
        K=K, n=n, c=c, d=d, lam=lam, D=D, counts=counts, rounds=rounds, phi=spec.phi, kappa=spec.kappa,
        output_mean=out_mean, margin_mean=margin_mean, margin_cov=margin_cov,
        fresh_margin_mean=fresh_margin_mean, fresh_margin_cov=fresh_margin_cov,
        quadrature_error=max(spec.quadrature_error, spike_err, leak_err),
    )
    if not probabilities:
        return FiniteDimPrediction(**pred)
    present = counts > 0
    p_correct = np.full((T, K, K), np.nan)
    fresh_cls = np.empty((T, K))
    perr = 0.0
    if D == math.inf:
        for t in range(T):
            ok = conditions.correct_types(K, n, c, d, lam, C, t)
            p_correct[t][present] = ok[present]
            for k in range(K):
                fresh_cls[t, k] = float(
                    all(predictions.fresh_margin_sign(K, n, c, d, lam, C, Cbar, t, k, j) > 0 for j in range(K) if j != k)
                )
    else:
        # every class's training types and fresh samples in one batch (identical problems, e.g. the classes of
        # symmetric counts, are integrated once; each problem's estimate is the same as in a batch of its own)
        means, covs, slots = [], [], []
        for k in range(K):
            o = np.array([j for j in range(K) if j != k])
            ls = np.flatnonzero(present[k])
            means += [margin_mean[:, k][:, ls][..., o].reshape(-1, K - 1), fresh_margin_mean[:, k][..., o]]
            covs += [margin_cov[:, k][:, ls][..., o[:, None], o[None, :]].reshape(-1, K - 1, K - 1),
                     fresh_margin_cov[:, k][..., o[:, None], o[None, :]]]
            slots.append(ls)
        # 2^18 lattice points: near-singular margin covariances (superclass noise at D ~ N) need more than the
        # routine's default 2^16 at prob_tol 1e-5
        pr, er = orthant_probability(np.concatenate(means), np.concatenate(covs), prob_tol, max_points=_ORTHANT_POINTS)
        perr = float(er.max())
        at = 0
        for k, ls in enumerate(slots):
            p_correct[:, k, ls] = pr[at:at + T * ls.size].reshape(T, ls.size)
            at += T * ls.size
            fresh_cls[:, k] = pr[at:at + T]
            at += T
    pc = np.where(present[None], p_correct, 1.0)
    train_acc = (pc * counts[None]).sum(axis=(1, 2)) / N
    with np.errstate(divide="ignore"):
        logp = (np.log(np.clip(pc, 0.0, 1.0)) * counts[None]).sum(axis=(1, 2))
    p_all = np.exp(logp)
    cdf = np.maximum.accumulate(p_all)
    block_round = conditions.min_rounds(K, n, c, d, lam, C)
    pred.update(
        p_correct=p_correct, train_accuracy=train_acc, p_all_correct=p_all, first_perfect_cdf=cdf,
        fresh_accuracy=fresh_cls.mean(axis=1), fresh_accuracy_class=fresh_cls, block_first_round=block_round,
        first_perfect=first_perfect_quantiles(cdf, block_round), probability_error=perr,
    )
    return FiniteDimPrediction(**pred)
