"""Bad input gets a ValueError that names the parameter, its value and the allowed range."""

import numpy as np
import pytest

import theory

GOOD = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)
C_GOOD = theory.symmetric(3, 0.25)


def call(fn, **override):
    args = {**GOOD, **override}
    return fn(args["K"], args["n"], args["c"], args["d"], args["lam"])


@pytest.mark.parametrize(
    "override,pattern",
    [
        ({"lam": 0.0}, r"lam == 0.0, must be > 0"),
        ({"lam": -1.0}, r"lam == -1.0, must be > 0"),
        ({"lam": float("nan")}, r"lam == nan, must be finite"),
        ({"K": 1}, r"K == 1, must be >= 2"),
        ({"K": 2.5}, r"K == 2.5, must be an integer"),
        ({"n": 0}, r"n == 0, must be >= 1"),
        ({"c": 1.0}, r"c == 1.0, must be < 1"),
        ({"d": 0.4}, r"d == 0.4, must be < c == 0.4"),
        ({"d": -0.9}, r"d == -0.9, must be >= .*not positive semidefinite"),
    ],
)
@pytest.mark.parametrize("fn", [theory.filters, theory.filters_exact])
def test_block_parameters(fn, override, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(fn, **override)


@pytest.mark.parametrize(
    "fn",
    [
        lambda K, n, c, d, lam: theory.block_eigenvalues(K, n, c, d),
        lambda K, n, c, d, lam: theory.block_gram(K, n, c, d),
    ],
)
def test_gram_not_psd_rejected(fn):
    with pytest.raises(ValueError, match=r"not positive semidefinite"):
        call(fn, d=-0.9)


@pytest.mark.parametrize(
    "C,pattern",
    [
        ([[0.5, 0.6, -0.1], [0, 1, 0], [0, 0, 1]], r"C\[0, 2\] == -0.1, must be >= 0"),
        ([[0.5, 0.4, 0.0], [0, 1, 0], [0, 0, 1]], r"row 0 of C sums to 0.9, must sum to 1"),
        ([[1.0, 0.0], [0.0, 1.0]], r"C has shape \(2, 2\), must be \(3, 3\)"),
        ([[1.0, 0.0, 0.0]], r"must be a square K x K matrix"),
    ],
)
@pytest.mark.parametrize(
    "fn",
    [
        lambda C: theory.min_rounds(3, 4, 0.4, 0.1, 1e-3, C),
        lambda C: theory.type_outputs(3, 4, 0.4, 0.1, 1e-3, C, 0),
        lambda C: theory.population_accuracy(3, 4, 0.4, 0.1, 1e-3, C, 0),
        lambda C: theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, C),
        lambda C: theory.train_accuracy(3, 4, 0.4, 0.1, 1e-3, C, 0),
    ],
)
def test_corruption_matrix_rejected(fn, C, pattern):
    with pytest.raises(ValueError, match=pattern):
        fn(np.array(C, dtype=float))


@pytest.mark.parametrize(
    "fn",
    [
        lambda t: theory.type_outputs(3, 4, 0.4, 0.1, 1e-3, C_GOOD, t),
        lambda t: theory.all_correct(3, 4, 0.4, 0.1, 1e-3, C_GOOD, t),
        lambda t: theory.population_accuracy(3, 4, 0.4, 0.1, 1e-3, C_GOOD, t),
        lambda t: theory.clustering_ratio(3, 4, 0.4, 0.1, 1e-3, t),
    ],
)
def test_negative_rounds(fn):
    with pytest.raises(ValueError, match=r"t == -1, must be >= 0"):
        fn(-1)


def test_noise_models():
    with pytest.raises(ValueError, match=r"eta == 1.5, must be in \[0, 1\]"):
        theory.symmetric(4, 1.5)
    with pytest.raises(ValueError, match=r"eta == -0.1, must be in \[0, 1\]"):
        theory.asymmetric(4, -0.1)
    with pytest.raises(ValueError, match=r"superclass_size == 3, must divide K == 4"):
        theory.superclass(4, 0.2, 3)
    with pytest.raises(ValueError, match=r"noise == 'pairflip', must be one of symmetric, asymmetric, superclass"):
        theory.corruption_matrix("pairflip", 4, 0.2)
    with pytest.raises(ValueError, match=r"noise == 'pairflip'"):
        theory.noise_threshold("pairflip", 4)
    with pytest.raises(ValueError, match=r"C\[0, 0\] \* n == 2.1 is not a whole number"):
        theory.exact_label_counts(theory.symmetric(4, 0.3), 3)
    with pytest.raises(ValueError, match=r"ties == 'random', must be one of share, lowest"):
        theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, C_GOOD, ties="random")


def test_operator_input():
    with pytest.raises(ValueError, match=r"G has shape \(2, 3\), must be square"):
        theory.label_averaging_operator(np.zeros((2, 3)), 2, 1e-3)
    with pytest.raises(ValueError, match=r"G is not symmetric"):
        theory.label_averaging_operator(np.array([[1.0, 0.5], [0.0, 1.0]]), 2, 1e-3)
    with pytest.raises(ValueError, match=r"lam == 0.0, must be > 0"):
        theory.label_averaging_operator(np.eye(2), 2, 0.0)


def test_instance_labels():
    with pytest.raises(ValueError, match=r"given_labels has shape \(5,\), must be \(12,\)"):
        theory.instance_outputs(3, 4, 0.4, 0.1, 1e-3, np.zeros(5, dtype=int), 0)
    with pytest.raises(ValueError, match=r"given_labels has values in \[0, 3\], must be in \[0, 2\]"):
        theory.instance_outputs(3, 4, 0.4, 0.1, 1e-3, np.r_[np.zeros(11, dtype=int), 3], 0)


def test_balanced_closed_form_refuses_unbalanced():
    C = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match=r"unbalanced"):
        theory.min_rounds_balanced(3, 4, 0.4, 0.1, 1e-3, C)


def test_operator_symmetry_tolerance_scales_with_entries():
    """Asymmetry up to 1e-12 times the largest entry is round-off: accepted for a Gram matrix with entries ~1e4."""
    X = np.arange(6.0).reshape(3, 2) * 40.0
    G = X @ X.T
    G[0, 1] += 1e-9  # 1e-13 relative to ||G|| ~ 1e4
    A = theory.label_averaging_operator(G, 2, 1e-3)
    assert A.shape == (3, 3)


def test_operator_rejects_non_psd():
    with pytest.raises(ValueError, match=r"G has smallest eigenvalue -1, must be positive semidefinite"):
        theory.label_averaging_operator(np.array([[1.0, 2.0], [2.0, 1.0]]), 2, 1e-3)


def test_threshold_shares():
    with pytest.raises(ValueError, match=r"Ckk == 1.5, must be in \[0, 1\]"):
        theory.noisy_threshold_fits(3, 4, 0.4, 0.1, 1e-3, 1.5, -0.5)
    with pytest.raises(ValueError, match=r"must be > 0 for the noisy instance to be correctable"):
        theory.noisy_threshold_fits(3, 4, 0.4, 0.1, 1e-3, 0.3, 0.4)


def test_fresh_logits_input():
    C = theory.symmetric(3, 0.25)
    with pytest.raises(ValueError, match=r"fits == 0, must be >= 1"):
        theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C, C.mean(axis=0), 0)
    with pytest.raises(ValueError, match=r"class_mean\[0, 1\] == -0.125, must be >= 0"):
        theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, -C + 2 * np.eye(3) * 0.75, C.mean(axis=0), 1)


def test_pll_targets_input():
    with pytest.raises(ValueError, match=r"scores has 1 entries, must have K >= 2"):
        theory.pll_targets([1.0])
    with pytest.raises(ValueError, match=r"must be finite"):
        theory.pll_targets([float("nan"), 0.2, 0.3])


@pytest.mark.parametrize(
    "call,pattern",
    [
        (lambda: theory.spectral_operator(3, 4, 0.4, 0.1, 1e-3, -1), r"^fits == -1, must be >= 0$"),
        (lambda: theory.spectral_operator(3, 4, 0.4, 0.1, 1e-3, 1.5), r"^fits == 1.5, must be an integer$"),
        (lambda: theory.outputs_for_targets(3, 4, 0.4, 0.1, 1e-3, C_GOOD, np.zeros((3, 3, 3)), -1), r"^fits == -1, must be >= 0$"),
        (lambda: theory.outputs_for_targets(3, 4, 0.4, 0.1, 1e-3, C_GOOD, np.zeros((3, 3)), 1), r"^targets has shape \(3, 3\), must be \(3, 3, 3\)$"),
        (lambda: theory.outputs_for_targets(1, 4, 0.4, 0.1, 1e-3, C_GOOD, np.zeros((3, 3, 3)), 1), r"^K == 1, must be >= 2$"),
        (lambda: theory.block_projectors(1, 4), r"^K == 1, must be >= 2$"),
        (lambda: theory.block_projectors(2, 0), r"^n == 0, must be >= 1$"),
        (lambda: theory.label_averaging_operator(np.eye(2), 1, 1e-3), r"^K == 1, must be >= 2$"),
        (lambda: theory.noise_threshold("superclass", 4, 3), r"^superclass_size == 3, must divide K == 4$"),
        (lambda: theory.noise_threshold("superclass", 4, 5), r"^superclass_size == 5, must be <= 4$"),
        (lambda: theory.noise_threshold("symmetric", 1), r"^K == 1, must be >= 2$"),
        (lambda: theory.superclass(4, 0.2, groups=[[0, 1], [2]]), r"must partition range\(4\)"),
        (lambda: theory.superclass(3, 0.2, groups=[[0, 1], [2]]), r"every group must hold at least 2 classes"),
        (lambda: theory.superclass_groups(4, 1), r"^superclass_size == 1, must be >= 2$"),
        (lambda: theory.counts_from_labels([0, 1], [0], 2), r"must be 1-d of equal length"),
        (lambda: theory.counts_from_labels([0, 2], [0, 1], 2), r"^true_labels has values in \[0, 2\], must be in \[0, 1\]$"),
        (lambda: theory.counts_from_labels([0, 1], [0, -1], 2), r"^given_labels has values in \[-1, 0\], must be in \[0, 1\]$"),
        (lambda: theory.empirical_corruption([[1, 0], [0, 0]]), r"has a class with no instances"),
        (lambda: theory.empirical_corruption([[1.5, 0], [0, 1]]), r"must hold whole numbers of instances"),
        (lambda: theory.empirical_corruption([[1, -1], [0, 1]]), r"^counts\[0, 1\] == -1, must be >= 0$"),
        (lambda: theory.empirical_corruption([[1, 0, 0]]), r"must be a square K x K matrix with K >= 2"),
        (lambda: theory.exact_label_counts(theory.symmetric(2, 0.5), 0), r"^n == 0, must be >= 1$"),
        (lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C_GOOD, np.ones(3) / 2, 1), r"overall has shape \(3,\) or values not the mean"),
        (lambda: theory.fresh_logits(3, 4, 0.4, 0.1, 1e-3, C_GOOD, np.ones(2) / 2, 1), r"overall has shape \(2,\)"),
        (lambda: theory.symmetric(True, 0.1), r"^K == True, must be an integer$"),
        (lambda: theory.filters(3, 4, "0.4", 0.1, 1e-3), r"^c == '0.4', must be a real number$"),
        (lambda: theory.filters(3, 4, 0.4, float("inf"), 1e-3), r"^d == inf, must be finite$"),
        (lambda: theory.min_rounds(3, 4, 0.4, 0.1, 1e-3, [[np.nan, 0, 1], [0, 1, 0], [0, 0, 1]]), r"^C has non-finite entries, must be finite$"),
        (lambda: theory.min_rounds(3, 4, 0.4, 0.1, 1e-3, "abc"), r"^C == 'abc', must be a square array of real numbers$"),
        (lambda: theory.min_rounds(1, 4, 0.4, 0.1, 1e-3, [[1.0]]), r"^K == 1, must be >= 2$"),
        (lambda: theory.min_rounds(2, 4, 0.4, 0.1, 1e-3, [[1.0]]), r"^C has shape \(1, 1\), must be \(2, 2\) for K == 2$"),
        (lambda: theory.is_balanced([[1.0]]), r"^C has shape \(1, 1\), must have K >= 2 classes$"),
        (lambda: theory.pll_targets([0.1, 0.2], ties="x"), r"^ties == 'x', must be one of share, lowest$"),
        (lambda: theory.predictions.margin_terms(1, 4, 0.4, 0.1, 1e-3, [[1.0]]), r"^K == 1, must be >= 2$"),
        (lambda: theory.asymmetric(1, 0.1), r"^K == 1, must be >= 2$"),
        (lambda: theory.superclass_groups(1, 2), r"^K == 1, must be >= 2$"),
        (lambda: theory.empirical_corruption([[0, 1], [-1, 2]]), r"^counts\[1, 0\] == -1, must be >= 0$"),
        (lambda: theory.superclass(1, 0.1), r"^K == 1, must be >= 2$"),
        (lambda: theory.superclass(4, 1.1), r"^eta == 1.1, must be in \[0, 1\]$"),
        (lambda: theory.counts_from_labels([0], [0], 1), r"^K == 1, must be >= 2$"),
        (lambda: theory.exact_label_counts([[1.0]], 2), r"^C has shape \(1, 1\), must have K >= 2 classes$"),
        (lambda: theory.predictions.fresh_margin_sign(3, 4, 0.4, 0.1, 0.0, C_GOOD, C_GOOD.mean(axis=0), 1, 0, 1), r"^lam == 0.0, must be > 0$"),
    ]
    + [
        (lambda fn=fn: fn(1, 4, 0.4, 0.1, 1e-3, [[1.0]]), r"^K == 1, must be >= 2$")
        for fn in (
            theory.rounds_report,
            theory.min_rounds_balanced,
            theory.pll_analysis,
            lambda K, n, c, d, lam, C: theory.population_accuracy(K, n, c, d, lam, C, 0),
            lambda K, n, c, d, lam, C: theory.train_accuracy(K, n, c, d, lam, C, 0),
            lambda K, n, c, d, lam, C: theory.all_correct(K, n, c, d, lam, C, 0),
            lambda K, n, c, d, lam, C: theory.correct_types(K, n, c, d, lam, C, 0),
            lambda K, n, c, d, lam, C: theory.type_outputs(K, n, c, d, lam, C, 0),
            lambda K, n, c, d, lam, C: theory.instance_outputs(K, n, c, d, lam, [0], 0),
        )
    ],
)
def test_messages_name_parameter_value_and_range(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_gram_just_below_psd_limit_rejected():
    """K=3, n=2, c=0.4: d_min = -0.35; d = -0.36 gives the constant eigenvalue -0.04 < 0."""
    with pytest.raises(ValueError, match=r"^d == -0.36, must be >= -0.35 .*constant-direction eigenvalue -0.04 < 0\)$"):
        theory.filters(3, 2, 0.4, -0.36, 1e-3)


def test_integral_floats_and_bounds_accepted():
    """Whole-number floats count as integers; bounds are inclusive; the PSD boundary d = d_min is accepted."""
    assert theory.symmetric(2.0, 0.1).shape == (2, 2)
    assert theory.spectral_operator(2, 1, 0.4, 0.1, 1e-3, 0).shape == (2, 2)
    K, n, c = 3, 2, 0.4
    d_min = -(1 - c + n * c) / (K * n - n)
    # at the PSD boundary the constant eigenvalue is 0 up to round-off of its sum (a few ulps), never negative
    assert 0.0 <= theory.block_eigenvalues(K, n, c, d_min)[2] <= 1e-15
    assert theory.noise_threshold("superclass", 4, 4) == 0.75
    assert theory.exact_label_counts(theory.symmetric(4, 0.3), 10).tolist() == [[7, 1, 1, 1], [1, 7, 1, 1], [1, 1, 7, 1], [1, 1, 1, 7]]
    # whole-number float counts are accepted
    assert theory.empirical_corruption([[3.0, 1.0], [0.0, 4.0]]).tolist() == [[0.75, 0.25], [0.0, 1.0]]
    C = [[1.0, 0.0], [1e-10, 1.0 - 1e-10]]  # a row sum off by < 1e-9 is accepted
    assert theory.is_balanced(np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert not theory.is_balanced(np.array(C))


def test_metrics_input_and_conventions():
    from sims.engine import measures as metrics

    with pytest.raises(ValueError, match=r"^outputs have shape \(3,\), must be \(K, M\) with K >= 2$"):
        metrics.accuracy(np.zeros(3), [0])
    with pytest.raises(ValueError, match=r"^labels have shape \(1,\), must be \(2,\) to match outputs \(2, 2\)$"):
        metrics.accuracy(np.zeros((2, 2)), [0])
    with pytest.raises(ValueError, match=r"^labels have values in \[0, 2\], must be in \[0, 1\]$"):
        metrics.accuracy(np.zeros((2, 2)), [0, 2])
    with pytest.raises(ValueError, match=r"^fresh logits have shape \(2, 3\), must be \(K, K\)$"):
        metrics.fresh_accuracy_from_class_logits(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^ties == 'x', must be one of share, lowest$"):
        metrics.pll_targets(np.zeros((2, 2)), ties="x")
    P = np.array([[0.6, 0.5, 0.5 + 5e-10, 0.2], [0.4, 0.5, 0.5, 0.8]])
    y = np.array([0, 0, 0, 1])
    assert metrics.margins(P, y).tolist() == pytest.approx([0.2, 0.0, 5e-10, 0.6], abs=1e-15)
    assert metrics.correct(P, y).tolist() == [True, False, False, True]  # ties within TIE_TOL = 1e-9 fail
    assert metrics.accuracy(P, y) == 0.5
    assert metrics.accuracy(np.zeros((2, 0)), np.zeros(0, dtype=int)) is None
    assert metrics.split_accuracy(P, y, [0, 1, 0, 1]) == {"all": 0.5, "clean": 2 / 3, "noisy": 0.0}
    assert metrics.split_accuracy(P, y, y) == {"all": 0.5, "clean": 0.5, "noisy": None}
    # integer outputs are read as float64 (the true class's entry is replaced by -inf internally)
    assert metrics.accuracy(np.array([[3, 0], [1, 2]]), [0, 1]) == 1.0
    assert metrics.margins(np.array([[3, 0], [1, 2]]), [0, 1]).tolist() == [2.0, 2.0]
    # labels given as whole floats are read as integers
    assert metrics.accuracy(np.array([[3.0, 0.0], [1.0, 2.0]]), np.array([0.0, 1.0])) == 1.0
    # several columns at once: each column's ties are its own (first-place ties of 2 and 3 classes, a unique first)
    P = np.array([[1.0, 2.0, 5.0], [1.0, 2.0, 1.0], [0.0, 2.0, 1.0]])
    T = metrics.pll_targets(P, "share")
    for i in range(3):
        assert T[:, i].tolist() == [float(v) for v in theory.pll_targets(P[:, i].tolist(), "share")]
    L = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 0.0, 3.0]])
    assert metrics.fresh_accuracy_from_class_logits(L) == pytest.approx(2 / 3)
