"""Contract of theory.symbolic_exact: the type reduction of the exact softmax problem.

Its residuals vanish for block Gram matrices (any type layout), they do not
for a Gram without block structure, and the lambdified type system is solved
by theory.exact_level.solve_reduced's float solution.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from theory import symbolic_exact
from theory.exact_level import solve_reduced
from theory.symbolic_exact import derive_type_system, verify_type_reduction

from .strategies import all_zero


def _one_hot_types(K):
    T = np.zeros((K, K, K))
    T[:, np.arange(K), np.arange(K)] = 1.0
    return T


@pytest.mark.parametrize("layout", [None, {(0, 0): 3, (0, 1): 2, (1, 0): 1, (1, 1): 1}])
def test_type_reduction_residuals_vanish(layout):
    res = verify_type_reduction(layout)
    assert set(res) == {"logits", "invariant_subspace", "mixing_is_aggregated_gram", "permutation", "hessian_variance", "reduced_logits"}
    for name, value in res.items():
        assert all_zero(value), name


def test_type_reduction_residual_shapes():
    res = verify_type_reduction()
    N, m, K = 9, 5, 3  # the default generic instance
    assert res["logits"].shape == (K, N) and res["reduced_logits"].shape == (K, N)
    assert res["invariant_subspace"].shape == (N, m)
    assert res["mixing_is_aggregated_gram"].shape == (m, m)
    assert res["permutation"].shape == (N, N)


def test_type_reduction_detects_a_gram_without_block_structure():
    """A Gram with one perturbed diagonal entry is neither class-symmetric nor reduced by the type mixing
    matrix: every Gram-dependent residual must be nonzero (the checks are not vacuous)."""
    e = sp.Symbol("e")

    def perturbed(classes):
        G = symbolic_exact._block_gram_sym(classes)
        G[0, 0] += e
        return G

    res = verify_type_reduction(gram=perturbed)
    for name in ("logits", "invariant_subspace", "mixing_is_aggregated_gram", "permutation", "reduced_logits"):
        assert any(sp.simplify(v) != 0 for v in res[name]), name
    assert sp.simplify(res["hessian_variance"]) == 0  # independent of the Gram


def test_symbolic_type_system_vanishes_at_the_float_solution():
    """The sympy system over types, lambdified, is solved by solve_reduced's solution (to its tolerance)."""
    K, n, c, d, lam = 3, 4, 0.5, 0.1, 0.02
    counts = np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]])
    T = _one_hot_types(K)
    sol = solve_reduced(K, n, c, d, lam, counts, T)
    ks, ls = np.nonzero(counts)
    types = list(zip(ks.tolist(), ls.tolist()))
    eqs, r, t = derive_type_system(types, counts[ks, ls].tolist())
    s_sym = sp.Symbol("s", positive=True)
    c_sym, d_sym = sp.symbols("c d", real=True)
    values = {s_sym: 1 / (K * n * lam), c_sym: c, d_sym: d}
    for a in range(len(types)):
        for j in range(K):
            values[r[a, j]] = sol.r[a, j]
            values[t[a, j]] = T[ks[a], ls[a], j]
    worst = max(abs(float(e.subs(values))) for row in eqs for e in row)
    assert worst < 1e-12  # solve_reduced stops at max|F| <= 1e-13; sympy evaluates with ~15 digits


def test_derive_type_system_shapes_and_default_counts():
    types = [(0, 0), (0, 1), (1, 1)]
    eqs, r, t = derive_type_system(types)
    assert len(eqs) == 3 and all(len(row) == 2 for row in eqs)
    assert r.shape == (3, 2) and t.shape == (3, 2)
    # softmax rows sum to one: sum_j (F_aj - r_aj + t_aj) == 1
    for a in range(3):
        assert sp.simplify(sum(eqs[a]) - sum(r[a, :]) + sum(t[a, :]) - 1) == 0
    names = {str(x) for x in sp.Add(*[e for row in eqs for e in row]).free_symbols}
    assert {"n0", "n1", "n2"} <= names  # default counts are symbols n_0..n_{m-1}


def test_type_system_with_symbolic_counts():
    """Without counts the type system carries count symbols n0, n1, ...; substituting numbers gives the numeric
    system."""
    import sympy as sp

    from theory.symbolic_exact import derive_type_system

    types = [(0, 0), (0, 1), (1, 1)]
    eqs, r, t = derive_type_system(types)
    n = sp.symbols("n0:3", positive=True)
    assert {s.name for e in eqs for x in e for s in x.free_symbols} >= {"n0", "n1", "n2"}
    num, _, _ = derive_type_system(types, [2, 1, 3])
    sub = dict(zip(n, (2, 1, 3)))
    for a in range(len(types)):
        for j in range(2):
            assert sp.simplify(eqs[a][j].subs(sub) - num[a][j]) == 0
