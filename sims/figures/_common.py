"""Shared pieces of the figure modules: the paper's setting, output paths, atomic saving, a joblib
map with a progress bar, one-hot labels, the ternary projection and the digits loader."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

from ..engine import features as feat
from ..engine.features import PAPER  # noqa: F401  (shared by the figure modules)
from ..engine.noise import one_hot as _one_hot  # noqa: F401
from .._cli import ProgressBar, atomic_write

__all__ = ["ternary_xy"]

# Relative to the working directory (the repository root in the README), as for sims.phase_diagram.
DEFAULT_OUT = Path("figures")
DEFAULT_RESULTS = Path("results")

PAPER_ETAS = (0.0, 0.1, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
DPI = 130
CLASS_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_path(out_dir: Path, name: str, quick: bool, ext: str = "png") -> Path:
    return Path(out_dir) / f"{name}{'_quick' if quick else ''}.{ext}"


def _save(fig, path: Path) -> str:
    """Save atomically (temporary file in the same folder, then rename) and close the figure."""
    plt = _plt()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=Path(path).suffix[1:], dpi=DPI, bbox_inches="tight"))
    finally:
        plt.close(fig)
    return str(path)


def _jsonable(v):
    """Plain Python types (for the JSON of key numbers)."""
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return None if math.isnan(f) else f
    return v


def _bar(total, desc, enabled):
    """Progress bar on stderr without a time-left estimate until a few units are done (sims._cli.ProgressBar)."""
    return ProgressBar(total, desc, enabled=bool(enabled), leave=False)


def _parallel(fn, tasks, jobs, desc, progress):
    """Run ``fn(*task)`` for every task (joblib when jobs != 1), results in task order."""
    results = [None] * len(tasks)
    bar = _bar(len(tasks), desc, progress)
    if jobs == 1:
        for i, task in enumerate(tasks):
            results[i] = fn(*task)
            bar.update(1)
    else:
        from joblib import Parallel, delayed

        par = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for i, res in par(delayed(_indexed)(fn, i, task) for i, task in enumerate(tasks)):
            results[i] = res
            bar.update(1)
    bar.close()
    return results


def _indexed(fn, i, task):
    return i, fn(*task)


def ternary_xy(P) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric coordinates (3, M) to 2-D: vertices class 0 (0, 0), class 1 (1, 0), class 2 (1/2, sqrt(3)/2)."""
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] != 3:
        raise ValueError(f"P has shape {P.shape}, must be (3, M)")
    return P[1] + 0.5 * P[2], (math.sqrt(3.0) / 2.0) * P[2]


def _fmt_lam(lam):
    m, e = f"{lam:.2e}".split("e")
    return f"{float(m):g}e{int(e)}"



@functools.lru_cache(maxsize=4)
def _digits(train_per_class):
    return feat.load_digits_data(train_per_class=train_per_class)
