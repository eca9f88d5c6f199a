"""Figure d: class-wise feature correlation, Gaussian mixture against real digits.

Claim: **P6** (real features show class-wise correlation blocks; the block model
and superclass noise assume them), and the superclass construction used for
superclass noise on real data (**P3**/**P4** with superclasses).

Mean Gram entries per class pair, correlation of class means, and the
complete-linkage dendrogram cut at 0.8 of the largest merge. File:
``figures/fig_d_correlations.png``. Rebuild: ``python -m sims.figures --only d``.
"""

from __future__ import annotations

import numpy as np

from ..engine import features as feat
from ._common import _digits, _fig_path, _plt, _save

__all__ = ["fig_d_correlations"]


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
    distance (sims.engine.features.class_mean_superclasses), which defines the
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
        for j, (M, label) in enumerate(((B, r"mean Gram entry $\langle\phi_i, \phi_j\rangle$"),
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
