"""Contracts of the core modules that the property tests do not pin down (mutation testing, issue 9).

Validation messages name the parameter and hold exactly (anchored patterns), bounds
are enforced at the boundary on both sides, documented defaults are used, outputs
have the documented dtypes also for int / Fraction input, and the tolerances of
the Gram-matrix checks sit where their comments say.
"""

from fractions import Fraction

import numpy as np
import pytest

import theory
from theory import validate as V
from theory import conditions
from theory.predictions import fresh_margin_sign

K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)
C3 = theory.symmetric(3, 0.25)
C2 = theory.symmetric(2, 0.25)
B2 = (2, 1, 0.4, 0.1, 1e-3)  # smallest admissible block model: K = 2, n = 1
UNBAL = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])


def _brute_operator(K, n, c, d, lam):
    """A = (G + K N lam I)^-1 G for the explicit block Gram matrix, plain numpy (no theory code)."""
    y = np.repeat(np.arange(K), n)
    G = np.where(y[:, None] == y[None, :], c, d)
    np.fill_diagonal(G, 1.0)
    N = K * n
    return np.linalg.solve(G + K * N * lam * np.eye(N), G)


def _brute_outputs(K, n, c, d, lam, z, fits):
    """Outputs (K x N) after ``fits`` fits on labels z: U + (Y - U) A^fits, explicit matrices."""
    A = _brute_operator(K, n, c, d, lam)
    return 1.0 / K + (np.eye(K)[:, z] - 1.0 / K) @ np.linalg.matrix_power(A, fits)


# ---------------------------------------------------------------------------
# messages: every validated parameter is named, with its value and its range
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: theory.is_balanced([[1.0, 0.0, 0.0]]), r"^C has shape \(1, 3\), must be a square K x K matrix$"),
        (lambda: theory.balanced_condition([[0.5, 0.6], [0.0, 1.0]]), r"^row 0 of C sums to 1.1, must sum to 1 \(within 1e-09\)$"),
        (lambda: theory.noisy_threshold_fits(*K3.values(), 0.5, 1.5), r"^Ckl == 1.5, must be in \[0, 1\]$"),
        (lambda: theory.noisy_threshold_fits(*K3.values(), -0.5, 0.1), r"^Ckk == -0.5, must be in \[0, 1\]$"),
        # Delta = 0 is the boundary: the noisy instance is never pulled to its class
        (
            lambda: theory.noisy_threshold_fits(*K3.values(), 0.25, 0.25),
            r"^C_kk - C_kl == 0.0, must be > 0 for the noisy instance to be correctable$",
        ),
        (
            lambda: theory.min_rounds_balanced(3, 4, 0.4, 0.1, 1e-3, [[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]]),
            r"^C has column means != 1/K: given labels are unbalanced; use min_rounds \(exact, general\)$",
        ),
        (lambda: theory.correct_types(*K3.values(), C3, -1), r"^t == -1, must be >= 0$"),
        (lambda: theory.population_accuracy(*K3.values(), C3, -2), r"^t == -2, must be >= 0$"),
        (lambda: theory.noise_threshold("superclass", 4, 1), r"^superclass_size == 1, must be >= 2$"),
        (lambda: theory.noise_threshold("superclass", 4, 2.5), r"^superclass_size == 2.5, must be an integer$"),
        (lambda: theory.noise_threshold("Symmetric", 4), r"^noise == 'Symmetric', must be one of symmetric, asymmetric, superclass$"),
        (lambda: theory.corruption_matrix("Superclass", 4, 0.1), r"^noise == 'Superclass', must be one of symmetric, asymmetric, superclass$"),
        (lambda: theory.symmetric(4, 1.5), r"^eta == 1.5, must be in \[0, 1\]$"),
        (lambda: theory.asymmetric(4, -0.1), r"^eta == -0.1, must be in \[0, 1\]$"),
        (lambda: theory.symmetric(1, 0.1), r"^K == 1, must be >= 2$"),
        (lambda: theory.superclass_groups(4, 5), r"^superclass_size == 5, must be <= 4$"),
        (lambda: theory.superclass(4, 0.2, 3), r"^superclass_size == 3, must divide K == 4$"),
        (lambda: theory.superclass(4, 0.2, groups=[[0, 1], [2], [3]]), r"^groups == \[\[0, 1\], \[2\], \[3\]\], every group must hold at least 2 classes$"),
        (lambda: theory.exact_label_counts(C3, 0), r"^n == 0, must be >= 1$"),
        (lambda: theory.counts_from_labels([0, 1], [[0, 1]], 2), r"^true_labels and given_labels must be 1-d of equal length, got \(2,\) and \(1, 2\)$"),
        (lambda: theory.counts_from_labels([[0, 1]], [[0, 1]], 2), r"^true_labels and given_labels must be 1-d of equal length, got \(1, 2\) and \(1, 2\)$"),
        (lambda: theory.counts_from_labels([0, 1], [0, 1], 1.5), r"^K == 1.5, must be an integer$"),
        (lambda: theory.block_gram(3, 0, 0.4, 0.1), r"^n == 0, must be >= 1$"),
        (lambda: theory.block_eigenvalues(1, 4, 0.4, 0.1), r"^K == 1, must be >= 2$"),
        (lambda: theory.filters(3, 4, 0.4, 0.1, -1e-3), r"^lam == -0.001, must be > 0$"),
        (lambda: theory.filters_exact(3, 4, 0.4, 0.1, 0), r"^lam == 0.0, must be > 0$"),
        (lambda: theory.label_averaging_operator(np.eye(2), 2, -1.0), r"^lam == -1.0, must be > 0$"),
        (
            lambda: theory.label_averaging_operator(np.array([[1.0, 0.5], [0.0, 1.0]]), 2, 1e-3),
            r"^G is not symmetric, must be a Gram matrix \(symmetric positive semidefinite\)$",
        ),
        (lambda: theory.label_averaging_operator(np.ones((2, 2, 2)), 2, 1e-3), r"^G has shape \(2, 2, 2\), must be square N x N$"),
        (lambda: theory.spectral_operator(3, 4, 0.4, 0.1, 1e-3, -1), r"^fits == -1, must be >= 0$"),
        (lambda: theory.instance_outputs(3, 0, 0.4, 0.1, 1e-3, [], 0), r"^n == 0, must be >= 1$"),
        (lambda: theory.instance_outputs(3, 1, 0.4, 0.1, 1e-3, [0, -1, 2], 0), r"^given_labels has values in \[-1, 2\], must be in \[0, 2\]$"),
        (lambda: theory.instance_outputs(3, 1, 0.4, 0.1, 1e-3, [0, 1, 2], -1), r"^t == -1, must be >= 0$"),
        (lambda: theory.clustering_ratio(3, 4, 0.4, 0.1, 1e-3, -1), r"^t == -1, must be >= 0$"),
        (lambda: theory.type_outputs(3, 4, 0.4, 0.1, 1e-3, C3, 1.5), r"^t == 1.5, must be an integer$"),
        (lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C3, C3.mean(axis=0), 0), r"^fits == 0, must be >= 1$"),
        (lambda: theory.fresh_logits(1, 4, 0.4, 0.1, 1e-3, C3, C3.mean(axis=0), 1), r"^K == 1, must be >= 2$"),
        (lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C3[:2], C3.mean(axis=0), 1), r"^class_mean has shape \(2, 3\), must be a square K x K matrix$"),
        (lambda: theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, C3, ties="Share"), r"^ties == 'Share', must be one of share, lowest$"),
        (lambda: theory.pll_targets([0.3, 0.2], ties="Lowest"), r"^ties == 'Lowest', must be one of share, lowest$"),
        # the validators themselves
        (lambda: V.check_int("K", "3"), r"^K == '3', must be an integer$"),
        (lambda: V.check_int("n", False), r"^n == False, must be an integer$"),
        (lambda: V.check_int("m", 7, maximum=6), r"^m == 7, must be <= 6$"),
        (lambda: V.check_real("c", True), r"^c == True, must be a real number$"),
        (lambda: V.check_real("c", "0.5"), r"^c == '0.5', must be a real number$"),
        (lambda: V.check_real("d", float("-inf")), r"^d == -inf, must be finite$"),
        (lambda: V.check_positive("lam", -0.0), r"^lam == -0.0, must be > 0$"),
        (lambda: theory.symmetric(3, "0.1"), r"^eta == '0.1', must be a real number$"),
        (lambda: theory.noisy_threshold_fits(*K3.values(), 0.5, float("nan")), r"^Ckl == nan, must be finite$"),
        (lambda: V.check_fraction("eta", 1.0000000000000002), r"^eta == 1.0000000000000002, must be in \[0, 1\]$"),
        (lambda: V.check_fraction("eta", -5e-324), r"^eta == -5e-324, must be in \[0, 1\]$"),
        (lambda: V.check_rounds("t", -1), r"^t == -1, must be >= 0$"),
        (lambda: V.check_corruption_matrix([[1.0, 0.0], [0.0, 1.0]], 3), r"^C has shape \(2, 2\), must be \(3, 3\) for K == 3$"),
        (lambda: V.check_corruption_matrix([[1.0, 0.0], [0.0, 1.0]], 3, name="M"), r"^M has shape \(2, 2\), must be \(3, 3\) for K == 3$"),
        (lambda: V.check_corruption_matrix([[1.0, 0.0], [np.inf, 0.0]]), r"^C has non-finite entries, must be finite$"),
        (lambda: V.check_corruption_matrix([[1.0, 0.0], [0.5, 0.4]]), r"^row 1 of C sums to 0.9, must sum to 1 \(within 1e-09\)$"),
        (lambda: V.check_corruption_matrix([[1.0, 0.0], [1.5, -0.5]]), r"^C\[1, 1\] == -0.5, must be >= 0 \(entries are label shares\)$"),
        (lambda: V.check_label_counts([[1]]), r"^counts has shape \(1, 1\), must be a square K x K matrix with K >= 2$"),
        (lambda: V.check_label_counts([[1, 0, 0], [0, 1, 0]]), r"^counts has shape \(2, 3\), must be a square K x K matrix with K >= 2$"),
        (lambda: V.check_label_counts(np.zeros((2, 2, 2))), r"^counts has shape \(2, 2, 2\), must be a square K x K matrix with K >= 2$"),
        (lambda: V.check_label_counts([[np.inf, 0], [0, 1]]), r"^counts must hold whole numbers of instances, got \[\[inf, 0.0\], \[0.0, 1.0\]\]$"),
        (lambda: V.check_label_counts([["a", "b"], ["c", "d"]]), r"^counts must hold whole numbers of instances, got \[\['a', 'b'\], \['c', 'd'\]\]$"),
        # the first row that misses n is named (row 0 is fine)
        (lambda: V.check_label_counts([[2, 0], [1, 0]], 2), r"^row 1 of counts sums to 1, must sum to n == 2 \(instances per class\)$"),
        (lambda: V.check_label_counts([[1, 1], [3, 0]], 2, name="N"), r"^row 1 of N sums to 3, must sum to n == 2 \(instances per class\)$"),
        (lambda: V.check_label_counts([[1, 0], [0, 0]]), r"^counts has a class with no instances, each row must sum to n >= 1$"),
    ],
)
def test_message_names_parameter(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize(
    "fn",
    [
        theory.rounds_report,
        theory.min_rounds,
        theory.min_rounds_balanced,
        theory.pll_analysis,
        theory.predictions.margin_terms,
        lambda *a: theory.train_accuracy(*a, 0),
        lambda *a: theory.population_accuracy(*a, 0),
        lambda *a: theory.all_correct(*a, 0),
        lambda *a: theory.correct_types(*a, 0),
        lambda *a: theory.type_outputs(*a, 0),
        lambda *a: theory.outputs_for_targets(*a, np.zeros((3, 3, 3)), 1),
    ],
)
def test_label_shares_must_match_K(fn):
    """C of another number of classes than K is refused by name, before anything is computed."""
    with pytest.raises(ValueError, match=r"^C has shape \(2, 2\), must be \(3, 3\) for K == 3$"):
        fn(3, 4, 0.4, 0.1, 1e-3, C2)
    with pytest.raises(ValueError, match=r"^class_mean has shape \(2, 2\), must be \(3, 3\) for K == 3$"):
        theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C2, C2.mean(axis=0), 1)


# ---------------------------------------------------------------------------
# bounds are inclusive at the boundary: the smallest admissible values work
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.rounds_report(*B2, C2).first is not None,
        lambda: theory.min_rounds(*B2, C2) is not None,
        lambda: theory.min_rounds_balanced(*B2, C2) is not None,
        lambda: theory.correct_types(*B2, C2, 0).shape == (2, 2),
        lambda: theory.all_correct(*B2, np.eye(2), 0),
        lambda: theory.train_accuracy(*B2, np.eye(2), 0)["all"] == 1.0,
        lambda: theory.population_accuracy(*B2, C2, 0) == 1.0,
        lambda: theory.noise_threshold("symmetric", 2) == 0.5,
        lambda: theory.noise_threshold("asymmetric", 2) == 0.5,
        lambda: theory.noise_threshold("superclass", 2, 2) == 0.5,
        lambda: theory.symmetric(2, 0.0).tolist() == [[1.0, 0.0], [0.0, 1.0]],
        lambda: theory.symmetric(2, 1.0).tolist() == [[0.0, 1.0], [1.0, 0.0]],
        lambda: theory.asymmetric(2, 0.0).tolist() == [[1.0, 0.0], [0.0, 1.0]],
        lambda: theory.superclass_groups(2, 2) == [[0, 1]],
        lambda: theory.superclass(2, 0.5).tolist() == [[0.5, 0.5], [0.5, 0.5]],
        lambda: theory.exact_label_counts(C2, 4).tolist() == [[3, 1], [1, 3]],
        lambda: theory.exact_label_counts(np.eye(2), 1).tolist() == [[1, 0], [0, 1]],
        lambda: theory.counts_from_labels([0, 1], [1, 1], 2).tolist() == [[0, 1], [0, 1]],
        lambda: len(theory.block_eigenvalues(2, 1, 0.4, 0.1)) == 3,
        lambda: theory.block_gram(2, 1, 0.4, 0.1).tolist() == [[1.0, 0.1], [0.1, 1.0]],
        lambda: theory.block_projectors(2, 1)[2].tolist() == [[0.5, 0.5], [0.5, 0.5]],
        lambda: theory.filters(*B2)[0] > 0,
        lambda: theory.filters_exact(*B2)[0] > 0,
        lambda: theory.label_averaging_operator(np.eye(2), 2, 1e-3).shape == (2, 2),
        lambda: theory.spectral_operator(*B2, 0).tolist() == [[1.0, 0.0], [0.0, 1.0]],
        lambda: theory.outputs_for_targets(*B2, C2, theory.predictions.one_hot_type_targets(2), 0).shape == (2, 2, 2),
        lambda: theory.type_outputs(*B2, C2, 0).shape == (2, 2, 2),
        lambda: theory.instance_outputs(*B2, [0, 1], 0).shape == (2, 2),
        lambda: theory.instance_outputs(3, 2, 0.4, 0.1, 1e-3, [0, 0, 1, 1, 2, 2], 0).shape == (3, 6),
        lambda: len(theory.predictions.margin_terms(*B2, C2)[1]) == 4,
        lambda: theory.fresh_logits(*B2, C2, C2.mean(axis=0), 1).shape == (2, 2),
        # unbalanced given labels: overall = (1/2, 1/3, 1/6), the mean of class_mean's rows
        lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, UNBAL, UNBAL.mean(axis=0), 1).shape == (3, 3),
        lambda: theory.clustering_ratio(*B2, 0) < 1,
        lambda: theory.pll_analysis(*B2, C2).condition in (True, False),
        lambda: V.check_int("K", 2, minimum=2, maximum=2) == 2,
        lambda: V.check_int("K", 4.0) == 4,
        lambda: V.check_fraction("eta", 0.0) == 0.0,
        lambda: V.check_fraction("eta", 1.0) == 1.0,
        lambda: V.check_positive("lam", 5e-324) == 5e-324,
        lambda: V.check_rounds("t", 0) == 0,
        lambda: V.check_label_counts([[1, 0], [0, 1]], 1).tolist() == [[1, 0], [0, 1]],
    ],
)
def test_boundary_values_accepted(call):
    assert call()


# ---------------------------------------------------------------------------
# dtypes: float64 / integer / boolean outputs also for int and Fraction input
# ---------------------------------------------------------------------------


def test_integer_outputs():
    counts = theory.counts_from_labels([0, 0, 1], [0, 1, 1], 2)
    assert np.issubdtype(counts.dtype, np.integer) and counts.tolist() == [[1, 1], [0, 1]]
    empty = np.zeros(0, dtype=int)
    assert np.issubdtype(theory.counts_from_labels(empty, empty, 2).dtype, np.integer)
    assert theory.counts_from_labels(empty, empty, 2).tolist() == [[0, 0], [0, 0]]  # no instances: no range check
    assert np.issubdtype(theory.exact_label_counts(C3, 8).dtype, np.integer)
    # whole numbers of any real type are read as int64 counts
    for counts in ([[3.0, 1.0], [0.0, 4.0]], [[Fraction(3), Fraction(1)], [Fraction(0), Fraction(4)]], np.array([[3, 1], [0, 4]], dtype=np.int8)):
        out = V.check_label_counts(counts, 4)
        assert out.dtype == np.int64 and out.tolist() == [[3, 1], [0, 4]]


def test_boolean_outputs():
    ok = theory.correct_types(*K3.values(), C3, 3)
    assert ok.dtype == bool
    rep = theory.pll_analysis(*K3.values(), C3)
    for arr in (rep.present, rep.teacher_correct, rep.teacher_contains_true, rep.student_correct):
        assert arr.dtype == bool and arr.shape == (3, 3)


def test_float64_outputs_for_int_and_fraction_input():
    """Inputs are read as float64: int and Fraction arrays give the same float64 results as floats."""
    Ci = V.check_corruption_matrix([[1, 0], [0, 1]])
    assert Ci.dtype == np.float64
    Cf = V.check_corruption_matrix([[Fraction(3, 4), Fraction(1, 4)], [Fraction(1, 4), Fraction(3, 4)]])
    assert Cf.dtype == np.float64 and Cf.tolist() == [[0.75, 0.25], [0.25, 0.75]]
    # label-averaging operator of a Gram matrix given exactly
    Gf = np.array([[2.0, 1.0], [1.0, 2.0]])
    for G in ([[2, 1], [1, 2]], [[Fraction(2), Fraction(1)], [Fraction(1), Fraction(2)]]):
        A = theory.label_averaging_operator(G, 2, 1e-3)
        assert A.dtype == np.float64
        assert np.array_equal(A, theory.label_averaging_operator(Gf, 2, 1e-3))
    # PLL-style targets given as Fractions (as theory.pll_targets returns them)
    T = theory.predictions.one_hot_type_targets(3) * 0.5 + 0.5 / 3
    Tq = [[[Fraction(1, 2) * int(j == l) + Fraction(1, 6) for j in range(3)] for l in range(3)] for _ in range(3)]
    out = theory.outputs_for_targets(*K3.values(), C3, Tq, 2)
    assert out.dtype == np.float64
    assert np.array_equal(out, theory.outputs_for_targets(*K3.values(), C3, T, 2))
    # fresh logits with the overall mean given exactly
    Cq = theory.symmetric(3, 0.3)
    o = Cq.mean(axis=0)
    oq = [Fraction(1, 3)] * 3
    L = theory.fresh_logits(*K3.values(), Cq, oq, 2)
    assert L.dtype == np.float64 and np.array_equal(L, theory.fresh_logits(*K3.values(), Cq, o, 2))
    for M in (theory.block_gram(2, 2, 0.5, 0.0), *theory.block_projectors(2, 2)):
        assert M.dtype == np.float64
    assert theory.block_projectors(2, 2)[1].tolist() == [[0.25, 0.25, -0.25, -0.25]] * 2 + [[-0.25, -0.25, 0.25, 0.25]] * 2


# ---------------------------------------------------------------------------
# documented defaults
# ---------------------------------------------------------------------------


def test_defaults():
    # superclass size 2: pairs (0, 1), (2, 3); threshold (m - 1)/m = 1/2
    pairs = np.array([[0.8, 0.2, 0, 0], [0.2, 0.8, 0, 0], [0, 0, 0.8, 0.2], [0, 0, 0.2, 0.8]])
    assert np.allclose(theory.superclass(4, 0.2), pairs, rtol=0, atol=1e-15)
    assert np.allclose(theory.corruption_matrix("superclass", 4, 0.2), pairs, rtol=0, atol=1e-15)
    assert theory.noise_threshold("superclass", 6) == 0.5
    # one fit: the closed form equals the brute-force operator A = (G + K N lam I)^-1 G
    # (entries O(1), condition number of G + K N lam I below 1e3: agreement to 1e-12)
    assert np.allclose(theory.spectral_operator(3, 2, 0.4, 0.1, 1e-2), _brute_operator(3, 2, 0.4, 0.1, 1e-2), rtol=0, atol=1e-12)
    # tie rule "share": a unique top gets 1/2, the two tied for second share the other 1/2
    assert theory.pll_targets([3, 1, 1]) == [Fraction(1, 2), Fraction(1, 4), Fraction(1, 4)]
    share = theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, C3)
    assert share.targets[0, 0].tolist() == [0.5, 0.25, 0.25]  # clean instance: wrong classes tie exactly
    # explicit groups of two classes are allowed
    g = theory.superclass(4, 0.2, groups=[[0, 2], [1, 3]])
    assert g[0].tolist() == pytest.approx([0.8, 0, 0.2, 0], abs=1e-15) and g[3].tolist() == pytest.approx([0, 0.2, 0, 0.8], abs=1e-15)


def test_explicit_noise_matrices():
    # cyclic asymmetric noise, K = 4: eta/K everywhere off the diagonal plus eta/K more to class k + 1
    assert np.allclose(
        theory.asymmetric(4, 0.4),
        [[0.6, 0.2, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.6, 0.2], [0.2, 0.1, 0.1, 0.6]],
        rtol=0,
        atol=1e-15,
    )
    # K is validated before the groups: K = 1 is refused by name also with explicit groups
    with pytest.raises(ValueError, match=r"^K == 1, must be >= 2$"):
        theory.superclass(1, 0.1, groups=[[0]])


def test_exact_label_counts_boundaries():
    """A product within 1e-9 of a whole number (inclusive) is that number; row sums must still be exactly n.

    C[0, 0] * 1 == 1e-9 exactly (the boundary) is accepted as 0. With n = 2e9 a row may sum to 1 - 5e-10
    (within the row-sum tolerance) while every C[k, j] * n is a whole number: its counts miss n by one.
    """
    assert theory.exact_label_counts([[1e-9, 1 - 1e-9], [0.0, 1.0]], 1).tolist() == [[0, 1], [0, 1]]
    n = 2_000_000_000
    with pytest.raises(ValueError, match=r"^row 0 of counts sums to 1999999999, must sum to n == 2000000000 \(instances per class\)$"):
        theory.exact_label_counts([[1e9 / n, (1e9 - 1) / n], [0.5, 0.5]], n)


def test_not_whole_message_names_the_first_bad_entry():
    """C[0, 0] * 1 == 1e-9 is (inclusively) whole; the first entry that is not is C[1, 0]."""
    with pytest.raises(ValueError, match=r"^C\[1, 0\] \* n == 0.3 is not a whole number of instances \(n == 1\)"):
        theory.exact_label_counts([[1e-9, 1 - 1e-9], [0.3, 0.7]], 1)


def test_psd_boundary_of_block_correlations():
    """K = 3, n = 4, c = 0.4: d_min = -0.275. The constant-direction eigenvalue -8 eps of d = d_min - eps is
    round-off while |.| <= 1e-12 K n = 1.2e-11 (eps = 6e-13: -4.8e-12, accepted) and a violation beyond
    (eps = 3e-12: -2.4e-11, rejected). Float error of the sum: a few ulps of 1, ~1e-15."""
    d_min = -(1 - 0.4 + 4 * 0.4) / (3 * 4 - 4)
    assert theory.filters(3, 4, 0.4, d_min - 6e-13, 1e-3)[2] == 0.0
    with pytest.raises(ValueError, match=r"^d == -0.275000000003, must be >= -0.275 for K == 3, n == 4, c == 0.4: "):
        theory.filters(3, 4, 0.4, d_min - 3e-12, 1e-3)


def test_empirical_corruption_normalises_each_row():
    assert theory.empirical_corruption([[3, 1], [1, 1]]).tolist() == [[0.75, 0.25], [0.5, 0.5]]


# ---------------------------------------------------------------------------
# tolerances of the Gram-matrix checks, at their boundaries
# ---------------------------------------------------------------------------


def test_psd_tolerance_boundary():
    """Smallest eigenvalue down to -1e-10 N max(1, max|G|) is round-off (accepted, inclusive); below, rejected.

    Diagonal matrices: eigvalsh returns the diagonal exactly, so the boundary is hit exactly.
    """
    N, top = 2, 4.0
    tol = 1e-10 * N * top
    theory.label_averaging_operator(np.diag([top, -tol]), 2, 1e-3)
    with pytest.raises(ValueError, match=r"^G has smallest eigenvalue -8.00001e-10, must be positive semidefinite \(a Gram matrix\)$"):
        theory.label_averaging_operator(np.diag([top, -tol * (1 + 1e-6)]), 2, 1e-3)
    # entries below 1: the scale is max(1, max|G|) = 1
    theory.label_averaging_operator(np.diag([0.5, -2e-10]), 2, 1e-3)
    with pytest.raises(ValueError, match=r"smallest eigenvalue -3e-10"):
        theory.label_averaging_operator(np.diag([0.5, -3e-10]), 2, 1e-3)


def test_symmetry_tolerance_boundary():
    """Asymmetry up to 1e-12 max(1, max|G|) (absolute, no relative part) is accepted; 1.5e-12 at scale 1 is not."""
    theory.label_averaging_operator(np.array([[1.0, 0.5 + 5e-13], [0.5, 1.0]]), 2, 1e-3)
    with pytest.raises(ValueError, match=r"^G is not symmetric"):
        theory.label_averaging_operator(np.array([[1.0, 0.5 + 1.5e-12], [0.5, 1.0]]), 2, 1e-3)


def test_fresh_logits_overall_tolerance():
    """``overall`` must equal the mean of class_mean's rows to 1e-12 (absolute): 1e-13 off is accepted, 1e-9 is not."""
    o = C3.mean(axis=0)
    theory.fresh_logits(*K3.values(), C3, o + 1e-13, 1)
    with pytest.raises(ValueError, match=r"^overall has shape \(3,\) or values not the mean of class_mean's rows, must be \(3,\) and equal to it$"):
        theory.fresh_logits(*K3.values(), C3, o + np.array([1e-9, 0, 0]), 1)


# ---------------------------------------------------------------------------
# exact searches and verdicts
# ---------------------------------------------------------------------------


def test_first_positive_fits_from_any_start():
    """Exact first positive s of a monotone margin, from starts below and above it; a zero margin is not positive."""
    half = Fraction(1, 2)
    # margin(s) = Delta - (Delta + 1)/2^s with Delta = 1/3: < 0 at s = 1, exactly 0 at s = 2, > 0 from s = 3
    coefs, bases = [-(Fraction(1, 3) + 1), Fraction(1, 3)], [half, Fraction(1)]
    for start in range(1, 9):
        assert conditions._first_positive_fits(coefs, bases, start) == 3
    # positive for every s >= 0: the first is s = 1 (never 0), from any start
    for start in (1, 2, 6):
        assert conditions._first_positive_fits([Fraction(1)], [half], start) == 1


def test_closed_form_minimum_round_uses_every_noisy_type():
    """The hardest noisy type (0, 1) (Delta = 0.1) lies above the diagonal of the first row; the closed form sees it."""
    C = np.array([[22, 18, 0], [9, 22, 9], [9, 0, 31]]) / 40
    assert theory.is_balanced(C) and theory.balanced_condition(C)
    closed = theory.min_rounds_balanced(3, 40, 0.4, 0.1, 1e-3, C)
    # the exact analysis over all rounds (an independent route); the other types have Delta >= 0.325
    assert closed == theory.min_rounds(3, 40, 0.4, 0.1, 1e-3, C)
    assert closed > theory.min_rounds_balanced(3, 40, 0.4, 0.1, 1e-3, np.array([[31, 0, 9], [0, 31, 9], [9, 9, 22]]) / 40)


def test_balanced_condition_ties_fail():
    tie = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]
    assert not theory.balanced_condition(tie)
    assert theory.balanced_condition([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0]])
    assert theory.is_balanced(tie)
    assert not theory.is_balanced([[0.6, 0.4, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    # fresh samples of the tied classes: logits of labels 0 and 1 are equal, exactly (sign 0), so they fail
    o = np.mean(tie, axis=0)
    for t in (0, 3):
        assert fresh_margin_sign(*K3.values(), tie, o, t + 1, 0, 1) == 0
        assert fresh_margin_sign(*K3.values(), tie, o, t + 1, 2, 0) == 1
        assert fresh_margin_sign(*K3.values(), tie, o, t + 1, 0, 2) == 1
        assert theory.population_accuracy(*K3.values(), tie, t) == pytest.approx(1 / 3, abs=1e-15)
    # labels mostly flipped between two classes: a fresh class-0 sample prefers label 1 (sign -1)
    flip = np.array([[0.3, 0.7], [0.7, 0.3]])
    assert fresh_margin_sign(2, 4, 0.4, 0.1, 1e-3, flip, flip.mean(axis=0), 1, 0, 1) == -1
    assert theory.population_accuracy(2, 4, 0.4, 0.1, 1e-3, flip, 0) == 0.0


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


def test_train_accuracy_keys_and_empty_groups():
    assert theory.train_accuracy(*K3.values(), np.eye(3), 0) == {"all": 1.0, "clean": 1.0, "noisy": None}
    off = np.roll(np.eye(3), 1, axis=1)  # every label wrong: no clean instances
    acc = theory.train_accuracy(*K3.values(), off, 0)
    assert set(acc) == {"all", "clean", "noisy"} and acc["clean"] is None and acc["all"] == acc["noisy"]


def test_perfect_rounds_can_end():
    """Unbalanced labels (column means 0.6, 0.4): every instance is correct in rounds 11..22 only.

    Brute force: explicit margins for K = 2, n = 5, 1 of class 0 and 2 of class 1 mislabelled.
    The smallest |margin| over rounds 0..60 is ~1.5e-4, far above the float error (~1e-15).
    """
    K, n, c, d, lam = 2, 5, 0.4, 0.1, 0.01
    z = np.array([0, 0, 0, 0, 1, 0, 0, 1, 1, 1])
    y = np.repeat(np.arange(K), n)
    A = _brute_operator(K, n, c, d, lam)
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


def test_outputs_for_general_targets_match_brute_force():
    """Targets that are not one-hot (rows of PLL-like mixtures): the class mean is taken over the given labels l.

    Explicit: every instance of type (k, l) starts from T[k, l]; outputs U + (T_i - U) A^s to 1e-12.
    """
    K, n, c, d, lam = 3, 4, 0.4, 0.1, 1e-2
    z = np.array([0, 0, 0, 1, 1, 1, 1, 2, 0, 2, 2, 2])
    y = np.repeat(np.arange(K), n)
    C = theory.counts_from_labels(y, z, K) / n
    rng = np.random.default_rng(5)
    T = rng.dirichlet(np.ones(K), size=(K, K))  # T[k, l] sums to 1 over its last axis
    Y = T[y, z].T  # (K, N) per-instance targets
    A = _brute_operator(K, n, c, d, lam)
    for fits in (0, 1, 3):
        P = 1.0 / K + (Y - 1.0 / K) @ np.linalg.matrix_power(A, fits)
        assert np.allclose(theory.outputs_for_targets(K, n, c, d, lam, C, T, fits)[y, z].T, P, rtol=0, atol=1e-12)


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
