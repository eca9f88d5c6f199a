"""Multi-round self-distillation (SD) and the PLL student, by brute force.

Library
-------
* :class:`Scenario`, :func:`build_problem`, :func:`run_scenario` -- one scenario
  end to end, returning ``{"params", "theory", "records"}``, on the engine of
  :mod:`sims.engine` (linearised fits: :class:`sims.engine.LinearModel`; exact:
  :mod:`sims.engine.fit.exact`; rounds: :mod:`sims.engine.rounds`).

Command line: ``python -m sims.distill --help``.

Definitions
-----------
Round 0 (the teacher) is fitted on the one-hot given labels; round t on the
outputs of round t-1 on the training instances. The PLL student is one fit on
the teacher's (round 0's) top-two targets, 1/2 each (tie rule
:func:`sims.engine.measures.pll_targets`), with cross-entropy (as in the theory) or
generalised cross-entropy (q = 0.7, started from the teacher's weights, as in the
paper's experiments); it is reported as round 1 of method "pll".

Exact engines: block model -- ``solver.fit_block`` (type-reduced, exact for the
N x N block Gram); gmm -- ``solver.fit_gram`` on the sampled Gram matrix
(``features.sample_gmm_gram``: any D at a cost independent of D; fresh logits
from the sampled cross-Gram; rounds warm-started); perturbed, digits --
``solver.fit_features`` (primal, on the explicit features; for perturbed the
row-normalised mixture features whose Gram is the perturbed Gram matrix).

The ``theory`` part of the output is the block-model theory (``theory.min_rounds``,
``theory.filters``) for the nominal K, n, c, d, lam and the sample's empirical
corruption matrix: exact for ``block``, the idealisation that ``gmm`` and
``perturbed`` approximate, null for ``digits``. For ``gmm`` it also holds
``finite_dim``: the finite-D theory (:func:`theory.finite_dim.finite_dim_prediction`,
linearised level) for the run's K, n, c, d, lam, D and sampled label counts --
``first_perfect_round`` = {median, q10, q90, p_equal_block} (null: beyond the
rounds), ``block_first_round``, and per round t = 0..R ``train_accuracy``
(expected, against the true labels), ``p_all_correct`` and ``fresh_accuracy``; and ``finite_dim_exact``
(:func:`theory.finite_dim_exact.exact_finite_dim_prediction`): ``lam_eff``, ``lam_eff_ratio``,
``block_exact_first_round`` (certified) and the exact softmax's predicted ``first_perfect_round`` =
{median, q10, q90} (null without a calibration).

Measures per (method, level, round):

* ``train_accuracy`` / ``clean_accuracy`` / ``noisy_accuracy``: outputs on the
  training instances against the true labels (all / given label correct / given
  label wrong; null for an empty subset), tie convention of :mod:`sims.engine.measures`;
* ``fresh_accuracy``: block model -- the balanced population accuracy, i.e. the
  share of classes k whose fresh-sample logits are correct; in the exact block
  model every fresh class-k sample has the Gram row ``g_x`` = c on class-k
  training instances and d elsewhere, so its logits are ``R g_x / (N lam)`` with
  ``R = T - P`` (exact level: ``BlockFit.fresh_logits``; linear level: the same
  formula with the linearised residual). gmm: fresh samples from the mixture;
  digits: the held-out test set; perturbed: null (no distribution);
* ``residual``: exact level -- the solver's fixed-point residual; linear level --
  ``max |(P - U)(G + K N lam I) - (T - U) G| / max(1, max |(T - U) G|)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from theory.validate import check_block_correlations, check_fraction, check_int, check_positive

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import noise as noise_mod
from ..engine import rounds
from ..engine.features import PAPER
from ..engine.fit import GCE_Q, BlockExact, FeatureExact, GramExact, LinearModel
from ..engine.noise import one_hot
from .._cli import OneLineParser

__all__ = [
    "FEATURE_KINDS",
    "LEVELS",
    "PLL_LOSSES",
    "Scenario",
    "Problem",
    "build_problem",
    "run_scenario",
    "main",
]

FEATURE_KINDS = ("block", "gmm", "perturbed", "digits")
LEVELS = ("linear", "exact", "both")
PLL_LOSSES = ("ce", "gce")
DEFAULT_GMM_DIM = 1000


# ============================================================================ scenario


@dataclass(frozen=True)
class Scenario:
    """Every setting of one run (defaults: the paper's numerical-solver setting)."""

    K: int = PAPER["K"]
    n: int = PAPER["n"]
    c: float = PAPER["c"]
    d: float = PAPER["d"]
    lam: float = PAPER["lam"]
    noise: str = "symmetric"
    eta: float = 0.5
    superclass_size: int = 2
    exact_counts: bool = False
    features: str = "block"
    dim: int | None = None
    rounds: int = 20  # >= the theory's minimum round (13) for the default eta = 0.5, so the default run shows it
    pll: bool = False
    pll_loss: str = "ce"
    ties: str = "share"
    level: str = "both"
    fresh_per_class: int = 1000
    seed: int = 0

    def validate(self) -> "Scenario":
        """Check every setting; ValueError naming the setting (CLI option names in brackets)."""
        if self.features not in FEATURE_KINDS:
            raise ValueError(f"features == {self.features!r}, must be one of {', '.join(FEATURE_KINDS)}")
        if self.noise not in noise_mod.NOISE_MODELS:
            raise ValueError(f"noise == {self.noise!r}, must be one of {', '.join(noise_mod.NOISE_MODELS)}")
        if self.level not in LEVELS:
            raise ValueError(f"level == {self.level!r}, must be one of {', '.join(LEVELS)}")
        if self.pll_loss not in PLL_LOSSES:
            raise ValueError(f"pll_loss == {self.pll_loss!r}, must be one of {', '.join(PLL_LOSSES)}")
        if self.ties not in metrics.TIE_RULES:
            raise ValueError(f"ties == {self.ties!r}, must be one of {', '.join(metrics.TIE_RULES)}")
        check_positive("lam (--lam)", self.lam)
        check_fraction("eta (--eta)", self.eta)
        check_int("rounds (--rounds)", self.rounds, minimum=0)
        check_int("seed (--seed)", self.seed, minimum=0)
        check_int("fresh_per_class (--fresh-per-class)", self.fresh_per_class, minimum=1)
        if self.features != "digits":
            K = check_int("K (--classes)", self.K, minimum=2)
            n = check_int("n (--per-class)", self.n, minimum=1)
            _check_cd(K, n, self.c, self.d, need_nonneg_d=self.features in ("gmm", "perturbed"))
            if self.noise == "superclass":
                size = check_int("superclass_size (--superclass-size)", self.superclass_size, minimum=2)
                if size > K or K % size:
                    raise ValueError(f"superclass_size (--superclass-size) == {size}, must divide K (--classes) == {K}")
        if self.dim is not None:
            check_int("D (--dim)", self.dim, minimum=1)
        return self


def _check_cd(K, n, c, d, need_nonneg_d):
    try:
        c, d = check_block_correlations(K, n, c, d)
    except ValueError as err:
        msg = str(err).replace("c ==", "c (--within) ==").replace("d ==", "d (--between) ==")
        raise ValueError(msg) from None
    if need_nonneg_d and d < 0:
        raise ValueError(f"d (--between) == {d}, must be >= 0 for Gaussian-mixture features (d is a squared length)")
    return c, d


@dataclass
class Problem:
    """Training data of one scenario (instances class-major where the model allows)."""

    features: str
    K: int
    n: int
    y: np.ndarray  # true labels (N,)
    z: np.ndarray  # given labels (N,)
    C: np.ndarray  # population corruption matrix
    counts: np.ndarray  # (K, K) label counts of the sample
    groups: list | None  # superclasses (superclass noise)
    G: np.ndarray  # (N, N) training Gram matrix
    X: np.ndarray | None  # (N, D') features (None for the block model)
    fresh_cross: np.ndarray | None  # (N, M) Gram between training and fresh points
    y_fresh: np.ndarray | None
    X_fresh: np.ndarray | None
    c: float | None
    d: float | None
    dim: int | None
    notes: list = field(default_factory=list)


def build_problem(s: Scenario, rng: np.random.Generator) -> Problem:
    """Features, labels and fresh points of a scenario; draws from ``rng`` in this order:
    training features (gmm: training Gram and train-fresh cross-Gram, by
    ``features.sample_gmm_gram``; no explicit features), then given labels."""
    s.validate()
    notes = []
    X = X_fresh = y_fresh = fresh_cross = None
    dim = None
    c, d = s.c, s.d
    if s.features == "digits":
        data = feat.load_digits_data()
        K, n = data.K, data.n
        X, y = data.X_train, data.y_train
        G = X @ X.T
        G = 0.5 * (G + G.T)
        X_fresh, y_fresh = data.X_test, data.y_test
        fresh_cross = X @ X_fresh.T
        c = d = None
        groups = data.groups if s.noise == "superclass" else None
        if s.noise == "superclass":
            notes.append(f"digits superclasses from complete linkage (cut {data.cut:.4g}): {data.groups}")
        if s.dim is not None:
            notes.append("--dim ignored for digits (64 pixel features)")
    else:
        K, n = s.K, s.n
        y = np.repeat(np.arange(K), n)
        groups = None
        if s.noise == "superclass":
            groups = [list(range(a, a + s.superclass_size)) for a in range(0, K, s.superclass_size)]
        if s.features == "block":
            G = feat.block_gram(K, n, c, d)
            same = y[:, None] == np.arange(K)[None, :]
            fresh_cross = np.where(same, c, d)  # (N, K): column k = Gram row of a fresh class-k sample
            y_fresh = np.arange(K)
            if s.dim is not None:
                notes.append("--dim ignored for the exact block model")
        elif s.features == "gmm":
            dim = s.dim if s.dim is not None else DEFAULT_GMM_DIM
            # Training Gram and train-fresh cross-Gram sampled directly (cost independent of D).
            gram = feat.sample_gmm_gram(K, n, c, d, dim, rng, fresh_per_class=s.fresh_per_class)
            G, fresh_cross, y_fresh = gram.G, gram.cross, gram.y_fresh
        else:  # perturbed
            dim = s.dim if s.dim is not None else feat.perturbed_dim(K, n, c, d)
            X = feat.perturbed_features(K, n, c, d, rng, dim)
            G = X @ X.T
            G = 0.5 * (G + G.T)
            np.fill_diagonal(G, 1.0)
    C = noise_mod.noise_matrix(s.noise, K, s.eta, s.superclass_size, groups=groups)
    try:
        z = noise_mod.corrupt_labels(y, C, rng, exact=s.exact_counts)
    except ValueError as err:
        raise ValueError(f"--exact-counts: {err}") from None
    counts = noise_mod.label_counts(y, z, K)
    return Problem(s.features, K, n, y, z, C, counts, groups, G, X, fresh_cross, y_fresh, X_fresh, c, d, dim, notes)


def _record(method, level, t, outputs, prob: Problem, fresh_logits, residual) -> dict:
    acc = metrics.split_accuracy(outputs, prob.y, prob.z)
    fresh = None
    if fresh_logits is not None and prob.y_fresh is not None:
        fresh = metrics.accuracy(fresh_logits, prob.y_fresh)
    return {
        "method": method,
        "level": level,
        "round": int(t),
        "train_accuracy": acc["all"],
        "clean_accuracy": acc["clean"],
        "noisy_accuracy": acc["noisy"],
        "fresh_accuracy": fresh,
        "residual": float(residual),
    }


def _finite_dim_summary(s: Scenario, prob: Problem) -> dict:
    """theory.finite_dim at the run's K, n, c, d, lam, D and label counts (linearised level), rounds 0..s.rounds."""
    from theory.finite_dim import finite_dim_prediction

    pred = finite_dim_prediction(prob.K, prob.n, prob.c, prob.d, s.lam, prob.dim, prob.counts, rounds=s.rounds)
    fp = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in pred.first_perfect.items()}
    return {
        "level": "linear",
        "D": prob.dim,
        "first_perfect_round": fp,
        "block_first_round": pred.block_first_round,
        "train_accuracy": [float(v) for v in pred.train_accuracy],
        "p_all_correct": [float(v) for v in pred.p_all_correct],
        "fresh_accuracy": [float(v) for v in pred.fresh_accuracy],
        "quadrature_error": float(pred.quadrature_error),
        "probability_error": float(pred.probability_error),
    }


def _finite_dim_exact_summary(s: Scenario, prob: Problem) -> dict:
    """theory.finite_dim_exact for the run (the exact softmax's first perfect round at finite D, calibrated on
    the certified exact block model with the run's label counts); first_perfect_round null without a
    calibration (the exact block model not perfect within the rounds)."""
    from theory.finite_dim_exact import exact_finite_dim_prediction

    cal, pred = exact_finite_dim_prediction(prob.K, prob.n, prob.c, prob.d, s.lam, prob.dim, prob.counts,
                                            rounds=s.rounds)
    fp = None
    if pred is not None:
        fp = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in pred.first_perfect.items()
              if k != "p_equal_block"}
    return {"level": "exact (calibrated)", "D": prob.dim, "lam_eff": cal.lam_eff, "lam_eff_ratio": cal.ratio,
            "block_exact_first_round": cal.exact_first, "first_perfect_round": fp}


def _theory_summary(s: Scenario, prob: Problem) -> dict:
    """Block-model theory for the sample's empirical corruption matrix (null for digits); for gmm also the
    finite-D theory (``theory.finite_dim``) for the run's dimension and label counts."""
    import theory
    from theory.exact_level import min_rounds_exact

    out = {"min_rounds": None, "min_rounds_exact": None, "filters": None, "empirical_corruption": None}
    if prob.c is None:
        out["note"] = "block-model theory not applicable to digits features"
        return out
    C_emp = prob.counts / prob.counts.sum(axis=1, keepdims=True)
    out["empirical_corruption"] = C_emp.tolist()
    if prob.features != "block":
        out["note"] = f"block-model theory with the nominal c, d; the {prob.features} features only approximate it"
    out["filters"] = [float(v) for v in theory.filters(prob.K, prob.n, prob.c, prob.d, s.lam)]
    mr = theory.min_rounds(prob.K, prob.n, prob.c, prob.d, s.lam, C_emp)
    out["min_rounds"] = None if mr is None else int(mr)
    # Certified exact level (theory.exact_level): first round t <= s.rounds at which the exact softmax
    # on the block model with the sample's label counts is proved perfect; null: proved not perfect at
    # every round 0..s.rounds; "undecided": not certified.
    mre = min_rounds_exact(prob.K, prob.n, prob.c, prob.d, s.lam, prob.counts, s.rounds)
    out["min_rounds_exact"] = mre if mre is None or isinstance(mre, str) else int(mre)
    if prob.features == "gmm":
        if prob.n < 2:
            out["finite_dim"] = out["finite_dim_exact"] = None
            out["finite_dim_note"] = "theory.finite_dim needs n >= 2 (the within-class spectrum is empty at n = 1)"
        else:
            out["finite_dim"] = _finite_dim_summary(s, prob)
            out["finite_dim_exact"] = _finite_dim_exact_summary(s, prob)
    return out


def run_scenario(s: Scenario, progress: bool = False) -> dict:
    """Run one scenario; returns ``{"params", "theory", "records"}`` (JSON-serialisable)."""
    s.validate()
    rng = np.random.default_rng(s.seed)
    prob = build_problem(s, rng)
    levels = ("linear", "exact") if s.level == "both" else (s.level,)
    notes = list(prob.notes)
    records = []

    n_fits = len(levels) * (s.rounds + 1 + (1 if s.pll else 0))
    bar = _progress_bar(n_fits, progress)

    def fresh_logits(fit):
        return fit.logits(prob.fresh_cross) if prob.fresh_cross is not None else None

    if "linear" in levels:
        model = LinearModel(prob.G, prob.K, s.lam)
        fits = rounds.sd(model, one_hot(prob.z, prob.K), s.rounds, progress=bar)
        for t, fit in enumerate(fits):
            records.append(_record("sd", "linear", t, fit.outputs, prob, fresh_logits(fit), fit.residual))
        if s.pll:
            if s.pll_loss == "ce":
                fit = rounds.pll(model, fits[0], "ce", s.ties)
                records.append(_record("pll", "linear", 1, fit.outputs, prob, fresh_logits(fit), fit.residual))
            else:
                notes.append("no linear-level PLL record with --pll-loss gce (the linearisation is for cross-entropy)")
            bar()

    if "exact" in levels:
        if prob.features == "block":
            engine = BlockExact(prob.K, prob.n, prob.c, prob.d, s.lam, prob.y, prob.z)
            first = engine.one_hot_types()
        elif prob.X is None:  # gmm: Gram matrices only
            engine = GramExact(prob.G, s.lam, prob.fresh_cross)
            first = one_hot(prob.z, prob.K)
        else:
            engine = FeatureExact(prob.X, s.lam, prob.X_fresh)
            first = one_hot(prob.z, prob.K)
        fits = rounds.sd(engine, first, s.rounds, progress=bar)
        for t, fit in enumerate(fits):
            records.append(_record("sd", "exact", t, fit.outputs, prob, fit.fresh_logits, fit.residual))
        if s.pll:
            fit = rounds.pll(engine, fits[0], s.pll_loss, s.ties)
            records.append(_record("pll", "exact", 1, fit.outputs, prob, fit.fresh_logits, fit.residual))
            bar()
    bar.close()

    params = asdict(s)
    params.update(
        K=prob.K,
        n=prob.n,
        N=int(prob.y.size),
        c=prob.c,
        d=prob.d,
        dim=prob.dim,
        q=GCE_Q if s.pll and s.pll_loss == "gce" else None,
        superclass_groups=prob.groups,
        corruption_matrix=prob.C.tolist(),
        label_counts=prob.counts.tolist(),
        n_fresh=None if prob.y_fresh is None else int(prob.y_fresh.size),
        notes=notes,
    )
    if prob.features != "gmm":
        params["fresh_per_class"] = None
    return {"params": params, "theory": _theory_summary(s, prob), "records": records}


class _Bar:
    """Progress over fits (on a terminal only); no time-left estimate until a few fits are done, since the
    first fit of each level (factorisations, a cold start) is the slowest (sims._cli.ProgressBar)."""

    def __init__(self, total, enabled):
        from .._cli import ProgressBar

        self._bar = ProgressBar(total, "fits", enabled=None if enabled else False, leave=False)

    def __call__(self):
        self._bar.update(1)

    def close(self):
        self._bar.close()


def _progress_bar(total, enabled):
    return _Bar(total, enabled)


# ============================================================================ command line


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults except where the help text explains them (None) or for flags."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m sims.distill",
        description=(
            "Run one self-distillation scenario: multi-round SD (rounds 0..R, teacher = round 0 on the "
            "given labels) and optionally the PLL student, at the linearised level (brute-force linear "
            "algebra on the explicit Gram matrix) and/or the exact softmax level. Prints a per-round "
            "table, or one JSON object with --json."
        ),
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--classes", type=int, default=None, metavar="K",
                   help="number of classes K (default 4; ignored for digits, which has K = 10)")
    p.add_argument("--per-class", type=int, default=None, metavar="n",
                   help="training instances per class n (default 500; ignored for digits, which has n = 120)")
    p.add_argument("--within", type=float, default=Scenario.c, metavar="c",
                   help="within-class feature correlation c (block/gmm/perturbed), d < c < 1")
    p.add_argument("--between", type=float, default=Scenario.d, metavar="d",
                   help="between-class feature correlation d, d < c (and d >= 0 for gmm/perturbed)")
    p.add_argument("--lam", type=float, default=Scenario.lam, help="ridge penalty lambda > 0")
    p.add_argument("--noise", choices=noise_mod.NOISE_MODELS, default="symmetric",
                   help="label corruption model")
    p.add_argument("--eta", type=float, default=0.5, help="noise rate eta in [0, 1]")
    p.add_argument("--superclass-size", type=int, default=2, metavar="SIZE",
                   help="classes per superclass (superclass noise; must divide K; digits uses clustered superclasses)")
    p.add_argument("--exact-counts", action="store_true",
                   help="class k gets exactly C[k, j] * n labels j (error unless whole numbers); "
                        "default: each label drawn independently from row C[k]")
    p.add_argument("--features", choices=FEATURE_KINDS, default="block",
                   help="block: exact block-model Gram; gmm: Gaussian mixture realising it; perturbed: "
                        "row-normalised mixture Gram with the paper's fluctuation size; digits: scikit-learn digits")
    p.add_argument("--dim", type=int, default=None, metavar="D",
                   help=f"noise dimension D >= 1 of the mixture (default: {DEFAULT_GMM_DIM} for gmm; for perturbed "
                        "the D matching the paper's off-diagonal std 0.1/sqrt(12), 452 for the defaults)")
    p.add_argument("--rounds", type=int, default=Scenario.rounds, metavar="R",
                   help="last SD round R (teacher = round 0); the default is above the theory's minimum round "
                        "(13) for the default setting")
    p.add_argument("--pll", action="store_true", help="also fit the PLL student on the teacher's top-two targets")
    p.add_argument("--pll-loss", choices=PLL_LOSSES, default="ce",
                   help="PLL student's loss: ce (the theory) or gce (generalised CE, q = 0.7, warm-started "
                        "from the teacher, as in the paper's experiments; exact level only)")
    p.add_argument("--ties", choices=metrics.TIE_RULES, default="share",
                   help="PLL tie rule: share (split among tied classes) or lowest (lowest class index)")
    p.add_argument("--level", choices=LEVELS, default="both",
                   help="linear: linearised softmax by brute-force linear algebra; exact: exact softmax solvers")
    p.add_argument("--fresh-per-class", type=int, default=1000, metavar="M",
                   help="fresh mixture samples per class for the gmm fresh accuracy")
    p.add_argument("--seed", type=int, default=0, help="the one random seed (features, labels, fresh samples)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object {params, theory, records} instead of the table")
    return p


def _fmt(v, pct=True):
    if v is None:
        return "    -  "
    return f"{100 * v:7.2f}" if pct else f"{v:9.2e}"


def _finite_dim_exact_lines(fe) -> list:
    if not fe:
        return []
    if fe["first_perfect_round"] is None:
        return [f"finite-D exact-level theory: no calibration (the exact block model is not perfect by round "
                f"{fe['block_exact_first_round']!s})"]
    fp = fe["first_perfect_round"]
    return [f"finite-D exact-level theory (calibrated, lambda_eff = {fe['lam_eff_ratio']:.3f} lambda; exact block "
            f"round {fe['block_exact_first_round']}): first perfect round median={fp['median']} q10={fp['q10']} "
            f"q90={fp['q90']}"]


def _finite_dim_lines(fd) -> list:
    if not fd:
        return []
    fp = fd["first_perfect_round"]
    last = len(fd["train_accuracy"]) - 1
    p_eq = "-" if fp["p_equal_block"] is None else f"{fp['p_equal_block']:.3g}"
    return [
        f"finite-D theory (linear, D={fd['D']}): first perfect round median={fp['median']} q10={fp['q10']} "
        f"q90={fp['q90']} P(= block round {fd['block_first_round']})={p_eq}; expected train "
        f"accuracy {100 * fd['train_accuracy'][0]:.2f} % at round 0, {100 * fd['train_accuracy'][last]:.2f} % at "
        f"round {last}; fresh {100 * fd['fresh_accuracy'][0]:.2f} % -> {100 * fd['fresh_accuracy'][last]:.2f} %"
    ]


def format_table(result: dict) -> str:
    p, th = result["params"], result["theory"]
    lines = [
        f"features={p['features']} K={p['K']} n={p['n']} c={p['c']} d={p['d']} lam={p['lam']:g} "
        f"noise={p['noise']} eta={p['eta']} exact_counts={p['exact_counts']} dim={p['dim']} seed={p['seed']}",
        f"theory: min_rounds={th.get('min_rounds')}"
        + (f" filters(alpha, beta, g)={[round(v, 6) for v in th['filters']]}" if th.get("filters") else ""),
        *_finite_dim_lines(th.get("finite_dim")),
        *_finite_dim_exact_lines(th.get("finite_dim_exact")),
        "accuracies in %; train/clean/noisy = training instances vs true labels; fresh = population/held-out",
        f"{'method':6} {'level':6} {'round':>5} {'train':>7} {'clean':>7} {'noisy':>7} {'fresh':>7} {'residual':>9}",
    ]
    for r in result["records"]:
        lines.append(
            f"{r['method']:6} {r['level']:6} {r['round']:5d} {_fmt(r['train_accuracy'])} {_fmt(r['clean_accuracy'])} "
            f"{_fmt(r['noisy_accuracy'])} {_fmt(r['fresh_accuracy'])} {_fmt(r['residual'], pct=False)}"
        )
    for note in p.get("notes", []):
        lines.append(f"note: {note}")
    zero_pll = sorted({r["level"] for r in result["records"] if r["method"] == "pll" and r["train_accuracy"] == 0.0})
    if zero_pll:
        if p.get("noise") == "superclass" and p.get("superclass_size") == 2:
            why = ("with superclasses of two classes the teacher's top two are the pair for every instance, so "
                   "every PLL target is 1/2-1/2 on the pair and the student's two outputs tie exactly; "
                   "ties count as failures (paper_checks.md, P4)")
        else:
            why = ("the student's top class is wrong or tied for every training instance; ties (margin "
                   "below 1e-9) count as failures")
        lines.append(f"note: PLL row at 0 % ({', '.join(zero_pll)}): {why}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    notes = []
    if args.features == "digits":
        if args.classes is not None or args.per_class is not None:
            notes.append("--classes/--per-class ignored for digits: K = 10 and n = 120 come from the data")
    s = Scenario(
        K=Scenario.K if args.classes is None else args.classes,
        n=Scenario.n if args.per_class is None else args.per_class,
        c=args.within,
        d=args.between,
        lam=args.lam,
        noise=args.noise,
        eta=args.eta,
        superclass_size=args.superclass_size,
        exact_counts=args.exact_counts,
        features=args.features,
        dim=args.dim,
        rounds=args.rounds,
        pll=args.pll,
        pll_loss=args.pll_loss,
        ties=args.ties,
        level=args.level,
        fresh_per_class=args.fresh_per_class,
        seed=args.seed,
    )
    start = time.perf_counter()
    try:
        result = run_scenario(s, progress=not args.json)
    except ValueError as err:
        return parser.fail(err)
    except RuntimeError as err:  # sims.engine.NotConvergedError and friends
        detail = ""
        if hasattr(err, "residual"):
            detail = f" (residual {err.residual:.3g} after {getattr(err, 'iterations', '?')} iterations)"
        return parser.fail(f"solver failed: {err}{detail}", 3)
    result["params"]["notes"] = notes + result["params"]["notes"]
    elapsed = time.perf_counter() - start
    if args.json:
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        print(json.dumps(result, allow_nan=False))
    else:
        print(format_table(result), flush=True)
        print(f"({elapsed:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
