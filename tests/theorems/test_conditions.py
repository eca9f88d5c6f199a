"""Contract of theory.conditions: documented defaults, the keys of its results and its exact search from any start."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import theory
from theory import conditions

K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)


def test_noise_threshold_default_superclass_size_is_two():
    """superclass_size defaults to 2 (pairs): threshold (m - 1)/m = 1/2, also for K = 6 (where triples would give 2/3)."""
    assert theory.noise_threshold("superclass", 6) == 0.5
    assert theory.noise_threshold("superclass", 6, 3) == pytest.approx(2 / 3, abs=1e-15)


ONE_CLASS = (1, 4, 0.4, 0.1, 1e-3)  # K = 1 with an otherwise valid block model


@pytest.mark.parametrize(
    "call",
    [
        lambda: theory.rounds_report(*ONE_CLASS, [[1.0]]),
        lambda: theory.min_rounds(*ONE_CLASS, [[1.0]]),
        lambda: theory.min_rounds_balanced(*ONE_CLASS, [[1.0]]),
        lambda: theory.correct_types(*ONE_CLASS, [[1.0]], 0),
        lambda: theory.all_correct(*ONE_CLASS, [[1.0]], 0),
        lambda: theory.train_accuracy(*ONE_CLASS, [[1.0]], 0),
        lambda: theory.population_accuracy(*ONE_CLASS, [[1.0]], 0),
        lambda: theory.noise_threshold("symmetric", 1),  # no superclass size to divide: K's own bound decides
        lambda: theory.noise_threshold("asymmetric", 1),
    ],
)
def test_one_class_is_rejected_as_K(call):
    """K = 1 with a matching 1 x 1 corruption matrix: the error reports K and its bound, not the matrix's shape."""
    with pytest.raises(ValueError, match=r"^K == 1, must be >= 2$"):
        call()


def test_superclass_larger_than_K_is_rejected():
    """A superclass larger than K cannot divide it: the size is reported with K."""
    for size in (5, 8):
        with pytest.raises(ValueError, match=rf"^superclass_size == {size}, must divide K == 4$"):
            theory.noise_threshold("superclass", 4, size)


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


def test_train_accuracy_keys_and_empty_groups():
    assert theory.train_accuracy(*K3.values(), np.eye(3), 0) == {"all": 1.0, "clean": 1.0, "noisy": None}
    off = np.roll(np.eye(3), 1, axis=1)  # every label wrong: no clean instances
    acc = theory.train_accuracy(*K3.values(), off, 0)
    assert set(acc) == {"all", "clean", "noisy"} and acc["clean"] is None and acc["all"] == acc["noisy"]
