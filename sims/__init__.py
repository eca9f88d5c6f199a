"""Brute-force simulations that check the closed forms in :mod:`theory`.

Modules
-------
features  feature models: the exact class-wise correlation (block) model, the
          Gaussian mixture that realises it, a valid perturbed Gram matrix (and the
          paper's non-Gram perturbed matrix, for comparison), scikit-learn's digits.
noise     given labels drawn from a corruption matrix (exact counts or sampled).
metrics   accuracy with the tie convention, clean/noisy split, PLL targets.
solver    exact softmax solvers (fixed point P = softmax((T - P) G / (N lam))).
distill   multi-round self-distillation and the PLL student, linearised by brute
          force or exact; ``python -m sims.distill --help``.
exact_boundary_check  the certified exact-level theory against float exact solvers
          (:func:`exact_boundary_check.exact_level_agreement`).
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # importing the package for ``python -m sims.<tool>``: Ctrl-C during the slow imports
    from ._interrupt import install as _install  # (theory derives sympy expressions) or a closed pipe: no traceback

    _install()
