"""Finite-D study: the deterministic-equivalent theory (:mod:`theory.finite_dim`) against Monte Carlo.

For every noise setting (noise model, eta) and every noise dimension D = (D/N) N on a log grid of D/N,
a *cell* compares the linearised theory of self-distillation on the Gaussian mixture with linearised
self-distillation on sampled mixture Gram matrices:

* Monte Carlo: ``label_draws`` x ``samples_per_draw`` samples per cell. Label draw b samples every
  instance's given label independently from the corruption matrix (sampled, not exact, label counts);
  each of its samples draws its own training Gram matrix and train-fresh cross-Gram
  (:func:`sims.engine.features.sample_gmm_gram`: Bartlett/Wishart sampling for D >= N, explicit features
  below) and fits rounds 0..R of SD with :class:`sims.engine.LinearModel` (the explicit operator
  A = G (G + K N lambda I)^-1 formed once per sample, one product per round; every setting of the
  sample stacked through :class:`sims.engine.StackedLinear`). Recorded per round: training accuracy
  against the true labels, "perfect" (every instance correct, ties failing), accuracy on
  ``fresh_per_class`` fresh points per class from the same mixture sample.
* Exact softmax: on the first Gram sample of each of the first ``exact_draws`` label draws, the same rounds
  with the exact softmax fits of :class:`sims.engine.GramExact` (warm-started, residuals recorded): the
  linearised theory's distance from the exact softmax on the same samples, and the exact lag per sample
  (exact minus linearised first perfect round). Combined prediction: the finite-D linearised median plus
  the block model's exact lag (:func:`theory.min_rounds_exact` minus :func:`theory.min_rounds` on the
  expected label counts of the setting). Exact-level theory: for each of those draws,
  :func:`theory.finite_dim_exact.effective_lambda` on the draw's own counts (the ridge at which the
  linearised block model reaches 100 % at the certified exact round) and the finite-D theory at that
  ridge; the cell's prediction is the mean of their first-round CDFs (a draw whose exact block model is
  not perfect within R is predicted not perfect within R), compared with the exact samples' median.
* Theory: :func:`theory.finite_dim.finite_dim_prediction` on label draw b's own counts; the cell's
  prediction is the average over the label draws of the per-draw predictions (training and fresh
  accuracy, P(all correct), the CDF of the first perfect round). Every Monte Carlo sample belongs to
  one label draw, and every label draw carries the same number of samples, so the prediction is for
  exactly the mixture over label counts that the Monte Carlo samples (the honest comparison with
  sampled labels; the theory is not given the expected counts). ``prob_tol`` is the theory's
  orthant-probability tolerance; a call whose orthant integral does not converge is repeated once at
  10 ``prob_tol`` and counted (``theory_retries``), a second failure stops the run.

Per cell: first perfect round (median, q10, q90, least t with CDF >= q; rounds beyond R counted as
"not within R"), P(first = the block model's round for the draw's counts, :func:`theory.min_rounds`;
both "not within R" counts as equal), the Kolmogorov-Smirnov distance max_t |F_pred(t) - F_obs(t)|
over t = 0..R between the predicted and observed first-round CDFs, and whether the predicted median
lies outside the distribution-free 95 % order-statistic interval of the Monte Carlo median
[X_(j), X_(S+1-j)], j the largest integer with P(Binomial(S, 1/2) <= j - 1) <= 0.025 (coverage >= 95 %
for i.i.d. samples, also for discrete data; the stratified label draws make it conservative).
Per cell and round: predicted and observed training accuracy, fresh accuracy, P(all correct) and the
first-round CDF (observed means with their standard errors over samples).

Randomness: one ``--seed``. Labels of (noise, eta, draw b) come from
``SeedSequence(seed, spawn_key=(0, noise, eta, b))`` (the same draw at every D), the Gram matrices of
(D, sample s) from ``spawn_key=(1, D, s)`` (the same sample for every noise setting): common random
numbers. A work unit is one (D, label draw): the theory for every setting and the Monte Carlo of its
samples, cached under ``OUT/cache/<settings key>/``; results do not depend on ``--jobs``.

Command line: ``python -m sims.finite_dim --help``.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import theory
from theory.validate import check_block_correlations, check_fraction, check_int, check_positive

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import noise as noise_mod
from ..engine import rounds as sd_rounds
from ..engine.features import PAPER as SETTING
from ..engine.fit import GramExact, LinearModel, StackedLinear, limit_blas_threads
from ..engine.noise import one_hot
from .._cli import OneLineParser, atomic_write, check_output_dir, code_fingerprint, csv_text, write_text
from .runner import Unit, dask_client, run_units, settings_key

__all__ = [
    "Study",
    "QUICK",
    "RATIOS",
    "run_unit",
    "run_study",
    "median_interval",
    "quantiles",
    "summarize",
    "plot",
    "main",
    "COLUMNS",
    "CELL_COLUMNS",
    "UNIT_COLUMNS",
]

PROG = "python -m sims.finite_dim"
NOISES = ("symmetric", "superclass")
# D / N: log grid from 0.05 to 1e5, a factor of about 5 per step (rounded)
RATIOS = (0.05, 0.25, 1.25, 6.3, 32.0, 160.0, 800.0, 4000.0, 20000.0, 1e5)
DEFAULT_OUT = Path("results") / "finite_dim"
INTERVAL_LEVEL = 0.95
RETRY_FACTOR = 10.0

UNIT_COLUMNS = ("kind", "noise", "eta", "D", "draw", "sample", "block_first", "first", "train_accuracy",
                "fresh_accuracy", "p_all_correct", "first_cdf", "error", "prob_tol", "lam_eff")
COLUMNS = ("noise", "eta", "D", "D_over_N", "round", "train_accuracy_pred", "train_accuracy_obs",
           "train_accuracy_se", "fresh_accuracy_pred", "fresh_accuracy_obs", "fresh_accuracy_se",
           "p_all_correct_pred", "p_all_correct_obs", "first_cdf_pred", "first_cdf_obs",
           "train_accuracy_exact", "fresh_accuracy_exact", "first_cdf_exact", "train_accuracy_exact_pred",
           "fresh_accuracy_exact_pred", "first_cdf_exact_pred")
CELL_COLUMNS = ("noise", "eta", "D", "D_over_N", "samples", "label_draws", "block_first_expected",
                "block_first_median", "pred_median", "pred_q10", "pred_q90", "obs_median", "obs_q10", "obs_q90",
                "obs_median_lo", "obs_median_hi", "median_outside", "pred_p_equal_block", "obs_p_equal_block",
                "ks", "train_accuracy_0_pred", "train_accuracy_0_obs", "fresh_accuracy_0_pred",
                "fresh_accuracy_0_obs", "fresh_accuracy_last_pred", "fresh_accuracy_last_obs",
                "fresh_best_round_pred", "fresh_best_round_obs", "fresh_best_pred", "fresh_best_obs",
                "max_mc_residual", "max_theory_error", "theory_retries",
                "exact_samples", "exact_median", "exact_median_lo", "exact_median_hi", "pred_outside_exact",
                "lin_median_same_samples", "exact_lag_mean", "exact_lag_min", "exact_lag_max", "block_exact_expected",
                "combined_pred_median", "combined_outside_exact", "fresh_accuracy_0_exact", "fresh_accuracy_last_exact",
                "max_exact_residual", "exact_theory_draws", "exact_theory_uncalibrated", "lam_eff_ratio_mean",
                "exact_theory_median", "exact_theory_outside_exact", "exact_theory_ks", "fresh_accuracy_last_exact_pred")


@dataclass(frozen=True)
class Study:
    """Every setting of the study (defaults: K=4, n=100, c, d of the paper, lambda=5e-5 as the
    convergence study; 40 label draws x 5 Gram samples = 200 Monte Carlo samples per cell, the exact
    softmax on the first sample of the first 10 draws)."""

    K: int = SETTING["K"]
    n: int = 100
    c: float = SETTING["c"]
    d: float = SETTING["d"]
    lam: float = 5e-5
    superclass_size: int = 2
    settings: tuple = (("symmetric", 0.1), ("symmetric", 0.3), ("symmetric", 0.45), ("symmetric", 0.6),
                       ("superclass", 0.1), ("superclass", 0.2), ("superclass", 0.3), ("superclass", 0.4))
    ratios: tuple = RATIOS
    label_draws: int = 40
    samples_per_draw: int = 5
    max_rounds: int = 40
    fresh_per_class: int = 50
    prob_tol: float = 1e-4
    exact_draws: int = 10
    seed: int = 0

    @property
    def N(self) -> int:
        return self.K * self.n

    @property
    def samples(self) -> int:
        return self.label_draws * self.samples_per_draw

    @property
    def dims(self) -> tuple:
        """The noise dimensions D = round((D/N) N) (at least 1), in the order of ``ratios``."""
        return tuple(max(1, int(round(r * self.N))) for r in self.ratios)

    def validate(self) -> "Study":
        K = check_int("K", self.K, minimum=2)
        n = check_int("n", self.n, minimum=2)
        c, d = check_block_correlations(K, n, self.c, self.d)
        if d < 0:
            raise ValueError(f"d == {d}, must be >= 0 for the Gaussian mixture")
        check_positive("lam", self.lam)
        if not self.settings:
            raise ValueError("settings: give at least one (noise, eta)")
        for noise, eta in self.settings:
            if noise not in NOISES:
                raise ValueError(f"noise == {noise!r}, must be one of {', '.join(NOISES)}")
            check_fraction("eta", eta)
            noise_mod.noise_matrix(noise, K, eta, self.superclass_size)
        if len(set(self.settings)) != len(self.settings):
            raise ValueError("settings: duplicate (noise, eta)")
        if not self.ratios:
            raise ValueError("ratios: give at least one D/N")
        for r in self.ratios:
            check_positive("D/N", r)
        if len(set(self.dims)) != len(self.dims):
            raise ValueError(f"ratios {self.ratios} give duplicate dimensions {self.dims} at N == {self.N}")
        check_int("label_draws", self.label_draws, minimum=1)
        check_int("samples_per_draw", self.samples_per_draw, minimum=1)
        check_int("max_rounds", self.max_rounds, minimum=0)
        check_int("fresh_per_class", self.fresh_per_class, minimum=1)
        check_positive("prob_tol", self.prob_tol)
        check_int("exact_draws (--exact-draws)", self.exact_draws, minimum=0)
        check_int("seed (--seed)", self.seed, minimum=0)
        return self

    def key(self) -> str:
        """Hash of the settings a unit's rows depend on and of the code (the cache folder's name).

        ``ratios`` and ``label_draws`` are left out: a unit is one (D, draw) file, so a run with more
        dimensions or draws reuses the units it shares with an earlier run."""
        blob = {k: v for k, v in asdict(self).items() if k not in ("ratios", "label_draws")}
        return settings_key(blob, _code_fingerprint())


def _code_fingerprint() -> str:
    """Hash of theory/, the engine and the source of the functions that compute a unit's rows (not of
    the whole module: a change to the summaries or the figure keeps the cache)."""
    import hashlib
    import inspect

    unit_code = "".join(inspect.getsource(f) for f in (_labels, _cap, _prediction, _calibration, _exact_theory_row,
                                                         _floats, run_unit, _run_unit))
    return code_fingerprint() + hashlib.sha256(unit_code.encode()).hexdigest()


QUICK = dict(
    n=40,
    lam=1.25e-4,  # K N lambda = 0.08 as in the default
    settings=(("symmetric", 0.3), ("superclass", 0.3)),
    ratios=(0.25, 1.25, 32.0, 1e5),
    label_draws=10,
    samples_per_draw=10,
    max_rounds=30,
    fresh_per_class=25,
    exact_draws=6,  # the fewest samples with a 95 % interval of the median
)


# ---------------------------------------------------------------------------- one unit of work


def _eta_key(eta: float) -> int:
    return int(round(eta * 10_000))


def _labels(study: Study, noise: str, eta: float, draw: int):
    """True labels (class-major), sampled given labels and their (K, K) counts of label draw ``draw``."""
    rng = np.random.default_rng(np.random.SeedSequence(
        study.seed, spawn_key=(0, NOISES.index(noise), _eta_key(eta), draw)))
    y = np.repeat(np.arange(study.K), study.n)
    C = noise_mod.noise_matrix(noise, study.K, eta, study.superclass_size)
    z = noise_mod.corrupt_labels(y, C, rng, exact=False)
    return y, z, noise_mod.label_counts(y, z, study.K)


def _cap(t, R: int):
    """A round beyond R (or None) is "not within R": None."""
    return None if t is None or t > R else int(t)


def _prediction(study: Study, D: int, counts, lam: float | None = None):
    """(prediction, tolerance used): the theory at ``prob_tol`` (at ridge ``lam``, default the study's), once
    more at RETRY_FACTOR x on an unconverged orthant integral (the caller counts it); a second failure
    propagates."""
    from theory.finite_dim import finite_dim_prediction

    args = (study.K, study.n, study.c, study.d, study.lam if lam is None else lam, float(D), counts)
    try:
        return finite_dim_prediction(*args, rounds=study.max_rounds, prob_tol=study.prob_tol), study.prob_tol
    except RuntimeError as err:
        if "orthant" not in str(err):
            raise
    tol = study.prob_tol * RETRY_FACTOR
    return finite_dim_prediction(*args, rounds=study.max_rounds, prob_tol=tol), tol


@functools.lru_cache(maxsize=4096)
def _calibration(K: int, n: int, c: float, d: float, lam: float, counts: tuple, R: int):
    """theory.finite_dim_exact.effective_lambda on one draw's counts, once per process (every D of a draw
    shares it)."""
    from theory.finite_dim_exact import effective_lambda

    return effective_lambda(K, n, c, d, lam, np.array(counts, dtype=np.int64).reshape(K, K), R)


def _exact_theory_row(study: Study, D: int, draw: int, noise: str, eta: float, counts) -> dict:
    """The exact softmax's predicted first rounds for one draw: the finite-D theory at the draw's effective
    ridge (theory.finite_dim_exact). A draw whose exact block model does not reach 100 % within R (nothing
    to calibrate on) is predicted not to reach it within R at finite D either: its CDF is 0 (the finite-D
    lag is not smaller than the block model's in any measured cell)."""
    R = study.max_rounds
    cal = _calibration(study.K, study.n, study.c, study.d, study.lam,
                       tuple(int(v) for v in np.asarray(counts).ravel()), R)
    row = {"kind": "theory_exact", "noise": noise, "eta": float(eta), "D": int(D), "draw": int(draw), "sample": None,
           "block_first": cal.exact_first if isinstance(cal.exact_first, int) else None, "first": None,
           "p_all_correct": None, "lam_eff": cal.lam_eff}
    if cal.lam_eff is None:
        return {**row, "train_accuracy": None, "fresh_accuracy": None, "first_cdf": [0.0] * (R + 1), "error": 0.0,
                "prob_tol": None}
    pred, tol = _prediction(study, D, counts, lam=cal.lam_eff)
    return {**row, "train_accuracy": _floats(pred.train_accuracy), "fresh_accuracy": _floats(pred.fresh_accuracy),
            "first_cdf": _floats(pred.first_perfect_cdf),
            "error": float(max(pred.quadrature_error, pred.probability_error)), "prob_tol": float(tol)}


def _floats(a) -> list:
    return [float(v) for v in np.asarray(a, dtype=np.float64)]


def run_unit(study: Study, D: int, draw: int) -> list[dict]:
    """Rows of one (D, label draw): the theory for every setting, then the Monte Carlo of the draw's samples.

    Runs on one BLAS thread throughout (sampling included), in the main process as in a joblib or Dask
    worker, so that the rows are the same bytes for any --jobs."""
    with limit_blas_threads(1):
        return _run_unit(study, D, draw)


def _run_unit(study: Study, D: int, draw: int) -> list[dict]:
    K, n, R = study.K, study.n, study.max_rounds
    N = K * n
    labels = [_labels(study, noise, eta, draw) for noise, eta in study.settings]
    rows = []
    blocks = []
    for (noise, eta), (_, _, counts) in zip(study.settings, labels):
        pred, tol = _prediction(study, D, counts)
        block = _cap(pred.block_first_round, R)
        blocks.append(block)
        rows.append({
            "kind": "theory", "noise": noise, "eta": float(eta), "D": int(D), "draw": int(draw), "sample": None,
            "block_first": block, "first": None,
            "train_accuracy": _floats(pred.train_accuracy), "fresh_accuracy": _floats(pred.fresh_accuracy),
            "p_all_correct": _floats(pred.p_all_correct), "first_cdf": _floats(pred.first_perfect_cdf),
            "error": float(max(pred.quadrature_error, pred.probability_error)), "prob_tol": float(tol),
            "lam_eff": None,
        })
        if draw < study.exact_draws:
            rows.append(_exact_theory_row(study, D, draw, noise, eta, counts))
    y = labels[0][0]
    targets = np.vstack([one_hot(z, K) for _, z, _ in labels])
    for j in range(study.samples_per_draw):
        s = draw * study.samples_per_draw + j
        rng = np.random.default_rng(np.random.SeedSequence(study.seed, spawn_key=(1, int(D), s)))
        gram = feat.sample_gmm_gram(K, n, study.c, study.d, int(D), rng, fresh_per_class=study.fresh_per_class)
        engine = StackedLinear(LinearModel(gram.G, K, study.lam, explicit=True))
        fits = sd_rounds.sd(engine, targets, R)
        for i, (noise, eta) in enumerate(study.settings):
            part = slice(i * K, (i + 1) * K)
            train, fresh = [], []
            for fit in fits:
                train.append(metrics.accuracy(fit.outputs[part], y))
                fresh.append(metrics.accuracy(fit.R[part] @ gram.cross / (N * study.lam), gram.y_fresh))
            rows.append({
                "kind": "mc", "noise": noise, "eta": float(eta), "D": int(D), "draw": int(draw), "sample": int(s),
                "block_first": blocks[i], "first": metrics.first_perfect_round(train),
                "train_accuracy": train, "fresh_accuracy": fresh, "p_all_correct": None, "first_cdf": None,
                "error": float(max(float(f.residual[i]) for f in fits)), "prob_tol": None, "lam_eff": None,
            })
        if j == 0 and draw < study.exact_draws:
            exact = GramExact(gram.G, study.lam, cross=gram.cross)  # G prepared once for every setting
            for i, ((noise, eta), (_, z, _)) in enumerate(zip(study.settings, labels)):
                efits = sd_rounds.sd(exact, one_hot(z, K), R)
                train = [metrics.accuracy(f.outputs, y) for f in efits]
                rows.append({
                    "kind": "exact", "noise": noise, "eta": float(eta), "D": int(D), "draw": int(draw),
                    "sample": int(s), "block_first": blocks[i], "first": metrics.first_perfect_round(train),
                    "train_accuracy": train,
                    "fresh_accuracy": [metrics.accuracy(f.fresh_logits, gram.y_fresh) for f in efits],
                    "p_all_correct": None, "first_cdf": None,
                    "error": float(max(f.residual for f in efits)), "prob_tol": None, "lam_eff": None,
                })
    return rows


# ---------------------------------------------------------------------------- summaries


def median_interval(values, level: float = INTERVAL_LEVEL) -> tuple:
    """Distribution-free interval [X_(j), X_(S+1-j)] (order statistics, 1-based) for the median of the
    population the S values were drawn from: j the largest integer with P(Binomial(S, 1/2) <= j - 1)
    <= (1 - level) / 2, so the coverage is >= ``level`` (for discrete data too). With too few values
    for any j >= 1 the interval is (-inf, inf)."""
    from scipy.stats import binom

    x = np.sort(np.asarray(values, dtype=np.float64))
    S = x.size
    if S == 0:
        raise ValueError("values is empty, must hold at least one value")
    alpha = (1.0 - check_fraction("level", level)) / 2.0
    # P(B <= j - 1) is increasing in j: the largest admissible j
    j = 0
    while j + 1 <= S and binom.cdf(j, S, 0.5) <= alpha:
        j += 1
    if j == 0:
        return -math.inf, math.inf
    return float(x[j - 1]), float(x[S - j])


def quantiles(cdf) -> dict:
    """median, q10, q90 of a first-round CDF over t = 0..R: least t with CDF >= q, None beyond R
    (the rule of :func:`theory.finite_dim.first_perfect_quantiles`)."""
    from theory.finite_dim import first_perfect_quantiles

    q = first_perfect_quantiles(np.asarray(cdf, dtype=np.float64), None)
    return {k: q[k] for k in ("median", "q10", "q90")}


def _num(t, R):
    """A round as a number, "not within R" (None) as R + 1."""
    return float(R + 1) if t is None else float(t)


def _cells(study: Study, rows: list[dict]):
    """Per cell (noise, eta, D): (per-round rows, cell row)."""
    R = study.max_rounds
    T = R + 1
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["noise"], r["eta"], r["D"]), {"theory": [], "mc": [], "exact": [], "theory_exact": []})[r["kind"]].append(r)
    round_rows, cell_rows = [], []
    for noise, eta in study.settings:
        C = noise_mod.noise_matrix(noise, study.K, eta, study.superclass_size)
        block_exp = _cap(theory.min_rounds(study.K, study.n, study.c, study.d, study.lam, C), R)
        block_exact = _block_exact(study, C) if study.exact_draws else None
        for D in sorted(study.dims):
            g = groups.get((noise, float(eta), D))
            if g is None or not g["mc"] or not g["theory"]:
                raise ValueError(f"no rows for cell ({noise}, {eta}, D={D})")
            th, mc = g["theory"], g["mc"]
            p_cdf = np.mean([r["first_cdf"] for r in th], axis=0)
            p_train = np.mean([r["train_accuracy"] for r in th], axis=0)
            p_fresh = np.mean([r["fresh_accuracy"] for r in th], axis=0)
            p_all = np.mean([r["p_all_correct"] for r in th], axis=0)
            p_eq = float(np.mean([_p_equal(r["first_cdf"], r["block_first"]) for r in th]))
            S = len(mc)
            train = np.array([r["train_accuracy"] for r in mc], dtype=np.float64)
            fresh = np.array([r["fresh_accuracy"] for r in mc], dtype=np.float64)
            firsts = [r["first"] for r in mc]
            o_cdf = np.array([np.mean([f is not None and f <= t for f in firsts]) for t in range(T)])
            o_all = (train == 1.0).mean(axis=0)
            o_eq = float(np.mean([r["first"] == r["block_first"] for r in mc]))
            pq, oq = quantiles(p_cdf), quantiles(o_cdf)
            lo, hi = median_interval([_num(f, R) for f in firsts])
            pm = _num(pq["median"], R)
            se_train = train.std(axis=0, ddof=1) / math.sqrt(S) if S > 1 else np.full(T, np.nan)
            se_fresh = fresh.std(axis=0, ddof=1) / math.sqrt(S) if S > 1 else np.full(T, np.nan)
            ex = _exact_summary(g["exact"], mc, pm, block_exp, block_exact, R, g["theory_exact"], study.lam)
            ex_rounds = ex.pop("per_round")
            for t in range(T):
                round_rows.append({
                    "noise": noise, "eta": float(eta), "D": D, "D_over_N": D / study.N, "round": t,
                    "train_accuracy_pred": float(p_train[t]), "train_accuracy_obs": float(train[:, t].mean()),
                    "train_accuracy_se": float(se_train[t]),
                    "fresh_accuracy_pred": float(p_fresh[t]), "fresh_accuracy_obs": float(fresh[:, t].mean()),
                    "fresh_accuracy_se": float(se_fresh[t]),
                    "p_all_correct_pred": float(p_all[t]), "p_all_correct_obs": float(o_all[t]),
                    "first_cdf_pred": float(p_cdf[t]), "first_cdf_obs": float(o_cdf[t]),
                    **{k: None if v is None else float(v[t]) for k, v in ex_rounds.items()},
                })
            o_fresh = fresh.mean(axis=0)
            blocks = [_num(r["block_first"], R) for r in th]
            bm = float(np.median(blocks))
            cell_rows.append({
                "noise": noise, "eta": float(eta), "D": D, "D_over_N": D / study.N, "samples": S,
                "label_draws": len(th), "block_first_expected": block_exp,
                "block_first_median": None if bm > R else bm,
                "pred_median": pq["median"], "pred_q10": pq["q10"], "pred_q90": pq["q90"],
                "obs_median": oq["median"], "obs_q10": oq["q10"], "obs_q90": oq["q90"],
                "obs_median_lo": _round_or_none(lo, R), "obs_median_hi": _round_or_none(hi, R),
                "median_outside": bool(pm < lo or pm > hi),
                "pred_p_equal_block": p_eq, "obs_p_equal_block": o_eq,
                "ks": float(np.max(np.abs(p_cdf - o_cdf))),
                "train_accuracy_0_pred": float(p_train[0]), "train_accuracy_0_obs": float(train[:, 0].mean()),
                "fresh_accuracy_0_pred": float(p_fresh[0]), "fresh_accuracy_0_obs": float(o_fresh[0]),
                "fresh_accuracy_last_pred": float(p_fresh[-1]), "fresh_accuracy_last_obs": float(o_fresh[-1]),
                "fresh_best_round_pred": int(np.argmax(p_fresh)), "fresh_best_round_obs": int(np.argmax(o_fresh)),
                "fresh_best_pred": float(p_fresh.max()), "fresh_best_obs": float(o_fresh.max()),
                "max_mc_residual": float(max(r["error"] for r in mc)),
                "max_theory_error": float(max(r["error"] for r in th)),
                "theory_retries": int(sum(r["prob_tol"] > study.prob_tol for r in th)),
                **ex,
            })
    return round_rows, cell_rows


def _block_exact(study: Study, C):
    """The exact block model's first perfect round on the setting's expected label counts (None: not within R,
    not certified, or C * n not whole, e.g. symmetric eta = 0.1 at K = 4, n = 100: no exact counts exist)."""
    shares = np.asarray(C, dtype=np.float64) * study.n
    if np.any(np.abs(shares - np.round(shares)) > 1e-9 * study.n):
        return None
    counts = theory.exact_label_counts(C, study.n)
    first = theory.min_rounds_exact(study.K, study.n, study.c, study.d, study.lam, counts, study.max_rounds)
    return first if isinstance(first, int) else None


def _exact_summary(ex: list[dict], mc: list[dict], pred_median: float, block_lin, block_exact, R: int,
                   th_ex: list[dict], lam: float) -> dict:
    """Cell fields of the exact-softmax level (None without exact rows): its median first round and 95 %
    interval, whether the linearised theory's median, the combined prediction (that median plus the block
    model's exact lag) and the exact-level theory (theory.finite_dim_exact, the mean of its CDFs over the
    exact samples' label draws) lie outside it, the paired lag exact - linearised on the same samples
    ("not within R" counted as R + 1), and the per-round means."""
    none = {k: None for k in CELL_COLUMNS[CELL_COLUMNS.index("exact_samples"):]}
    if not ex:
        return {**none, "exact_samples": 0, "per_round": {"train_accuracy_exact": None, "fresh_accuracy_exact": None,
                                                        "first_cdf_exact": None, "train_accuracy_exact_pred": None,
                                                        "fresh_accuracy_exact_pred": None, "first_cdf_exact_pred": None}}
    T = R + 1
    lin = {(r["draw"], r["sample"]): r["first"] for r in mc}
    firsts = [r["first"] for r in ex]
    cdf = np.array([np.mean([f is not None and f <= t for f in firsts]) for t in range(T)])
    lo, hi = median_interval([_num(f, R) for f in firsts])
    lags = [_num(r["first"], R) - _num(lin[(r["draw"], r["sample"])], R) for r in ex]
    lin_same = quantiles(np.array([np.mean([lin[(r["draw"], r["sample"])] is not None
                                            and lin[(r["draw"], r["sample"])] <= t for r in ex]) for t in range(T)]))
    combined = None
    if block_lin is not None and block_exact is not None and pred_median <= R:
        combined = pred_median + (block_exact - block_lin)
    finite = not (math.isinf(lo) or math.isinf(hi))  # fewer than 6 samples give no 95 % interval

    def outside(v):
        return None if v is None or not finite else bool(v < lo or v > hi)

    train = np.array([r["train_accuracy"] for r in ex], dtype=np.float64)
    fresh = np.array([r["fresh_accuracy"] for r in ex], dtype=np.float64)
    draws = {r["draw"] for r in ex}
    th_ex = [r for r in th_ex if r["draw"] in draws]
    if {r["draw"] for r in th_ex} != draws:
        raise ValueError(f"exact-level theory rows missing for some of the draws {sorted(draws)}")
    # weighted by the exact samples per draw (one each): the prediction is for the same label draws; the
    # accuracies only over the calibrated draws (an uncalibrated draw has a CDF, 0, but no accuracies)
    p_cdf = np.mean([r["first_cdf"] for r in th_ex], axis=0)
    calibrated = [r for r in th_ex if r["lam_eff"] is not None]
    ratios = [r["lam_eff"] for r in calibrated]
    p_train = np.mean([r["train_accuracy"] for r in calibrated], axis=0) if calibrated else None
    p_fresh = np.mean([r["fresh_accuracy"] for r in calibrated], axis=0) if calibrated else None
    th_median = quantiles(p_cdf)["median"]
    return {
        "exact_samples": len(ex), "exact_median": quantiles(cdf)["median"],
        "exact_median_lo": _round_or_none(lo, R) if finite else None,
        "exact_median_hi": _round_or_none(hi, R) if finite else None,
        "pred_outside_exact": outside(pred_median),
        "lin_median_same_samples": lin_same["median"],
        "exact_lag_mean": float(np.mean(lags)), "exact_lag_min": float(np.min(lags)), "exact_lag_max": float(np.max(lags)),
        "block_exact_expected": block_exact, "combined_pred_median": combined,
        "combined_outside_exact": outside(combined),
        "fresh_accuracy_0_exact": float(fresh[:, 0].mean()), "fresh_accuracy_last_exact": float(fresh[:, -1].mean()),
        "max_exact_residual": float(max(r["error"] for r in ex)),
        "exact_theory_draws": len(th_ex), "exact_theory_uncalibrated": len(th_ex) - len(ratios),
        "lam_eff_ratio_mean": float(np.mean(ratios)) / lam if ratios else None,
        "exact_theory_median": th_median, "exact_theory_outside_exact": outside(_num(th_median, R)),
        "exact_theory_ks": float(np.max(np.abs(p_cdf - cdf))), "fresh_accuracy_last_exact_pred": None if p_fresh is None else float(p_fresh[-1]),
        "per_round": {"train_accuracy_exact": train.mean(axis=0), "fresh_accuracy_exact": fresh.mean(axis=0),
                      "first_cdf_exact": cdf, "train_accuracy_exact_pred": p_train,
                      "fresh_accuracy_exact_pred": p_fresh, "first_cdf_exact_pred": p_cdf},
    }


def _round_or_none(v: float, R: int):
    """An order statistic (R + 1 = "not within R") back to a round or None; an infinite end stays a float."""
    if math.isinf(v):
        return v
    return None if v > R else int(v)


def _p_equal(cdf, block) -> float:
    """Predicted P(first perfect round = block) for one draw; block None: P(not within R)."""
    from theory.finite_dim import first_perfect_quantiles

    return float(first_perfect_quantiles(np.asarray(cdf, dtype=np.float64), block)["p_equal_block"])


def summarize(study: Study, cell_rows: list[dict], elapsed: float, jobs) -> dict:
    per_noise = {}
    for noise in dict.fromkeys(n for n, _ in study.settings):
        cells = [c for c in cell_rows if c["noise"] == noise]
        per_noise[noise] = {
            "cells": len(cells),
            "median_outside_interval": int(sum(c["median_outside"] for c in cells)),
            "mean_ks": float(np.mean([c["ks"] for c in cells])),
            "max_ks": float(np.max([c["ks"] for c in cells])),
        }
    below = [c for c in cell_rows if c["D"] < study.N]
    return {
        "study": {**asdict(study), "N": study.N, "dims": list(study.dims), "samples": study.samples},
        "cells": cell_rows,
        "per_noise": per_noise,
        "median_outside_interval": int(sum(c["median_outside"] for c in cell_rows)),
        "cells_total": len(cell_rows),
        "below_N": {
            "cells": len(below),
            "teacher_train_accuracy_below_1_obs": int(sum(c["train_accuracy_0_obs"] < 1.0 for c in below)),
            "fresh_gain_obs": [
                {"noise": c["noise"], "eta": c["eta"], "D": c["D"],
                 "fresh_0": c["fresh_accuracy_0_obs"], "fresh_best": c["fresh_best_obs"],
                 "best_round": c["fresh_best_round_obs"], "fresh_last": c["fresh_accuracy_last_obs"],
                 "fresh_0_pred": c["fresh_accuracy_0_pred"], "fresh_best_pred": c["fresh_best_pred"],
                 "best_round_pred": c["fresh_best_round_pred"]}
                for c in below],
        },
        "theory_retries": int(sum(c["theory_retries"] for c in cell_rows)),
        "exact": _exact_totals(cell_rows),
        "max_mc_residual": float(max(c["max_mc_residual"] for c in cell_rows)),
        "max_theory_error": float(max(c["max_theory_error"] for c in cell_rows)),
        "runtime_seconds": elapsed,
        "jobs": jobs,
        "notes": (
            "rounds null: not within max_rounds; prediction = mean over the cell's label draws of the theory on "
            "each draw's own counts; median interval: distribution-free order-statistic interval "
            f"(coverage >= {INTERVAL_LEVEL:.0%}); ks: max over rounds 0..R of |CDF_pred - CDF_obs| of the first "
            "perfect round; block model: theory.min_rounds on the draw's counts (block_first_expected: on the "
            "expected label shares C); exact: the exact softmax on the first Gram sample of the first exact_draws "
            "label draws, lag = exact - linearised first round on the same sample (not within R counted as R + 1), "
            "combined = the linearised theory's median + the exact block model's lag on the expected counts; "
            "exact_theory = theory.finite_dim_exact: the finite-D theory at each exact draw's effective ridge "
            "(calibrated on its certified exact block model), averaged over the exact samples' draws"),
    }


def _exact_totals(cell_rows: list[dict]) -> dict:
    """Counts over the cells with exact-softmax samples: the linearised theory's median (and the combined
    prediction) outside the exact level's 95 % interval, and the paired exact lag."""
    cells = [c for c in cell_rows if c["exact_samples"]]
    if not cells:
        return {"cells": 0}
    informative = [c for c in cells if c["pred_outside_exact"] is not None]
    comb = [c for c in cells if c["combined_outside_exact"] is not None]
    return {
        "cells": len(cells),
        "samples_per_cell": sorted({c["exact_samples"] for c in cells}),
        "cells_with_interval": len(informative),
        "pred_outside_exact_interval": int(sum(c["pred_outside_exact"] for c in informative)),
        "combined_cells": len(comb),
        "combined_outside_exact_interval": int(sum(c["combined_outside_exact"] for c in comb)),
        "exact_theory_cells": len(informative),
        "exact_theory_outside_exact_interval": int(sum(c["exact_theory_outside_exact"] for c in informative)),
        "exact_theory_max_ks": float(max(c["exact_theory_ks"] for c in cells)),
        "uncalibrated_draws": int(sum(c["exact_theory_uncalibrated"] for c in cells)),
        "mean_lag": float(np.mean([c["exact_lag_mean"] for c in cells])),
        "min_lag": float(min(c["exact_lag_min"] for c in cells)),
        "max_lag": float(max(c["exact_lag_max"] for c in cells)),
        "max_exact_residual": float(max(c["max_exact_residual"] for c in cells)),
    }


# ---------------------------------------------------------------------------- running


def _unit_path(cache: Path, D: int, b: int) -> Path:
    return cache / f"D{int(D)}-draw{int(b)}.json"


def _sort_key(r):
    return (r["kind"], NOISES.index(r["noise"]), r["eta"], r["D"], r["draw"], -1 if r["sample"] is None else r["sample"])


def run_study(study: Study, jobs: int = 1, cache_dir: Path | None = None, progress: bool = True,
              backend: str | None = None):
    """Run every (D, draw) unit (cached ones are read); returns (round rows, cell rows, summary)."""
    study.validate()
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_OUT / "cache") / study.key()
    cache.mkdir(parents=True, exist_ok=True)
    # the smallest D first: their theory calls (orthant integrals of wide margins) are the slowest
    units = [Unit(_unit_path(cache, D, b), run_unit, (study, D, b), UNIT_COLUMNS) for D in sorted(study.dims)
             for b in range(study.label_draws)]
    start = time.perf_counter()
    run = run_units(units, jobs=jobs, backend=backend, progress=progress, desc="finite-D (D, draw) units", prog=PROG)
    # completion order depends on --jobs; the averages are sums, whose order must not
    rows = sorted(run.rows, key=_sort_key)
    round_rows, cell_rows = _cells(study, rows)
    elapsed = time.perf_counter() - start
    summary = summarize(study, cell_rows, elapsed, jobs)
    summary["units_computed"] = run.computed
    summary["units_from_cache"] = run.from_cache
    summary["unit_compute_seconds"] = float(run.compute_seconds)
    summary["cache_warnings"] = run.warnings
    return round_rows, cell_rows, summary


# ---------------------------------------------------------------------------- figure


def plot(study: Study, round_rows: list[dict], cell_rows: list[dict], path_png: Path):
    """Per noise model (columns): median first perfect round, teacher training accuracy and fresh accuracy
    (teacher and last round) against D/N, predicted (lines) and observed (markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = study.max_rounds
    noises = list(dict.fromkeys(n for n, _ in study.settings))
    fig, axes = plt.subplots(3, len(noises), figsize=(6.2 * len(noises), 12), squeeze=False,
                             constrained_layout=True)
    cmap = plt.get_cmap("tab10")
    for col, noise in enumerate(noises):
        etas = [e for nz, e in study.settings if nz == noise]
        ax_m, ax_t, ax_f = axes[0, col], axes[1, col], axes[2, col]
        for i, eta in enumerate(etas):
            color = cmap(i)
            cells = sorted((c for c in cell_rows if c["noise"] == noise and c["eta"] == eta), key=lambda c: c["D"])
            x = np.array([c["D_over_N"] for c in cells])
            pm = np.array([_num(c["pred_median"], R) for c in cells])
            om = np.array([_num(c["obs_median"], R) for c in cells])
            lo = np.array([_num(c["obs_median_lo"], R) for c in cells])
            hi = np.array([_num(c["obs_median_hi"], R) for c in cells])
            ax_m.plot(x, pm, "-", color=color, lw=1.4, label=f"eta={eta:g}")
            ax_m.errorbar(x, om, yerr=[om - lo, hi - om], fmt="o", color=color, ms=4, capsize=2)
            for c, xv, yv in zip(cells, x, om):
                if c["median_outside"]:
                    ax_m.plot([xv], [yv], "x", color="k", ms=9)
            ex_cells = [(xv, c) for xv, c in zip(x, cells) if c["exact_samples"]]
            if ex_cells:  # the exact softmax on a subset of the samples: its median, offset to the right
                ax_m.plot([xv * 1.25 for xv, _ in ex_cells], [_num(c["exact_median"], R) for _, c in ex_cells],
                          "^", color=color, ms=5, mfc="none")
                comb = [(xv * 1.25, c["combined_pred_median"]) for xv, c in ex_cells if c["combined_pred_median"] is not None]
                if comb:  # the linearised theory plus the exact block model's lag
                    ax_m.plot(*zip(*comb), ":", color=color, lw=0.9)
                ax_m.plot([xv * 1.25 for xv, _ in ex_cells],  # the exact-level theory (effective ridge)
                          [_num(c["exact_theory_median"], R) for _, c in ex_cells], "--", color=color, lw=1.2)
            # the label draws are the same at every D: one block-model value per setting
            ax_m.axhline(_num(cells[0]["block_first_median"], R), color=color, ls=":", lw=1)
            ax_t.plot(x, [c["train_accuracy_0_pred"] for c in cells], "-", color=color, lw=1.4)
            ax_t.plot(x, [c["train_accuracy_0_obs"] for c in cells], "o", color=color, ms=4, label=f"eta={eta:g}")
            ax_f.plot(x, [c["fresh_accuracy_0_pred"] for c in cells], "--", color=color, lw=1.2)
            ax_f.plot(x, [c["fresh_accuracy_0_obs"] for c in cells], "s", color=color, ms=4, mfc="none")
            ax_f.plot(x, [c["fresh_accuracy_last_pred"] for c in cells], "-", color=color, lw=1.4)
            ax_f.plot(x, [c["fresh_accuracy_last_obs"] for c in cells], "o", color=color, ms=4,
                      label=f"eta={eta:g}")
        ax_m.axhline(R + 1, color="grey", lw=0.8)
        ax_m.text(x.min(), R + 1.4, f"not perfect by round {R}", fontsize=7, color="grey")
        ax_m.set_ylim(-1, R + 4)
        ax_m.set_ylabel("median first round with 100 % training accuracy")
        ax_m.set_title(f"{noise} noise: linearised theory (lines) vs Monte Carlo (dots, 95 % interval\n"
                       "of the median; x: theory outside it), exact softmax (triangles; dashed: theory at\n"
                       "the effective ridge, dotted: + the block model's exact lag); flat dotted: block model",
                       fontsize=9)
        ax_m.legend(fontsize=7, loc="best")
        ax_t.set_ylabel("teacher (round 0) training accuracy, true labels")
        ax_t.set_title(f"{noise}: teacher's training accuracy, theory (lines) vs Monte Carlo (dots)", fontsize=9)
        ax_t.legend(fontsize=7)
        ax_f.set_ylabel("fresh-sample accuracy")
        ax_f.set_title(f"{noise}: fresh accuracy, teacher (dashed / squares) and round {R} (solid / dots)",
                       fontsize=9)
        ax_f.legend(fontsize=7)
        for ax in (ax_m, ax_t, ax_f):
            ax.set_xscale("log")
            ax.axvline(1.0, color="k", lw=0.6, ls="-.")
            ax.set_xlabel("D / N (dash-dot: D = N)")
    fig.suptitle(f"Finite-D linearised theory vs Monte Carlo on sampled mixture Gram matrices (K={study.K}, "
                 f"n={study.n}, c={study.c}, d={study.d}, lambda={study.lam:g};\n{study.samples} samples per cell, "
                 f"{study.label_draws} label draws; exact softmax on {min(study.exact_draws, study.label_draws)} of "
                 "them)", fontsize=10)

    def w(tmp):
        fig.savefig(tmp, format="png", dpi=110)

    atomic_write(path_png, w)
    plt.close(fig)


# ---------------------------------------------------------------------------- command line


def build_parser():
    p = OneLineParser(
        prog=PROG,
        description="The finite-D (deterministic-equivalent) linearised theory of self-distillation on the Gaussian "
        "mixture against Monte Carlo on sampled mixture Gram matrices, per noise setting and D/N: first perfect "
        "round (median, q10, q90, P(= block model's round), KS distance, 95 % interval of the Monte Carlo median), "
        "training and fresh accuracy per round. Writes finite_dim.csv (cell x round), finite_dim_cells.csv, "
        "finite_dim.json and finite_dim.png (finite_dim_quick.* with --quick) to --out. Runs resume from the "
        "cache under --out; Ctrl-C keeps the finished units.",
    )
    p.add_argument("--quick", action="store_true",
                   help="small run (n=40, 2 settings, 4 D/N, 10 label draws x 10 samples per cell; under a minute)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel joblib workers (-1: all cores)")
    p.add_argument("--dask-scheduler", default=None,
                   help="address of a Dask scheduler: run units on that cluster through joblib's dask backend")
    p.add_argument("--exact-draws", type=int, default=None, metavar="B",
                   help="label draws whose first Gram sample is also fitted with the exact softmax (default 10; "
                   "--quick 6; 0: none; fewer than 6 give no 95 %% interval of its median)")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the study")
    p.add_argument("--out", default=None, help="output folder (default results/finite_dim/); the cache goes to OUT/cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def study_from_args(args) -> Study:
    base = dict(QUICK) if args.quick else {}
    if args.exact_draws is not None:
        base["exact_draws"] = args.exact_draws
    return replace(Study(), **base, seed=args.seed).validate()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        jobs = check_int("--jobs", args.jobs, minimum=-1)
        if jobs == 0:
            raise ValueError("--jobs == 0, must be >= 1 or -1 (all cores)")
        study = study_from_args(args)
        out = check_output_dir("--out", Path(args.out) if args.out is not None else DEFAULT_OUT)
    except ValueError as err:
        return parser.fail(err)
    client = None
    if args.dask_scheduler is not None:
        try:
            client = dask_client(args.dask_scheduler)
        except ValueError as err:
            return parser.fail(err)
    stem = "finite_dim_quick" if args.quick else "finite_dim"
    cache = out / "cache"
    try:
        try:
            if client is not None:
                round_rows, cell_rows, summary = run_study(study, jobs=-1, cache_dir=cache,
                                                           progress=not args.no_progress, backend="dask")
            else:
                round_rows, cell_rows, summary = run_study(study, jobs=jobs, cache_dir=cache,
                                                           progress=not args.no_progress)
        finally:
            if client is not None:
                client.close()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; finished (D, draw) units are kept in {cache}; run the same command again to "
              "resume", file=sys.stderr)
        return 130
    except RuntimeError as err:  # the theory's quadrature or orthant integral did not converge
        return parser.fail(f"theory failed: {' '.join(str(err).split())}", 3)
    write_text(out / f"{stem}.csv", csv_text(round_rows, COLUMNS))
    write_text(out / f"{stem}_cells.csv", csv_text(cell_rows, CELL_COLUMNS))
    write_text(out / f"{stem}.json", json.dumps(summary, indent=2))
    plot(study, round_rows, cell_rows, out / f"{stem}.png")
    print(f"{len(cell_rows)} cells ({study.samples} samples each) in {summary['runtime_seconds']:.1f} s "
          f"({summary['units_computed']} units computed, {summary['units_from_cache']} from the cache)")
    R = study.max_rounds

    def r(v):
        return f">{R}" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    for c in cell_rows:
        print(f"  {c['noise'][:5]} eta={c['eta']:<4g} D/N={c['D_over_N']:<8.3g} median first round theory "
              f"{r(c['pred_median']):>3} MC {r(c['obs_median']):>3} [{r(c['obs_median_lo'])}, {r(c['obs_median_hi'])}]"
              f"{' OUTSIDE' if c['median_outside'] else '        '} block {r(c['block_first_median']):>4}  "
              f"KS {c['ks']:.3f}  exact {r(c['exact_median']) if c['exact_samples'] else '-':>3}  fresh t=0 {c['fresh_accuracy_0_pred']:.3f}/{c['fresh_accuracy_0_obs']:.3f} "
              f"t={R} {c['fresh_accuracy_last_pred']:.3f}/{c['fresh_accuracy_last_obs']:.3f}")
    ex = summary["exact"]
    if ex["cells"]:
        print(f"exact softmax ({ex['samples_per_cell']} samples per cell): the linearised theory's median is outside "
              f"the exact level's 95 % interval in {ex['pred_outside_exact_interval']} of {ex['cells_with_interval']} "
              f"cells with an interval, the "
              f"combined prediction (+ the block model's exact lag) in {ex['combined_outside_exact_interval']} of "
              f"{ex['combined_cells']}; paired lag exact - linearised: mean {ex['mean_lag']:.2f}, range "
              f"{ex['min_lag']:g} .. {ex['max_lag']:g} rounds")
    for noise, s in summary["per_noise"].items():
        print(f"{noise}: theory median outside the MC 95 % interval in {s['median_outside_interval']} of "
              f"{s['cells']} cells; KS mean {s['mean_ks']:.3f}, max {s['max_ks']:.3f}")
    print(f"csv:    {out / (stem + '.csv')}\ncells:  {out / (stem + '_cells.csv')}\njson:   {out / (stem + '.json')}\n"
          f"figure: {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
