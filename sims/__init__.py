"""Brute-force simulations that check the closed forms in :mod:`theory`.

Layers, each importing only from the ones before it:

* :mod:`sims.engine` -- the data path: features -> noise -> fit -> rounds -> measures;
* :mod:`sims.studies` -- the command-line experiments (``python -m sims.distill``, ``sims.phase_diagram``,
  ``sims.convergence``, ``sims.exact_boundary_check``, ``sims.pll_mixture``);
* :mod:`sims.figures`, :mod:`sims.paper_checks` -- the outputs (``python -m sims.figures``,
  ``python -m sims.paper_checks``).

``sims._cli`` and ``sims._interrupt`` are small helpers shared by the command lines.
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # importing the package for ``python -m sims.<tool>``: Ctrl-C during the slow imports
    from ._interrupt import install as _install  # (theory derives sympy expressions) or a closed pipe: no traceback

    _install()
