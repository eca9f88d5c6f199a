"""Figure c: the paper's numerical experiment (K=4, n=500, eta=0.5), linearised against exact softmax.

Claims: **P3** (100 % training accuracy despite 50 % symmetric noise, from the
theory's minimum round t* on) and **P5** (the linearised softmax and the block
model are good approximations: the exact softmax and a valid perturbed Gram
matrix follow the linearised curves, a few rounds later).

Clean and noisy training accuracy over rounds for the exact block model and a
valid perturbed Gram matrix. File: ``figures/fig_c_paper_experiment.png``.
Rebuild: ``python -m sims.figures --only c``.
"""

from __future__ import annotations

import numpy as np

import theory
from theory.validate import check_int

from ..engine import features as feat
from ..engine import measures as metrics
from ..engine import rounds as sd_rounds
from ..engine.fit import BlockExact, FeatureExact, LinearModel
from ..engine import noise as noise_mod
from ._common import PAPER, _bar, _fig_path, _one_hot, _plt, _save

__all__ = ["fig_c_paper_experiment"]


def fig_c_paper_experiment(out_dir, rng, quick=False, jobs=1, progress=False, *, n=None, rounds=20):
    """The paper's numerical experiment, linearised against exact softmax.

    K=4, n=500, c=0.4, d=0.1, lam=1e-5, symmetric noise eta=0.5 with labels
    drawn independently (as in the paper), rounds 0..20. Left: the exact block
    Gram model (linearised by brute force on the explicit N x N matrix; exact
    softmax by the type-reduced solver). Right: a valid perturbed Gram matrix
    with the paper's fluctuation size (sims.engine.features.perturbed_features:
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
        series[(name, "linear")] = [f.outputs for f in sd_rounds.sd(LinearModel(G, K, lam), Y, rounds)]
        bar.update(1)
        engine = BlockExact(K, n, c, d, lam, y, z) if name == "block" else FeatureExact(Xp, lam)
        first = engine.one_hot_types() if name == "block" else Y
        series[(name, "exact")] = [f.outputs for f in sd_rounds.sd(engine, first, rounds)]
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
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 5.3), sharey=True, layout="constrained")
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
                       label=f"theory: minimum round $t^*$ = {t_star} (block model, sample's label shares)")
        ax.set_xlabel("round $t$ (teacher = 0)")
        ax.set_xticks(tt[:: 2])
        ax.grid(alpha=0.3)
        ax.set_ylim(-0.03, 1.05)
    # one legend below both panels: inside, it covered the transition (rounds 10-14 on the left)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8)
    axes[0].set_ylabel("training accuracy against the true labels")
    axes[0].set_title(f"exact block Gram model ($c$={c}, $d$={d})", fontsize=9.5)
    axes[1].set_title(f"perturbed Gram: row-normalised mixture, $D$={Xp.shape[1] - K - 1} (symmetric, PSD)\n"
                      f"[the paper's block + U(-0.05, 0.05) matrix: $\\max|M - M^T|$ = {paper_report.max_asymmetry:.3f}, "
                      f"min eigenvalue {paper_report.min_eigenvalue:.2f}: not a Gram matrix]", fontsize=8.5)
    fig.suptitle(f"The paper's numerical experiment: $K$={K}, $n$={n}, $\\lambda$={lam:g}, symmetric noise "
                 f"$\\eta$={eta} "
                 f"(sampled labels); linearised (dashed, open) vs exact softmax (solid)", fontsize=10.5)
    numbers["file"] = _save(fig, _fig_path(out_dir, "fig_c_paper_experiment", quick))
    return numbers
