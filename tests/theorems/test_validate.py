"""Contract of theory.validate: what inputs are read as (float64, int64) and where the PSD limit of the block model lies."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import theory
from theory import validate as V

from .strategies import raises_naming

K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)


C3 = theory.symmetric(3, 0.25)


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
    out = theory.outputs_for_targets(*K3.values(), C3, Tq, 1)
    assert out.dtype == np.float64
    assert np.array_equal(out, theory.outputs_for_targets(*K3.values(), C3, T, 1))
    # fresh logits with the overall mean given exactly
    Cq = theory.symmetric(3, 0.3)
    o = Cq.mean(axis=0)
    oq = [Fraction(1, 3)] * 3
    L = theory.fresh_logits(*K3.values(), Cq, oq, 1)
    assert L.dtype == np.float64 and np.array_equal(L, theory.fresh_logits(*K3.values(), Cq, o, 1))
    for M in (theory.block_gram(2, 2, 0.5, 0.0), *theory.block_projectors(2, 2)):
        assert M.dtype == np.float64
    assert theory.block_projectors(2, 2)[1].tolist() == [[0.25, 0.25, -0.25, -0.25]] * 2 + [[-0.25, -0.25, 0.25, 0.25]] * 2


def test_psd_boundary_of_block_correlations():
    """K = 3, n = 4, c = 0.4: d_min = -0.275. The constant-direction eigenvalue -8 eps of d = d_min - eps is
    round-off while |.| <= 1e-12 K n = 1.2e-11 (eps = 6e-13: -4.8e-12, accepted) and a violation beyond
    (eps = 3e-12: -2.4e-11, rejected). Float error of the sum: a few ulps of 1, ~1e-15."""
    d_min = -(1 - 0.4 + 4 * 0.4) / (3 * 4 - 4)
    assert theory.filters(3, 4, 0.4, d_min - 6e-13, 1e-3)[2] == 0.0
    with raises_naming("d", "-0.275000000003", ">= -0.275"):
        theory.filters(3, 4, 0.4, d_min - 3e-12, 1e-3)


def test_gram_just_below_psd_limit_rejected():
    """K=3, n=2, c=0.4: d_min = -0.35; d = -0.36 gives the constant eigenvalue -0.04 < 0."""
    with raises_naming("d", "-0.36", "-0.35", "-0.04"):
        theory.filters(3, 2, 0.4, -0.36, 1e-3)


def test_negative_count_is_the_one_shown_after_zeros():
    """The message points at the first negative entry, not at a zero before it."""
    from theory.validate import check_label_counts

    with pytest.raises(ValueError, match=r"^counts\[0, 1\] == -2, must be >= 0$"):
        check_label_counts([[0, -2], [3, 0]], None)


def test_label_errors_show_the_required_size_and_the_class_range():
    """A wrong number of labels shows the shape received and the size required; a label out of range shows the
    label and the last class index K - 1 of the range (for K = 5: 4, not 3)."""
    with raises_naming("z", "(2,)", "(3,)"):
        V.check_labels("z", [0, 1], 5, size=3)
    with raises_naming("z", "(1, 3)", "(N,)"):
        V.check_labels("z", [[0, 1, 2]], 5)
    with raises_naming("z", "7", "[0, 4]"):
        V.check_labels("z", [0, 7, 1], 5)
    assert V.check_labels("z", [4.0, 0], 5, size=2).tolist() == [4, 0]  # K - 1 itself is a class


def test_negative_share_is_the_one_shown_after_zeros():
    """check_corruption_matrix points at the first negative entry, not at a zero before it."""
    with raises_naming("C", "C[0, 2]", "-0.25"):
        V.check_corruption_matrix([[0.0, 1.25, -0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], name="C")
