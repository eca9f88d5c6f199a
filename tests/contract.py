"""The input-validation contract shared by tests/theorems/test_public_functions.py (theory) and
tests/sims/test_public_functions.py (the engine).

A table maps each public callable to (valid keyword arguments, {parameter: [Bad, ...]}). Each invalid
value, put in place of one parameter of the valid call, must raise ValueError or TypeError whose message
names the parameter and shows the value received (for arrays: the offending shape or entry); the wording
around them is free. :func:`assert_table_complete` makes sure that every public callable and every one of
its parameters has an entry, or a stated reason why it takes no invalid values.
"""

from __future__ import annotations

import inspect
import re

import pytest

NAN, INF = float("nan"), float("inf")

# a share just outside [0, 1] on either side (the closest floats)
SHARE_BAD = (1.5, -0.25, 1.0000000000000002, -5e-324)


class Bad:
    """An invalid value and the text its error message must show (default: the value's str and repr; a tuple:
    every text in it, e.g. the value and the allowed range)."""

    def __init__(self, value, shows=None):
        self.value = value
        self.shows = shows

    def expected(self):
        if isinstance(self.shows, tuple):  # the value and the bound or shape it breaks
            return self.shows
        if self.shows is not None:
            return (self.shows,)
        return (str(self.value), repr(self.value))

    def __repr__(self):
        return f"Bad({self.value!r})"


def ints(minimum):
    """Wrong type (a string, a non-integral float, a bool, NaN), the value just below the minimum and one far below."""
    return [Bad("3"), Bad(2.5), Bad(True), Bad(NAN), Bad(minimum - 1), Bad(minimum - 7)]


def reals(*out_of_range):
    """Wrong type (a string, a bool), NaN, both infinities and the given out-of-range values."""
    return [Bad("0.25"), Bad(True), Bad(NAN), Bad(INF), Bad(-INF), *(Bad(v) for v in out_of_range)]


# the block model's parameters (K, n, c, d, lam), valid for K = 3, n = 4
BLOCK_BAD = {
    "K": ints(2),
    "n": ints(1),
    "c": reals(1.0, 1.25),
    "d": reals(0.4, 0.75, -0.9),  # d >= c, and below the PSD limit
    "lam": reals(0.0, -0.25),
}


def choices(*names):
    """Names that are not among the allowed ones, and a value of the wrong type."""
    return [Bad(v) for v in names] + [Bad(3)]


def cases(table, label):
    """One pytest case per (callable, parameter with invalid values)."""
    return [pytest.param(fn, param, id=f"{label(fn)}-{param}") for fn, (_, bad) in table.items() for param in bad]


def assert_table_complete(table, label, not_validated):
    """Every parameter of every entry has invalid values (at least two) or a reason in ``not_validated``,
    not both; the valid call gives every parameter, in order."""
    for fn, (valid, bad) in table.items():
        params = list(inspect.signature(fn).parameters)
        assert list(valid) == params, (label(fn), "valid call must give every parameter in order")
        for p in params:
            unchecked = (fn, p) in not_validated
            assert (p in bad) != unchecked, (label(fn), p)
            if p in bad:
                assert len(bad[p]) >= 2, (label(fn), p)
    stale = {(label(fn), p) for fn, p in not_validated if fn not in table or p not in inspect.signature(fn).parameters}
    assert not stale, stale


def assert_rejected_by_name(fn, valid, param, bads, name, label):
    """Each invalid value of ``param`` raises ValueError or TypeError naming ``name`` and showing the value."""
    named = re.compile(rf"(?<![\w.]){re.escape(name)}(?![\w])")
    for b in bads:
        with pytest.raises((ValueError, TypeError)) as info:
            fn(**{**valid, param: b.value})
        msg = str(info.value)
        assert named.search(msg), f"{label}({param}={b!r}): message does not name {name!r}: {msg}"
        # a tuple of texts: every one (the value and the bound or shape it breaks); otherwise the value's str or repr
        shown = all if isinstance(b.shows, tuple) else any
        assert shown(e in msg for e in b.expected()), f"{label}({param}={b!r}): message does not show {b.expected()}: {msg}"


def contract_tests(table, label, reported_as=None):
    """The two tests of a validation table, for a test module to bind at module level: every reference call
    succeeds, and every invalid value is rejected naming its parameter (``reported_as`` maps
    (callable, parameter) to the name the message uses instead, e.g. a wrapper's own argument)."""
    reported_as = reported_as or {}

    @pytest.mark.parametrize("fn", list(table), ids=label)
    def test_valid_call_succeeds(fn):
        """The reference call of every entry is valid (so each rejection is caused by its one changed parameter)."""
        valid, _ = table[fn]
        fn(**valid)

    @pytest.mark.parametrize("fn, param", cases(table, label))
    def test_invalid_value_is_rejected_by_name(fn, param):
        valid, bad = table[fn]
        assert_rejected_by_name(fn, valid, param, bad[param], reported_as.get((fn, param), param), label(fn))

    return test_valid_call_succeeds, test_invalid_value_is_rejected_by_name
