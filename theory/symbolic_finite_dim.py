"""Sympy derivations of the symbolic steps of the finite-D theory (:mod:`theory.finite_dim` and its siblings).

The closed forms derived here are printed by :mod:`theory.generate` into :mod:`theory._generated`
(``haar_kappa``, ``centred_norm``, ``haar_bracket``, ``within_part``, ``type_output_mean``, ``type_output_shift``, ``fresh_logit_mean``,
``fresh_logit_cov``, ``leak_output_cov``, ``leak_fresh_cov``), and the numeric modules call those printed functions, so that the algebra of the
finite-D theory is written once, here. What stays numeric is what no closed form gives: the spectral
averages over the Marchenko-Pastur law and the deformed filters (quadratures with a stated error).

Steps (finite_dim's module doc, steps 3, 4 and 6):

(a) :func:`derive_haar_fourth_moment`: the isotropic, traceless ansatz
    E[F'_ij G'_kl] = x (d_ik d_jl + d_il d_jk) + y d_ij d_kl for two functions F' = O f' O^T,
    G' = O g' O^T (O Haar on R^m, f', g' centred) has x = S / ((m - 1)(m + 2)), y = -2 x / m, with
    S = sum_a f'_a g'_a (solved from the trace condition and the Frobenius norm).
(b) :func:`derive_bilinear_covariance`: contracting (a) with four vectors gives
    E[(a^T F' b)(a2^T G' b2)] = x [(a . a2)(b . b2) + (a . b2)(a2 . b)] + y (a . b)(a2 . b2);
    the three coefficients are solved for by matching polynomial coefficients in explicit dimension 3.
(c) :func:`derive_type_projections`: the vectors an instance's output depends on lie in
    span{e_i, 1_k, 1} (instance, its class's indicator, all ones), where the inner products, the label
    functionals (Y^T v)_r and (U^T v)_r and the projectors onto E (the class indicators), onto the
    constant and onto E^perp act as 3 x 3 matrices. This gives |(e_i)_perp|^2 = 1 - 1/n, the
    within-class part (Y^T (e_i)_perp)_r = delta_lr - C_kr, the output mean
    1/K + phi (delta - C) + f_class (C - Cbar) + f_const (Cbar - 1/K), and (with (b)) the coefficient of
    kappa in the output covariance, (1 - 1/n) Gamma + (1 - 2/m) u u2.
(d) :func:`derive_fresh_moments`: a fresh class-k sample's mean correlations d 1 + (c - d) 1_k lie in E;
    its logit mean follows from the same projectors, and the covariance of its logits given the training
    sample from W = Z Z^T / D on E^perp ((1 - c)^2 h W h = (1 - c) q((1 - c) W), q(y) = y h(y)^2, whose
    Haar average gives E[q] Gamma) and W_EE ~ I on E (projector Gram matrices E_class, E_const).
(e) :func:`derive_label_grams`: Gamma = Y_perp^T Y_perp, E_class = (Y - U)^T P_class (Y - U) and
    E_const = (Y - U)^T P_const (Y - U) for K = 3 classes with symbolic counts, against the closed forms
    the numeric code uses (residuals zero).
(g) :func:`derive_leak_moments`: the spike directions' leak into E^perp (isotropic there), as seen by a
    training instance (its output covariance gains a term per spike block) and by a fresh sample.
(f) :func:`derive_margin_covariance`: margins o_k - o_j have covariance R Sigma R^T (R_j = e_k - e_j).
"""

from __future__ import annotations

import sympy as sp

__all__ = [
    "derive_haar_fourth_moment",
    "derive_bilinear_covariance",
    "derive_type_projections",
    "derive_fresh_moments",
    "derive_label_grams",
    "derive_leak_moments",
    "derive_margin_covariance",
    "generated_functions",
]

# symbols of the printed functions (their names are the printed functions' argument names)
S, m, n, K = sp.symbols("S m n K", positive=True)
kappa, Gamma, u, u2 = sp.symbols("kappa Gamma u u2", real=True)
phi, f_class, f_const = sp.symbols("phi f_class f_const", real=True)
delta, C, Cbar = sp.symbols("delta C Cbar", real=True)
mu, c, d, D = sp.symbols("mu c d D", positive=True)
h_class, h_const, q, sig2 = sp.symbols("h_class h_const q sig2", positive=True)
E_class, E_const = sp.symbols("E_class E_const", real=True)


def _collected(expr, filters, factor: bool):
    """``expr`` as a sum of one term per filter symbol (its coefficient expanded, or factored) plus the rest:
    the printed function then evaluates the terms the way the module doc writes them."""
    e = sp.expand(expr)
    coefs = [e.coeff(f) for f in filters]
    rest = sp.simplify(e - sum(cf * f for cf, f in zip(coefs, filters)))
    if any(sp.simplify(rest.diff(f)) != 0 for f in filters):
        raise RuntimeError(f"{expr} is not linear in {filters}")
    return sp.Add(rest, *((sp.factor(cf) if factor else cf) * f for cf, f in zip(coefs, filters)))


def derive_haar_fourth_moment() -> dict:
    """(a): x and y of the isotropic, traceless fourth-moment ansatz, solved from
    sum_i E[F'_ii G'_kl] = 0 (tr F' = 0) and sum_ij E[F'_ij G'_ij] = S (E tr F' G' = sum_a f'_a g'_a)."""
    x, y = sp.symbols("x y")
    # sum_i over (d_ii d_kl + d_ik d_il) x + y m d_kl: the coefficient of d_kl
    eq_trace = sp.Eq(2 * x + y * m, 0)
    # sum_ij of x (d_ii d_jj + d_ij d_ji) + y d_ij d_ij = x (m^2 + m) + y m
    eq_norm = sp.Eq(x * (m**2 + m) + y * m, S)
    sol = sp.solve([eq_trace, eq_norm], [x, y], dict=True)
    if len(sol) != 1:
        raise RuntimeError(f"the Haar ansatz has {len(sol)} solutions, expected 1")
    return {"x": sp.factor(sol[0][x]), "y": sp.factor(sol[0][y])}


def derive_bilinear_covariance(dim: int = 3) -> dict:
    """(b): E[(a^T F' b)(a2^T G' b2)] under the ansatz of (a), as a combination of inner products.

    Returns ``expr`` in the symbols aa2, bb2, ab2, a2b, ab, a2b2 (the inner products) and x, y, and
    ``residual``, the explicit contraction minus ``expr`` with the inner products written out (zero)."""
    x, y = sp.symbols("x y")
    vec = {name: sp.symbols(f"{name}_0:{dim}") for name in ("a", "b", "a2", "b2")}
    a, b, a2, b2 = vec["a"], vec["b"], vec["a2"], vec["b2"]

    def kd(i, j):
        return 1 if i == j else 0

    contraction = sp.expand(sum(
        a[i] * b[j] * a2[k] * b2[l] * (x * (kd(i, k) * kd(j, l) + kd(i, l) * kd(j, k)) + y * kd(i, j) * kd(k, l))
        for i in range(dim) for j in range(dim) for k in range(dim) for l in range(dim)
    ))

    def dot(p, r):
        return sum(pi * ri for pi, ri in zip(p, r))

    monomials = [dot(a, a2) * dot(b, b2), dot(a, b2) * dot(a2, b), dot(a, b) * dot(a2, b2)]
    p = sp.symbols("p0:3")
    poly = sp.Poly(sp.expand(contraction - sum(pi * mi for pi, mi in zip(p, monomials))), *(a + b + a2 + b2))
    sol = sp.solve(poly.coeffs(), p, dict=True)
    if len(sol) != 1:
        raise RuntimeError(f"the bilinear covariance has {len(sol)} coefficient solutions, expected 1")
    coef = [sp.simplify(sol[0][pi]) for pi in p]
    aa2, bb2, ab2, a2b, ab, a2b2 = sp.symbols("aa2 bb2 ab2 a2b ab a2b2")
    expr = coef[0] * aa2 * bb2 + coef[1] * ab2 * a2b + coef[2] * ab * a2b2
    written = expr.subs({aa2: dot(a, a2), bb2: dot(b, b2), ab2: dot(a, b2), a2b: dot(a2, b), ab: dot(a, b),
                         a2b2: dot(a2, b2)})
    return {"expr": expr, "residual": sp.expand(contraction - written), "x": x, "y": y,
            "dots": (aa2, bb2, ab2, a2b, ab, a2b2)}


# span{e_i, 1_k, 1} of one instance i of class k (n instances per class, K classes): a vector is its
# coefficient column (e_i, 1_k, 1)
_GRAM = sp.Matrix([[1, 1, 1], [1, n, n], [1, n, K * n]])


def _span_operators():
    """Inner products, projectors and label functionals on span{e_i, 1_k, 1} (step (c)).

    P_E (onto the class indicators) maps e_i -> 1_k / n, 1_k -> 1_k, 1 -> 1; P_const v = (1 . v) / N 1;
    (Y^T v)_r for column r of the one-hot labels: e_i -> delta (= 1[l = r]), 1_k -> n C (C = C_kr), 1 -> N Cbar;
    (U^T v)_r = (1 . v) / K (U = 1/K everywhere)."""
    N = K * n
    P_E = sp.Matrix([[0, 0, 0], [1 / n, 1, 0], [0, 0, 1]])
    ones_row = sp.Matrix([[1, n, N]])  # 1 . v for the three basis vectors
    P_const = sp.Matrix([[0, 0, 0], [0, 0, 0], ones_row / N])
    P_perp = sp.eye(3) - P_E
    P_class = P_E - P_const
    Y_r = sp.Matrix([[delta, n * C, N * Cbar]])
    U_r = ones_row / K
    return {"P_E": P_E, "P_const": P_const, "P_perp": P_perp, "P_class": P_class, "Y_r": Y_r, "U_r": U_r}


def derive_type_projections() -> dict:
    """(c): the per-type projections and the output moments of an instance of class k given label l.

    Returns ``bb`` = |(e_i)_perp|^2, ``within`` = (Y^T (e_i)_perp)_r (u_r below), ``u_ortho`` =
    (U^T (e_i)_perp)_r (zero: the centred instance has no constant part), ``mean`` = E[o_i]_r with the
    filters phi (E^perp), f_class, f_const (E), ``bracket`` = the coefficient of kappa in Cov(o_r, o_r2),
    and ``projector_residuals`` (idempotence, symmetry in the Gram metric, orthogonality; all zero)."""
    ops = _span_operators()
    e_i = sp.Matrix([1, 0, 0])
    b = ops["P_perp"] * e_i
    bb = sp.simplify((b.T * _GRAM * b)[0])
    within = sp.simplify((ops["Y_r"] * b)[0])
    u_ortho = sp.simplify((ops["U_r"] * b)[0])
    YU = ops["Y_r"] - ops["U_r"]
    mean = _collected(
        1 / K + phi * (YU * ops["P_perp"] * e_i)[0] + f_class * (YU * ops["P_class"] * e_i)[0]
        + f_const * (YU * ops["P_const"] * e_i)[0], (phi, f_class, f_const), factor=False,
    )
    hm = derive_haar_fourth_moment()
    bil = derive_bilinear_covariance()
    aa2, bb2, ab2, a2b, ab, a2b2 = bil["dots"]
    # a = (Y_r)_perp, a2 = (Y_r2)_perp, b = b2 = (e_i)_perp: a . a2 = Gamma_rr2, a . b = u_r = the within part
    cov = bil["expr"].subs({aa2: Gamma, bb2: bb, ab2: u, a2b: u2, ab: u, a2b2: u2})
    cov = cov.subs({bil["x"]: kappa, bil["y"]: hm["y"].subs(S, kappa * (m - 1) * (m + 2))})
    bracket = sp.collect(sp.expand(sp.simplify(cov / kappa)), [Gamma, u * u2])
    resid = []
    for name in ("P_E", "P_const", "P_perp", "P_class"):
        P = ops[name]
        resid += [sp.simplify(P * P - P), sp.simplify(_GRAM * P - (_GRAM * P).T)]
    resid.append(sp.simplify(ops["P_perp"] * ops["P_E"]))
    resid.append(sp.simplify(ops["P_class"] * ops["P_const"]))
    return {"bb": bb, "within": within, "u_ortho": u_ortho, "mean": mean, "bracket": bracket,
            "projector_residuals": resid}


def derive_fresh_moments() -> dict:
    """(d): N lambda times the logit of a fresh class-k sample for class r (``mean``; h_class, h_const the
    deformed fresh weights on E, E^perp carries no mean) and the covariance of two logits given the
    training sample (``cov``; q the spectral average of q_s over (1 - c) MP, Gamma, E_class, E_const the
    Gram entries of step (e)). ``perp_part`` is the E^perp part of the mean (zero) and ``q_identity`` the
    residual of (1 - c)^2 (y / (1 - c)) h(y)^2 = (1 - c) q(y) (zero)."""
    ops = _span_operators()
    m_x = sp.Matrix([0, c - d, d])  # d 1 + (c - d) 1_k
    YU = ops["Y_r"] - ops["U_r"]
    perp_part = sp.simplify((ops["P_perp"] * m_x).T * _GRAM * (ops["P_perp"] * m_x))[0]
    mean = _collected(
        mu * (h_class * (YU * ops["P_class"] * m_x)[0] + h_const * (YU * ops["P_const"] * m_x)[0]),
        (h_class, h_const), factor=True,
    )
    y, s = sp.symbols("y s", positive=True)
    h = y ** (s - 1) / (y + mu) ** s
    q_identity = sp.simplify(sig2**2 * (y / sig2) * h**2 - sig2 * (y * h**2))
    # Cov = mu^2 / D^2 (Y-U)^T h Z E[z z^T] Z^T h (Y-U) (1 - c)^2 with E[z z^T] = I_D:
    # = mu^2 (1 - c)^2 / D (Y-U)^T h W h (Y-U); E^perp: (1 - c) tr(q) / m Gamma; E: W_EE ~ I
    cov = mu**2 / D * (sig2 * q * Gamma + sig2**2 * (h_class**2 * E_class + h_const**2 * E_const))
    return {"mean": mean, "cov": cov, "perp_part": perp_part, "q_identity": q_identity}


def derive_leak_moments() -> dict:
    """(g): the covariance added by the leak of the spike directions into E^perp (the E <-> E^perp cross blocks of
    f(G), finite_dim step 2b). For a block of spike directions with projector P (P_class or P_const) whose
    leaks x_a = P_perp f(G) e_a are, by the invariance of G under rotations of E^perp, isotropic in E^perp with
    E[x_a x_b^T] = delta_ab (V / m) P_perp (V = E|x_a|^2 = Var of f under e_a's spectral measure), instance i's
    output gains alpha_a (x_a . b) + beta_a Y_perp^T x_a with alpha_a = (Y - U)^T e_a, beta_a = e_a . 1_k / n,
    b = (e_i)_perp, so that its covariance gains
    (V / m) [|b|^2 (Y - U)^T P (Y - U) + (1_k/n . P 1_k/n) Gamma + ((Y - U)^T P 1_k/n) u^T + u (...)^T].
    A fresh class-k sample's logits gain mu (Y - U)^T P_perp h(G) P_E m_x, covariance
    mu^2 (V_h / m) |P m_x|^2 Gamma per block. Returns ``output`` (entry r, r2; E_class, E_const the label Grams of
    (e)) and ``fresh`` (per Gamma entry), and the derived coefficients."""
    ops = _span_operators()
    one_k = sp.Matrix([0, 1 / n, 0])  # 1_k / n
    m_x = sp.Matrix([0, c - d, d])
    YU = ops["Y_r"] - ops["U_r"]

    def quad(P, v):
        return sp.simplify((v.T * _GRAM * P * v)[0])  # v . P v (P orthogonal in the Gram metric)

    bb = derive_type_projections()["bb"]
    V_class, V_const, Vh_class, Vh_const = sp.symbols("V_class V_const Vh_class Vh_const", nonnegative=True)
    C2, Cbar2 = sp.symbols("C2 Cbar2", real=True)
    out = 0
    fresh = 0
    coef = {}
    for name, P, V, Vh, E_P in (("class", ops["P_class"], V_class, Vh_class, E_class),
                                ("const", ops["P_const"], V_const, Vh_const, E_const)):
        beta2 = quad(P, one_k)
        ab = sp.simplify((YU * P * one_k)[0])  # entry r of (Y - U)^T P 1_k / n
        ab2 = ab.subs({C: C2, Cbar: Cbar2}, simultaneous=True)
        out += V / m * (bb * E_P + beta2 * Gamma + ab * u2 + u * ab2)
        px = quad(P, m_x)
        fresh += mu**2 * Vh / m * px * Gamma
        coef[name] = {"beta2": beta2, "alpha_beta": ab, "m_x_norm2": px}
    return {"output": out, "fresh": sp.factor_terms(fresh), "coefficients": coef,
            "symbols": (V_class, V_const, Vh_class, Vh_const, C2, Cbar2)}


def derive_label_grams(classes: int = 3) -> dict:
    """(e): the label Gram matrices for ``classes`` classes with symbolic counts n_kl (rows sum to n),
    built instance by instance, and their residuals against the closed forms
    Gamma = n sum_k (diag C_k - C_k C_k^T), E_class = n sum_k (C_k - Cbar)(C_k - Cbar)^T,
    E_const = N (Cbar - U)(Cbar - U)^T (zero matrices)."""
    Kc = classes
    cnt = sp.Matrix(Kc, Kc, lambda k, l: sp.Symbol(f"n{k}{l}", nonnegative=True))
    N = Kc * n
    share = [sp.Matrix(1, Kc, lambda _, l: cnt[k, l] / n) for k in range(Kc)]
    mean_share = sum(share, sp.zeros(1, Kc)) / Kc
    gamma = sp.zeros(Kc, Kc)
    for k in range(Kc):
        # within class k: (label indicator - class mean) products summed over its instances (n_kl of label l)
        for r in range(Kc):
            for r2 in range(Kc):
                gamma[r, r2] += sum(cnt[k, l] * ((1 if l == r else 0) - share[k][r]) * ((1 if l == r2 else 0) - share[k][r2])
                                    for l in range(Kc))
    # (Y - U)^T P (Y - U) from class sums: 1_k . (Y_r - U_r) = n (C_kr - 1/K); P_class and P_const from
    # P_E = sum_k 1_k 1_k^T / n and P_const = 1 1^T / N
    col = [sp.Matrix(1, Kc, lambda _, r: n * (share[k][r] - sp.Rational(1, Kc))) for k in range(Kc)]
    tot = sum(col, sp.zeros(1, Kc))
    e_E = sum((col[k].T * col[k] / n for k in range(Kc)), sp.zeros(Kc, Kc))
    e_const = tot.T * tot / N
    e_class = e_E - e_const
    g_closed = n * sum((sp.diag(*share[k]) - share[k].T * share[k] for k in range(Kc)), sp.zeros(Kc, Kc))
    c_closed = n * sum(((share[k] - mean_share).T * (share[k] - mean_share) for k in range(Kc)), sp.zeros(Kc, Kc))
    k_closed = N * (mean_share - sp.ones(1, Kc) / Kc).T * (mean_share - sp.ones(1, Kc) / Kc)
    subs = {cnt[k, Kc - 1]: n - sum(cnt[k, l] for l in range(Kc - 1)) for k in range(Kc)}

    def resid(a, b_):
        return sp.simplify((a - b_).subs(subs))

    return {"gamma": gamma, "gamma_residual": resid(gamma, g_closed), "E_class_residual": resid(e_class, c_closed),
            "E_const_residual": resid(e_const, k_closed), "counts": cnt}


def derive_margin_covariance(classes: int = 3) -> dict:
    """The covariance of a class-0 instance's margins o_0 - o_j (j = 0..classes-1; row and column 0 zero) from a
    symbolic output covariance ``Sigma``: R Sigma R^T with rows R_j = e_0 - e_j."""
    Kc = classes
    Sig = sp.Matrix(Kc, Kc, lambda i, j: sp.Symbol(f"s{min(i, j)}{max(i, j)}"))
    R = sp.Matrix(Kc, Kc, lambda j, r: (1 if r == 0 else 0) - (1 if r == j else 0))
    return {"Sigma": Sig, "margin_cov": sp.expand(R * Sig * R.T)}


def generated_functions() -> list[tuple[str, tuple, sp.Expr]]:
    """(name, arguments, expression) of every function printed into theory._generated from this module."""
    hm = derive_haar_fourth_moment()
    tp = derive_type_projections()
    fr = derive_fresh_moments()
    lk = derive_leak_moments()
    return [
        ("haar_kappa", (S, m), hm["x"]),
        ("centred_norm", (n,), tp["bb"]),
        ("haar_bracket", (n, m, Gamma, u, u2), tp["bracket"]),
        ("within_part", (delta, C), tp["within"]),
        ("type_output_mean", (K, phi, f_class, f_const, delta, C, Cbar), tp["mean"]),
        # the mean minus U = 1/K: margins taken as differences of shifts keep their relative precision when the
        # filters have decayed below the rounding of 1/K (many rounds at a large lambda)
        ("type_output_shift", (K, phi, f_class, f_const, delta, C, Cbar),
         _collected(tp["mean"] - 1 / K, (phi, f_class, f_const), factor=False)),
        ("fresh_logit_mean", (mu, n, c, d, K, h_class, h_const, C, Cbar), fr["mean"]),
        ("fresh_logit_cov", (mu, D, sig2, q, Gamma, h_class, h_const, E_class, E_const), fr["cov"]),
        ("leak_output_cov", (m, n, K, lk["symbols"][0], lk["symbols"][1], Gamma, E_class, E_const, u, u2, C, lk["symbols"][4],
                             Cbar, lk["symbols"][5]), lk["output"]),
        ("leak_fresh_cov", (mu, m, n, K, c, d, lk["symbols"][2], lk["symbols"][3], Gamma), lk["fresh"]),
    ]
