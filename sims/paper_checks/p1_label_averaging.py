"""P1 Label averaging: multi-round SD averages the given labels through the Gram matrix's eigenvectors.

Theory: :mod:`theory.symbolic` (``verify_all``: every residual of the derivation), :func:`theory.block_gram`,
:func:`theory.label_averaging_operator`, :func:`theory.instance_outputs` (the closed form).
Tests: tests/theorems/test_p1_label_averaging.py.
Figures: figures/fig_b_spectral_filter.png (sims/figures/fig_b_spectral_filter.py),
figures/fig_a_simplex.png (sims/figures/fig_a_simplex.py).
"""

from __future__ import annotations

import numpy as np

import theory
from theory import symbolic as S

from ..engine.noise import one_hot
from ._common import Check, rng_for, rule_text


def verdict_p1(symbolic_ok: bool, closed_form_ok: bool) -> str:
    """'holds' if every symbolic residual simplifies to 0 and the closed form matches the explicit matrix
    power below 1e-12 on every random block problem; else 'fails'."""
    return "holds" if symbolic_ok and closed_form_ok else "fails"


def check_p1() -> Check:
    residuals = S.verify_all()  # {step.residual: simplifies to exactly 0}
    failed = sorted(name for name, ok in residuals.items() if not ok)
    groups = sorted({name.split(".", 1)[0] for name in residuals})
    rng = rng_for(1)
    worst = 0.0
    for _ in range(20):
        K = int(rng.integers(2, 6))
        n = int(rng.integers(1, 7))
        c = float(rng.uniform(0.1, 0.9))
        d = float(rng.uniform(0.0, c - 0.01))
        lam = float(10 ** rng.uniform(-4, 0))
        z = rng.integers(0, K, K * n)
        t = int(rng.integers(0, 25))
        A = theory.label_averaging_operator(theory.block_gram(K, n, c, d), K, lam)
        brute = 1.0 / K + (one_hot(z, K) - 1.0 / K) @ np.linalg.matrix_power(A, t + 1)
        worst = max(worst, float(np.abs(brute - theory.instance_outputs(K, n, c, d, lam, z, t)).max()))
    closed_ok = worst < 1e-12  # float64 round-off of a product of at most 25 matrices with entries <= 1
    symbolic_ok = not failed
    lines = [
        f"- sympy (theory.symbolic.verify_all): {len(residuals)} residuals of the derivation steps ({', '.join(groups)}) "
        f"{'all simplify to exactly 0' if not failed else 'do NOT all vanish: ' + ', '.join(failed)}; identities that are "
        "true by construction are not counted.",
        f"- closed form p_i = U + alpha^s (y_i - ybar_k) + beta^s (ybar_k - ybar) + g^s (ybar - U) against the explicit "
        f"matrix power on 20 random block problems (K <= 5, n <= 6, t <= 24): max abs difference "
        f"{'below 1e-12' if closed_ok else f'{worst:.3g}'} (float64 round-off).",
        "- This is a statement about the linearised model; how well the exact softmax follows it is P5.",
        f"- Verdict rule: {rule_text(verdict_p1)}",
    ]
    return Check(
        "P1", "Label averaging", "Multi-round SD of a linear probe averages the given labels through the eigenvectors "
        "of the feature Gram matrix; in closed form (linearised softmax, class-wise correlation model) the t-th student's "
        "outputs are U + (Y - U) A^(t+1).",
        "outputs on training instances (no accuracy)",
        ["pytest tests/theorems/test_p1_label_averaging.py"],
        lines, verdict_p1(symbolic_ok, closed_ok),
        {"symbolic_ok": symbolic_ok, "symbolic_residuals": len(residuals), "closed_form_below_1e-12": closed_ok},
        "figures/fig_b_spectral_filter.png, figures/fig_a_simplex.png",
        "theory/symbolic.py (verify_all), theory.instance_outputs, theory.label_averaging_operator",
    )
