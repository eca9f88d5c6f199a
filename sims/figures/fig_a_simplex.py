"""Figure a: label averaging made visible on the probability simplex.

Claims: **P1** (label averaging: each round pulls a training prediction towards
its class's average given label) and **P2** (clustering: predictions cluster by
class as rounds grow, and noisy instances lose their own wrong label).

A 3-class Gaussian mixture with symmetric noise; the training predictions of
rounds t = 0, 1, 3, 10 as points in the simplex, linearised (top) and exact
softmax (bottom). File: ``figures/fig_a_simplex.png``.
Rebuild: ``python -m sims.figures --only a``.
"""

from __future__ import annotations

import math

import numpy as np

import theory
from theory.validate import check_int

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import rounds as sd_rounds
from ..engine.fit import FeatureExact, LinearModel
from ..engine import noise as noise_mod
from ._common import CLASS_COLORS, _fig_path, _fmt_lam, _one_hot, _plt, _save, ternary_xy

__all__ = ["fig_a_simplex"]


def fig_a_simplex(out_dir, rng, quick=False, jobs=1, progress=False, *, n=None, rounds_shown=(0, 1, 3, 10)):
    """Label averaging made visible on the probability simplex.

    A 3-class Gaussian mixture (K = 3, c = 0.4, d = 0.1, D = 300 noise dimensions,
    n = 40 per class; 20 with --quick), symmetric noise eta = 0.3 with exact counts
    (30 % of each class carries a wrong label, split evenly). Each panel shows
    the training predictions after round t (t = 0 is the teacher) as points in
    the simplex (ternary plot: barycentric coordinates to 2-D), coloured by true
    class, circles for clean and crosses for noisy given labels; stars mark each
    class's average given label ybar_k (the point the class's predictions are
    averaged towards, shrunk towards the centre by beta^s). Top row: linearised
    model P - U = (Y - U) A^(t+1) on the mixture's Gram matrix; bottom row:
    exact softmax optimum (sims.engine.fit_features). lam = (1 - c)/(2 K N), so
    that the block-model within-class filter is alpha = 2/3 per fit (the own
    label's weight falls to 2 % by t = 10 while beta^(t+1) stays above 0.9).

    Returns per level and round: accuracy on training instances (all, clean,
    noisy) and the mean distance of each prediction from its class's mean
    prediction ("spread"; it shrinks as predictions cluster).
    """
    plt = _plt()
    K, c, d, D, eta = 3, 0.4, 0.1, 300, 0.3
    n = (20 if quick else 40) if n is None else check_int("n", n, minimum=20)
    if n % 20:
        raise ValueError(f"n == {n}, must be a multiple of 20 (exact counts: 0.15 n instances of each wrong label)")
    N = K * n
    lam = (1.0 - c) / (2 * K * N)
    rounds_shown = tuple(int(t) for t in rounds_shown)
    R = max(rounds_shown)
    X, y = feat.sample_gmm(K, n, c, d, D, rng)
    C = theory.symmetric(K, eta)
    z = noise_mod.corrupt_labels(y, C, rng, exact=True)
    Y = _one_hot(z, K)
    G = X @ X.T
    G = 0.5 * (G + G.T)
    ybar = np.stack([Y[:, y == k].mean(axis=1) for k in range(K)], axis=1)  # (K, K): column k = ybar_k

    outputs = {level: [f.outputs for f in sd_rounds.sd(engine, Y, R)]
               for level, engine in (("linear", LinearModel(G, K, lam)), ("exact", FeatureExact(X, lam)))}

    noisy = z != y
    numbers = {"K": K, "n": n, "c": c, "d": d, "D": D, "eta": eta, "lam": lam,
               "filters_block_model": theory.filters(K, n, c, d, lam), "levels": {}}
    fig, axes = plt.subplots(2, len(rounds_shown), figsize=(3.3 * len(rounds_shown), 6.9), constrained_layout=True)
    tri = np.array([[0, 0], [1, 0], [0.5, math.sqrt(3) / 2], [0, 0]])
    titles = {"linear": "linearised softmax", "exact": "exact softmax"}
    for i, level in enumerate(("linear", "exact")):
        per = {}
        for j, t in enumerate(rounds_shown):
            ax = axes[i, j]
            P = outputs[level][t]
            px, py = ternary_xy(P)
            ax.plot(tri[:, 0], tri[:, 1], color="0.3", lw=0.8)
            for k in range(K):
                sel = y == k
                ax.scatter(px[sel & ~noisy], py[sel & ~noisy], s=14, color=CLASS_COLORS[k], alpha=0.75,
                           edgecolors="none")
                ax.scatter(px[sel & noisy], py[sel & noisy], s=22, color=CLASS_COLORS[k], marker="x", linewidths=1.1)
                bx, by = ternary_xy(ybar[:, [k]])
                ax.scatter(bx, by, s=150, marker="*", color=CLASS_COLORS[k], edgecolors="black", linewidths=0.7,
                           zorder=5)
            for k, (vx, vy, ha, va) in enumerate(((0, 0, "right", "top"), (1, 0, "left", "top"),
                                                  (0.5, math.sqrt(3) / 2, "center", "bottom"))):
                ax.text(vx, vy, f"class {k}", ha=ha, va=va, fontsize=8, color=CLASS_COLORS[k])
            acc = metrics.split_accuracy(P, y, z)
            means = np.stack([P[:, y == k].mean(axis=1) for k in range(K)], axis=1)
            spread = float(np.mean(np.linalg.norm(P - means[:, y], axis=0)))
            per[t] = {"accuracy": acc["all"], "clean_accuracy": acc["clean"], "noisy_accuracy": acc["noisy"],
                      "spread": spread}
            ax.set_title(f"{titles[level]}, round $t$ = {t}\naccuracy {100 * acc['all']:.0f} % "
                         f"(noisy {100 * acc['noisy']:.0f} %), spread {spread:.3f}", fontsize=8.5)
            ax.set_aspect("equal")
            ax.set_xlim(-0.12, 1.12)
            ax.set_ylim(-0.1, 0.95)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
        numbers["levels"][level] = per
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=CLASS_COLORS[k], marker="o", ls="", label=f"true class {k}") for k in range(K)]
    handles += [Line2D([], [], color="0.3", marker="o", ls="", label="clean given label"),
                Line2D([], [], color="0.3", marker="x", ls="", label="noisy given label"),
                Line2D([], [], color="0.5", marker="*", ms=11, mec="black", ls="",
                       label=r"class-average given label $\bar{y}_k$")]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, bbox_to_anchor=(0.5, -0.05))
    fig.suptitle(
        f"Label averaging on the simplex: training predictions after $t$ rounds of self-distillation\n"
        f"Gaussian mixture $K$={K}, $n$={n} per class, $c$={c}, $d$={d}, $D$={D}; symmetric noise $\\eta$={eta} "
        f"(exact counts); $\\lambda$={_fmt_lam(lam)} = $(1-c)/(2KN)$; spread = mean distance to the class's mean "
        "prediction",
        fontsize=9.5,
    )
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_a_simplex", quick))
    return numbers
