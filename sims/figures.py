"""Every figure of the suite, rebuilt by one command.

``python -m sims.figures [--quick] [--out DIR] [--only a,b,...] [--seed S] [--jobs J]``

Figures (one function each; its docstring says what the figure shows and it
returns a small dict of the numbers it plotted):

a  ``fig_a_simplex``           label averaging on the probability simplex (K = 3 mixture)
b  ``fig_b_spectral_filter``   block-model spectrum and the filters mu/(mu + K N lam)^(t+1)
c  ``fig_c_paper_experiment``  the paper's numerical experiment (K=4, n=500, eta=0.5)
d  ``fig_d_correlations``      class-mean correlations and superclass dendrograms (mixture, digits)
e  ``fig_e_distillation_gain`` held-out accuracy gain of SD rounds 1-4 and of the PLL student
f  ``fig_f_min_rounds``        minimum rounds for 100 % training accuracy against eta
g  ``fig_g_phase_diagram``     the phase diagram of :mod:`sims.phase_diagram`

Files go to ``figures/`` (``--out DIR`` elsewhere) as ``<name>.png``, or
``<name>_quick.png`` with ``--quick`` (a reduced mode for CI that leaves the full
figures alone); the phase diagram also writes a PDF, its CSV and JSON (to
``results/phase_diagram/`` by default, to DIR with ``--out``). The numbers each
figure returns are collected in ``results/figures[_quick].json`` (with
``--out DIR``: ``DIR/figures[_quick].json``), merged with earlier runs of other
figures.

Randomness: the one ``--seed`` becomes one ``np.random.Generator``; every figure
gets its own child (``Generator.spawn``, in the fixed order a..g, so a figure's
result does not depend on ``--only``), and figures spawn one child per sub-run
(seed, noise rate), so results do not depend on ``--jobs``. The phase diagram
takes ``--seed`` itself (its own SeedSequence scheme).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

import theory
from theory._validate import check_int

from . import features as feat
from . import metrics
from . import noise as noise_mod
from ._cli import OneLineParser, atomic_write, write_text

__all__ = [
    "FIGURES",
    "fig_a_simplex",
    "fig_b_spectral_filter",
    "fig_c_paper_experiment",
    "fig_d_correlations",
    "fig_e_distillation_gain",
    "fig_f_min_rounds",
    "fig_g_phase_diagram",
    "ternary_xy",
    "main",
]

# Relative to the working directory (the repository root in the README), as for sims.phase_diagram.
DEFAULT_OUT = Path("figures")
DEFAULT_RESULTS = Path("results")

# The paper's numerical-solver setting.
PAPER = dict(K=4, n=500, c=0.4, d=0.1, lam=1e-5)
PAPER_ETAS = (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
DPI = 130
CLASS_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


# ============================================================================ helpers


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_path(out_dir: Path, name: str, quick: bool, ext: str = "png") -> Path:
    return Path(out_dir) / f"{name}{'_quick' if quick else ''}.{ext}"


def _save(fig, path: Path) -> str:
    """Save atomically (temporary file in the same folder, then rename) and close the figure."""
    plt = _plt()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return str(path)


def _jsonable(v):
    """Plain Python types (for the JSON of key numbers)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    return v


def _bar(total, desc, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, disable=not enabled)


def _parallel(fn, tasks, jobs, desc, progress):
    """Run ``fn(*task)`` for every task (joblib when jobs != 1), results in task order."""
    results = [None] * len(tasks)
    bar = _bar(len(tasks), desc, progress)
    if jobs == 1:
        for i, task in enumerate(tasks):
            results[i] = fn(*task)
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for i, res in par(delayed(_indexed)(fn, i, task) for i, task in enumerate(tasks)):
            results[i] = res
            bar.update(1)
    bar.close()
    return results


def _indexed(fn, i, task):
    return i, fn(*task)


def _one_hot(z, K):
    z = np.asarray(z, dtype=np.int64)
    Y = np.zeros((K, z.size))
    Y[z, np.arange(z.size)] = 1.0
    return Y


def ternary_xy(P) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates (3, M) to 2-D: vertices class 0 (0, 0), class 1 (1, 0), class 2 (1/2, sqrt(3)/2)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != 3:
        raise ValueError(f"P has shape {P.shape}, must be (3, M)")
    return P[1] + 0.5 * P[2], (math.sqrt(3.0) / 2.0) * P[2]


def _fmt_lam(lam):
    m, e = f"{lam:.2e}".split("e")
    return f"{float(m):g}e{int(e)}"


# ============================================================================ a. simplex


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
    exact softmax optimum (sims.solver.fit_features). lam = (1 - c)/(2 K N), so
    that the block-model within-class filter is alpha = 2/3 per fit (the own
    label's weight falls to 2 % by t = 10 while beta^(t+1) stays above 0.9).

    Returns per level and round: accuracy on training instances (all, clean,
    noisy) and the mean distance of each prediction from its class's mean
    prediction ("spread"; it shrinks as predictions cluster).
    """
    from .distill import LinearModel
    from .solver import fit_features

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

    outputs = {"linear": [], "exact": []}
    model = LinearModel(G, K, lam)
    T = Y
    for _ in range(R + 1):
        fit = model.fit(T)
        outputs["linear"].append(fit.outputs)
        T = fit.outputs
    T, W = Y, None
    for _ in range(R + 1):
        fit = fit_features(X, T, lam, W0=W)
        outputs["exact"].append(fit.outputs)
        T, W = fit.outputs, fit.W

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
            ax.set_title(f"{titles[level]}, round t = {t}\naccuracy {100 * acc['all']:.0f} % "
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
                       label="class-average given label ybar_k")]
    fig.legend(handles=handles, loc="lower center", ncol=7, fontsize=8, bbox_to_anchor=(0.5, -0.05))
    fig.suptitle(
        f"Label averaging on the simplex: training predictions after t rounds of self-distillation\n"
        f"Gaussian mixture K={K}, n={n} per class, c={c}, d={d}, D={D}; symmetric noise eta={eta} (exact counts); "
        f"lambda={_fmt_lam(lam)} = (1-c)/(2 K N); spread = mean distance to the class's mean prediction",
        fontsize=9.5,
    )
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_a_simplex", quick))
    return numbers


# ============================================================================ b. spectral filter


def fig_b_spectral_filter(out_dir, rng, quick=False, jobs=1, progress=False, *, rounds=40, gmm_n=None, gmm_D=None):
    """The spectral filter of self-distillation at the paper's setting.

    Left: the eigenvalues of the block Gram model (K=4, n=500, c=0.4, d=0.1):
    1-c (within-class contrasts, N-K of them), 1-c+n(c-d) (class contrasts,
    K-1) and 1-c+n(c-d)+Nd (constant, 1), drawn as stems whose height is the
    multiplicity, next to a histogram of the eigenvalues of one Gaussian-mixture
    Gram matrix realising the block model on average (K=4, n=500, D=4000; with
    --quick n=125, D=1000); the dotted line is K N lam, where a filter equals 1/2.
    Right: the filters mu/(mu + K N lam) raised to the number of fits s = t+1
    against the round t, for the within-class (alpha), class-contrast (beta) and
    constant (g) directions (lam = 1e-5), and the own-label weight relative to
    the class average, (alpha/beta)^s.

    Returns the eigenvalues, multiplicities, filters and the powered filters per round.
    """
    plt = _plt()
    K, n, c, d, lam = PAPER["K"], PAPER["n"], PAPER["c"], PAPER["d"], PAPER["lam"]
    N = K * n
    mus = theory.block_eigenvalues(K, n, c, d)
    mults = (N - K, K - 1, 1)
    alpha, beta, g = theory.filters(K, n, c, d, lam)
    kappa = K * N * lam
    t = np.arange(rounds + 1)
    s = t + 1
    curves = {"alpha": alpha**s, "beta": beta**s, "g": g**s}
    gmm_n = (125 if quick else 500) if gmm_n is None else gmm_n
    gmm_D = (1000 if quick else 4000) if gmm_D is None else gmm_D
    X, _ = feat.sample_gmm(K, gmm_n, c, d, gmm_D, rng)
    ev = np.linalg.eigvalsh(X @ X.T)
    gmm_mus = theory.block_eigenvalues(K, gmm_n, c, d)

    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.0), constrained_layout=True,
                                        gridspec_kw={"width_ratios": [1.15, 1, 1]})
    names = ("within-class (alpha)", "class contrast (beta)", "constant (g)")
    colors = ("tab:red", "tab:blue", "tab:green")
    pos = ev[ev > 1e-8]
    bins = np.logspace(np.log10(max(pos.min(), 1e-3)), np.log10(max(pos.max(), mus[2]) * 1.5), 60)
    ax1.hist(pos, bins=bins, color="0.6", alpha=0.7,
             label=f"Gaussian mixture Gram (n={gmm_n}, D={gmm_D}):\n{pos.size} eigenvalues > 1e-8")
    for mu, m, name, col in zip(mus, mults, names, colors):
        ax1.vlines(mu, 0, m, color=col, lw=3)
        ax1.plot([mu], [m], "o", color=col, label=f"block model, {name}:\nmu = {mu:.4g}, multiplicity {m}")
    ax1.axvline(kappa, color="k", ls=":", lw=1.2, label=f"K N lambda = {kappa:g} (filter = 1/2)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_ylim(0.5, N * 300)
    ax1.set_xlabel("eigenvalue mu of the Gram matrix (log scale)")
    ax1.set_ylabel("number of eigenvalues (log scale)")
    note = "" if gmm_n == n else f"\n(the mixture, n={gmm_n}, has class/constant eigenvalues {gmm_mus[1]:.4g}, {gmm_mus[2]:.4g})"
    ax1.set_title(f"Spectrum: block model K={K}, n={n}, c={c}, d={d}{note}", fontsize=9.5)
    ax1.legend(fontsize=7, loc="upper right", ncol=2)
    styles = (dict(marker="o", ms=3, ls="-"), dict(marker="s", ms=3, ls="-"), dict(marker=None, ls="--", lw=2))
    for (key, vals), name, col, f, st in zip(curves.items(), names, colors, (alpha, beta, g), styles):
        ax2.plot(t, vals, color=col, label=f"{name}: ({f:.6f})^(t+1)", **st)
    ax2.set_yscale("log")
    ax2.set_xlabel("round t (teacher = 0; s = t + 1 fits)")
    ax2.set_ylabel("filter mu/(mu + K N lambda) to the power s (log scale)")
    ax2.set_title(f"Filters per direction, lambda = {lam:g} (K N lambda = {kappa:g})\n"
                  "(own-label weight relative to class average: (alpha/beta)^s, ~ alpha^s here)", fontsize=9.5)
    ax2.legend(fontsize=7.5, loc="lower left")
    ax2.grid(alpha=0.3, which="both")
    for key, name, col, st in (("beta", names[1], colors[1], styles[1]), ("g", names[2], colors[2], styles[2])):
        ax3.plot(t, curves[key], color=col, label=name, **st)
    ax3.set_xlabel("round t (teacher = 0; s = t + 1 fits)")
    ax3.set_ylabel("filter to the power s (linear scale)")
    ax3.set_title("Zoom on the slow directions: beta^s < g^s < 1", fontsize=9.5)
    ax3.legend(fontsize=7.5, loc="lower left")
    ax3.grid(alpha=0.3)
    fig.suptitle("The label-averaging operator A = G (G + K N lambda I)^-1: eigenvalues and filters", fontsize=11)
    numbers = {
        "K": K, "n": n, "c": c, "d": d, "lam": lam, "K_N_lam": kappa,
        "eigenvalues": mus, "multiplicities": mults, "filters": {"alpha": alpha, "beta": beta, "g": g},
        "rounds": t.tolist(), "powered": {k: v.tolist() for k, v in curves.items()},
        "at_round": {int(r): {k: float(v[r]) for k, v in curves.items()} for r in (0, 10, 20, rounds) if r <= rounds},
        "gmm": {"n": gmm_n, "D": gmm_D, "eig_min_positive": float(pos.min()), "eig_max": float(ev.max()),
                "eig_count_positive": int(pos.size),
                "eig_quantiles_bulk": np.quantile(ev[: gmm_n * K - K], [0.05, 0.5, 0.95]).tolist()},
    }
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_b_spectral_filter", quick))
    return numbers


# ============================================================================ c. paper experiment


def fig_c_paper_experiment(out_dir, rng, quick=False, jobs=1, progress=False, *, n=None, rounds=20):
    """The paper's numerical experiment, linearised against exact softmax.

    K=4, n=500, c=0.4, d=0.1, lam=1e-5, symmetric noise eta=0.5 with labels
    drawn independently (as in the paper), rounds 0..20. Left: the exact block
    Gram model (linearised by brute force on the explicit N x N matrix; exact
    softmax by the type-reduced solver). Right: a valid perturbed Gram matrix
    with the paper's fluctuation size (sims.features.perturbed_features:
    row-normalised mixture features, symmetric and PSD), same given labels
    (linearised on its Gram; exact softmax by the primal solver). Curves:
    training accuracy against the true labels on clean and on noisy
    instances. The vertical line is the theory's minimum round
    (theory.min_rounds on the sample's empirical corruption matrix, block
    model). With --quick: n=100 and lam=5e-5 (the same K N lam = 0.08).

    Returns the theory's minimum round, the first all-correct round per
    (matrix, level), per-round clean/noisy accuracies, and the paper's own
    perturbed matrix's Gram check (it is neither symmetric nor PSD).
    """
    from .distill import LinearModel, _BlockExact, _FeatureExact, exact_sd

    plt = _plt()
    K, c, d, eta = PAPER["K"], PAPER["c"], PAPER["d"], 0.5
    n = (100 if quick else PAPER["n"]) if n is None else check_int("n", n, minimum=2)
    lam = PAPER["lam"] * (PAPER["n"] / n) if n != PAPER["n"] else PAPER["lam"]  # keeps K N lam = 0.08
    rng_labels, rng_feat, rng_paper = rng.spawn(3)
    y = np.repeat(np.arange(K), n)
    z = noise_mod.corrupt_labels(y, theory.symmetric(K, eta), rng_labels)
    counts = noise_mod.label_counts(y, z, K)
    C_emp = counts / counts.sum(axis=1, keepdims=True)
    t_star = theory.min_rounds(K, n, c, d, lam, C_emp)
    t_star_pop = theory.min_rounds(K, n, c, d, lam, theory.symmetric(K, eta))
    Y = _one_hot(z, K)
    Xp = feat.perturbed_features(K, n, c, d, rng_feat)
    Gp = Xp @ Xp.T
    Gp = 0.5 * (Gp + Gp.T)
    np.fill_diagonal(Gp, 1.0)
    Gb = feat.block_gram(K, n, c, d)
    paper_report = feat.gram_report(feat.paper_perturbed_matrix(K, n, c, d, rng_paper))
    perturbed_report = feat.gram_report(Gp)

    series = {}
    bar = _bar(4, "fig c fits", progress)
    for name, G in (("block", Gb), ("perturbed", Gp)):
        model = LinearModel(G, K, lam)
        T, outs = Y, []
        for _ in range(rounds + 1):
            fit = model.fit(T)
            outs.append(fit.outputs)
            T = fit.outputs
        series[(name, "linear")] = outs
        bar.update(1)
        engine = _BlockExact(K, n, c, d, lam, y, z) if name == "block" else _FeatureExact(Xp, lam)
        first = engine.one_hot_types() if name == "block" else Y
        series[(name, "exact")] = [f.outputs for f in exact_sd(engine, first, rounds)]
        bar.update(1)
    bar.close()

    numbers = {"K": K, "n": n, "c": c, "d": d, "lam": lam, "eta": eta, "rounds": rounds,
               "theory_min_round_sample": t_star, "theory_min_round_population": t_star_pop,
               "empirical_corruption_diagonal": np.diag(C_emp).tolist(),
               "perturbed_dim": int(Xp.shape[1] - K - 1),
               "perturbed_gram": {"symmetric": perturbed_report.symmetric, "psd": perturbed_report.psd,
                                  "min_eigenvalue": perturbed_report.min_eigenvalue},
               "paper_matrix": {"symmetric": paper_report.symmetric, "max_asymmetry": paper_report.max_asymmetry,
                                "psd": paper_report.psd, "min_eigenvalue": paper_report.min_eigenvalue},
               "series": {}}
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.9), sharey=True, constrained_layout=True)
    tt = np.arange(rounds + 1)
    styles = {"linear": dict(ls="--", marker="o", mfc="none", ms=5), "exact": dict(ls="-", marker=".", ms=6)}
    for ax, name in zip(axes, ("block", "perturbed")):
        for level in ("linear", "exact"):
            accs = [metrics.split_accuracy(P, y, z) for P in series[(name, level)]]
            clean = np.array([a["clean"] for a in accs])
            noisy = np.array([a["noisy"] for a in accs])
            allacc = np.array([a["all"] for a in accs])
            first = next((int(i) for i, a in enumerate(allacc) if a == 1.0), None)
            numbers["series"][f"{name}_{level}"] = {"clean": clean.tolist(), "noisy": noisy.tolist(),
                                                    "all": allacc.tolist(), "first_all_correct": first}
            ax.plot(tt, clean, color="tab:blue", label=f"clean instances, {level}", **styles[level])
            ax.plot(tt, noisy, color="tab:red", label=f"noisy instances, {level}", **styles[level])
        if t_star is not None:
            ax.axvline(t_star, color="k", ls=":", lw=1.3,
                       label=f"theory: minimum round t* = {t_star} (block model, sample's label shares)")
        ax.set_xlabel("round t (teacher = 0)")
        ax.set_xticks(tt[:: 2])
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.03, 1.05)
        ax.legend(fontsize=7.5, loc="lower right")
    axes[0].set_ylabel("training accuracy against the true labels")
    axes[0].set_title(f"exact block Gram model (c={c}, d={d})", fontsize=9.5)
    axes[1].set_title(f"perturbed Gram: row-normalised mixture, D={Xp.shape[1] - K - 1} (symmetric, PSD)\n"
                      f"[the paper's block + U(-0.05, 0.05) matrix: max|M - M^T| = {paper_report.max_asymmetry:.3f}, "
                      f"min eigenvalue {paper_report.min_eigenvalue:.2f}: not a Gram matrix]", fontsize=8.5)
    fig.suptitle(f"The paper's numerical experiment: K={K}, n={n}, lambda={lam:g}, symmetric noise eta={eta} "
                 f"(sampled labels); linearised (dashed, open) vs exact softmax (solid)", fontsize=10.5)
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_c_paper_experiment", quick))
    return numbers


# ============================================================================ d. correlations


def _dendro_order(X, y, K):
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    means = np.stack([X[y == k].mean(axis=0) for k in range(K)])
    corr = np.corrcoef(means)
    dist = 1.0 - corr
    dist = 0.5 * (dist + dist.T)
    np.fill_diagonal(dist, 0.0)
    Z = linkage(squareform(dist, checks=False), method="complete")
    order = dendrogram(Z, no_plot=True)["leaves"]
    return corr, Z, order


def _block_means(G, y, K):
    M = np.zeros((K, K))
    for a in range(K):
        for b in range(K):
            blk = G[np.ix_(y == a, y == b)]
            if a == b:
                m = blk.shape[0]
                M[a, b] = (blk.sum() - np.trace(blk)) / max(m * (m - 1), 1)
            else:
                M[a, b] = blk.mean()
    return M


def fig_d_correlations(out_dir, rng, quick=False, jobs=1, progress=False):
    """Class-wise feature correlation: Gaussian mixture against real digits.

    Rows: the Gaussian mixture used in figure e (K=6, n=100, c=0.4, d=0.1,
    D=300) and scikit-learn's digits (K=10, 120 training images per class,
    centred and row-normalised pixels). Columns: (1) mean Gram entries per
    pair of classes (off-diagonal entries only within a class), i.e. the
    estimated c (diagonal) and d (off-diagonal) of the block model; (2) the
    correlation between class-mean feature vectors; (3) the complete-linkage
    dendrogram of 1 - that correlation, cut at 0.8 of the largest merge
    distance (sims.features.class_mean_superclasses), which defines the
    superclasses used for superclass noise on real data. Classes in columns
    1-2 are ordered by the dendrogram's leaves; boxes mark the superclasses.

    Returns per data set: mean within-class and between-class Gram entries,
    the superclass groups, the cut and the merge distances.
    """
    from scipy.cluster.hierarchy import dendrogram

    plt = _plt()
    import matplotlib.patches as mpatches
    import seaborn as sns

    data = []
    Kg, ng, Dg = (6, 40, 100) if quick else (6, 100, 300)
    Xg, yg = feat.sample_gmm(Kg, ng, 0.4, 0.1, Dg, rng)
    data.append((f"Gaussian mixture (K={Kg}, n={ng}, c=0.4, d=0.1, D={Dg})", Xg, yg, Kg))
    dig = _digits(40 if quick else feat.DIGITS_TRAIN_PER_CLASS)
    data.append((f"digits (K={dig.K}, n={dig.n} training images per class, 64 pixels)", dig.X_train, dig.y_train, dig.K))
    fig = plt.figure(figsize=(15.5, 10.5), layout="constrained")
    subfigs = fig.subfigures(2, 1, hspace=0.04)
    numbers = {}
    for i, (title, X, y, K) in enumerate(data):
        sub = subfigs[i]
        axes = sub.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.1]})
        G = X @ X.T
        B = _block_means(G, y, K)
        corr, Z, order = _dendro_order(X, y, K)
        groups, merges, cut = feat.class_mean_superclasses(X, y, K)
        within = float(np.mean(np.diag(B)))
        between = float(np.mean(B[~np.eye(K, dtype=bool)]))
        key = "gmm" if i == 0 else "digits"
        off = corr[~np.eye(K, dtype=bool)]
        numbers[key] = {"K": K, "n": int(np.sum(y == 0)), "mean_within_gram": within, "mean_between_gram": between,
                        "groups": groups, "cut": cut, "merge_distances": merges.tolist(),
                        "class_mean_corr_offdiag_range": [float(off.min()), float(off.max())]}
        for j, (M, label) in enumerate(((B, "mean Gram entry <phi_i, phi_j>"),
                                        (corr, "correlation of class-mean features"))):
            ax = axes[j]
            Mo = M[np.ix_(order, order)]
            vmax = 1.0 if j == 1 else float(np.max(np.abs(Mo)))
            # seaborn's annotated heatmap: cell (a, b) spans [b, b+1] x [a, a+1]
            sns.heatmap(Mo, ax=ax, cmap="RdBu_r", vmin=-vmax, vmax=vmax, center=0.0, square=True,
                        annot=True, fmt=".2f", annot_kws={"fontsize": 7 if K > 6 else 8.5},
                        xticklabels=[str(k) for k in order], yticklabels=[str(k) for k in order],
                        cbar_kws={"label": label, "fraction": 0.046, "pad": 0.03})
            ax.figure.axes[-1].yaxis.label.set_size(8)
            ax.set_xlabel("class (dendrogram order)")
            ax.set_ylabel("class (dendrogram order)")
            pos = {k: p for p, k in enumerate(order)}
            for gr in groups:
                if len(gr) < 2:
                    continue
                ps = sorted(pos[k] for k in gr)
                if ps[-1] - ps[0] + 1 == len(ps):  # contiguous in leaf order (always, for a tree cut)
                    ax.add_patch(mpatches.Rectangle((ps[0], ps[0]), len(ps), len(ps), fill=False, ec="black", lw=2.2))
            ax.set_title((f"mean Gram entries per class pair\n(diagonal: within-class, mean {within:.3f};"
                          f" off-diagonal: mean {between:.3f})") if j == 0
                         else "correlation of class-mean feature vectors\n(black boxes: superclasses)", fontsize=9)
        ax = axes[2]
        dendrogram(Z, ax=ax, labels=[str(k) for k in range(K)], color_threshold=cut, above_threshold_color="0.4")
        ax.axhline(cut, color="crimson", ls="--", lw=1.2, label=f"cut at 0.8 x largest merge = {cut:.3f}")
        ax.set_ylim(0, float(merges.max()) * 1.15)
        ax.set_xlabel("class")
        ax.set_ylabel("merge distance (1 - correlation), complete linkage")
        spread = f"merges between {merges.min():.3f} and {merges.max():.3f}"
        ax.set_title("superclasses: " + ", ".join("{" + ",".join(map(str, g)) + "}" for g in groups)
                     + f"\n({spread})", fontsize=9)
        ax.legend(fontsize=8, loc="lower right")
        sub.suptitle(title, fontsize=10.5, fontweight="bold")
    fig.suptitle("Class-wise correlation structure of the features (what the block model and superclass noise assume)",
                 fontsize=11)
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_d_correlations", quick))
    return numbers


@functools.lru_cache(maxsize=4)
def _digits(train_per_class):
    return feat.load_digits_data(train_per_class=train_per_class)


# ============================================================================ e. distillation gain

E_METHODS = ("round 1", "round 2", "round 3", "round 4", "PLL (CE)", "PLL (GCE)")
GCE_Q = 0.7


def _e_setting(quick):
    if quick:
        return dict(etas=(0.0, 0.5, 0.8), seeds=2, gmm=dict(K=6, n=30, D=100, fresh=100, lam=5e-4, size=3),
                    digits=dict(train_per_class=40, lam=5e-4))
    return dict(etas=PAPER_ETAS, seeds=3, gmm=dict(K=6, n=100, D=300, fresh=500, lam=5e-4, size=3),
                digits=dict(train_per_class=feat.DIGITS_TRAIN_PER_CLASS, lam=5e-4))


def _e_task(dataset, noise, eta, rng, setting):
    """Test accuracies (teacher, rounds 1-4, PLL CE, PLL GCE) of one (data set, noise, eta, seed)."""
    from .distill import _FeatureExact, exact_pll, exact_sd
    from .solver import NotConvergedError

    if dataset == "gmm":
        s = setting["gmm"]
        K = s["K"]
        X, y = feat.sample_gmm(K, s["n"], 0.4, 0.1, s["D"], rng)
        X_test, y_test = feat.sample_gmm(K, s["fresh"], 0.4, 0.1, s["D"], rng)
        groups = theory.superclass_groups(K, s["size"])
        lam = s["lam"]
    else:
        s = setting["digits"]
        data = _digits(s["train_per_class"])
        K, X, y, X_test, y_test, groups, lam = data.K, data.X_train, data.y_train, data.X_test, data.y_test, \
            data.groups, s["lam"]
    C = noise_mod.noise_matrix(noise, K, eta, groups=groups if noise == "superclass" else None)
    z = noise_mod.corrupt_labels(y, C, rng)
    engine = _FeatureExact(X, lam, X_test)
    failures = []
    fits = exact_sd(engine, _one_hot(z, K), 4)
    accs = [metrics.accuracy(f.fresh_logits, y_test) for f in fits]
    for loss in ("ce", "gce"):
        try:
            accs.append(metrics.accuracy(exact_pll(engine, fits[0], loss).fresh_logits, y_test))
        except NotConvergedError as err:
            accs.append(float("nan"))
            failures.append(f"{dataset}/{noise}/eta={eta}: PLL {loss}: {err}")
    train_teacher = metrics.accuracy(fits[0].outputs, y)
    return np.array(accs), failures, train_teacher


def fig_e_distillation_gain(out_dir, rng, quick=False, jobs=1, progress=False, *, etas=None, seeds=None):
    """Distillation gain against noise rate on held-out data (exact softmax solvers).

    For each data set (Gaussian mixture K=6, n=100, D=300, 500 fresh samples
    per class; scikit-learn digits, 120 training images per class, 597 held-out
    test images) and noise model (superclass: groups {0,1,2},{3,4,5} for the
    mixture, the complete-linkage superclasses of figure d for digits;
    symmetric), the top row shows the test accuracy of SD rounds 1-4 and of
    the PLL student minus the teacher's (round 0), mean over seeds (3; --quick
    2) with standard-error bars of the paired differences; the PLL student is
    fitted with cross-entropy on the 1/2-1/2 top-two targets (the theory) and
    with generalised cross-entropy (q = 0.7) started from the teacher's weights
    (the paper's experiments). The bottom row shows the absolute test accuracy
    of the teacher, round 4 and both PLL students. Noise rates as in the paper
    (0, .1, .3, .5, .6, .7, .8, .9); given labels drawn independently; ridge
    lam = 5e-4 for both data sets (the paper's weight decay on small data sets).
    Dotted vertical lines: the noise rate beyond which C_kk > C_kj fails.

    Returns mean gains and standard errors per (data set, noise, method, eta),
    teacher accuracies and any solver failures.
    """
    plt = _plt()
    setting = _e_setting(quick)
    etas = tuple(setting["etas"] if etas is None else etas)
    seeds = setting["seeds"] if seeds is None else check_int("seeds", seeds, minimum=1)
    datasets = ("gmm", "digits")
    noises = ("superclass", "symmetric")
    tasks, keys = [], []
    children = rng.spawn(len(datasets) * len(noises) * len(etas) * seeds)
    it = iter(children)
    for ds in datasets:
        for noise in noises:
            for eta in etas:
                for s in range(seeds):
                    tasks.append((ds, noise, float(eta), next(it), setting))
                    keys.append((ds, noise, float(eta), s))
    results = _parallel(_e_task, tasks, jobs, "fig e runs", progress)
    acc = {}
    failures = []
    train_teacher = {}
    for key, (a, f, tr) in zip(keys, results):
        acc[key] = a
        failures.extend(f)
        train_teacher[key] = tr
    dig = _digits(setting["digits"]["train_per_class"])
    gs = setting["gmm"]
    group_text = {"gmm": ", ".join("{" + ",".join(map(str, g)) + "}" for g in theory.superclass_groups(gs["K"], gs["size"])),
                  "digits": ", ".join("{" + ",".join(map(str, g)) + "}" for g in dig.groups)}
    thresholds = {("gmm", "symmetric"): (gs["K"] - 1) / gs["K"], ("gmm", "superclass"): (gs["size"] - 1) / gs["size"],
                  ("digits", "symmetric"): (dig.K - 1) / dig.K,
                  ("digits", "superclass"): min((len(g) - 1) / len(g) for g in dig.groups if len(g) > 1)}
    colors = {"round 1": "#c6dbef", "round 2": "#6baed6", "round 3": "#2171b5", "round 4": "#08306b",
              "PLL (CE)": "tab:orange", "PLL (GCE)": "tab:red"}
    fig, axes = plt.subplots(2, 4, figsize=(18, 9.2), layout="constrained", sharex=True)
    numbers = {"etas": list(etas), "seeds": seeds, "setting": setting, "failures": failures, "panels": {}}
    ev = np.array(etas)
    for j, (ds, noise) in enumerate((d_, n_) for d_ in datasets for n_ in noises):
        A = np.array([[acc[(ds, noise, float(e), s)] for s in range(seeds)] for e in etas])  # (E, S, 7)
        teacher = A[:, :, 0]
        gains = A[:, :, 1:] - teacher[:, :, None]
        mean = np.nanmean(gains, axis=1)
        cnt = np.sum(~np.isnan(gains), axis=1)
        se = np.where(cnt > 1, np.nanstd(gains, axis=1, ddof=1) / np.sqrt(np.maximum(cnt, 1)), 0.0) \
            if seeds > 1 else np.zeros_like(mean)
        ax = axes[0, j]
        width = 0.012 * (ev.max() - ev.min() if ev.size > 1 else 1.0)
        for m, name in enumerate(E_METHODS):
            off = (m - (len(E_METHODS) - 1) / 2) * width
            style = dict(marker="s", ls="--") if name.startswith("PLL") else dict(marker="o", ls="-")
            ax.errorbar(ev + off, mean[:, m], yerr=se[:, m], color=colors[name], ms=4, lw=1.3, capsize=2.5,
                        label=name, **style)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(thresholds[(ds, noise)], color="0.4", ls=":", lw=1.2)
        ax.set_ylabel("test accuracy minus teacher's")
        ax.grid(alpha=0.3)
        name_ds = "Gaussian mixture" if ds == "gmm" else "digits"
        extra = f"groups {group_text[ds]}" if noise == "superclass" else "eta spread over all other classes"
        ax.set_title(f"{name_ds}, {noise} noise\n{extra}", fontsize=9)
        ax = axes[1, j]
        tmean = teacher.mean(axis=1)
        ax.plot(ev, tmean, "-o", color="k", ms=4, label="teacher (round 0)")
        for m, name in ((3, "round 4"), (4, "PLL (CE)"), (5, "PLL (GCE)")):
            ax.plot(ev, np.nanmean(A[:, :, 1 + m], axis=1), "-s" if name.startswith("PLL") else "-o", ms=4,
                    color=colors[name], label=name)
        ax.axvline(thresholds[(ds, noise)], color="0.4", ls=":", lw=1.2, label="C_kk > C_kj fails beyond")
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("noise rate eta")
        ax.set_ylabel("test accuracy (mean over seeds)")
        ax.grid(alpha=0.3)
        numbers["panels"][f"{ds}_{noise}"] = {
            "teacher_test_accuracy": tmean.tolist(),
            "teacher_train_accuracy": [float(np.mean([train_teacher[(ds, noise, float(e), s)] for s in range(seeds)]))
                                       for e in etas],
            "gain_mean": {name: mean[:, m].tolist() for m, name in enumerate(E_METHODS)},
            "gain_se": {name: se[:, m].tolist() for m, name in enumerate(E_METHODS)},
            "threshold": thresholds[(ds, noise)],
        }
    h0, l0 = axes[0, 0].get_legend_handles_labels()
    h1, l1 = axes[1, 0].get_legend_handles_labels()
    fig.legend(h0 + h1, [f"gain: {v}" for v in l0] + [f"accuracy: {v}" for v in l1], loc="outside lower center",
               ncol=6, fontsize=8)
    dgt = setting["digits"]
    fig.suptitle(
        f"Distillation gain on held-out data (exact softmax, mean +- s.e. over {seeds} seeds; PLL GCE: q={GCE_Q}, "
        f"started from the teacher)\nmixture: K={gs['K']}, n={gs['n']}, c=0.4, d=0.1, D={gs['D']}, "
        f"{gs['fresh']} test samples/class, lambda={gs['lam']:g}; digits: n={dgt['train_per_class']}/class, "
        f"{dig.y_test.size} test images, lambda={dgt['lam']:g}",
        fontsize=10,
    )
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_e_distillation_gain", quick))
    return numbers


# ============================================================================ f. minimum rounds


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
    from .solver import fit_block

    counts = theory.exact_label_counts(C, n)
    present = counts > 0
    T = _one_hot_types(K)
    ks, ls = np.nonzero(present)
    for t in range(cap + 1):
        fit = fit_block(K, n, c, d, lam, counts, T)
        out = fit.outputs[ks, ls].T  # (K, m)
        if np.all(metrics.correct(out, ks)):
            return t
        T = np.where(np.isnan(fit.outputs), 1.0 / K, fit.outputs)
    return None


def _one_hot_types(K):
    T = np.zeros((K, K, K))
    T[:, np.arange(K), np.arange(K)] = 1.0
    return T


def _f_gmm_task(noise, eta, rng, K, size, c, d, s):
    """First perfect round of exact SD on one Gaussian-mixture sample (exact counts), or None by s['cap']."""
    from .solver import fit_features

    X, y = feat.sample_gmm(K, s["n"], c, d, s["D"], rng)
    z = noise_mod.corrupt_labels(y, noise_mod.noise_matrix(noise, K, eta, size), rng, exact=True)
    T, W = _one_hot(z, K), None
    for t in range(s["cap"] + 1):
        fit = fit_features(X, T, s["lam"], W0=W)
        if np.all(metrics.correct(fit.outputs, y)):
            return t
        T, W = fit.outputs, fit.W
    return None


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
    simulation) is drawn as a marker above the cap line. With --quick: n=60
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

    fig, axes = plt.subplots(1, 2, figsize=(14, 6.2), layout="constrained")
    for ax, noise in zip(axes, noises):
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
                label=f"linearised theory, block model n={n}, lambda={_fmt_lam(lam)} (fine eta grid)")
        ax.step(fine, nn(th_fine_g), where="post", color="tab:purple", lw=1.2, ls="--",
                label=f"linearised theory, block model n={gs['n']}, lambda={_fmt_lam(gs['lam'])} (the mixture's)")
        ax.plot(etas, nn(th), "o", mfc="none", color="k", ms=6,
                label=f"linearised theory at the simulated eta (n={n}); above the line: never")
        exv = nn(ex)
        ax.plot(etas, exv, "s", color="tab:green", ms=4.5, label=f"exact softmax, block model n={n}")
        garr = np.array([[np.inf if v is None else v for v in vals] for vals in gvals], dtype=float)
        gmed = np.median(garr, axis=1)  # inf when at least half the seeds did not get there
        glo, ghi = garr.min(axis=1), np.minimum(garr.max(axis=1), gs["cap"])
        ok = np.isfinite(gmed)
        ax.errorbar(np.array(ge)[ok], gmed[ok], yerr=[gmed[ok] - glo[ok], ghi[ok] - gmed[ok]],
                    fmt="^", color="tab:orange", ms=5, capsize=3,
                    label=f"exact softmax, Gaussian mixture n={gs['n']}, D={gs['D']}: median and range "
                          f"({gs['seeds']} seeds)")
        gm = np.where(ok, gmed, np.nan)
        # "not reached" band above the largest round drawn (independent of the caps)
        finite = [v for v in list(nn(th_fine)) + list(exv) + list(ghi[ok]) if np.isfinite(v)]
        top = 10 * math.ceil((max(finite) + 5) / 10)
        nr_y = top + 8
        th_nr = [e for e, v in zip(etas, th) if v is None]
        ex_nr = [e for e, v in zip(etas, ex) if v is None]
        g_nr = [e for e, m in zip(ge, gmed) if not np.isfinite(m)]
        ax.plot(th_nr, [nr_y + 6] * len(th_nr), "o", mfc="none", color="k", ms=6, ls="")
        ax.plot(ex_nr, [nr_y] * len(ex_nr), "x", color="tab:green", ms=7, mew=1.8, ls="",
                label=f"not reached (theory: never; exact block: not by t={cap})")
        ax.plot(g_nr, [nr_y - 6] * len(g_nr), "x", color="tab:orange", ms=7, mew=1.8, ls="",
                label=f"mixture: median not reached by t={gs['cap']}")
        ax.axhline(top + 2, color="0.5", lw=0.8)
        ax.text(0.005, top + 4, "not reached (see legend)", fontsize=8, color="0.3", va="bottom")
        ax.axvline(thr, color="orange", ls=":", lw=1.5, label=f"noise threshold eta = {thr:g} (C_kk > C_kj fails)")
        ax.set_ylim(-2, top + 26)
        ax.set_xlim(-0.02, thr + st["step"] + 0.04)
        ax.set_xlabel("noise rate eta")
        ax.set_ylabel("minimum round t with 100 % training accuracy (teacher = 0)")
        desc = "symmetric noise" if noise == "symmetric" else "superclass noise, pairs {0,1}, {2,3}"
        ax.set_title(f"{desc} (exact label counts)", fontsize=10)
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
    labels = [labels[i] for i in keep] + ["noise threshold (C_kk > C_kj fails from here on)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(f"Rounds of self-distillation needed for 100 % training accuracy: theory vs exact softmax vs "
                 f"Gaussian mixture (K={K}, c={c}, d={d})", fontsize=11)
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_f_min_rounds", quick))
    return numbers


# ============================================================================ g. phase diagram


def fig_g_phase_diagram(out_dir, rng=None, quick=False, jobs=1, progress=False, *, seed=0, out_given=False,
                        extra_args=()):
    """The phase diagram of sims.phase_diagram (its own figure: training accuracy over eta x round for
    the linearised, exact and mixture levels, the theory's boundary and the PLL column).

    Runs ``sims.phase_diagram.main`` (``--quick`` in quick mode, ``--seed``, ``--jobs``) from the
    working directory. With the default output folder it writes figures/phase_diagram[_quick].{png,pdf}
    and its CSV/JSON (and resume cache) under results/phase_diagram/, so that figures/ holds only
    figures; with ``out_given`` it gets ``--out out_dir`` and everything goes there. Returns the
    per-level agreement with theory.
    """
    from . import phase_diagram as pd

    argv = ["--seed", str(seed), "--jobs", str(jobs)]
    if quick:
        argv.append("--quick")
    if not progress:
        argv.append("--no-progress")
    if out_given:
        argv += ["--out", str(Path(out_dir).resolve())]
        res_dir = fig_dir = Path(out_dir).resolve()
    else:  # its defaults (relative to the working directory)
        res_dir, fig_dir = pd.DEFAULT_RESULTS_DIR, pd.DEFAULT_FIG_DIR
    argv += list(extra_args)
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = pd.main(argv)
    if code != 0:
        raise RuntimeError(f"sims.phase_diagram.main({argv}) returned {code}")
    stem = "phase_diagram_quick" if quick else "phase_diagram"
    summary = json.loads((res_dir / f"{stem}.json").read_text())
    return {
        "file": str(fig_dir / f"{stem}.png"),
        "agreement": {lv: s["agreement"] for lv, s in summary["levels"].items()},
        "disagreements": {lv: s["disagreements"] for lv, s in summary["levels"].items()},
        "runtime_seconds": summary.get("runtime_seconds"),
    }


# ============================================================================ CLI

FIGURES = {
    "a": ("fig_a_simplex", fig_a_simplex),
    "b": ("fig_b_spectral_filter", fig_b_spectral_filter),
    "c": ("fig_c_paper_experiment", fig_c_paper_experiment),
    "d": ("fig_d_correlations", fig_d_correlations),
    "e": ("fig_e_distillation_gain", fig_e_distillation_gain),
    "f": ("fig_f_min_rounds", fig_f_min_rounds),
    "g": ("phase_diagram", fig_g_phase_diagram),
}


def _only(text):
    letters = [v.strip().lower() for v in text.split(",") if v.strip()]
    if not letters:
        raise argparse.ArgumentTypeError(f"{text!r}: give at least one figure letter among {', '.join(FIGURES)}")
    for v in letters:
        if v not in FIGURES:
            raise argparse.ArgumentTypeError(f"unknown figure {v!r}, must be among {', '.join(FIGURES)}")
    return tuple(dict.fromkeys(letters))


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m sims.figures",
                description="Rebuild every figure of the suite (PNG; the phase diagram also as PDF).",
                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="reduced sizes for CI; files get a _quick suffix, so full figures are not overwritten")
    p.add_argument("--out", default=None, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--only", type=_only, default=tuple(FIGURES), help="comma list of figure letters (a-g)")
    p.add_argument("--seed", type=int, default=0, help="the one random seed (>= 0)")
    p.add_argument("--jobs", type=int, default=-1, help="parallel joblib workers for figures e, f, g (-1: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed == {args.seed}, must be >= 0")
    if args.jobs == 0 or args.jobs < -1:
        parser.error(f"--jobs == {args.jobs}, must be >= 1 or -1 (all cores)")
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    out_given = args.out is not None
    out_dir = Path(args.out) if out_given else DEFAULT_OUT
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out == {str(out_dir)!r}: cannot create the folder ({err.strerror})")
    progress = not args.no_progress
    rng = np.random.default_rng(args.seed)
    children = dict(zip(FIGURES, rng.spawn(len(FIGURES))))
    numbers_path = (out_dir if out_given else DEFAULT_RESULTS) / f"figures{'_quick' if args.quick else ''}.json"
    numbers = {}
    if numbers_path.exists():
        try:
            numbers = json.loads(numbers_path.read_text())
        except json.JSONDecodeError:
            numbers = {}
    total_start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(args.only, desc="figures", file=sys.stderr, disable=not progress)
    timings = {}
    for letter in bar:
        name, fn = FIGURES[letter]
        bar.set_postfix_str(name)
        start = time.perf_counter()
        kw = dict(quick=args.quick, jobs=jobs, progress=progress)
        if letter == "g":
            res = fn(out_dir, children[letter], seed=args.seed, out_given=out_given, **kw)
        else:
            res = fn(out_dir, children[letter], **kw)
        elapsed = time.perf_counter() - start
        res["seconds"] = elapsed
        timings[letter] = elapsed
        numbers[letter] = _jsonable(res)
        print(f"{letter}: {res['file']} ({elapsed:.1f} s)", flush=True)
    write_text(numbers_path, json.dumps(_jsonable(numbers), indent=1))
    print(f"numbers: {numbers_path}\ntotal: {time.perf_counter() - total_start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    # Run through the importable module, so that joblib workers find the task functions by name.
    from sims.figures import main as _main

    sys.exit(_main())
