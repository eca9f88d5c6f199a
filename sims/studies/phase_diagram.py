"""Phase diagram: where multi-round SD and the PLL student reach 100 % training accuracy.

For each noise model (symmetric, superclass), noise rate eta, round t and seed,
every *cell* records whether every training instance is predicted as its true
class (``observed_perfect``), next to what the linearised theory predicts for
the very same sample (``theory_perfect``: :func:`theory.rounds_report` and
:func:`theory.pll_analysis` on the sample's empirical corruption matrix, exact
at boundaries). Three levels:

* ``linear``: the linearised model by brute force (explicit N x N block Gram
  matrix, ``P_t - U = (Y - U) A^(t+1)``); it must agree with the theory in every
  cell, so any disagreement is a bug;
* ``exact``: the exact softmax optimum on the exact block model (type-reduced
  solver) at the same scale; its SD rows also carry ``certified_perfect``, the
  verdict of the certified exact-level theory (:mod:`theory.exact_level`: the
  type-reduced stationarity equations solved round by round in ball arithmetic)
  for the sample's own label counts: true, false or "undecided" (empty on the
  other rows). The summary's ``levels.exact.certified`` compares it with
  ``observed_perfect`` (confusion counts, overall and per noise model; every
  disagreement listed), and the figure draws its boundary;
* ``gmm``: the exact softmax optimum on the Gaussian mixture that realises the
  block model on average (several seeds), at a smaller scale
  (``--gmm-per-class``), with its own theory boundary. Its training Gram and
  train-fresh cross-Gram are sampled directly (``features.sample_gmm_gram``,
  cost independent of D) at D = 1e7 by default, where ``python -m
  sims.convergence`` finds the mixture's first perfect round equal to the
  exact block model's.

Outputs: a figure (PNG and PDF, default ``figures/phase_diagram.*``), the tidy
CSV (one row per noise, eta, method, level, round, seed) and a JSON summary
(default under ``results/phase_diagram/``); ``--out DIR`` puts all of them, and
the resume cache (``DIR/cache/``), in DIR. A run whose sweep differs from the
default (or from the ``--quick`` default) and has no ``--out`` writes to
``results/phase_diagram/<settings key>/`` instead, so that the tracked
``figures/phase_diagram.png`` and the default results are never overwritten by it.
Finished cells are cached, so an interrupted run (Ctrl-C: exit status 130)
started again with the same options resumes; a corrupt cache file is set aside
(``*.corrupt``) and its cell recomputed; outputs are written atomically. Output
folders are checked before any computing starts.

Agreement with the theory is counted on *informative* rows only (where the
theory or the simulation says 100 %), with the four counts of
:class:`sims.engine.Agreement` (both, only theory, only observed, neither) next to
it: the many rows where both sides say "not perfect" would otherwise inflate it.

Run ``python -m sims.phase_diagram --help`` for the options.
"""

from __future__ import annotations

import argparse
import hashlib
import json
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
from ..engine.features import PAPER
from ..engine.fit import BlockExact, GramExact, LinearModel, StackedLinear, limit_blas_threads
from ..engine.measures import Agreement
from ..engine.noise import one_hot
from .._cli import OneLineParser, atomic_write, check_output_dir, code_fingerprint, csv_text, write_text
from .runner import Unit, dask_client, run_units, settings_key
from . import phase_boundary as pb

__all__ = ["Sweep", "run_sweep", "predicted_boundary", "plot", "certified_boundary", "main", "COLUMNS", "confusion", "output_paths",
           "certified_verdicts", "certified_agreement"]

LEVELS = ("linear", "exact", "gmm")
NOISES = ("symmetric", "superclass", "asymmetric")  # the index is part of the seed key: append only
DEFAULT_NOISES = ("symmetric", "superclass")
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
    "theory_perfect",
    "observed_perfect",
    "residual",
    "K",
    "n",
    "certified_perfect",
)
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIG_DIR = Path("figures")  # relative to the working directory (the repository root in the README)
DEFAULT_RESULTS_DIR = Path("results") / "phase_diagram"
GMM_FRESH_PER_CLASS = 200  # fresh mixture samples per class for the gmm level's fresh accuracy
PROG = "python -m sims.phase_diagram"


@dataclass(frozen=True)
class Sweep:
    """Every setting of a sweep (defaults: the paper's numerical setting, K=4, n=500)."""

    noises: tuple = DEFAULT_NOISES
    K: int = PAPER["K"]
    superclass_size: int = 2
    n: int = PAPER["n"]
    c: float = PAPER["c"]
    d: float = PAPER["d"]
    lam: float = PAPER["lam"]
    etas: tuple = tuple(round(0.05 * i, 2) for i in range(19))
    rounds: int = 30
    seeds: int = 2
    levels: tuple = LEVELS
    # python -m sims.convergence (K=4, n=100, K N lambda as here): the mixture's first perfect round equals
    # the exact block model's in 95 % of runs from D = 3.2e6 on and in all runs at 1e7; cost independent of D
    dim: int = 10**7
    gmm_per_class: int = 100
    gmm_etas_every: int = 2
    exact_counts: bool = False
    seed: int = 0

    def __post_init__(self):
        # noise rates in increasing order, whatever order they were given in (the gmm level's
        # every-k-th choice, the cache key and the CSV all follow this order)
        try:
            object.__setattr__(self, "etas", tuple(sorted(float(e) for e in self.etas)))
        except (TypeError, ValueError):
            pass  # validate() names the bad value

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
        # a noise rate is told apart from another by 4 decimals (seed key, cache file name): a repeated
        # rate would give duplicate rows and count its cells twice, so it is rejected
        shown = [round(float(e), 4) for e in self.etas]
        repeated = sorted({e for e in shown if shown.count(e) > 1})
        if repeated:
            raise ValueError(f"--etas: {', '.join(f'{e:g}' for e in repeated)} given more than once "
                             "(rates equal to 4 decimals count as one); give each noise rate once")
        check_int("--rounds", self.rounds, minimum=0)
        check_int("--seeds", self.seeds, minimum=1)
        check_int("--dim", self.dim, minimum=1)
        check_int("--gmm-etas-every", self.gmm_etas_every, minimum=1)
        check_int("--seed", self.seed, minimum=0)
        return self

    def key(self) -> str:
        """Hash of every setting and of the code that computes a cell (the resume cache's folder name,
        :func:`.runner.settings_key`), so that a cache written by other code is never reused."""
        return settings_key(asdict(self), _code_fingerprint())

    def settings_key(self) -> str:
        """Hash of the settings alone (names the output folder of a run with non-default options)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]

    def gmm_etas(self) -> tuple:
        return tuple(self.etas[:: self.gmm_etas_every])

    def lam_for(self, n: int) -> float:
        """lambda at n instances per class: lam * self.n / n, so that K N lambda (hence the filters
        alpha, beta, g up to the n (c - d) terms) matches the block levels'. The gmm level runs at a
        smaller n; without this its theory boundary would sit at several times more rounds."""
        return self.lam * self.n / n


def _code_fingerprint() -> str:
    """Hash of the source of theory/ and of the engine (:func:`sims._cli.code_fingerprint`)."""
    return code_fingerprint()


QUICK = dict(
    K=4,
    n=60,
    etas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7),
    rounds=14,
    seeds=2,
    dim=10**7,
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
    """theory_perfect per round and for the PLL student (exact, on the sample's label shares)."""
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
    key = (K, n, c, d, lam)
    if key not in _LINEAR_CACHE:
        _LINEAR_CACHE.clear()
        _LINEAR_CACHE[key] = LinearModel(feat.block_gram(K, n, c, d), K, lam, explicit=True)
    return _LINEAR_CACHE[key]


def _row(cell, seed, method, t, acc, fresh, predicted, residual, K, n, eta=None, certified=None):
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
        "theory_perfect": bool(predicted),
        "observed_perfect": bool(acc["all"] == 1.0),
        "residual": float(residual),
        "K": K,
        "n": n,
        "certified_perfect": certified,
    }


def _run_linear(sweep: Sweep, cell: Cell, K, n) -> list[dict]:
    """Linear level of one noise model: every (eta, seed) problem stacked into one (problems K) x N array,
    so that each round is a single product with the explicit operator (compute-bound instead of
    memory-bound). Each row's residual is that of its own problem."""
    engine = StackedLinear(_linear_model(K, n, sweep.c, sweep.d, sweep.lam))
    problems = []
    for eta in sweep.etas:
        for s in range(sweep.seeds):
            rng = _seed_rng(sweep, cell.noise, eta, s)
            problems.append((float(eta), s, *_labels(sweep, K, n, cell.noise, eta, rng)))
    y = problems[0][2]
    fresh_cross = np.where(y[:, None] == np.arange(K)[None, :], sweep.c, sweep.d)
    T = np.vstack([one_hot(z, K) for _, _, _, z, _ in problems])
    fits = sd_rounds.sd(engine, T, sweep.rounds)
    pll = sd_rounds.pll(engine, fits[0], "ce")
    rows = []
    for i, (eta, s, y, z, counts) in enumerate(problems):
        predicted, pll_predicted = _theory(sweep, K, n, counts, sweep.rounds)
        block = slice(i * K, (i + 1) * K)
        for t, fit in enumerate(fits):
            fresh = metrics.accuracy(fit.R[block] @ fresh_cross, np.arange(K))
            rows.append(_row(cell, s, "sd", t, metrics.split_accuracy(fit.outputs[block], y, z), fresh,
                             predicted[t], fit.residual[i], K, n, eta=eta))
        fresh = metrics.accuracy(pll.R[block] @ fresh_cross, np.arange(K))
        rows.append(_row(cell, s, "pll", 1, metrics.split_accuracy(pll.outputs[block], y, z), fresh, pll_predicted,
                         pll.residual[i], K, n, eta=eta))
    return rows


def run_cell(sweep: Sweep, cell: Cell) -> list[dict]:
    """All rows of one cell: for every seed, rounds 0..R of SD and the PLL student (reported as round 1).

    Runs on one BLAS thread throughout, in the main process (--jobs 1) as in a joblib or Dask worker, so
    that the rows are the same bytes for any --jobs: a multi-threaded BLAS splits a product (and OpenBLAS
    its ``dlauum``, which forms the gmm level's sampled Gram matrix) differently, which changes the last
    bits of G and of the products, and so of the residual column."""
    with limit_blas_threads(1):
        return _run_cell(sweep, cell)


def _run_cell(sweep: Sweep, cell: Cell) -> list[dict]:
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
            engine = BlockExact(K, n, sweep.c, sweep.d, sweep.lam, y, z)
            first = engine.one_hot_types()
            y_fresh = np.arange(K)
            certified = certified_verdicts(K, n, sweep.c, sweep.d, sweep.lam, counts, sweep.rounds)
        else:  # gmm: labels were drawn first, then the training Gram and the train-fresh cross-Gram
            # (Bartlett/Wishart sampling for D >= N, explicit features below; cost independent of D)
            gram = feat.sample_gmm_gram(K, n, sweep.c, sweep.d, sweep.dim, rng, fresh_per_class=GMM_FRESH_PER_CLASS)
            y_fresh = gram.y_fresh
            engine = GramExact(gram.G, sweep.lam_for(n), gram.cross)
            first = one_hot(z, K)
        fits = sd_rounds.sd(engine, first, sweep.rounds)
        pll = sd_rounds.pll(engine, fits[0], "ce")
        for t, fit in enumerate(fits):
            rows.append(_row(cell, s, "sd", t, metrics.split_accuracy(fit.outputs, y, z),
                             metrics.accuracy(fit.fresh_logits, y_fresh), predicted[t], fit.residual, K, n,
                             certified=certified[t] if cell.level == "exact" else None))
        rows.append(_row(cell, s, "pll", 1, metrics.split_accuracy(pll.outputs, y, z),
                         metrics.accuracy(pll.fresh_logits, y_fresh), pll_predicted, pll.residual, K, n))
    return rows


def certified_verdicts(K, n, c, d, lam, counts, rounds) -> list:
    """The exact-level theory's verdict on "every training instance correct" at rounds 0..``rounds`` for
    the label counts ``counts`` (K x K, the sample's own): True (proved perfect), False (proved not
    perfect) or "undecided", from :func:`theory.exact_level.certified_rounds` with every round checked
    (sampled labels are unbalanced, so a perfect round can be followed by imperfect ones)."""
    from theory.exact_level import certified_rounds

    report = certified_rounds(K, n, c, d, lam, counts, rounds, full=True)
    return [CERTIFIED_VALUE[v] for v in report.per_round]


CERTIFIED_VALUE = {"perfect": True, "not perfect": False, "undecided": "undecided"}


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


def rows_to_csv(rows: list[dict]) -> str:
    """The tidy CSV of the rows, in COLUMNS order (:func:`sims._cli.csv_text`)."""
    return csv_text(rows, COLUMNS)


def _sort_key(r):
    return (NOISES.index(r["noise"]), LEVELS.index(r["level"]), r["eta"], r["seed"], r["method"] != "sd", r["round"])


# ---------------------------------------------------------------------------- sweep


def run_sweep(sweep: Sweep, jobs: int = 1, cache_dir: Path | None = None, progress: bool = True,
              backend: str | None = None) -> tuple[list[dict], dict]:
    """Run every cell (in parallel with joblib; cached cells are read, :mod:`.runner`) and return
    (rows sorted, summary)."""
    sweep.validate()
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_RESULTS_DIR / "cache"
    cache = cache / sweep.key()
    cache.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    units = [Unit(cache / f"{c.name()}.json", run_cell, (sweep, c), COLUMNS) for c in cells_of(sweep)]
    run = run_units(units, jobs=jobs, backend=backend, progress=progress, desc="phase-diagram cells", prog=PROG)
    rows = sorted(run.rows, key=_sort_key)
    elapsed = time.perf_counter() - start
    summary = summarize(sweep, rows, elapsed, jobs)
    summary["cells_computed"] = run.computed
    summary["cells_from_cache"] = run.from_cache
    summary["cell_compute_seconds"] = float(run.compute_seconds)
    summary["cache_warnings"] = run.warnings
    return rows, summary


AGREEMENT_RULE = Agreement.RULE


def confusion(rows) -> Agreement:
    """Rows counted by (theory's verdict, observation) of "every training instance correct"."""
    return Agreement.of([bool(r["theory_perfect"]) for r in rows], [bool(r["observed_perfect"]) for r in rows])


def _agreement_block(rows) -> dict:
    counts = confusion(rows)
    return {"agreement": counts.agreement, "confusion": counts.counts(), "informative_rows": counts.informative}


CERTIFIED_RULE = ("certified_perfect (exact level, SD rows): theory.exact_level's verdict for the sample's own label "
                  "counts, proved in ball arithmetic, as 'theory', against observed_perfect of the exact solver "
                  "(type-reduced float Newton, sims.engine.BlockExact) as 'observed'; agreement = both / (both + "
                  "only theory + only observed) over decided rows, undecided rows counted apart; decided_agreement "
                  "= share of decided rows on which the two verdicts are equal")


def certified_agreement(rows) -> dict:
    """Certified exact-level verdict against the exact solver's observation, over the rows that carry one.

    Returns {"rows", "undecided", "confusion": {"both", "only_theory", "only_observed", "neither"} (the
    certified verdict as "theory"), "agreement" (informative rows, None if none), "decided_agreement" (all
    decided rows, None if none), "disagreements": every decided row where the two differ (noise, eta, round,
    seed), "first_round": {"equal", "samples"}: samples (noise, eta, seed) whose certified first perfect
    round (the first round proved perfect; "undecided" if an undecided round comes before it) equals the
    solver's}.
    """
    sel = [r for r in rows if r.get("certified_perfect") is not None]
    decided = [r for r in sel if r["certified_perfect"] != "undecided"]
    counts = Agreement.of([bool(r["certified_perfect"]) for r in decided], [bool(r["observed_perfect"]) for r in decided])
    dis = [{k: r[k] for k in ("noise", "eta", "round", "seed", "train_accuracy")} for r in decided
           if bool(r["certified_perfect"]) != bool(r["observed_perfect"])]
    undecided = len(sel) - len(decided)
    samples: dict = {}
    for r in sorted(sel, key=lambda r: r["round"]):
        samples.setdefault((r["noise"], r["eta"], r["seed"]), []).append(r)
    equal = 0
    for seq in samples.values():
        cert = next((r["round"] if r["certified_perfect"] is True else "undecided" for r in seq
                     if r["certified_perfect"] is True or r["certified_perfect"] == "undecided"), None)
        obs = next((r["round"] for r in seq if r["observed_perfect"]), None)
        equal += cert == obs
    return {
        "rows": len(sel),
        "undecided": undecided,
        "confusion": counts.counts(),
        "informative_rows": counts.informative,
        "agreement": counts.agreement,
        "decided_agreement": counts.all_cells_agreement,
        "disagreements": dis,
        "first_round": {"equal": equal, "samples": len(samples)},
    }


def summarize(sweep: Sweep, rows: list[dict], elapsed: float, jobs: int) -> dict:
    per_level = {}
    for level in sweep.levels:
        sel = [r for r in rows if r["level"] == level]
        dis = [
            {k: r[k] for k in ("noise", "eta", "method", "round", "seed", "train_accuracy", "theory_perfect")}
            for r in sel
            if r["theory_perfect"] != r["observed_perfect"]
        ]
        sd = _agreement_block([r for r in sel if r["method"] == "sd"])
        pll = _agreement_block([r for r in sel if r["method"] == "pll"])
        per_level[level] = {
            "cells": len(sel),  # rows: one per (noise, eta, method, round, seed)
            **_agreement_block(sel),
            "agreement_sd": sd["agreement"],
            "confusion_sd": sd["confusion"],
            "agreement_pll": pll["agreement"],
            "confusion_pll": pll["confusion"],
            "by_noise": {noise: _agreement_block([r for r in sel if r["noise"] == noise and r["method"] == "sd"])
                         for noise in sweep.noises},
            "disagreements": len(dis),
            "first_disagreements": dis[:20],
            "max_residual": float(max(r["residual"] for r in sel)) if sel else None,
        }
        if level == "exact":
            sd_rows = [r for r in sel if r["method"] == "sd"]
            per_level[level]["certified"] = {
                **certified_agreement(sd_rows),
                "by_noise": {noise: certified_agreement([r for r in sd_rows if r["noise"] == noise])
                             for noise in sweep.noises},
            }
    if "gmm" in sweep.levels:
        per_level["gmm"]["finite_dim"] = _finite_dim_block(sweep, rows)
    boundary = {noise: predicted_boundary(sweep, noise) for noise in sweep.noises}
    if "gmm" in sweep.levels:
        boundary.update({f"{noise}_gmm": predicted_boundary(sweep, noise, n=sweep.gmm_per_class) for noise in sweep.noises})
    return {
        "params": {**asdict(sweep), "gmm_etas": list(sweep.gmm_etas())},
        "agreement_rule": AGREEMENT_RULE,
        "levels": per_level,
        "certified_rule": CERTIFIED_RULE,
        "theory_boundary": boundary,
        "runtime_seconds": elapsed,  # wall time of this invocation (a resumed run reuses cached cells)
        "jobs": jobs,
        "accuracy_notion": "training-instance accuracy against true labels (ties fail); fresh_accuracy column: "
        "population formula (block levels) or 200 held-out samples per class (gmm)",
    }


def _finite_dim_block(sweep: Sweep, rows) -> dict:
    """The gmm level's finite-D boundary per noise model and its agreement, next to the block boundary's."""
    out = {"rule": pb.FD_RULE, "D": sweep.dim, "n": sweep.gmm_per_class, "lam": sweep.lam_for(sweep.gmm_per_class),
           "prob_tol": pb.FD_PROB_TOL, "by_noise": {}}
    for noise in sweep.noises:
        fd = pb.finite_dim_boundary(sweep, noise)
        g = list(sweep.gmm_etas())
        block = predicted_boundary(sweep, noise, n=sweep.gmm_per_class, etas=g)["min_rounds"]
        out["by_noise"][noise] = {"boundary": fd, "agreement": pb.boundary_agreement(rows, noise, fd["eta"], fd["median"]),
                                  "block_boundary_agreement": pb.boundary_agreement(rows, noise, g, block)}
    for name in ("agreement", "block_boundary_agreement"):
        c = {k: sum(b[name]["confusion"][k] for b in out["by_noise"].values()) for k in Agreement().counts()}
        a = Agreement(**c)
        out[name] = {"agreement": a.agreement, "confusion": a.counts(), "informative_rows": a.informative}
    return out


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
#
# Heatmaps of SD training accuracy over (eta, round) per noise model and level, the theory's
# minimum-rounds boundary (only where it is within the rounds shown; "beyond" markers on the top edge
# otherwise), the noise threshold, cells where observation and prediction differ, and the PLL column.
# Claims P3 (rounds to 100 %), P4 (PLL student) and P5 (levels of approximation).


def _noise_text(sweep: Sweep, noise: str) -> str:
    if noise == "symmetric":
        return "symmetric noise"
    if noise == "asymmetric":
        return "asymmetric noise (cyclic: extra $\\eta/K$ to the next class)"
    groups = ", ".join("{" + ",".join(map(str, g)) + "}" for g in theory.superclass_groups(sweep.K, sweep.superclass_size))
    return f"superclass noise (groups of {sweep.superclass_size}: {groups})"


def _power_text(D: int) -> str:
    """D as mathtext: a power of ten from 10^4 on as $10^k$, otherwise the number."""
    k = len(str(D)) - 1
    return f"$10^{{{k}}}$" if D >= 10**4 and D == 10**k else str(D)


def _counts_text(block: dict) -> str:
    c, a = block["confusion"], block["agreement"]
    agree = "n/a" if a is None else f"{a:.3f}"
    return (f"agreement {agree} on {block['informative_rows']} informative rows:\n"
            f"both 100 % {c['both']} | only theory {c['only_theory']} | "
            f"only observed {c['only_observed']} | neither {c['neither']}")


CERT_COLOR = "deepskyblue"


def certified_boundary(rows: list[dict], noise: str, etas: list, R: int) -> dict:
    """The certified exact-level boundary of one noise model, from the exact level's SD rows.

    Per noise rate in ``etas``: the first round at which the certified verdict is "perfect" for every seed
    (None if there is none within 0..R). Returns {"rounds": [...], "beyond": etas with no such round and no
    undecided verdict, "undecided": etas with no such round and some undecided verdict}; empty lists when
    no exact-level row carries a certified verdict.
    """
    sel = [r for r in rows if r["noise"] == noise and r["level"] == "exact" and r["method"] == "sd"
           and r.get("certified_perfect") is not None]
    out = {"etas": [], "rounds": [], "beyond": [], "undecided": []}
    for eta in etas:
        col = [r for r in sel if r["eta"] == eta]
        if not col:
            continue
        first = next((t for t in range(R + 1)
                      if all(r["certified_perfect"] is True for r in col if r["round"] == t)
                      and any(r["round"] == t for r in col)), None)
        out["etas"].append(eta)
        out["rounds"].append(first)
        if first is None:
            out["undecided" if any(r["certified_perfect"] == "undecided" for r in col) else "beyond"].append(eta)
    return out


def plot(sweep: Sweep, rows: list[dict], summary: dict, path_png: Path, path_pdf: Path | None = None):
    """Heatmaps of training accuracy (eta x round) per noise and level, theory boundary, PLL column.

    The theory's minimum-rounds boundary is drawn only where it lies within the rounds shown; columns
    where the theory needs more rounds than the sweep ran get a marker on the top edge ("beyond").
    Each heatmap's title gives its agreement on informative rows with the four confusion counts.
    Returns, per (noise, level), the rounds at which the boundary is drawn and the "beyond" noise rates.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    levels = list(sweep.levels)
    noises = list(sweep.noises)
    lam_g = sweep.lam_for(sweep.gmm_per_class)
    titles = {
        "linear": f"linearised, explicit block Gram ($K$={sweep.K}, $n$={sweep.n})",
        "exact": f"exact softmax, block model ($K$={sweep.K}, $n$={sweep.n})",
        "gmm": f"exact softmax, Gaussian mixture ($n$={sweep.gmm_per_class}, $D$={_power_text(sweep.dim)},\n"
               f"$\\lambda$={lam_g:.3g} keeps $KN\\lambda$, {sweep.seeds} seeds)",
    }
    fig, axes = plt.subplots(len(noises), len(levels) + 1, figsize=(4.4 * (len(levels) + 1), 4.3 * len(noises)),
                             squeeze=False, constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    im = None
    R = sweep.rounds
    by_level = summary["levels"]
    any_beyond = any_cert = any_cert_beyond = any_cert_undecided = False
    drawn = {}  # what the overlays show, per (noise, level): returned for tests and callers
    for i, noise in enumerate(noises):
        for j, level in enumerate(levels):
            ax = axes[i, j]
            sel = [r for r in rows if r["noise"] == noise and r["level"] == level and r["method"] == "sd"]
            etas = sorted({r["eta"] for r in sel})
            acc = np.zeros((R + 1, len(etas)))
            dis = np.zeros((R + 1, len(etas)), dtype=bool)
            for r in sel:
                a, b = r["round"], etas.index(r["eta"])
                acc[a, b] += r["train_accuracy"] / sweep.seeds
                dis[a, b] |= r["theory_perfect"] != r["observed_perfect"]
            ev = np.array(etas)
            if len(ev) > 1:  # cell edges halfway between neighbouring etas (the grid may be uneven)
                mids = (ev[1:] + ev[:-1]) / 2
                edges = np.r_[ev[0] - (mids[0] - ev[0]), mids, ev[-1] + (ev[-1] - mids[-1])]
            else:
                edges = np.r_[ev[0] - 0.05, ev[0] + 0.05]
            im = ax.pcolormesh(edges, np.arange(R + 2) - 0.5, acc, cmap=cmap, vmin=0.5, vmax=1.0, shading="flat")
            n_panel = sweep.gmm_per_class if level == "gmm" else sweep.n
            # theory boundary (population C) on a fine grid, only where its round is within 0..R
            bd = predicted_boundary(sweep, noise, n=n_panel)
            be = np.array(bd["eta"])
            bm = np.array([np.nan if v is None or v > R else v for v in bd["min_rounds"]], dtype=float)
            ax.step(be, bm - 0.5, where="mid", color="white", lw=2.0)
            ax.step(be, bm - 0.5, where="mid", color="crimson", lw=1.2, ls="--")
            # columns where the theory needs more than R rounds (but not "never"): marker on the top edge
            cols = predicted_boundary(sweep, noise, n=n_panel, etas=etas)["min_rounds"]
            beyond = [e for e, v in zip(etas, cols) if v is not None and v > R]
            drawn[(noise, level)] = {"boundary_rounds": sorted({int(v) for v in bm[np.isfinite(bm)]}),
                                     "beyond_etas": beyond}
            if beyond:  # (an empty unclipped line would break the constrained layout)
                any_beyond = True
                ax.plot(beyond, [R + 0.5] * len(beyond), "^", color="crimson", mec="white", mew=0.6, ms=7, ls="",
                        clip_on=False, zorder=5)
            if level in ("exact", "linear"):  # same samples (seeds) at both levels: the exact level's certificate
                cb_ = certified_boundary(rows, noise, etas, R)
                if cb_["etas"]:
                    any_cert = True
                    ce = np.array(cb_["etas"])
                    cm = np.array([np.nan if v is None else v for v in cb_["rounds"]], dtype=float)
                    ax.step(ce, cm - 0.5, where="mid", color="white", lw=2.4)
                    ax.step(ce, cm - 0.5, where="mid", color=CERT_COLOR, lw=1.3, ls="-.")
                    if cb_["beyond"]:
                        any_cert_beyond = True
                        ax.plot(cb_["beyond"], [R + 0.5] * len(cb_["beyond"]), "v", color=CERT_COLOR, mec="k",
                                mew=0.5, ms=6, ls="", clip_on=False, zorder=6)
                    if cb_["undecided"]:
                        any_cert_undecided = True
                        ax.plot(cb_["undecided"], [R + 0.5] * len(cb_["undecided"]), "D", color="yellow", mec="k",
                                mew=0.5, ms=5, ls="", clip_on=False, zorder=6)
                    drawn[(noise, level)].update(certified_rounds=cb_["rounds"], certified_beyond_etas=cb_["beyond"],
                                                 certified_undecided_etas=cb_["undecided"])
            if level == "gmm":
                drawn[(noise, level)].update(pb.draw_finite_dim(ax, by_level["gmm"]["finite_dim"]["by_noise"][noise]
                                                                ["boundary"], R))
            ax.axvline(bd["noise_threshold"], color="orange", lw=1.5, ls=":")
            if dis.any():
                yy, xx = np.nonzero(dis)
                ax.scatter(ev[xx], yy, marker="x", s=14, color="red", linewidths=1.0)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_ylim(-0.5, R + 0.5)
            title = titles[level] + "\n" + _counts_text(by_level[level]["by_noise"][noise])
            cert = by_level[level].get("certified", {}).get("by_noise", {}).get(noise)
            if cert and cert["rows"]:
                c = cert["confusion"]
                title += (f"\ncertified = solver on {c['both'] + c['neither']}/{cert['rows'] - cert['undecided']}"
                          f" decided rows (undecided {cert['undecided']})")
            ax.set_title(title, fontsize=7.5)
            ax.set_xlabel(r"noise rate $\eta$")
            if j == 0:
                ax.set_ylabel(f"{_noise_text(sweep, noise)}\nround $t$ (teacher = 0)", fontsize=9)
        ax = axes[i, -1]
        styles = {"linear": ("tab:blue", "o", 6, (0, (1, 1))), "exact": ("tab:green", "s", 4.5, (0, (4, 2))),
                  "gmm": ("tab:purple", "^", 4.5, (0, (6, 2, 1, 2)))}
        all_etas = sorted({r["eta"] for r in rows if r["noise"] == noise})
        step = float(np.min(np.diff(all_etas))) if len(all_etas) > 1 else 0.1
        for k, level in enumerate(levels):
            color, marker, ms, dash = styles[level]
            sel = [r for r in rows if r["noise"] == noise and r["level"] == level and r["method"] == "pll"]
            if not sel:
                continue
            etas = sorted({r["eta"] for r in sel})
            dx = 0.18 * step * (k - (len(levels) - 1) / 2)  # side by side, so that equal values stay visible
            mean = [np.mean([r["train_accuracy"] for r in sel if r["eta"] == e]) for e in etas]
            teacher = [np.mean([r["train_accuracy"] for r in rows if r["noise"] == noise and r["level"] == level
                                and r["method"] == "sd" and r["round"] == 0 and r["eta"] == e]) for e in etas]
            pred = [all(r["theory_perfect"] for r in sel if r["eta"] == e) for e in etas]
            ax.plot(etas, teacher, color=color, lw=1.1, ls=dash, alpha=0.8, zorder=2, label=f"teacher, {level}")
            ax.plot(np.array(etas) + dx, mean, "-", marker=marker, color=color, ms=ms, lw=1.0, zorder=3,
                    mfc="white" if level == "linear" else color, label=f"PLL student, {level}")
            pe = [e + dx for e, p in zip(etas, pred) if p]
            ax.plot(pe, [1.035] * len(pe), marker, color=color, ms=3.5, ls="", zorder=3)
        ax.axvline(theory.noise_threshold(noise, sweep.K, sweep.superclass_size), color="orange", lw=1.5, ls=":")
        ax.axhline(1.0, color="0.6", lw=0.6)
        ax.set_ylim(0.0, 1.07)
        ax.set_xlabel(r"noise rate $\eta$")
        ax.set_ylabel("training accuracy (one round)")
        ax.set_title("PLL student (solid, markers) vs teacher (dashed)\n"
                     "top markers: theory predicts 100 %\nfor every seed", fontsize=8)
        ax.legend(fontsize=6.5, loc="lower left", ncol=2)
    cb = fig.colorbar(im, ax=axes[:, :-1], shrink=0.8, pad=0.01, extend="min")
    cb.set_label("SD training accuracy vs true labels (mean over seeds; below 0.5 in the darkest colour)")
    handles = [
        Line2D([], [], color="crimson", ls="--", label="theory: minimum rounds for 100 % (population $C$)"),
        Line2D([], [], color="orange", ls=":", label=r"theory: noise threshold ($C_{kk} > C_{kj}$ fails beyond)"),
        Line2D([], [], color="red", marker="x", ls="", label="observed 100 % $\\neq$ theory's prediction for that sample"),
    ]
    if any_beyond:
        handles.insert(1, Line2D([], [], color="crimson", marker="^", ls="",
                                 label=f"theory: 100 % only after the last round shown ($t$ > {R})"))
    if "gmm" in levels:
        handles.append(Line2D([], [], color=pb.FD_COLOR, marker="o", ms=3, label=f"finite-$D$ theory ($D$="
                              f"{_power_text(sweep.dim)}, gmm panels): median first perfect round, bars 10-90 %"))
    if any_cert:
        handles.append(Line2D([], [], color=CERT_COLOR, ls="-.", lw=1.3,
                              label="exact-level theory, certified (ball arithmetic): first round proved 100 % "
                                    "for every seed (linear, exact panels)"))
    if any_cert_beyond:
        handles.append(Line2D([], [], color=CERT_COLOR, marker="v", mec="k", mew=0.5, ls="",
                              label=f"certified: not 100 % for every seed by round {R}"))
    if any_cert_undecided:
        handles.append(Line2D([], [], color="yellow", marker="D", mec="k", mew=0.5, ls="",
                              label="certified: undecided (an interval contains 0)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=3 if len(handles) > 4 else 4, fontsize=8)
    agree = "; ".join(
        f"{lv} {'n/a' if by_level[lv]['agreement'] is None else format(by_level[lv]['agreement'], '.3f')}"
        for lv in levels)
    fig.suptitle(
        f"Multi-round SD and PLL student: 100 % training accuracy, theory vs simulation "
        f"($c$={sweep.c}, $d$={sweep.d}, $\\lambda$={sweep.lam:g})\n"
        f"agreement on informative rows (the theory or the simulation says 100 %; rows where neither does are "
        f"not counted as agreement): {agree}",
        fontsize=10,
    )
    for path in (path_png, path_pdf):
        if path is None:
            continue

        def w(tmp, fmt=Path(path).suffix[1:]):
            fig.savefig(tmp, format=fmt, dpi=130, bbox_inches="tight")

        atomic_write(path, w)
    plt.close(fig)
    return drawn


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
    p.add_argument("--noise", type=_names, default=d.noises, help="comma list of noise models (symmetric, superclass, asymmetric)")
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




def is_default_sweep(sweep: Sweep, quick: bool) -> bool:
    """Whether ``sweep`` is the default sweep (``--quick``: the quick default) whose outputs are tracked."""
    default = replace(Sweep(), **QUICK) if quick else Sweep()
    return sweep == default.validate()


def output_paths(sweep: Sweep, quick: bool, out=None) -> tuple[Path, Path, str]:
    """(figure folder, results folder, file stem) of a run.

    ``--out DIR``: both are DIR. Otherwise the default sweep writes ``figures/`` and
    ``results/phase_diagram/``; any other sweep writes both to ``results/phase_diagram/<settings key>/``,
    so that it never overwrites the tracked figure or the default results.
    """
    stem = "phase_diagram_quick" if quick else "phase_diagram"
    if out is not None:
        return Path(out), Path(out), stem
    if is_default_sweep(sweep, quick):
        return DEFAULT_FIG_DIR, DEFAULT_RESULTS_DIR, stem
    folder = DEFAULT_RESULTS_DIR / sweep.settings_key()
    return folder, folder, stem


def _line(level: str, s: dict) -> str:
    c = s["confusion"]
    agree = "n/a (no row where either side says 100 %)" if s["agreement"] is None else f"{s['agreement']:.4f}"
    return (f"  {level:6s} agreement with theory on informative rows {agree} (both 100 %: {c['both']}, "
            f"only theory: {c['only_theory']}, only observed: {c['only_observed']}; neither: {c['neither']}; "
            f"max residual {s['max_residual']:.2e})")


def _certified_line(s: dict) -> str:
    c = s["confusion"]
    agree = "n/a" if s["decided_agreement"] is None else f"{s['decided_agreement']:.4f}"
    return (f"  {'':6s} certified exact-level theory vs exact solver: equal on {agree} of decided rows "
            f"(both 100 %: {c['both']}, only theory (certified): {c['only_theory']}, only observed (solver): "
            f"{c['only_observed']}; neither: {c['neither']}; undecided: {s['undecided']}; first perfect round equal "
            f"in {s['first_round']['equal']}/{s['first_round']['samples']} samples)")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog

    try:
        sweep = sweep_from_args(args, argv)
        check_int("--jobs", args.jobs, minimum=-1)
        if args.jobs == 0:
            raise ValueError("--jobs == 0, must be >= 1 or -1 (all cores)")
        fig_dir, res_dir, stem = output_paths(sweep, args.quick, args.out)
        option = "--out" if args.out is not None else "output folder"
        for folder in dict.fromkeys((fig_dir, res_dir, res_dir / "cache")):
            check_output_dir(option, folder)  # before any computing
    except ValueError as err:
        return parser.fail(err)
    client = None
    if args.dask_scheduler is not None:
        try:
            client = dask_client(args.dask_scheduler)
        except ValueError as err:
            return parser.fail(err)
    if args.out is None and (fig_dir, res_dir) != (DEFAULT_FIG_DIR, DEFAULT_RESULTS_DIR):
        print(f"options differ from the {'--quick ' if args.quick else ''}default sweep: writing to {res_dir}/ "
              "(figures/ and the default results are left alone; --out DIR chooses the folder)", flush=True)
    cache_dir = res_dir / "cache"
    try:
        try:
            if client is not None:
                rows, summary = run_sweep(sweep, jobs=-1, cache_dir=cache_dir, progress=not args.no_progress,
                                          backend="dask")
            else:
                rows, summary = run_sweep(sweep, jobs=args.jobs, cache_dir=cache_dir, progress=not args.no_progress)
        finally:
            if client is not None:
                client.close()
        write_text(res_dir / f"{stem}.csv", rows_to_csv(rows))
        write_text(res_dir / f"{stem}.json", json.dumps(summary, indent=2))
        plot(sweep, rows, summary, fig_dir / f"{stem}.png", fig_dir / f"{stem}.pdf")
    except KeyboardInterrupt:
        kept = len(list((cache_dir / sweep.key()).glob("*.json")))
        print(f"{prog}: interrupted; the {kept} finished cells are kept in {cache_dir / sweep.key()}, "
              "and the same command resumes from them", file=sys.stderr, flush=True)
        return 130
    print(f"cells: {len(rows)} rows in {summary['runtime_seconds']:.1f} s "
          f"({summary['cells_computed']} cells computed, {summary['cells_from_cache']} from the cache)")
    for level, s in summary["levels"].items():
        print(_line(level, s))
        if "finite_dim" in s:
            f, b = s["finite_dim"]["agreement"], s["finite_dim"]["block_boundary_agreement"]
            print(f"  {'':6s} boundary vs observed cells: finite-D (D={sweep.dim}) {f['confusion']}, "
                  f"block model {b['confusion']}")
        if "certified" in s:
            print(_certified_line(s["certified"]))
    print(f"figure: {fig_dir / (stem + '.png')}\ncsv:    {res_dir / (stem + '.csv')}\njson:   {res_dir / (stem + '.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
