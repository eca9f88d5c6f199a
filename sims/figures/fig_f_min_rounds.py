"""Figure f: minimum number of rounds for 100 % training accuracy against the noise rate.

Claims: **P3** (the minimum number of rounds t*(eta) and the noise threshold
beyond which no number of rounds helps) and **P5** (the exact softmax on the
block model and on Gaussian-mixture features need a few more rounds than the
linearised theory).

File: ``figures/fig_f_min_rounds.png``. Rebuild: ``python -m sims.figures --only f``.
"""

from __future__ import annotations

import math

import numpy as np

import theory
from theory.validate import check_int

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import rounds as sd_rounds
from ..engine.fit import BlockExact, FeatureExact
from ..engine import noise as noise_mod
from ._common import PAPER, _fig_path, _fmt_lam, _one_hot, _parallel, _plt, _save

__all__ = ["fig_f_min_rounds"]


def _f_setting(quick):
    if quick:
        return dict(n=60, lam=PAPER["lam"] * 500 / 60, block_cap=60,
                    gmm=dict(n=30, D=300, lam=PAPER["lam"] * 500 / 30, seeds=2, cap=40, step=0.1),
                    step=0.05)
    return dict(n=PAPER["n"], lam=PAPER["lam"], block_cap=150,
                gmm=dict(n=60, D=600, lam=PAPER["lam"] * 500 / 60, seeds=5, cap=100, step=0.05),
                step=0.03)


def _f_etas(noise, K, size, step, n, beyond=True):
    """Grid of noise rates below the threshold (multiples of ``step``), the threshold and (``beyond``)
    one step beyond it, keeping only rates at which exact counts are whole numbers for n per class."""
    thr = theory.noise_threshold(noise, K, size)
    grid = [round(step * i, 4) for i in range(int(thr / step) + 1) if step * i < thr - 1e-9]
    grid += [round(thr, 4)] + ([round(min(thr + step, 0.99), 4)] if beyond else [])
    out = []
    for e in grid:
        try:
            theory.exact_label_counts(noise_mod.noise_matrix(noise, K, e, size), n)
        except ValueError:
            continue
        out.append(e)
    return out


def _first_perfect_block(K, n, c, d, lam, C, cap):
    """First round at which the exact softmax on the block model gets every training instance right (None: not by cap)."""
    y, z = noise_mod.labels_from_counts(theory.exact_label_counts(C, n))
    engine = BlockExact(K, n, c, d, lam, y, z)
    return _first_perfect(engine, engine.one_hot_types(), y, cap)


def _first_perfect(engine, first, y, cap):
    fits = sd_rounds.sd(engine, first, cap, until=lambda fit: metrics.perfect(fit.outputs, y))
    return sd_rounds.first_perfect(fits, y)


def _f_gmm_task(noise, eta, rng, K, size, c, d, s):
    """First perfect round of exact SD on one Gaussian-mixture sample (exact counts), or None by s['cap']."""
    X, y = feat.sample_gmm(K, s["n"], c, d, s["D"], rng)
    z = noise_mod.corrupt_labels(y, noise_mod.noise_matrix(noise, K, eta, size), rng, exact=True)
    return _first_perfect(FeatureExact(X, s["lam"]), _one_hot(z, K), y, s["cap"])


def fig_f_min_rounds(out_dir, rng, quick=False, jobs=1, progress=False, *, seeds=None):
    """Minimum number of rounds for 100 % training accuracy against the noise rate.

    K=4, c=0.4, d=0.1; symmetric noise and superclass noise (pairs {0,1},{2,3});
    exact label counts (balanced given labels). Three estimates per noise rate:
    the linearised theory (theory.min_rounds on the population C; a step line
    on a fine grid of eta, markers on the simulated grid); the exact softmax on
    the exact block model (n=500, lam=1e-5; the first round at which the
    type-reduced solver gets every training instance right, rounds capped at
    150); Monte Carlo on Gaussian-mixture features (n=60 per class, D=600,
    lam=8.33e-5 so that K N lam = 0.08 as at n=500; 5 seeds; median and range;
    capped at 100 rounds), with its own theory curve (block model at n=60,
    same lam). "Not reached" (never by the theory, or not by the cap in a
    simulation) is drawn in a strip above the rounds axis, one labelled row
    per estimate ("theory: never", "exact block: > cap", "mixture median:
    > cap"), never at a height on the rounds axis. With --quick: n=60
    (block) and n=30, D=300, 2 seeds (mixture), lam scaled to keep K N lam.

    Returns per noise the eta grids, the theory's minimum rounds (block n and
    mixture n), the exact block model's, the mixture's median/min/max and the
    exact-minus-theory differences.
    """
    plt = _plt()
    K, c, d, size = PAPER["K"], PAPER["c"], PAPER["d"], 2
    st = _f_setting(quick)
    n, lam, cap = st["n"], st["lam"], st["block_cap"]
    gs = dict(st["gmm"])
    if seeds is not None:
        gs["seeds"] = check_int("seeds", seeds, minimum=1)
    noises = ("symmetric", "superclass")
    numbers = {"K": K, "c": c, "d": d, "block": {"n": n, "lam": lam, "cap": cap},
               "gmm": {k: gs[k] for k in ("n", "D", "lam", "seeds", "cap")}, "noises": {}}
    # Mixture tasks (the expensive part) in parallel.
    tasks, keys = [], []
    # the mixture (the expensive part) stops at the threshold: every run there goes to the cap
    gmm_etas = {noise: _f_etas(noise, K, size, gs["step"], gs["n"], beyond=False) for noise in noises}
    children = iter(rng.spawn(sum(len(v) for v in gmm_etas.values()) * gs["seeds"]))
    for noise in noises:
        for eta in gmm_etas[noise]:
            for s in range(gs["seeds"]):
                tasks.append((noise, eta, next(children), K, size, c, d, gs))
                keys.append((noise, eta, s))
    gmm_res = dict(zip(keys, _parallel(_f_gmm_task, tasks, jobs, "fig f mixture runs", progress)))

    # each panel: the rounds axis below, and above it a strip of "not reached" rows (theory: never;
    # exact block model: not by its cap; mixture median: not by its cap), so that no marker sits at a
    # meaningless height on the rounds axis
    fig, grid = plt.subplots(2, 2, figsize=(14, 7.4), layout="constrained", sharex="col",
                             gridspec_kw={"height_ratios": [1, 5.5]})
    strips, axes = grid[0], grid[1]
    for strip, ax, noise in zip(strips, axes, noises):
        thr = theory.noise_threshold(noise, K, size)
        etas = _f_etas(noise, K, size, st["step"], n)
        fine = [round(v, 4) for v in np.arange(0.0, thr, 0.005)]
        th_fine = [theory.min_rounds(K, n, c, d, lam, noise_mod.noise_matrix(noise, K, e, size)) for e in fine]
        th_fine_g = [theory.min_rounds(K, gs["n"], c, d, gs["lam"], noise_mod.noise_matrix(noise, K, e, size))
                     for e in fine]
        th = [theory.min_rounds(K, n, c, d, lam, noise_mod.noise_matrix(noise, K, e, size)) for e in etas]
        ex = [_first_perfect_block(K, n, c, d, lam, noise_mod.noise_matrix(noise, K, e, size), cap) for e in etas]
        ge = gmm_etas[noise]
        gvals = [[gmm_res[(noise, e, s)] for s in range(gs["seeds"])] for e in ge]

        def nn(v):
            return np.array([np.nan if x is None else x for x in v], dtype=float)

        ax.step(fine, nn(th_fine), where="post", color="k", lw=1.6,
                label=f"linearised theory, block model $n$={n}, $\\lambda$={_fmt_lam(lam)} (fine $\\eta$ grid)")
        ax.step(fine, nn(th_fine_g), where="post", color="tab:purple", lw=1.2, ls="--",
                label=f"linearised theory, block model $n$={gs['n']}, $\\lambda$={_fmt_lam(gs['lam'])} "
                      "(the mixture's)")
        ax.plot(etas, nn(th), "o", mfc="none", color="k", ms=6,
                label=f"linearised theory at the simulated $\\eta$ ($n$={n})")
        exv = nn(ex)
        ax.plot(etas, exv, "s", color="tab:green", ms=4.5, label=f"exact softmax, block model $n$={n}")
        garr = np.array([[np.inf if v is None else v for v in vals] for vals in gvals], dtype=float)
        gmed = np.median(garr, axis=1)  # inf when at least half the seeds did not get there
        glo, ghi = garr.min(axis=1), np.minimum(garr.max(axis=1), gs["cap"])
        ok = np.isfinite(gmed)
        ax.errorbar(np.array(ge)[ok], gmed[ok], yerr=[gmed[ok] - glo[ok], ghi[ok] - gmed[ok]],
                    fmt="^", color="tab:orange", ms=5, capsize=3,
                    label=f"exact softmax, Gaussian mixture $n$={gs['n']}, $D$={gs['D']}: median and range "
                          f"({gs['seeds']} seeds; range capped at {gs['cap']})")
        gm = np.where(ok, gmed, np.nan)
        finite = [v for v in list(nn(th_fine)) + list(exv) + list(ghi[ok]) if np.isfinite(v)]
        ax.set_ylim(-2, 10 * math.ceil((max(finite) + 3) / 10))
        # the "not reached" strip: one row per estimate
        rows_nr = (("theory: never", [e for e, v in zip(etas, th) if v is None], dict(marker="o", mfc="none", color="k")),
                   (f"exact block: > {cap}", [e for e, v in zip(etas, ex) if v is None],
                    dict(marker="x", color="tab:green", mew=1.8)),
                   (f"mixture median: > {gs['cap']}", [e for e, m in zip(ge, gmed) if not np.isfinite(m)],
                    dict(marker="x", color="tab:orange", mew=1.8)))
        for k, (_, xs, style) in enumerate(rows_nr):
            strip.plot(xs, [len(rows_nr) - 1 - k] * len(xs), ls="", ms=7, **style)
        strip.set_yticks(range(len(rows_nr)), [r[0] for r in rows_nr][::-1], fontsize=8)
        strip.set_ylim(-0.7, len(rows_nr) - 0.3)
        strip.grid(alpha=0.3, axis="x")
        strip.axvline(thr, color="orange", ls=":", lw=1.5)
        strip.tick_params(axis="x", labelbottom=False)
        desc = "symmetric noise" if noise == "symmetric" else "superclass noise, pairs {0,1}, {2,3}"
        strip.set_title(f"{desc} (exact label counts)\nnot reached within the rounds computed:", fontsize=10)
        ax.axvline(thr, color="orange", ls=":", lw=1.5,
                   label=f"noise threshold $\\eta$ = {thr:g} ($C_{{kk}} > C_{{kj}}$ fails from here on)")
        ax.set_xlim(-0.02, thr + st["step"] + 0.04)
        ax.set_xlabel(r"noise rate $\eta$")
        ax.set_ylabel("minimum round $t$ with 100 % training accuracy (teacher = 0)")
        ax.grid(alpha=0.3)
        diffs = [None if a is None or b is None else a - b for a, b in zip(ex, th)]
        th_g = [theory.min_rounds(K, gs["n"], c, d, gs["lam"], noise_mod.noise_matrix(noise, K, e, size)) for e in ge]
        numbers["noises"][noise] = {
            "threshold": thr, "etas": etas, "theory": th, "exact_block": ex, "exact_minus_theory": diffs,
            "gmm_etas": ge, "gmm_theory": th_g, "gmm_runs": gvals,
            "gmm_median": [None if np.isnan(v) else float(v) for v in gm],
        }
    handles, labels = axes[0].get_legend_handles_labels()
    keep = [i for i, lab in enumerate(labels) if not lab.startswith("noise threshold")]
    handles = [handles[i] for i in keep] + [axes[0].lines[0].__class__([], [], color="orange", ls=":", lw=1.5)]
    labels = [labels[i] for i in keep] + [r"noise threshold ($C_{kk} > C_{kj}$ fails from here on)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Rounds of self-distillation needed for 100 % training accuracy: theory vs exact softmax vs "
                 f"Gaussian mixture ($K$={K}, $c$={c}, $d$={d})", fontsize=11)
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_f_min_rounds", quick))
    return numbers
