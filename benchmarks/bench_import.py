"""Import cost of the packages and start-up cost of every command's ``--help``, against a baseline tree.

Each measurement runs in a fresh interpreter: ``python -X importtime -c "import M"`` gives the cumulative
import time of M (microseconds, as CPython reports it), and the wall time of ``python -m CMD --help`` is
the best of ``--repeat`` runs. With ``--baseline DIR`` (a checkout of an older commit, for example made by
``git worktree add DIR REV``) the same measurements run on it, interleaved with the current tree's, so that
both see the same machine load; the report gives the ratios.

    python benchmarks/bench_import.py [--baseline DIR] [--repeat R] [--report FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _report  # noqa: E402

MODULES = ("theory", "sims", "sims.engine")
COMMANDS = ("sims.phase_diagram", "sims.distill", "sims.convergence", "sims.exact_boundary_check",
            "sims.pll_mixture", "sims.probe", "sims.figures", "sims.paper_checks", "theory.generate")


def _env(tree: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(tree)}


def _in_tree(tree: Path, module: str) -> bool:
    """Whether ``module`` is a file or package of ``tree`` (an editable install would otherwise supply a module
    that the tree lacks from the current checkout)."""
    path = tree.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_time(tree: Path, module: str) -> float | None:
    """Cumulative import time of ``module`` in seconds (-X importtime), or None if it does not import."""
    if not _in_tree(tree, module):
        return None
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], env=_env(tree),
                         cwd=tree, capture_output=True, text=True)
    if run.returncode != 0:
        return None
    for line in reversed(run.stderr.splitlines()):
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    return None


def help_time(tree: Path, command: str) -> float | None:
    """Wall time of ``python -m command --help`` in seconds, or None if it fails."""
    if not _in_tree(tree, command):
        return None
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", command, "--help"], env=_env(tree), cwd=tree,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    return elapsed if run.returncode == 0 else None


def _best(values):
    values = [v for v in values if v is not None]
    return min(values) if values else None


def measure(trees: dict, repeat: int) -> dict:
    """{tree name: {("import", M) or ("help", C): best time}}, the trees' runs interleaved."""
    out = {name: {} for name in trees}
    for kind, items, fn in (("import", MODULES, import_time), ("help", COMMANDS, help_time)):
        for item in items:
            samples = {name: [] for name in trees}
            for _ in range(repeat):
                for name, tree in trees.items():
                    samples[name].append(fn(tree, item))
            for name in trees:
                out[name][(kind, item)] = _best(samples[name])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement; the best is kept (default 5)")
    parser.add_argument("--report", default=str(ROOT / "results" / "bench" / "bench_import.md"),
                        help="markdown report (default results/bench/bench_import.md)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat}: must be at least 1")
    if args.baseline is not None and not (args.baseline / "theory" / "__init__.py").is_file():
        parser.error(f"--baseline {str(args.baseline)!r}: not a checkout of this project (no theory/__init__.py)")
    problem = _report.check_writable(args.report)
    if problem:
        parser.error(problem)
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    trees = {"current": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    res = measure(trees, args.repeat)
    header = ["what", "current (s)"] + (["baseline (s)", "current / baseline"] if "baseline" in res else [])
    rows = []
    for key in res["current"]:
        kind, item = key
        label = f"import {item} (-X importtime, cumulative)" if kind == "import" else f"python -m {item} --help (wall)"
        row = [label, res["current"][key]]
        if "baseline" in res:
            base = res["baseline"][key]
            cur = res["current"][key]
            row += [base, None if base in (None, 0) or cur is None else cur / base]
        rows.append(row)
        print(" | ".join(_report.fmt(c) for c in row))
    intro = [f"Best of {args.repeat} fresh interpreters per entry; '-' where the import or command failed "
             "(a baseline without that module)."]
    if "baseline" in res:
        intro.append(f"Baseline tree: `{trees['baseline']}`, measured interleaved with the current tree.")
    text = _report.render("Import and start-up cost", intro, [("Measurements", _report.table(header, rows))],
                          _report.machine_facts(load0))
    _report.write(args.report, text)
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
