"""P3 100 % training accuracy despite label noise: condition, minimum rounds, collapse, fresh samples.

The brute force computes the deviations (Y - U) A^(t+1) with explicit matrices
and takes the argmax over every instance. It works on deviations from U, not
on U + deviation, so that float64 keeps their relative precision even when they
are far below 1/K.
"""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, note, settings, target
from hypothesis import strategies as st

import theory
from theory.predictions import fresh_margin_sign

from .strategies import (
    brute_operator,
    block_params,
    explicit_block_gram,
    explicit_operator,
    informative_share,
    label_counts,
    labels_from_counts,
    noise_rate_near,
    p3_case,
    raises_naming,
)

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


def _first_brute(brute):
    """First round all-correct by the explicit argmax, None if none up to MAX_T; and whether a margin was undecided."""
    first = next((t for t, (m, floor) in enumerate(brute) if np.all(m > floor)), None)
    undecided = any(np.any(np.abs(m) <= floor) for m, floor in brute[: (MAX_T if first is None else first) + 1])
    return first, undecided


@given(p3_case(max_K=4, max_n=6, max_round=MAX_T, balanced=False))
@example((2, 8, 0.5, 0.0, 1.5 / 32, np.array([[6, 2], [2, 6]]), "boundary"))
def test_exact_rounds_match_brute_force(case):
    """Every round's all-correct verdict (exact, any labels) matches the explicit argmax over every instance."""
    K, n, c, d, lam, counts, mode = case
    C = counts / n
    report = theory.rounds_report(K, n, c, d, lam, C)
    event(f"mode: {mode}")
    event("first perfect round in [1, 40]" if report.first is not None and 1 <= report.first <= MAX_T else "trivial or unreachable")
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
    # min_rounds against the brute force's own first perfect round (not against rounds_report)
    first, undecided = _first_brute(brute)
    mr = theory.min_rounds(K, n, c, d, lam, C)
    if not undecided:
        assert mr == first or (first is None and (mr is None or mr > MAX_T))
    target(float(min(first if first is not None else 0, MAX_T)), label="first perfect round (brute force)")


@given(p3_case(max_K=5, max_n=6, max_round=60, balanced=True))
@example((2, 8, 0.5, 0.0, 1.5 / 32, np.array([[6, 2], [2, 6]]), "boundary"))
def test_balanced_closed_form_equals_exact_analysis(case):
    """Balanced labels: the lambdified threshold formula gives the same minimum round as the exact analysis, and it lasts.

    The corruption condition is recomputed from the counts (not by theory.balanced_condition), and the
    closed form's round is confirmed on the explicit margin formula in exact fractions at t* and t* - 1.
    """
    K, n, c, d, lam, counts, mode = case
    C = counts / n
    assert theory.is_balanced(C)
    closed = theory.min_rounds_balanced(K, n, c, d, lam, C)
    report = theory.rounds_report(K, n, c, d, lam, C)
    event(f"mode: {mode}")
    event("first perfect round in [1, 60]" if closed is not None and 1 <= closed <= 60 else "trivial or unreachable")
    assert closed == report.first
    condition = all(
        all(counts[k, k] > counts[k, j] for j in range(K) if j != k) for k in range(K) if counts[k, k] < n
    )
    assert (closed is not None) == condition
    if closed is not None:
        assert report.perfect_forever
        assert report.collapse_label is None
        # independent exact check: margin (beta^s - alpha^s) Delta - alpha^s for every noisy type, plain Fractions
        from fractions import Fraction

        from theory.rational import rational

        Lq = K * K * n * rational(lam)
        cq, dq = rational(c), rational(d)
        a = (1 - cq) / (1 - cq + Lq)
        b = (1 - cq + n * (cq - dq)) / (1 - cq + n * (cq - dq) + Lq)
        gaps = [Fraction(int(counts[k, k] - counts[k, l]), n) for k in range(K) for l in range(K) if l != k and counts[k, l] > 0]

        def ok(s):
            return all((b**s - a**s) * g - a**s > 0 for g in gaps)

        assert ok(closed + 1)
        assert closed == 0 or not ok(closed)
    if mode in ("aimed", "near_tie"):
        target(float(closed if closed is not None else 0), label="t*")


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


_THRESHOLDS = {"symmetric": lambda K, m: (K - 1) / K, "asymmetric": lambda K, m: K / (K + 2), "superclass": lambda K, m: (m - 1) / m}


@pytest.mark.parametrize("noise,size", [("symmetric", 2), ("asymmetric", 2), ("superclass", 2), ("superclass", 3)])
@given(data=st.data())
def test_noise_threshold(noise, size, data):
    """Named noise models: the corruption condition holds iff eta < threshold ((K-1)/K, K/(K+2), (m-1)/m).

    Noise rates are drawn near the threshold half of the time; the condition is recomputed from the matrix.
    """
    K = 6
    thr = theory.noise_threshold(noise, K, size)
    assert thr == pytest.approx(_THRESHOLDS[noise](K, size), rel=1e-15)
    eta = data.draw(noise_rate_near(thr))
    event("eta within 1e-3 of the threshold" if abs(eta - thr) <= 1e-3 else "eta anywhere")
    C = theory.corruption_matrix(noise, K, eta, size)
    holds = theory.balanced_condition(C)
    if eta == thr:
        # exactly on the threshold the diagonal ties with a wrong label (read exactly): the condition fails
        assert not holds
    elif abs(eta - thr) > 1e-12:
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


def _explicit_fresh(K, n, c, d, lam, counts, t, with_magnitude=False):
    """N lambda times the logits of a fresh sample of each class after round t: R g_x with explicit matrices (K x K).

    ``with_magnitude``: also the largest sum of |summands| |R_ji| |g_i| of those products, the scale of their
    round-off (which a cancelling sum does not shrink)."""
    z = labels_from_counts(counts)
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    R = (np.eye(K)[:, z] - 1.0 / K) @ np.linalg.matrix_power(A, t) @ (np.eye(K * n) - A)
    cls = np.repeat(np.arange(K), n)
    g = [np.where(cls == k, c, d) for k in range(K)]
    L = np.stack([R @ gk for gk in g])
    if not with_magnitude:
        return L
    return L, max(float((np.abs(R) @ np.abs(gk)).max()) for gk in g)


def test_population_accuracy_round_index():
    """Unbalanced labels where fresh-sample accuracy changes with the round (1 -> 2/3 at t = 5, -> 1/3 at t = 10):
    theory.population_accuracy(t) follows the explicit logits after t + 1 fits at every round, and the explicit
    accuracies are not constant (so an off-by-one in the round index cannot pass)."""
    K, n, c, d, lam = 3, 10, 0.5, 0.1, 0.01
    counts = np.array([[7, 3, 0], [0, 10, 0], [0, 4, 6]])
    brute = []
    for t in range(14):
        L = _explicit_fresh(K, n, c, d, lam, counts, t)
        margins = [L[k, k] - np.delete(L[k], k).max() for k in range(K)]
        # margins here are >= 1e-6 in size, float error ~1e-14
        assert min(abs(m) for m in margins) > 1e-9
        brute.append(np.mean([m > 0 for m in margins]))
        assert theory.population_accuracy(K, n, c, d, lam, counts / n, t) == brute[-1], t
    assert len(set(brute)) == 3


@given(p3_case(max_K=4, max_n=6, max_round=20, balanced=False), st.integers(0, 12))
@example(case=(2, 2, 0.05, 0.0, 1.0, np.array([[1, 1], [1, 1]]), "generic"), t=1)  # logits cancel to exactly 0
def test_fresh_logits_values_equal_explicit(case, t):
    """theory.fresh_logits (N lambda times the logits, lambdified from the derived expression) equals R g_x with
    explicit matrices: fixes the class-sum coefficients (c - d) n and (c - d) n + d N and the round index s = t + 1."""
    K, n, c, d, lam, counts, mode = case
    C = counts / n
    L = theory.fresh_logits(K, n, c, d, lam, C, C.mean(axis=0), t)
    E, summands = _explicit_fresh(K, n, c, d, lam, counts, t, with_magnitude=True)
    scale = np.abs(E).max()
    event("logits nonzero" if scale > 1e-12 * summands else "logits vanish")
    # the explicit side's round-off is ~N (t + 2) eps times the summands' size (<= 24 * 14 * 2.2e-16 ~ 1e-13 of
    # it here), also where the logits cancel to 0 (balanced labels); 1e-9 of it leaves room, while a wrong
    # class-sum coefficient or round index moves the logits by the summands' own size
    assert np.max(np.abs(L - E)) <= 1e-9 * max(scale, summands) + 1e-300


@given(p3_case(max_K=4, max_n=6, max_round=10, balanced=False), st.integers(0, 12))
def test_train_accuracy_split_equals_explicit_argmax(case, t):
    """train_accuracy's all / clean / noisy shares equal the explicit argmax's (instances whose margin is inside the
    float noise floor are excluded from the comparison by requiring none)."""
    K, n, c, d, lam, counts, mode = case
    C = counts / n
    y, z, brute = _brute_margins(K, n, c, d, lam, counts, max_t=t)
    margin, floor = brute[t]
    assume(np.all(np.abs(margin) > floor))
    ok = margin > floor
    clean = y == z
    acc = theory.train_accuracy(K, n, c, d, lam, C, t)
    assert set(acc) == {"all", "clean", "noisy"}
    assert acc["all"] == pytest.approx(ok.mean(), abs=1e-12)
    assert acc["clean"] == (pytest.approx(ok[clean].mean(), abs=1e-12) if clean.any() else None)
    assert acc["noisy"] == (pytest.approx(ok[~clean].mean(), abs=1e-12) if (~clean).any() else None)
    assert theory.all_correct(K, n, c, d, lam, C, t) == bool(ok.all())
    per_type = theory.correct_types(K, n, c, d, lam, C, t)
    assert np.array_equal(per_type[y, z], ok)
    assert not per_type[C == 0].any()  # absent types are reported False


K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)


def _brute_outputs(K, n, c, d, lam, z, fits):
    """Outputs (K x N) after ``fits`` fits on labels z: U + (Y - U) A^fits, explicit matrices."""
    A = brute_operator(K, n, c, d, lam)
    return 1.0 / K + (np.eye(K)[:, z] - 1.0 / K) @ np.linalg.matrix_power(A, fits)


def test_closed_form_minimum_round_uses_every_noisy_type():
    """The hardest noisy type (0, 1) (Delta = 0.1) lies above the diagonal of the first row; the closed form sees it."""
    C = np.array([[22, 18, 0], [9, 22, 9], [9, 0, 31]]) / 40
    assert theory.is_balanced(C) and theory.balanced_condition(C)
    closed = theory.min_rounds_balanced(3, 40, 0.4, 0.1, 1e-3, C)
    # the exact analysis over all rounds (an independent route); the other types have Delta >= 0.325
    assert closed == theory.min_rounds(3, 40, 0.4, 0.1, 1e-3, C)
    assert closed > theory.min_rounds_balanced(3, 40, 0.4, 0.1, 1e-3, np.array([[31, 0, 9], [0, 31, 9], [9, 9, 22]]) / 40)


def test_balanced_closed_form_refuses_unbalanced():
    C = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"unbalanced"):
        theory.min_rounds_balanced(3, 4, 0.4, 0.1, 1e-3, C)


def test_noisy_threshold_needs_a_positive_share_gap():
    """noisy_threshold_fits is defined only for Delta = C_kk - C_kl > 0: at Delta = 0 (the boundary) the noisy
    instance is never pulled to its class and the call is refused, as for Delta < 0; any Delta > 0 gives a finite
    positive threshold."""
    for Ckk, Ckl, delta in ((0.25, 0.25, "0.0"), (0.3, 0.4, "-0.1")):
        with raises_naming("C_kk - C_kl", delta):
            theory.noisy_threshold_fits(3, 4, 0.4, 0.1, 1e-3, Ckk, Ckl)
    s = theory.noisy_threshold_fits(3, 4, 0.4, 0.1, 1e-3, 0.25 + 1e-6, 0.25)
    assert math.isfinite(s) and s > 0


def test_balanced_condition_ties_fail():
    tie = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    assert not theory.balanced_condition(tie)
    assert theory.balanced_condition([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]])
    assert theory.is_balanced(tie)
    assert not theory.is_balanced([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # fresh samples of the tied classes: logits of labels 0 and 1 are equal, exactly (sign 0), so they fail
    o = np.mean(tie, axis=0)
    for t in (0, 3):
        assert fresh_margin_sign(*K3.values(), tie, o, t, 0, 1) == 0
        assert fresh_margin_sign(*K3.values(), tie, o, t, 2, 0) == 1
        assert fresh_margin_sign(*K3.values(), tie, o, t, 0, 2) == 1
        assert theory.population_accuracy(*K3.values(), tie, t) == pytest.approx(1 / 3, abs=1e-15)
    # labels mostly flipped between two classes: a fresh class-0 sample prefers label 1 (sign -1)
    flip = np.array([[0.3, 0.7], [0.7, 0.3]])
    assert fresh_margin_sign(2, 4, 0.4, 0.1, 1e-3, flip, flip.mean(axis=0), 0, 0, 1) == -1
    assert theory.population_accuracy(2, 4, 0.4, 0.1, 1e-3, flip, 0) == 0.0


def test_perfect_rounds_can_end():
    """Unbalanced labels (column means 0.6, 0.4): every instance is correct in rounds 11..22 only.

    Brute force: explicit margins for K = 2, n = 5, 1 of class 0 and 2 of class 1 mislabelled.
    The smallest |margin| over rounds 0..60 is ~1.5e-4, far above the float error (~1e-15).
    """
    K, n, c, d, lam = 2, 5, 0.4, 0.1, 0.01
    z = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1])
    y = np.repeat(np.arange(K), n)
    A = brute_operator(K, n, c, d, lam)
    D = (np.eye(K)[:, z] - 1.0 / K) @ A
    perfect, collapsed = [], []
    for t in range(61):
        margin = D[y, np.arange(K * n)] - D[1 - y, np.arange(K * n)]
        assert np.abs(margin).min() > 1e-5
        perfect.append(bool(np.all(margin > 0)))
        collapsed.append(bool(np.all(D[0] > D[1])))
        D = D @ A
    first = perfect.index(True)
    last = len(perfect) - 1 - perfect[::-1].index(True)
    assert all(perfect[first : last + 1]) and last < 60
    report = theory.rounds_report(K, n, c, d, lam, np.array([[4, 1], [2, 3]]) / n)
    assert report.first == first
    assert report.perfect_rounds == ((first, last),)
    assert report.perfect_forever is False
    assert report.collapse_label == 0
    assert report.collapse_from == collapsed.index(True) and all(collapsed[report.collapse_from :])


def test_outputs_and_verdicts_match_brute_force_unbalanced():
    """Unbalanced labels with absent types before present ones in a row: closed-form outputs and exact verdicts.

    Counts [[3, 1, 0], [0, 3, 1], [0, 0, 4]] (column means 1/4, 1/3, 5/12). Outputs agree with the explicit
    U + (Y - U) A^s to 1e-12 (entries O(1), ~N s eps accumulated); every brute-force margin is > 1e-6 in
    size, so the exact per-type verdicts are decided by float64 as well.
    """
    K, n, c, d, lam = 3, 4, 0.4, 0.1, 1e-2
    z = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 2])
    y = np.repeat(np.arange(K), n)
    counts = theory.counts_from_labels(y, z, K)
    C = counts / n
    assert counts.tolist() == [[3, 1, 0], [0, 3, 1], [0, 0, 4]]
    for t in (0, 1, 4, 15):
        P = _brute_outputs(K, n, c, d, lam, z, t + 1)
        assert np.allclose(theory.instance_outputs(K, n, c, d, lam, z, t), P, rtol=0, atol=1e-12)
        other = P.copy()
        other[y, np.arange(K * n)] = -np.inf
        margin = P[y, np.arange(K * n)] - other.max(axis=0)
        assert np.abs(margin).min() > 1e-6
        assert np.array_equal(theory.correct_types(K, n, c, d, lam, C, t)[y, z], margin > 0)
        assert theory.all_correct(K, n, c, d, lam, C, t) == bool(np.all(margin > 0))


def _first_round_in(max_round):
    def classify(case):
        K, n, c, d, lam, counts, _ = case
        t = theory.min_rounds(K, n, c, d, lam, counts / n)
        return t is not None and 1 <= t <= max_round

    return classify


@pytest.mark.parametrize(
    "strategy, max_round",
    [(p3_case(max_K=4, max_n=6, max_round=MAX_T, balanced=False), MAX_T), (p3_case(max_K=5, max_n=6, max_round=60, balanced=True), 60)],
    ids=["any labels (brute force)", "balanced (closed form)"],
)
def test_at_least_half_of_the_examples_are_informative(strategy, max_round):
    """The examples the P3 properties above see have their first perfect round in [1, max_round] (the criterion
    those properties report as an ``event``), so they are not decided at the teacher or never: at least half of
    the derandomised profile's examples, and at least 35 % of 200 fresh draws on a random profile."""
    from hypothesis import settings

    # derandomised (ci): the same 40 examples every run, at least half informative. Random profiles: one run's
    # 40 examples are not independent draws (hypothesis mutates and replays within a run), and their share
    # spread from 10 to 38 of 40 over 80 runs; so the strategy's share is measured on 200 fresh examples
    # without the database: 0.49-0.76 (brute force) and 0.55-0.92 (balanced) over 30 runs each, mean
    # 0.62 / 0.77 with spread 0.06; 0.35 lies 4.5 spreads below the lower mean
    random = not settings().derandomize
    informative, total = informative_share(strategy, _first_round_in(max_round), max_examples=200 if random else None)
    assert total > 0
    floor = 0.35 if random else 0.5
    assert informative >= floor * total, f"only {informative} of {total} examples are non-trivial"


def test_engine_measures_of_explicit_rounds_give_the_exact_verdicts():
    """The engine's measures (sims.engine.measures: the tie convention, perfect, first_perfect_round, Agreement), applied
    to explicit outputs of rounds 0..11, reproduce the exact verdicts of a case whose perfect rounds start and end
    within them; the smallest |margin| is 3.6e-5, far above the measures' tie tolerance 1e-9."""
    from sims.engine import measures

    K, n, c, d, lam = 3, 5, 0.3, 0.1, 3e-2
    counts = np.array([[4, 1, 0], [0, 5, 0], [1, 0, 4]])
    C = counts / n
    y = np.repeat(np.arange(K), n)
    A = brute_operator(K, n, c, d, lam)
    P = 1.0 / K + (np.eye(K)[:, labels_from_counts(counts)] - 1.0 / K) @ A
    observed, accuracies = [], []
    for _ in range(12):
        observed.append(measures.perfect(P, y))
        accuracies.append(measures.accuracy(P, y))
        P = 1.0 / K + (P - 1.0 / K) @ A
    exact = [theory.all_correct(K, n, c, d, lam, C, t) for t in range(12)]
    assert observed == exact and any(exact[:2]) is False and True in exact and exact[-1] is False  # informative
    first = theory.min_rounds(K, n, c, d, lam, C)
    assert measures.first_perfect_round(accuracies) == first == exact.index(True)
    assert measures.first_perfect_round(iter(accuracies)) == first  # any iterable
    assert measures.first_perfect_round(accuracies[:first]) is None
    assert measures.perfect(np.zeros((K, 0)), []) is False  # an empty set is not perfect
    agree = measures.Agreement.of(exact, observed)
    assert (agree.both, agree.only_theory, agree.only_observed, agree.neither) == (sum(exact), 0, 0, 12 - sum(exact))
    # a theory one round early: its first round is only the theory's, the observed last one only the observation's
    early = exact[1:] + [False]
    off = measures.Agreement.of(early, observed)
    counts_off = [sum(a and b for a, b in zip(early, observed)), sum(a and not b for a, b in zip(early, observed)),
                  sum(b and not a for a, b in zip(early, observed)), sum(not (a or b) for a, b in zip(early, observed))]
    assert [off.both, off.only_theory, off.only_observed, off.neither] == counts_off
    assert off.only_theory >= 1 and off.only_observed >= 1 and off.neither >= 1
    # counts add over disjoint sets of cells
    assert measures.Agreement.of(early[:5], observed[:5]) + measures.Agreement.of(early[5:], observed[5:]) == off
