"""Speed and agreement of the certified exact-level rounds (theory.exact_level).

Run: ``python benchmarks/bench_exact_level.py [--quick] [--gap] [--report FILE]`` from the
repository root (OMP_NUM_THREADS=1 recommended). Results go to results/bench_exact_level.json
(results/bench_exact_level_gap.json with --gap), and a markdown report of what was measured
(with the machine's cores, BLAS and load) to ``--report`` (default
results/bench/bench_exact_level.md, or bench_exact_level_gap.md with --gap).

(a) speed (wall and CPU time: the machine may be shared): certified first perfect round on the paper's setting (K=4, c=0.4,
    d=0.1, lam=1e-5), both noise models, eta = 0, 0.05, ..., 0.9 (superclass
    pairs at n=500; symmetric at n=600, the nearest n at which every
    eta/(K-1) n on that grid is a whole number), 30 rounds: time per cell with
    early stop (what the phase diagram needs) and with every round checked.
(b) agreement with float exact solvers, per (cell, round) and per cell's first
    perfect round:
    - lam=1e-5 at n=500/600 against sims.engine.fit_block (type-reduced float);
    - lam=1e-3 and 1e-2 at n=60 (N=240) against sims.engine.fit_gram on the
      explicit N x N block Gram (a dense solve sharing no code with the
      reduction); a float round is perfect when every instance's margin
      exceeds sims.engine.measures.TIE_TOL.
    Confusion counts: both perfect / only certified / only solver / neither;
    certified "undecided" rounds are counted separately. The comparison is
    sims.studies.exact_boundary_check.exact_level_agreement (shared with sims.paper_checks).
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

from benchmarks import _report  # noqa: E402
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
    """(b): sims.studies.exact_boundary_check.exact_level_agreement (the function shared with sims.paper_checks)."""
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
    p.add_argument("--report", default=None, metavar="FILE",
                   help="markdown report of this run (default results/bench/bench_exact_level.md, "
                        "or bench_exact_level_gap.md with --gap)")
    args = p.parse_args(argv)
    if args.report is None:
        args.report = os.path.join(_report.ROOT, "results", "bench",
                                   "bench_exact_level_gap.md" if args.gap else "bench_exact_level.md")
    problem = _report.check_writable(args.report)
    if problem:
        p.error(f"argument --report: {problem}")
    load_at_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    if args.gap:
        res = gap([1e-5, 1e-4], 80)
        for key, v in res.items():
            print(key, "total gap", v["total_gap"], json.dumps(v["summary"]))
            for r in v["rows"]:
                print("  ", r["eta"], r["linear"], r["active_set"], r["operating_point"], r["decoupled"], r["pair_formula"], r["exact"])
        os.makedirs("results", exist_ok=True)
        with open("results/bench_exact_level_gap.json", "w") as fh:
            json.dump(res, fh, indent=1, default=str)
        write_report(args.report, res, args, load_at_start)
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
    write_report(args.report, res, args, load_at_start)


def write_report(path, res, args, load_at_start):
    """The markdown report of one run: the sections that ran, from the numbers just measured."""
    intro = [f"Certified exact level (theory.exact_level) on the paper's setting: K={K_}, c={C_}, d={D_}; "
             f"{args.rounds} rounds unless stated. Times are wall and CPU time of this process."]
    sections = []
    if "speed" in res:
        rows = [(mode.replace("_", " "), r["cells"], r["rounds_checked"], r["seconds"], r["cpu_seconds"],
                 r["ms_per_round"], r["cpu_ms_per_round"]) for mode, r in res["speed"].items()]
        sections.append(("(a) Speed: certified first perfect round, lambda = 1e-5",
                         ["Superclass pairs at n=500, symmetric noise at n=600, eta = 0, 0.05, ..., 0.9.", ""]
                         + _report.table(("rounds checked", "cells", "rounds", "wall s", "CPU s", "wall ms per round",
                                          "CPU ms per round"), rows)))
    if "agreement" in res:
        a = res["agreement"]
        names = list(a["confusion"])  # the confusion vocabulary of exact_level_agreement, in its order
        rows = [(key, *(b["confusion"][k] for k in names), b["undecided"], f"{b['first_equal']} / {b['cells']}")
                for key, b in a["by_setting"].items()]
        rows.append(("all", *(a["confusion"][k] for k in names), a["undecided"],
                     f"{a['first_round']['equal']} / {a['first_round']['cells']}"))
        body = ["Certified verdict against the float exact solvers "
                "(`exact_level_agreement` in sims.exact_boundary_check), counted per (cell, round); "
                "undecided rounds are counted apart.", ""]
        body += _report.table(("setting", *(k.replace("_", " ") for k in names), "undecided",
                               "cells with equal first perfect round"), rows)
        body += ["", f"Share of decided rounds that agree: {_report.fmt(a['agreement'], 6)}; "
                     f"rounds that disagree: {len(a['disagreements'])}."]
        sections.append(("(b) Agreement with the float exact solvers", body))
    if args.gap:
        rows = []
        for key, v in res.items():
            for method, m in v["summary"].items():
                rows.append((key, method, f"{m['exact_matches']} / {m['cells']}", m["mean_abs_error"], m["gap_share"]))
        sections.append(("(c) Gap corrections against the certified exact rounds (n=500, 80 rounds)",
                         _report.table(("noise and lambda", "prediction", "cells predicted exactly",
                                        "mean absolute error", "share of the total gap"), rows)))
    facts = _report.machine_facts(load_at_start)
    quick = "speed only, no agreement runs" if args.quick and not args.gap else None
    _report.write(path, _report.render("Exact-level benchmark", intro, sections, facts, quick))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
