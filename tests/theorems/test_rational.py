"""Contract of theory.rational: the exact sign machinery behind every "all instances correct" verdict."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import mpmath
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory.rational import (
    EXACT_POWER_LIMIT,
    exp_sum_sign,
    intersect_intervals,
    merge_terms,
    positive_rounds,
    rational,
    rational_matrix,
)

from .strategies import raises_naming


def test_rational_reads_decimals():
    assert rational(0.1) == Fraction(1, 10)
    assert rational(1e-5) == Fraction(1, 100_000)
    assert rational(0.75) == Fraction(3, 4)
    # a float with no short fraction nearby keeps its exact binary value
    x = 0.1234567890123456
    assert float(rational(x)) == x


def test_rational_snaps_within_relative_tolerance_only():
    # 1000 + 1.1e-13 is 1.1e-16 relative from 1000 (< 1e-15): read as 1000
    assert rational(1000.0000000000001) == 1000
    # 1 + 2^-40 is 9e-13 relative from the nearest short fraction (1): kept exactly
    assert rational(1 + 2**-40) == Fraction(1 + 2**-40) != 1
    assert rational(-0.1) == Fraction(-1, 10) and rational(0.0) == 0
    assert rational(np.float32(0.25)) == Fraction(1, 4) and rational(True) == 1
    assert rational(7) == 7 and isinstance(rational(7), Fraction)
    q = Fraction(1, 3)
    assert rational(q) is q
    assert rational_matrix([[0.5, 0.1], [2, Fraction(1, 7)]]) == [[Fraction(1, 2), Fraction(1, 10)], [2, Fraction(1, 7)]]


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
    """At most three exponential terms (the stated limit and the count given appear in the refusal); zero and
    single-sign sums have no or every positive round."""
    with raises_naming("terms", "at most 3", "4"):
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


def test_positive_rounds_max_horizon():
    """1/2 - 3/2 (9/10)^s > 0 from s = 11 on (0.9^11 = 0.31 < 1/3 < 0.9^10): fine without a limit and with a
    generous one; a limit of 5 rounds is refused with a message naming it."""
    coefs, bases = [Fraction(1, 2), Fraction(-3, 2)], [Fraction(1), Fraction(9, 10)]
    assert positive_rounds(coefs, bases) == positive_rounds(coefs, bases, max_horizon=100) == [(11, None)]
    with raises_naming("max_horizon", "5") as info:
        positive_rounds(coefs, bases, max_horizon=5)
    stated = re.search(r"(\d+) rounds", str(info.value))  # the message states where the pattern settles
    assert stated is not None
    horizon = int(stated.group(1))
    assert horizon >= 11  # the stated horizon is past the last sign change
    # a limit equal to the stated horizon is accepted (the error is for patterns settling beyond the limit)
    assert positive_rounds(coefs, bases, max_horizon=horizon) == [(11, None)]


_F = Fraction


POSITIVE_ROUNDS_CASES = [
    # (coefficients, bases, positive rounds): two sign changes around a critical point, one, none
    ([_F(1), _F(-40), _F(60)], [_F(99, 100), _F(9, 10), _F(8, 10)], [(1, 3), (39, None)]),
    ([_F(-1), _F(40), _F(-60)], [_F(99, 100), _F(9, 10), _F(8, 10)], [(4, 38)]),
    ([_F(1), _F(-5), _F(5)], [_F(19, 20), _F(9, 10), _F(17, 20)], [(1, 5), (25, None)]),
    ([_F(1), _F(-10), _F(12)], [_F(1, 2), _F(1, 3), _F(1, 4)], [(1, 1), (5, None)]),
    ([_F(1, 1000), _F(-1), _F(1)], [_F(1), _F(1, 2), _F(1, 3)], [(10, None)]),
    ([_F(-1), _F(2)], [_F(1, 2), _F(1, 3)], [(1, 1)]),
    ([_F(1), _F(-2)], [_F(999, 1000), _F(1, 2)], [(2, None)]),
]


@pytest.mark.parametrize("coefs, bases, expected", POSITIVE_ROUNDS_CASES)
def test_positive_rounds_sign_patterns(coefs, bases, expected):
    """The sign patterns (read off a direct exact evaluation below, up to s = 150, beyond every sign change)."""
    assert positive_rounds(coefs, bases) == expected
    powers = list(bases)
    for s in range(1, 151):
        total = sum(c * p for c, p in zip(coefs, powers))
        inside = any(a <= s and (b is None or s <= b) for a, b in expected)
        assert inside == (total > 0), s
        powers = [p * b for p, b in zip(powers, bases)]


def test_positive_rounds_settles_a_near_tie_beyond_the_exact_power_limit():
    # h(s) = -1 + (1 + 1e-20) (999/1000)^(s - 350): positive up to s = 350, where it is only 1e-20 (relative)
    # above 0. s = 350 > EXACT_POWER_LIMIT, so its sign comes from mpmath; the working digits must resolve
    # 1e-20 there (fewer digits would report a tie and end the interval at 349). Checked against exact sums.
    base = Fraction(999, 1000)
    coefs = [Fraction(-1), Fraction(10**20 + 1, 10**20) / base**350]
    bases = [Fraction(1), base]
    exact = {s: sum(cf * b**s for cf, b in zip(coefs, bases)) for s in (349, 350, 351)}
    assert exact[349] > 0 and exact[350] > 0 > exact[351]
    assert positive_rounds(coefs, bases) == [(1, 350)]


@pytest.mark.parametrize("s", [1, 7, EXACT_POWER_LIMIT, EXACT_POWER_LIMIT + 1, 400])
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_exp_sum_sign_near_ties_are_exact(s, delta):
    """c1 b1^s + c2 b2^s == delta 1e-30 c1 b1^s exactly (c2 chosen so): far below float64 resolution, above the
    80-digit mpmath threshold beyond EXACT_POWER_LIMIT; the sign is delta's (0 for the exact tie)."""
    b1, b2 = Fraction(3, 4), Fraction(2, 3)
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - delta * Fraction(1, 10**30))
    assert exp_sum_sign([c1, c2], [b1, b2], s) == delta
    assert exp_sum_sign([c2, c1], [b2, b1], s) == delta  # order of the terms is irrelevant
    assert exp_sum_sign([-c1, -c2], [b1, b2], s) == -delta
    # with zero terms (and a zero base) mixed in
    assert exp_sum_sign([c1, Fraction(0), c2, Fraction(3)], [b1, Fraction(9, 10), b2, Fraction(0)], s) == delta


@pytest.mark.parametrize("s, rel, expected", [
    (EXACT_POWER_LIMIT, Fraction(4, 10**100), 1),  # exact up to EXACT_POWER_LIMIT: any difference counts
    (EXACT_POWER_LIMIT + 1, Fraction(4, 10**100), 0),  # beyond: below 10^-70 of the scale is a tie
    (EXACT_POWER_LIMIT + 1, Fraction(4, 10**70), 1),  # total / scale = 2e-70 > 1e-70
    (EXACT_POWER_LIMIT + 1, Fraction(1, 10**70), 0),  # total / scale = 5e-71 < 1e-70
])
def test_exp_sum_sign_tie_threshold(s, rel, expected):
    """c1 b1^s + c2 b2^s == rel c1 b1^s exactly, terms' scale ~ 2 c1 b1^s; default digits 80: threshold 10^-70."""
    b1, b2 = Fraction(3, 4), Fraction(2, 3)
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - rel)
    assert exp_sum_sign([c1, c2], [b1, b2], s) == expected


def test_exp_sum_sign_limited_digits_report_a_tie():
    """Beyond EXACT_POWER_LIMIT a sum below 10^-(digits - 10) of the terms' scale is reported as 0."""
    b1, b2, s = Fraction(3, 4), Fraction(2, 3), 400
    c1 = Fraction(5, 7)
    c2 = -c1 * (b1 / b2) ** s * (1 - Fraction(1, 10**30))  # relative size 1e-30 / 2
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=80) == 1
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=45) == 1  # threshold 1e-35
    assert exp_sum_sign([c1, c2], [b1, b2], s, digits=35) == 0  # threshold 1e-25


@pytest.mark.parametrize("s", [1, 2, EXACT_POWER_LIMIT + 1])
def test_exp_sum_sign_does_not_trust_float_cancellation(s):
    """(1 + 2^-52) - (1 + 2^-52 - 2^-54) - 2^-55 == 2^-55 > 0, but float64 rounds the second coefficient to
    1 + 2^-52 and gets -2^-55: the float fast path must not decide this sum (bases 1, any power)."""
    coefs = [1 + Fraction(1, 2**52), -(1 + Fraction(1, 2**52) - Fraction(1, 2**54)), -Fraction(1, 2**55)]
    assert math.fsum(float(c) for c in coefs) < 0  # the float64 sum has the wrong sign
    assert exp_sum_sign(coefs, [Fraction(1)] * 3, s) == 1


def test_exp_sum_sign_float_error_bound_grows_with_the_power():
    """1024 [1 - (1 - 2.7 * 2^-52)(1 + 0.49 * 2^-52)^9] < 0, but float64 reads the base as 1 and the coefficient
    as 1 - 2.5 * 2^-52: a float sum of +5.7e-13, within the documented (s + 4) 2^-52 relative error of the
    power (s = 9), which the fast path must respect (scale 2048: bound 8e-12)."""
    s = 9
    coefs = [Fraction(1024), -1024 * (1 - Fraction(27, 10) / 2**52)]
    bases = [Fraction(1), 1 + Fraction(49, 100) / 2**52]
    assert math.fsum(float(c) * float(b) ** s for c, b in zip(coefs, bases)) > 5e-13  # wrong sign in float
    assert sum(c * b**s for c, b in zip(coefs, bases)) < 0
    assert exp_sum_sign(coefs, bases, s) == -1


def test_exp_sum_sign_clear_signs_are_plain_ints():
    for s in (3, 400):
        for coefs, want in (([Fraction(1), Fraction(-1)], 1), ([Fraction(-1), Fraction(1)], -1)):
            got = exp_sum_sign(coefs, [Fraction(1, 2), Fraction(1, 3)], s)
            assert got == want and type(got) is int
    # terms below the float range (2^-2000 underflows) are decided exactly
    tiny = [Fraction(1, 2**1000), Fraction(1, 2**1000)]
    assert exp_sum_sign([Fraction(1), Fraction(-1) + Fraction(1, 10**20)], tiny, 2) == 1
    assert exp_sum_sign([Fraction(1), Fraction(-1)], tiny, 2) == 0
    # huge terms (float overflow) as well
    huge = [Fraction(2**1000), Fraction(2**1000)]
    assert exp_sum_sign([Fraction(1), Fraction(-1) - Fraction(1, 10**20)], huge, 2) == -1
    assert exp_sum_sign([Fraction(0), Fraction(0)], [Fraction(1, 2), Fraction(1, 3)], 400) == 0


def test_exp_sum_sign_float_path_beats_low_precision():
    """A sum far above the float64 error bound gets its sign from the fast path even when the mpmath fallback's
    precision (12 digits: relative 1e-2 reported as 0) could not resolve it; the exact sign agrees."""
    coefs, bases, s = [Fraction(1), Fraction(-1)], [Fraction(1), Fraction(999999, 10**6)], 1000
    exact = sum(cf * b**s for cf, b in zip(coefs, bases))
    assert 0 < exact < Fraction(1, 500)  # relative size ~5e-4: below the 12-digit fallback's 1e-2 threshold
    assert exp_sum_sign(coefs, bases, s, digits=12) == 1
    assert exp_sum_sign([-cf for cf in coefs], bases, s, digits=12) == -1


def test_exp_sum_sign_with_overflowing_terms_of_both_signs():
    # 1e300 * (1e5)^3 overflows to +inf and the second term to -inf: fsum raised ValueError before the fix.
    # The sign is checked against the exact rational sum.
    coefs = [Fraction(10**300), Fraction(-(10**300)), Fraction(1)]
    bases = [Fraction(10**5), Fraction(10**5 + 1), Fraction(1, 2)]
    for s in (3, 4):
        exact = sum(cf * b**s for cf, b in zip(coefs, bases))
        assert exp_sum_sign(coefs, bases, s) == (exact > 0) - (exact < 0) == -1


def test_merge_terms_combines_and_sorts():
    cs, bs = merge_terms(
        [Fraction(1), Fraction(2), Fraction(3), Fraction(-1), Fraction(5), Fraction(0)],
        [Fraction(1, 2), Fraction(1, 3), Fraction(0), Fraction(1, 2), Fraction(2, 3), Fraction(1, 5)],
    )
    # 1/2 cancels (1 - 1), base 0 and coefficient 0 are dropped; largest base first
    assert bs == [Fraction(2, 3), Fraction(1, 3)] and cs == [Fraction(5), Fraction(2)]
    cs, bs = merge_terms([Fraction(1), Fraction(1)], [Fraction(1, 2), Fraction(1, 2)])
    assert (cs, bs) == ([Fraction(2)], [Fraction(1, 2)])


def test_intersect_intervals():
    a = [(1, 3), (6, None)]
    b = [(2, 7), (9, 12)]
    assert intersect_intervals(a, b) == [(2, 3), (6, 7), (9, 12)]
    assert intersect_intervals(a, []) == []
    assert intersect_intervals([(1, None)], [(4, None)]) == [(4, None)]


def test_intersect_intervals_edges():
    assert intersect_intervals([(1, None)], [(1, None)]) == [(1, None)]
    assert intersect_intervals([(1, 5)], [(5, 9)]) == [(5, 5)]  # touching ends share one round
    assert intersect_intervals([(1, 4)], [(5, 9)]) == []
    assert intersect_intervals([(2, None)], [(1, 3), (6, 8), (10, None)]) == [(2, 3), (6, 8), (10, None)]
    assert intersect_intervals([(1, 3), (6, 8), (10, None)], [(2, None)]) == [(2, 3), (6, 8), (10, None)]
    assert intersect_intervals([], [(1, None)]) == []
    got = intersect_intervals([(1, 10)], [(3, None)])
    assert got == [(3, 10)] and type(got[0][1]) is int


def test_intersect_intervals_many_pieces():
    """Several intervals of one list inside a single interval of the other are all kept."""
    a = [(1, 2), (4, 5), (7, 8), (10, None)]
    assert intersect_intervals(a, [(1, None)]) == a
    assert intersect_intervals([(1, None)], a) == a
    assert intersect_intervals(a, [(2, 11)]) == [(2, 2), (4, 5), (7, 8), (10, 11)]


def test_positive_rounds_three_nearly_equal_bases():
    """h(s) = x^2 - (3/4) x + 1/8 = (x - 1/2)(x - 1/4) with x = r^s, r = 1 - 1e-9 (bases 1, r, r^2: the
    mpmath branch, horizon ~2.6e9): positive while r^s > 1/2 and again once r^s < 1/4, with a critical
    point between. The ends are read off 60-digit evaluations of h at the integers around ln 2 / -ln r
    and ln 4 / -ln r."""
    r = 1 - Fraction(1, 10**9)
    coefs = [Fraction(1, 8), Fraction(-3, 4), Fraction(1)]
    intervals = positive_rounds(coefs, [Fraction(1), r, r * r])
    with mpmath.workdps(60):
        lr = mpmath.log(mpmath.mpf(r.numerator) / r.denominator)
        h = lambda s: (mpmath.exp(lr * s) - mpmath.mpf(1) / 2) * (mpmath.exp(lr * s) - mpmath.mpf(1) / 4)  # noqa: E731
        last = int(mpmath.floor(mpmath.log(2) / -lr))
        first = int(mpmath.floor(mpmath.log(4) / -lr)) + 1
        assert h(last) > 0 > h(last + 1) and h(first - 1) < 0 < h(first)
    assert intervals == [(1, last), (first, None)]


def test_positive_rounds_dominant_lead_needs_one_round():
    """When the largest base's coefficient outweighs all the others together (|1| >= |-1/2|), the sign is settled
    from s = 1: max_horizon == 1 is enough."""
    coefs, bases = [Fraction(1), Fraction(-1, 2)], [Fraction(1, 2), Fraction(1, 4)]
    assert positive_rounds(coefs, bases, max_horizon=1) == [(1, None)]
    # equal weights (|1| == |-1|): still settled from s = 1, the smaller base's term being strictly smaller
    assert positive_rounds([Fraction(1), Fraction(-1)], bases, max_horizon=1) == [(1, None)]


def test_positive_rounds_horizon_refusal_states_the_bases_ratio():
    """The refusal states how close the bases are (their ratio b_2 / b_1 = 9/10 here, with b_1 = 1/2 so that a
    product or a base alone would show another number)."""
    with raises_naming("max_horizon", "0.9"):
        positive_rounds([Fraction(1, 2), Fraction(-3, 2)], [Fraction(1, 2), Fraction(9, 20)], max_horizon=5)


def test_positive_rounds_scaling_all_bases_keeps_the_pattern():
    """sum c_i (a b_i)^s = a^s sum c_i b_i^s has the signs of the unscaled sum: the three nearly equal bases of the
    test above (the mpmath branch), all halved, give the same intervals."""
    r = 1 - Fraction(1, 10**9)
    coefs = [Fraction(1, 8), Fraction(-3, 4), Fraction(1)]
    half = Fraction(1, 2)
    assert positive_rounds(coefs, [half, half * r, half * r * r]) == positive_rounds(coefs, [Fraction(1), r, r * r])
