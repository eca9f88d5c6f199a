"""Pieces every claim module of :mod:`sims.paper_checks` shares.

* :class:`Check` -- one entry of paper_checks.md (claim, how it is checked, lines, verdict, key numbers);
* :data:`PAPER`, :data:`SEED` -- the paper's setting and the report's one seed; every random draw uses
  ``np.random.SeedSequence(SEED, spawn_key=...)`` with a key unique to the check;
* :func:`confusion` -- theory's verdict against the observed one over cells, with the four counts and the
  agreement on informative cells (where either side says 100 %);
* :func:`t_interval` -- the 95 % Student-t interval of a mean over seeds;
* :func:`block_sd` -- exact softmax SD on the block model (type-reduced), solved once per problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

import theory

from .. import metrics
from .. import noise as noise_mod

PAPER = dict(K=4, n=500, c=0.4, d=0.1, lam=1e-5)
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


def first_perfect(accs):
    """First round with accuracy exactly 1 (ties fail), or None."""
    for t, a in enumerate(accs):
        if a == 1.0:
            return t
    return None


def population_counts(noise, K, eta, n, size=2):
    """Exact label counts (balanced given labels) of the noise model at rate eta."""
    return theory.exact_label_counts(noise_mod.noise_matrix(noise, K, eta, size), n)


def rng_for(*key) -> np.random.Generator:
    """The generator of one check: SeedSequence(SEED) spawned by ``key`` (ints)."""
    return np.random.default_rng(np.random.SeedSequence(SEED, spawn_key=tuple(int(k) for k in key)))


# ----------------------------------------------------------------------------- confusion counts


@dataclass(frozen=True)
class Confusion:
    """Theory's verdict ("100 %") against the observed one over a set of cells.

    ``both`` / ``only_theory`` / ``only_observed`` / ``neither``; ``informative`` = cells where either side
    says 100 %; ``agreement`` = both / informative (None without informative cells). Cells where both
    sides say "not perfect" are counted in ``neither`` and never in the agreement."""

    both: int
    only_theory: int
    only_observed: int
    neither: int

    @property
    def informative(self) -> int:
        return self.both + self.only_theory + self.only_observed

    @property
    def agreement(self):
        return self.both / self.informative if self.informative else None

    def text(self) -> str:
        if self.agreement is None:
            return f"no informative cells (neither side says 100 % in any of the {self.neither} cells)"
        return (f"{self.agreement:.4f} on {self.informative} informative cells (both 100 %: {self.both}, only theory: "
                f"{self.only_theory}, only observed: {self.only_observed}; neither: {self.neither})")

    def numbers(self, prefix: str) -> dict:
        return {f"{prefix}_both": self.both, f"{prefix}_only_theory": self.only_theory,
                f"{prefix}_only_observed": self.only_observed, f"{prefix}_neither": self.neither}


def confusion(predicted, observed) -> Confusion:
    """Confusion counts of two equally long sequences of booleans (theory says 100 %, observed 100 %)."""
    p = np.asarray(predicted, dtype=bool)
    o = np.asarray(observed, dtype=bool)
    if p.shape != o.shape or p.ndim != 1:
        raise ValueError(f"predicted and observed have shapes {p.shape} and {o.shape}, must be equal 1-d")
    return Confusion(int(np.sum(p & o)), int(np.sum(p & ~o)), int(np.sum(~p & o)), int(np.sum(~p & ~o)))


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
    from ..distill import _BlockExact, exact_sd

    counts = np.asarray(counts)
    key = (K, n, c, d, lam, counts.tobytes())
    if key not in _BLOCK_SD or len(_BLOCK_SD[key][1]) < rounds + 1:
        y = np.repeat(np.arange(K), n)
        z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
        engine = _BlockExact(K, n, c, d, lam, y, z)
        _BLOCK_SD[key] = (engine, exact_sd(engine, engine.one_hot_types(), rounds), y, z)
    engine, fits, y, z = _BLOCK_SD[key]
    return engine, fits[: rounds + 1], y, z


def block_accuracies(fits, y):
    return [metrics.accuracy(f.outputs, y) for f in fits]
