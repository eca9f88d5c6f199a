"""The phase-diagram sweep that P3, P4 and P5 read: the theory's per-sample verdict against the observed one.

Runs :func:`sims.studies.phase_diagram.run_sweep` (no cache: computed afresh) and reduces its rows to
:class:`sims.engine.Agreement` counts per level (linear, exact, gmm) and method (sd, pll).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..engine.measures import Agreement
from ._common import SEED, confusion

ETAS = (0.0, 0.12, 0.24, 0.3, 0.36, 0.48, 0.6, 0.72, 0.84)
ROUNDS = 30
SEEDS = 2
# The mixture level as in the phase diagram's default: n = 100 and D = 10^7, where the convergence study
# (python -m sims.convergence) finds the mixture's first perfect round equal to the block model's.
GMM_PER_CLASS = 100
GMM_DIM = 10**7


@dataclass
class SweepResult:
    sweep: object
    rows: list
    summary: dict

    def confusion(self, level, method=None, noise=None) -> Agreement:
        sel = [r for r in self.rows if r["level"] == level and (method is None or r["method"] == method)
               and (noise is None or r["noise"] == noise)]
        return confusion([r["theory_perfect"] for r in sel], [r["observed_perfect"] for r in sel])

    @property
    def levels(self):
        return tuple(self.sweep.levels)

    def description(self) -> str:
        s = self.sweep
        return (f"phase-diagram sweep (K={s.K}, n={s.n}, lambda={s.lam:g}; symmetric and superclass noise, "
                f"{len(s.etas)} noise rates {min(s.etas)}-{max(s.etas)}, rounds 0-{s.rounds} and the PLL student, "
                f"{s.seeds} seeds of sampled labels; gmm level: n={s.gmm_per_class}, D={s.dim}, every "
                f"{s.gmm_etas_every}nd noise rate); a cell is (noise, eta, method, round, seed)")


def run() -> SweepResult:
    from ..studies.phase_diagram import Sweep, run_sweep

    sweep = Sweep(noises=("symmetric", "superclass"), etas=ETAS, rounds=ROUNDS, seeds=SEEDS, dim=GMM_DIM, gmm_per_class=GMM_PER_CLASS,
                  gmm_etas_every=2, seed=SEED)
    with tempfile.TemporaryDirectory() as tmp:  # no cache: every check is computed afresh
        rows, summary = run_sweep(sweep, jobs=-1, cache_dir=Path(tmp), progress=False)
    return SweepResult(sweep, rows, summary)
