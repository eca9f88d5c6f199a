"""The figure of :mod:`sims.phase_diagram` (kept apart so that the sweep module stays short and a change
of the drawing does not change the code fingerprint of the resume cache).

Heatmaps of SD training accuracy over (eta, round) per noise model and level, the theory's
minimum-rounds boundary (only where it is within the rounds shown; "beyond" markers on the top edge
otherwise), the noise threshold, cells where observation and prediction differ, and the PLL column.
Claims P3 (rounds to 100 %), P4 (PLL student) and P5 (levels of approximation).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

import theory

from ._cli import atomic_write

if TYPE_CHECKING:
    from .phase_diagram import Sweep

__all__ = ["plot", "certified_boundary"]


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
            f"both 100 % {c['both_perfect']} | only theory {c['only_predicted']} | "
            f"only sim. {c['only_observed']} | neither {c['neither']}")


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

    from .phase_diagram import predicted_boundary

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
                dis[a, b] |= r["predicted_perfect"] != r["observed_perfect"]
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
                title += (f"\ncertified = solver on {c['both_perfect'] + c['neither']}/{cert['rows'] - cert['undecided']}"
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
            pred = [all(r["predicted_perfect"] for r in sel if r["eta"] == e) for e in etas]
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
