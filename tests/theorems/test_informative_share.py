"""At least half of the examples that the P3 and P4 properties see are non-trivial (default profile).

Each strategy is run under the active profile (``ci``: derandomised, so the
count is deterministic) by a property whose body only classifies the example
with the same criterion the property tests report as an ``event``. A P3
example is non-trivial when its first perfect round lies in [1, max_round];
a P4 example when the teacher errs on a present type or ties in its top two.
"""

import pytest
from hypothesis import given

import theory

from .strategies import p3_case, pll_case
from .test_p4_pll import pll_informative


def _share(strategy, classify):
    seen = []

    @given(strategy)
    def body(case):
        seen.append(bool(classify(case)))

    body()
    return sum(seen), len(seen)


def _p3(max_round):
    def classify(case):
        K, n, c, d, lam, counts, _ = case
        t = theory.min_rounds(K, n, c, d, lam, counts / n)
        return t is not None and 1 <= t <= max_round

    return classify


@pytest.mark.parametrize(
    "name,strategy,classify",
    [
        ("P3 any labels (brute force)", p3_case(max_K=4, max_n=6, max_round=40, balanced=False), _p3(40)),
        ("P3 balanced (closed form)", p3_case(max_K=5, max_n=6, max_round=60, balanced=True), _p3(60)),
        ("P4 PLL", pll_case(max_K=4, max_n=6), lambda case: pll_informative(*case[:6])[0]),
    ],
)
def test_at_least_half_informative(name, strategy, classify):
    informative, total = _share(strategy, classify)
    print(f"{name}: {informative}/{total} informative")
    assert total > 0
    assert informative >= total / 2, f"{name}: only {informative} of {total} examples are non-trivial"
