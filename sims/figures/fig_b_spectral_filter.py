"""Figure b: the block model's spectrum and the spectral filters of self-distillation.

Claim: **P1** (the averaging is governed by the eigenvectors of the feature Gram
matrix: each direction is multiplied by mu/(mu + K N lambda) per fit, so the
within-class direction dies long before the class contrasts).

Left: eigenvalues of the block model next to a Gaussian-mixture Gram matrix;
middle and right: the filters raised to t + 1. File:
``figures/fig_b_spectral_filter.png``. Rebuild: ``python -m sims.figures --only b``.
"""

from __future__ import annotations

import numpy as np

import theory

from ..engine import features as feat
from ._common import PAPER, _fig_path, _plt, _save

__all__ = ["fig_b_spectral_filter"]


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
    names = (r"within-class ($\alpha$)", r"class contrast ($\beta$)", r"constant ($g$)")
    colors = ("tab:red", "tab:blue", "tab:green")
    pos = ev[ev > 1e-8]
    bins = np.logspace(np.log10(max(pos.min(), 1e-3)), np.log10(max(pos.max(), mus[2]) * 1.5), 60)
    ax1.hist(pos, bins=bins, color="0.6", alpha=0.7,
             label=f"Gaussian mixture Gram (n={gmm_n}, D={gmm_D}):\n{pos.size} eigenvalues > 1e-8")
    for mu, m, name, col in zip(mus, mults, names, colors):
        ax1.vlines(mu, 0, m, color=col, lw=3)
        ax1.plot([mu], [m], "o", color=col, label=f"block model, {name}:\n$\\mu$ = {mu:.4g}, multiplicity {m}")
    ax1.axvline(kappa, color="k", ls=":", lw=1.2, label=f"$KN\\lambda$ = {kappa:g} (filter = 1/2)")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_ylim(0.5, N * 300)
    ax1.set_xlabel(r"eigenvalue $\mu$ of the Gram matrix (log scale)")
    ax1.set_ylabel("number of eigenvalues (log scale)")
    note = "" if gmm_n == n else f"\n(the mixture, n={gmm_n}, has class/constant eigenvalues {gmm_mus[1]:.4g}, {gmm_mus[2]:.4g})"
    ax1.set_title(f"Spectrum: block model K={K}, n={n}, c={c}, d={d}{note}", fontsize=9.5)
    ax1.legend(fontsize=7, loc="upper right", ncol=2)
    styles = (dict(marker="o", ms=3, ls="-"), dict(marker="s", ms=3, ls="-"), dict(marker=None, ls="--", lw=2))
    for (key, vals), name, col, f, st in zip(curves.items(), names, colors, (alpha, beta, g), styles):
        ax2.plot(t, vals, color=col, label=f"{name}: ${f:.6f}^{{t+1}}$", **st)
    ax2.set_yscale("log")
    ax2.set_xlabel("round $t$ (teacher = 0; $s = t + 1$ fits)")
    ax2.set_ylabel(r"filter $\mu/(\mu + KN\lambda)$ to the power $s$ (log scale)")
    ax2.set_title(f"Filters per direction, $\\lambda$ = {lam:g} ($KN\\lambda$ = {kappa:g})\n"
                  r"(own-label weight relative to class average: $(\alpha/\beta)^s \approx \alpha^s$ here)",
                  fontsize=9.5)
    ax2.legend(fontsize=7.5, loc="lower left")
    ax2.grid(alpha=0.3, which="both")
    for key, name, col, st in (("beta", names[1], colors[1], styles[1]), ("g", names[2], colors[2], styles[2])):
        ax3.plot(t, curves[key], color=col, label=name, **st)
    ax3.set_xlabel("round $t$ (teacher = 0; $s = t + 1$ fits)")
    ax3.set_ylabel("filter to the power $s$ (linear scale)")
    ax3.set_title(r"Zoom on the slow directions: $\beta^s < g^s < 1$", fontsize=9.5)
    ax3.legend(fontsize=7.5, loc="lower left")
    ax3.grid(alpha=0.3)
    fig.suptitle(r"The label-averaging operator $A = G\,(G + KN\lambda I)^{-1}$: eigenvalues and filters", fontsize=11)
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
