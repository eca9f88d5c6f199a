"""The exact softmax at finite D, approximately: the finite-D linearised theory at an effective ridge.

Why. The exact softmax reaches 100 % training accuracy later than the linearised operator: in the block
model by 0 to 17 rounds (certified, :mod:`theory.exact_level`), and on sampled mixture Gram matrices by
more as D / N falls (``python -m sims.finite_dim``: 0 to 13 rounds on the quick grid). The only exact-level
theory is the block model's (D -> infinity); adding its lag to the finite-D linearised median
(:func:`theory.finite_dim.finite_dim_prediction`) misses the growth of the lag at small D / N.

What this module does. In the block model the linearised first perfect round is a step function of the
ridge (the rounds a noisy type needs grow like 1 / log(beta / alpha), and beta / alpha falls to 1 as
lambda -> 0). :func:`effective_lambda` finds the ridges at which the *linearised* block model
(:func:`theory.min_rounds`) reaches 100 % at the round the *certified exact* block model reaches it
(:func:`theory.min_rounds_exact`), on the same label counts. These ridges form an interval [lo, hi] (the
function checks its ends); its geometric midpoint is ``lam_eff``. :func:`exact_finite_dim_prediction` is
the finite-D linearised theory at ``lam_eff``: it carries the exact block model's lag to finite D through
the same Marchenko-Pastur filters that make the linearised lag grow as D / N falls.

Approximation (calibrated, not derived): the exact softmax's departure from the linearised operator acts
on the rounds like one change of the ridge, the same at every D. By construction it reproduces the
certified exact first perfect round at D = infinity (a test shows it); per-round accuracies are the
linearised ones at lam_eff, not the exact ones. Its error at finite D is measured, not bounded: the finite-D
study reports how often its median lies outside the exact softmax's 95 % Monte Carlo interval
(``exact_theory_outside_exact`` in ``python -m sims.finite_dim``; P3 in paper_checks.md). Domain: label
counts whose exact block model reaches 100 % within ``rounds`` (else there is nothing to calibrate on:
``lam_eff`` is None) and whose linearised first round takes that value at some ridge within a factor
``SEARCH_FACTOR`` of lam.

The search is a bisection in log lambda to a relative width ``rel_tol`` (default 1e-3), on the float64
closed form of the linearised outputs; the midpoint ``lam_eff`` is then checked with :func:`theory.min_rounds`
(exact rational arithmetic at the sign decisions), and on a disagreement the bisection is redone with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .block_model import filters
from .conditions import min_rounds
from .exact_level import _check_cell, min_rounds_exact
from .validate import check_int, check_positive

__all__ = ["EffectiveLambda", "effective_lambda", "exact_finite_dim_prediction"]

SEARCH_FACTOR = 1e6  # the effective ridge is searched in [lam / SEARCH_FACTOR, lam * SEARCH_FACTOR]


@dataclass(frozen=True)
class EffectiveLambda:
    """The calibration of :func:`effective_lambda`.

    lam: the ridge of the exact fits; exact_first: the certified exact block model's first perfect round
    (None: not within ``rounds``; "undecided": not certified); linear_first: the linearised block model's
    first perfect round at lam; lam_eff: geometric midpoint of [lo, hi], the ridges at which the linearised
    first round equals exact_first (None, with lo and hi None, when exact_first is not a round or no ridge
    within the search range gives it); rel_tol: relative width to which lo and hi are bisected."""

    lam: float
    exact_first: int | None | str
    linear_first: int | None
    lam_eff: float | None
    lo: float | None
    hi: float | None
    rel_tol: float

    @property
    def ratio(self) -> float | None:
        """lam_eff / lam (None without a calibration)."""
        return None if self.lam_eff is None else self.lam_eff / self.lam


def _check(K, n, c, d, lam, counts, rounds, rel_tol):
    n = check_int("n", n, minimum=2)  # the finite-D theory needs a within-class spectrum (K: _check_cell)
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    rounds = check_int("rounds", rounds, minimum=0)
    rel_tol = check_positive("rel_tol", rel_tol)
    if rel_tol >= 1.0:
        raise ValueError(f"rel_tol == {rel_tol}, must be < 1 (a relative width of the ridge interval)")
    return K, n, c, d, lam, counts, rounds, rel_tol


def _first_float(K: int, n: int, c: float, d: float, lam: float, C: np.ndarray, horizon: int) -> float:
    """The linearised block model's first perfect round in float64 (math.inf: none up to ``horizon``).

    A fast stand-in for :func:`theory.min_rounds` (exact rationals at the sign decisions, ~20-150 ms a call)
    during the bisection, from the closed form of :func:`theory.type_outputs`; the ends found are then
    checked with :func:`theory.min_rounds` (and the exact bisection redone if one disagrees)."""
    alpha, beta, g = filters(K, n, c, d, lam)
    s = np.arange(1, horizon + 2, dtype=np.float64)[:, None, None, None]
    eye = np.eye(K)
    Cbar = C.mean(axis=0)
    out = (alpha ** s * (eye[None, None, :, :] - C[None, :, None, :])
           + beta ** s * (C - Cbar)[None, :, None, :] + g ** s * (Cbar - 1.0 / K)[None, None, None, :])  # [s, k, l, j]
    own = out[:, np.arange(K), :, np.arange(K)].transpose(1, 0, 2)  # [s, k, l]
    margin = own[..., None] - out
    margin[:, np.arange(K), :, np.arange(K)] = np.inf  # the true class against itself
    present = C > 0
    perfect = np.all((margin > 0) | ~present[None, :, :, None], axis=(1, 2, 3))
    hits = np.flatnonzero(perfect)
    return float(hits[0]) if hits.size else math.inf


def _bisect(pred, a: float, b: float, rel_tol: float) -> tuple[float, float]:
    """(a', b') with pred(a') false, pred(b') true and b' / a' <= 1 + rel_tol, given pred(a) false and
    pred(b) true (a < b); pred is monotone (false below a boundary, true above it)."""
    while b / a > 1.0 + rel_tol:
        m = math.sqrt(a * b)
        if pred(m):
            b = m
        else:
            a = m
    return a, b


def _interval(first, exact: int, lam: float, rel_tol: float):
    """(lo, hi): the least ridge with first <= exact and the greatest with first >= exact, to ``rel_tol``,
    searched in [lam / SEARCH_FACTOR, lam * SEARCH_FACTOR] (an end of that range where first is still
    ``exact`` cuts the interval there); None when no ridge in the range gives ``exact`` rounds."""
    lo_end, hi_end = lam / SEARCH_FACTOR, lam * SEARCH_FACTOR
    at_lam, at_lo, at_hi = first(lam), first(lo_end), first(hi_end)
    if at_hi > exact or at_lo < exact:
        return None
    if at_lo <= exact:
        lo = lo_end
    else:
        a, b = (lam, hi_end) if at_lam > exact else (lo_end, lam)
        lo = _bisect(lambda lm: first(lm) <= exact, a, b, rel_tol)[1]
    if at_hi >= exact:
        hi = hi_end
    else:
        a, b = (lam, hi_end) if at_lam >= exact else (lo_end, lam)
        hi = _bisect(lambda lm: first(lm) < exact, a, b, rel_tol)[0]
    return None if hi < lo else (lo, hi)


def effective_lambda(K: int, n: int, c: float, d: float, lam: float, counts, rounds: int = 60,
                     rel_tol: float = 1e-3) -> EffectiveLambda:
    """The ridge at which the linearised block model reaches 100 % at the certified exact level's round.

    counts: K x K whole label counts (counts[k, l] instances of class k given label l; rows sum to n).
    rounds: the exact level is certified for rounds 0..rounds. See the module doc."""
    K, n, c, d, lam, counts, rounds, rel_tol = _check(K, n, c, d, lam, counts, rounds, rel_tol)
    C = counts / n
    exact = min_rounds_exact(K, n, c, d, lam, counts, rounds)
    t0 = min_rounds(K, n, c, d, lam, C)
    none = EffectiveLambda(lam, exact, t0, None, None, None, rel_tol)
    t0 = math.inf if t0 is None else t0
    if not isinstance(exact, int):
        return none
    exact_first = {}

    def first_exact(lm: float) -> float:  # "never" as infinity: larger ridges need fewer rounds
        if lm not in exact_first:
            t = min_rounds(K, n, c, d, lm, C)
            exact_first[lm] = math.inf if t is None else t
        return exact_first[lm]

    exact_first[lam] = t0

    def first_float(lm: float) -> float:  # rounds beyond exact + 1 do not matter to the predicates
        return _first_float(K, n, c, d, lm, C, exact + 1)

    # the float64 search, its midpoint checked in exact arithmetic; on a disagreement (a near-tie that
    # float64 misjudged) the whole search again with the exact min_rounds, its ends checked too
    ends = _interval(first_float, exact, lam, rel_tol)
    if ends is None or first_exact(math.sqrt(ends[0] * ends[1])) != exact:
        ends = _interval(first_exact, exact, lam, rel_tol)
        if ends is None or first_exact(ends[0]) != exact or first_exact(ends[1]) != exact:
            return none  # the linearised round jumps over the exact one
    lo, hi = ends
    return EffectiveLambda(lam, exact, none.linear_first, float(math.sqrt(lo * hi)), float(lo), float(hi), rel_tol)


def exact_finite_dim_prediction(K: int, n: int, c: float, d: float, lam: float, D: float, counts, rounds: int = 60,
                                prob_tol: float = 1e-5, calibration: EffectiveLambda | None = None):
    """(calibration, prediction): :func:`effective_lambda` on ``counts`` (or the one given) and
    :func:`theory.finite_dim.finite_dim_prediction` at its ``lam_eff`` (None without a calibration).

    ``calibration`` lets one calibration (e.g. on the expected label counts) serve many label draws; it must
    have been computed at the same ``lam``."""
    from .finite_dim import _check_D, finite_dim_prediction

    # every argument is checked here: without a calibration finite_dim_prediction is not called
    K, n, c, d, lam, counts, rounds, _ = _check(K, n, c, d, lam, counts, rounds, 1e-3)
    D = _check_D(D)
    if D != math.inf and d < 0:
        raise ValueError(f"d == {d}, must be >= 0 at finite D (d is the squared length of the mixture's shared mean)")
    prob_tol = check_positive("prob_tol", prob_tol)
    if calibration is None:
        calibration = effective_lambda(K, n, c, d, lam, counts, rounds)
    elif not isinstance(calibration, EffectiveLambda):
        raise TypeError(f"calibration == {calibration!r}, must be an EffectiveLambda or None")
    elif calibration.lam != lam:
        raise ValueError(f"calibration was computed at lam == {calibration.lam}, not at lam == {lam}")
    if calibration.lam_eff is None:
        return calibration, None
    return calibration, finite_dim_prediction(K, n, c, d, calibration.lam_eff, D, counts, rounds=rounds,
                                              prob_tol=prob_tol)
