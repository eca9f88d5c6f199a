"""Symbolic derivations (sympy) behind every numeric function of :mod:`theory`.

Each ``derive_*`` function builds the sympy objects of one step of the theory
and each ``verify_*`` function checks a step symbolically, returning a dict of
named residual expressions that must simplify to zero (or booleans that must
be true). The numeric functions in :mod:`theory.block_model`,
:mod:`theory.predictions`, :mod:`theory.conditions` and :mod:`theory.pll` are
generated from the expressions here with :func:`sympy.lambdify`, so the numbers
the simulations use and the algebra cannot drift apart.

Steps (letters follow the issue that specified them):

(a) ``derive_fixed_point``: the gradient of the ridge-penalised soft-target
    cross-entropy of a linear probe, and the fixed point
    P = softmax((T - P) G / (N lambda)) it implies.
(b) ``derive_linearisation``: softmax(z) ~ (1 + z - mean z) / K, the
    label-averaging operator A = G (G + K N lambda I)^-1, its spectral form
    and the multi-round formula P_t - U = (Y - U) A^(t+1).
(c) ``derive_block_spectrum``: eigenvalues and eigenprojectors of the
    class-wise correlation (block) model with K, n, c, d, lambda symbolic.
(d) ``derive_type_scores``: the output of a training instance after s fits,
    written per instance type (true class, given label).
(e) ``derive_balanced_threshold``: the number of fits after which a noisy
    instance is pulled to its true class (balanced given labels).
(g) the PLL student uses the same score expression with PLL targets.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

__all__ = [
    "SYM",
    "derive_fixed_point",
    "verify_fixed_point",
    "derive_linearisation",
    "verify_linearisation",
    "derive_block_spectrum",
    "verify_block_spectrum_algebra",
    "verify_block_spectrum_explicit",
    "block_gram_matrix",
    "derive_type_scores",
    "derive_balanced_threshold",
    "derive_fresh_logits",
    "derive_noise_thresholds",
]

# Shared symbols. K and n are positive integers; c, d, lambda real.
K, n = sp.symbols("K n", positive=True, integer=True)
c, d = sp.symbols("c d", real=True)
lam = sp.symbols("lambda", positive=True)
s = sp.symbols("s", positive=True, integer=True)  # number of fits = round + 1
N = K * n
SYM = {"K": K, "n": n, "c": c, "d": d, "lam": lam, "s": s, "N": N}


# ---------------------------------------------------------------------------
# (a) Fixed point of one fit
# ---------------------------------------------------------------------------
def _softmax(z):
    e = [sp.exp(zj) for zj in z]
    tot = sp.Add(*e)
    return [ej / tot for ej in e]


def derive_fixed_point(num_classes: int = 3, num_instances: int = 2, dim: int = 2):
    """Objective, gradient and claimed gradient of one fit, with explicit symbols.

    Sizes are concrete (sympy needs them to differentiate a sum), every entry
    symbolic. Returns a dict with the objective ``L``, its gradient ``grad``
    (K x D Matrix), the claimed closed form ``(1/N) (P - T) Phi^T + lambda W``
    as ``claimed``, and the pieces used (``W``, ``Phi``, ``T``, ``P``).
    The targets' last row is eliminated with the simplex constraint
    (columns of T sum to one), which is what makes the claimed form exact.
    """
    Kc, Nc, Dc = num_classes, num_instances, dim
    W = sp.Matrix(Kc, Dc, lambda a, b: sp.Symbol(f"w_{a}{b}", real=True))
    Phi = sp.Matrix(Dc, Nc, lambda a, b: sp.Symbol(f"phi_{a}{b}", real=True))
    T = sp.Matrix(Kc, Nc, lambda a, b: sp.Symbol(f"t_{a}{b}", real=True))
    # simplex constraint on the targets: last row = 1 - sum of the others
    for i in range(Nc):
        T[Kc - 1, i] = 1 - sum(T[a, i] for a in range(Kc - 1))
    Z = W * Phi
    P = sp.zeros(Kc, Nc)
    loss = 0
    for i in range(Nc):
        z = [Z[a, i] for a in range(Kc)]
        p = _softmax(z)
        for a in range(Kc):
            P[a, i] = p[a]
        # CE(T_i, p) = -sum_a T_ai log p_a, with log softmax written out
        lse = sp.log(sp.Add(*[sp.exp(za) for za in z]))
        loss += -sum(T[a, i] * (z[a] - lse) for a in range(Kc))
    L = loss / Nc + lam / 2 * sum(w**2 for w in W)
    grad = sp.Matrix(Kc, Dc, lambda a, b: sp.diff(L, W[a, b]))
    claimed = (P - T) * Phi.T / Nc + lam * W
    return {"L": L, "grad": grad, "claimed": claimed, "W": W, "Phi": Phi, "T": T, "P": P, "N": Nc}


def verify_fixed_point(num_classes: int = 3, num_instances: int = 2, dim: int = 2) -> dict:
    """Residuals that must vanish for step (a).

    * ``gradient``: grad L - [(1/N)(P - T) Phi^T + lambda W] (entrywise, simplified).
    * ``stationary_logits``: with W* = (T - P) Phi^T / (N lambda) (the unique
      root of the claimed gradient, as it is affine in W for fixed P), the
      logits W* Phi equal (T - P) G / (N lambda) with G = Phi^T Phi.
    """
    parts = derive_fixed_point(num_classes, num_instances, dim)
    diff = (parts["grad"] - parts["claimed"]).applyfunc(sp.simplify)
    Phi, T, P, Nc = parts["Phi"], parts["T"], parts["P"], parts["N"]
    W_star = (T - P) * Phi.T / (Nc * lam)
    stationary = (W_star * Phi - (T - P) * (Phi.T * Phi) / (Nc * lam)).applyfunc(sp.expand)
    # plugging W* into the claimed gradient gives zero identically
    claimed_at_star = ((P - T) * Phi.T / Nc + lam * W_star).applyfunc(sp.simplify)
    return {"gradient": diff, "stationary_logits": stationary, "claimed_at_W_star": claimed_at_star}


# ---------------------------------------------------------------------------
# (b) Linearisation and the label-averaging operator
# ---------------------------------------------------------------------------
def derive_linearisation(num_classes: int = 3):
    """First-order expansion of softmax around equal logits, per coordinate.

    Returns (exact first-order term, claimed (1 + z_j - mean z)/K) as lists of
    sympy expressions in symbols z_0..z_{K-1}; the expansion variable is
    ``eps`` (logits eps * z), so the claim is softmax(eps z) = U + eps (z - mean z)/K + O(eps^2).
    """
    Kc = num_classes
    z = sp.symbols(f"z0:{Kc}", real=True)
    eps = sp.Symbol("epsilon", real=True)
    p = _softmax([eps * zj for zj in z])
    first_order = [sp.series(pj, eps, 0, 2).removeO() for pj in p]
    mean = sp.Add(*z) / Kc
    claimed = [(1 + eps * (zj - mean)) / Kc for zj in z]
    return first_order, claimed


def verify_linearisation(num_classes: int = 3, num_instances: int = 3) -> dict:
    """Residuals for step (b).

    * ``softmax_first_order``: series of softmax minus the claimed linear form.
    * ``operator``: with a generic symmetric Gram matrix G (N x N symbols) and
      targets T (columns summing to one), P = U + (T - U) A with
      A = G (G + K N lambda I)^-1 satisfies the linearised fixed point
      P = U + (T - P) G / (K N lambda) (checked by substitution, so the
      linear system need not be solved symbolically).
    * ``rounds``: P_t - U = (Y - U) A^(t+1) satisfies the recursion
      P_t - U = (P_{t-1} - U) A for t = 1, 2 (induction step, symbolic A).
    """
    first, claimed = derive_linearisation(num_classes)
    out = {"softmax_first_order": [sp.simplify(a - b) for a, b in zip(first, claimed)]}

    Kc, Nc = num_classes, num_instances
    G = sp.Matrix(Nc, Nc, lambda i, j: sp.Symbol(f"g_{min(i, j)}{max(i, j)}", real=True))
    T = sp.Matrix(Kc, Nc, lambda a, i: sp.Symbol(f"t_{a}{i}", real=True))
    for i in range(Nc):
        T[Kc - 1, i] = 1 - sum(T[a, i] for a in range(Kc - 1))
    U = sp.ones(Kc, Nc) / Kc
    M = G + Kc * Nc * lam * sp.eye(Nc)
    # A M = G  <=>  A = G M^-1. Check the fixed point after multiplying through by M:
    # (P - U) M = (T - U) G, and the linearised equation times K N lambda M ... use
    # P - U = (T - P) G / (K N lambda)  <=>  (P - U)(G + K N lambda I) = (T - U) G.
    # Writing X = (P - U) M: the claim X = (T - U) G is the definition of A.
    # We verify the equivalence symbolically by expanding both sides with P = U + X M^-1
    # for X = (T - U) G, using the adjugate to stay polynomial.
    adj = M.adjugate()
    det = M.det()
    P_minus_U_times_det = (T - U) * G * adj  # = det * (P - U)
    lhs = P_minus_U_times_det * Kc * Nc * lam  # det * K N lambda (P - U)
    rhs = ((T - U) * det - P_minus_U_times_det) * G  # det * (T - P) G
    out["operator"] = (lhs - rhs).applyfunc(sp.expand)

    # Multi-round recursion with a symbolic (generic) A
    A = sp.Matrix(Nc, Nc, lambda i, j: sp.Symbol(f"a_{i}{j}", real=True))
    Y = sp.Matrix(Kc, Nc, lambda a, i: sp.Symbol(f"y_{a}{i}", real=True))
    rec = []
    for t in (1, 2):
        P_prev = U + (Y - U) * A**t
        P_t = U + (Y - U) * A ** (t + 1)
        rec.append(((P_t - U) - (P_prev - U) * A).applyfunc(sp.expand))
    out["rounds"] = rec
    return out


# ---------------------------------------------------------------------------
# (c) Block model spectrum
# ---------------------------------------------------------------------------
def derive_block_spectrum():
    """Eigenvalues, filters and eigenprojectors of the block model, K, n, c, d, lambda symbolic.

    With B the class-averaging projector (blockdiag of 1 1^T / n) and J the
    global averaging projector (1 1^T / N), the Gram matrix is
    G = (1 - c) I + n (c - d) B + N d J. The eigenprojectors are
    I - B (within-class contrasts, rank N - K), B - J (class contrasts,
    rank K - 1) and J (constant, rank 1).

    Returns a dict: ``mu`` (three eigenvalues), ``filters`` (mu/(mu + K N lambda)),
    ``projectors`` (as coordinates (x, y, z) of x I + y B + z J), ``G`` (same),
    ``ranks``.
    """
    mu_w = 1 - c
    mu_c = 1 - c + n * (c - d)
    mu_0 = 1 - c + n * (c - d) + N * d
    mus = (mu_w, mu_c, mu_0)
    filt = tuple(m / (m + K * N * lam) for m in mus)
    projectors = ((1, -1, 0), (0, 1, -1), (0, 0, 1))
    G = (1 - c, n * (c - d), N * d)
    ranks = (N - K, K - 1, 1)
    return {"mu": mus, "filters": filt, "projectors": projectors, "G": G, "ranks": ranks}


def _alg_mul(u, v):
    """Product in the commutative algebra spanned by I, B, J (B^2 = B, J^2 = J, BJ = JB = J)."""
    x1, y1, z1 = u
    x2, y2, z2 = v
    return (
        sp.expand(x1 * x2),
        sp.expand(x1 * y2 + y1 * x2 + y1 * y2),
        sp.expand(x1 * z2 + z1 * x2 + y1 * z2 + z1 * y2 + z1 * z2),
    )


def verify_block_spectrum_algebra() -> dict:
    """Symbolic check with K, n, c, d, lambda as symbols, in the algebra of I, B, J.

    Returns residual triples that must all be zero: G P_m - mu_m P_m,
    P_m^2 - P_m, P_a P_b (a != b), sum P_m - I, and the spectral form of the
    label-averaging operator: (G + K N lambda I) (sum_m f_m P_m) - G, plus its
    s-th power rule A^s = sum f_m^s P_m (induction step A^s A = A^(s+1)).
    The multiplication table of I, B, J itself is checked on explicit
    matrices by :func:`verify_block_spectrum_explicit`.
    """
    spec = derive_block_spectrum()
    Pm, mus, G, filt = spec["projectors"], spec["mu"], spec["G"], spec["filters"]
    zero = lambda v: tuple(sp.simplify(x) for x in v)  # noqa: E731
    out = {}
    for m, (P, mu) in enumerate(zip(Pm, mus)):
        GP = _alg_mul(G, P)
        out[f"eigen_{m}"] = zero(tuple(a - mu * b for a, b in zip(GP, P)))
        PP = _alg_mul(P, P)
        out[f"idempotent_{m}"] = zero(tuple(a - b for a, b in zip(PP, P)))
    for a in range(3):
        for b in range(a + 1, 3):
            out[f"orthogonal_{a}{b}"] = zero(_alg_mul(Pm[a], Pm[b]))
    total = tuple(sum(P[i] for P in Pm) for i in range(3))
    out["complete"] = zero((total[0] - 1, total[1], total[2]))
    # Spectral form of A = G (G + K N lambda I)^-1: check (G + K N lam I) A_spec = G.
    A_spec = tuple(sum(f * P[i] for f, P in zip(filt, Pm)) for i in range(3))
    shifted = (G[0] + K * N * lam, G[1], G[2])
    prod = _alg_mul(shifted, A_spec)
    out["operator"] = zero(tuple(a - b for a, b in zip(prod, G)))
    # A^s = sum f^s P: the induction step A^s * A = A^(s+1). It uses only the
    # projector relations, so the filters may be abstract positive symbols.
    f = sp.symbols("f_w f_c f_0", positive=True)
    A_abs = tuple(sum(fm * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    A_s = tuple(sum(fm**s * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    A_s1 = tuple(sum(fm ** (s + 1) * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    step = _alg_mul(A_s, A_abs)
    out["power"] = tuple(sp.simplify(sp.powsimp(a - b, force=True)) for a, b in zip(step, A_s1))
    return out


def block_gram_matrix(Kc: int, nc: int, c_val=c, d_val=d) -> sp.Matrix:
    """Explicit N x N block Gram matrix as a sympy Matrix (class-major order)."""
    Nc = Kc * nc
    return sp.Matrix(
        Nc, Nc, lambda i, j: 1 if i == j else (c_val if i // nc == j // nc else d_val)
    )


def verify_block_spectrum_explicit(Kc: int, nc: int) -> dict:
    """Explicit sympy matrices for given K, n (c, d, lambda symbolic).

    Builds G, B, J, the three projectors, and returns residual matrices for
    G P_m - mu_m P_m, P_m^2 - P_m, P_a P_b, sum P_m - I, the algebra relations
    (B^2 = B, BJ = J, J^2 = J, G = (1-c) I + n(c-d) B + N d J) and the ranks
    (traces) of the projectors against (N - K, K - 1, 1).
    """
    Nc = Kc * nc
    spec = derive_block_spectrum()
    subs = {K: Kc, n: nc}
    I = sp.eye(Nc)
    B = sp.Matrix(Nc, Nc, lambda i, j: sp.Rational(1, nc) if i // nc == j // nc else 0)
    J = sp.ones(Nc, Nc) / Nc
    G = block_gram_matrix(Kc, nc)
    basis = lambda v: v[0] * I + v[1] * B + v[2] * J  # noqa: E731
    P = [basis([sp.sympify(x).subs(subs) for x in v]) for v in spec["projectors"]]
    mus = [sp.sympify(m).subs(subs) for m in spec["mu"]]
    out = {}
    for m in range(3):
        out[f"eigen_{m}"] = (G * P[m] - mus[m] * P[m]).applyfunc(sp.expand)
        out[f"idempotent_{m}"] = (P[m] * P[m] - P[m]).applyfunc(sp.expand)
    for a in range(3):
        for b in range(a + 1, 3):
            out[f"orthogonal_{a}{b}"] = (P[a] * P[b]).applyfunc(sp.expand)
    out["complete"] = (P[0] + P[1] + P[2] - I).applyfunc(sp.expand)
    out["algebra_BB"] = B * B - B
    out["algebra_BJ"] = B * J - J
    out["algebra_JB"] = J * B - J
    out["algebra_JJ"] = J * J - J
    G_alg = basis([sp.sympify(x).subs(subs) for x in spec["G"]])
    out["gram_decomposition"] = (G - G_alg).applyfunc(sp.expand)
    ranks = [sp.sympify(r).subs(subs) for r in spec["ranks"]]
    out["ranks"] = sp.Matrix([P[m].trace() - ranks[m] for m in range(3)])
    return out


# ---------------------------------------------------------------------------
# (d) Per-type outputs after s fits
# ---------------------------------------------------------------------------
def derive_type_scores():
    """Output of class j for one training instance after s fits, by instance type.

    With filters alpha < beta < g (within-class, class, constant) and
    A^s = alpha^s (I - B) + beta^s (B - J) + g^s J, the targets' deviation
    (T - U) A^s at an instance i of true class k is

        alpha^s (t_i - tbar_k) + beta^s (tbar_k - tbar) + g^s (tbar - 1/K),

    because U B = U J = U: (T - U)(I - B) = T - T B (own target minus its class
    mean), (T - U)(B - J) = T B - T J (class mean minus overall mean) and
    (T - U) J = T J - U (overall mean minus uniform). For the given labels
    (T = Y), tbar_k is row k of the empirical corruption matrix and tbar its
    column means. Returns (symbols, expression) for one coordinate j:
    symbols (alpha, beta, g, s, t_own, tbar_class, tbar_all, K).
    """
    alpha, beta, g = sp.symbols("alpha beta g", positive=True)
    t_own, tbar_class, tbar_all = sp.symbols("t_own tbar_class tbar_all", real=True)
    expr = (
        1 / K
        + alpha**s * (t_own - tbar_class)
        + beta**s * (tbar_class - tbar_all)
        + g**s * (tbar_all - 1 / K)
    )
    return (alpha, beta, g, s, t_own, tbar_class, tbar_all, K), expr


def derive_margin_coefficients():
    """Margin between the true class k and another class j, as coefficients of alpha^s, beta^s, g^s.

    Symbols: own targets (t_k, t_j), class means (m_k, m_j), overall means
    (o_k, o_j). The constant 1/K cancels, so margin = c_alpha alpha^s +
    c_beta beta^s + c_g g^s with the returned coefficients.
    """
    (alpha, beta, g, s_, t_own, tbar_class, tbar_all, K_), expr = derive_type_scores()
    t_k, t_j, m_k, m_j, o_k, o_j = sp.symbols("t_k t_j m_k m_j o_k o_j", real=True)
    score_k = expr.subs({t_own: t_k, tbar_class: m_k, tbar_all: o_k})
    score_j = expr.subs({t_own: t_j, tbar_class: m_j, tbar_all: o_j})
    margin = sp.expand(score_k - score_j)
    coeffs = tuple(sp.simplify(margin.coeff(base**s_)) for base in (alpha, beta, g))
    rest = sp.simplify(margin - sum(cf * base**s_ for cf, base in zip(coeffs, (alpha, beta, g))))
    return (t_k, t_j, m_k, m_j, o_k, o_j), coeffs, rest


# ---------------------------------------------------------------------------
# (e) Balanced given labels: rounds needed for a noisy instance
# ---------------------------------------------------------------------------
def derive_balanced_threshold():
    """Noisy instance (true k, given l != k) with balanced labels (tbar = U).

    The margin of k over l after s fits is (beta^s - alpha^s) Delta - alpha^s
    with Delta = C_kk - C_kl. For beta > alpha > 0 and Delta > 0 it is positive
    iff (beta/alpha)^s > (1 + Delta)/Delta, i.e. iff s > log((1 + Delta)/Delta) / log(beta/alpha).
    Returns (symbols (alpha, beta, Delta), margin expression in s, threshold
    expression for s, and the residual checking that the margin vanishes at
    the threshold).
    """
    alpha, beta = sp.symbols("alpha beta", positive=True)
    Delta = sp.symbols("Delta", positive=True)
    (t_k, t_j, m_k, m_j, o_k, o_j), coeffs, _ = derive_margin_coefficients()
    # noisy instance: own target is e_l, so t_k = 0, t_l = 1; class means C_kk, C_kl; balanced o = 1/K
    Ckk, Ckl = sp.symbols("C_kk C_kl", real=True)
    sub = {t_k: 0, t_j: 1, m_k: Ckk, m_j: Ckl, o_k: 1 / K, o_j: 1 / K}
    ca, cb, cg = (sp.simplify(cf.subs(sub)) for cf in coeffs)
    margin = sp.expand((ca * alpha**s + cb * beta**s + cg * sp.Symbol("g") ** s).subs(Ckl, Ckk - Delta))
    threshold = sp.log((1 + Delta) / Delta) / sp.log(beta / alpha)
    # margin / alpha^s = Delta rho - (1 + Delta) with rho = (beta/alpha)^s ...
    rho = sp.Symbol("rho", positive=True)
    in_rho = sp.simplify(sp.powsimp(sp.expand(margin / alpha**s), force=True).subs((beta / alpha) ** s, rho))
    reduced = sp.simplify(in_rho - (Delta * rho - (1 + Delta)))
    # ... and rho at the threshold equals (1 + Delta)/Delta, so the margin vanishes there.
    rho_at_threshold = sp.simplify(sp.exp(threshold * sp.log(beta / alpha)))
    at_threshold = sp.simplify(Delta * rho_at_threshold - (1 + Delta))
    return (alpha, beta, Delta), margin, threshold, {"reduced": reduced, "at_threshold": at_threshold}


# ---------------------------------------------------------------------------
# Fresh samples of the exact block model
# ---------------------------------------------------------------------------
def derive_fresh_logits():
    """Logits of a fresh class-k sample after s fits, linearised block model (up to a positive factor).

    A fresh sample has correlation c with the n training instances of its
    class and d with the others. With residual R = (Y - U) A^(s-1) (I - A) of
    fit s, the logits (R g_x)/(N lambda) depend on the instances only through
    class sums: R 1_k = n (1 - beta) beta^(s-1) (ybar_k - ybar) + n (1 - g) g^(s-1) (ybar - U)
    and R 1 = N (1 - g) g^(s-1) (ybar - U). The returned expression is
    N lambda times the logit of class j:
    (c - d) R 1_k + d R 1 in terms of class-mean label m_j and overall mean o_j.
    """
    beta, g = sp.symbols("beta g", positive=True)
    m_j, o_j = sp.symbols("m_j o_j", real=True)
    Rk = n * (1 - beta) * beta ** (s - 1) * (m_j - o_j) + n * (1 - g) * g ** (s - 1) * (o_j - 1 / K)
    Rall = N * (1 - g) * g ** (s - 1) * (o_j - 1 / K)
    return (beta, g, m_j, o_j, c, d, n, K, s), (c - d) * Rk + d * Rall


def derive_noise_thresholds():
    """Noise rate below which C_kk > C_kj for every j != k, for the three named corruption models.

    symmetric: C_kk = 1 - eta, C_kj = eta/(K-1); asymmetric (cyclic): C_kk = 1 - eta,
    largest off-diagonal C_k,k+1 = 2 eta/K; superclass of size m: C_kk = 1 - eta,
    C_kj = eta/(m-1) inside the group. Each threshold is the root in eta of
    C_kk - max_j C_kj, which is decreasing in eta, so the condition holds iff eta < root.
    Returns {name: (expression, free symbols)} with m as a symbol.
    """
    eta = sp.Symbol("eta", nonnegative=True)
    m = sp.Symbol("m", positive=True, integer=True)
    gaps = {
        "symmetric": ((1 - eta) - eta / (K - 1), (K,)),
        "asymmetric": ((1 - eta) - 2 * eta / K, (K,)),
        "superclass": ((1 - eta) - eta / (m - 1), (m,)),
    }
    out = {}
    for name, (gap, free) in gaps.items():
        (root,) = sp.solve(sp.Eq(gap, 0), eta)
        out[name] = (sp.simplify(root), free)
    return out


@lru_cache(maxsize=None)
def cached_block_spectrum():
    return derive_block_spectrum()
