"""Figure g: the phase diagram of :mod:`sims.studies.phase_diagram`.

Claims: **P3** (where multi-round SD reaches 100 % training accuracy, theory
against simulation, cell by cell), **P4** (the PLL student's column) and **P5**
(three levels: brute-force linearised, exact softmax on the block model, exact
softmax on Gaussian-mixture features).

File: ``figures/phase_diagram.png`` (and ``.pdf``). Rebuild:
``python -m sims.figures --only g`` or ``python -m sims.phase_diagram``.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["fig_g_phase_diagram"]


def fig_g_phase_diagram(out_dir, rng=None, quick=False, jobs=1, progress=False, *, seed=0, out_given=False,
                        extra_args=()):
    """The phase diagram of sims.studies.phase_diagram (its own figure: training accuracy over eta x round for
    the linearised, exact and mixture levels, the theory's boundary and the PLL column).

    Runs ``sims.studies.phase_diagram.main`` (``--quick`` in quick mode, ``--seed``, ``--jobs``, then
    ``extra_args``) from the working directory. Without ``out_given`` it writes where the phase diagram
    itself would (:func:`sims.studies.phase_diagram.output_paths`: figures/phase_diagram[_quick].{png,pdf} and
    results/phase_diagram/ for the default sweep, results/phase_diagram/<settings key>/ for any other);
    with ``out_given`` it gets ``--out out_dir`` and everything goes there. Returns the per-level
    agreement with the theory on informative rows and the confusion counts.
    """
    import contextlib
    import io

    from ..studies import phase_diagram as pd

    argv = ["--seed", str(seed), "--jobs", str(jobs)]
    if quick:
        argv.append("--quick")
    if not progress:
        argv.append("--no-progress")
    if out_given:
        argv += ["--out", str(Path(out_dir).resolve())]
    argv += list(extra_args)
    args = pd.build_parser().parse_args(argv)
    fig_dir, res_dir, stem = pd.output_paths(pd.sweep_from_args(args, argv), args.quick, args.out)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = pd.main(argv)
    if code == 130:
        raise KeyboardInterrupt
    if code != 0:
        raise RuntimeError(f"sims.studies.phase_diagram.main({argv}) returned {code}")
    summary = json.loads((res_dir / f"{stem}.json").read_text())
    return {
        "file": str(fig_dir / f"{stem}.png"),
        "agreement": {lv: s["agreement"] for lv, s in summary["levels"].items()},
        "confusion": {lv: s["confusion"] for lv, s in summary["levels"].items()},
        "disagreements": {lv: s["disagreements"] for lv, s in summary["levels"].items()},
        "runtime_seconds": summary.get("runtime_seconds"),
    }
