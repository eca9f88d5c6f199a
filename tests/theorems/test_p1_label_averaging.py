"""P1 Label averaging: the fixed point, the linearised operator, the block spectrum and the closed form.

Symbolic steps are checked in sympy (residuals simplify to exactly zero);
numeric ones against explicit N x N matrices.
"""

import numpy as np
import pytest
import sympy as sp
from hypothesis import example, given
from hypothesis import strategies as st

import theory
from theory import symbolic as S

from .strategies import block_params, brute_outputs, explicit_block_gram, explicit_operator, label_counts, labels_from_counts

# Float64 round-off of explicit N x N products with N <= 30 and entries O(1):
# a few ulps per operation times ~N^2 operations, ~1e-13; a matrix power up to
# the 31st adds at most a factor of 31. 1e-10 leaves room without hiding an
# error in the formula (which would show at the size of the filters, >= 1e-4).
ROUND_OFF = 1e-10


def _all_zero(x):
    if isinstance(x, sp.MatrixBase):
        return x.is_zero_matrix
    if isinstance(x, (list, tuple)):
        return all(_all_zero(v) for v in x)
    return sp.simplify(x) == 0


@pytest.mark.parametrize("K,N,D", [(2, 2, 2), (3, 2, 2), (3, 3, 1)])
def test_fixed_point_from_gradient_symbolic(K, N, D):
    """(a) grad = (P - T) Phi^T / N + lambda W, so W* = (T - P) Phi^T/(N lambda) and P = softmax((T-P) G/(N lambda))."""
    res = S.verify_fixed_point(K, N, D)
    assert set(res) == {"gradient"}
    assert _all_zero(res["gradient"])


@pytest.mark.parametrize("K", [2, 3, 4])
def test_linearisation_and_operator_symbolic(K):
    """(b) softmax(eps z) = U + eps (z - mean z)/K + O(eps^2); P = U + (T-U) A solves the linearised fixed point;
    its columns stay on the simplex (so they are valid targets of the next round)."""
    res = S.verify_linearisation(K, 2)
    assert set(res) == {"softmax_first_order", "operator", "simplex"}
    assert _all_zero(res["softmax_first_order"])
    assert _all_zero(res["operator"])
    assert _all_zero(res["simplex"])


def test_block_spectrum_symbolic_K_n_symbols():
    """(c) With K, n, c, d, lambda symbols: eigen-equations, projector algebra, spectral A and its powers."""
    res = S.verify_block_spectrum_algebra()
    expected = {"minimal_polynomial", "complete", "operator", "power", "ranks", "ranks_derived", "paper_eigenvalues"}
    expected |= {f"eigen_{m}" for m in range(3)} | {f"idempotent_{m}" for m in range(3)}
    expected |= {"orthogonal_01", "orthogonal_02", "orthogonal_12"}
    assert set(res) == expected
    for name, triple in res.items():
        assert all(sp.simplify(v) == 0 for v in triple), name


def test_block_spectrum_is_derived_from_the_minimal_polynomial():
    """(c) The eigenvalues are the roots of the minimal polynomial of G on span{I, B, J}; I, G, G^2 are independent
    (nonzero determinant), so the degree is 3; the derived values are the paper's, with multiplicities N - K, K - 1, 1."""
    K, n, c, d, lam = S.K, S.n, S.c, S.d, S.lam
    x = sp.Symbol("x")
    poly, det, coeffs = S.derive_minimal_polynomial(x)
    assert sp.expand(det - d * n * (c - d) * (c - d + K * d)) == 0
    assert sp.degree(poly, x) == 3
    spec = S.derive_block_spectrum()
    paper = (1 - c, 1 - c + n * (c - d), 1 - c + n * (c - d) + K * n * d)
    for mu, b in zip(spec["mu"], paper):
        assert sp.expand(mu - b) == 0
        assert sp.expand(poly.subs(x, mu)) == 0
    # G^3 = a0 I + a1 G + a2 G^2 in the algebra
    G = S.GRAM_COORDS
    G2 = S.alg_mul(G, G)
    G3 = S.alg_mul(G2, G)
    lhs = tuple(coeffs[0] * i + coeffs[1] * g1 + coeffs[2] * g2 for i, g1, g2 in zip(S.ALG_I, G, G2))
    assert all(sp.expand(a - b) == 0 for a, b in zip(lhs, G3))
    assert [sp.expand(r) for r in spec["ranks"]] == [sp.expand(K * n - K), K - 1, 1]
    for f, mu in zip(spec["filters"], spec["mu"]):
        assert sp.simplify(f - mu / (mu + K * K * n * lam)) == 0
    # the operator solved in the algebra: (G + K N lambda I) A = G
    prod = S.alg_mul((G[0] + K * K * n * lam, G[1], G[2]), spec["operator"])
    assert all(sp.simplify(a - b) == 0 for a, b in zip(prod, G))


def test_type_scores_derived_from_spectral_decomposition():
    """(d) Applying A^s = sum f^s P_m to the class-mean labels gives the paper's per-type form; margins have no rest;
    outputs stay on the simplex."""
    res = S.verify_type_scores()
    assert set(res) == {"paper_form", "collected", "margin_rest", "simplex"}
    assert all(sp.simplify(v) == 0 for v in res.values()), res


def test_balanced_threshold_residuals():
    """(e) The threshold is solved for, not typed: the g-term drops out for balanced labels, the margin over alpha^s is
    Delta rho - (1 + Delta), and the margin vanishes at s = log((1 + Delta)/Delta) / log(beta/alpha)."""
    (alpha, beta, Delta), margin, threshold, res = S.derive_balanced_threshold()
    assert set(res) == {"g_term", "reduced", "slope", "at_threshold"}
    assert all(sp.simplify(v) == 0 for v in res.values()), res
    assert sp.simplify(threshold - sp.log((1 + Delta) / Delta) / sp.log(beta / alpha)) == 0
    # the margin evaluated numerically just below and above the threshold changes sign (an independent reading)
    vals = {alpha: sp.Rational(1, 4), beta: sp.Rational(3, 5), Delta: sp.Rational(1, 3)}
    s_star = float(threshold.subs(vals))
    m = sp.lambdify(S.s, margin.subs(vals))
    assert m(s_star - 1e-6) < 0 < m(s_star + 1e-6)


def test_fresh_logits_residuals():
    """Fresh samples: the derived logits (spectral decomposition applied to a fresh sample's correlations) equal the
    paper's class-sum form, carry no within-class (alpha) part, and rank classes independently of s when balanced."""
    res = S.verify_fresh_logits()
    assert set(res) == {"paper_form", "collected", "balanced"}
    assert all(sp.simplify(v) == 0 for v in res.values()), res
    syms, expr = S.derive_fresh_logits()
    assert not expr.has(sp.Symbol("alpha", positive=True))


def test_verify_all_lists_only_vanishing_residuals():
    """The evidence list: every residual of every step simplifies to 0 (and none of the by-construction identities)."""
    res = S.verify_all()
    assert len(res) >= 90
    assert not any(name.endswith((".rounds", ".stationary_logits", ".claimed_at_W_star")) for name in res)
    assert all(res.values()), [name for name, ok in res.items() if not ok]


@pytest.mark.parametrize("K", [2, 3, 4, 5])
@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_block_spectrum_explicit_small(K, n):
    """(c) Explicit sympy matrices, c and d symbolic, every K <= 5 and n <= 4."""
    res = S.verify_block_spectrum_explicit(K, n)
    assert len(res) == 24 and {"orthogonal_01", "orthogonal_02", "orthogonal_12", "ranks", "gram_unnormalised", "complete"} <= set(res)
    bad = [name for name, M in res.items() if not M.is_zero_matrix]
    assert not bad


@given(block_params(max_K=8, max_n=12, min_n=5))
@example((4, 500 // 50, 0.4, 0.1, 1e-5))
def test_block_spectrum_numeric_beyond(params):
    """(c) numerically beyond the symbolic range: eigh of the explicit Gram matrix has the three eigenvalues with multiplicities."""
    K, n, c, d, lam = params
    G = theory.block_gram(K, n, c, d)
    # block_gram against its definition
    assert np.array_equal(G, explicit_block_gram(K, n, c, d))
    ev = np.sort(np.linalg.eigvalsh(G))
    mu_w, mu_c, mu_0 = theory.block_eigenvalues(K, n, c, d)
    expected = np.sort(np.r_[np.full(K * n - K, mu_w), np.full(K - 1, mu_c), mu_0])
    # eigvalsh is backward stable: error <= ~N eps ||G||, ||G|| <= N here.
    assert np.max(np.abs(ev - expected)) <= 1e-12 * (K * n) ** 2
    Pw, Pc, P0 = theory.block_projectors(K, n)
    for P, mu in ((Pw, mu_w), (Pc, mu_c), (P0, mu_0)):
        assert np.max(np.abs(G @ P - mu * P)) <= ROUND_OFF
        assert np.max(np.abs(P @ P - P)) <= ROUND_OFF
    assert np.max(np.abs(Pw + Pc + P0 - np.eye(K * n))) <= ROUND_OFF


@given(block_params(max_K=5, max_n=6), st.integers(0, 11))
def test_spectral_form_equals_matrix_power(params, t):
    """A^s = alpha^s (I-B) + beta^s (B-J) + g^s J equals the explicit matrix power of G (G + K N lambda I)^-1.

    theory.label_averaging_operator is checked against its defining equation (G + K N lambda I) A = G (not against
    another way of inverting the same matrix)."""
    K, n, c, d, lam = params
    G = explicit_block_gram(K, n, c, d)
    N = K * n
    A_theory = theory.label_averaging_operator(G, K, lam)
    # residual of a backward-stable solve: ~N eps ||G + K N lam I|| ||A||
    assert np.max(np.abs((G + K * N * lam * np.eye(N)) @ A_theory - G)) <= 1e-12 * N * (1 + K * N * lam)
    A = explicit_operator(G, K, lam)
    assert np.max(np.abs(theory.spectral_operator(K, n, c, d, lam, t) - np.linalg.matrix_power(A, t + 1))) <= ROUND_OFF


@given(block_params(max_K=5, max_n=6), st.data(), st.integers(0, 30))
@example((3, 4, 0.5, 0.2, 0.01), None, 0)
def test_closed_form_outputs_equal_explicit_rounds(params, data, t):
    """(d) U + alpha^s (y_i - ybar_k) + beta^s (ybar_k - ybar) + g^s (ybar - U) = U + (Y - U) A^(t+1) for every instance."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n)) if data is not None else np.array([[2, 1, 1], [0, 4, 0], [1, 1, 2]])
    z = labels_from_counts(counts)
    P_brute = brute_outputs(K, n, c, d, lam, z, t)
    P_theory = theory.instance_outputs(K, n, c, d, lam, z, t)
    assert P_theory.shape == (K, K * n)
    assert np.max(np.abs(P_theory - P_brute)) <= ROUND_OFF


@given(block_params(max_K=5, max_n=6), st.data(), st.integers(0, 20))
def test_multi_round_recursion(params, data, t):
    """Round t's outputs, used as targets of one more fit, give round t+1's outputs (P_{t+1} - U = (P_t - U) A)."""
    K, n, c, d, lam = params
    counts = data.draw(label_counts(K, n))
    C = counts / n
    here = theory.type_outputs(K, n, c, d, lam, C, t)
    nxt = theory.type_outputs(K, n, c, d, lam, C, t + 1)
    via_targets = theory.outputs_for_targets(K, n, c, d, lam, C, here, 0)
    assert np.max(np.abs(via_targets - nxt)) <= ROUND_OFF


@given(block_params(max_K=6, max_n=6))
def test_filters_order(params):
    """alpha < beta (c > d); beta <= g iff d >= 0; all in [0, 1)."""
    K, n, c, d, lam = params
    a, b, g = theory.filters(K, n, c, d, lam)
    assert 0 < a < b < 1
    assert 0 <= g < 1
    assert (b <= g) == (d >= 0) or abs(b - g) <= 1e-15


@pytest.mark.parametrize("K,n,c,d,lam", [(2, 2, "2/5", "1/10", "1/100"), (3, 2, "1/2", "-1/10", "1/30"), (2, 3, "3/4", "0", "1")])
def test_filters_exact_against_exact_matrix_eigenvalues(K, n, c, d, lam):
    """filters_exact equals the eigenvalues of the explicit rational matrix G (G + K N lambda I)^-1 (sympy, exact):
    an independent computation, not a second lambdification of the same expression."""
    cq, dq, lq = sp.Rational(c), sp.Rational(d), sp.Rational(lam)
    N = K * n
    G = S.block_gram_matrix(K, n, cq, dq)
    A = G * (G + K * N * lq * sp.eye(N)).inv()
    eig = A.eigenvals()
    f = theory.filters_exact(K, n, float(cq), float(dq), float(lq))
    derived = {}
    for v, m in zip(f, (N - K, K - 1, 1)):  # with d = 0, beta == g and their multiplicities add
        key = sp.Rational(v.numerator, v.denominator)
        derived[key] = derived.get(key, 0) + m
    assert derived == eig
    # and the float filters agree with those exact eigenvalues to round-off (a few ulps)
    assert np.allclose(theory.filters(K, n, float(cq), float(dq), float(lq)), [float(v) for v in f], rtol=4e-16, atol=0)


def test_filters_paper_setting():
    K, n, c, d, lam = 4, 500, 0.4, 0.1, 1e-5
    exact = theory.filters_exact(K, n, c, d, lam)
    # 0.4 and 1e-5 are read as 2/5 and 1/100000: alpha = 0.6 / (0.6 + 4 * 2000 * 1e-5) = 15/17 exactly
    assert exact[0] == sp.Rational(15, 17)
    assert exact[1] == (sp.Rational(3, 5) + 150) / (sp.Rational(3, 5) + 150 + sp.Rational(8, 100))


@given(st.integers(2, 8), st.integers(1, 5), st.integers(0, 10_000), st.floats(-4, 0))
def test_spectral_form_for_any_gram_matrix(N, K, seed, log_lam):
    """(b) For any PSD Gram matrix, A = G (G + K N lambda I)^-1 = sum_m mu_m/(mu_m + K N lambda) v_m v_m^T."""
    K = max(K, 2)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, int(rng.integers(1, N + 2))))
    G = X @ X.T
    lam = 10**log_lam
    mu, V = np.linalg.eigh(G)
    mu = np.clip(mu, 0, None)  # eigh may return -1e-16 for a singular G
    spectral = (V * (mu / (mu + K * N * lam))) @ V.T
    # eigh and the solve are backward stable: errors ~N eps (||G|| / (K N lambda) + 1)
    tol = 1e-12 * N * (np.abs(G).max() / (K * N * lam) + 1)
    assert np.max(np.abs(theory.label_averaging_operator(G, K, lam) - spectral)) <= tol
