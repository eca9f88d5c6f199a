"""Pieces every claim module of :mod:`sims.paper_checks` shares.

* :class:`Check` -- one entry of paper_checks.md (claim, how it is checked, lines, verdict, key numbers);
* :data:`PAPER`, :data:`SEED` -- the paper's setting and the report's one seed; every random draw uses
  ``np.random.SeedSequence(SEED, spawn_key=...)`` with a key unique to the check;
* :func:`confusion` -- theory's verdict against the observed one over cells (:class:`sims.engine.Agreement`:
  the four counts and the agreement on informative cells, where either side says 100 %);
* :func:`t_interval` -- the 95 % Student-t interval of a mean over seeds;
* :func:`block_sd` -- exact softmax SD on the block model (type-reduced), solved once per problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import theory

from ..engine import measures as metrics
from ..engine import noise as noise_mod
from ..engine import rounds as sd_rounds
from ..engine.features import PAPER  # noqa: F401  (shared by the check modules)
from ..engine.fit import BlockExact
from ..engine.measures import Agreement
from ..engine.measures import first_perfect_round as first_perfect  # noqa: F401  (shared by the check modules)

SEED = 20250101  # the one seed of this report


@dataclass
class Check:
    """One entry of the report. ``verdict`` is produced by the claim's verdict function, whose rule is
    printed in ``lines``; ``numbers`` are the key numbers that ``--check`` compares."""

    id: str
    title: str
    claim: str
    accuracy: str
    how: list
    lines: list
    verdict: str
    numbers: dict = field(default_factory=dict)
    figure: str | None = None
    theory: str | None = None  # where the claim's theory lives (module / functions)


def rnd(x, digits=4):
    """Round for the report and the key-number block (significant digits); bools and ints unchanged."""
    if x is None:
        return None
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits}g}")


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f} %"


def fmt_dim(D) -> str:
    """A dimension D for the report: 1e+06 for a power of ten >= 1000, the integer otherwise."""
    D = int(D)
    e = len(str(D)) - 1
    return f"1e+{e:02d}" if D >= 1000 and D == 10**e else str(D)


def rule_text(fn) -> str:
    """The rule of a verdict function, as printed in the report: its docstring, joined into one line."""
    return " ".join(fn.__doc__.split())


def population_counts(noise, K, eta, n, size=2):
    """Exact label counts (balanced given labels) of the noise model at rate eta."""
    return theory.exact_label_counts(noise_mod.noise_matrix(noise, K, eta, size), n)


def rng_for(*key) -> np.random.Generator:
    """The generator of one check: SeedSequence(SEED) spawned by ``key`` (ints)."""
    return np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=tuple(int(k) for k in key)))


# ----------------------------------------------------------------------------- confusion counts


def confusion(predicted, observed) -> Agreement:
    """:class:`sims.engine.Agreement` of two equally long sequences of booleans (theory says 100 %,
    observed 100 %)."""
    return Agreement.of(predicted, observed)


# ----------------------------------------------------------------------------- intervals


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def text(self, scale=100.0, unit=" points") -> str:
        return f"{scale * self.mean:+.1f}{unit} [{scale * self.low:+.1f}, {scale * self.high:+.1f}]"


def t_interval(values, level: float = 0.95) -> Interval:
    """Two-sided Student-t interval for the mean of ``values`` (independent seeds; needs >= 2 values).

    mean +- t_{(1+level)/2, m-1} s / sqrt(m), s the sample standard deviation (ddof 1)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size < 2:
        raise ValueError(f"values has shape {v.shape}, must be 1-d with at least 2 entries")
    if not 0 < level < 1:
        raise ValueError(f"level == {level}, must be in (0, 1)")
    m = float(v.mean())
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(m, m - half, m + half, int(v.size))


# ----------------------------------------------------------------------------- exact block model

_BLOCK_SD: dict = {}


def block_sd(K, n, c, d, lam, counts, rounds):
    """Exact softmax SD on the block model (type-reduced), rounds 0..rounds: (engine, fits, y, z).

    Several checks run the same problem; each problem is solved once, to the most rounds asked for, and
    shorter requests get a prefix."""
    counts = np.asarray(counts)
    key = (K, n, c, d, lam, counts.tobytes())
    if key not in _BLOCK_SD or len(_BLOCK_SD[key][1]) < rounds + 1:
        y, z = noise_mod.labels_from_counts(counts)
        engine = BlockExact(K, n, c, d, lam, y, z)
        _BLOCK_SD[key] = (engine, sd_rounds.sd(engine, engine.one_hot_types(), rounds), y, z)
    engine, fits, y, z = _BLOCK_SD[key]
    return engine, fits[: rounds + 1], y, z


def block_accuracies(fits, y):
    return [metrics.accuracy(f.outputs, y) for f in fits]


# ----------------------------------------------------------------------------- finite-D levels (P3, P4, F3)

# A finite-D level compares the deterministic-equivalent theory with Monte Carlo on sampled mixture Gram matrices.
# Its verdict counts a comparison as outside when |theory - Monte Carlo mean| > z SE + FD_SLACK, z the two-sided
# normal quantile Bonferroni-corrected over the level's comparisons at FD_FAMILY_ALPHA: a theory that were exact
# would fail a level with probability at most about FD_FAMILY_ALPHA. FD_SLACK (accuracy points / 100) allows for what
# the theory neglects (O(1/m) Wishart terms) and for its orthant probabilities' tolerance, where the Monte Carlo
# spread is zero (accuracy 1 in every sample); the same allowance as tests/sims/test_finite_dim_study.py.
FD_FAMILY_ALPHA = 0.01
FD_SLACK = 2e-3


def fd_outside(comparisons) -> tuple[list, float]:
    """(labels outside, z) for comparisons (label, theory, Monte Carlo mean, its standard error): outside where
    |theory - mean| > z SE + FD_SLACK, z = the two-sided normal quantile at FD_FAMILY_ALPHA / (2 x comparisons)."""
    from scipy.special import ndtri

    comparisons = list(comparisons)
    if not comparisons:
        raise ValueError("comparisons is empty, must hold at least one (label, theory, mean, se)")
    z = float(-ndtri(FD_FAMILY_ALPHA / (2 * len(comparisons))))
    bad = [label for label, pred, mean, se in comparisons if not abs(pred - mean) <= z * se + FD_SLACK]
    return bad, z


def verdict_finite_dim(outside_linear: list, outside_exact: list | None = None) -> str:
    """'holds' if every prediction of the finite-D level lies within its Monte Carlo interval: for accuracies
    |theory - Monte Carlo mean| <= z SE + 0.002 (z: the two-sided normal quantile Bonferroni-corrected over the
    level's comparisons at family level 1 %, so that an exact theory fails with probability at most about 1 %;
    0.002 for the theory's neglected O(1/m) terms and its orthant tolerance, where the Monte Carlo spread is 0); for a
    first perfect round the theory's median inside the 95 % order-statistic interval of the Monte Carlo median.
    Where an exact-softmax level is compared too: 'holds at the linearised level only' if the linearised
    predictions hold and some exact-level prediction lies outside the exact softmax's interval. Otherwise 'fails at:'
    followed by the comparisons outside."""
    if outside_linear:
        return "fails at: " + "; ".join(outside_linear)
    if outside_exact:
        return "holds at the linearised level only (exact level outside at: " + "; ".join(outside_exact) + ")"
    return "holds"
