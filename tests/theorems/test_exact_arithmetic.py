"""The exact sign machinery behind every "all instances correct" verdict (theory.rational)."""

from fractions import Fraction

import mpmath
from hypothesis import given
from hypothesis import strategies as st

from theory.rational import exp_sum_sign, intersect_intervals, positive_rounds, rational


def test_rational_reads_decimals():
    assert rational(0.1) == Fraction(1, 10)
    assert rational(1e-5) == Fraction(1, 100_000)
    assert rational(0.75) == Fraction(3, 4)
    # a float with no short fraction nearby keeps its exact binary value
    x = 0.1234567890123456
    assert float(rational(x)) == x


fracs = st.fractions(min_value=-3, max_value=3, max_denominator=50)
bases = st.fractions(min_value=Fraction(1, 50), max_value=Fraction(49, 50), max_denominator=60)


@given(st.lists(fracs, min_size=1, max_size=3), st.lists(bases, min_size=3, max_size=3))
def test_positive_rounds_matches_enumeration(coefs, bs):
    """Intervals of positive integers agree with direct exact evaluation at every s up to 400."""
    bs = bs[: len(coefs)]
    intervals = positive_rounds(coefs, bs)
    for s in range(1, 401):
        total = sum(c * b**s for c, b in zip(coefs, bs))
        inside = any(a <= s and (b is None or s <= b) for a, b in intervals)
        assert inside == (total > 0), s


def test_nearly_equal_bases():
    """1/2 - 3/2 (1 - 1e-30)^s turns positive at s = ceil(ln 3 / -ln(1 - 1e-30)) ~ 1.1e30, found exactly."""
    eps = Fraction(1, 10**30)
    intervals = positive_rounds([Fraction(1, 2), Fraction(-3, 2)], [Fraction(1), 1 - eps])
    with mpmath.workdps(100):
        root = mpmath.log(3) / -mpmath.log(1 - mpmath.mpf(1) / 10**30)
        first = int(mpmath.floor(root)) + 1
    assert intervals == [(first, None)]
    assert exp_sum_sign([Fraction(1, 2), Fraction(-3, 2)], [Fraction(1), 1 - eps], intervals[0][0], digits=120) == 1
    assert exp_sum_sign([Fraction(1, 2), Fraction(-3, 2)], [Fraction(1), 1 - eps], intervals[0][0] - 1, digits=120) == -1


def test_exact_tie_is_not_positive():
    """(3/4)^1 * 1/2 - (1/4)^1 * 3/2 == 0 exactly: s = 1 is excluded."""
    assert positive_rounds([Fraction(-3, 2), Fraction(1, 2)], [Fraction(1, 4), Fraction(3, 4)]) == [(2, None)]


def test_intersect_intervals():
    a = [(1, 3), (6, None)]
    b = [(2, 7), (9, 12)]
    assert intersect_intervals(a, b) == [(2, 3), (6, 7), (9, 12)]
    assert intersect_intervals(a, []) == []
    assert intersect_intervals([(1, None)], [(4, None)]) == [(4, None)]


def test_nearly_equal_bases_away_from_one():
    """Bases 1/2 and (1 - 1e-80)/2: the working precision must follow their relative gap (80 digits) plus the
    root's size (~1e80, 81 more digits), not their distance from 1."""
    eps = Fraction(1, 10**80)
    half = Fraction(1, 2)
    intervals = positive_rounds([Fraction(1, 2), Fraction(-3, 2)], [half, half * (1 - eps)])
    with mpmath.workdps(250):
        root = mpmath.log(3) / -mpmath.log(1 - mpmath.mpf(1) / 10**80)
        first = int(mpmath.floor(root)) + 1
    assert intervals == [(first, None)]


def test_positive_rounds_input():
    import pytest

    with pytest.raises(ValueError, match=r"^positive_rounds handles at most 3 exponential terms, got 4$"):
        positive_rounds([Fraction(1)] * 4, [Fraction(1, k) for k in (2, 3, 4, 5)])
    assert positive_rounds([Fraction(0)], [Fraction(1, 2)]) == []
    assert positive_rounds([Fraction(1), Fraction(-1)], [Fraction(1, 2), Fraction(1, 2)]) == []  # identically zero
    assert positive_rounds([Fraction(-1)], [Fraction(1, 2)]) == []
    assert positive_rounds([Fraction(2)], [Fraction(1, 2)]) == [(1, None)]


def test_exact_tie_beyond_the_exact_power_limit():
    """An exact zero at s = 400 (> EXACT_POWER_LIMIT, evaluated in mpmath) is a tie: sign 0, not +1."""
    half = Fraction(1, 2)
    assert exp_sum_sign([Fraction(1), Fraction(-1)], [half, half], 400) == 0
    assert exp_sum_sign([Fraction(1), Fraction(-1)], [half, Fraction(1, 3)], 400) == 1
