"""The finite-D boundary of the phase diagram's gmm level and its agreement with the observed cells.

:func:`finite_dim_boundary`: per noise rate of a coarse grid (the gmm level's etas and the midpoints
between them), the first perfect round predicted by :func:`theory.finite_dim.finite_dim_prediction`
(median, q10, q90, p_equal_block) at the sweep's D, n = gmm_per_class and lambda = lam_for(n), on the
expected label counts n C rounded by :func:`sims.engine.noise.expected_counts`. :func:`boundary_agreement` counts a
boundary ("perfect from round b on") against the gmm level's observed SD cells with
:class:`sims.engine.Agreement`.
"""

from __future__ import annotations

import numpy as np

from ..engine import noise as noise_mod
from ..engine.fit import limit_blas_threads
from ..engine.measures import Agreement

__all__ = ["finite_dim_etas", "finite_dim_boundary", "boundary_agreement", "FD_RULE",
           "draw_finite_dim"]

FD_PROB_TOL = 1e-4  # orthant tolerance; 1e-5 gave the same q10/median/q90 on the default grid at D = 1e3, 10x slower
FD_COLOR = "magenta"
FD_RULE = ("finite-D boundary (gmm level): theory.finite_dim_prediction (linearised, Gaussian mixture at the sweep's "
           "D) on the expected label counts n C (off-diagonal entries rounded to the nearest integer, the diagonal "
           "takes the rest: equal entries of C stay equal, so the given labels stay balanced as with C itself); "
           "median = least round with P(first perfect round <= t) >= 0.5, None = not within the rounds shown. "
           "Agreement: an SD row of the gmm level is 'theory perfect' when its round >= the boundary at its eta; "
           "block_boundary: the same rule with theory.min_rounds on the population C (the crimson line)")

_FD_CACHE: dict = {}


def finite_dim_etas(sweep) -> tuple:
    """The gmm level's etas and the midpoints between neighbours (4 decimals)."""
    g = [float(e) for e in sweep.gmm_etas()]
    shown = {round(e, 4) for e in g}
    mids = [round((a + b) / 2, 4) for a, b in zip(g, g[1:])]
    return tuple(sorted(g + [m for m in mids if m not in shown]))


def finite_dim_boundary(sweep, noise: str, etas=None) -> dict:
    """Finite-D first perfect round per eta (cached; deterministic: fixed lattice, one BLAS thread)."""
    etas = finite_dim_etas(sweep) if etas is None else tuple(float(e) for e in etas)
    n = sweep.gmm_per_class
    key = (noise, sweep.K, sweep.superclass_size, n, sweep.c, sweep.d, sweep.lam_for(n), sweep.dim, sweep.rounds,
           etas)
    if key not in _FD_CACHE:
        with limit_blas_threads(1):
            _FD_CACHE[key] = _finite_dim_boundary(sweep, noise, n, etas)
    return _FD_CACHE[key]


def _finite_dim_boundary(sweep, noise, n, etas) -> dict:
    from theory.finite_dim import finite_dim_prediction

    out = {"eta": [], "median": [], "q10": [], "q90": [], "p_equal_block": [], "block_first_round": [],
           "beyond": [], "counts": [], "probability_error": 0.0}
    if n < 2:  # the theory needs n >= 2
        return {**out, "eta": list(etas), "median": [None] * len(etas), "note": "n < 2: no finite-D theory"}
    for eta in etas:
        C = noise_mod.noise_matrix(noise, sweep.K, eta, sweep.superclass_size)
        counts = noise_mod.expected_counts(C, n)
        p = finite_dim_prediction(sweep.K, n, sweep.c, sweep.d, sweep.lam_for(n), float(sweep.dim), counts,
                                  rounds=sweep.rounds, prob_tol=FD_PROB_TOL)
        fp = p.first_perfect
        peq = fp["p_equal_block"]
        out["eta"].append(float(eta))
        for q in ("median", "q10", "q90"):
            out[q].append(fp[q])
        out["p_equal_block"].append(None if not np.isfinite(peq) else float(peq))
        out["block_first_round"].append(p.block_first_round)
        if fp["median"] is None and p.block_first_round is not None:
            out["beyond"].append(float(eta))  # perfect at D = inf, not within the rounds shown at this D
        out["counts"].append(counts.tolist())
        out["probability_error"] = max(out["probability_error"], float(p.probability_error))
    return out


def boundary_agreement(rows, noise: str, etas, first) -> dict:
    """Agreement of "perfect from round ``first[i]`` on at ``etas[i]``" with the observed gmm SD rows."""
    where = dict(zip((round(e, 4) for e in etas), first))
    sel = [r for r in rows if r["level"] == "gmm" and r["method"] == "sd" and r["noise"] == noise
           and round(r["eta"], 4) in where]
    theory_says = [where[round(r["eta"], 4)] is not None and r["round"] >= where[round(r["eta"], 4)] for r in sel]
    a = Agreement.of(theory_says, [bool(r["observed_perfect"]) for r in sel])
    return {"agreement": a.agreement, "confusion": a.counts(), "informative_rows": a.informative}


def draw_finite_dim(ax, fd: dict, R: int) -> dict:
    """Median first round as a step line, q10-q90 as bars, "beyond" squares on the top edge."""
    e = np.array(fd["eta"])
    med = np.array([np.nan if v is None else v for v in fd["median"]], dtype=float)
    ax.step(e, med - 0.5, where="mid", color="white", lw=2.2, zorder=4)
    ax.step(e, med - 0.5, where="mid", color=FD_COLOR, lw=1.2, zorder=4)
    lo = np.array([np.nan if v is None else v for v in fd["q10"]], dtype=float)
    hi = np.array([R + 0.5 if v is None else v for v in fd["q90"]], dtype=float)
    ok = np.isfinite(med)
    if ok.any():
        ax.errorbar(e[ok], med[ok] - 0.5, yerr=[med[ok] - lo[ok], hi[ok] - med[ok]], fmt="o", ms=2.5,
                    color=FD_COLOR, ecolor=FD_COLOR, elinewidth=0.9, capsize=2, zorder=5)
    if fd["beyond"]:
        ax.plot(fd["beyond"], [R + 0.5] * len(fd["beyond"]), "s", color=FD_COLOR, mec="white", mew=0.6, ms=5.5,
                ls="", clip_on=False, zorder=6)
    return {"finite_dim_rounds": list(fd["median"]), "finite_dim_beyond_etas": list(fd["beyond"])}
