"""P3 100 % training accuracy despite label noise: condition, minimum rounds, collapse, fresh samples.

The brute force computes the deviations (Y - U) A^(t+1) with explicit matrices
and takes the argmax over every instance. It works on deviations from U, not
on U + deviation, so that float64 keeps their relative precision even when they
are far below 1/K.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, note, settings
from hypothesis import strategies as st

import theory

from .strategies import block_params, explicit_block_gram, explicit_operator, label_counts, labels_from_counts

MAX_T = 40  # rounds checked by brute force
# Float error of the explicit deviations D = (Y - U) A^s: each product adds a relative
# error ~N eps against the largest filter, so |error| <~ N eps s f_max^s ||Y - U||
# (N <= 30, s <= 41: ~3e-13 f_max^s). A brute-force margin within FLOOR = 1e-11 f_max^s of 0
# is not decided by float64; a mismatch with the theory is accepted only there (and noted).
FLOOR = 1e-11
# Relative tie tolerance of the brute force's own verdict, as in sims.metrics.
REL_TIE = 1e-9


def _brute_margins(K, n, c, d, lam, counts, max_t=MAX_T):
    """Per round t: (per-instance margin, noise floor) by explicit matrices."""
    z = labels_from_counts(counts)
    y = np.repeat(np.arange(K), n)
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    f_max = max(theory.filters(K, n, c, d, lam))
    D = (np.eye(K)[:, z] - 1.0 / K) @ A
    out = []
    for t in range(max_t + 1):
        true = D[y, np.arange(K * n)]
        other = D.copy()
        other[y, np.arange(K * n)] = -np.inf
        out.append((true - other.max(axis=0), FLOOR * f_max ** (t + 1)))
        D = D @ A
    return y, z, out


def _brute_rounds(K, n, c, d, lam, counts, max_t=MAX_T):
    """Per round t: (all instances correct, smallest |margin| / noise floor) by explicit matrices."""
    _, _, rounds = _brute_margins(K, n, c, d, lam, counts, max_t)
    return [(bool(np.all(m > floor)), float(np.min(np.abs(m)) / floor)) for m, floor in rounds]


def _in_intervals(t, intervals):
    return any(a <= t and (b is None or t <= b) for a, b in intervals)


@given(block_params(max_K=4, max_n=6), st.data())
@example((2, 8, 0.5, 0.0, 1.5 / 32), None)
def test_exact_rounds_match_brute_force(params, data):
    """Every round's all-correct verdict (exact, any labels) matches the explicit argmax over every instance."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n)) if data is not None else np.array([[6, 2], [2, 6]])
    C = counts / n
    report = theory.rounds_report(K, n, c, d, lam, C)
    y, z, brute = _brute_margins(K, n, c, d, lam, counts)
    for t, (margin, floor) in enumerate(brute):
        predicted = _in_intervals(t, report.perfect_rounds)
        assert theory.all_correct(K, n, c, d, lam, C, t) == predicted
        # per instance: the exact verdict of its type against the explicit margin; a disagreement
        # is forgiven only for that very instance's margin lying within the float noise floor
        per_type = theory.correct_types(K, n, c, d, lam, C, t)[y, z]
        brute_ok = margin > floor
        bad = (per_type != brute_ok) & (np.abs(margin) > floor)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            note(f"t={t}, instance {i} type {(y[i], z[i])}: theory {per_type[i]}, margin {margin[i]:.3g}, floor {floor:.3g}")
        assert not bad.any(), f"round {t}: theory and explicit argmax disagree beyond the noise floor"
        undecided = np.abs(margin) <= floor
        assert predicted == bool(np.all(per_type)) and (predicted == bool(np.all(brute_ok)) or undecided.any())
    if report.first is not None:
        assert report.first == theory.min_rounds(K, n, c, d, lam, C)


@given(block_params(max_K=5, max_n=6), st.data())
def test_balanced_closed_form_equals_exact_analysis(params, data):
    """Balanced labels: the lambdified threshold formula gives the same minimum round as the exact analysis, and it lasts."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n, balanced=True))
    C = counts / n
    assert theory.is_balanced(C)
    closed = theory.min_rounds_balanced(K, n, c, d, lam, C)
    report = theory.rounds_report(K, n, c, d, lam, C)
    assert closed == report.first
    assert (closed is not None) == theory.balanced_condition(C)
    if closed is not None:
        assert report.perfect_forever
        assert report.collapse_label is None


def test_boundary_tie_counts_as_failure():
    """(beta/alpha)^s == (1 + Delta)/Delta exactly at s = 1: a tie, so the teacher fails and t* = 1.

    K=2, n=8, c=1/2, d=0, K N lam = 3/2 gives alpha = 1/4 and beta = 3/4 exactly in float64;
    C = [[3/4, 1/4], [1/4, 3/4]] gives Delta = 1/2 and (1 + Delta)/Delta = 3 = beta/alpha.
    """
    K, n, c, d, lam = 2, 8, 0.5, 0.0, 1.5 / 32
    assert theory.filters(K, n, c, d, lam)[:2] == (0.25, 0.75)
    C = np.array([[0.75, 0.25], [0.25, 0.75]])
    assert theory.noisy_threshold_fits(K, n, c, d, lam, 0.75, 0.25) == pytest.approx(1.0, abs=1e-15)
    assert not theory.all_correct(K, n, c, d, lam, C, 0)
    assert theory.all_correct(K, n, c, d, lam, C, 1)
    assert theory.min_rounds(K, n, c, d, lam, C) == 1
    assert theory.min_rounds_balanced(K, n, c, d, lam, C) == 1
    # the explicit brute force sees the exact zero margin too (float64 is exact for these dyadic numbers)
    brute = _brute_rounds(K, n, c, d, lam, np.array([[6, 2], [2, 6]]), max_t=2)
    assert [ok for ok, _ in brute] == [False, True, True]
    assert brute[0][1] <= 1.0  # the float margin is at round-off level (below the noise floor)


@pytest.mark.parametrize("noise,size", [("symmetric", 2), ("asymmetric", 2), ("superclass", 2), ("superclass", 3)])
@given(eta=st.floats(0.0, 1.0))
def test_noise_threshold(noise, size, eta):
    """Named noise models: the corruption condition holds iff eta < threshold ((K-1)/K, K/(K+2), (m-1)/m)."""
    K = 6
    C = theory.corruption_matrix(noise, K, eta, size)
    thr = theory.noise_threshold(noise, K, size)
    holds = theory.balanced_condition(C)
    if eta != thr:
        assert holds == (eta < thr) or eta == 0.0
    t_star = theory.min_rounds(K, 50, 0.4, 0.1, 1e-3, C)
    assert (t_star is not None) == holds


@settings(suppress_health_check=[HealthCheck.filter_too_much])
@given(block_params(max_K=4, max_n=6, min_d=0.05), st.data())
def test_unbalanced_labels_collapse(params, data):
    """Unbalanced labels with d > 0 and a unique most frequent label: from some round on, every instance gets that label.

    Checked by explicit eigen-decomposition of G (A^s = V diag(f^s) V^T) at the
    reported round and a few later ones, and at the round before (which must
    not be collapsed).
    """
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n))
    C = counts / n
    col = counts.sum(axis=0)
    assume(not theory.is_balanced(C) and np.sum(col == col.max()) == 1)
    report = theory.rounds_report(K, n, c, d, lam, C)
    assert report.collapse_label == int(np.argmax(col))
    assert report.collapse_from is not None
    G = explicit_block_gram(K, n, c, d)
    mu, V = np.linalg.eigh(G)
    f = mu / (mu + K * K * n * lam)
    z = labels_from_counts(counts)
    Dev0 = (np.eye(K)[:, z] - 1.0 / K) @ V
    j = report.collapse_label

    def collapsed(t):
        D = (Dev0 * f ** (t + 1)) @ V.T
        other = np.delete(D, j, axis=0)
        margin = (D[j] - other.max(axis=0)) / np.abs(D).max(axis=0)
        return bool(np.all(margin > REL_TIE)), float(np.min(np.abs(margin)))

    t0 = report.collapse_from
    for t in (t0, t0 + 1, t0 + 7, 2 * t0 + 50):
        ok, tight = collapsed(t)
        # eigh's filters carry a relative error ~1e-15, i.e. ~1e-15 s in f^s
        assert ok or tight <= 1e-9 * max(1, t)
    if t0 > 0:
        ok, tight = collapsed(t0 - 1)
        assert not ok or tight <= 1e-9 * t0


@given(block_params(max_K=4, max_n=6), st.data(), st.integers(0, 15))
def test_population_accuracy_matches_explicit_fresh_samples(params, data, t):
    """Fresh samples of the exact block model: logits R g_x from the explicit residual match the exact verdicts."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n))
    C = counts / n
    z = labels_from_counts(counts)
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    R = (np.eye(K)[:, z] - 1.0 / K) @ np.linalg.matrix_power(A, t) @ (np.eye(K * n) - A)
    cls = np.repeat(np.arange(K), n)
    # Noise floor of the explicit residual, as in _brute_rounds: ~N eps s f_max^s per entry,
    # summed over N instances with weights |c|, |d| <= 1; 1e-11 f_max^(t+1) N leaves room.
    floor = FLOOR * max(theory.filters(K, n, c, d, lam)) ** (t + 1) * K * n
    correct = 0
    undecided = False
    for k in range(K):
        gx = np.where(cls == k, c, d)
        logit = R @ gx
        m = logit[k] - np.delete(logit, k).max()
        undecided |= abs(m) <= floor
        correct += m > floor
    acc = theory.population_accuracy(K, n, c, d, lam, C, t)
    assert acc == correct / K or undecided


@given(block_params(max_K=5, max_n=6), st.data())
def test_population_accuracy_constant_in_rounds_when_balanced(params, data):
    """Balanced labels: fresh-sample accuracy = share of classes with C_kk > C_kj for all j, at every round."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n, balanced=True))
    C = counts / n
    expected = np.mean([all(counts[k, k] > counts[k, j] for j in range(K) if j != k) for k in range(K)])
    for t in (0, 1, 5, 30):
        assert theory.population_accuracy(K, n, c, d, lam, C, t) == expected


def test_paper_setting_numbers():
    """The paper's solver setting (K=4, n=500, lam=1e-5, c=0.4, d=0.1, symmetric eta=0.5): t* by closed form and exact."""
    K, n, c, d, lam = 4, 500, 0.4, 0.1, 1e-5
    C = theory.symmetric(K, 0.5)
    a, b, _ = theory.filters(K, n, c, d, lam)
    delta = 0.5 - 0.5 / 3
    s_star = math.floor(math.log((1 + delta) / delta) / math.log(b / a)) + 1
    assert theory.min_rounds(K, n, c, d, lam, C) == s_star - 1
    assert theory.min_rounds_balanced(K, n, c, d, lam, C) == s_star - 1
