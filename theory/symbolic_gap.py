"""Symbolic checks of the corrections in :mod:`theory.exact_gap` (sympy).

Each ``verify_*`` function returns named residuals that must simplify to 0:
the active-set linearisation of softmax, the softmax Jacobian at an operating
point and the linear step it implies, and the pair recursion of the pair
formula with its implicit-Euler step time. :data:`PAIR_LAMBDA` is Lambda(g) of
the pair recursion; its numeric form ``theory.exact_gap._pair_lambda`` is
written to avoid cancellation near g = 1 and tied to it by a test.
"""

from __future__ import annotations

import sympy as sp

__all__ = ["verify_active_set_linearisation", "verify_operating_point_linearisation", "verify_pair_recursion", "PAIR_LAMBDA"]

_mu, _lam, _N, _m, _K = sp.symbols("mu lambda N m K", positive=True)
_s = sp.symbols("s", positive=True)
# fixed symbols of the verifications (module level: their names and assumptions are not part of any check)
_eps, _x, _t, _a, _p = sp.symbols("epsilon x t a p")
_pr_a, _pr_A, _pr_t, _pr_p, _pr_Lk, _pr_Lk2 = sp.symbols("a A t p L_k L_k2", positive=True)
_pr_eta, _pr_mu, _pr_g, _pr_gp = sp.symbols("eta mu g g_prev", positive=True)
_pr_ell = sp.Symbol("ell", real=True)
_pr_L0, _pr_L1, _pr_u, _pr_x = sp.symbols("L0 L1 u x", positive=True)  # x = 1/A
# Lambda(g) of the pair recursion (class mean mu, wrong-label share eta, gap g); numeric form: _pair_lambda
PAIR_LAMBDA = sp.log((_pr_mu + _pr_eta * _pr_g) / (1 - _pr_mu - _pr_eta * _pr_g)) - sp.log(
    (_pr_mu - (1 - _pr_eta) * _pr_g) / (1 - _pr_mu + (1 - _pr_eta) * _pr_g)
)



def verify_active_set_linearisation(m: int = 3) -> dict:
    """Residuals that must simplify to 0.

    * ``first_order``: softmax over an active set of m classes (logits eps z_j),
      expanded to first order in eps, minus (1 + eps (z_j - mean z))/m; one
      entry per class (m = 3 by default).
    * ``scalar_fixed_point``: on an eigenvector of G with eigenvalue mu, the
      linear fixed point x = (t - x) mu s / m (slope 1/m) solved for x, minus
      t mu/(mu + m N lam) (s = 1/(N lam); symbolic m).
    * ``lambda_substitution``: mu/(mu + K N lam') with lam' = lam m/K, minus
      mu/(mu + m N lam): the active-set filters are the linearised filters at
      lambda m / K (so :func:`theory.conditions.min_rounds` applies; symbolic m and K).
    """
    z = sp.symbols(f"z0:{m}")
    e = [sp.exp(_eps * zj) for zj in z]
    tot = sp.Add(*e)
    mean = sp.Add(*z) / m
    first = [sp.simplify(sp.series(ej / tot, _eps, n=2).removeO() - (1 + _eps * (zj - mean)) / m) for ej, zj in zip(e, z)]
    sol = sp.solve(sp.Eq(_x, (_t - _x) * _mu * _s / _m), _x)[0]
    fp = sp.simplify(sol.subs(_s, 1 / (_N * _lam)) - _t * _mu / (_mu + _m * _N * _lam))
    sub = sp.simplify(_mu / (_mu + _K * _N * (_lam * _m / _K)) - _mu / (_mu + _m * _N * _lam))
    return {"first_order": first, "scalar_fixed_point": fp, "lambda_substitution": sub}


def _softmax_jacobian(q) -> sp.Matrix:
    """diag(q) - q q^T: the Jacobian of softmax at logits where softmax equals q (checked in
    :func:`verify_operating_point_linearisation`, ``jacobian``)."""
    q = sp.Matrix(q)
    return sp.diag(*q) - q * q.T


def verify_operating_point_linearisation(K: int = 3) -> dict:
    """Residuals that must be 0 (symbolic label shares q, K classes; all are rational functions,
    brought to canonical form by ``sp.cancel``, which gives 0 exactly for a zero function).

    * ``jacobian``: d/deps softmax(log q + eps v) at eps = 0 minus H v for q on
      the simplex (q_K = 1 - q_1 - ... - q_(K-1)) and any v: H = diag q - q q^T is the
      softmax Jacobian at q.
    * ``linear_step``: e' = (I + a H)^-1 (a H e + H dL) solves the linearisation
      e' = H (a (e - e') + dL) of p' = softmax(a (T - p') + L) around p' = q,
      T = q + e.
    * ``pair_rate``: on a pair (K = 2, q = (p, 1 - p)) the direction (1, -1)
      is an eigenvector of (I + a H)^-1 a H with eigenvalue 2 a p (1-p) / (1 + 2 a p (1-p)).
    * ``uniform_rate``: at q uniform on K classes, a zero-sum direction has
      eigenvalue a/(a + K) (the linearised alpha with beta = 1).
    """
    q = sp.symbols(f"q0:{K}")
    v = sp.Matrix(sp.symbols(f"v0:{K}"))
    grow = [sp.exp(sp.log(qj) + _eps * vj) for qj, vj in zip(q, v)]
    d_softmax = sp.Matrix([gj / sp.Add(*grow) for gj in grow]).diff(_eps).subs(_eps, 0)
    jac = (d_softmax - _softmax_jacobian(q) * v).subs(q[-1], 1 - sp.Add(*q[:-1])).applyfunc(sp.cancel)
    e = sp.Matrix(sp.symbols(f"e0:{K}"))
    dL = sp.Matrix(sp.symbols(f"L0:{K}"))
    H = _softmax_jacobian(q)
    eye = sp.eye(K)
    e_new = (eye + _a * H).inv() * (_a * H * e + H * dL)
    lin = (e_new - H * (_a * (e - e_new) + dL)).applyfunc(sp.cancel)
    H2 = _softmax_jacobian([_p, 1 - _p])
    M2 = (sp.eye(2) + _a * H2).inv() * _a * H2
    v2 = sp.Matrix([1, -1])
    lam2 = 2 * _a * _p * (1 - _p) / (1 + 2 * _a * _p * (1 - _p))
    pair = (M2 * v2 - lam2 * v2).applyfunc(sp.cancel)
    Hu = _softmax_jacobian([sp.Rational(1, K)] * K)
    Mu = (eye + _a * Hu).inv() * _a * Hu
    w = sp.Matrix([1, -1] + [0] * (K - 2))
    uni = (Mu * w - _a / (_a + K) * w).applyfunc(sp.cancel)
    return {"jacobian": jac, "linear_step": lin, "pair_rate": pair, "uniform_rate": uni}


def verify_pair_recursion() -> dict:
    """Residuals that must simplify to 0 for the pair formula.

    * ``pair_logit``: with two active classes and logits a r + L, r = (t - p, p - t),
      log(p_k / p_k') - [2 a (t - p) + L_k - L_k'] (the log-odds are linear in the residual).
    * ``mean``: (1 - eta) p_c + eta p_n - mu for p_c = mu + eta g, p_n = mu - (1-eta) g
      (the class mean output mu is the same at every round).
    * ``recursion``: eliminating the class offset between the clean and noisy
      equations logit p = A (t - p) + l: [logit p_c - logit p_n] - A[(t_c - t_n) - (p_c - p_n)]
      equals Lambda(g) - A (g_prev - g).
    * ``step_time``: the ODE time int_0^{h} A / (L0 + L1 u) du of one implicit
      step h = L0 / A (Lambda linear over the step) is 1 - L1/(2A) + O(A^-2).
    """
    a, A, t, pp, Lk, Lk2 = _pr_a, _pr_A, _pr_t, _pr_p, _pr_Lk, _pr_Lk2
    z1 = a * (t - pp) + Lk
    z2 = a * (pp - t) + Lk2
    pk = sp.exp(z1) / (sp.exp(z1) + sp.exp(z2))
    pk2 = sp.exp(z2) / (sp.exp(z1) + sp.exp(z2))
    pair_logit = sp.simplify(sp.expand_log(sp.log(sp.simplify(pk / pk2))) - (2 * a * (t - pp) + Lk - Lk2))
    eta, mu, g, gp = _pr_eta, _pr_mu, _pr_g, _pr_gp
    pc, pn = mu + eta * g, mu - (1 - eta) * g
    mean = sp.simplify((1 - eta) * pc + eta * pn - mu)

    def logit(x):
        return sp.log(x / (1 - x))

    tc, tn = mu + eta * gp, mu - (1 - eta) * gp  # targets: the previous outputs, same class mean mu
    ell = _pr_ell
    # clean and noisy equations logit p = A (t - p) + ell, written as residuals; their difference
    # eliminates ell and must equal Lambda(g) - A (g_prev - g)
    eq_c = logit(pc) - A * (tc - pc) - ell
    eq_n = logit(pn) - A * (tn - pn) - ell
    lam_g = PAIR_LAMBDA
    recursion = sp.simplify(sp.expand((eq_c - eq_n) - (lam_g - A * (gp - g))))
    L0, L1, u, x = _pr_L0, _pr_L1, _pr_u, _pr_x  # x = 1/A
    tau = sp.integrate(1 / (x * (L0 + L1 * u)), (u, 0, L0 * x))
    step_time = sp.simplify(sp.series(tau, x, n=2).removeO() - (1 - L1 * x / 2))
    return {"pair_logit": pair_logit, "mean": mean, "recursion": recursion, "step_time": step_time}
