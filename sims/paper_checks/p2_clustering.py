"""P2 Clustering: as rounds grow the training outputs cluster by class.

Theory: :func:`theory.type_outputs`, :func:`theory.filters`, :func:`theory.clustering_ratio`.
Tests: tests/theorems/test_p2_clustering.py.
Figure: figures/fig_a_simplex.png (sims/figures/fig_a_simplex.py).
Check: the within/between spread ratio of the exact softmax (block model, paper setting) against the
linearised closed form, rounds 0-40.
"""

from __future__ import annotations

import math

import numpy as np

import theory

from ._common import PAPER, Check, block_sd, population_counts, rnd, rule_text


def spreads_types(out, counts):
    """Within-class and between-class spread (root of summed squares) of type outputs (K, K, K), weighted
    by the type counts."""
    K = counts.shape[0]
    within = 0.0
    means = []
    for k in range(K):
        w = counts[k] / counts[k].sum()
        o = np.nan_to_num(out[k])
        m = (w[:, None] * o).sum(axis=0)
        means.append(m)
        within += float((counts[k][:, None] * (o - m) ** 2).sum())
    means = np.array(means)
    overall = means.mean(axis=0)
    between = float((counts.sum(axis=1)[:, None] * (means - overall) ** 2).sum())
    return math.sqrt(within), math.sqrt(between)


def verdict_p2(linear_rate_ok: bool, exact_decreasing: bool) -> str:
    """'holds' if the linearised spread ratio falls exactly like (alpha/beta)^t (to 1e-9) and the exact softmax's
    ratio decreases strictly over the tested rounds; else 'fails'."""
    return "holds" if linear_rate_ok and exact_decreasing else "fails"


def check_p2() -> Check:
    K, n, c, d, lam = PAPER.values()
    counts = population_counts("symmetric", K, 0.48, n)
    C = counts / n
    rounds = (0, 5, 10, 20, 40)
    _, fits, _, _ = block_sd(K, n, c, d, lam, counts, max(rounds))
    ratio_exact, ratio_lin = {}, {}
    for t in rounds:
        w, b = spreads_types(fits[t].raw.outputs, counts)
        ratio_exact[t] = w / b
        wl, bl = spreads_types(theory.type_outputs(K, n, c, d, lam, C, t), counts)
        ratio_lin[t] = wl / bl
    alpha, beta, _ = theory.filters(K, n, c, d, lam)
    decreasing = all(ratio_exact[a] > ratio_exact[b] for a, b in zip(rounds[:-1], rounds[1:]))
    lin_rate_ok = all(abs(ratio_lin[t] / ratio_lin[0] - (alpha / beta) ** t) < 1e-9 for t in rounds)
    lines = [
        f"Paper setting K={K}, n={n}, c={c}, d={d}, lambda={lam:g}, symmetric noise eta=0.48 with exact label counts. "
        "Ratio of the within-class spread of the training outputs to the between-class spread (root of summed squares):",
        "",
        "| round t | " + " | ".join(str(t) for t in rounds) + " |",
        "| --- | " + " | ".join("---" for _ in rounds) + " |",
        "| linearised (theory) | " + " | ".join(f"{ratio_lin[t]:.4g}" for t in rounds) + " |",
        "| exact softmax | " + " | ".join(f"{ratio_exact[t]:.4g}" for t in rounds) + " |",
        "",
        f"- linearised: the ratio falls exactly like (alpha/beta)^t = ({alpha / beta:.5f})^t: "
        f"{'yes' if lin_rate_ok else 'NO'}; exact softmax: strictly decreasing over these rounds: {'yes' if decreasing else 'NO'}.",
        "- A training instance's weight on its own label is alpha^s (1 - 1/n) + beta^s (1/n - 1/N) + g^s / N "
        "(tests/theorems/test_p2_clustering.py), so its own label's influence fades against its class's.",
        f"- Verdict rule: {rule_text(verdict_p2)}",
    ]
    nums = {f"ratio_exact_t{t}": rnd(ratio_exact[t]) for t in rounds}
    nums.update({f"ratio_linear_t{t}": rnd(ratio_lin[t]) for t in rounds})
    return Check(
        "P2", "Clustering", "As rounds grow, the training predictions cluster by class and each instance relies less on "
        "its own (possibly wrong) label.", "outputs on training instances (spread), no accuracy",
        ["pytest tests/theorems/test_p2_clustering.py", "python -m sims.paper_checks"],
        lines, verdict_p2(lin_rate_ok, decreasing), nums, "figures/fig_a_simplex.png",
        "theory.type_outputs, theory.filters, theory.clustering_ratio")
