"""Convergence study: the Gaussian mixture's exact softmax SD approaching the exact block model as D grows.

For every noise setting (noise model, eta; exact label counts, so that the
block model and the linearised theory are deterministic), every noise
dimension D on a log grid and every seed, one *run* samples the mixture's
training Gram matrix and its cross-Gram with fresh points
(:func:`sims.engine.features.sample_gmm_gram`, exact Bartlett/Wishart sampling for
D >= N, explicit features below), fits rounds 0..R of self-distillation with
the exact softmax (:func:`sims.engine.fit_gram`, warm-started across rounds)
and records per round:

* training accuracy against the true labels (``perfect``: every instance
  correct, ties fail) and fresh-sample accuracy;
* ``max_abs_diff``: max over instances and classes of ``|P_mix - P_block|``,
  the distance of the mixture's training outputs from those of the exact block
  model (:func:`sims.engine.fit_block` through :class:`sims.engine.BlockExact`) on the
  same labels.

The block model's and the linearised theory's rows (``theory.rounds_report``
on the sample's label counts) are deterministic per noise setting and are
written once. The summary (JSON) gives, per D:

* the first round at which the mixture reaches 100 % training accuracy, next
  to the block model's and the theory's;
* informative-cell agreement mixture vs block model: cells (noise, eta, seed,
  round) where either side is perfect, with the four confusion counts;
* ``first_round_match``: share of runs whose first perfect round equals the
  block model's (both never within the cap counts as equal);

and overall: the log-log slope of the median ``max_abs_diff`` against D (the
rate at which the mixture approaches the block model) with its fit range, and
``smallest_matching_D``, the smallest D of the grid from which on (for it and
every larger D of the grid) the first perfect round matches the block model's
in at least 95 % of runs.

Randomness: one ``--seed``; labels of (noise, eta, seed) come from
``SeedSequence(seed, spawn_key=(0, noise, eta, seed index))``, the Gram of
(D, seed) from ``spawn_key=(1, seed index, D)`` (the same mixture sample for
every noise setting: common random numbers). Results do not depend on
``--jobs``. Finished work units (one (D, seed) each) are cached under
``OUT/cache``; an interrupted run started again resumes.

Command line: ``python -m sims.convergence --help``.
"""

from __future__ import annotations

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
from ..engine.fit import BlockExact, GramExact, limit_blas_threads
from ..engine.measures import Agreement
from ..engine.noise import one_hot
from .._cli import OneLineParser, atomic_write, check_output_dir, code_fingerprint, csv_text, write_text
from .runner import Unit, dask_client, run_units, settings_key

__all__ = [
    "Study",
    "QUICK",
    "PAPER",
    "log_dims",
    "run_unit",
    "run_study",
    "confusion",
    "loglog_slope",
    "smallest_matching_dim",
    "summarize",
    "rows_to_csv",
    "plot",
    "main",
    "COLUMNS",
]

NOISES = ("symmetric", "superclass")
LEVELS = ("mixture", "block", "theory")
COLUMNS = ("noise", "eta", "level", "D", "seed", "round", "train_accuracy", "fresh_accuracy", "perfect",
           "max_abs_diff", "residual")
MATCH_SHARE = 0.95  # first perfect round equal to the block model's in at least this share of runs
DEFAULT_OUT = Path("results") / "convergence"


def log_dims(N: int, top: int = 10**7, per_decade: float = 2.0) -> tuple:
    """Log grid of noise dimensions from N/4 to ``top`` with about ``per_decade`` points per decade, plus N."""
    N = check_int("N", N, minimum=1)
    lo = max(1, N // 4)
    k = max(2, int(round(per_decade * math.log10(top / lo))) + 1)
    grid = {int(round(v)) for v in np.geomspace(lo, top, k)} | {N}
    return tuple(sorted(grid))


@dataclass(frozen=True)
class Study:
    """Every setting of the study (defaults: K=4, n=100, lambda=5e-5, the paper's K N lambda).

    ``settings``: (noise, eta) pairs; each eta must give whole label counts
    (C_kj n). The defaults put the theory's first perfect round at 8..18 and the
    exact block model's at 9..24.
    """

    K: int = SETTING["K"]
    n: int = 100
    c: float = SETTING["c"]
    d: float = SETTING["d"]
    lam: float = 5e-5
    superclass_size: int = 2
    settings: tuple = (("symmetric", 0.3), ("symmetric", 0.48), ("symmetric", 0.6), ("symmetric", 0.66),
                       ("superclass", 0.2), ("superclass", 0.3), ("superclass", 0.35), ("superclass", 0.4))
    dims: tuple = log_dims(400)
    seeds: int = 5
    max_rounds: int = 40
    fresh_per_class: int = 100
    seed: int = 0

    @property
    def N(self) -> int:
        return self.K * self.n

    def validate(self) -> "Study":
        K = check_int("K (--classes)", self.K, minimum=2)
        n = check_int("n (--per-class)", self.n, minimum=1)
        try:
            c, d = check_block_correlations(K, n, self.c, self.d)
        except ValueError as err:
            raise ValueError(f"--within/--between: {err}") from None
        if d < 0:
            raise ValueError(f"d (--between) == {d}, must be >= 0 for the Gaussian mixture")
        check_positive("lam (--lam)", self.lam)
        if not self.settings:
            raise ValueError("--etas: give at least one noise rate")
        for noise, eta in self.settings:
            if noise not in NOISES:
                raise ValueError(f"noise == {noise!r}, must be one of {', '.join(NOISES)}")
            check_fraction("eta (--etas)", eta)
            if noise == "superclass":
                size = check_int("superclass_size", self.superclass_size, minimum=2)
                if K % size:
                    raise ValueError(f"superclass_size == {size}, must divide K (--classes) == {K}")
            C = noise_mod.noise_matrix(noise, K, eta, self.superclass_size)
            try:
                noise_mod.exact_counts(C, [n] * K)
            except ValueError as err:
                raise ValueError(f"--etas: {noise} eta == {eta}: {err}") from None
        if len(set(self.settings)) != len(self.settings):
            raise ValueError("--etas: duplicate noise rates")
        if not self.dims:
            raise ValueError("--dims: give at least one dimension")
        for D in self.dims:
            check_int("D (--dims)", D, minimum=1)
        if len(set(self.dims)) != len(self.dims):
            raise ValueError("--dims: duplicate dimensions")
        check_int("seeds (--seeds)", self.seeds, minimum=1)
        check_int("max_rounds (--max-rounds)", self.max_rounds, minimum=0)
        check_int("fresh_per_class (--fresh-per-class)", self.fresh_per_class, minimum=1)
        check_int("seed (--seed)", self.seed, minimum=0)
        return self

    def key(self) -> str:
        """Hash of the settings a unit's rows depend on and of the code it runs (the cache folder's name).

        ``dims`` and ``seeds`` are left out: a unit is one (D, seed) file, so a run with more dimensions or
        seeds reuses the units it shares with an earlier run."""
        blob = {k: v for k, v in asdict(self).items() if k not in ("dims", "seeds")}
        return settings_key(blob, _code_fingerprint())


def _code_fingerprint() -> str:
    """Hash of the source of theory/ and of the engine (:func:`sims._cli.code_fingerprint`)."""
    return code_fingerprint()


QUICK = dict(
    n=40,
    lam=1.25e-4,  # K N lambda as in the default
    settings=(("symmetric", 0.3), ("superclass", 0.2)),
    dims=(40, 160, 1000, 10**4, 10**6),
    seeds=2,
    max_rounds=25,
    fresh_per_class=50,
)

# The paper's numerical setting (n = 500, lambda = 1e-5); noise rates with whole label counts
# (eta/3 * 500 and eta * 500 integers) whose theory rounds are 7..12. The grid goes beyond 1e7: at this N
# the first perfect round matched the block model's in 6 of 8 runs at D = 1e7 and in 8 of 8 at 3.2e7.
PAPER = dict(
    n=SETTING["n"],
    lam=SETTING["lam"],
    settings=(("symmetric", 0.3), ("symmetric", 0.54), ("superclass", 0.2), ("superclass", 0.3)),
    dims=(500, 2000, 10**4, 10**5, 10**6, 10**7, 31_622_777, 10**8),
    seeds=2,
    max_rounds=40,
    fresh_per_class=100,
)


# ---------------------------------------------------------------------------- one unit of work


def _eta_key(eta: float) -> int:
    return int(round(eta * 10_000))


def _labels(study: Study, noise: str, eta: float, seed_index: int):
    rng = np.random.default_rng(np.random.SeedSequence(
        study.seed, spawn_key=(0, NOISES.index(noise), _eta_key(eta), seed_index)))
    y = np.repeat(np.arange(study.K), study.n)
    C = noise_mod.noise_matrix(noise, study.K, eta, study.superclass_size)
    z = noise_mod.corrupt_labels(y, C, rng, exact=True)
    return y, z, noise_mod.label_counts(y, z, study.K)


_BLOCK_CACHE: dict = {}


def _block_rounds(study: Study, noise: str, eta: float):
    """Exact block model, rounds 0..max_rounds, per type: list of (outputs (K,K,K), fresh accuracy, residual).

    Exact label counts make it the same for every seed (only which instance carries which label changes)."""
    key = (study.K, study.n, study.c, study.d, study.lam, study.superclass_size, noise, eta, study.max_rounds)
    if key not in _BLOCK_CACHE:
        y, z, _ = _labels(study, noise, eta, 0)
        engine = BlockExact(study.K, study.n, study.c, study.d, study.lam, y, z)
        fits = sd_rounds.sd(engine, engine.one_hot_types(), study.max_rounds)
        _BLOCK_CACHE[key] = [
            (np.asarray(f.raw.outputs), metrics.accuracy(f.fresh_logits, np.arange(study.K)), f.residual) for f in fits
        ]
    return _BLOCK_CACHE[key]


def _theory_rounds(study: Study, counts) -> tuple[list[bool], int | None]:
    C_emp = counts / counts.sum(axis=1, keepdims=True)
    report = theory.rounds_report(study.K, study.n, study.c, study.d, study.lam, C_emp)
    per_round = [any(a <= t and (b is None or t <= b) for a, b in report.perfect_rounds)
                 for t in range(study.max_rounds + 1)]
    return per_round, report.first


def _first(flags) -> int | None:
    return next((t for t, f in enumerate(flags) if f), None)


def run_unit(study: Study, D: int, seed_index: int) -> list[dict]:
    """Mixture rows of one (D, seed): one Gram sample, every noise setting, rounds 0..max_rounds.

    Runs on one BLAS thread throughout (sampling included): the main process and
    joblib's workers would otherwise use different thread counts, and multi-threaded
    BLAS sums in a different order, changing the last bits (seen in the residual
    column) between ``--jobs 1`` and ``--jobs 2``.
    """
    with limit_blas_threads(1):
        return _run_unit(study, D, seed_index)


def _run_unit(study: Study, D: int, seed_index: int) -> list[dict]:
    rng = np.random.default_rng(np.random.SeedSequence(study.seed, spawn_key=(1, seed_index, int(D))))
    gram = feat.sample_gmm_gram(study.K, study.n, study.c, study.d, int(D), rng,
                                fresh_per_class=study.fresh_per_class)
    engine = GramExact(gram.G, study.lam, gram.cross)
    rows = []
    for noise, eta in study.settings:
        y, z, _ = _labels(study, noise, eta, seed_index)
        block = _block_rounds(study, noise, eta)
        for t, fit in enumerate(sd_rounds.sd(engine, one_hot(z, study.K), study.max_rounds)):
            P = np.asarray(fit.outputs)
            P_block = block[t][0][y, z].T
            rows.append({
                "noise": noise, "eta": float(eta), "level": "mixture", "D": int(D), "seed": int(seed_index),
                "round": t,
                "train_accuracy": metrics.accuracy(P, y),
                "fresh_accuracy": metrics.accuracy(fit.fresh_logits, gram.y_fresh),
                "perfect": metrics.perfect(P, y),
                "max_abs_diff": float(np.max(np.abs(P - P_block))),
                "residual": float(fit.residual),
            })
    return rows


def reference_rows(study: Study) -> list[dict]:
    """Block-model and theory rows (deterministic per noise setting)."""
    rows = []
    for noise, eta in study.settings:
        y, z, counts = _labels(study, noise, eta, 0)
        predicted, _ = _theory_rounds(study, counts)
        for t, (out, fresh, res) in enumerate(_block_rounds(study, noise, eta)):
            acc = metrics.accuracy(out[y, z].T, y)
            base = {"noise": noise, "eta": float(eta), "D": None, "seed": None, "round": t, "max_abs_diff": None}
            rows.append({**base, "level": "block", "train_accuracy": acc, "fresh_accuracy": fresh,
                         "perfect": metrics.perfect(out[y, z].T, y), "residual": float(res)})
            rows.append({**base, "level": "theory", "train_accuracy": None, "fresh_accuracy": None,
                         "perfect": bool(predicted[t]), "residual": None})
    return rows


# ---------------------------------------------------------------------------- summaries


def confusion(mixture_flags, block_flags) -> dict:
    """Counts of two equal-length boolean sequences (mixture perfect, block perfect), the block model as
    "theory" and the mixture as "observed" (:class:`sims.engine.Agreement`), with ``informative_cells``,
    ``informative_agreement`` = both / (both + only_theory + only_observed) over the cells where either side
    is perfect (None if there is none) and ``agreement_all_cells``."""
    m = np.asarray(mixture_flags, dtype=bool)
    b = np.asarray(block_flags, dtype=bool)
    if m.shape != b.shape:
        raise ValueError(f"mixture_flags has shape {m.shape}, must equal block_flags' shape {b.shape}")
    a = Agreement.of(b.ravel(), m.ravel())
    return {**a.counts(), "informative_cells": a.informative, "informative_agreement": a.agreement,
            "agreement_all_cells": a.all_cells_agreement}


def loglog_slope(x, y) -> dict:
    """Least-squares slope of log10 y against log10 x (points with y > 0), with its standard error.

    Returns {"slope", "stderr", "intercept", "points"}; slope None with fewer than two usable points."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"x has shape {x.shape}, must equal y's shape {y.shape}")
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    lx, ly = np.log10(x[ok]), np.log10(y[ok])
    if lx.size < 2 or np.ptp(lx) == 0:
        return {"slope": None, "stderr": None, "intercept": None, "points": int(lx.size)}
    A = np.vstack([lx, np.ones_like(lx)]).T
    coef, *_ = np.linalg.lstsq(A, ly, rcond=None)
    stderr = None
    if lx.size > 2:
        resid = ly - A @ coef
        s2 = float(resid @ resid) / (lx.size - 2)
        stderr = math.sqrt(s2 / float(np.sum((lx - lx.mean()) ** 2)))
    return {"slope": float(coef[0]), "stderr": stderr, "intercept": float(coef[1]), "points": int(lx.size)}


def smallest_matching_dim(dims, shares, threshold: float = MATCH_SHARE):
    """Smallest D such that the share is >= threshold at D and at every larger D of the grid (None: none)."""
    order = np.argsort(np.asarray(dims))
    dims = [dims[i] for i in order]
    shares = [shares[i] for i in order]
    best = None
    for D, s in zip(reversed(dims), reversed(shares)):
        if s is None or s < threshold:
            break
        best = D
    return best


def summarize(study: Study, rows: list[dict], elapsed: float | None = None, jobs: int | None = None) -> dict:
    R = study.max_rounds
    block = {}
    theory_first = {}
    for noise, eta in study.settings:
        sel = sorted((r for r in rows if r["level"] == "block" and r["noise"] == noise and r["eta"] == eta),
                     key=lambda r: r["round"])
        block[(noise, eta)] = [r["perfect"] for r in sel]
        th = sorted((r for r in rows if r["level"] == "theory" and r["noise"] == noise and r["eta"] == eta),
                    key=lambda r: r["round"])
        theory_first[(noise, eta)] = _first(r["perfect"] for r in th)
    runs = {}
    for r in rows:
        if r["level"] == "mixture":
            runs.setdefault((r["noise"], r["eta"], r["D"], r["seed"]), {})[r["round"]] = r
    per_dim = []
    for D in sorted(study.dims):
        flags_m, flags_b, match, firsts, gaps, diff0, diff_tb, fresh0, fresh_tb, fresh_last = ([] for _ in range(10))
        for noise, eta in study.settings:
            tb = _first(block[(noise, eta)])
            for s in range(study.seeds):
                run = runs[(noise, eta, D, s)]
                fm = [run[t]["perfect"] for t in range(R + 1)]
                flags_m += fm
                flags_b += block[(noise, eta)]
                tm = _first(fm)
                match.append(tm == tb)
                firsts.append({"noise": noise, "eta": eta, "seed": s, "mixture": tm, "block": tb,
                               "theory": theory_first[(noise, eta)]})
                gaps.append(abs((R + 1 if tm is None else tm) - (R + 1 if tb is None else tb)))
                diff0.append(run[0]["max_abs_diff"])
                t_ref = R if tb is None else tb
                diff_tb.append(run[t_ref]["max_abs_diff"])
                fresh0.append(run[0]["fresh_accuracy"])
                fresh_tb.append(run[t_ref]["fresh_accuracy"])
                fresh_last.append(run[R]["fresh_accuracy"])
        per_dim.append({
            "D": int(D),
            "runs": len(match),
            "first_round_match": float(np.mean(match)),
            "mean_abs_first_round_gap": float(np.mean(gaps)),
            "median_max_abs_diff_teacher": float(np.median(diff0)),
            "median_max_abs_diff_at_block_first": float(np.median(diff_tb)),
            "mean_fresh_accuracy_teacher": float(np.mean(fresh0)),
            "mean_fresh_accuracy_at_block_first": float(np.mean(fresh_tb)),
            "mean_fresh_accuracy_last_round": float(np.mean(fresh_last)),
            "confusion_vs_block": confusion(flags_m, flags_b),
            "first_rounds": firsts,
        })
    dims = [p["D"] for p in per_dim]
    fit_lo = 10 * study.N  # the Wishart regime well above N, where the deviation is a small perturbation
    sel = [p for p in per_dim if p["D"] >= fit_lo]
    rate = {
        "quantity": "median over runs of max_i,k |P_mix - P_block| (training outputs) at the block model's first "
                    "perfect round (its last round if never)",
        "fit_range_D": [fit_lo, max(dims)] if sel else None,
        **loglog_slope([p["D"] for p in sel], [p["median_max_abs_diff_at_block_first"] for p in sel]),
        "teacher": loglog_slope([p["D"] for p in sel], [p["median_max_abs_diff_teacher"] for p in sel]),
        "first_round_gap": loglog_slope([p["D"] for p in sel], [p["mean_abs_first_round_gap"] for p in sel]),
        "expected_slope": -0.5,
    }
    reference = [
        {"noise": noise, "eta": eta, "theory_first": theory_first[(noise, eta)], "block_first": _first(block[(noise, eta)]),
         "block_fresh_accuracy": [r["fresh_accuracy"] for r in rows
                                  if r["level"] == "block" and r["noise"] == noise and r["eta"] == eta][-1]}
        for noise, eta in study.settings
    ]
    mixture_res = [r["residual"] for r in rows if r["level"] == "mixture"]
    return {
        "params": {**asdict(study), "N": study.N, "exact_counts": True},
        "reference": reference,
        "per_dim": per_dim,
        "rate": rate,
        "smallest_matching_D": smallest_matching_dim(dims, [p["first_round_match"] for p in per_dim]),
        "matching_share": MATCH_SHARE,
        "max_mixture_residual": float(max(mixture_res)) if mixture_res else None,
        "runtime_seconds": elapsed,
        "jobs": jobs,
        "notes": "first rounds null: not perfect by max_rounds; a cell = (noise, eta, seed, round); confusion "
                 "counts compare the mixture's 'every training instance correct' (observed) with the exact block "
                 "model's (theory)",
    }


# ---------------------------------------------------------------------------- running


def _unit_path(cache: Path, D: int, s: int) -> Path:
    return cache / f"D{int(D)}-seed{int(s)}.json"


def _sort_key(r):
    return (LEVELS.index(r["level"]), NOISES.index(r["noise"]), r["eta"], -1 if r["D"] is None else r["D"],
            -1 if r["seed"] is None else r["seed"], r["round"])


def run_study(study: Study, jobs: int = 1, cache_dir: Path | None = None, progress: bool = True,
              backend: str | None = None):
    """Run every (D, seed) unit (largest D first, in parallel with joblib; ``backend="dask"`` with an active
    dask.distributed Client uses that cluster); returns (rows sorted, summary)."""
    study.validate()
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_OUT / "cache") / study.key()
    cache.mkdir(parents=True, exist_ok=True)
    units = [Unit(_unit_path(cache, D, s), run_unit, (study, D, s)) for D in sorted(study.dims, reverse=True)
             for s in range(study.seeds)]
    start = time.perf_counter()
    run = run_units(units, jobs=jobs, backend=backend, progress=progress, desc="convergence (D, seed) units",
                    prog="python -m sims.convergence")
    rows = run.rows
    rows.extend(reference_rows(study))
    rows.sort(key=_sort_key)
    elapsed = time.perf_counter() - start
    summary = summarize(study, rows, elapsed, jobs)
    summary["units_computed"] = run.computed
    summary["units_from_cache"] = run.from_cache
    return rows, summary


def rows_to_csv(rows: list[dict]) -> str:
    """The tidy CSV of the rows, in COLUMNS order (:func:`sims._cli.csv_text`)."""
    return csv_text(rows, COLUMNS)


# ---------------------------------------------------------------------------- figure


def plot(study: Study, rows: list[dict], summary: dict, path_png: Path):
    """Six panels: first perfect round, |P_mix - P_block|, agreement, fresh accuracy and first-round gap vs D;
    fresh accuracy vs round per D."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_dim = summary["per_dim"]
    dims = np.array([p["D"] for p in per_dim], dtype=float)
    R = study.max_rounds
    fig, axes = plt.subplots(2, 3, figsize=(17, 9), constrained_layout=True)
    ax = axes[0, 0]
    colors = plt.get_cmap("tab10")
    for i, (noise, eta) in enumerate(study.settings):
        col = colors(i)
        ls = "-" if noise == "symmetric" else "--"
        firsts = [[f["mixture"] for f in p["first_rounds"] if f["noise"] == noise and f["eta"] == eta] for p in per_dim]
        vals = np.array([[R + 1 if v is None else v for v in fs] for fs in firsts], dtype=float)
        ax.plot(dims, vals.mean(axis=1), ls, marker="o", ms=3, color=col,
                label=f"{noise[:5]} eta={eta:g}")
        ax.fill_between(dims, vals.min(axis=1), vals.max(axis=1), color=col, alpha=0.12)
        ref = next(x for x in summary["reference"] if x["noise"] == noise and x["eta"] == eta)
        if ref["block_first"] is not None:
            ax.axhline(ref["block_first"], color=col, lw=0.8, ls=":")
        if ref["theory_first"] is not None:
            ax.plot([dims.max() * 1.6], [ref["theory_first"]], marker="<", color=col, ms=6)
    ax.axhline(R + 1, color="grey", lw=0.8)
    ax.text(dims.min(), R + 1.3, f"not perfect by round {R}", fontsize=7, color="grey")
    ax.axvline(study.N, color="k", lw=0.6, ls="-.")
    ax.set_xscale("log")
    ax.set_xlim(dims.min() / 1.5, dims.max() * 2.5)
    ax.set_xlabel("noise dimension D (dash-dot: D = N)")
    ax.set_ylabel("first round with 100 % training accuracy")
    ax.set_title("mixture (lines: mean over seeds, band: range), exact block model (dotted),\n"
                 "linearised theory (triangles at the right edge)", fontsize=9)
    ax.legend(fontsize=7, ncol=2)

    ax = axes[0, 1]
    y0 = [p["median_max_abs_diff_teacher"] for p in per_dim]
    yt = [p["median_max_abs_diff_at_block_first"] for p in per_dim]
    ax.loglog(dims, y0, "o-", ms=4, label="teacher (round 0)")
    ax.loglog(dims, yt, "s-", ms=4, label="at the block model's first perfect round")
    rate = summary["rate"]
    if rate["slope"] is not None:
        xs = np.array(rate["fit_range_D"], dtype=float)
        ax.loglog(xs, 10 ** (rate["intercept"] + rate["slope"] * np.log10(xs)), "k--", lw=1,
                  label=f"fit D >= {rate['fit_range_D'][0]}: slope {rate['slope']:.3f}")
    ax.axvline(study.N, color="k", lw=0.6, ls="-.")
    ax.set_xlabel("noise dimension D")
    ax.set_ylabel("median over runs of max |P_mix - P_block|")
    ax.set_title("distance of the mixture's training outputs from the exact block model", fontsize=9)
    ax.legend(fontsize=8)

    ax = axes[1, 0]
    ax.semilogx(dims, [p["first_round_match"] for p in per_dim], "o-", label="first perfect round = block model's")
    ax.semilogx(dims, [p["confusion_vs_block"]["informative_agreement"] or 0.0 for p in per_dim], "s-",
                label="informative-cell agreement (either side 100 %)")
    ax.axhline(MATCH_SHARE, color="grey", ls=":", lw=1)
    if summary["smallest_matching_D"] is not None:
        ax.axvline(summary["smallest_matching_D"], color="crimson", ls="--", lw=1,
                   label=f"smallest D with >= {MATCH_SHARE:.0%} matches from there on: {summary['smallest_matching_D']:g}")
    for p in per_dim:
        cf = p["confusion_vs_block"]
        ax.annotate(f"{cf['both']}/{cf['only_theory']}/{cf['only_observed']}", (p["D"], 0.02), fontsize=6,
                    rotation=90, ha="center", va="bottom")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("noise dimension D\n(numbers: cells both / only theory (block) / only observed (mixture) perfect)")
    ax.set_ylabel("share")
    ax.set_title("mixture vs exact block model", fontsize=9)
    ax.legend(fontsize=7, loc="center right")

    ax = axes[1, 1]
    ax.semilogx(dims, [p["mean_fresh_accuracy_teacher"] for p in per_dim], "o-", label="mixture, teacher (round 0)")
    ax.semilogx(dims, [p["mean_fresh_accuracy_at_block_first"] for p in per_dim], "s-",
                label="mixture, at the block model's first perfect round")
    ax.semilogx(dims, [p["mean_fresh_accuracy_last_round"] for p in per_dim], "^-", label=f"mixture, round {R}")
    block_fresh = np.mean([x["block_fresh_accuracy"] for x in summary["reference"]])
    ax.axhline(block_fresh, color="k", ls=":", lw=1, label=f"exact block model (mean {block_fresh:.3f})")
    ax.set_xlabel("noise dimension D")
    ax.set_ylabel("fresh-sample accuracy (mean over settings and seeds)")
    ax.set_title("fresh samples against D", fontsize=9)
    ax.legend(fontsize=7)

    ax = axes[0, 2]
    cmap = plt.get_cmap("viridis")
    for i, D in enumerate(dims):
        acc = np.zeros(R + 1)
        cnt = np.zeros(R + 1)
        for r in rows:
            if r["level"] == "mixture" and r["D"] == D:
                acc[r["round"]] += r["fresh_accuracy"]
                cnt[r["round"]] += 1
        ax.plot(np.arange(R + 1), acc / np.maximum(cnt, 1), color=cmap(i / max(1, len(dims) - 1)), lw=1.2,
                label=f"D = {int(D):g}")
    ax.axhline(block_fresh, color="k", ls=":", lw=1, label="exact block model")
    ax.set_xlabel("round t (teacher = 0)")
    ax.set_ylabel("fresh-sample accuracy (mean over settings and seeds)")
    ax.set_title("fresh samples against rounds", fontsize=9)
    ax.legend(fontsize=6, ncol=2)

    ax = axes[1, 2]
    ax.semilogx(dims, [p["mean_abs_first_round_gap"] for p in per_dim], "o-")
    ax.axvline(study.N, color="k", lw=0.6, ls="-.")
    ax.set_xlabel("noise dimension D")
    ax.set_ylabel(f"mean |first round (mixture) - first round (block)| (never = {R + 1})")
    ax.set_title("first-round gap", fontsize=9)
    fig.suptitle(f"Gaussian mixture -> exact block model as D grows (K={study.K}, n={study.n}, c={study.c}, "
                 f"d={study.d}, lambda={study.lam:g}, exact label counts, {study.seeds} seeds)", fontsize=10)

    def w(tmp):
        fig.savefig(tmp, format="png", dpi=120)

    atomic_write(path_png, w)
    plt.close(fig)


# ---------------------------------------------------------------------------- command line


def _parse_settings(text: str) -> tuple:
    """'symmetric:0.3,0.48;superclass:0.2' -> ((symmetric, 0.3), (symmetric, 0.48), (superclass, 0.2))."""
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        if ":" not in part:
            raise ValueError(f"--etas == {text!r}, must look like 'symmetric:0.3,0.48;superclass:0.2'")
        noise, vals = part.split(":", 1)
        for v in vals.split(","):
            if v.strip():
                try:
                    out.append((noise.strip(), float(v)))
                except ValueError:
                    raise ValueError(f"--etas: {v!r} is not a number") from None
    return tuple(out)


def _parse_dims(text: str) -> tuple:
    try:
        vals = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--dims == {text!r}, must be a comma-separated list of integers") from None
    out = []
    for v in vals:
        if not v.is_integer():
            raise ValueError(f"--dims: {v!r} is not an integer")
        out.append(int(v))
    return tuple(out)


def build_parser():
    p = OneLineParser(
        prog="python -m sims.convergence",
        description="Convergence of the Gaussian mixture's exact softmax self-distillation to the exact block model "
        "as the noise dimension D grows: first round with 100 % training accuracy (mixture, block model, linearised "
        "theory), distance of the outputs, agreement counts and fresh accuracy, per D. Writes convergence.csv, "
        "convergence.json and convergence.png (convergence_quick.* with --quick) to --out. Runs resume from "
        "the cache under --out; Ctrl-C keeps the finished units.",
    )
    p.add_argument("--quick", action="store_true", help="small run (n=40, 2 settings, 5 dims, 2 seeds; under a minute)")
    p.add_argument("--paper", action="store_true",
                   help="the paper's setting: n=500, lambda=1e-5, 4 settings, D = 500..1e8, 2 seeds "
                        "(default --out results/convergence-paper)")
    p.add_argument("--per-class", type=int, default=None, help="n, training instances per class (default 100)")
    p.add_argument("--lam", type=float, default=None, help="lambda, ridge penalty (default 5e-5)")
    p.add_argument("--etas", default=None,
                   help="noise settings, e.g. 'symmetric:0.3,0.48;superclass:0.2' (exact label counts needed)")
    p.add_argument("--dims", default=None, help="comma list of noise dimensions D (default: N/4 .. 1e7, 2 per decade, and N)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per (setting, D) (default 5)")
    p.add_argument("--max-rounds", type=int, default=None, help="last SD round fitted (default 40)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel joblib workers (-1: all cores)")
    p.add_argument("--dask-scheduler", default=None,
                   help="address of a Dask scheduler: run the units on that cluster through joblib's dask backend")
    p.add_argument("--seed", type=int, default=0, help="the one seed of the study")
    p.add_argument("--out", default=None, help="output folder (default results/convergence/); the cache goes to OUT/cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def study_from_args(args) -> Study:
    if args.quick and args.paper:
        raise ValueError("--quick and --paper exclude each other")
    base = dict(QUICK) if args.quick else dict(PAPER) if args.paper else {}
    if args.per_class is not None:
        base["n"] = args.per_class
    if args.lam is not None:
        base["lam"] = args.lam
    if args.etas is not None:
        base["settings"] = _parse_settings(args.etas)
    if args.seeds is not None:
        base["seeds"] = args.seeds
    if args.max_rounds is not None:
        base["max_rounds"] = args.max_rounds
    base["seed"] = args.seed
    study = replace(Study(), **base)
    check_int("n (--per-class)", study.n, minimum=1)
    if args.dims is not None:
        study = replace(study, dims=_parse_dims(args.dims))
    elif "dims" not in base:
        study = replace(study, dims=log_dims(study.K * study.n))
    return study.validate()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        study = study_from_args(args)
        jobs = check_int("--jobs", args.jobs, minimum=-1)
        if jobs == 0:
            raise ValueError("--jobs == 0, must be >= 1 or -1 (all cores)")
        default_out = Path("results") / ("convergence-paper" if args.paper else "convergence")
        out = check_output_dir("--out", Path(args.out) if args.out is not None else default_out)
    except ValueError as err:
        return parser.fail(err)
    client = None
    if args.dask_scheduler is not None:
        try:
            client = dask_client(args.dask_scheduler)
        except ValueError as err:
            return parser.fail(err)
    stem = "convergence_quick" if args.quick else "convergence"
    cache = out / "cache"
    try:
        try:
            rows, summary = run_study(study, jobs=-1 if client is not None else jobs, cache_dir=cache,
                                      progress=not args.no_progress, backend="dask" if client is not None else None)
        finally:
            if client is not None:
                client.close()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; finished (D, seed) units are kept in {cache}; run the same command again to "
              "resume", file=sys.stderr)
        return 130
    except RuntimeError as err:  # sims.engine.NotConvergedError
        return parser.fail(f"solver failed: {err}", 3)
    write_text(out / f"{stem}.csv", rows_to_csv(rows))
    write_text(out / f"{stem}.json", json.dumps(summary, indent=2))
    plot(study, rows, summary, out / f"{stem}.png")
    rate = summary["rate"]
    print(f"{len(rows)} rows in {summary['runtime_seconds']:.1f} s ({summary['units_computed']} units computed, "
          f"{summary['units_from_cache']} from the cache)")
    for p in summary["per_dim"]:
        cf = p["confusion_vs_block"]
        print(f"  D={p['D']:>9d}: first round = block's in {p['first_round_match']:.2f} of runs; informative cells "
              f"both/only theory (block)/only observed (mixture) {cf['both']}/{cf['only_theory']}/{cf['only_observed']} (neither "
              f"{cf['neither']}); median max|P_mix - P_block| {p['median_max_abs_diff_at_block_first']:.2e}")
    slope = "n/a" if rate["slope"] is None else f"{rate['slope']:.3f}"
    print(f"rate: log-log slope {slope} over D in {rate['fit_range_D']}; smallest matching D: "
          f"{summary['smallest_matching_D']}")
    print(f"csv:    {out / (stem + '.csv')}\njson:   {out / (stem + '.json')}\nfigure: {out / (stem + '.png')}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
