"""The measures (sims.engine.measures): accuracy under the tie convention and the PLL student's targets."""

from __future__ import annotations

import numpy as np

from sims.engine import measures as M
from tests.theorems.strategies import raises_naming


def test_accuracy_tie_convention():
    P = np.array([[0.5, 0.5, 0.5 + 2e-9, 0.2], [0.5, 0.5 - 2e-9, 0.5, 0.8]])
    assert M.correct(P, [0, 0, 0, 1]).tolist() == [False, True, True, True]
    assert M.correct(P, [0, 0, 0, 0]).tolist() == [False, True, True, False]
    assert M.correct(np.array([[0.5], [0.5 - 5e-10]]), [0]).tolist() == [False]  # within TIE_TOL: a tie
    acc = M.split_accuracy(P, [0, 0, 0, 1], [0, 1, 0, 1])
    assert acc == {"all": 0.75, "clean": 2 / 3, "noisy": 1.0}
    assert M.split_accuracy(P, [0, 0, 0, 1], [0, 0, 0, 1])["noisy"] is None


def test_pll_targets_tie_rules():
    P = np.array(
        [
            [0.4, 0.3, 0.3, 0.0],  # unique top, two tied for second
            [0.5, 0.5, 0.0, 0.0],  # two tied for first
            [1 / 3, 1 / 3, 1 / 3, 0.0],  # three tied for first
            [0.1, 0.6, 0.2, 0.1],  # strict top two
            [0.4, 0.3, 0.3 - 5e-10, 0.0],  # tie within TIE_TOL
        ]
    ).T
    share = M.pll_targets(P, "share").T
    assert np.allclose(share[0], [0.5, 0.25, 0.25, 0])
    assert np.allclose(share[1], [0.5, 0.5, 0, 0])
    assert np.allclose(share[2], [1 / 3, 1 / 3, 1 / 3, 0])
    assert np.allclose(share[3], [0, 0.5, 0.5, 0])
    assert np.allclose(share[4], [0.5, 0.25, 0.25, 0])
    lowest = M.pll_targets(P, "lowest").T
    assert np.allclose(lowest[0], [0.5, 0.5, 0, 0])
    assert np.allclose(lowest[2], [0.5, 0.5, 0, 0])
    assert np.allclose(lowest[3], [0, 0.5, 0.5, 0])
    assert np.allclose(M.pll_targets(P).sum(axis=0), 1.0)
    with raises_naming("ties", "'x'"):
        M.pll_targets(P, "x")


def test_first_perfect_round_is_the_first_exact_one():
    """Accuracy exactly 1 counts, 1 - 1e-16 does not; the rounds after the first perfect one are not read."""
    assert M.first_perfect_round([0.5, 1.0 - 1e-16, 1.0, 0.9]) == 2
    assert M.first_perfect_round([0.5, 0.75]) is None and M.first_perfect_round([]) is None

    def rounds():
        yield 0.5
        yield 1.0
        raise AssertionError("read past the first perfect round")

    assert M.first_perfect_round(rounds()) == 1
