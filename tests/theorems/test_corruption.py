"""Contract of theory.corruption: the noise matrices written out, defaults, integer counts and their whole-number rule."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import theory
from theory import validate as V

from .strategies import raises_naming

C3 = theory.symmetric(3, 0.25)


def test_superclass_defaults_and_explicit_groups():
    """superclass size defaults to 2: pairs (0, 1), (2, 3), in superclass and in corruption_matrix; explicit groups
    of two classes are allowed (any partition)."""
    pairs = np.array([[0.8, 0.2, 0, 0], [0.2, 0.8, 0, 0], [0, 0, 0.8, 0.2], [0, 0, 0.2, 0.8]])
    assert np.allclose(theory.superclass(4, 0.2), pairs, rtol=0, atol=1e-15)
    assert np.allclose(theory.corruption_matrix("superclass", 4, 0.2), pairs, rtol=0, atol=1e-15)
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
    with raises_naming("K", "1"):
        theory.superclass(1, 0.1, groups=[[0]])


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


def test_exact_label_counts_boundaries():
    """A product within 1e-9 of a whole number (inclusive) is that number; row sums must still be exactly n.

    C[0, 0] * 1 == 1e-9 exactly (the boundary) is accepted as 0. With n = 2e9 a row may sum to 1 - 5e-10
    (within the row-sum tolerance) while every C[k, j] * n is a whole number: its counts miss n by one.
    """
    assert theory.exact_label_counts([[1e-9, 1 - 1e-9], [0.0, 1.0]], 1).tolist() == [[0, 1], [0, 1]]
    n = 2_000_000_000
    with raises_naming("counts", "row 0", "1999999999", "2000000000"):
        theory.exact_label_counts([[1e9 / n, (1e9 - 1) / n], [0.5, 0.5]], n)


def test_not_whole_message_names_the_first_bad_entry():
    """C[0, 0] * 1 == 1e-9 is (inclusively) whole; the first entry that is not is C[1, 0]."""
    with raises_naming("C", "C[1, 0]", "0.3"):
        theory.exact_label_counts([[1e-9, 1 - 1e-9], [0.3, 0.7]], 1)


def test_empirical_corruption_normalises_each_row():
    assert theory.empirical_corruption([[3, 1], [1, 1]]).tolist() == [[0.75, 0.25], [0.5, 0.5]]
