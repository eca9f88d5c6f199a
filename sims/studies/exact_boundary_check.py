"""The certified exact-level theory against float exact solvers, on the block model.

:func:`exact_level_agreement` compares, per (noise model, noise rate, lambda) cell with exact label
counts C n, the verdict "every training instance is predicted as its true class" of
:func:`theory.exact_level.certified_rounds` (ball arithmetic, every round checked) with that of a float
exact solver run round by round (SD: round t's targets are round t-1's outputs):

* ``solver="block"``: :class:`sims.engine.BlockExact` (type-reduced float Newton; the exact solver of the
  phase diagram at the paper's scale);
* ``solver="dense"``: :class:`sims.engine.GramExact` on the explicit N x N block Gram (a dense solve that
  shares no code with the type reduction).

Both run the SD rounds of :func:`sims.engine.sd`. A float round is perfect (:func:`sims.engine.perfect`)
when every instance's margin exceeds :data:`sims.engine.measures.TIE_TOL` (ties fail). Verdicts are
counted by :class:`sims.engine.Agreement`, the certified theory as "theory" and the float solver as
"observed".
``benchmarks/bench_exact_level.py`` and ``sims.paper_checks`` call it.
"""

from __future__ import annotations

import sys

from ..engine import rounds as sd_rounds
from ..engine.features import PAPER, block_gram
from ..engine.fit import BlockExact, GramExact
from ..engine.measures import Agreement, perfect
from ..engine.noise import labels_from_counts, one_hot

__all__ = ["DEFAULT_SETTINGS", "eta_grid", "float_rounds_block", "float_rounds_dense", "exact_level_agreement", "main"]

# (lambda, solver, n per noise model): the paper's lambda at n=500 with the type-reduced solver (symmetric at
# n=600, the nearest n at which every eta/(K-1) n on the 0.05 grid is whole), and two larger lambdas at n=60
# (N=240) with the dense solver
DEFAULT_SETTINGS = (
    (1e-5, "block", {"symmetric": 600, "superclass": 500}),
    (1e-3, "dense", {"symmetric": 60, "superclass": 60}),
    (1e-2, "dense", {"symmetric": 60, "superclass": 60}),
)


def eta_grid(step: float = 0.05, top: float = 0.9) -> list[float]:
    """0, step, ..., top (rounded to 4 decimals)."""
    return [round(i * step, 4) for i in range(int(round(top / step)) + 1)]


def _float_rounds(engine, first, y, rounds) -> tuple[list[bool], float]:
    fits = sd_rounds.sd(engine, first, rounds)
    return [perfect(f.outputs, y) for f in fits], max(float(f.residual) for f in fits)


def float_rounds_block(K, n, c, d, lam, counts, rounds) -> tuple[list[bool], float]:
    """Per round 0..``rounds``: is every training instance correct (type-reduced float solver)?
    Also returns the largest fixed-point residual of the fits."""
    y, z = labels_from_counts(counts)
    engine = BlockExact(K, n, c, d, lam, y, z)
    return _float_rounds(engine, engine.one_hot_types(), y, rounds)


def float_rounds_dense(K, n, c, d, lam, counts, rounds) -> tuple[list[bool], float]:
    """As :func:`float_rounds_block`, with the Gram solver on the explicit N x N block Gram."""
    y, z = labels_from_counts(counts)
    return _float_rounds(GramExact(block_gram(K, n, c, d), lam), one_hot(z, K), y, rounds)


def _first(verdicts):
    return next((t for t, v in enumerate(verdicts) if v is True), None)


def exact_level_agreement(settings=DEFAULT_SETTINGS, noises=("symmetric", "superclass"), etas=None, rounds: int = 30,
                          K: int = PAPER["K"], c: float = PAPER["c"], d: float = PAPER["d"], superclass_size: int = 2,
                          progress: bool = False) -> dict:
    """Certified exact-level verdicts against float exact solvers, per (cell, round) and per cell's first
    perfect round.

    ``settings``: iterable of (lam, solver, n) with solver "block" or "dense" and n an int or a dict
    noise -> int (default :data:`DEFAULT_SETTINGS`: lam = 1e-5 with fit_block at n = 500/600, lam = 1e-3
    and 1e-2 with the dense solver at n = 60); ``etas``: default 0, 0.05, ..., 0.9. Label counts are
    exact (:func:`theory.corruption.exact_label_counts`; ValueError if some C_kj n is not whole).

    Returns a dict:

    * ``confusion``: per (cell, round) with a decided certificate, {"both", "only_theory",
      "only_observed", "neither"} (:class:`sims.engine.Agreement`: certified verdict, solver's verdict);
    * ``undecided``: (cell, round) pairs the certificate left undecided (not in ``confusion``);
    * ``rounds_compared``: decided (cell, round) pairs; ``agreement``: share of them where the two agree
      (1.0 is the claim; None if there are none);
    * ``first_round``: {"equal", "cells"}: cells whose certified first perfect round (int, None or
      "undecided") equals the solver's (int or None);
    * ``by_setting``: the same counts per "noise lam=... n=... solver" key;
    * ``cells``: one dict per cell (noise, eta, lam, n, solver, certified_first, solver_first,
      rounds_equal, undecided_rounds, prec, max_residual);
    * ``disagreements``: every decided (cell, round) where the verdicts differ (empty when all agree).
    """
    from theory.corruption import corruption_matrix, exact_label_counts
    from theory.exact_level import certified_rounds

    etas = eta_grid() if etas is None else [float(e) for e in etas]
    tasks = []
    for lam, solver, n in settings:
        if solver not in ("block", "dense"):
            raise ValueError(f"solver == {solver!r}, must be 'block' or 'dense'")
        for noise in noises:
            nn = n[noise] if isinstance(n, dict) else n
            for eta in etas:
                tasks.append((float(lam), solver, int(nn), noise, eta))
    total = {"confusion": Agreement(), "undecided": 0, "first_equal": 0, "cells": 0}
    by_setting: dict = {}
    cells, disagreements = [], []
    if progress:
        from .._cli import ProgressBar

        bar = ProgressBar(len(tasks), "exact-level agreement", enabled=True)
    for lam, solver, n, noise, eta in tasks:
        counts = exact_label_counts(corruption_matrix(noise, K, eta, superclass_size), n)
        rep = certified_rounds(K, n, c, d, lam, counts, rounds, full=True)
        run = float_rounds_block if solver == "block" else float_rounds_dense
        fl, residual = run(K, n, c, d, lam, counts, rounds)
        key = f"{noise} lam={lam:g} n={n} {solver}"
        block = by_setting.setdefault(key, {"confusion": Agreement(), "undecided": 0, "first_equal": 0, "cells": 0})
        und = 0
        for t, (v, f) in enumerate(zip(rep.per_round, fl)):
            if v == "undecided":
                und += 1
                continue
            cv = v == "perfect"
            for b in (total, block):
                b["confusion"] += Agreement.of([cv], [f])
            if cv != f:
                disagreements.append({"noise": noise, "eta": eta, "lam": lam, "n": n, "solver": solver, "round": t,
                                      "certified": v, "solver_perfect": f})
        sf = _first(fl)
        equal = rep.first == sf
        for b in (total, block):
            b["undecided"] += und
            b["first_equal"] += int(equal)
            b["cells"] += 1
        cells.append({"noise": noise, "eta": eta, "lam": lam, "n": n, "solver": solver,
                      "certified_first": rep.first, "solver_first": sf,
                      "rounds_equal": all(v == "undecided" or (v == "perfect") == f for v, f in zip(rep.per_round, fl)),
                      "undecided_rounds": und, "prec": rep.prec, "max_residual": residual})
        if progress:
            bar.update(1)
    if progress:
        bar.close()
    conf = total["confusion"]
    for b in by_setting.values():
        b["confusion"] = b["confusion"].counts()
    return {
        "confusion": conf.counts(),
        "undecided": total["undecided"],
        "rounds_compared": conf.cells,
        "agreement": conf.all_cells_agreement,
        "first_round": {"equal": total["first_equal"], "cells": total["cells"]},
        "by_setting": by_setting,
        "cells": cells,
        "disagreements": disagreements,
        "settings": [{"lam": lam, "solver": s, "n": n} for lam, s, n in settings],
        "rounds": rounds,
        "etas": etas,
    }


def main(argv=None) -> int:
    """``python -m sims.exact_boundary_check [--rounds R] [--no-progress]``: the default comparison, one JSON
    line of totals on stdout, every disagreement on stderr; exit status 1 if any decided round disagrees."""
    import json

    from .._cli import OneLineParser

    p = OneLineParser(prog="python -m sims.exact_boundary_check", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=30, help="last round t checked (teacher = 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    if args.rounds < 0:
        p.error(f"--rounds == {args.rounds}, must be >= 0")
    res = exact_level_agreement(rounds=args.rounds, progress=not args.no_progress)
    print(json.dumps({k: res[k] for k in ("confusion", "undecided", "rounds_compared", "agreement", "first_round")}))
    for r in res["disagreements"]:
        print(f"disagreement: {r}", file=sys.stderr)
    return 1 if res["disagreements"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
