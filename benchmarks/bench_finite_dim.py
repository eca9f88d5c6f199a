"""Cost of theory.finite_dim.finite_dim_prediction (the Genz orthant integrals dominate), optionally against an older checkout.

    python benchmarks/bench_finite_dim.py [--baseline DIR] [--quick] [--report FILE]

Each setting runs in a fresh interpreter: after an untimed first call on a tiny setting (which does the lazy
imports), ``finite_dim_prediction`` once, at the default ``prob_tol`` 1e-5, with its CPU time (``time.process_time``:
the machine may be shared), wall time, the largest reported probability error, or the error it raised. With
``--baseline DIR`` (a checkout of an older commit, for example made by ``git worktree add DIR REV``) every setting
runs on it too, right after the current tree's, so that both see the same machine load; the report gives the largest
difference of the training and fresh accuracies between the two. ``--quick`` leaves out the settings that take more
than ~10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name, (K, n, c, d, lam, D / N, counts, rounds, prob_tol), slow
SETTINGS = [
    ("K=4 n=25 superclass pairs 15/10, lam=1e-3, D/N=0.05", (4, 25, 0.3, 0.05, 1e-3, 0.05, "review", 60, 1e-5), False),
    ("K=4 n=100 symmetric 0.3, lam=5e-5, D/N=0.25", (4, 100, 0.3, 0.05, 5e-5, 0.25, ("symmetric", 0.3), 60, 1e-5), False),
    ("K=4 n=100 symmetric 0.3, lam=5e-5, D/N=1.25", (4, 100, 0.3, 0.05, 5e-5, 1.25, ("symmetric", 0.3), 60, 1e-5), False),
    ("K=4 n=100 symmetric 0.3, lam=5e-5, D/N=32", (4, 100, 0.3, 0.05, 5e-5, 32.0, ("symmetric", 0.3), 60, 1e-5), False),
    ("K=4 n=100 superclass 0.3, c=0.4, d=0.1, lam=5e-5, D/N=0.5", (4, 100, 0.4, 0.1, 5e-5, 0.5, ("superclass", 0.3), 60, 1e-5), False),
    ("K=5 n=100 symmetric 0.32, lam=5e-5, D/N=0.25", (5, 100, 0.3, 0.05, 5e-5, 0.25, ("symmetric", 0.32), 60, 1e-5), False),
    ("K=5 n=100 symmetric 0.32, lam=1e-6, D/N=0.25", (5, 100, 0.3, 0.05, 1e-6, 0.25, ("symmetric", 0.32), 60, 1e-5), True),
    ("K=5 n=25 symmetric 0.32, lam=1e-3, D/N=0.05", (5, 25, 0.3, 0.05, 1e-3, 0.05, ("symmetric", 0.32), 60, 1e-5), True),
    ("K=30 n=3 one label to the next class, lam=1e-3, D/N=3.33, round 0 only", (30, 3, 0.3, 0.05, 1e-3, 10 / 3, "next", 0, 1e-5),
     False),
]


def _counts(K, n, spec):
    import numpy as np

    from theory.corruption import exact_label_counts, superclass, symmetric

    if spec == "review":
        return np.array([[15, 10, 0, 0], [10, 15, 0, 0], [0, 0, 15, 10], [0, 0, 10, 15]])
    if spec == "next":
        return (n - 1) * np.eye(K, dtype=int) + np.roll(np.eye(K, dtype=int), 1, axis=1)
    kind, eta = spec
    return exact_label_counts(symmetric(K, eta) if kind == "symmetric" else superclass(K, eta, 2), n)


def _worker(index: int) -> None:
    """Run one setting in this interpreter and print a JSON line."""
    import time

    import numpy as np

    import theory
    from theory.finite_dim import finite_dim_prediction

    K, n, c, d, lam, ratio, spec, rounds, tol = SETTINGS[index][1]
    counts = _counts(K, n, spec)
    # a first call imports what finite_dim imports lazily (scipy.special, the block-model modules): not timed
    finite_dim_prediction(2, 2, 0.3, 0.05, 1e-3, 10.0, np.array([[1, 1], [0, 2]]), rounds=0)
    t0, w0 = time.process_time(), time.perf_counter()
    try:
        p = finite_dim_prediction(K, n, c, d, lam, ratio * K * n, counts, rounds=rounds, prob_tol=tol)
        out = {"train": p.train_accuracy.tolist(), "fresh": p.fresh_accuracy.tolist(), "error": p.probability_error,
               "median": p.first_perfect["median"]}
    except RuntimeError as exc:
        out = {"raised": str(exc)}
    out.update(cpu=time.process_time() - t0, wall=time.perf_counter() - w0, numpy=np.__version__, theory=theory.__file__)
    print(json.dumps(out))


def _run(tree: Path, index: int) -> dict:
    """One setting in a fresh interpreter: this script with ``--worker``, the tree's theory package first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(index)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(tree))
    if done.returncode != 0:
        return {"raised": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed", "cpu": None,
                "wall": None}
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(out["theory"]).resolve().is_relative_to(tree.resolve()):
        raise RuntimeError(f"the worker for {tree} imported theory from {out['theory']} (an installed copy?)")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with")
    parser.add_argument("--quick", action="store_true", help="leave out the settings that take more than ~10 s")
    parser.add_argument("--report", default=str(ROOT / "results" / "bench" / "bench_finite_dim.md"),
                        help="markdown report (default results/bench/bench_finite_dim.md)")
    args = parser.parse_args(argv)
    if args.worker is not None:
        _worker(args.worker)
        return 0
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import _report

    problem = _report.check_writable(args.report)
    if problem:
        parser.error(problem)
    load0 = os.getloadavg() if hasattr(os, "getloadavg") else None
    header = ["setting", "CPU s", "wall s", "probability error"]
    if args.baseline:
        header += ["baseline CPU s", "baseline", "largest difference of train, fresh accuracy"]
    rows = []
    for i, (name, _, slow) in enumerate(SETTINGS):
        if slow and args.quick:
            continue
        cur = _run(ROOT, i)
        row = [name, cur["cpu"], cur["wall"], cur.get("error", "raised: " + cur.get("raised", ""))]
        if args.baseline:
            base = _run(args.baseline.resolve(), i)
            if "raised" in base or "raised" in cur:
                diff = "-"
            else:
                diff = max(max(abs(a - b) for a, b in zip(cur[k], base[k])) for k in ("train", "fresh"))
            row += [base["cpu"], base.get("error", "raised: " + base.get("raised", "")), diff]
        rows.append(row)
        print(" | ".join(_report.fmt(c) for c in row), flush=True)
    intro = ["CPU and wall seconds of one `theory.finite_dim.finite_dim_prediction` call per setting (c = 0.3, "
             "d = 0.05 unless named, 60 rounds unless named, default prob_tol 1e-5), each in a fresh "
             "interpreter with one BLAS thread; the probability error is the largest the call reports."]
    if args.baseline:
        intro.append(f"Baseline: the checkout at `{args.baseline}`, run right after each current-tree run.")
    text = _report.render("Cost of the finite-D theory", intro, [("Measurements", _report.table(header, rows))],
                          _report.machine_facts(load0), quick="slow settings left out" if args.quick else None)
    _report.write(args.report, text)
    print(f"report: {args.report}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
