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
