"""Why the PLL student on the Gaussian mixture is worse than its teacher without label noise.

Setting: K=4, n=50, lambda=1e-4, c=0.4, d=0.1, eta=0, exact
softmax. Without noise the teacher predicts every training instance correctly;
in the exact block model all K-1 wrong classes tie for second place. In the
mixture the Gram fluctuations (size (1-c)/sqrt(D)) break that tie: the
teacher's runner-up r_i is the wrong class whose training instances instance i
happens to correlate with most. The PLL target (e_k + e_r_i)/2 then asks the
student for an exact tie between the true class and r_i on instance i, and the
only thing that favours the true class is the class average of the targets
(1/2 on k for every instance of class k, about 1/(2(K-1)) on each wrong class):
the student's margin "true minus runner-up" is small even for D -> infinity,
and the same fluctuations that chose r_i push the student towards r_i.

:func:`pll_mixture_analysis` measures, per D (sampled Gram,
:func:`sims.engine.features.sample_gmm_gram`) and seed:

* teacher and PLL-student training / fresh accuracy (exact softmax,
  :class:`sims.engine.GramExact`; cross-entropy on the 1/2-1/2 targets);
* the student's training margin ``P_true - P_runner-up`` (output units): mean,
  standard deviation, 5 % quantile; the share of instances whose student argmax
  is the teacher's runner-up (and the share with any other wrong argmax);
* ``limit_margin``: the same margin in the D -> infinity limit with the same
  targets, i.e. the exact softmax on the exact block Gram (and its linearised
  twin ``P - U = (T - U) A``); ``deviation`` = margin minus its limit, per
  instance (the part due to the Gram fluctuations);
* ``shared_ties``: instances whose teacher runner-up is tied within
  ``metrics.TIE_TOL`` (the PLL target then shares the second 1/2);
* ``gaussian_error``: Phi(-mean margin / deviation std), the share of wrong
  instances if the deviations were Gaussian;
* fresh samples: the student's fresh logits ``coef . cross`` split into the
  part from the mixture's mean Gram (``signal``, the class sums of the
  residual; the same for every fresh sample of a class) and the part from the
  fluctuations (``noise``); ``fresh_signal_margin`` = smallest over classes of
  the signal's true-minus-best-other logit, ``fresh_noise_std`` = RMS of the
  noise's true-minus-other logit differences; their ratio for teacher and student.

Command line: ``python -m sims.pll_mixture [--dims ...] [--seeds S] [--json]``.
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np

from theory.validate import check_block_correlations, check_int, check_positive

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import rounds as sd_rounds
from ..engine.features import PAPER
from ..engine.fit import GramExact, LinearModel
from ..engine.noise import one_hot
from .._cli import OneLineParser

__all__ = ["DEFAULT_DIMS", "pll_mixture_run", "pll_mixture_analysis", "main"]

DEFAULT_DIMS = (100, 300, 1000, 3000, 10**4, 10**5, 10**6, 10**7)


def _ranked(P):
    """Per column: index of the largest and of the second largest entry."""
    order = np.argsort(-P, axis=0, kind="stable")
    return order[0], order[1]


def _limit_margin(K, n, c, d, lam, T, y, runner):
    """The D -> infinity limit with the same PLL targets T: exact softmax on the exact block Gram (explicit
    N x N, :class:`sims.engine.GramExact`) and linearised (``P - U = (T - U) A``, sims.engine.LinearModel).
    Returns per-instance margins P_true - P_runner-up (exact, linearised) and the exact fit's residual."""
    G = feat.block_gram(K, n, c, d)
    cols = np.arange(y.size)
    exact = GramExact(G, lam).fit(T)
    P = np.asarray(exact.outputs)
    L = LinearModel(G, K, lam).fit(T).outputs
    return P[y, cols] - P[runner, cols], L[y, cols] - L[runner, cols], float(exact.residual)


def _fresh_split(coef, cross, y, y_fresh, c, d, K):
    """Signal margin and noise std of fresh logits coef . cross (see module doc)."""
    mean = np.where(y[:, None] == y_fresh[None, :], c, d)
    signal = coef @ mean  # (K, M)
    noise = coef @ (cross - mean)
    cols = np.arange(y_fresh.size)
    sig_true = signal[y_fresh, cols]
    other = signal.copy()
    other[y_fresh, cols] = -np.inf
    signal_margin = float(np.min(sig_true - other.max(axis=0)))
    diffs = noise[y_fresh, cols][None, :] - noise  # (K, M), zero in the true row
    mask = np.ones_like(diffs, dtype=bool)
    mask[y_fresh, cols] = False
    noise_std = float(np.sqrt(np.mean(diffs[mask] ** 2)))
    return signal_margin, noise_std


def pll_mixture_run(D: int, rng: np.random.Generator, K: int = PAPER["K"], n: int = 50, c: float = PAPER["c"],
                    d: float = PAPER["d"], lam: float = 1e-4, fresh_per_class: int = 500) -> dict:
    """One mixture sample at noise dimension D: teacher, PLL student and the diagnostics of the module doc."""
    g = feat.sample_gmm_gram(K, n, c, d, D, rng, fresh_per_class=fresh_per_class)
    y = g.y
    engine = GramExact(g.G, lam, g.cross)
    (teacher,) = sd_rounds.sd(engine, one_hot(y, K), 0)  # eta = 0: the given labels are the true labels
    P0 = np.asarray(teacher.outputs)
    top, runner = _ranked(P0)
    student = sd_rounds.pll(engine, teacher, "ce", "share")
    T = student.targets
    P1 = np.asarray(student.outputs)
    cols = np.arange(y.size)
    margin = P1[y, cols] - P1[runner, cols]
    arg = np.argmax(P1, axis=0)
    lim, lin, lim_res = _limit_margin(K, n, c, d, lam, T, y, runner)
    dev = margin - lim
    mean, std = float(margin.mean()), float(margin.std())
    t_sig, t_noise = _fresh_split(np.asarray(teacher.raw.coef), g.cross, y, g.y_fresh, c, d, K)
    s_sig, s_noise = _fresh_split(np.asarray(student.raw.coef), g.cross, y, g.y_fresh, c, d, K)
    def within_rms(coef):  # RMS over instances of the residual minus its class mean (output units)
        R = np.asarray(coef) * (y.size * lam)
        means = np.stack([R[:, y == k].mean(axis=1) for k in range(K)], axis=1)  # (K, K)
        return float(np.sqrt(np.mean(np.sum((R - means[:, y]) ** 2, axis=0))))

    second = np.sort(P0, axis=0)[-2]
    third = np.sort(P0, axis=0)[-3]
    return {
        "D": int(D),
        "method": g.method,
        "teacher_train": metrics.accuracy(P0, y),
        "teacher_fresh": metrics.accuracy(teacher.fresh_logits, g.y_fresh),
        "teacher_top_is_true": float(np.mean(top == y)),
        "teacher_runner_up_gap_median": float(np.median(second - third)),  # how clearly the tie is broken
        "pll_train": metrics.accuracy(P1, y),
        "pll_fresh": metrics.accuracy(student.fresh_logits, g.y_fresh),
        "shared_ties": int(np.sum(np.count_nonzero(T, axis=0) > 2)),  # runner-up tie within metrics.TIE_TOL
        "share_argmax_runner_up": float(np.mean(arg == runner)),
        "share_argmax_other_wrong": float(np.mean((arg != y) & (arg != runner))),
        "margin_mean": mean,
        "margin_std": std,
        "margin_q05": float(np.quantile(margin, 0.05)),
        "limit_margin_mean": float(lim.mean()),
        "limit_margin_min": float(lim.min()),
        "linear_limit_margin_mean": float(lin.mean()),
        "deviation_mean": float(dev.mean()),  # margin minus its D -> infinity limit, same instance
        "deviation_std": float(dev.std()),
        "margin_shortfall": float(lim.mean() - mean),  # mean of (limit - finite D), same runner-ups
        # share of wrong instances if margin = mean + Gaussian deviation of the measured std
        "gaussian_error": 0.5 * math.erfc(mean / (float(dev.std()) * math.sqrt(2.0))) if dev.std() > 0 else float(mean <= 0),
        "teacher_fresh_signal_margin": t_sig,
        "teacher_fresh_noise_std": t_noise,
        "pll_fresh_signal_margin": s_sig,
        "pll_fresh_noise_std": s_noise,
        "teacher_residual_within_rms": within_rms(teacher.raw.coef),
        "pll_residual_within_rms": within_rms(student.raw.coef),
        "residual": max(float(teacher.residual), float(student.residual), lim_res),
    }


def _slope(x, y):
    x, y = np.log10(np.asarray(x, float)), np.log10(np.asarray(y, float))
    ok = np.isfinite(y)
    if ok.sum() < 2:
        return None
    return float(np.polyfit(x[ok], y[ok], 1)[0])


def pll_mixture_analysis(dims=DEFAULT_DIMS, seeds: int = 5, seed: int = 0, K: int = PAPER["K"], n: int = 50,
                         c: float = PAPER["c"], d: float = PAPER["d"], lam: float = 1e-4, fresh_per_class: int = 500,
                         progress: bool = False) -> dict:
    """Per D: mean over ``seeds`` mixture samples of every number of :func:`pll_mixture_run`, plus the log-log
    slopes against D (fit over D >= 10 N) of the margin's std, of its shortfall from the limit, and of the
    student's training error. Sample (D, s) uses ``SeedSequence(seed, spawn_key=(s, D))``."""
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    check_block_correlations(K, n, c, d)
    if d < 0:
        raise ValueError(f"d == {d}, must be >= 0 for the Gaussian mixture")
    check_positive("lam", lam)
    seeds = check_int("seeds", seeds, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    fresh_per_class = check_int("fresh_per_class", fresh_per_class, minimum=1)
    dims = tuple(check_int("D", D, minimum=1) for D in dims)
    if not dims:
        raise ValueError("dims == (), must hold at least one D")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(dims) * seeds, desc="PLL on the mixture", file=sys.stderr)
    per_dim = []
    for D in dims:
        runs = []
        for s in range(seeds):
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(s, D)))
            runs.append(pll_mixture_run(D, rng, K, n, c, d, lam, fresh_per_class))
            if bar is not None:
                bar.update(1)
        agg = {"D": int(D), "method": runs[0]["method"], "seeds": seeds}
        for key in runs[0]:
            if key in ("D", "method"):
                continue
            vals = [r[key] for r in runs]
            agg[key] = float(np.max(vals)) if key == "residual" else float(np.mean(vals))
        agg["pll_train_min"] = float(min(r["pll_train"] for r in runs))
        agg["margin_std_over_mean"] = agg["margin_std"] / agg["margin_mean"] if agg["margin_mean"] > 0 else None
        agg["pll_fresh_noise_to_signal"] = agg["pll_fresh_noise_std"] / agg["pll_fresh_signal_margin"] \
            if agg["pll_fresh_signal_margin"] > 0 else None
        agg["teacher_fresh_noise_to_signal"] = agg["teacher_fresh_noise_std"] / agg["teacher_fresh_signal_margin"] \
            if agg["teacher_fresh_signal_margin"] > 0 else None
        per_dim.append(agg)
    if bar is not None:
        bar.close()
    big = [p for p in per_dim if p["D"] >= 10 * K * n]
    slopes = {
        "fit_range_D": [10 * K * n, max(dims)] if big else None,
        "deviation_std": _slope([p["D"] for p in big], [p["deviation_std"] for p in big]) if big else None,
        "margin_shortfall": _slope([p["D"] for p in big], [abs(p["margin_shortfall"]) for p in big]) if big else None,
        "pll_train_error": _slope([p["D"] for p in big if p["pll_train"] < 1],
                                  [1 - p["pll_train"] for p in big if p["pll_train"] < 1]) if big else None,
        "pll_fresh_noise_std": _slope([p["D"] for p in big], [p["pll_fresh_noise_std"] for p in big]) if big else None,
        "expected": -0.5,
    }
    return {"params": {"K": K, "n": n, "c": c, "d": d, "lam": lam, "eta": 0.0, "seeds": seeds, "seed": seed,
                       "fresh_per_class": fresh_per_class, "loss": "ce", "ties": "share"},
            "per_dim": per_dim, "slopes": slopes}


def _format(result) -> str:
    lines = ["     D  teacher tr/fr   PLL tr/fr    argmax=runner-up  margin mean/dev std (limit)   fresh noise/signal T / PLL"]
    for p in result["per_dim"]:
        tns = p["teacher_fresh_noise_to_signal"]
        pns = p["pll_fresh_noise_to_signal"]
        lines.append(
            f"{p['D']:>8d}  {100 * p['teacher_train']:5.1f}/{100 * p['teacher_fresh']:5.1f}  "
            f"{100 * p['pll_train']:5.1f}/{100 * p['pll_fresh']:5.1f}  {100 * p['share_argmax_runner_up']:6.2f} %        "
            f"{p['margin_mean']:.4f}/{p['deviation_std']:.4f} ({p['limit_margin_mean']:.4f})   "
            f"{'-' if tns is None else f'{tns:.3f}'} / {'-' if pns is None else f'{pns:.3f}'}"
        )
    s = result["slopes"]
    lines.append(f"log-log slopes over D in {s['fit_range_D']}: deviation std {s['deviation_std']}, shortfall "
                 f"{s['margin_shortfall']}, PLL training error {s['pll_train_error']}, fresh noise std "
                 f"{s['pll_fresh_noise_std']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = OneLineParser(prog="python -m sims.pll_mixture",
                      description="PLL student vs teacher on the Gaussian mixture without label noise, against D.")
    p.add_argument("--dims", default=",".join(str(v) for v in DEFAULT_DIMS), help="comma list of noise dimensions D")
    p.add_argument("--seeds", type=int, default=5, help="mixture samples per D")
    p.add_argument("--seed", type=int, default=0, help="the one seed")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    try:
        dims = tuple(int(v) for v in args.dims.split(",") if v.strip())
    except ValueError:
        return p.fail(f"--dims == {args.dims!r}, must be a comma-separated list of integers")
    try:
        result = pll_mixture_analysis(dims, seeds=args.seeds, seed=args.seed, progress=not args.json)
    except ValueError as err:
        return p.fail(err)
    print(json.dumps(result, indent=2) if args.json else _format(result))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
