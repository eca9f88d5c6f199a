"""Contract of theory.symbolic: documented default sizes, the objective's value, and verifications that react to a wrong ingredient.

A verification that only ever sees true inputs would also pass if it were
vacuous, so the block-spectrum check is fed wrong eigenvalues, filters,
projectors and ranks and must return the exact residual each one leaves.
Every comparison is exact (sympy simplifies the difference to 0).
"""

import sympy as sp

from theory import symbolic as S


def _same(u, v):
    return all(sp.simplify(a - b) == 0 for a, b in zip(u, v, strict=True))


def test_fixed_point_default_sizes_and_objective_value():
    """derive_fixed_point() uses K = 3 classes, N = 2 instances, D = 2 features; at W = 0 every prediction is
    uniform, so with targets on the simplex the objective is the cross-entropy log K (the penalty vanishes)."""
    parts = S.derive_fixed_point()
    assert parts["W"].shape == (3, 2)
    assert parts["Phi"].shape == (2, 2)
    assert parts["T"].shape == (3, 2) and parts["N"] == 2
    at_zero = {w: 0 for w in parts["W"]}
    assert sp.simplify(parts["L"].subs(at_zero) - sp.log(3)) == 0
    assert all(sp.simplify(p.subs(at_zero) - sp.Rational(1, 3)) == 0 for p in parts["P"])
    # the targets' columns sum to one (the simplex constraint the claimed gradient relies on)
    assert all(sp.expand(sum(parts["T"][:, i]) - 1) == 0 for i in range(2))


def test_linearisation_default_and_zeroth_order():
    """derive_linearisation() expands softmax over K = 3 logits; at eps = 0 every coordinate is 1/K and the
    first-order coefficient sums to 0 over the coordinates."""
    first, claimed = S.derive_linearisation()
    assert len(first) == len(claimed) == 3
    eps = sp.Symbol("epsilon")
    assert all(sp.simplify(f.subs(eps, 0) - sp.Rational(1, 3)) == 0 for f in first)
    assert sp.simplify(sum(sp.diff(f, eps) for f in first)) == 0


def test_linearisation_simplex_residual_has_one_entry_per_instance():
    """The simplex residual is the row of column sums 1^T (U + (T - U) A) - 1^T: one entry per instance."""
    res = S.verify_linearisation(2, 2)["simplex"]
    assert res.shape == (1, 2) and res.is_zero_matrix


def test_minimal_polynomial_default_variable():
    """Without an argument the minimal polynomial is in x; with a symbol y it is the same polynomial in y."""
    x, y = sp.Symbol("x"), sp.Symbol("y")
    poly_x, det_x, coeffs_x = S.derive_minimal_polynomial()
    poly_y, det_y, coeffs_y = S.derive_minimal_polynomial(y)
    assert poly_x.free_symbols >= {x} and y not in poly_x.free_symbols
    assert poly_y.free_symbols >= {y} and x not in poly_y.free_symbols
    assert sp.expand(poly_x.subs(x, y) - poly_y) == 0
    assert sp.expand(det_x - det_y) == 0 and _same(coeffs_x, coeffs_y)


def _spec_with(**changes):
    return {**S.derive_block_spectrum(), **changes}


def test_block_spectrum_algebra_minimal_polynomial_residual_is_p_of_G():
    """The residual "minimal_polynomial" is p(G) in the coordinates of I, B/n, J/N: for p = x it is G itself,
    for the true polynomial plus 1 it is I."""
    x = sp.Symbol("x")
    spec = S.derive_block_spectrum()
    res = S.verify_block_spectrum_algebra(_spec_with(minimal_polynomial=x))
    assert _same(res["minimal_polynomial"], spec["G"])
    res = S.verify_block_spectrum_algebra(_spec_with(minimal_polynomial=spec["minimal_polynomial"] + 1))
    assert _same(res["minimal_polynomial"], (1, 0, 0))
    # the true spectrum: every residual vanishes (the default argument is derive_block_spectrum())
    assert all(all(sp.simplify(v) == 0 for v in r) for r in S.verify_block_spectrum_algebra(spec).values())


def test_block_spectrum_algebra_completeness_sees_every_coordinate():
    """With the within-class projector I - B/n replaced by I, the projectors sum to I + B/n, so the residual
    "complete" is B/n = (0, 1, 0); with the constant projector J/N dropped it is -J/N = (0, 0, -1)."""
    spec = S.derive_block_spectrum()
    P_w, P_c, P_0 = spec["projectors"]
    assert _same(P_w, (1, -1, 0)) and _same(P_c, (0, 1, -1)) and _same(P_0, (0, 0, 1))
    res = S.verify_block_spectrum_algebra(_spec_with(projectors=((1, 0, 0), P_c, P_0)))
    assert _same(res["complete"], (0, 1, 0))
    res = S.verify_block_spectrum_algebra(_spec_with(projectors=(P_w, P_c, (0, 0, 0))))
    assert _same(res["complete"], (0, 0, -1))


def test_block_spectrum_algebra_eigen_operator_and_rank_residuals():
    """A wrong eigenvalue, filter or rank shows as the exact difference it makes."""
    spec = S.derive_block_spectrum()
    mu_w, mu_c, mu_0 = spec["mu"]
    P_w = spec["projectors"][0]
    # eigenvalue mu_w + 1: G P_w - (mu_w + 1) P_w = -P_w
    res = S.verify_block_spectrum_algebra(_spec_with(mu=(mu_w + 1, mu_c, mu_0)))
    assert _same(res["eigen_0"], tuple(-v for v in P_w))
    assert _same(res["paper_eigenvalues"], (1, 0, 0))
    # the constant filter replaced by 0: (G + K N lambda I) A_spec - G = -mu_0 J/N
    f_w, f_c, _ = spec["filters"]
    res = S.verify_block_spectrum_algebra(_spec_with(filters=(f_w, f_c, 0)))
    assert _same(res["operator"], (0, 0, -mu_0))
    # a derived rank off by one
    r_w, r_c, r_0 = spec["ranks"]
    res = S.verify_block_spectrum_algebra(_spec_with(ranks=(r_w, r_c + 1, r_0)))
    assert _same(res["ranks_derived"], (0, 1, 0))


def test_type_scores_are_returned_collected_by_the_three_powers():
    """derive_type_scores returns the expression in its collected form (the one lambdified):
    alpha^s (t - tbar_k) + beta^s (tbar_k - tbar) + g^s (tbar - 1/K) + 1/K, read off term by term without expanding."""
    (alpha, beta, g, s, t_own, tbar_class, tbar_all, K), expr = S.derive_type_scores()
    want = {alpha: t_own - tbar_class, beta: tbar_class - tbar_all, g: tbar_all - 1 / K}
    for f, coefficient in want.items():
        assert sp.expand(expr.coeff(f**s) - coefficient) == 0, f
    rest = expr - sum(f**s * expr.coeff(f**s) for f in want)
    assert sp.expand(rest - 1 / K) == 0


def test_filters_are_the_eigenvalues_of_the_solved_operator():
    """The operator A solved from (G + K N lambda I) A = G acts on each eigenprojector as its filter:
    every coordinate of A P_m - f_m P_m vanishes (and there is one triple per eigenspace)."""
    res = S.derive_block_spectrum()["filter_residuals"]
    assert len(res) == 3 and all(len(r) == 3 for r in res)
    assert all(v == 0 for r in res for v in r)


def test_symbolic_report_keys():
    """The named checks of the symbolic reports (their keys are the public names of the checks)."""
    from theory import symbolic, symbolic_gap

    assert set(symbolic.derive_fixed_point()) == {"L", "grad", "claimed", "W", "Phi", "T", "P", "N"}
    assert set(symbolic_gap.verify_pair_recursion()) == {"pair_logit", "mean", "recursion", "step_time"}
    explicit = set(symbolic.verify_block_spectrum_explicit(2, 1))
    assert {f"algebra_{a}{b}" for a in "BJ" for b in "BJ"} <= explicit
    assert {f"algebra_unnormalised_{a}{b}" for a in "BJ" for b in "BJ"} <= explicit
    groups = {key.split(".")[0] for key in symbolic.verify_all()}
    assert groups == {"explicit_K2_n1", "explicit_K2_n3", "explicit_K3_n2", "fixed_point", "fresh_logits",
                      "linearisation", "spectrum", "threshold", "type_scores"}
