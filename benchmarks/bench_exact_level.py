"""Speed and agreement of the certified exact-level rounds (theory.exact_level).

Run: ``python benchmarks/bench_exact_level.py [--quick]`` from the repository root
(OMP_NUM_THREADS=1 recommended). Results go to results/bench_exact_level.json.

(a) speed (wall and CPU time: the machine may be shared): certified first perfect round on the paper's setting (K=4, c=0.4,
    d=0.1, lam=1e-5), both noise models, eta = 0, 0.05, ..., 0.9 (superclass
    pairs at n=500; symmetric at n=600, the nearest n at which every
    eta/(K-1) n on that grid is a whole number), 30 rounds: time per cell with
    early stop (what the phase diagram needs) and with every round checked.
(b) agreement with float exact solvers, per (cell, round) and per cell's first
    perfect round:
    - lam=1e-5 at n=500/600 against sims.solver.fit_block (type-reduced float);
    - lam=1e-3 and 1e-2 at n=60 (N=240) against sims.solver.fit_gram on the
      explicit N x N block Gram (a dense solve sharing no code with the
      reduction); a float round is perfect when every instance's margin
      exceeds sims.metrics.TIE_TOL.
    Confusion counts: both perfect / only certified / only solver / neither;
    certified "undecided" rounds are counted separately. The comparison is
    sims.exact_boundary_check.exact_level_agreement (shared with sims.paper_checks).
(c) ``--gap``: the gap corrections of theory.exact_gap against the certified
    exact rounds on the paper's setting at n=500 (superclass pairs: eta = 0,
    0.02, ..., 0.48; symmetric: eta = 0, 0.03, ..., 0.72, where every count is
    a whole number), for lam = 1e-5 and 1e-4: cells predicted exactly, mean
    absolute error, and the share of the total gap sum(exact - linear) that
    sum(prediction - linear) accounts for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sims.studies.exact_boundary_check import DEFAULT_SETTINGS, exact_level_agreement  # noqa: E402
from theory.corruption import corruption_matrix, exact_label_counts  # noqa: E402
from theory.exact_level import certified_rounds  # noqa: E402

C_, D_ = 0.4, 0.1
K_ = 4


def grid(step=0.05, top=0.9):
    return [round(i * step, 4) for i in range(int(round(top / step)) + 1)]


def n_for(noise, big):
    if big:
        return 500 if noise == "superclass" else 600
    return 60


def agreement(settings, rounds, progress):
    """(b): sims.exact_boundary_check.exact_level_agreement (the function shared with sims.paper_checks)."""
    return exact_level_agreement(settings, etas=grid(), rounds=rounds, K=K_, c=C_, d=D_, progress=progress)


def speed(rounds):
    out = {}
    for full in (False, True):
        t0, c0 = time.perf_counter(), time.process_time()
        ncell = nround = 0
        for noise in ("symmetric", "superclass"):
            n = n_for(noise, True)
            for eta in grid():
                counts = exact_label_counts(corruption_matrix(noise, K_, eta, 2), n)
                rep = certified_rounds(K_, n, C_, D_, 1e-5, counts, rounds, full=full)
                ncell += 1
                nround += len(rep.per_round)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        out["full" if full else "early_stop"] = {"cells": ncell, "rounds_checked": nround, "seconds": dt,
                                                 "cpu_seconds": dc, "ms_per_round": 1e3 * dt / nround,
                                                 "cpu_ms_per_round": 1e3 * dc / nround}
    return out


def gap(lams, rounds):
    from theory.exact_gap import gap_table

    out = {}
    for lam in lams:
        for noise, etas in (("superclass", [round(0.02 * i, 2) for i in range(25)]),
                            ("symmetric", [round(0.03 * i, 2) for i in range(25)])):
            rows = gap_table(K_, 500, C_, D_, lam, noise, etas, rounds)
            summary = {}
            ok = [r for r in rows if all(isinstance(r[k], int) for k in ("linear", "exact"))]
            total = sum(r["exact"] - r["linear"] for r in ok)
            for key in ("linear", "active_set", "operating_point", "decoupled", "pair_formula"):
                good = [r for r in ok if isinstance(r[key], int)]
                summary[key] = {
                    "exact_matches": sum(r[key] == r["exact"] for r in rows),
                    "cells": len(rows),
                    "mean_abs_error": float(np.mean([abs(r[key] - r["exact"]) for r in good])) if good else None,
                    "gap_share": (sum(r[key] - r["linear"] for r in good) / total) if total else None,
                }
            out[f"{noise} lam={lam:g}"] = {"total_gap": total, "summary": summary, "rows": rows}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="speed only, no agreement runs")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--gap", action="store_true", help="only the gap corrections (c)")
    args = p.parse_args(argv)
    if args.gap:
        res = gap([1e-5, 1e-4], 80)
        for key, v in res.items():
            print(key, "total gap", v["total_gap"], json.dumps(v["summary"]))
            for r in v["rows"]:
                print("  ", r["eta"], r["linear"], r["active_set"], r["operating_point"], r["decoupled"], r["pair_formula"], r["exact"])
        os.makedirs("results", exist_ok=True)
        with open("results/bench_exact_level_gap.json", "w") as fh:
            json.dump(res, fh, indent=1, default=str)
        return
    res = {"speed": speed(args.rounds)}
    print(json.dumps(res["speed"], indent=1))
    if not args.quick:
        res["agreement"] = agreement(DEFAULT_SETTINGS, args.rounds, True)
        a = res["agreement"]
        print(json.dumps({k: a[k] for k in ("confusion", "undecided", "agreement", "first_round")}, indent=1))
        for r in a["cells"]:
            if r["certified_first"] != r["solver_first"]:
                print("DISAGREE (first round)", r)
        for r in a["disagreements"]:
            print("DISAGREE (round)", r)
    os.makedirs("results", exist_ok=True)
    with open("results/bench_exact_level.json", "w") as fh:
        json.dump(res, fh, indent=1, default=str)


if __name__ == "__main__":
    main()
