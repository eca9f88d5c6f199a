"""Contract of theory.pll: the default tie rule and the types of the report's fields."""

from __future__ import annotations

from fractions import Fraction

import theory

K3 = dict(K=3, n=4, c=0.4, d=0.1, lam=1e-3)


C3 = theory.symmetric(3, 0.25)


def test_default_tie_rule_is_share():
    """Rule "share" (the default): a unique top gets 1/2, the two tied for second share the other 1/2; a clean
    instance's wrong classes tie exactly."""
    assert theory.pll_targets([3, 1, 1]) == [Fraction(1, 2), Fraction(1, 4), Fraction(1, 4)]
    assert theory.pll_targets([3, 1, 1]) == theory.pll_targets([3, 1, 1], "share") != theory.pll_targets([3, 1, 1], "lowest")
    share = theory.pll_analysis(3, 4, 0.4, 0.1, 1e-3, C3)
    assert share.targets[0, 0].tolist() == [0.5, 0.25, 0.25]


def test_boolean_outputs():
    ok = theory.correct_types(*K3.values(), C3, 3)
    assert ok.dtype == bool
    rep = theory.pll_analysis(*K3.values(), C3)
    for arr in (rep.present, rep.teacher_correct, rep.teacher_contains_true, rep.student_correct):
        assert arr.dtype == bool and arr.shape == (3, 3)


def test_an_unknown_tie_rule_is_refused_listing_the_rules():
    """Both entry points refuse an unknown tie rule; the message shows the value and names every allowed rule as a
    word of its own (so that a caller can copy one)."""
    import re

    import pytest

    for call in (lambda: theory.pll_targets([3, 1, 1], "random"), lambda: theory.pll_analysis(*K3.values(), C3, "random")):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "'random'" in msg
        for rule in theory.TIE_RULES:
            assert re.search(rf"(?<!\w){rule}(?!\w)", msg), (rule, msg)
