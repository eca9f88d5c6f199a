"""Phase diagram: where multi-round SD and the PLL student reach 100 % training accuracy.

For each noise model (symmetric, superclass), noise rate eta, round t and seed,
every *cell* records whether every training instance is predicted as its true
class (``observed_perfect``), next to what the linearised theory predicts for
the very same sample (``predicted_perfect``: :func:`theory.rounds_report` and
:func:`theory.pll_analysis` on the sample's empirical corruption matrix, exact
at boundaries). Three levels:

* ``linear``: the linearised model by brute force (explicit N x N block Gram
  matrix, ``P_t - U = (Y - U) A^(t+1)``); it must agree with the theory in every
  cell, so any disagreement is a bug;
* ``exact``: the exact softmax optimum on the exact block model (type-reduced
  solver) at the same scale;
* ``gmm``: the exact softmax optimum on Gaussian-mixture features in D
  dimensions that realise the block model on average (several seeds), at a
  smaller scale (``--gmm-per-class``), with its own theory boundary.

Outputs: a figure (PNG and PDF, default ``figures/phase_diagram.*``), the tidy
CSV (one row per noise, eta, method, level, round, seed) and a JSON summary
(default under ``results/phase_diagram/``); ``--out DIR`` puts all three in DIR.
Finished cells are cached under the results folder, so an interrupted run
started again with the same options resumes; outputs are written atomically.

Run ``python -m sims.phase_diagram --help`` for the options.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

import theory
from theory._validate import check_block_correlations, check_fraction, check_int, check_positive

from . import features as feat
from . import metrics
from . import noise as noise_mod
from ._cli import OneLineParser, atomic_write, write_text

__all__ = ["Sweep", "run_sweep", "predicted_boundary", "plot", "main", "COLUMNS"]

LEVELS = ("linear", "exact", "gmm")
NOISES = ("symmetric", "superclass")
COLUMNS = (
    "noise",
    "eta",
    "method",
    "level",
    "round",
    "seed",
    "train_accuracy",
    "clean_accuracy",
    "noisy_accuracy",
    "fresh_accuracy",
    "predicted_perfect",
    "observed_perfect",
    "residual",
    "K",
    "n",
)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIG_DIR = Path("figures")  # relative to the working directory (the repository root in the README)
DEFAULT_RESULTS_DIR = Path("results") / "phase_diagram"


@dataclass(frozen=True)
class Sweep:
    """Every setting of a sweep (defaults: the paper's numerical setting, K=4, n=500)."""

    noises: tuple = NOISES
    K: int = 4
    superclass_size: int = 2
    n: int = 500
    c: float = 0.4
    d: float = 0.1
    lam: float = 1e-5
    etas: tuple = tuple(round(0.05 * i, 2) for i in range(19))
    rounds: int = 30
    seeds: int = 2
    levels: tuple = LEVELS
    dim: int = 200
    gmm_per_class: int = 100
    gmm_etas_every: int = 2
    exact_counts: bool = False
    seed: int = 0

    def validate(self) -> "Sweep":
        for name in self.noises:
            if name not in NOISES:
                raise ValueError(f"--noise: {name!r} is not one of {', '.join(NOISES)}")
        if not self.noises:
            raise ValueError("--noise: give at least one noise model")
        for name in self.levels:
            if name not in LEVELS:
                raise ValueError(f"--levels: {name!r} is not one of {', '.join(LEVELS)}")
        if not self.levels:
            raise ValueError("--levels: give at least one level")
        K = check_int("--classes", self.K, minimum=2)
        n = check_int("--per-class", self.n, minimum=1)
        check_int("--gmm-per-class", self.gmm_per_class, minimum=1)
        try:
            check_block_correlations(K, n, self.c, self.d)
        except ValueError as err:
            raise ValueError(f"--within/--between: {err}") from None
        if "gmm" in self.levels and self.d < 0:
            raise ValueError(f"--between == {self.d}, must be >= 0 for the gmm level")
        check_positive("--lam", self.lam)
        if "superclass" in self.noises:
            size = check_int("--superclass-size", self.superclass_size, minimum=2)
            if K % size:
                raise ValueError(f"--superclass-size == {size}, must divide --classes == {K}")
        if not self.etas:
            raise ValueError("--etas: give at least one noise rate")
        for e in self.etas:
            check_fraction("--etas", e)
        check_int("--rounds", self.rounds, minimum=0)
        check_int("--seeds", self.seeds, minimum=1)
        check_int("--dim", self.dim, minimum=1)
        check_int("--gmm-etas-every", self.gmm_etas_every, minimum=1)
        check_int("--seed", self.seed, minimum=0)
        return self

    def key(self) -> str:
        """Hash of every setting and of the code that computes a cell (the resume cache's folder name),
        so that a cache written by older code is never reused."""
        blob = json.dumps(asdict(self), sort_keys=True) + _code_fingerprint()
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def gmm_etas(self) -> tuple:
        return tuple(self.etas[:: self.gmm_etas_every])

    def lam_for(self, n: int) -> float:
        """lambda at n instances per class: lam * self.n / n, so that K N lambda (hence the filters
        alpha, beta, g up to the n (c - d) terms) matches the block levels'. The gmm level runs at a
        smaller n; without this its theory boundary would sit at several times more rounds."""
        return self.lam * self.n / n


def _code_fingerprint() -> str:
    """Hash of the source of theory/ and of the sims modules a cell runs."""
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    files = sorted(Path(theory.__file__).resolve().parent.glob("*.py")) + [
        here / f"{m}.py" for m in ("solver", "distill", "features", "noise", "metrics", "phase_diagram")
    ]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


QUICK = dict(
    K=4,
    n=60,
    etas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7),
    rounds=14,
    seeds=2,
    dim=100,
    gmm_per_class=30,
    gmm_etas_every=2,
    lam=1e-3,
)


# ---------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    """A unit of work: one (noise, eta, level) with every seed; for the linear level eta is None and the
    cell covers every eta (all seeds and etas are stacked into one matrix product per round)."""

    noise: str
    eta: float | None
    level: str

    def name(self) -> str:
        return f"{self.noise}-{'all' if self.eta is None else f'{self.eta:.4f}'}-{self.level}"


def _seed_rng(sweep: Sweep, noise: str, eta: float, seed: int) -> np.random.Generator:
    """Generator of one (noise, eta, seed) from the sweep's one seed: SeedSequence(seed) spawned by that key.

    The level is not part of the key: linear and exact runs of the same
    (noise, eta, seed) see the same labels; gmm draws its labels first too
    (at its own n). Results do not depend on how cells are spread over workers.
    """
    ni = NOISES.index(noise)
    ei = int(round(eta * 10_000))
    return np.random.default_rng(np.random.SeedSequence(sweep.seed, spawn_key=(ni, ei, seed)))


def _labels(sweep: Sweep, K: int, n: int, noise: str, eta: float, rng):
    y = np.repeat(np.arange(K), n)
    C = noise_mod.noise_matrix(noise, K, eta, sweep.superclass_size)
    z = noise_mod.corrupt_labels(y, C, rng, exact=sweep.exact_counts)
    counts = noise_mod.label_counts(y, z, K)
    return y, z, counts


_THEORY_CACHE: dict = {}


def _theory(sweep: Sweep, K, n, counts, rounds):
    """predicted_perfect per round and for the PLL student (exact, on the sample's label shares)."""
    lam = sweep.lam_for(n)
    key = (K, n, sweep.c, sweep.d, lam, rounds, counts.tobytes())
    if key not in _THEORY_CACHE:
        C_emp = counts / counts.sum(axis=1, keepdims=True)
        report = theory.rounds_report(K, n, sweep.c, sweep.d, lam, C_emp)
        per_round = [any(a <= t and (b is None or t <= b) for a, b in report.perfect_rounds) for t in range(rounds + 1)]
        pll = theory.pll_analysis(K, n, sweep.c, sweep.d, lam, C_emp).student_all_correct
        _THEORY_CACHE[key] = (per_round, bool(pll))
    return _THEORY_CACHE[key]


_LINEAR_CACHE: dict = {}


def _linear_model(K, n, c, d, lam):
    from .distill import LinearModel

    key = (K, n, c, d, lam)
    if key not in _LINEAR_CACHE:
        _LINEAR_CACHE.clear()
        _LINEAR_CACHE[key] = LinearModel(feat.block_gram(K, n, c, d), K, lam, explicit=True)
    return _LINEAR_CACHE[key]


def _row(cell, seed, method, t, acc, fresh, predicted, residual, K, n, eta=None):
    return {
        "noise": cell.noise,
        "eta": cell.eta if eta is None else eta,
        "method": method,
        "level": cell.level,
        "round": int(t),
        "seed": int(seed),
        "train_accuracy": acc["all"],
        "clean_accuracy": acc["clean"],
        "noisy_accuracy": acc["noisy"],
        "fresh_accuracy": fresh,
        "predicted_perfect": bool(predicted),
        "observed_perfect": bool(acc["all"] == 1.0),
        "residual": float(residual),
        "K": K,
        "n": n,
    }


def _run_linear(sweep: Sweep, cell: Cell, K, n) -> list[dict]:
    """Linear level of one noise model: every (eta, seed) problem stacked into one (problems K) x N array,
    so that each round is a single product with the explicit operator (compute-bound instead of
    memory-bound)."""
    from .distill import one_hot

    model = _linear_model(K, n, sweep.c, sweep.d, sweep.lam)
    problems = []
    for eta in sweep.etas:
        for s in range(sweep.seeds):
            rng = _seed_rng(sweep, cell.noise, eta, s)
            problems.append((float(eta), s, *_labels(sweep, K, n, cell.noise, eta, rng)))
    y = problems[0][2]
    fresh_cross = np.where(y[:, None] == np.arange(K)[None, :], sweep.c, sweep.d)
    T = np.vstack([one_hot(z, K) for _, _, _, z, _ in problems])
    per_round = []
    for t in range(sweep.rounds + 1):
        fit = model.fit(T)
        per_round.append(fit)
        T = fit.outputs
    teacher = per_round[0]
    T_pll = np.vstack([metrics.pll_targets(teacher.outputs[i * K:(i + 1) * K]) for i in range(len(problems))])
    pll = model.fit(T_pll)
    rows = []
    residuals = [fit.R for fit in per_round]  # T - P, computed once per round
    for i, (eta, s, y, z, counts) in enumerate(problems):
        predicted, pll_predicted = _theory(sweep, K, n, counts, sweep.rounds)
        block = slice(i * K, (i + 1) * K)
        for t, fit in enumerate(per_round):
            fresh = metrics.accuracy(residuals[t][block] @ fresh_cross, np.arange(K))
            rows.append(_row(cell, s, "sd", t, metrics.split_accuracy(fit.outputs[block], y, z), fresh,
                             predicted[t], fit.residual, K, n, eta=eta))
        fresh = metrics.accuracy(pll.R[block] @ fresh_cross, np.arange(K))
        rows.append(_row(cell, s, "pll", 1, metrics.split_accuracy(pll.outputs[block], y, z), fresh, pll_predicted,
                         pll.residual, K, n, eta=eta))
    return rows


def run_cell(sweep: Sweep, cell: Cell) -> list[dict]:
    """All rows of one cell: for every seed, rounds 0..R of SD and the PLL student (reported as round 1)."""
    from .distill import _BlockExact, _FeatureExact, exact_pll, exact_sd, one_hot

    K = sweep.K
    n = sweep.gmm_per_class if cell.level == "gmm" else sweep.n
    if cell.level == "linear":
        return _run_linear(sweep, cell, K, n)
    rngs = [_seed_rng(sweep, cell.noise, cell.eta, s) for s in range(sweep.seeds)]
    draws = [_labels(sweep, K, n, cell.noise, cell.eta, rng) for rng in rngs]
    rows = []
    for s, ((y, z, counts), rng) in enumerate(zip(draws, rngs)):
        predicted, pll_predicted = _theory(sweep, K, n, counts, sweep.rounds)
        if cell.level == "exact":
            engine = _BlockExact(K, n, sweep.c, sweep.d, sweep.lam, y, z)
            fits = exact_sd(engine, engine.one_hot_types(), sweep.rounds)
            y_fresh = np.arange(K)
        else:  # gmm: labels were drawn first, features and fresh samples next
            X, _ = feat.sample_gmm(K, n, sweep.c, sweep.d, sweep.dim, rng)
            X_fresh, y_fresh = feat.sample_gmm(K, 200, sweep.c, sweep.d, sweep.dim, rng)
            engine = _FeatureExact(X, sweep.lam_for(n), X_fresh)
            fits = exact_sd(engine, one_hot(z, K), sweep.rounds)
        pll = exact_pll(engine, fits[0], "ce")
        for t, fit in enumerate(fits):
            rows.append(_row(cell, s, "sd", t, metrics.split_accuracy(fit.outputs, y, z),
                             metrics.accuracy(fit.fresh_logits, y_fresh), predicted[t], fit.residual, K, n))
        rows.append(_row(cell, s, "pll", 1, metrics.split_accuracy(pll.outputs, y, z),
                         metrics.accuracy(pll.fresh_logits, y_fresh), pll_predicted, pll.residual, K, n))
    return rows


def cells_of(sweep: Sweep) -> list[Cell]:
    out = []
    for noise in sweep.noises:
        for level in sweep.levels:
            if level == "linear":
                out.append(Cell(noise, None, level))
                continue
            etas = sweep.gmm_etas() if level == "gmm" else sweep.etas
            for eta in etas:
                out.append(Cell(noise, float(eta), level))
    # expensive cells first, so that parallel workers finish together
    cost = {"linear": 0, "gmm": 1, "exact": 2}
    return sorted(out, key=lambda c: cost[c.level])


# ---------------------------------------------------------------------------- files


def _cached_cell(cache: Path, sweep: Sweep, cell: Cell) -> tuple[list[dict], float | None]:
    """Run a cell unless its result is cached; cache it atomically when done.

    Returns (rows, seconds spent computing it, None when it came from the cache)."""
    path = cache / f"{cell.name()}.json"
    if path.exists():
        with open(path) as fh:
            return json.load(fh), None
    start = time.perf_counter()
    rows = run_cell(sweep, cell)
    write_text(path, json.dumps(rows))
    return rows, time.perf_counter() - start


def rows_to_csv(rows: list[dict]) -> str:
    lines = [",".join(COLUMNS)]
    for r in rows:
        vals = []
        for col in COLUMNS:
            v = r[col]
            if v is None:
                vals.append("")
            elif isinstance(v, bool):
                vals.append("true" if v else "false")
            elif isinstance(v, float):
                vals.append(repr(v))
            else:
                vals.append(str(v))
        lines.append(",".join(vals))
    return "\n".join(lines) + "\n"


def _sort_key(r):
    return (NOISES.index(r["noise"]), LEVELS.index(r["level"]), r["eta"], r["seed"], r["method"] != "sd", r["round"])


# ---------------------------------------------------------------------------- sweep


def run_sweep(sweep: Sweep, jobs: int = 1, cache_dir: Path | None = None, progress: bool = True,
              backend: str | None = None) -> tuple[list[dict], dict]:
    """Run every cell (in parallel with joblib) and return (rows sorted, summary)."""
    from joblib import Parallel, delayed

    sweep.validate()
    cells = cells_of(sweep)
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_RESULTS_DIR / "cache"
    cache = cache / sweep.key()
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(cells), desc="phase-diagram cells", file=sys.stderr)
    rows = []
    computed = []

    def collect(results):
        for r, seconds in results:
            rows.extend(r)
            if seconds is not None:
                computed.append(seconds)
            if bar is not None:
                bar.update(1)

    if jobs == 1 and backend is None:
        collect(_cached_cell(cache, sweep, c) for c in cells)
    else:
        from joblib import parallel_backend

        # backend "dask" needs an active dask.distributed Client (see main / the README)
        with parallel_backend(backend) if backend else contextlib.nullcontext():
            par = Parallel(n_jobs=-1 if backend else jobs, return_as="generator_unordered")
            collect(par(delayed(_cached_cell)(cache, sweep, c) for c in cells))
    if bar is not None:
        bar.close()
    rows.sort(key=_sort_key)
    elapsed = time.perf_counter() - start
    summary = summarize(sweep, rows, elapsed, jobs)
    summary["cells_computed"] = len(computed)
    summary["cells_from_cache"] = len(cells) - len(computed)
    summary["cell_compute_seconds"] = float(sum(computed))
    return rows, summary


def summarize(sweep: Sweep, rows: list[dict], elapsed: float, jobs: int) -> dict:
    per_level = {}
    for level in sweep.levels:
        sel = [r for r in rows if r["level"] == level]
        agree = [r["predicted_perfect"] == r["observed_perfect"] for r in sel]
        dis = [
            {k: r[k] for k in ("noise", "eta", "method", "round", "seed", "train_accuracy", "predicted_perfect")}
            for r in sel
            if r["predicted_perfect"] != r["observed_perfect"]
        ]
        sd_agree = [a for a, r in zip(agree, sel) if r["method"] == "sd"]
        pll_agree = [a for a, r in zip(agree, sel) if r["method"] == "pll"]
        per_level[level] = {
            "cells": len(sel),
            "agreement": float(np.mean(agree)) if agree else None,
            "agreement_sd": float(np.mean(sd_agree)) if sd_agree else None,
            "agreement_pll": float(np.mean(pll_agree)) if pll_agree else None,
            "disagreements": len(dis),
            "first_disagreements": dis[:20],
            "max_residual": float(max(r["residual"] for r in sel)) if sel else None,
        }
    boundary = {noise: predicted_boundary(sweep, noise) for noise in sweep.noises}
    if "gmm" in sweep.levels:
        boundary.update({f"{noise}_gmm": predicted_boundary(sweep, noise, n=sweep.gmm_per_class) for noise in sweep.noises})
    return {
        "params": {**asdict(sweep), "gmm_etas": list(sweep.gmm_etas())},
        "levels": per_level,
        "theory_boundary": boundary,
        "runtime_seconds": elapsed,  # wall time of this invocation (a resumed run reuses cached cells)
        "jobs": jobs,
        "accuracy_notion": "training-instance accuracy against true labels (ties fail); fresh_accuracy column: "
        "population formula (block levels) or 200 held-out samples per class (gmm)",
    }


_BOUNDARY_CACHE: dict = {}


def predicted_boundary(sweep: Sweep, noise: str, n: int | None = None, etas=None) -> dict:
    """Population theory (balanced labels, C itself): minimum rounds per eta, and the noise threshold."""
    n = sweep.n if n is None else n
    etas = tuple(np.round(np.linspace(0, 0.99, 100), 4)) if etas is None else tuple(etas)
    key = (noise, sweep.K, sweep.superclass_size, n, sweep.c, sweep.d, sweep.lam_for(n), etas)
    if key not in _BOUNDARY_CACHE:
        _BOUNDARY_CACHE[key] = _predicted_boundary(sweep, noise, n, etas)
    return _BOUNDARY_CACHE[key]


def _predicted_boundary(sweep: Sweep, noise: str, n: int, etas) -> dict:
    out = []
    for eta in etas:
        C = noise_mod.noise_matrix(noise, sweep.K, float(eta), sweep.superclass_size)
        out.append(theory.min_rounds(sweep.K, n, sweep.c, sweep.d, sweep.lam_for(n), C))
    return {
        "eta": [float(e) for e in etas],
        "min_rounds": out,
        "noise_threshold": theory.noise_threshold(noise, sweep.K, sweep.superclass_size),
    }


# ---------------------------------------------------------------------------- figure


def plot(sweep: Sweep, rows: list[dict], summary: dict, path_png: Path, path_pdf: Path | None = None):
    """Heatmaps of training accuracy (eta x round) per noise and level, theory boundary, PLL column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    levels = list(sweep.levels)
    noises = list(sweep.noises)
    titles = {
        "linear": f"linearised, explicit block Gram\n(K={sweep.K}, n={sweep.n})",
        "exact": f"exact softmax, block model\n(K={sweep.K}, n={sweep.n})",
        "gmm": f"exact softmax, Gaussian mixture (K={sweep.K}, n={sweep.gmm_per_class},\n"
               f"D={sweep.dim}, lambda={sweep.lam_for(sweep.gmm_per_class):.3g} keeps K N lambda, {sweep.seeds} seeds)",
    }
    fig, axes = plt.subplots(len(noises), len(levels) + 1, figsize=(4.2 * (len(levels) + 1), 3.9 * len(noises)),
                             squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    im = None
    for i, noise in enumerate(noises):
        for j, level in enumerate(levels):
            ax = axes[i, j]
            sel = [r for r in rows if r["noise"] == noise and r["level"] == level and r["method"] == "sd"]
            etas = sorted({r["eta"] for r in sel})
            R = sweep.rounds
            acc = np.full((R + 1, len(etas)), np.nan)
            dis = np.zeros((R + 1, len(etas)), dtype=bool)
            for r in sel:
                a, b = r["round"], etas.index(r["eta"])
                prev = acc[a, b]
                acc[a, b] = r["train_accuracy"] if np.isnan(prev) else prev + r["train_accuracy"]
                dis[a, b] |= r["predicted_perfect"] != r["observed_perfect"]
            acc /= sweep.seeds
            ev = np.array(etas)
            if len(ev) > 1:  # cell edges halfway between neighbouring etas (the grid may be uneven)
                mids = (ev[1:] + ev[:-1]) / 2
                edges = np.r_[ev[0] - (mids[0] - ev[0]), mids, ev[-1] + (ev[-1] - mids[-1])]
            else:
                edges = np.r_[ev[0] - 0.05, ev[0] + 0.05]
            im = ax.pcolormesh(edges, np.arange(R + 2) - 0.5, acc, cmap=cmap, vmin=0.5, vmax=1.0, shading="flat")
            n_panel = sweep.gmm_per_class if level == "gmm" else sweep.n
            bd = predicted_boundary(sweep, noise, n=n_panel)
            be = np.array(bd["eta"])
            bm = np.array([np.nan if v is None else v for v in bd["min_rounds"]], dtype=float)
            ax.step(be, np.minimum(bm, R + 0.5) - 0.5, where="mid", color="white", lw=2.0)
            ax.step(be, np.minimum(bm, R + 0.5) - 0.5, where="mid", color="crimson", lw=1.2, ls="--")
            ax.axvline(bd["noise_threshold"], color="orange", lw=1.5, ls=":")
            if dis.any():
                yy, xx = np.nonzero(dis)
                ax.scatter(np.array(etas)[xx], yy, marker="x", s=14, color="red", linewidths=1.0)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(-0.5, R + 0.5)
            ax.set_title(titles[level], fontsize=9)
            ax.set_xlabel("noise rate eta")
            if j == 0:
                desc = "symmetric noise" if noise == "symmetric" else (
                    f"superclass noise (groups of {sweep.superclass_size}: "
                    + ", ".join("{" + ",".join(map(str, g)) + "}" for g in theory.superclass_groups(sweep.K, sweep.superclass_size))
                    + ")")
                ax.set_ylabel(f"{desc}\nround t (teacher = 0)", fontsize=9)
        ax = axes[i, -1]
        styles = {"linear": ("tab:blue", "o", 6), "exact": ("tab:green", "s", 4), "gmm": ("tab:purple", "^", 4)}
        for level in levels:
            color, marker, ms = styles[level]
            sel = [r for r in rows if r["noise"] == noise and r["level"] == level and r["method"] == "pll"]
            if not sel:
                continue
            etas = sorted({r["eta"] for r in sel})
            mean = [np.mean([r["train_accuracy"] for r in sel if r["eta"] == e]) for e in etas]
            teacher = [np.mean([r["train_accuracy"] for r in rows if r["noise"] == noise and r["level"] == level
                                and r["method"] == "sd" and r["round"] == 0 and r["eta"] == e]) for e in etas]
            pred = [all(r["predicted_perfect"] for r in sel if r["eta"] == e) for e in etas]
            ax.plot(etas, mean, "-", marker=marker, color=color, ms=ms, mfc="none" if level == "linear" else color,
                    label=f"PLL student, {level}")
            ax.plot(etas, teacher, ":", color=color, lw=1, label=f"teacher, {level}")
            pe = [e for e, p in zip(etas, pred) if p]
            ax.plot(pe, [1.03 + 0.012 * levels.index(level)] * len(pe), marker, color=color, ms=3, ls="")
        ax.axvline(theory.noise_threshold(noise, sweep.K, sweep.superclass_size), color="orange", lw=1.5, ls=":")
        ax.set_ylim(0.0, 1.08)
        ax.set_xlabel("noise rate eta")
        ax.set_ylabel("training accuracy (one round)")
        ax.set_title("PLL student (one round) vs teacher\n(markers above 1: theory predicts 100 % for every seed)", fontsize=9)
        ax.legend(fontsize=6.5, loc="lower left")
    cb = fig.colorbar(im, ax=axes[:, :-1], shrink=0.8, pad=0.01, extend="min")
    cb.set_label("SD training accuracy vs true labels (mean over seeds; below 0.5 in the darkest colour)")
    handles = [
        Line2D([], [], color="crimson", ls="--", label="theory: minimum rounds for 100 % (population C)"),
        Line2D([], [], color="orange", ls=":", label="theory: noise threshold (C_kk > C_kj fails beyond)"),
        Line2D([], [], color="red", marker="x", ls="", label="cell where observed 100 % != theory's prediction for that sample"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.04))
    agree = ", ".join(f"{lv}: {summary['levels'][lv]['agreement']:.3f}" for lv in levels)
    fig.suptitle(
        f"Multi-round SD and PLL student: 100 % training accuracy, theory vs simulation "
        f"(c={sweep.c}, d={sweep.d}, lambda={sweep.lam:g}; agreement {agree})",
        fontsize=10,
    )
    for path in (path_png, path_pdf):
        if path is None:
            continue

        def w(tmp, fmt=Path(path).suffix[1:]):
            fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight")

        atomic_write(path, w)
    plt.close(fig)


# ---------------------------------------------------------------------------- CLI


def _floats(name):
    def parse(text):
        try:
            vals = tuple(float(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} == {text!r}, must be a comma-separated list of numbers") from None
        return vals

    return parse


def _names(text):
    return tuple(v.strip() for v in text.split(",") if v.strip())


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m sims.phase_diagram",
        description="Phase diagram of multi-round self-distillation and the PLL student: for each noise rate and "
        "round, does every training instance get its true class back, and does the linearised theory predict it?",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    d = Sweep()
    p.add_argument("--quick", action="store_true", help="reduced grid for CI (K=4, n=60, 6 etas, 14 rounds, lambda=1e-3)")
    p.add_argument("--noise", type=_names, default=d.noises, help="comma list of noise models (symmetric, superclass)")
    p.add_argument("--classes", type=int, default=d.K, help="K, number of classes")
    p.add_argument("--superclass-size", type=int, default=d.superclass_size, help="classes per superclass (divides K)")
    p.add_argument("--per-class", type=int, default=d.n, help="n, training instances per class (linear and exact levels)")
    p.add_argument("--within", type=float, default=d.c, help="c, within-class feature correlation")
    p.add_argument("--between", type=float, default=d.d, help="d, between-class feature correlation")
    p.add_argument("--lam", type=float, default=d.lam, help="lambda, ridge penalty")
    p.add_argument("--etas", type=_floats("--etas"), default=d.etas, help="comma list of noise rates in [0, 1]")
    p.add_argument("--rounds", type=int, default=d.rounds, help="last round t (teacher = round 0)")
    p.add_argument("--seeds", type=int, default=d.seeds, help="number of seeds per cell (labels; gmm features)")
    p.add_argument("--levels", type=_names, default=d.levels, help="comma list of levels: linear, exact, gmm")
    p.add_argument("--dim", type=int, default=d.dim, help="D, noise dimensions of the Gaussian mixture")
    p.add_argument("--gmm-per-class", type=int, default=d.gmm_per_class, help="n for the gmm level")
    p.add_argument("--gmm-etas-every", type=int, default=d.gmm_etas_every, help="gmm level uses every k-th eta")
    p.add_argument("--exact-counts", action="store_true", help="exact label counts (C_kj n labels j per class) instead of sampled labels")
    p.add_argument("--jobs", type=int, default=-1, help="parallel joblib workers (-1: all cores)")
    p.add_argument("--dask-scheduler", default=None, help="address of a Dask scheduler: run cells on that cluster through joblib's dask backend")
    p.add_argument("--seed", type=int, default=d.seed, help="the one seed of the sweep")
    p.add_argument("--out", default=None, help="write figure, CSV and JSON here (default: figures/ and results/phase_diagram/)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _given_options(argv) -> set:
    """Destinations of the options that appear on the command line (``--opt v`` or ``--opt=v``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    given = set()
    for action in build_parser()._actions:
        for opt in action.option_strings:
            if any(a == opt or a.startswith(opt + "=") for a in argv):
                given.add(action.dest)
    return given


def sweep_from_args(args, argv=None) -> Sweep:
    sweep = Sweep(
        noises=args.noise, K=args.classes, superclass_size=args.superclass_size, n=args.per_class, c=args.within,
        d=args.between, lam=args.lam, etas=args.etas, rounds=args.rounds, seeds=args.seeds, levels=args.levels,
        dim=args.dim, gmm_per_class=args.gmm_per_class, gmm_etas_every=args.gmm_etas_every,
        exact_counts=args.exact_counts, seed=args.seed,
    )
    if args.quick:
        explicit = _given_options(argv)  # options the user gave keep their value, even if it equals the default
        mapping = {"K": "classes", "n": "per_class", "etas": "etas", "rounds": "rounds", "seeds": "seeds",
                   "dim": "dim", "gmm_per_class": "gmm_per_class", "gmm_etas_every": "gmm_etas_every", "lam": "lam"}
        sweep = replace(sweep, **{k: v for k, v in QUICK.items() if mapping[k] not in explicit})
    return sweep.validate()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sweep = sweep_from_args(args, argv)
        check_int("--jobs", args.jobs, minimum=-1)
        if args.jobs == 0:
            raise ValueError("--jobs == 0, must be >= 1 or -1 (all cores)")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.out is not None:
        out = Path(args.out)
        fig_dir = res_dir = out
    else:
        fig_dir, res_dir = DEFAULT_FIG_DIR, DEFAULT_RESULTS_DIR
    stem = "phase_diagram_quick" if args.quick else "phase_diagram"
    backend = None
    client = None
    if args.dask_scheduler:
        from dask.distributed import Client

        client = Client(args.dask_scheduler)
        backend = "dask"
    try:
        if backend:
            rows, summary = run_sweep(sweep, jobs=-1, cache_dir=res_dir / "cache", progress=not args.no_progress,
                                      backend="dask")
        else:
            rows, summary = run_sweep(sweep, jobs=args.jobs, cache_dir=res_dir / "cache", progress=not args.no_progress)
    finally:
        if client is not None:
            client.close()
    write_text(res_dir / f"{stem}.csv", rows_to_csv(rows))
    write_text(res_dir / f"{stem}.json", json.dumps(summary, indent=2))
    plot(sweep, rows, summary, fig_dir / f"{stem}.png", fig_dir / f"{stem}.pdf")
    print(f"cells: {len(rows)} rows in {summary['runtime_seconds']:.1f} s "
          f"({summary['cells_computed']} cells computed, {summary['cells_from_cache']} from the cache)")
    for level, s in summary["levels"].items():
        print(f"  {level:6s} agreement with theory {s['agreement']:.4f} ({s['disagreements']} of {s['cells']} rows differ; "
              f"max residual {s['max_residual']:.2e})")
    print(f"figure: {fig_dir / (stem + '.png')}\ncsv:    {res_dir / (stem + '.csv')}\njson:   {res_dir / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
