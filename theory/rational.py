"""Exact arithmetic for decisions at boundaries.

Whether an instance is predicted correctly is the sign of a margin, and the
theory counts a tie (margin exactly 0) as a failure. Float64 cannot see an
exact tie, so signs are decided here on rationals:

* Every float input is read as the simplest fraction it represents: the
  best rational approximation with denominator <= 10**9, if that lies within
  1e-15 (relative) of the float, otherwise the float's exact binary value.
  So ``0.1`` is read as 1/10 and a symmetric corruption matrix with
  ``eta = 0.3`` is exactly doubly stochastic, while a float with no short
  fraction nearby keeps its exact value.
* A sum of exponentials sum_i c_i b_i^s is evaluated exactly with
  :class:`fractions.Fraction` for s <= EXACT_POWER_LIMIT and with mpmath at
  MP_DIGITS significant digits beyond (where an exact zero of such a sum with
  distinct rational bases would need astronomically large numerators).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath

EXACT_POWER_LIMIT = 300
MP_DIGITS = 80
_DENOMINATOR_LIMIT = 10**9
_SNAP_RTOL = 1e-15


def rational(x) -> Fraction:
    """The simplest fraction within 1e-15 (relative) of ``x``; exact for Fraction/int input."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, int):
        return Fraction(x)
    x = float(x)
    exact = Fraction(x)
    snapped = exact.limit_denominator(_DENOMINATOR_LIMIT)
    if abs(float(snapped) - x) <= _SNAP_RTOL * abs(x):  # also when snapped == exact (difference 0)
        return snapped
    return exact


def rational_matrix(M) -> list[list[Fraction]]:
    return [[rational(v) for v in row] for row in M]


def exp_sum_sign(coefs, bases, s: int, digits: int = MP_DIGITS) -> int:
    """Sign (-1, 0, +1) of sum_i coefs[i] * bases[i] ** s, exactly (see module doc).

    Beyond EXACT_POWER_LIMIT the sum is evaluated with mpmath at ``digits``
    significant digits; a result below 10^-(digits - 10) of the terms' scale
    is reported as 0 (callers raise ``digits`` when bases are nearly equal).
    """
    # Fast path: float64 with a rigorous-enough error bound. Each term carries a
    # relative error below (s + 4) * 2^-52 (rounding of the base, s-fold in the
    # power, plus conversions), so a float sum beyond that bound has the sign shown.
    try:
        fl = [float(cf) * float(b) ** s for cf, b in zip(coefs, bases)]
        total_f = math.fsum(fl)
        bound = (s + 8) * 2.3e-16 * math.fsum(abs(v) for v in fl)
        # (an infinite term makes the bound infinite; all terms 0 make total_f and the bound 0: no decision)
        if abs(total_f) > bound:
            # no mutate: underflow guard (a term below 1e-290 may have lost relative accuracy); mutants of
            # this line only send more sums to the exact evaluation below, which returns the same sign
            if min(abs(v) for v in fl if v) > 1e-290:  # pragma: no mutate
                return int(math.copysign(1, total_f))
    except (OverflowError, ValueError):  # ValueError: fsum of +inf and -inf terms
        pass
    if s <= EXACT_POWER_LIMIT:
        total = sum(cf * b**s for cf, b in zip(coefs, bases))
        return (total > 0) - (total < 0)
    with mpmath.workdps(digits):
        terms = [
            mpmath.mpf(cf.numerator) / cf.denominator * (mpmath.mpf(b.numerator) / b.denominator) ** s
            for cf, b in zip(coefs, bases)
        ]
        total = mpmath.fsum(terms)
        scale = mpmath.fsum(abs(t) for t in terms)
        if abs(total) <= scale * mpmath.mpf(10) ** (-(digits - 10)):  # also when every term is 0
            return 0
        return int(mpmath.sign(total))


def merge_terms(coefs, bases):
    """Combine equal bases, drop zero coefficients and zero bases (0^s = 0 for s >= 1).

    Returns two lists (coefs, bases) sorted by base, largest first.
    """
    acc: dict[Fraction, Fraction] = {}
    for cf, b in zip(coefs, bases):
        if b == 0:
            continue
        acc[b] = acc.get(b, Fraction(0)) + cf
    items = sorted(((b, cf) for b, cf in acc.items() if cf != 0), reverse=True)
    return [cf for _, cf in items], [b for b, _ in items]


def positive_rounds(coefs, bases, max_horizon: int | None = None):
    """Integers s >= 1 where sum_i coefs[i] * bases[i]^s > 0, as a list of intervals.

    ``coefs`` and ``bases`` are Fractions, bases > 0 or = 0. Each interval is
    (a, b) with a <= b integers, b = None meaning unbounded. Exact: a sum of
    at most three exponentials has at most two real sign changes (Descartes'
    rule for exponential sums) and one critical point, which are located by
    bisection (in mpmath, with enough digits to separate nearly equal bases)
    and then settled on the integers around them with :func:`exp_sum_sign`;
    beyond a computed horizon the largest base decides (it can be astronomically
    far when two filters nearly coincide, e.g. d ~ 1e-200; the arithmetic then
    carries enough digits). Raises ValueError if the pattern settles only
    after more than ``max_horizon`` rounds (default: no limit).
    """
    cs, bs = merge_terms(coefs, bases)
    if not cs:
        return []  # identically zero: a tie at every round
    # no mutate: cs[0] != 0 after merge_terms, so > 0 and >= 0 agree
    lead_positive = cs[0] > 0  # pragma: no mutate
    if len(cs) == 1:
        return [(1, None)] if lead_positive else []
    if len(cs) > 3:
        raise ValueError(f"positive_rounds handles at most 3 exponential terms, got {len(cs)}")
    # Digits needed to tell the bases apart: 1 - b_2/b_1 may be tiny.
    gap = 1 - bs[1] / bs[0]
    # no mutate: a safety margin of working digits (more digits never change a sign found exactly below)
    digits = 30 + max(0, -math.floor(math.log10(gap.numerator) - math.log10(gap.denominator)))  # pragma: no mutate
    mp = lambda q: mpmath.mpf(q.numerator) / q.denominator  # noqa: E731
    # Horizon: for s > H, |sum_{i>=2} c_i (b_i/b_1)^s| <= (sum |c_i|) (b_2/b_1)^s < |c_1|.
    with mpmath.workdps(digits):
        l2 = mpmath.log(mp(bs[1]) / mp(bs[0]))
        rest = mpmath.fsum(abs(mp(cf)) for cf in cs[1:])
        lead = abs(mp(cs[0]))
        horizon = max(1, int(mpmath.ceil(mpmath.log(lead / rest) / l2)) + 1)  # 1 when rest <= lead
    if max_horizon is not None and horizon > max_horizon:
        raise ValueError(
            f"the sign pattern settles only after {horizon} rounds (bases {float(bs[1] / bs[0])!r} apart "
            f"in ratio), beyond max_horizon == {max_horizon}"
        )
    # Locating a root near s ~ H to within a quarter round needs the log-ratios
    # to log10(H) more digits than it takes to tell the bases apart.
    # no mutate: as above, a margin of working digits
    digits += len(str(horizon)) + 10  # pragma: no mutate
    # float64 suffices to bracket the roots to a quarter round when the bases
    # are at least 1e-8 apart (log-ratios then carry ~8 correct digits) and the
    # horizon is at most 1e6; otherwise mpmath with ``digits`` digits.
    # no mutate: a pure speed switch between float64 and mpmath bracketing; the signs are settled exactly below
    use_float = gap >= Fraction(1, 10**8) and horizon <= 10**6  # pragma: no mutate
    with mpmath.workdps(digits):
        if use_float:
            num, exp, log, floor = float, math.exp, math.log, math.floor
            c_m = [float(cf) for cf in cs]
            logs = [math.log(b / bs[0]) for b in bs]
        else:
            num, exp, log, floor = mp, mpmath.exp, mpmath.log, mpmath.floor
            c_m = [mp(cf) for cf in cs]
            logs = [mpmath.log(mp(b) / mp(bs[0])) for b in bs]  # 0 for the largest base, < 0 for the rest

        def h(x):
            return sum(cf * exp(lg * x) for cf, lg in zip(c_m, logs))

        points = [num(1), num(horizon)]
        if len(cs) == 3:
            # critical point of h: c2 l2 e^{l2 s} + c3 l3 e^{l3 s} = 0
            rhs = -(c_m[2] * logs[2]) / (c_m[1] * logs[1])
            if rhs > 0:
                sc = log(rhs) / (logs[1] - logs[2])
                if 1 < sc < horizon:
                    points.append(sc)
        points.sort()
        # the points include 1 and the horizon, so rounds 1..3 and H-1..H+2 are among the events added here
        events = set()
        for p in points:
            f = int(floor(p))
            events.update({max(1, f - 1), f, f + 1, f + 2})
        for u, v in zip(points[:-1], points[1:]):
            hu, hv = h(u), h(v)
            if hu == 0 or hv == 0 or (hu > 0) != (hv > 0):
                lo, hi = u, v
                while hi - lo > 0.25:  # integers around the root suffice
                    mid = (lo + hi) / 2
                    if (h(mid) > 0) == (hu > 0):
                        lo = mid
                    else:
                        hi = mid
                f = int(floor(lo))
                events.update({max(1, f - 1), f, f + 1, f + 2})
    events = sorted(e for e in events if e >= 1)
    signs = {e: exp_sum_sign(cs, bs, e, digits=digits + 20) for e in events}
    eventual = 1 if lead_positive else -1
    if signs[events[-1]] != eventual:
        raise AssertionError("exponential-sum sign past the horizon disagrees with its leading term")
    # Between consecutive events the sign is constant (every sign change and
    # the critical point are surrounded by events); check the ends agree
    # wherever the gap is wider than one.
    intervals = []
    start = None
    prev = None
    for e in events:
        pos = signs[e] > 0
        if prev is not None and e - prev > 1 and (signs[prev] > 0) != pos:
            raise AssertionError(f"missed a sign change between rounds {prev} and {e}")
        if pos and start is None:
            start = e
        if not pos and start is not None:
            intervals.append((start, prev))
            start = None
        prev = e
    if start is not None:
        intervals.append((start, None))
    return intervals


def intersect_intervals(a, b):
    """Intersection of two sorted lists of integer intervals (None = unbounded above)."""
    out = []
    i = j = 0
    inf = math.inf
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        ahi = inf if a[i][1] is None else a[i][1]
        bhi = inf if b[j][1] is None else b[j][1]
        hi = min(ahi, bhi)
        if lo <= hi:
            out.append((lo, None if hi == inf else int(hi)))
        if ahi < bhi:
            i += 1
        else:
            j += 1
    return out
