"""Symbolic type reduction of the exact softmax optimum on the block model (sympy).

The derivations behind layer 1 of :mod:`theory.exact_level`: the logits of
an instance in terms of class sums, the G-invariant subspace spanned by the
instance types, and the type-mixing matrix M[tau, sigma] = (1-c) [tau = sigma]
+ ((c-d) [k_tau = k_sigma] + d) n_sigma, solved for from an ansatz on one
explicit instance and checked on another (:func:`verify_type_reduction`).
The numeric entry of M used by the solvers is generated from
:func:`derived_mixing_expr` into :mod:`theory._generated`
(``python -m theory.generate``).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = ["verify_type_reduction", "derive_type_system", "mixing_matrix_sym", "derived_mixing_expr", "MIXING_ARGS"]

# Symbols of the reduction.
_c, _d = sp.symbols("c d", real=True)
_s = sp.symbols("s", positive=True)  # logit scale 1/(N lambda)
_same, _delta, _nsig = sp.symbols("same delta n_sigma", nonnegative=True)
# Generic instance of verify_type_reduction: three classes, five types, nine instances.
_EXAMPLE_LAYOUT = {(0, 0): 2, (0, 1): 1, (1, 1): 2, (1, 0): 1, (2, 2): 3}
# Arguments of the generated numeric entry of M, in order.
MIXING_ARGS = (_c, _d, _same, _delta, _nsig)


def _block_gram_sym(classes):
    """Explicit symbolic block Gram for instances with true classes ``classes`` (list of ints)."""
    N = len(classes)
    return sp.Matrix(N, N, lambda i, j: (1 - _c) * int(i == j) + (_c - _d) * int(classes[i] == classes[j]) + _d)


def _type_indicator(types_of_instances, types):
    return sp.Matrix(len(types_of_instances), len(types), lambda i, a: int(types_of_instances[i] == types[a]))


def _instance(layout):
    """Instances (class-major) from ``layout``: dict type (k, l) -> count. Returns (classes, types per instance, type list)."""
    types = sorted(layout)
    per = [tau for tau in types for _ in range(layout[tau])]
    return [tau[0] for tau in per], per, types


@lru_cache(maxsize=None)
def derived_mixing_expr():
    """M[tau, sigma] as a sympy expression in (c, d, same, delta, n_sigma), derived from an explicit instance.

    Ansatz M = A delta + (B same + D) n_sigma with unknown A, B, D (polynomials
    in c, d), solved from M = (E^T E)^-1 E^T G E on a generic instance with
    two classes and three types of counts 2, 1, 3 (the ansatz is then checked
    on a second instance by :func:`verify_type_reduction`).
    """
    classes, per, types = _instance({(0, 0): 2, (0, 1): 1, (1, 1): 3})
    G = _block_gram_sym(classes)
    E = _type_indicator(per, types)
    M = ((E.T * E).inv() * E.T * G * E).applyfunc(sp.expand)
    A, B, D = sp.symbols("A B D")
    eqs = []
    for a, ta in enumerate(types):
        for b, tb in enumerate(types):
            ansatz = A * int(a == b) + (B * int(ta[0] == tb[0]) + D) * sum(1 for t in per if t == tb)
            eqs.append(sp.expand(M[a, b] - ansatz))
    sol = sp.solve(eqs, [A, B, D], dict=True)
    if len(sol) != 1:
        raise RuntimeError(f"type-mixing ansatz has {len(sol)} solutions, expected exactly 1")
    sol = sol[0]
    return sp.expand(sol[A] * _delta + (sol[B] * _same + sol[D]) * _nsig)


def verify_type_reduction(layout=None, gram=None) -> dict:
    """Residuals (sympy expressions / matrices) that must simplify to 0.

    ``layout`` (dict (k, l) -> count; default three classes, five types,
    nine instances) is the generic instance; every residual entry is zero
    identically in the symbols c, d, s and the residual vectors u_i.
    ``gram`` (callable: list of true classes -> symbolic N x N matrix; default
    the block Gram) exists for testing the checks themselves: a Gram without
    the block structure must leave nonzero residuals.

    * ``logits``: s U G - s[(1-c) u_i + (c-d) S_k(i) + d S], columnwise, with U
      a K x N matrix of independent symbols (the class sums S_k and the total S
      are formed from U, not typed in).
    * ``invariant_subspace``: G E - E M (types span a G-invariant subspace).
    * ``mixing_is_aggregated_gram``: diag(n) M - E^T G E.
    * ``permutation``: Pi G Pi^T - G for the permutation reversing the order
      of the instances within every class (permutations within classes are the
      symmetry that makes the unique optimum type-symmetric).
    * ``hessian_variance``: v^T (diag p - p p^T) v - sum_j p_j (v_j - p.v)^2
      with sum p = 1 (the per-instance Hessian of CE in the logits is PSD).
    * ``reduced_logits``: with u_i = r_type(i), s U G - s R M^T E^T
      (the reduced logits reproduce the full ones).
    """
    if layout is None:
        layout = _EXAMPLE_LAYOUT
    if gram is None:
        gram = _block_gram_sym
    classes, per, types = _instance(layout)
    N = len(classes)
    K = max(max(t) for t in types) + 1
    G = gram(classes)
    E = _type_indicator(per, types)
    U = sp.Matrix(K, N, lambda j, i: sp.Symbol(f"u_{j}_{i}"))
    Z = _s * U * G
    S_tot = sp.Matrix(K, 1, lambda j, _: sum(U[j, i] for i in range(N)))
    claimed = sp.zeros(K, N)
    for i in range(N):
        S_k = sp.Matrix(K, 1, lambda j, _: sum(U[j, q] for q in range(N) if classes[q] == classes[i]))
        claimed[:, i] = _s * ((1 - _c) * U[:, i] + (_c - _d) * S_k + _d * S_tot)
    res = {"logits": (Z - claimed).applyfunc(sp.expand)}
    M = mixing_matrix_sym(types, [layout[t] for t in types])
    res["invariant_subspace"] = (G * E - E * M).applyfunc(sp.expand)
    res["mixing_is_aggregated_gram"] = (sp.diag(*[layout[t] for t in types]) * M - E.T * G * E).applyfunc(sp.expand)
    # reverse the order of the instances within every class (instances are listed class by class)
    perm = [i for k in sorted(set(classes)) for i in reversed([j for j in range(N) if classes[j] == k])]
    Pi = sp.Matrix(N, N, lambda a, b: int(perm[a] == b))
    res["permutation"] = (Pi * G * Pi.T - G).applyfunc(sp.expand)
    p = sp.symbols(f"p0:{K}")
    v = sp.symbols(f"v0:{K}")
    H = sp.diag(*p) - sp.Matrix(p) * sp.Matrix(p).T
    pv = sum(pi * vi for pi, vi in zip(p, v))
    quad = (sp.Matrix(v).T * H * sp.Matrix(v))[0, 0]
    var = sum(pi * (vi - pv) ** 2 for pi, vi in zip(p, v))
    res["hessian_variance"] = sp.expand((quad - var).subs(p[-1], 1 - sum(p[:-1])))
    R = sp.Matrix(K, len(types), lambda j, a: sp.Symbol(f"r_{j}_{a}"))
    U_typed = R * E.T
    res["reduced_logits"] = (_s * U_typed * G - _s * R * M.T * E.T).applyfunc(sp.expand)
    return res


def mixing_matrix_sym(types, counts) -> sp.Matrix:
    """Symbolic m x m type-mixing matrix for types [(k, l), ...] with counts, from the derived expression."""
    expr = derived_mixing_expr()
    m = len(types)
    return sp.Matrix(
        m, m, lambda a, b: expr.subs({_delta: int(a == b), _same: int(types[a][0] == types[b][0]), _nsig: counts[b]})
    )


def derive_type_system(types, counts=None):
    """The reduced stationarity equations as a sympy system over the types.

    ``types``: list of (true class, given label); ``counts``: their counts
    (default: symbols n_0, n_1, ...). Returns (equations, unknowns, targets):
    equations[a][j] = r_a_j - t_a_j + softmax(s (M r)_a)_j, a K-vector per
    type, unknowns r (m x K symbols), targets t (m x K symbols).
    """
    m = len(types)
    K = max(max(t) for t in types) + 1
    if counts is None:
        counts = list(sp.symbols(f"n0:{m}", positive=True))
    M = mixing_matrix_sym(types, counts)
    r = sp.Matrix(m, K, lambda a, j: sp.Symbol(f"r_{a}_{j}"))
    t = sp.Matrix(m, K, lambda a, j: sp.Symbol(f"t_{a}_{j}"))
    Z = _s * M * r
    eqs = []
    for a in range(m):
        e = [sp.exp(Z[a, j]) for j in range(K)]
        tot = sp.Add(*e)
        eqs.append([r[a, j] - t[a, j] + e[j] / tot for j in range(K)])
    return eqs, r, t
