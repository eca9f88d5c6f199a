"""Every figure of the suite, one module per figure, rebuilt by one command.

``python -m sims.figures [--quick] [--out DIR] [--only a,b,...] [--seed S] [--jobs J]``

Laid out like scikit-learn's example gallery: each figure is one module whose
docstring says what the figure shows and which of the paper's claims (P1-P7,
see paper_checks.md) it supports; its one public function builds the figure and
returns a small dict of the numbers it plotted.

=====  ==============================  ======================================================  ==========
letter module                          what it shows                                           claims
=====  ==============================  ======================================================  ==========
a      :mod:`.fig_a_simplex`           label averaging on the probability simplex (K = 3)      P1, P2
b      :mod:`.fig_b_spectral_filter`   block-model spectrum and the filters mu/(mu+KN lam)^s   P1
c      :mod:`.fig_c_paper_experiment`  the paper's numerical experiment (K=4, n=500, eta=0.5)  P3, P5
d      :mod:`.fig_d_correlations`      class-mean correlations and superclasses                P6 (P3/P4)
e      :mod:`.fig_e_distillation_gain` held-out gain of SD rounds 1-4 and the PLL student      P6, P4
f      :mod:`.fig_f_min_rounds`        minimum rounds for 100 % training accuracy against eta  P3, P5
g      :mod:`.fig_g_phase_diagram`     the phase diagram of :mod:`sims.studies.phase_diagram`          P3, P4, P5
=====  ==============================  ======================================================  ==========

Files go to ``figures/`` (``--out DIR`` elsewhere) as ``<name>.png``, or
``<name>_quick.png`` with ``--quick`` (a reduced mode for CI that leaves the full
figures alone); the phase diagram also writes a PDF, its CSV and JSON (to
``results/phase_diagram/`` by default, to DIR with ``--out``). The numbers each
figure returns are collected in ``results/figures[_quick].json`` (with
``--out DIR``: ``DIR/figures[_quick].json``), merged with earlier runs of other
figures.

Randomness: the one ``--seed`` becomes one ``np.random.Generator``; every figure
gets its own child (``Generator.spawn``, in the fixed order a..g, so a figure's
result does not depend on ``--only``), and figures spawn one child per sub-run
(seed, noise rate), so results do not depend on ``--jobs``. The phase diagram
takes ``--seed`` itself (its own SeedSequence scheme).
"""

from __future__ import annotations

from ._common import ternary_xy
from .cli import FIGURES, build_parser, main
from .fig_a_simplex import fig_a_simplex
from .fig_b_spectral_filter import fig_b_spectral_filter
from .fig_c_paper_experiment import fig_c_paper_experiment
from .fig_d_correlations import fig_d_correlations
from .fig_e_distillation_gain import E_METHODS, fig_e_distillation_gain
from .fig_f_min_rounds import fig_f_min_rounds
from .fig_g_phase_diagram import fig_g_phase_diagram

__all__ = [
    "FIGURES",
    "E_METHODS",
    "fig_a_simplex",
    "fig_b_spectral_filter",
    "fig_c_paper_experiment",
    "fig_d_correlations",
    "fig_e_distillation_gain",
    "fig_f_min_rounds",
    "fig_g_phase_diagram",
    "ternary_xy",
    "build_parser",
    "main",
]
