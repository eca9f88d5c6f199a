"""P4 The one-round PLL student: teacher's top two, the student's verdicts, the two-class superclass tie."""

import numpy as np
import pytest
from hypothesis import event, example, given, note
from hypothesis import strategies as st

import theory

from .strategies import (
    block_params,
    explicit_block_gram,
    explicit_operator,
    informative_share,
    label_counts,
    labels_from_counts,
    pll_case,
)

# Brute-force ties: two teacher outputs (deviations from U) closer than REL_TIE
# times the instance's deviation scale are tied. Exact ties appear in float64 at
# ~1e-15 of that scale; genuine gaps of the drawn problems are >= ~1e-6.
REL_TIE = 1e-9


def _pll_targets_float(D_col, rule):
    """PLL target from float deviations with the documented tie rules (brute-force twin of theory.pll_targets)."""
    K = D_col.size
    scale = np.abs(D_col).max()
    tol = REL_TIE * scale
    order = sorted(range(K), key=lambda j: (-D_col[j], j))
    t = np.zeros(K)
    if rule == "lowest":
        # strict top two, a near-tie (within tol) going to the lower index
        first = min(j for j in range(K) if D_col[order[0]] - D_col[j] <= tol)
        rest = [j for j in range(K) if j != first]
        best = max(D_col[j] for j in rest)
        second = min(j for j in rest if best - D_col[j] <= tol)
        t[first] = t[second] = 0.5
        return t
    first = [j for j in range(K) if D_col[order[0]] - D_col[j] <= tol]
    if len(first) >= 2:
        t[first] = 1.0 / len(first)
        return t
    second_val = D_col[order[1]]
    second = [j for j in range(K) if j != order[0] and abs(D_col[j] - second_val) <= tol]
    t[order[0]] = 0.5
    t[second] = 0.5 / len(second)
    return t


def _brute_pll(K, n, c, d, lam, counts, rule):
    z = labels_from_counts(counts)
    y = np.repeat(np.arange(K), n)
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    D_teacher = (np.eye(K)[:, z] - 1.0 / K) @ A
    T = np.stack([_pll_targets_float(D_teacher[:, i], rule) for i in range(K * n)], axis=1)
    D_student = (T - 1.0 / K) @ A
    N = K * n
    other = D_student.copy()
    other[y, np.arange(N)] = -np.inf
    margin = D_student[y, np.arange(N)] - other.max(axis=0)
    return y, z, T, margin


# Noise floor of one explicit fit's deviations (targets in [0, 1], one product with A):
# ~N eps f_max per entry (N <= 24: ~5e-15 f_max); 1e-11 f_max leaves room. A student margin
# inside it is not decided by float64.
FLOOR = 1e-11


def pll_informative(K, n, c, d, lam, counts, rule="share"):
    """Non-trivial PLL example: the teacher errs on a present type, or ties within its top two (first or second place)."""
    rep = theory.pll_analysis(K, n, c, d, lam, counts / n, ties=rule)
    wrong = not np.all(rep.teacher_correct[rep.present])
    tie = bool(np.any((rep.targets[rep.present] > 0).sum(axis=-1) != 2)) or bool(
        np.any(np.isin(rep.targets[rep.present], [1.0 / 3, 0.25, 1.0 / 6, 1.0 / 8]))
    )
    return wrong or tie, wrong, tie


@pytest.mark.parametrize("rule", ["share", "lowest"])
@given(case=pll_case(max_K=4, max_n=6))
@example(case=(4, 4, 0.4, 0.1, 1e-3, np.array([[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 3, 1], [0, 0, 1, 3]]), "example"))
@example(case=(3, 3, 0.4, 0.1, 1e-3, np.ones((3, 3), dtype=int), "true class tied for second"))
def test_pll_matches_brute_force(rule, case):
    """Targets, "true class in the teacher's top two" and student verdicts of the exact analysis equal the explicit
    teacher/student computation."""
    K, n, c, d, lam, counts, mode = case
    C = counts / n
    rep = theory.pll_analysis(K, n, c, d, lam, C, ties=rule)
    informative, wrong, tie = pll_informative(K, n, c, d, lam, counts, rule)
    event(f"mode: {mode}")
    event("teacher errs" if wrong else "teacher perfect")
    event("tie in the teacher's top two" if tie else "no tie")
    y, z, T, margin = _brute_pll(K, n, c, d, lam, counts, rule)
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    D_teacher = (np.eye(K)[:, z] - 1.0 / K) @ A
    for i in range(K * n):
        k, l = y[i], z[i]
        if not np.allclose(T[:, i], rep.targets[k, l], atol=1e-12):
            note(f"instance {i} type {(k, l)}: brute {T[:, i]}, theory {rep.targets[k, l]}")
            raise AssertionError("PLL targets differ (a teacher tie decided differently?)")
        # "the teacher's top two contain the true class" = the true class gets PLL weight; under "share" that is
        # "at most one class strictly above it" (ties within REL_TIE of the scale count as equal)
        assert rep.teacher_contains_true[k, l] == (T[k, i] > 0)
        if rule == "share":
            col = D_teacher[:, i]
            above = np.sum(col - col[k] > REL_TIE * np.abs(col).max())
            assert rep.teacher_contains_true[k, l] == (above <= 1)
        floor = FLOOR * max(theory.filters(K, n, c, d, lam))
        ok = margin[i] > floor
        if ok != rep.student_correct[k, l]:
            assert abs(margin[i]) <= floor, f"type {(k, l)}: theory {rep.student_correct[k, l]}, brute margin {margin[i]}"


def test_pll_first_place_tie_branch():
    """m >= 2 classes tied for first each get 1/m (share rule); a unique first gets 1/2 and the tied seconds share 1/2;
    "lowest" keeps the two lowest indices. Also the float twin in sims.metrics."""
    from fractions import Fraction as F

    from sims.engine import measures as metrics

    cases = {
        (F(3), F(3), F(1)): ([F(1, 2), F(1, 2), F(0)], [F(1, 2), F(1, 2), F(0)]),
        (F(2), F(2), F(2)): ([F(1, 3)] * 3, [F(1, 2), F(1, 2), F(0)]),
        (F(1), F(5), F(5), F(5)): ([F(0), F(1, 3), F(1, 3), F(1, 3)], [F(0), F(1, 2), F(1, 2), F(0)]),
        (F(5), F(1), F(1), F(0)): ([F(1, 2), F(1, 4), F(1, 4), F(0)], [F(1, 2), F(1, 2), F(0), F(0)]),
        (F(0), F(9), F(1), F(3)): ([F(0), F(1, 2), F(0), F(1, 2)], [F(0), F(1, 2), F(0), F(1, 2)]),
    }
    for scores, (share, lowest) in cases.items():
        assert theory.pll_targets(list(scores), "share") == share
        assert theory.pll_targets(list(scores), "lowest") == lowest
        P = np.array([[float(v)] for v in scores])
        assert np.array_equal(metrics.pll_targets(P, "share")[:, 0], [float(v) for v in share])
        assert np.array_equal(metrics.pll_targets(P, "lowest")[:, 0], [float(v) for v in lowest])


def test_true_class_outside_top_two():
    """Class 0's labels are 20 % correct, 30 % label 1, 50 % label 2: an instance of class 0 given label 1 has
    teacher top two {1, 2}, so its true class is not contained; one given label 2 has {2, 0} or {2, 1}."""
    C = np.array([[0.2, 0.3, 0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    K, n, c, d, lam = 3, 10, 0.4, 0.1, 1e-3
    rep = theory.pll_analysis(K, n, c, d, lam, C)
    counts = np.rint(C * n).astype(int)
    _, _, T, _ = _brute_pll(K, n, c, d, lam, counts, "share")
    z = labels_from_counts(counts)
    for i in range(n):
        assert rep.teacher_contains_true[0, z[i]] == (T[0, i] > 0)
    assert not rep.teacher_contains_true[0, 1]
    assert rep.teacher_contains_true[0, 0]


def test_true_class_tied_for_second_place_is_in_the_top_two():
    """Uniform noise, K = 3 (C_kl = 1/3): a noisy instance's teacher ranks its given label first and its true class
    tied with the third class for second place. Under "share" the two share the second half (1/4 each), so the
    teacher's top two contain the true class although it gets less than 1/2; under "lowest" only the lower index
    of the two is kept. Exact comparisons (Fractions, and floats of 1/4 and 1/2)."""
    from fractions import Fraction as F

    assert theory.pll_targets([F(1), F(5), F(1)], "share") == [F(1, 4), F(1, 2), F(1, 4)]
    K, n, c, d, lam = 3, 3, 0.4, 0.1, 1e-3
    C = np.full((K, K), 1 / 3)
    share = theory.pll_analysis(K, n, c, d, lam, C, ties="share")
    lowest = theory.pll_analysis(K, n, c, d, lam, C, ties="lowest")
    for k in range(K):
        for l in range(K):
            if l == k:
                assert share.teacher_correct[k, l] and share.teacher_contains_true[k, l]
                continue
            (j,) = set(range(K)) - {k, l}
            assert not share.teacher_correct[k, l]
            assert share.targets[k, l, l] == 0.5 and share.targets[k, l, k] == share.targets[k, l, j] == 0.25
            assert share.teacher_contains_true[k, l]
            assert lowest.teacher_contains_true[k, l] == (k < j) == (lowest.targets[k, l, k] == 0.5)


@given(block_params(max_K=5, max_n=6), st.data())
def test_teacher_top_two_contains_true_class(params, data):
    """Balanced labels: C_kk > C_kj in every class with noise is sufficient for the top two to contain every true class.

    (Not necessary: a class whose only rival label is never outranked by a third class keeps its true class
    in the top two; with K = 2 the top two are everything. The brute-force test covers the exact sets.)
    """
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n, balanced=True))
    C = counts / n
    rep = theory.pll_analysis(K, n, c, d, lam, C)
    if theory.balanced_condition(C) or K == 2:
        assert np.all(rep.teacher_contains_true[rep.present])


@given(block_params(max_K=5, max_n=6), st.data())
@example((3, 3, 0.05, 0.0, 1.0), None)
def test_student_condition_half(params, data):
    """If every PLL target gives the true class its full 1/2 (true class in the strict top two, not sharing
    a tie) and the PLL targets are balanced over classes, the student is perfect iff every class-mean PLL
    target gives each wrong label strictly less than 1/2. (With a shared tie the true class can get 1/4;
    e.g. uniform noise with K=3 then satisfies the 1/2 condition and still fails.)"""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n, balanced=True)) if data is not None else np.ones((3, 3), dtype=int)
    C = counts / n
    rep = theory.pll_analysis(K, n, c, d, lam, C)
    overall = rep.class_mean_targets.mean(axis=0)
    k_idx = np.arange(K)[:, None]
    full_half = np.all(rep.targets[k_idx, np.arange(K)[None, :], k_idx][rep.present] == 0.5)
    if full_half and np.allclose(overall, 1.0 / K, atol=1e-15):
        assert rep.student_all_correct == rep.condition


@given(K=st.sampled_from([2, 4, 6, 8]), eta=st.integers(1, 49).map(lambda v: v / 100), params=block_params(max_K=2, max_n=6, min_d=0.0))
def test_two_class_superclass_ties(K, eta, params):
    """Superclasses of two: every instance of a pair gets the same two labels, the student's two outputs tie, all fail."""
    _, n, c, d, lam = params
    C = theory.superclass(K, eta, 2)
    rep = theory.pll_analysis(K, n, c, d, lam, C)
    assert set(rep.tied_pairs) == {(k, k ^ 1) for k in range(K)}
    assert not rep.condition
    assert rep.student_train_accuracy == 0.0


@pytest.mark.parametrize("K", [2, 4])
@pytest.mark.parametrize("noisy", [1, 3, 4])
def test_two_class_superclass_tie_brute_force(K, noisy):
    """Explicit matrices (n = 10): the student's outputs for the two classes of a pair coincide to round-off."""
    n = 10
    C = theory.superclass(K, noisy / n, 2)
    counts = np.rint(C * n).astype(int)
    z = labels_from_counts(counts)
    A = explicit_operator(explicit_block_gram(K, n, 0.4, 0.1), K, 1e-3)
    teacher = (np.eye(K)[:, z] - 1.0 / K) @ A
    T = np.stack([_pll_targets_float(teacher[:, i], "share") for i in range(K * n)], axis=1)
    student = (T - 1.0 / K) @ A + 1.0 / K
    for k in range(0, K, 2):
        rows = student[[k, k + 1]]
        # outputs O(1/K); their difference is exact cancellation up to ~1e-15
        assert np.max(np.abs(rows[0] - rows[1])) <= 1e-12
    rep = theory.pll_analysis(K, n, 0.4, 0.1, 1e-3, C)
    assert rep.student_train_accuracy == 0.0


def test_top_two_condition_is_not_necessary():
    """C_kk > C_kj fails in classes 0 and 1, yet every true class is in the teacher's top two (at most one class
    outranks it): the balanced condition is sufficient, not necessary."""
    C = [[0.4, 0.6, 0.0], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]]
    rep = theory.pll_analysis(3, 5, 0.4, 0.1, 1e-3, C)
    assert not theory.balanced_condition(C)
    assert np.all(rep.teacher_contains_true[rep.present])


def test_larger_superclasses_do_not_tie():
    """Superclasses of three (K=6): below the noise threshold 2/3 the PLL student is perfect."""
    for eta in (0.1, 0.3, 0.5, 0.6):
        rep = theory.pll_analysis(6, 60, 0.4, 0.1, 1e-4, theory.superclass(6, eta, 3))
        assert rep.student_all_correct, eta


def test_tie_rule_matters_without_noise():
    """No noise, symmetric K=4: the wrong classes tie for second place. "share" spreads the second half and the
    student is perfect; "lowest" gives every class-k instance the pair {k, lowest other}, so class 0 takes half of
    classes 1-3's targets and class 1 half of class 0's: the class-mean target gives exactly 1/2 to a wrong label."""
    C = theory.symmetric(4, 0.0)
    share = theory.pll_analysis(4, 50, 0.4, 0.1, 1e-4, C, ties="share")
    lowest = theory.pll_analysis(4, 50, 0.4, 0.1, 1e-4, C, ties="lowest")
    assert share.student_all_correct and share.condition
    assert not lowest.condition
    assert (1, 0) in lowest.tied_pairs and (0, 1) in lowest.tied_pairs


def _exact_student_fresh_accuracy(K, n, c, d, lam, counts):
    """The PLL student's fresh accuracy from explicit N x N matrices in exact rational arithmetic (python-flint):
    the teacher's deviations (Y - 1/K) A with A = G (G + mu I)^-1, its top two by the "share" rule with exact
    ties, and the student's fresh logits (T - 1/K)(G + mu I)^-1 g_x (a positive multiple of (T - U)(I - A) g_x)
    for a fresh class-k sample, g_x = c on class k and d elsewhere. c, d, lambda are read as the theory reads
    them (theory.rational.rational), so an exact tie is 0 here and fails, as under the tie convention."""
    import flint

    from theory.rational import rational

    def q(v):
        v = rational(v)
        return flint.fmpq(v.numerator, v.denominator)

    N = K * n
    y = np.repeat(np.arange(K), n)
    z = labels_from_counts(counts)
    cq, dq, mu = q(c), q(d), K * N * q(lam)
    G = flint.fmpq_mat(N, N, [1 if i == j else (cq if y[i] == y[j] else dq) for i in range(N) for j in range(N)])
    inv = (G + flint.fmpq_mat(N, N, [mu if i == j else 0 for i in range(N) for j in range(N)])).inv()
    u = flint.fmpq(1, K)
    dev = flint.fmpq_mat(K, N, [int(z[i] == k) - u for k in range(K) for i in range(N)]) * G * inv
    T = [[flint.fmpq(0)] * N for _ in range(K)]
    for i in range(N):
        col = [dev[k, i] for k in range(K)]
        first = [k for k in range(K) if col[k] == max(col)]
        if len(first) >= 2:
            for k in first:
                T[k][i] = flint.fmpq(1, len(first))
            continue
        rest = [col[k] for k in range(K) if k != first[0]]
        second = [k for k in range(K) if k != first[0] and col[k] == max(rest)]
        T[first[0]][i] = flint.fmpq(1, 2)
        for k in second:
            T[k][i] = flint.fmpq(1, 2 * len(second))
    R = flint.fmpq_mat(K, N, [T[k][i] - u for k in range(K) for i in range(N)]) * inv
    correct = 0
    for k in range(K):
        logit = R * flint.fmpq_mat(N, 1, [cq if y[i] == k else dq for i in range(N)])
        correct += all(logit[k, 0] > logit[j, 0] for j in range(K) if j != k)
    return correct


@given(case=pll_case(max_K=4, max_n=6))
# class and constant terms of a fresh margin of opposite sign: its sign after one fit differs from that after two
@example(case=(3, 5, 0.2, 0.1, 0.3, np.array([[1, 1, 3], [5, 0, 0], [1, 2, 2]]), "one fit differs from two"))
def test_student_fresh_accuracy_matches_explicit(case):
    """The PLL student's fresh-sample accuracy equals the explicit one, computed exactly (every example decided,
    exact ties included: they count as failures on both sides)."""
    K, n, c, d, lam, counts, mode = case
    rep = theory.pll_analysis(K, n, c, d, lam, counts / n)
    correct = _exact_student_fresh_accuracy(K, n, c, d, lam, counts)
    event(f"fresh accuracy {correct}/{K}")
    assert rep.student_fresh_accuracy == correct / K


def _teacher_deviations(K, n, c, d, lam, counts):
    """Explicit one-fit teacher deviations (K, N) and the true/given label of every instance."""
    y, z, _, margin = _brute_pll(K, n, c, d, lam, counts, "share")
    A = explicit_operator(explicit_block_gram(K, n, c, d), K, lam)
    return (np.eye(K)[:, z] - 1.0 / K) @ A, y, z, margin


# Small lambda: the teacher memorises the given labels and errs on the noisy types; large lambda: it smooths
# them to the class majority; together the cases have teacher-correct and teacher-wrong present types.
TEACHER_CASES = [
    (4, 4, 0.4, 0.1, 1e-3, np.array([[2, 2, 0, 0], [2, 2, 0, 0], [0, 0, 3, 1], [0, 0, 1, 3]])),
    (3, 3, 0.6, 0.3, 0.1, np.array([[0, 1, 2], [0, 0, 3], [2, 1, 0]])),
]


def test_pll_teacher_correct_matches_explicit_teacher():
    """teacher_correct[k, l] is "the teacher's true-class output beats every other class", as in the explicit fit;
    teacher_train_accuracy is the share of such instances."""
    verdicts = set()
    for K, n, c, d, lam, counts in TEACHER_CASES:
        rep = theory.pll_analysis(K, n, c, d, lam, counts / n)
        D, y, z, _ = _teacher_deviations(K, n, c, d, lam, counts)
        N = K * n
        right = np.zeros(N, dtype=bool)
        for i in range(N):
            col = D[:, i]
            gap = col[y[i]] - np.delete(col, y[i]).max()
            # explicit deviations carry ~N eps of the filter scale; the drawn gaps are >= 1e-3 of it
            assert abs(gap) > FLOOR * np.abs(col).max()
            right[i] = gap > 0
            assert rep.teacher_correct[y[i], z[i]] == right[i], f"type {(y[i], z[i])}"
        verdicts.update(right.tolist())
        assert abs(rep.teacher_train_accuracy - right.mean()) <= 1e-14  # a float sum of <= 16 shares
    assert verdicts == {True, False}  # the cases exercise both verdicts


def test_pll_student_is_one_round():
    """The student's verdict is its margin after ONE fit on the PLL targets (this case's margin changes sign
    between one and two fits of type (2, 1))."""
    K, n, c, d, lam, counts = TEACHER_CASES[1]
    rep = theory.pll_analysis(K, n, c, d, lam, counts / n)
    _, y, z, margin = _teacher_deviations(K, n, c, d, lam, counts)
    floor = FLOOR * max(theory.filters(K, n, c, d, lam))
    for i in range(K * n):
        assert abs(margin[i]) > floor  # decided by float64 (see test_p4_pll.FLOOR)
        assert rep.student_correct[y[i], z[i]] == (margin[i] > 0), f"type {(y[i], z[i])}"
    assert not rep.student_correct[2, 1]


def test_teacher_tie_is_not_correct():
    """alpha = 1/4, beta = 3/4, Delta = 1/2 (see test_boundary_tie_counts_as_failure): the teacher's outputs of
    the noisy type (0, 1) tie exactly between classes 0 and 1, so it is not correct; both classes are in its top two."""
    C = np.array([[0.75, 0.25], [0.25, 0.75]])
    rep = theory.pll_analysis(2, 8, 0.5, 0.0, 1.5 / 32, C)
    assert rep.teacher_correct.tolist() == [[True, False], [False, True]]
    assert rep.teacher_contains_true.all() and rep.targets[0, 1].tolist() == [0.5, 0.5]
    assert rep.teacher_train_accuracy == 0.75


def test_pll_class_mean_shares():
    """Symmetric noise eta = 1/4, K = 3, rule "lowest" (hand count): a clean class-0 instance's target is (1/2, 1/2, 0)
    (tie for second broken to the lower index), a noisy (0, 1) one's (1/2, 1/2, 0) and a noisy (0, 2) one's
    (1/2, 0, 1/2); class 0's mean gives label 1 3/4 * 1/2 + 1/8 * 1/2 = 7/16 < 1/2: the condition holds.
    K = 2: every target is (1/2, 1/2), the wrong share is exactly 1/2 (tied, condition fails) and the student's
    fresh logits tie exactly, so no fresh sample is correct."""
    rep = theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, theory.symmetric(3, 0.25), ties="lowest")
    assert rep.class_mean_targets[0].tolist() == [0.5, 0.4375, 0.0625]
    assert rep.max_wrong_share.tolist() == [0.4375] * 3
    assert rep.condition is True and rep.tied_pairs == ()
    two = theory.pll_analysis(2, 4, 0.4, 0.1, 1e-3, theory.symmetric(2, 0.25))
    assert two.class_mean_targets.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    assert two.max_wrong_share.tolist() == [0.5, 0.5]
    assert two.condition is False and set(two.tied_pairs) == {(0, 1), (1, 0)}
    assert two.student_fresh_accuracy == 0.0


@pytest.mark.parametrize("ties", ["share", "lowest"])
def test_metrics_pll_targets_is_decided_column_by_column(ties):
    # Each column's runner-up must be found within that column: the columns below have runner-ups of very
    # different size (0.30 vs 0.05), so a runner-up threshold taken over the whole matrix would miss column 1's.
    from sims.engine.measures import pll_targets

    P = np.array([[0.60, 0.90], [0.30, 0.05], [0.10, 0.05 - 1e-3]])
    T = pll_targets(P, ties=ties)
    for col in range(P.shape[1]):
        order = np.argsort(-P[:, col], kind="stable")
        expected = np.zeros(P.shape[0])
        expected[order[:2]] = 0.5  # no ties within 1e-9 here, so both rules give half to each of the top two
        np.testing.assert_array_equal(T[:, col], expected)


def test_at_least_half_of_the_examples_are_informative():
    """At least half of the examples test_pll_matches_brute_force sees are non-trivial: the teacher errs on a present
    type or ties in its top two (the criterion that property reports as an ``event``)."""
    informative, total = informative_share(pll_case(max_K=4, max_n=6), lambda case: pll_informative(*case[:6])[0])
    assert total > 0
    assert informative >= total / 2, f"only {informative} of {total} examples are non-trivial"
