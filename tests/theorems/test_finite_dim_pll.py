"""theory.finite_dim_pll: the PLL student on the finite-D mixture, against Monte Carlo and its limits.

The Monte Carlo here is written with numpy only (eigendecomposition of the sampled Gram matrix, the
teacher's top two by sorting), independent of sims.engine and of theory.finite_dim's algebra.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import theory
from theory import finite_dim as fd
from theory.corruption import exact_label_counts, superclass, symmetric
from theory.finite_dim_pll import pll_finite_dim

from .test_finite_dim import sample_gram, z_bonferroni


def pll_mc(K, n, c, d, lam, D, counts, samples, seed, fresh_per_class=10):
    """Per sample: teacher and student training accuracy, student fresh accuracy, share of instances whose
    true class is among the teacher's top two."""
    N, mu = K * n, K * K * n * lam
    y = np.repeat(np.arange(K), n)
    z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    Y = np.zeros((K, N))
    Y[z, np.arange(N)] = 1.0
    yf = np.repeat(np.arange(K), fresh_per_class)
    rng = np.random.default_rng(seed)
    out = np.zeros((samples, 4))

    def acc(P, labels):
        own = P[labels, np.arange(P.shape[1])]
        rest = P.copy()
        rest[labels, np.arange(P.shape[1])] = -np.inf
        return np.mean(own > rest.max(axis=0))

    for r in range(samples):
        G, X = sample_gram(K, n, c, d, D, rng, fresh_per_class)
        ev, V = np.linalg.eigh(G)
        ev = np.clip(ev, 0.0, None)
        filt = ev / (ev + mu)
        teacher = 1.0 / K + ((Y - 1.0 / K) @ V * filt) @ V.T
        top2 = np.argsort(-teacher, axis=0)[:2]  # ties have probability 0 at finite D
        T = np.zeros((K, N))
        T[top2[0], np.arange(N)] = 0.5
        T[top2[1], np.arange(N)] = 0.5
        RT = (T - 1.0 / K) @ V
        student = 1.0 / K + (RT * filt) @ V.T
        fresh = (RT / (ev + mu)) @ (V.T @ X)
        out[r] = (acc(teacher, y), acc(student, y), acc(fresh, yf), np.mean((top2 == y[None, :]).any(axis=0)))
    return out


# measured model error of the approximation (module doc: neglected O(1/n) reactions and the average
# Jacobian in the chain term): on K = 3, 4, n = 25..50, D / N = 0.25..10, symmetric and superclass noise,
# the student's training and fresh accuracy were within 0.02 of 60-300-sample Monte Carlo means
MODEL_ERROR = 0.02

MC_CASES = [  # K, n, c, d, lam, C, D
    (3, 30, 0.4, 0.1, 5e-5, symmetric(3, 0.2), 30),
    (3, 30, 0.4, 0.1, 5e-5, symmetric(3, 0.2), 90),
    (3, 30, 0.4, 0.1, 5e-5, symmetric(3, 0.2), 360),
    (3, 30, 0.4, 0.1, 5e-5, symmetric(3, 0.2), 2700),
    (4, 20, 0.4, 0.1, 1e-4, superclass(4, 0.25), 80),
]
MC_SAMPLES = 150


@pytest.fixture(scope="module")
def mc_rows():
    rows = []
    for no, (K, n, c, d, lam, C, D) in enumerate(MC_CASES):
        counts = exact_label_counts(C, n)
        pred = pll_finite_dim(K, n, c, d, lam, D, counts)
        obs = pll_mc(K, n, c, d, lam, D, counts, MC_SAMPLES, seed=7000 + no)
        se = obs.std(axis=0, ddof=1) / math.sqrt(MC_SAMPLES)
        mean = obs.mean(axis=0)
        for j, (name, value) in enumerate((("teacher train", pred.teacher_train_accuracy),
                                           ("student train", pred.student_train_accuracy),
                                           ("student fresh", pred.student_fresh_accuracy),
                                           ("contains true", float(np.nansum(pred.contains_true * counts) / counts.sum())))):
            rows.append((no, name, mean[j], value, se[j]))
    return rows


def test_monte_carlo_within_intervals_plus_the_model_error(mc_rows):
    z = z_bonferroni(len(mc_rows))
    bad = [r for r in mc_rows if abs(r[2] - r[3]) > z * r[4] + MODEL_ERROR]
    assert not bad, f"{len(bad)} of {len(mc_rows)} outside z {z:.2f} s.e. + {MODEL_ERROR}: {bad}"


def test_the_cases_are_informative(mc_rows):
    # the student is neither perfect nor at the teacher's accuracy in every case, and at D <= N it loses to
    # a student that the block model would call perfect: the checks above could fail
    student = {no: v for no, name, v, _, _ in mc_rows if name == "student train"}
    assert min(student.values()) < 0.9
    assert max(student.values()) > 0.95


def test_reaction_term_matters_where_the_teacher_memorises():
    """At D = N the teacher memorises its labels; without step 5 of the module doc (the reaction through the
    other instances' targets) the student's accuracy would be off by far more than the model error."""
    K, n, c, d, lam, D = 3, 30, 0.4, 0.1, 5e-5, 90
    counts = exact_label_counts(symmetric(K, 0.2), n)
    pred = pll_finite_dim(K, n, c, d, lam, D, counts)
    obs = pll_mc(K, n, c, d, lam, D, counts, 100, seed=11)[:, 1].mean()
    assert pred.teacher_train_accuracy == pytest.approx(float(np.trace(counts)) / counts.sum(), abs=0.02)
    assert abs(pred.student_train_accuracy - obs) <= MODEL_ERROR + 0.03  # 100 samples: 3 s.e. <= 0.03


def test_structure_and_the_teacher_is_finite_dim_round_0():
    K, n, c, d, lam, D = 4, 20, 0.4, 0.1, 1e-4, 200
    counts = exact_label_counts(superclass(4, 0.25), n)
    pred = pll_finite_dim(K, n, c, d, lam, D, counts)
    present = counts > 0
    # the pairs partition the outcomes: probabilities sum to 1 within the reported integration error
    # (each of the K (K - 1) / 2 pair probabilities carries at most probability_error)
    tol = 6 * pred.probability_error
    assert np.allclose(pred.pair_prob[present].sum(axis=-1), 1.0, atol=tol)
    assert np.all(np.isnan(pred.pair_prob[~present]))
    assert np.all((pred.contains_true[present] >= -tol) & (pred.contains_true[present] <= 1 + tol))
    assert np.allclose(pred.mean_targets.sum(axis=1), 1.0, atol=tol)
    teacher = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=0, prob_tol=1e-4)  # pll_finite_dim's default
    assert pred.teacher_train_accuracy == teacher.train_accuracy[0]
    assert pred.teacher_fresh_accuracy == teacher.fresh_accuracy[0]
    assert 0.0 <= pred.student_train_accuracy <= 1.0 and 0.0 <= pred.student_fresh_accuracy <= 1.0
    assert pred.probability_error < 1e-3 and pred.quadrature_error < 1e-9
    assert pred.quadrature_error >= teacher.quadrature_error  # the student's spectral averages include the teacher's


def test_probability_error_bounds_the_difference_to_a_tighter_evaluation():
    """prob_tol 3e-2 stops the lattice after its first passes: every probability the model reports (per pair, per
    type, fresh) is within the two runs' reported errors of the run at prob_tol 1e-4 (each error bounds one reported
    probability: a pair's is the sum over its orthant blocks), and the loose run's error is larger (informative)."""
    K, n, c, d, lam, D = 4, 20, 0.4, 0.1, 1e-4, 200
    counts = exact_label_counts(superclass(4, 0.25), n)
    ref = pll_finite_dim(K, n, c, d, lam, D, counts)
    loose = pll_finite_dim(K, n, c, d, lam, D, counts, prob_tol=3e-2)
    bound = loose.probability_error + ref.probability_error
    assert 10 * ref.probability_error < loose.probability_error <= 3e-2
    present = counts > 0
    for name in ("pair_prob", "student_p_correct", "teacher_p_correct"):
        diff = np.abs(getattr(loose, name)[present] - getattr(ref, name)[present])
        assert np.all(diff <= bound), (name, diff.max(), bound)
    for name in ("student_fresh_accuracy", "teacher_fresh_accuracy", "student_train_accuracy", "teacher_train_accuracy"):
        assert abs(getattr(loose, name) - getattr(ref, name)) <= bound, name


def test_two_classes_the_student_ties_everywhere():
    counts = exact_label_counts(symmetric(2, 0.25), 8)
    pred = pll_finite_dim(2, 8, 0.4, 0.1, 1e-3, 50, counts)
    assert pred.student_train_accuracy == 0.0 and pred.student_fresh_accuracy == 0.0
    assert np.all(pred.contains_true[counts > 0] == 1.0)
    obs = pll_mc(2, 8, 0.4, 0.1, 1e-3, 50, counts, 3, seed=1)
    assert np.all(obs[:, 1] == 0.0)  # every student output is exactly 1/2: ties, as the Monte Carlo sees


# given labels unbalanced over the classes (column sums 1.3, 0.9, 1.1, 0.7): the overall mean of the labels and of
# the targets is not 1/K, so the terms along the constant direction enter every margin
UNBALANCED4 = np.array([[0.7, 0.3, 0, 0], [0.3, 0.5, 0.2, 0], [0.2, 0, 0.8, 0], [0.1, 0.1, 0.1, 0.7]])


@pytest.mark.parametrize("C", [superclass(4, 0.25), theory.symmetric(4, 0.15), UNBALANCED4],
                         ids=["superclass", "symmetric", "unbalanced"])
def test_large_D_approaches_the_block_model(C):
    """D = 1e7 N: the fluctuations are 1e-3.5 of the margins; the student's accuracy is the block model's
    (theory.pll_analysis, exact) on every type the block model decides without a tie, and so is its accuracy on
    fresh samples."""
    K, n, c, d, lam = 4, 20, 0.4, 0.1, 1e-4
    counts = exact_label_counts(C, n)
    pred = pll_finite_dim(K, n, c, d, lam, 1e7 * K * n, counts)
    block = theory.pll_analysis(K, n, c, d, lam, counts / n)
    present = counts > 0
    tol = 6 * pred.probability_error  # a sum of up to K (K - 1) / 2 integrated pair probabilities
    assert np.allclose(pred.contains_true[present], block.teacher_contains_true[present], atol=tol)
    tied = {k for k, _ in block.tied_pairs}
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            if k not in tied:
                assert pred.student_p_correct[k, l] == pytest.approx(float(block.student_correct[k, l]), abs=tol), (k, l)
    # a mean over K classes of fresh orthant probabilities, each within probability_error of the block's 0 or 1
    assert pred.student_fresh_accuracy == pytest.approx(block.student_fresh_accuracy, abs=tol)


# unbalanced given labels (column sums 12, 24, 23, 21): Cbar != 1/K, so the constant direction's terms of the
# teacher's and the student's means do not vanish; class 0's true label is only third most given
UNBALANCED = np.array([[4, 7, 9, 0], [2, 10, 0, 8], [0, 7, 9, 4], [6, 0, 5, 9]])


def test_unbalanced_labels_at_large_D_are_the_block_model():
    """D = 1e7 N with unbalanced given labels: top two, class-mean targets, the student per type, and the
    student's fresh logits equal the block model's; the fresh logits are checked against a brute-force
    linear solve on the explicit N x N block Gram (written here, independent of theory/)."""
    K, n, c, d, lam = 4, 20, 0.4, 0.1, 1e-4
    counts = UNBALANCED
    pred = pll_finite_dim(K, n, c, d, lam, 1e7 * K * n, counts)
    block = theory.pll_analysis(K, n, c, d, lam, counts / n)
    present = counts > 0
    tol = 6 * pred.probability_error + 1e-9  # up to K (K - 1) / 2 integrated pair probabilities
    assert np.allclose(pred.contains_true[present], block.teacher_contains_true[present], atol=tol)
    assert np.allclose(pred.mean_targets, block.class_mean_targets, atol=tol)
    tied = {k for k, _ in block.tied_pairs}
    assert tied and len(tied) < K  # informative: a tie to skip and decided classes to compare
    for k in set(range(K)) - tied:
        for l in np.flatnonzero(present[k]):
            assert pred.student_p_correct[k, l] == pytest.approx(float(block.student_correct[k, l]), abs=tol), (k, l)
    assert pred.teacher_train_accuracy == pytest.approx(block.teacher_train_accuracy, abs=tol)
    assert pred.student_fresh_accuracy == pytest.approx(block.student_fresh_accuracy, abs=tol)
    assert 0.0 < block.student_fresh_accuracy < 1.0 and block.teacher_train_accuracy < 0.5
    N, mu = K * n, K * K * n * lam
    y = np.repeat(np.arange(K), n)
    z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    T = block.targets[y, z].T  # (K, N) PLL targets of every instance
    G = d + (c - d) * (y[:, None] == y[None, :]) + (1 - c) * np.eye(N)
    g = d + (c - d) * (y[:, None] == np.arange(K)[None, :])  # fresh class-k points: no noise overlap at D = inf
    brute = mu * ((T - 1.0 / K) @ np.linalg.solve(G + mu * np.eye(N), g)).T
    # relative 1e-6: the finite-D corrections are O(N / D) = 1e-7
    np.testing.assert_allclose(pred.student_fresh_mean, brute, rtol=0, atol=1e-6 * np.abs(brute).max())


@pytest.mark.parametrize("kwargs, name", [
    (dict(D=math.inf), "D"), (dict(D=0.0), "D"), (dict(n=1), "n"), (dict(d=-0.05), "d"), (dict(lam=-1.0), "lam"),
    (dict(counts=np.array([[7, 1], [1, 7]])), "counts"), (dict(prob_tol=0.0), "prob_tol"),
])
def test_bad_input_names_the_parameter(kwargs, name):
    args = dict(K=3, n=8, c=0.4, d=0.1, lam=1e-3, D=50.0, counts=exact_label_counts(symmetric(3, 0.25), 8))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        pll_finite_dim(**args)


@pytest.mark.parametrize("K, perm", [(4, (0, 1, 2, 3)), (4, (1, 0, 3, 2)), (3, (0, 1, 2)), (3, (2, 0, 1))])
def test_labels_shared_by_no_two_classes_are_refused_by_name(K, perm):
    """No noise (or a relabelling): the teacher's outputs have no fluctuation at the model's order and its wrong
    classes tie exactly (K >= 3; at K = 2 both classes are the top two); the model says so instead of returning nan
    (it divided by a zero variance)."""
    counts = 50 * np.eye(K, dtype=int)[list(perm)]
    with pytest.raises(ValueError, match="^counts: no given label is shared"):
        pll_finite_dim(K, 50, 0.4, 0.1, 1e-4, 200.0, counts)
    if K == 3:
        return  # one relabelled instance below leaves two untouched classes to tie only when K >= 4
    # one instance of class 0 given another class's label: that class's clean type still ties exactly between the
    # two classes the noise does not touch, and the top-two probabilities of that type do not sum to 1
    j = int(np.argmax(counts[0]))
    counts[0, j] -= 1
    counts[0, (j + 1) % 4] += 1
    with pytest.raises(ValueError, match=r"^counts: type \(true \d, given \d\) has wrong classes whose teacher outputs tie"):
        pll_finite_dim(4, 50, 0.4, 0.1, 1e-4, 200.0, counts)


@pytest.mark.parametrize("C", [symmetric(4, 0.3), superclass(4, 0.3, 2),
                               np.array([[6, 10, 14, 0], [3, 15, 0, 12], [0, 10, 14, 6], [9, 0, 8, 13]]) / 30.0],
                         ids=["symmetric", "superclass", "unbalanced"])
def test_top_two_containment_from_the_teachers_margin_moments(C):
    """P(true class among the teacher's top two) = P(at most one margin P_k - P_j is negative), computed here
    from theory.finite_dim's round-0 margin moments by orthant probabilities with flipped signs: an independent
    path to the teacher distribution the PLL model builds itself (its mean and covariance)."""
    K, n, c, d, lam, D = 4, 30, 0.4, 0.1, 1e-3, 90.0
    counts = exact_label_counts(C, n)
    # prob_tol 1e-4 on both sides: the wrong-containment rules this guards against move the probability by
    # 1e-2 or more, and the bound below is the sum of the two sides' reported errors
    tol = 1e-4
    pll = pll_finite_dim(K, n, c, d, lam, D, counts, prob_tol=tol)
    pred = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=0, probabilities=False)
    checked = 0
    for k in range(K):
        o = [j for j in range(K) if j != k]
        for l in np.flatnonzero(counts[k]):
            mean = pred.margin_mean[0, k, l][o]
            cov = pred.margin_cov[0, k, l][np.ix_(o, o)]
            total, err = fd.orthant_probability(mean, cov, tol, max_points=1 << 18)
            for j in range(K - 1):
                sgn = np.ones(K - 1)
                sgn[j] = -1.0
                p, e = fd.orthant_probability(sgn * mean, cov * np.outer(sgn, sgn), tol, max_points=1 << 18)
                total, err = total + p, err + e
            # within the two sides' reported orthant errors (3 standard errors each)
            bound = float(err) + pll.probability_error
            assert abs(float(pll.contains_true[k, l]) - float(total)) <= bound, (k, l, pll.contains_true[k, l], total, bound)
            checked += 1
    assert checked >= K and np.nanmin(pll.contains_true) < 0.999  # informative: containment is not certain


def _orthant_quad(mean, cov):
    """P(X > 0) for X ~ N(mean, cov) of dimension 1 or 2 by scipy quadrature over X_1 (an independent reference)."""
    from scipy import integrate

    def cdf(x):
        return 0.5 * math.erfc(-x / math.sqrt(2.0))

    s1 = math.sqrt(cov[0][0])
    if len(mean) == 1:
        return cdf(mean[0] / s1)
    beta = cov[0][1] / cov[0][0]
    sc = math.sqrt(cov[1][1] - beta * cov[0][1])
    val, _ = integrate.quad(
        lambda x: math.exp(-0.5 * ((x - mean[0]) / s1) ** 2) / (s1 * math.sqrt(2 * math.pi))
        * cdf((mean[1] + beta * (x - mean[0])) / sc), 0.0, np.inf, epsabs=1e-14, epsrel=1e-13)
    return val


def _fd_gradient(prob, mean, h=1e-4):
    """Central differences of prob at mean: truncation h^2 |P'''| / 6 <= 1e-9, round-off 1e-14 / h = 1e-10."""
    out = []
    for r in range(len(mean)):
        up, dn = np.array(mean, dtype=float), np.array(mean, dtype=float)
        up[r] += h
        dn[r] -= h
        out.append((prob(up) - prob(dn)) / (2 * h))
    return np.array(out)


def test_orthant_gradient_is_the_derivative_of_the_orthant_probability():
    """d P(X > 0) / d mean against central differences of scipy quadrature: dimension 1 (closed form), 2 (full
    covariance, variances != 1 so that a wrong conditional mean shows) and 3 (X_1 independent of a correlated pair,
    P = P_1 P_23), batched with different means; and a component without variance has gradient 0."""
    from theory.finite_dim_pll import _orthant_gradient

    cov2 = np.array([[2.0, -0.9], [-0.9, 0.7]])
    means2 = np.array([[0.3, -0.4], [-0.8, 0.5], [1.1, 0.9]])
    cov3 = np.zeros((3, 3))
    cov3[0, 0] = 0.5
    cov3[1:, 1:] = cov2
    means3 = np.array([[0.2, 0.3, -0.4], [-0.6, -0.8, 0.5]])
    # tol: the conditional orthants of dimension 0 and 1 are exact (ndtr); of dimension 2 a lattice estimate
    cases = [(np.array([[0.4], [-1.3]]), np.array([[[2.5]]] * 2), lambda m: _orthant_quad(m, [[2.5]]), 1e-9),
             (means2, np.array([cov2] * 3), lambda m: _orthant_quad(m, cov2), 1e-9),
             (means3, np.array([cov3] * 2), lambda m: _orthant_quad(m[:1], [[0.5]]) * _orthant_quad(m[1:], cov2), 1e-6)]
    for mean, cov, prob, tol in cases:
        grad, err = _orthant_gradient(mean, cov, tol)
        dens = 1.0 / np.sqrt(2.0 * np.pi * np.diagonal(cov, axis1=1, axis2=2).min())
        # the conditional orthants are integrated to tol, each weighted by a density <= dens
        assert 0.0 <= err <= tol * dens
        for b in range(len(mean)):
            ref = _fd_gradient(prob, mean[b])
            # finite differences ~1e-9 (see _fd_gradient) plus the reported integration error
            assert np.allclose(grad[b], ref, rtol=0.0, atol=1e-8 + err), (mean[b], grad[b], ref)
        assert np.all(np.abs(grad) > 1e-3)  # informative: no component is trivially 0
    # X_2 = +-1 without variance: it only decides whether the event can happen; X_1 alone carries the gradient
    cov = np.array([[[2.5, 0.0], [0.0, 0.0]]] * 2)
    grad, _ = _orthant_gradient(np.array([[0.4, 1.0], [0.4, -1.0]]), cov, 1e-9)
    assert grad[0, 0] == pytest.approx(_fd_gradient(lambda m: _orthant_quad(m, [[2.5]]), [0.4])[0], abs=1e-8)
    assert grad[0, 1] == 0.0 and np.all(grad[1] == 0.0)


@pytest.mark.parametrize("lam", [1e-4, 3e-2], ids=["mu-below-the-spikes", "mu-above-the-class-spike"])
def test_fresh_covariance_at_large_D_is_the_block_grams_noise(lam):
    """D = 1e7 N, unbalanced labels: W -> I and the targets are the block model's, so given the training sample the
    fresh noise (1 - c) Z z / D has covariance (1 - c)^2 I / D and D times the covariance of N lambda times the student's
    fresh logits is mu^2 (1 - c)^2 (T - U) (G + mu)^-2 (T - U)^T on the explicit N x N block Gram (written here,
    independent of theory/). mu = 0.032 and 9.6 put the ridge below and above the class spike n (c - d) + 1 - c = 6.6,
    so every term of the covariance (within-class, class-mean and constant direction) carries weight."""
    K, n, c, d = 4, 20, 0.4, 0.1
    counts = UNBALANCED
    D = 1e7 * K * n
    pred = pll_finite_dim(K, n, c, d, lam, D, counts)
    block = theory.pll_analysis(K, n, c, d, lam, counts / n)
    N, mu = K * n, K * K * n * lam
    y = np.repeat(np.arange(K), n)
    z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    T = block.targets[y, z].T
    G = d + (c - d) * (y[:, None] == y[None, :]) + (1 - c) * np.eye(N)
    R = (T - 1.0 / K) @ np.linalg.inv(G + mu * np.eye(N))
    brute = mu * mu * (1 - c) ** 2 * R @ R.T
    assert pred.student_fresh_cov.shape == (K, K)
    # relative 1e-6: the finite-D corrections are O(N / D) = 1e-7 (measured 8e-8 and 5e-9)
    np.testing.assert_allclose(D * pred.student_fresh_cov, brute, rtol=0, atol=1e-6 * np.abs(brute).max())


def test_d_zero_is_in_the_domain():
    """d = 0 (no shared mean) is a valid mixture at finite D: the model runs, and its teacher is finite_dim's."""
    K, n, c, lam, D = 3, 16, 0.4, 1e-3, 60.0
    counts = exact_label_counts(symmetric(K, 0.25), n)
    pred = pll_finite_dim(K, n, c, 0.0, lam, D, counts)
    teacher = fd.finite_dim_prediction(K, n, c, 0.0, lam, D, counts, rounds=0, prob_tol=1e-4)
    assert pred.d == 0.0 and pred.teacher_train_accuracy == teacher.train_accuracy[0]
    assert 0.0 < pred.student_train_accuracy < 1.0
