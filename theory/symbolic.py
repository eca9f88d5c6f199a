"""Symbolic derivations (sympy) behind every numeric function of :mod:`theory`.

Each ``derive_*`` function builds the sympy objects of one step of the theory
and each ``verify_*`` function checks a step symbolically, returning a dict of
named residual expressions that must simplify to zero (or booleans that must
be true). The numeric functions in :mod:`theory.block_model`,
:mod:`theory.predictions`, :mod:`theory.conditions` and :mod:`theory.pll` are
generated from the expressions here with :func:`sympy.lambdify`, so the numbers
the simulations use and the algebra cannot drift apart.

Steps:

(a) ``derive_fixed_point``: the gradient of the ridge-penalised soft-target
    cross-entropy of a linear probe, and the fixed point
    P = softmax((T - P) G / (N lambda)) it implies.
(b) ``derive_linearisation``: softmax(z) ~ (1 + z - mean z) / K, the
    label-averaging operator A = G (G + K N lambda I)^-1, its spectral form
    and the multi-round formula P_t - U = (Y - U) A^(t+1).
(c) ``derive_block_spectrum``: derived in the algebra span{I, B, J}
    (B = blockdiag(1 1^T), J = 1 1^T, B^2 = n B, J^2 = N J, BJ = JB = n J):
    the minimal polynomial of G gives the three eigenvalues, its Frobenius
    covariants the eigenprojectors, their traces the multiplicities, and
    the solution of (G + K N lambda I) A = G the filters.
(d) ``derive_type_scores``: the spectral decomposition applied to the
    targets (own target, class mean, overall mean as symbols) gives the
    output of a training instance after s fits, per instance type.
(e) ``derive_balanced_threshold``: from the margin of (d) with balanced
    given labels, the threshold s* is solved for.
(f) ``derive_fresh_logits``: the spectral decomposition applied to a fresh
    sample's correlations gives its logits (class sums only).
(g) the PLL student uses the score expression of (d) with PLL targets.

Every ``verify_*`` residual (and the residuals returned with the
threshold) is asserted to simplify to 0 in tests/theorems/test_p1;
:func:`verify_all` collects them. Identities that hold by construction
(A^t A = A^(t+1), W* Phi = (T - P) Phi^T Phi / (N lambda)) are not listed.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

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
    "derive_minimal_polynomial",
    "derive_margin_coefficients",
    "verify_type_scores",
    "verify_fresh_logits",
    "verify_all",
    "alg_mul",
    "alg_trace",
    "clear_caches",
]

# Shared symbols. K and n are positive integers; c, d, lambda real.
K, n = sp.symbols("K n", positive=True, integer=True)
c, d = sp.symbols("c d", real=True)
lam = sp.symbols("lambda", positive=True)
s = sp.symbols("s", positive=True, integer=True)  # number of fits = round + 1
N = K * n
SYM = {"K": K, "n": n, "c": c, "d": d, "lam": lam, "s": s, "N": N}

# Symbols used inside the derivations below. They are fixed data (names and
# assumptions), defined once here and shared by the steps that use them.
_X = sp.Symbol("x")  # variable of the minimal polynomial
_EPS = sp.Symbol("epsilon")  # expansion variable of the linearisation
_OPERATOR_UNKNOWNS = sp.symbols("a_I a_B a_J")  # coordinates of A on I, B, J, solved for
_ABSTRACT_FILTERS = sp.symbols("f_w f_c f_0")  # filters as free symbols (power rule check)
_FILTERS = sp.symbols("alpha beta g", positive=True)  # within-class, class, constant filter
_TARGETS = sp.symbols("t_own tbar_class tbar_all", real=True)  # own target, class mean, overall mean
_MARGIN_TARGETS = sp.symbols("t_k t_j m_k m_j o_k o_j", real=True)  # the same for classes k and j
_DELTA = sp.Symbol("Delta", positive=True)  # C_kk - C_kl
_RHO = sp.Symbol("rho", positive=True)  # (beta/alpha)^s
_S_REAL = sp.Symbol("x", real=True)  # the number of fits as a real unknown
_LOG_FILTERS = sp.symbols("l_alpha l_beta", real=True)  # log alpha, log beta
_FRESH_TARGETS = sp.symbols("m_j o_j", real=True)  # class-mean and overall label share
_ETA = sp.Symbol("eta", nonnegative=True)  # noise rate
_GROUP = sp.Symbol("m", positive=True, integer=True)  # superclass size


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
    W = sp.Matrix(Kc, Dc, lambda a, b: sp.Symbol(f"w_{a}{b}"))
    Phi = sp.Matrix(Dc, Nc, lambda a, b: sp.Symbol(f"phi_{a}{b}"))
    T = sp.Matrix(Kc, Nc, lambda a, b: sp.Symbol(f"t_{a}{b}"))
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


def verify_fixed_point(num_classes: int, num_instances: int, dim: int) -> dict:
    """Residuals that must vanish for step (a).

    * ``gradient``: grad L - [(1/N)(P - T) Phi^T + lambda W] (entrywise, simplified).

    That W* = (T - P) Phi^T / (N lambda) is then the root of the gradient for
    the P it produces, and that its logits are W* Phi = (T - P) G / (N lambda),
    hold by construction (the claimed gradient is affine in W; associativity)
    and are not listed as evidence.
    """
    parts = derive_fixed_point(num_classes, num_instances, dim)
    diff = (parts["grad"] - parts["claimed"]).applyfunc(sp.simplify)
    return {"gradient": diff}


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
    z = sp.symbols(f"z0:{Kc}")
    eps = _EPS
    p = _softmax([eps * zj for zj in z])
    first_order = [sp.series(pj, eps, n=2).removeO() for pj in p]
    mean = sp.Add(*z) / Kc
    claimed = [(1 + eps * (zj - mean)) / Kc for zj in z]
    return first_order, claimed


def verify_linearisation(num_classes: int, num_instances: int) -> dict:
    """Residuals for step (b).

    * ``softmax_first_order``: series of softmax minus the claimed linear form.
    * ``operator``: with a generic symmetric Gram matrix G (N x N symbols) and
      targets T (columns summing to one), P = U + (T - U) A with
      A = G (G + K N lambda I)^-1 satisfies the linearised fixed point
      P = U + (T - P) G / (K N lambda) (checked by substitution, so the
      linear system need not be solved symbolically).
    * ``simplex``: the outputs U + (T - U) A have columns summing to one for
      any A, so they are valid targets of the next fit and the round formula
      P_t - U = (Y - U) A^(t+1) follows by induction from the one-fit formula.
      (The induction step A^t A = A^(t+1) itself is true by construction and
      is not listed.)
    """
    first, claimed = derive_linearisation(num_classes)
    out = {"softmax_first_order": [sp.simplify(a - b) for a, b in zip(first, claimed)]}

    Kc, Nc = num_classes, num_instances
    G = sp.Matrix(Nc, Nc, lambda i, j: sp.Symbol(f"g_{min(i, j)}{max(i, j)}"))
    T = sp.Matrix(Kc, Nc, lambda a, i: sp.Symbol(f"t_{a}{i}"))
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

    # Round t's outputs are valid targets for round t + 1: for any A, the columns of
    # U + (T - U) A sum to one because the columns of T - U sum to zero. As the columns
    # of U sum to one, the residual 1^T (U + (T - U) A) - 1^T is 1^T (T - U) A.
    A = sp.Matrix(Nc, Nc, lambda i, j: sp.Symbol(f"a_{i}{j}"))
    out["simplex"] = (sp.ones(1, Kc) * (T - U) * A).applyfunc(sp.expand)
    return out


# ---------------------------------------------------------------------------
# (c) Block model spectrum, derived in the algebra span{I, B, J}
# ---------------------------------------------------------------------------
# Unnormalised basis: B = blockdiag(1 1^T) (class blocks of ones) and J = 1 1^T
# (all ones). Their products follow from counting: B^2 = n B, J^2 = N J,
# B J = J B = n J (checked on explicit matrices by verify_block_spectrum_explicit).
# An element x I + y B + z J is the coordinate triple (x, y, z).
ALG_I = (sp.Integer(1), sp.Integer(0), sp.Integer(0))
# The block model itself (its definition): G_ii = 1, c within a class, d between classes.
GRAM_COORDS = (1 - c, c - d, d)


def alg_mul(u, v):
    """Product in span{I, B, J} with B^2 = n B, J^2 = N J, B J = J B = n J (unnormalised basis)."""
    x1, y1, z1 = u
    x2, y2, z2 = v
    return (
        sp.expand(x1 * x2),
        sp.expand(x1 * y2 + y1 * x2 + n * y1 * y2),
        sp.expand(x1 * z2 + z1 * x2 + n * (y1 * z2 + z1 * y2) + N * z1 * z2),
    )


def _alg_lin(a, u, b, v):
    return tuple(a * ui + b * vi for ui, vi in zip(u, v))


def alg_trace(u):
    """Trace of x I + y B + z J (each of I, B, J has N ones on its diagonal)."""
    return sp.expand(N * (u[0] + u[1] + u[2]))


def derive_minimal_polynomial(x=None):
    """Minimal polynomial of G on span{I, B, J}.

    G acts on the three-dimensional algebra by multiplication; the
    characteristic polynomial of that 3 x 3 map (columns: G I, G B, G J in
    coordinates) is the minimal polynomial of G as soon as I, G, G^2 are
    linearly independent, which the determinant of their coordinates shows
    (a nonzero polynomial, d n (c - d)(c - d + K d) factored: degree 3 for
    generic c, d). Returns (polynomial in ``x``, that determinant,
    coefficients (a0, a1, a2) with G^3 = a0 I + a1 G + a2 G^2).
    """
    x = _X if x is None else x
    # columns: G I, G B, G J (the product with each standard basis element)
    L = sp.Matrix([list(alg_mul(GRAM_COORDS, e)) for e in sp.eye(3).tolist()]).T
    poly = sp.factor(L.charpoly(x).as_expr())
    G2 = alg_mul(GRAM_COORDS, GRAM_COORDS)
    det = sp.factor(sp.Matrix([[ALG_I[i], GRAM_COORDS[i], G2[i]] for i in range(3)]).det())
    monic = sp.Poly(sp.expand(poly), x).all_coeffs()  # [1, -a2, -a1, -a0]
    coeffs = tuple(sp.factor(-v) for v in reversed(monic[1:]))
    return poly, det, coeffs


def _covariant(root, others):
    """Frobenius covariant prod_{o != root} (G - o I) / (root - o): the eigenprojector of ``root``."""
    P = ALG_I
    for o in others:
        P = alg_mul(P, _alg_lin(1 / (root - o), GRAM_COORDS, -o / (root - o), ALG_I))
    return tuple(sp.factor(sp.cancel(v)) for v in P)


def _derive_block_spectrum():
    poly, det, _ = derive_minimal_polynomial()  # in _X
    # three distinct roots of the cubic (simple): the unpacking below finds exactly one of each kind
    roots = list(sp.roots(sp.Poly(poly, _X)))
    proj = {r: _covariant(r, [o for o in roots if o != r]) for r in roots}
    # Name the eigenspaces by their projectors: only the within-class one has an I component,
    # only the constant one has no B component (it is a multiple of J).
    (mw,) = [r for r in roots if proj[r][0] != 0]
    (m0,) = [r for r in roots if proj[r][1] == 0]
    (mc,) = [r for r in roots if r not in (mw, m0)]
    # Written as gaps above the previous eigenvalue (same values, tidy form).
    mu_w = sp.expand(mw)
    mu_c = mu_w + sp.factor(mc - mu_w)
    mu_0 = mu_c + sp.factor(m0 - mu_c)
    mus = (mu_w, mu_c, mu_0)
    P_unnorm = tuple(proj[r] for r in (mw, mc, m0))
    # The label-averaging operator A solves (G + K N lambda I) A = G in the algebra.
    a = _OPERATOR_UNKNOWNS
    shifted = _alg_lin(1, GRAM_COORDS, K * N * lam, ALG_I)
    eqs = [lhs - rhs for lhs, rhs in zip(alg_mul(shifted, a), GRAM_COORDS)]
    (sol,) = sp.solve(eqs, a, dict=True)  # unique solution
    A = tuple(sp.factor(sol[ai]) for ai in a)
    # Its eigenvalue on each eigenspace: A P_m = f_m P_m with f_m the spectral function
    # x / (x + K N lambda) at mu_m (the tidy form used); the residuals A P_m - f_m P_m, on
    # every coordinate, are returned as "filter_residuals" and must all be 0.
    filt = tuple(mu / (mu + K * N * lam) for mu in mus)
    filter_residuals = tuple(
        tuple(sp.cancel(ap - f * p) for ap, p in zip(alg_mul(A, P), P)) for f, P in zip(filt, P_unnorm)
    )
    ranks = tuple(sp.expand(alg_trace(P)) for P in P_unnorm)
    # normalised coordinates: x I + y (B/n) + z (J/N)
    norm = lambda u: (sp.simplify(u[0]), sp.simplify(u[1] * n), sp.simplify(u[2] * N))  # noqa: E731
    return {
        "mu": mus,
        "filters": filt,
        "filter_residuals": filter_residuals,
        "projectors": tuple(norm(P) for P in P_unnorm),
        "projectors_unnormalised": P_unnorm,
        "G": norm(GRAM_COORDS),
        "ranks": ranks,
        "minimal_polynomial": poly,
        "independence_det": det,
        "operator": A,
    }


def derive_block_spectrum():
    """Eigenvalues, filters and eigenprojectors of the block model, K, n, c, d, lambda symbolic.

    Derived, not declared: the minimal polynomial of G = (1 - c) I + (c - d) B + d J
    on span{I, B, J} (:func:`derive_minimal_polynomial`) gives the three
    eigenvalues as its roots; the eigenprojectors are its Frobenius covariants
    prod_{o != mu} (G - o I)/(mu - o); their traces give the multiplicities;
    the label-averaging operator A is the solution of (G + K N lambda I) A = G
    in the algebra, and its eigenvalue on each eigenspace is the filter.

    Returns a dict: ``mu`` (within-class, class, constant), ``filters``
    (mu/(mu + K N lambda)), ``filter_residuals`` (A P_m - f_m P_m per
    eigenspace, coordinates on I, B, J; all 0), ``projectors`` (coordinates (x, y, z) of
    x I + y B/n + z J/N, i.e. with the projectors B/n and J/N),
    ``projectors_unnormalised`` (same on I, B, J), ``G`` (normalised
    coordinates), ``ranks``, ``minimal_polynomial``, ``independence_det``,
    ``operator`` (A on I, B, J).
    """
    return _cached_spectrum()


def _alg_mul(u, v):
    """Product in the normalised algebra (B/n)^2 = B/n, (J/N)^2 = J/N, (B/n)(J/N) = J/N (for the checks)."""
    x1, y1, z1 = u
    x2, y2, z2 = v
    return (
        sp.expand(x1 * x2),
        sp.expand(x1 * y2 + y1 * x2 + y1 * y2),
        sp.expand(x1 * z2 + z1 * x2 + y1 * z2 + z1 * y2 + z1 * z2),
    )


def verify_block_spectrum_algebra(spec: dict | None = None) -> dict:
    """Symbolic check with K, n, c, d, lambda as symbols, in the algebra of I, B/n, J/N.

    Uses the normalised multiplication table (a second, independent table;
    both are checked on explicit matrices by :func:`verify_block_spectrum_explicit`).
    Returns residual triples that must all be zero: the minimal polynomial at
    G, G P_m - mu_m P_m, P_m^2 - P_m, P_a P_b (a != b), sum P_m - I, the
    spectral form of the label-averaging operator (G + K N lambda I)
    (sum_m f_m P_m) - G, its s-th power rule A^s = sum f_m^s P_m (induction
    step A^s A = A^(s+1), a property of orthogonal idempotents), and the ranks
    (multiplicities) against N - K, K - 1, 1 and the sum of ranks against N.

    ``spec`` defaults to :func:`derive_block_spectrum`; another dict of the same
    form (e.g. one with a deliberately wrong ingredient) can be checked instead.
    Each residual is the simplified difference itself (the minimal polynomial's
    is p(G)), so a wrong ingredient shows as a nonzero value.
    """
    spec = derive_block_spectrum() if spec is None else spec
    Pm, mus, G, filt = spec["projectors"], spec["mu"], spec["G"], spec["filters"]
    zero = lambda v: tuple(sp.simplify(x) for x in v)  # noqa: E731
    out = {}
    poly = sp.Poly(spec["minimal_polynomial"], _X)
    acc = (0, 0, 0)
    power = (1, 0, 0)
    for coeff in reversed(poly.all_coeffs()):
        acc = tuple(a + coeff * p for a, p in zip(acc, power))
        power = _alg_mul(power, G)
    out["minimal_polynomial"] = zero(acc)
    for m, (P, mu) in enumerate(zip(Pm, mus)):
        GP = _alg_mul(G, P)
        out[f"eigen_{m}"] = zero(tuple(a - mu * b for a, b in zip(GP, P)))
        PP = _alg_mul(P, P)
        out[f"idempotent_{m}"] = zero(tuple(a - b for a, b in zip(PP, P)))
    for a, b in combinations(range(len(Pm)), 2):
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
    f = _ABSTRACT_FILTERS
    A_abs = tuple(sum(fm * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    A_s = tuple(sum(fm**s * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    A_s1 = tuple(sum(fm ** (s + 1) * P[i] for fm, P in zip(f, Pm)) for i in range(3))
    step = _alg_mul(A_s, A_abs)
    out["power"] = zero(tuple(a - b for a, b in zip(step, A_s1)))
    # multiplicities: traces of the projectors (I, B/n, J/N have traces N, K, 1)
    traces = tuple(sp.expand(N * P[0] + K * P[1] + P[2]) for P in Pm)
    out["ranks"] = zero(tuple(tr - r for tr, r in zip(traces, (N - K, K - 1, 1))))
    out["ranks_derived"] = zero(tuple(r - tr for r, tr in zip(spec["ranks"], traces)))
    # the paper's eigenvalues (typed here, and only here, as the thing checked)
    paper = (1 - c, 1 - c + n * (c - d), 1 - c + n * (c - d) + N * d)
    out["paper_eigenvalues"] = zero(tuple(m - b for m, b in zip(mus, paper)))
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
    G P_m - mu_m P_m, P_m^2 - P_m, P_a P_b, sum P_m - I, both multiplication
    tables (unnormalised B^2 = n B, B J = J B = n J, J^2 = N J used by the
    derivation; normalised B/n, J/N used by the algebraic check), the Gram
    matrix's coordinates (1 - c, c - d, d) and the ranks (traces) of the
    projectors against the derived ranks.
    """
    Nc = Kc * nc
    spec = derive_block_spectrum()
    subs = {K: Kc, n: nc}
    I = sp.eye(Nc)
    Bu = sp.Matrix(Nc, Nc, lambda i, j: 1 if i // nc == j // nc else 0)
    Ju = sp.ones(Nc)
    B = Bu / nc
    J = Ju / Nc
    G = block_gram_matrix(Kc, nc)
    basis = lambda v: v[0] * I + v[1] * B + v[2] * J  # noqa: E731
    P = [basis([sp.sympify(x).subs(subs) for x in v]) for v in spec["projectors"]]
    basis_u = lambda v: v[0] * I + v[1] * Bu + v[2] * Ju  # noqa: E731
    Pu = [basis_u([sp.sympify(x).subs(subs) for x in v]) for v in spec["projectors_unnormalised"]]
    mus = [sp.sympify(m).subs(subs) for m in spec["mu"]]
    out = {}
    for m in range(3):
        out[f"eigen_{m}"] = (G * P[m] - mus[m] * P[m]).applyfunc(sp.expand)
        out[f"idempotent_{m}"] = (P[m] * P[m] - P[m]).applyfunc(sp.expand)
        out[f"unnormalised_{m}"] = (Pu[m] - P[m]).applyfunc(sp.expand)
    for a, b in combinations(range(len(P)), 2):
        out[f"orthogonal_{a}{b}"] = (P[a] * P[b]).applyfunc(sp.expand)
    out["complete"] = (P[0] + P[1] + P[2] - I).applyfunc(sp.expand)
    out["algebra_BB"] = B * B - B
    out["algebra_BJ"] = B * J - J
    out["algebra_JB"] = J * B - J
    out["algebra_JJ"] = J * J - J
    out["algebra_unnormalised_BB"] = Bu * Bu - nc * Bu
    out["algebra_unnormalised_BJ"] = Bu * Ju - nc * Ju
    out["algebra_unnormalised_JB"] = Ju * Bu - nc * Ju
    out["algebra_unnormalised_JJ"] = Ju * Ju - Nc * Ju
    G_alg = basis([sp.sympify(x).subs(subs) for x in spec["G"]])
    out["gram_decomposition"] = (G - G_alg).applyfunc(sp.expand)
    out["gram_unnormalised"] = (G - ((1 - c) * I + (c - d) * Bu + d * Ju)).applyfunc(sp.expand)
    ranks = [sp.sympify(r).subs(subs) for r in spec["ranks"]]
    out["ranks"] = sp.Matrix([P[m].trace() - ranks[m] for m in range(3)])
    return out


# ---------------------------------------------------------------------------
# (d) Per-type outputs after s fits
# ---------------------------------------------------------------------------
def _apply_to_targets(P, t_own, tbar_class, tbar_all):
    """Column i (class k) of (T - U) (x I + y B + z J), coordinate j.

    T B sums the targets over the instance's class (n tbar_k), T J over all
    instances (N tbar); U B = n U and U J = N U because U is constant.
    """
    x, y, z = P
    return x * t_own + y * n * tbar_class + z * N * tbar_all - (x + n * y + N * z) / K


def _derive_type_scores():
    (alpha, beta, g), (t_own, tbar_class, tbar_all) = _FILTERS, _TARGETS
    spec = derive_block_spectrum()
    raw = 1 / K + sum(
        f**s * _apply_to_targets(P, t_own, tbar_class, tbar_all)
        for f, P in zip((alpha, beta, g), spec["projectors_unnormalised"])
    )
    # collect by the three powers (the tidy form lambdified below)
    expanded = sp.expand(raw)
    coeffs = [sp.expand(sp.simplify(expanded.coeff(f**s))) for f in (alpha, beta, g)]
    rest = sp.simplify(expanded - sum(cf * f**s for cf, f in zip(coeffs, (alpha, beta, g))))
    expr = rest + sum(f**s * cf for f, cf in zip((alpha, beta, g), coeffs))
    return (alpha, beta, g, s, t_own, tbar_class, tbar_all, K), expr, raw


def derive_type_scores():
    """Output of class j for one training instance after s fits, by instance type.

    Derived by applying the spectral decomposition A^s = sum_m f_m^s P_m
    (projectors from :func:`derive_block_spectrum`) to the targets' deviation
    T - U, with the targets entering only through the instance's own target
    t_i, its class mean tbar_k and the overall mean tbar (symbolic class-mean
    labels, :func:`_apply_to_targets`). Collected by the powers it gives

        1/K + alpha^s (t_i - tbar_k) + beta^s (tbar_k - tbar) + g^s (tbar - 1/K)

    (checked against this, the paper's form, by :func:`verify_type_scores`).
    For the given labels (T = Y), tbar_k is row k of the empirical corruption
    matrix and tbar its column means. Returns (symbols, expression) for one
    coordinate j: symbols (alpha, beta, g, s, t_own, tbar_class, tbar_all, K).
    """
    syms, expr, _ = _cached_type_scores()
    return syms, expr


def derive_margin_coefficients():
    """Margin between the true class k and another class j, as coefficients of alpha^s, beta^s, g^s.

    Symbols: own targets (t_k, t_j), class means (m_k, m_j), overall means
    (o_k, o_j). The constant 1/K cancels, so margin = c_alpha alpha^s +
    c_beta beta^s + c_g g^s with the returned coefficients; ``rest`` is what
    is left over and must be 0.
    """
    (alpha, beta, g, s_, t_own, tbar_class, tbar_all, K_), expr = derive_type_scores()
    t_k, t_j, m_k, m_j, o_k, o_j = _MARGIN_TARGETS
    score_k = expr.subs({t_own: t_k, tbar_class: m_k, tbar_all: o_k})
    score_j = expr.subs({t_own: t_j, tbar_class: m_j, tbar_all: o_j})
    margin = sp.expand(score_k - score_j)
    coeffs = tuple(sp.simplify(margin.coeff(base**s_)) for base in (alpha, beta, g))
    rest = sp.simplify(margin - sum(cf * base**s_ for cf, base in zip(coeffs, (alpha, beta, g))))
    return (t_k, t_j, m_k, m_j, o_k, o_j), coeffs, rest


def verify_type_scores() -> dict:
    """Residuals of step (d).

    * ``paper_form``: the derived per-type output minus the paper's
      1/K + alpha^s (t - tbar_k) + beta^s (tbar_k - tbar) + g^s (tbar - 1/K).
    * ``collected``: the collected (lambdified) form minus the raw spectral sum.
    * ``margin_rest``: what the margin leaves over after its three exponentials.
    * ``simplex``: summed over the K coordinates (targets and their means on
      the simplex) the outputs sum to 1: the round-t outputs are valid targets
      for round t + 1, which is what makes P_t - U = (Y - U) A^(t+1) follow
      from the one-fit formula.
    """
    (alpha, beta, g, s_, t_own, tbar_class, tbar_all, K_), expr, raw = _cached_type_scores()
    paper = 1 / K + alpha**s * (t_own - tbar_class) + beta**s * (tbar_class - tbar_all) + g**s * (tbar_all - 1 / K)
    out = {
        "paper_form": sp.simplify(expr - paper),
        "collected": sp.simplify(expr - raw),
        "margin_rest": derive_margin_coefficients()[2],
    }
    # Sum over coordinates: sum_j t_j = sum_j tbar_kj = sum_j tbar_j = 1, so the summed
    # output is the expression with t, tbar_k, tbar replaced by 1/K each, times K.
    summed = K * expr.subs({t_own: 1 / K, tbar_class: 1 / K, tbar_all: 1 / K})
    out["simplex"] = sp.simplify(summed - 1)
    return out


# ---------------------------------------------------------------------------
# (e) Balanced given labels: rounds needed for a noisy instance
# ---------------------------------------------------------------------------
def _derive_balanced_threshold():
    alpha, beta, g = _FILTERS
    Delta, rho, x = _DELTA, _RHO, _S_REAL
    (t_k, t_j, m_k, m_j, o_k, o_j), coeffs, _ = derive_margin_coefficients()
    # noisy instance: own target e_l (t_k = 0, t_l = 1); class means C_kk = m_k and
    # C_kl = m_k - Delta; balanced: o = 1/K
    sub = {t_k: 0, t_j: 1, m_j: m_k - Delta, o_k: 1 / K, o_j: 1 / K}
    ca, cb, cg = (sp.simplify(cf.subs(sub)) for cf in coeffs)
    margin = sp.expand(sum(cf * base**s for cf, base in zip((ca, cb, cg), _FILTERS)))
    # divide by alpha^s > 0 and write rho = (beta/alpha)^s: the margin is affine in rho
    # (in_rho still holding s or g shows in the residual "reduced" below)
    in_rho = sp.expand(sp.powsimp(sp.expand(margin / alpha**s)).subs((beta / alpha) ** s, rho))
    (rho_root,) = sp.solve(in_rho, rho)
    slope = sp.simplify(sp.diff(in_rho, rho))
    # (beta/alpha)^x = rho_root for real x
    (threshold,) = sp.solve(sp.Eq(x * sp.log(beta / alpha), sp.log(rho_root)), x)
    threshold = sp.simplify(threshold)
    residuals = {
        "g_term": cg,  # balanced labels: the constant direction drops out
        "reduced": sp.simplify(in_rho - (Delta * rho - (1 + Delta))),
        "slope": sp.simplify(slope - Delta),  # positive: the margin grows with s when beta > alpha
        # the margin itself at the real s = threshold, with alpha^s = e^(s la), beta^s = e^(s lb)
        "at_threshold": _margin_at(margin, threshold, alpha, beta),
    }
    return (alpha, beta, Delta), margin, threshold, residuals


def _margin_at(margin, s_value, alpha, beta):
    """margin(s) / alpha^s at a real s, with the powers written as exponentials of logarithms."""
    la, lb = _LOG_FILTERS
    as_exp = margin.subs({alpha**s: sp.exp(s * la), beta**s: sp.exp(s * lb)})
    at = sp.expand(as_exp.subs(s, s_value.subs({sp.log(beta / alpha): lb - la})) * sp.exp(-s_value.subs({sp.log(beta / alpha): lb - la}) * la))
    return sp.simplify(sp.expand_log(sp.simplify(sp.powsimp(at))))


def derive_balanced_threshold():
    """Noisy instance (true k, given l != k) with balanced labels (tbar = U).

    From the margin coefficients (step (d)) with own target e_l, class means
    C_kk, C_kl and overall means 1/K: the g-term drops out and the margin
    divided by alpha^s is affine in rho = (beta/alpha)^s with slope
    Delta = C_kk - C_kl; its root rho* = (1 + Delta)/Delta is solved for, and
    the threshold is the real s with (beta/alpha)^s = rho*, i.e.
    s* = log((1 + Delta)/Delta) / log(beta/alpha). For beta > alpha > 0 and
    Delta > 0 the margin is positive iff s > s*.
    Returns (symbols (alpha, beta, Delta), margin expression in s, threshold
    expression, residuals {g_term, reduced, slope, at_threshold} that must be 0).
    """
    return _cached_balanced_threshold()


# ---------------------------------------------------------------------------
# Fresh samples of the exact block model
# ---------------------------------------------------------------------------
def _apply_to_fresh(P, m_j, o_j):
    """Coordinate j of (Y - U) P g_x for a fresh class-k sample, P = x I + y B + z J.

    g_x = (c - d) 1_k + d 1 (correlation c with class k's instances, d with
    the rest). B 1_k = n 1_k, J 1_k = n 1, B 1 = n 1, J 1 = N 1; then
    (Y - U) 1_k = n (m - 1/K) (class k's label sums) and (Y - U) 1 = N (o - 1/K).
    """
    x, y, z = P
    on_class = (c - d) * (x + n * y)
    on_all = (c - d) * z * n + d * (x + n * y + N * z)
    return on_class * n * (m_j - 1 / K) + on_all * N * (o_j - 1 / K)


def _derive_fresh_logits():
    (alpha, beta, g), (m_j, o_j) = _FILTERS, _FRESH_TARGETS
    spec = derive_block_spectrum()
    # residual of fit s: T_s - P_s = (P_{s-1} - U) - (P_s - U) = (Y - U) A^(s-1) (I - A),
    # whose spectral function is f^(s-1) (1 - f)
    parts = [
        (f, sp.factor(sp.simplify(_apply_to_fresh(P, m_j, o_j))))
        for f, P in zip((alpha, beta, g), spec["projectors_unnormalised"])
    ]
    # the within-class (alpha) part vanishes: expr leaves it out, and the residual
    # "collected" of verify_fresh_logits (expr minus the full sum ``raw``) checks that
    expr = sum(cf * (1 - f) * f ** (s - 1) for f, cf in parts[1:])
    raw = sum(_apply_to_fresh(P, m_j, o_j) * (1 - f) * f ** (s - 1) for f, P in zip((alpha, beta, g), spec["projectors_unnormalised"]))
    return (beta, g, m_j, o_j, c, d, n, K, s), expr, raw


def derive_fresh_logits():
    """Logits of a fresh class-k sample after s fits, linearised block model, times N lambda.

    The exact fit's weights are W = (T - P) Phi^T / (N lambda) (step (a)), so a
    fresh sample x has logits (T - P) g_x / (N lambda) with g_x its
    correlations with the training instances. For fit s the residual is
    T - P = (Y - U) A^(s-1) (I - A); the spectral decomposition of step (c)
    applied to g_x (:func:`_apply_to_fresh`) gives, after collecting, only
    class sums: the within-class part vanishes and

        N lambda logit_j = (c - d) n (1 - beta) beta^(s-1) (m_j - o_j)
                           + [(c - d) n + d N] (1 - g) g^(s-1) (o_j - 1/K),

    m_j = class-mean label share of class j (row k), o_j = overall mean.
    Returns (symbols (beta, g, m_j, o_j, c, d, n, K, s), expression).
    """
    syms, expr, _ = _cached_fresh_logits()
    return syms, expr


def verify_fresh_logits() -> dict:
    """Residuals of the fresh-sample logits (must simplify to 0).

    * ``paper_form``: the derived logits minus (c - d) R 1_k + d R 1 with the
      class sums R 1_k = n (1 - beta) beta^(s-1) (m_j - o_j) + n (1 - g) g^(s-1) (o_j - 1/K)
      and R 1 = N (1 - g) g^(s-1) (o_j - 1/K).
    * ``collected``: the lambdified form minus the raw spectral sum (alpha included).
    * ``balanced``: with balanced labels (o = 1/K) the logits are
      (c - d) n (1 - beta) beta^(s-1) (m_j - 1/K), so their ranking does not
      depend on s.
    """
    (beta, g, m_j, o_j, *_), expr, raw = _cached_fresh_logits()
    Rk = n * (1 - beta) * beta ** (s - 1) * (m_j - o_j) + n * (1 - g) * g ** (s - 1) * (o_j - 1 / K)
    Rall = N * (1 - g) * g ** (s - 1) * (o_j - 1 / K)
    return {
        "paper_form": sp.simplify(expr - ((c - d) * Rk + d * Rall)),
        "collected": sp.simplify(expr - raw),
        "balanced": sp.simplify(expr.subs(o_j, 1 / K) - (c - d) * n * (1 - beta) * beta ** (s - 1) * (m_j - 1 / K)),
    }


@lru_cache(maxsize=None)
def _cached_spectrum():
    return _derive_block_spectrum()


@lru_cache(maxsize=None)
def _cached_type_scores():
    return _derive_type_scores()


@lru_cache(maxsize=None)
def _cached_balanced_threshold():
    return _derive_balanced_threshold()


@lru_cache(maxsize=None)
def _cached_fresh_logits():
    return _derive_fresh_logits()


def clear_caches():
    """Forget every memoised derivation (the next call derives again)."""
    for fn in (_cached_spectrum, _cached_type_scores, _cached_balanced_threshold, _cached_fresh_logits):
        fn.cache_clear()


# The concrete sizes verify_all checks: (K, N, D) of the fixed point, (K, N) of the
# linearisation and the (K, n) of the explicit block matrices.
VERIFY_ALL_SIZES = {"fixed_point": (3, 2, 2), "linearisation": (3, 2), "explicit": ((2, 1), (2, 3), (3, 2))}


def verify_all() -> dict:
    """Every residual of every derivation step, as {name: simplifies to exactly 0}.

    The evidence list of the symbolic side (identities true by construction,
    such as A^t A = A^(t+1), are not in it). Takes a few seconds.
    """

    def zero(v):
        if isinstance(v, sp.MatrixBase):
            return all(sp.simplify(x) == 0 for x in v)
        if isinstance(v, (list, tuple)):
            return all(zero(x) for x in v)
        return sp.simplify(v) == 0

    out = {}
    groups = {
        "fixed_point": verify_fixed_point(*VERIFY_ALL_SIZES["fixed_point"]),
        "linearisation": verify_linearisation(*VERIFY_ALL_SIZES["linearisation"]),
        "spectrum": verify_block_spectrum_algebra(),
        "type_scores": verify_type_scores(),
        "threshold": derive_balanced_threshold()[3],
        "fresh_logits": verify_fresh_logits(),
    }
    for Kc, nc in VERIFY_ALL_SIZES["explicit"]:
        groups[f"explicit_K{Kc}_n{nc}"] = verify_block_spectrum_explicit(Kc, nc)
    for group, residuals in groups.items():
        for name, v in residuals.items():
            out[f"{group}.{name}"] = zero(v)
    return out


def derive_noise_thresholds():
    """Noise rate below which C_kk > C_kj for every j != k, for the three named corruption models.

    symmetric: C_kk = 1 - eta, C_kj = eta/(K-1); asymmetric (cyclic): C_kk = 1 - eta,
    largest off-diagonal C_k,k+1 = 2 eta/K; superclass of size m: C_kk = 1 - eta,
    C_kj = eta/(m-1) inside the group. Each threshold is the root in eta of
    C_kk - max_j C_kj, which is decreasing in eta, so the condition holds iff eta < root.
    Returns {name: (expression, free symbols)} with m as a symbol.
    """
    eta, m = _ETA, _GROUP
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


def cached_block_spectrum():
    """The block spectrum (memoised; same as :func:`derive_block_spectrum`)."""
    return derive_block_spectrum()
