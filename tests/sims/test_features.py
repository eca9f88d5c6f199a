"""Feature models (sims.engine.features) and given labels (sims.engine.noise).

Monte Carlo tolerances are stated in units of the standard error next to each
check; every random draw is seeded, so the tests are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sims.engine as E
import theory
from sims.engine import features as F
from sims.engine import noise as N
from tests.theorems.strategies import raises_naming

K, n, c, d = 4, 25, 0.4, 0.1


def offdiag(M):
    return M[~np.eye(M.shape[0], dtype=bool)]


# ----------------------------------------------------------------------------- block model


def test_block_gram_definition_and_spectrum():
    G = F.block_gram(K, n, c, d)
    assert np.allclose(np.diag(G), 1.0)
    y = F.class_major_labels(K, n)
    assert G[0, 1] == c and G[0, n] == d and y[n] == 1
    ev = np.linalg.eigvalsh(G)
    mu = (1 - c, 1 - c + n * (c - d), 1 - c + n * (c - d) + K * n * d)
    expected = np.sort(np.r_[np.full(K * n - K, mu[0]), np.full(K - 1, mu[1]), mu[2]])
    assert np.allclose(ev, expected, atol=1e-12 * K * n)


def test_block_gram_matches_theory():
    theory_block_gram = pytest.importorskip("theory.block_model").block_gram
    assert np.array_equal(F.block_gram(K, n, c, d), theory_block_gram(K, n, c, d))


# ----------------------------------------------------------------------------- Gaussian mixture


def test_gmm_shapes_and_labels():
    X, y = F.sample_gmm(3, 5, c, d, 7, np.random.default_rng(0))
    assert X.shape == (15, 3 + 1 + 7)
    assert np.array_equal(y, np.repeat(np.arange(3), 5))
    assert np.allclose(X[:, 0], math.sqrt(d))
    assert np.allclose(X[np.arange(15), y + 1], math.sqrt(c - d))


def test_gmm_mean_gram_is_block_model():
    # Average of X X^T over R independent draws (K=3, n=4, D=20). Entry standard
    # deviations: (1-c)/sqrt(D) off the diagonal, (1-c) sqrt(2/D) on it; the
    # mean of R draws is within 5 standard errors of the block model.
    Kc, nc, D, R = 3, 4, 20, 4000
    rng = np.random.default_rng(1)
    acc = np.zeros((Kc * nc, Kc * nc))
    for _ in range(R):
        X, _ = F.sample_gmm(Kc, nc, c, d, D, rng)
        acc += X @ X.T
    mean = acc / R
    B = F.block_gram(Kc, nc, c, d)
    se = np.full(B.shape, (1 - c) / math.sqrt(D) / math.sqrt(R))
    np.fill_diagonal(se, (1 - c) * math.sqrt(2 / D) / math.sqrt(R))
    z = np.abs(mean - B) / se
    assert z.max() < 5.0, z.max()


def test_gmm_fluctuation_rate_is_one_over_sqrt_D():
    # Off-diagonal std of G - E G for D = 25 .. 6400 (N = 100, 4950 entries each):
    # the log-log slope is -1/2 and the prefactor (1-c). Measured: slope -0.50
    # (|slope + 0.5| < 0.02 asserted), std sqrt(D)/(1-c) within 3 % of 1.
    dims = np.array([25, 100, 400, 1600, 6400])
    rng = np.random.default_rng(2)
    B = F.block_gram(K, n, c, d)
    stds = []
    for D in dims:
        X, _ = F.sample_gmm(K, n, c, d, int(D), rng)
        stds.append(offdiag(X @ X.T - B).std())
    stds = np.array(stds)
    slope = np.polyfit(np.log(dims), np.log(stds), 1)[0]
    assert abs(slope + 0.5) < 0.02, slope
    assert np.allclose(stds * np.sqrt(dims) / (1 - c), 1.0, atol=0.03), stds * np.sqrt(dims) / (1 - c)


def test_gmm_rejects_negative_d_and_bad_D():
    rng = np.random.default_rng(0)
    with raises_naming("d", "-0.01"):
        F.sample_gmm(K, n, c, -0.01, 10, rng)
    with raises_naming("D", "0"):
        F.sample_gmm(K, n, c, d, 0, rng)
    with raises_naming("d", "0.5"):
        F.sample_gmm(K, n, c, 0.5, 10, rng)


def test_gmm_approaches_block_model_as_D_grows():
    # Linear-level outputs on the mixture's Gram vs the closed form for the block
    # model with the same labels (K = 3, n = 10, lam = 1e-3, round 2), rms over
    # instances, mean over 5 seeds. Measured: 0.0277, 0.0147, 0.0066, 0.0035 for
    # D = 400, 1600, 6400, 25600: log-log slope -0.505 (asserted within 0.08 of -1/2).
    Kc, nc, lam, t = 3, 10, 1e-3, 2
    dims = np.array([400, 1600, 6400, 25600])
    errs = []
    for D in dims:
        e = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            y = np.repeat(np.arange(Kc), nc)
            z = N.corrupt_labels(y, N.noise_matrix("symmetric", Kc, 0.4), np.random.default_rng(seed + 100))
            X, _ = F.sample_gmm(Kc, nc, c, d, int(D), rng)
            P = E.sd(E.LinearModel(X @ X.T, Kc, lam), E.one_hot(z, Kc), t)[-1].outputs
            closed = theory.type_outputs(Kc, nc, c, d, lam, N.label_counts(y, z, Kc) / nc, t)[y, z].T
            e.append(np.sqrt(np.mean((P - closed) ** 2)))
        errs.append(np.mean(e))
    slope = np.polyfit(np.log(dims), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.08, (slope, errs)


# ----------------------------------------------------------------------------- mixture Gram sampler

# Small setting for the distribution tests: N = 6 training and M = 4 fresh points.
# D = 8 lies between N and N + M: the Bartlett route must also get the
# train-fresh cross-Gram right when the joint Gram matrix (N + M = 10 > D) is singular.
SK, SN, SF, SD = 2, 3, 2, 8


def _explicit_gram(Kc, nc, fc, D, rng):
    """The explicit-feature twin: features drawn by sample_gmm (training, then fresh)."""
    X, _ = F.sample_gmm(Kc, nc, c, d, D, rng)
    Xf, _ = F.sample_gmm(Kc, fc, c, d, D, rng)
    return X @ X.T, X @ Xf.T


def _entry_classes(Kc, nc, fc):
    """Index masks of the entry classes: train diagonal, train within/between, cross within/between."""
    y, yf = np.repeat(np.arange(Kc), nc), np.repeat(np.arange(Kc), fc)
    same, eye = y[:, None] == y[None, :], np.eye(y.size, dtype=bool)
    cross_same = y[:, None] == yf[None, :]
    return {
        "diag": ("G", eye, 1.0, 2.0),  # (matrix, mask, mean, variance in units of (1-c)^2 / D)
        "within": ("G", same & ~eye, c, 1.0),
        "between": ("G", ~same, d, 1.0),
        "cross_within": ("cross", cross_same, c, 1.0),
        "cross_between": ("cross", ~cross_same, d, 1.0),
    }


def test_gmm_gram_routes_shapes_and_symmetry():
    g = F.sample_gmm_gram(3, 4, c, d, 10**7, np.random.default_rng(0), fresh_per_class=5)
    assert g.method == "wishart" and g.D == 10**7
    assert g.G.shape == (12, 12) and g.cross.shape == (12, 15) and g.G.dtype == np.float64
    assert np.array_equal(g.G, g.G.T)  # exactly symmetric
    assert np.array_equal(g.y, np.repeat(np.arange(3), 4)) and np.array_equal(g.y_fresh, np.repeat(np.arange(3), 5))
    # At D = 1e7 every entry is within 6 standard deviations ((1-c) sqrt(2/D) = 2.7e-4) of the block model.
    assert np.max(np.abs(g.G - F.block_gram(3, 4, c, d))) < 6 * (1 - c) * math.sqrt(2 / 1e7)
    assert F.sample_gmm_gram(3, 4, c, d, 11, np.random.default_rng(0)).method == "explicit"  # D < N = 12
    assert F.sample_gmm_gram(3, 4, c, d, 12, np.random.default_rng(0)).method == "wishart"  # D = N
    assert F.sample_gmm_gram(3, 4, c, d, 12, np.random.default_rng(0)).cross.shape == (12, 0)


def test_gmm_gram_one_seed_one_matrix():
    for D in (5, 50, 10**6):
        a = F.sample_gmm_gram(2, 10, c, d, D, np.random.default_rng(4), fresh_per_class=3)
        b = F.sample_gmm_gram(2, 10, c, d, D, np.random.default_rng(4), fresh_per_class=3)
        other = F.sample_gmm_gram(2, 10, c, d, D, np.random.default_rng(5), fresh_per_class=3)
        assert a.G.tobytes() == b.G.tobytes() and a.cross.tobytes() == b.cross.tobytes()
        assert not np.array_equal(a.G, other.G)


def test_gmm_gram_explicit_route_is_sample_gmm():
    # Below D = N the sampler draws the features themselves, in the same order as _explicit_gram.
    g = F.sample_gmm_gram(3, 5, c, d, 7, np.random.default_rng(9), fresh_per_class=2)
    G, cross = _explicit_gram(3, 5, 2, 7, np.random.default_rng(9))
    assert g.method == "explicit"
    np.testing.assert_allclose(g.G, G, rtol=0, atol=1e-15)
    np.testing.assert_array_equal(g.cross, cross)


def _draws(sampler, R, D, seed):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(R):
        if sampler == "wishart":
            g = F.sample_gmm_gram(SK, SN, c, d, D, rng, fresh_per_class=SF)
            assert g.method == "wishart"
            out.append((g.G, g.cross))
        else:
            out.append(_explicit_gram(SK, SN, SF, D, rng))
    return out


@pytest.mark.parametrize("sampler", ["wishart", "explicit"])
def test_gmm_gram_entry_moments(sampler):
    # R = 4000 draws. Entries of one class (e.g. within-class off-diagonal) are
    # pairwise uncorrelated, so the pooled mean of m entries has standard error
    # sqrt(var / (R m)); asserted within 5 standard errors of the block model.
    # Variance of one fixed entry per class over the draws: standard error
    # sqrt((m4 - s2^2) / R) from the sample fourth central moment; within 5 of them.
    R = 4000
    draws = _draws(sampler, R, SD, seed=11)
    unit = (1 - c) ** 2 / SD
    for name, (which, mask, mean, var) in _entry_classes(SK, SN, SF).items():
        vals = np.array([(G if which == "G" else X)[mask] for G, X in draws])  # (R, m)
        se_mean = math.sqrt(var * unit / vals.size)
        assert abs(vals.mean() - mean) < 5 * se_mean, (name, vals.mean(), mean, se_mean)
        one = vals[:, 0] - vals[:, 0].mean()
        s2, m4 = float(np.mean(one**2)), float(np.mean(one**4))
        se_var = math.sqrt((m4 - s2**2) / R)
        assert abs(s2 - var * unit) < 5 * se_var, (name, s2, var * unit, se_var)


def _statistics(draws):
    """Per draw: largest eigenvalue and trace of G, a within, a between and a cross entry."""
    return {
        "max_eigenvalue": np.array([np.linalg.eigvalsh(G)[-1] for G, _ in draws]),
        "trace": np.array([np.trace(G) for G, _ in draws]),
        "within_entry": np.array([G[0, 1] for G, _ in draws]),
        "between_entry": np.array([G[0, SN] for G, _ in draws]),
        "cross_entry": np.array([X[1, 0] for _, X in draws]),
    }


def test_gmm_gram_two_sample_test_against_explicit_features():
    # Kolmogorov-Smirnov two-sample tests, 1500 draws per sampler: every
    # p-value above 1e-3 (all seeded, so the outcome is fixed; measured: smallest
    # p 0.09, for the within-class entry). Power check: the same test does reject
    # (p < 1e-6 for some statistic; measured 3e-31 for the largest eigenvalue)
    # when the Bartlett sampler is given twice the dimension.
    from scipy.stats import ks_2samp

    R = 1500
    ref = _statistics(_draws("explicit", R, SD, seed=21))
    same = _statistics(_draws("wishart", R, SD, seed=22))
    wrong = _statistics(_draws("wishart", R, 2 * SD, seed=23))
    p_same = {k: ks_2samp(ref[k], same[k]).pvalue for k in ref}
    p_wrong = {k: ks_2samp(ref[k], wrong[k]).pvalue for k in ref}
    assert min(p_same.values()) > 1e-3, p_same
    assert min(p_wrong.values()) < 1e-6, p_wrong


def test_gmm_gram_bad_input():
    rng = np.random.default_rng(0)
    for D in (0, -5, 2.5, "x"):
        with raises_naming("D", repr(D)):
            F.sample_gmm_gram(K, n, c, d, D, rng)
    with raises_naming("fresh_per_class", "-1"):
        F.sample_gmm_gram(K, n, c, d, 100, rng, fresh_per_class=-1)
    with raises_naming("d", "-0.01"):
        F.sample_gmm_gram(K, n, c, -0.01, 100, rng)
    with raises_naming("rng", "0"):
        F.sample_gmm_gram(K, n, c, d, 100, 0)


# ----------------------------------------------------------------------------- perturbed Gram


def test_perturbed_gram_is_valid_and_matches_paper_fluctuation():
    # N = 1000. Off-diagonal std of G - block model within 3 % of the paper's
    # 0.1/sqrt(12) = 0.02887 (measured: within 0.5 %); mean shift below 1e-3.
    Kc, nc = 4, 250
    G = F.perturbed_gram(Kc, nc, c, d, np.random.default_rng(3))
    rep = F.gram_report(G)
    assert rep.symmetric and rep.psd and rep.unit_diagonal and rep.is_gram
    assert rep.max_asymmetry == 0.0
    dev = offdiag(G - F.block_gram(Kc, nc, c, d))
    assert abs(dev.std() / F.PAPER_OFFDIAG_STD - 1) < 0.03, dev.std()
    assert abs(dev.mean()) < 1e-3


def test_perturbed_dim_defaults():
    # 452.5 with the row-normalisation correction; 432 without it.
    assert F.perturbed_dim(4, 500, 0.4, 0.1) == 452
    assert round((1 - 0.4) ** 2 / F.PAPER_OFFDIAG_STD**2) == 432


def test_paper_matrix_is_not_a_gram_matrix():
    # Block model + i.i.d. uniform(-0.05, 0.05), diagonal 1: asymmetric, and the
    # symmetric part's noise has spectral radius ~ 2 * 0.0204 * sqrt(N) = 1.29
    # for N = 1000, above the within-class eigenvalue 1 - c = 0.6: not PSD.
    Kc, nc = 4, 250
    M = F.paper_perturbed_matrix(Kc, nc, c, d, np.random.default_rng(4))
    rep = F.gram_report(M)
    assert rep.unit_diagonal
    assert not rep.symmetric and rep.max_asymmetry > 0.09
    assert not rep.psd and rep.min_eigenvalue < -0.3
    assert not rep.is_gram
    assert abs(offdiag(M - F.block_gram(Kc, nc, c, d)).std() / F.PAPER_OFFDIAG_STD - 1) < 0.03


def test_gram_report_on_block_model():
    rep = F.gram_report(F.block_gram(K, n, c, d))
    assert rep.is_gram and abs(rep.min_eigenvalue - (1 - c)) < 1e-12


# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return F.load_digits_data()


def test_digits_loads_with_fixed_split(digits):
    assert digits.K == 10 and digits.n == F.DIGITS_TRAIN_PER_CLASS == 120
    assert digits.X_train.shape == (1200, 64) and digits.X_test.shape == (597, 64)
    assert np.array_equal(digits.y_train, np.repeat(np.arange(10), 120))  # class-major, balanced
    assert np.allclose(np.linalg.norm(digits.X_train, axis=1), 1.0)
    assert np.allclose(np.linalg.norm(digits.X_test, axis=1), 1.0)
    again = F.load_digits_data()
    assert np.array_equal(again.X_train, digits.X_train) and np.array_equal(again.y_test, digits.y_test)
    # every image is used once: test counts are the data set's class counts minus 120
    assert np.array_equal(np.bincount(digits.y_test), np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]) - 120)


def test_digits_superclasses_partition_classes(digits):
    flat = sorted(k for g in digits.groups for k in g)
    assert flat == list(range(10))
    assert digits.cut == pytest.approx(0.8 * digits.merge_distances.max())
    # a second, direct computation: correlations of the class-mean feature vectors, complete
    # linkage on 1 - correlation, clusters below 0.8 x the largest merge
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    means = np.stack([digits.X_train[digits.y_train == k].mean(axis=0) for k in range(10)])
    dist = 1.0 - np.corrcoef(means)
    np.fill_diagonal(dist, 0.0)
    Z = linkage(squareform(dist, checks=False), method="complete")
    labels = fcluster(Z, t=0.8 * Z[:, 2].max(), criterion="distance")
    expected = sorted(sorted(int(k) for k in np.flatnonzero(labels == lab)) for lab in np.unique(labels))
    assert sorted(sorted(g) for g in digits.groups) == expected


def test_digits_superclass_noise_matrix(digits):
    C = N.noise_matrix("superclass", 10, 0.3, groups=digits.groups)
    assert np.allclose(C.sum(axis=1), 1.0)
    assert C[0, 4] == pytest.approx(0.15) and C[1, 2] == pytest.approx(0.3 / 6) and C[0, 1] == 0


# ----------------------------------------------------------------------------- noise


def test_exact_counts_are_exact():
    rng = np.random.default_rng(5)
    for name, eta, nc in (("symmetric", 0.6, 10), ("asymmetric", 0.4, 10), ("superclass", 0.5, 8)):
        C = N.noise_matrix(name, 4, eta)
        y = np.repeat(np.arange(4), nc)
        z = N.corrupt_labels(y, C, rng, exact=True)
        assert np.array_equal(N.label_counts(y, z, 4), np.round(C * nc).astype(int))


def test_exact_counts_reject_fractions():
    C = N.noise_matrix("symmetric", 4, 0.5)
    with raises_naming("C", "C[0, 1]", "83.3333"):
        N.corrupt_labels(np.repeat(np.arange(4), 500), C, np.random.default_rng(0), exact=True)


def test_sampled_frequencies_within_binomial_tolerance():
    # Each count[k, j] ~ Binomial(n, C[k, j]); all 16 within 4 binomial standard deviations.
    nc = 20000
    C = N.noise_matrix("asymmetric", 4, 0.5)
    y = np.repeat(np.arange(4), nc)
    z = N.corrupt_labels(y, C, np.random.default_rng(6))
    counts = N.label_counts(y, z, 4)
    sd = np.sqrt(nc * C * (1 - C))
    assert np.all(np.abs(counts - nc * C) <= 4 * sd + 1e-12)


def test_labels_deterministic_given_seed():
    C = N.noise_matrix("symmetric", 4, 0.5)
    y = np.repeat(np.arange(4), 50)
    for exact, Cm in ((False, C), (True, N.noise_matrix("symmetric", 4, 0.6))):
        z1 = N.corrupt_labels(y, Cm, np.random.default_rng(7), exact=exact)
        z2 = N.corrupt_labels(y, Cm, np.random.default_rng(7), exact=exact)
        z3 = N.corrupt_labels(y, Cm, np.random.default_rng(8), exact=exact)
        assert np.array_equal(z1, z2) and not np.array_equal(z1, z3)


def test_noise_matrix_errors_and_singletons():
    with raises_naming("noise", "'foo'"):
        N.noise_matrix("foo", 4, 0.5)
    with raises_naming("superclass_size", "3"):
        N.noise_matrix("superclass", 4, 0.5, superclass_size=3)
    with raises_naming("eta", "1.5"):
        N.noise_matrix("symmetric", 4, 1.5)
    C = N.superclass_from_groups(3, 0.4, [[0, 2], [1]])
    assert np.allclose(C, [[0.6, 0, 0.4], [0, 1, 0], [0.4, 0, 0.6]])
