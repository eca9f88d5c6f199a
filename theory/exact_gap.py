"""Why the exact softmax needs more rounds than the linearised theory: two corrections, measured.

The linearised theory expands softmax around the uniform distribution on all
K classes: softmax(z) ~ (1 + z - mean z)/K, i.e. a logit-to-output slope 1/K,
which puts K N lam into every filter mu/(mu + K N lam). Two facts of the exact
optimum break that expansion:

1. **Active classes** (:func:`active_set_rounds`). At small lambda the outputs
   of class k put (almost) no mass on labels that never occur in class k
   (under superclass-pair noise only the two classes of the pair are active).
   Expanding softmax restricted to an active set of m classes (the others at
   probability 0) around its uniform point gives (1 + z_j - mean_A z)/m (derived
   in :func:`verify_active_set_linearisation`), so the filters become
   mu/(mu + m N lam): the linearised theory with lambda replaced by
   lambda m / K. With m < K the own-label filter alpha grows towards 1 and the
   noisy labels are forgotten more slowly: more rounds. Symmetric noise keeps
   m = K (every label occurs in every class), so this correction is zero there.
2. **Saturation** (:func:`decoupled_rounds`). The exact outputs are far from
   the expansion point at the first rounds (the teacher memorises noisy
   labels: outputs near one-hot), where the slope p(1 - p) is small and the
   own label is forgotten faster than the expansion says. This is captured by
   the class-decoupled limit of the reduced system: with
   a = s (1 - c) (s = 1/(N lam)) fixed and n (c - d)/(1 - c) -> infinity, the
   class-level residual sums vanish, each class keeps its mean output equal to
   its mean target, and the types of class k solve
   r_tau = T_tau - softmax(a r_tau + L_k), sum_{tau in k} n_tau r_tau = 0
   with a free class offset L_k. It has one parameter (a) and no between-class
   coupling. It is solved here numerically (float Newton for (r, L)), so it is
   a reduced model, not a closed form.

3. **Operating-point linearisation** (:func:`operating_point_rounds`), a
   closed form between the two: linearise the class-decoupled model around its
   round -> infinity fixed point (every output of class k equal to the class's
   label shares q_k = C_k) instead of the uniform point: with the softmax
   Jacobian H_k = diag(q_k) - q_k q_k^T, a deviation e of a type's target from
   q_k is mapped to (I + a H_k)^-1 a H_k e per fit (derived in
   :func:`verify_operating_point_linearisation`), so after s fits a type-(k, l)
   instance outputs q_k + M_k^s (e_l - q_k). For a superclass pair
   (q = (p, 1-p) on the pair) the rate is 2 a p (1-p) / (1 + 2 a p (1-p)),
   i.e. the linearised alpha with K replaced by 1/(2 p (1-p)); at the uniform
   point on all K classes it is the linearised alpha = a/(a + K).

4. **Pair formula** (:func:`pair_formula_rounds`), the analytic form of 2.
   for classes with two labels (superclass pairs): with class-mean share
   mu = 1 - eta of the true class, clean and noisy outputs p_c = mu + eta g,
   p_n = mu - (1 - eta) g are fixed by their gap g, and one fit maps the
   target gap to the output gap by A (g_prev - g) = Lambda(g),
   Lambda(g) = logit(mu + eta g) - logit(mu - (1-eta) g), A = 2 a
   (:func:`verify_pair_recursion`): an implicit Euler step of the ODE
   dg/ds = -Lambda(g)/A. Counting steps (the teacher's gap g_1 solves
   A (1 - g_1) = Lambda(g_1); the noisy instance is correct once
   g < g* = (1/2 - eta)/(1 - eta)) gives, to second order in 1/A,
   s = 1 + A int_{g*}^{g_1} dg / Lambda(g) + (1/2) log(Lambda(g_1)/Lambda(g*))
   fits (the last term: each implicit step covers 1 - Lambda'/(2A) of ODE time,
   checked in sympy), and the first perfect round is ceil(s) - 1. The
   linearised theory is the same count with Lambda replaced by a linear
   function (exponential decay at a fixed rate); the real Lambda is steep near
   g = 1 (saturated teacher: fast early rounds) and flat near g* (slow late
   rounds), and the late rounds dominate the count.

The measurements (``python benchmarks/bench_exact_level.py --gap``) compare
all of them with the certified exact rounds of :mod:`theory.exact_level`.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from .conditions import min_rounds
from .exact_level import _check_cell, _softmax_rows

__all__ = [
    "verify_active_set_linearisation",
    "active_classes",
    "active_set_rounds",
    "decoupled_rounds",
    "verify_operating_point_linearisation",
    "operating_point_rounds",
    "verify_pair_recursion",
    "pair_formula_rounds",
    "gap_table",
]

_mu, _lam, _N, _m, _K = sp.symbols("mu lambda N m K", positive=True)
_s = sp.symbols("s", positive=True)


def verify_active_set_linearisation(m: int = 3, K: int = 5) -> dict:
    """Residuals that must simplify to 0.

    * ``first_order``: softmax over an active set of m classes (logits eps z_j),
      expanded to first order in eps, minus (1 + eps (z_j - mean z))/m.
    * ``scalar_fixed_point``: on an eigenvector of G with eigenvalue mu, the
      linear fixed point x = (t - x) mu s / m (slope 1/m) solved for x, minus
      t mu/(mu + m N lam) (s = 1/(N lam)).
    * ``lambda_substitution``: mu/(mu + K N lam') with lam' = lam m/K, minus
      mu/(mu + m N lam): the active-set filters are the linearised filters at
      lambda m / K (so :func:`theory.conditions.min_rounds` applies).
    """
    z = sp.symbols(f"z0:{m}", real=True)
    eps = sp.Symbol("epsilon", real=True)
    e = [sp.exp(eps * zj) for zj in z]
    tot = sp.Add(*e)
    mean = sp.Add(*z) / m
    first = [sp.simplify(sp.series(ej / tot, eps, 0, 2).removeO() - (1 + eps * (zj - mean)) / m) for ej, zj in zip(e, z)]
    x, t = sp.symbols("x t", real=True)
    sol = sp.solve(sp.Eq(x, (t - x) * _mu * _s / m), x)[0]
    fp = sp.simplify(sol.subs(_s, 1 / (_N * _lam)) - t * _mu / (_mu + m * _N * _lam))
    sub = sp.simplify(_mu / (_mu + K * _N * (_lam * m / K)) - _mu / (_mu + m * _N * _lam))
    return {"first_order": first, "scalar_fixed_point": fp, "lambda_substitution": sub}


def active_classes(counts) -> int:
    """Largest number of distinct given labels within one class (at least 2)."""
    counts = np.asarray(counts)
    return max(2, int((counts > 0).sum(axis=1).max()))


def active_set_rounds(K, n, c, d, lam, counts) -> int | None:
    """Correction 1: linearised minimum round with softmax slope 1/m on the m active classes (lambda -> lambda m / K)."""
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    m = active_classes(counts)
    C = counts / counts.sum(axis=1, keepdims=True)
    return min_rounds(K, n, c, d, lam * m / K, C)


def _limit_newton(a, w, T, r, L, tol=1e-13, max_iter=200):
    """Newton (merit backtracking) on the class-decoupled limit of one class:
    r_tau - T_tau + softmax(a r_tau + L) = 0 per type, sum_tau w_tau r_tau + mean(L) 1 = 0
    (the mean(L) term fixes softmax's shift freedom; at a solution it vanishes).
    Returns (r, L, max residual)."""
    m, K = T.shape
    nv = m * K + K

    def resid(r, L):
        P = _softmax_rows(a * r + L[None, :])
        F = r - T + P
        G = w @ r + L.mean()
        return np.concatenate([F.ravel(), G]), P

    R, P = resid(r, L)
    for _ in range(max_iter):
        res = float(np.max(np.abs(R)))
        if res <= tol:
            break
        J = np.zeros((nv, nv))
        for t in range(m):
            H = np.diag(P[t]) - np.outer(P[t], P[t])
            sl = slice(t * K, (t + 1) * K)
            J[sl, sl] = np.eye(K) + a * H
            J[sl, m * K :] = H
            J[m * K :, sl] = w[t] * np.eye(K)
        J[m * K :, m * K :] = 1.0 / K
        step = -np.linalg.solve(J, R)
        f0 = float(R @ R)
        tau = 1.0
        while True:
            rn = r + tau * step[: m * K].reshape(m, K)
            Ln = L + tau * step[m * K :]
            Rn, Pn = resid(rn, Ln)
            if float(Rn @ Rn) <= (1 - 1e-4 * tau) * f0 or tau < 1e-10:
                break
            tau *= 0.5
        r, L, R, P = rn, Ln, Rn, Pn
    return r, L, float(np.max(np.abs(R)))


def decoupled_rounds(K, n, c, d, lam, counts, rounds) -> int | None:
    """Correction 2: first perfect round of the class-decoupled saturated model (None: not by ``rounds``).

    Each class on its own (the limit decouples them), a = (1 - c)/(N lam):
    r_tau = T_tau - softmax(a r_tau + L), sum_tau n_tau r_tau = 0 solved by
    float Newton for (r, L) (:func:`_limit_newton`); a type is correct when its true-class output beats every other
    by more than 1e-9; the cell's round is the first at which every class is perfect. A class
    with a single type keeps its one-hot target (in the limit): always correct
    or never. Raises RuntimeError if a round's Newton residual exceeds 1e-9.
    """
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    a = (1 - c) / (K * n * lam)
    perfect = np.ones(rounds + 1, dtype=bool)
    for k in range(K):
        labels = np.flatnonzero(counts[k])
        if labels.size == 1:
            # one type: in the limit its outputs equal its (one-hot) target at every round
            if labels[0] != k:
                return None
            continue
        if k not in labels:
            return None  # no instance of class k carries label k: its output for k stays 0
        # In the limit, classes absent from the class's labels get probability exactly 0 (their
        # class-level residual sum must vanish while every term is -p_j <= 0): work on the active set.
        w = counts[k, labels] / n
        T = np.eye(labels.size)
        kk = int(np.flatnonzero(labels == k)[0])
        r, L = np.zeros((labels.size, labels.size)), np.zeros(labels.size)
        for t in range(rounds + 1):
            r, L, res = _limit_newton(a, w, T, r, L)
            if not res <= 1e-10:
                raise RuntimeError(f"decoupled_rounds: residual {res:.3e} at round {t} (class {k}), must be <= 1e-10")
            P = T - r
            other = np.delete(P, kk, axis=1).max(axis=1) if labels.size > 1 else np.zeros(1)
            perfect[t] &= bool(np.all(P[:, kk] - other > 1e-9))
            T = P
    hits = np.flatnonzero(perfect)
    return int(hits[0]) if hits.size else None


def verify_operating_point_linearisation(K: int = 3) -> dict:
    """Residuals that must simplify to 0 (symbolic label shares q, K classes).

    * ``linear_step``: e' = (I + a H)^-1 (a H e + H dL) solves the linearisation
      e' = H (a (e - e') + dL) of p' = softmax(a (T - p') + L) around p' = q,
      T = q + e (H = diag q - q q^T, the softmax Jacobian at q).
    * ``pair_rate``: on a pair (K = 2, q = (p, 1 - p)) the direction (1, -1)
      is an eigenvector of (I + a H)^-1 a H with eigenvalue 2 a p (1-p) / (1 + 2 a p (1-p)).
    * ``uniform_rate``: at q uniform on K classes, a zero-sum direction has
      eigenvalue a/(a + K) (the linearised alpha with beta = 1).
    """
    a = sp.Symbol("a", positive=True)
    q = sp.symbols(f"q0:{K}", positive=True)
    e = sp.Matrix(sp.symbols(f"e0:{K}", real=True))
    dL = sp.Matrix(sp.symbols(f"L0:{K}", real=True))
    H = sp.diag(*q) - sp.Matrix(q) * sp.Matrix(q).T
    eye = sp.eye(K)
    e_new = (eye + a * H).inv() * (a * H * e + H * dL)
    lin = (e_new - H * (a * (e - e_new) + dL)).applyfunc(sp.simplify)
    p = sp.Symbol("p", positive=True)
    H2 = sp.Matrix([[p * (1 - p), -p * (1 - p)], [-p * (1 - p), p * (1 - p)]])
    M2 = (sp.eye(2) + a * H2).inv() * a * H2
    v = sp.Matrix([1, -1])
    lam2 = 2 * a * p * (1 - p) / (1 + 2 * a * p * (1 - p))
    pair = (M2 * v - lam2 * v).applyfunc(sp.simplify)
    Hu = (sp.eye(K) - sp.ones(K, K) / K) / K
    Mu = (sp.eye(K) + a * Hu).inv() * a * Hu
    w = sp.Matrix([1, -1] + [0] * (K - 2))
    uni = (Mu * w - a / (a + K) * w).applyfunc(sp.simplify)
    return {"linear_step": lin, "pair_rate": pair, "uniform_rate": uni}


def operating_point_rounds(K, n, c, d, lam, counts, rounds: int = 10_000) -> int | None:
    """Correction 3 (closed form): first round t (t + 1 fits) at which every present type of every class,
    predicted as q_k + M_k^(t+1) (e_l - q_k), has its true class strictly ahead (by more than 1e-12)
    (None: not by ``rounds``)."""
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    a = (1 - c) / (K * n * lam)
    eye = np.eye(K)
    state = []
    for k in range(K):
        q = counts[k] / counts[k].sum()
        H = np.diag(q) - np.outer(q, q)
        M = np.linalg.solve(eye + a * H, a * H)
        labels = np.flatnonzero(counts[k])
        state.append((k, q, M, (eye[labels] - q).T))  # columns: e_l - q
    devs = [D.copy() for *_, D in state]
    for t in range(rounds + 1):
        ok = True
        for i, (k, q, M, _) in enumerate(state):
            devs[i] = M @ devs[i]
            P = q[:, None] + devs[i]
            other = np.delete(P, k, axis=0).max(axis=0)
            ok = ok and bool(np.all(P[k] - other > 1e-12))
        if ok:
            return t
    return None


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
    a, A, t, pp, Lk, Lk2 = sp.symbols("a A t p L_k L_k2", positive=True)
    z1 = a * (t - pp) + Lk
    z2 = a * (pp - t) + Lk2
    pk = sp.exp(z1) / (sp.exp(z1) + sp.exp(z2))
    pk2 = sp.exp(z2) / (sp.exp(z1) + sp.exp(z2))
    pair_logit = sp.simplify(sp.expand_log(sp.log(sp.simplify(pk / pk2)), force=True) - (2 * a * (t - pp) + Lk - Lk2))
    eta, mu, g, gp = sp.symbols("eta mu g g_prev", positive=True)
    pc, pn = mu + eta * g, mu - (1 - eta) * g
    mean = sp.simplify((1 - eta) * pc + eta * pn - mu)

    def logit(x):
        return sp.log(x / (1 - x))

    tc, tn = mu + eta * gp, mu - (1 - eta) * gp  # targets: the previous outputs, same class mean mu
    ell = sp.Symbol("ell", real=True)
    # clean and noisy equations logit p = A (t - p) + ell, written as residuals; their difference
    # eliminates ell and must equal Lambda(g) - A (g_prev - g)
    eq_c = logit(pc) - A * (tc - pc) - ell
    eq_n = logit(pn) - A * (tn - pn) - ell
    lam_g = sp.log((mu + eta * g) / (1 - mu - eta * g)) - sp.log((mu - (1 - eta) * g) / (1 - mu + (1 - eta) * g))
    recursion = sp.simplify(sp.expand((eq_c - eq_n) - (lam_g - A * (gp - g))))
    L0, L1, u, x = sp.symbols("L0 L1 u x", positive=True)  # x = 1/A
    tau = sp.integrate(1 / (x * (L0 + L1 * u)), (u, 0, L0 * x))
    step_time = sp.simplify(sp.series(tau, x, 0, 2).removeO() - (1 - L1 * x / 2))
    return {"pair_logit": pair_logit, "mean": mean, "recursion": recursion, "step_time": step_time}


def pair_formula_rounds(K, n, c, d, lam, counts) -> int | None:
    """Correction 4 (formula, see module doc): predicted first perfect round when every class has at most two
    given labels (else ValueError); None when some class's true label is not in the strict majority."""
    import math

    from scipy.integrate import quad
    from scipy.optimize import brentq

    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    A = 2 * (1 - c) / (K * n * lam)
    worst = 0
    for k in range(K):
        labels = np.flatnonzero(counts[k])
        if labels.size > 2:
            raise ValueError(f"class {k} has {labels.size} given labels, the pair formula needs at most 2")
        if labels.size == 1:
            if labels[0] != k:
                return None
            continue
        eta = float(counts[k, labels[labels != k]].sum()) / counts[k].sum() if k in labels else 1.0
        if not eta < 0.5:
            return None
        mu = 1.0 - eta

        def Lam(gap, mu=mu, eta=eta):
            return math.log((mu + eta * gap) / (1 - mu - eta * gap)) - math.log((mu - (1 - eta) * gap) / (1 - mu + (1 - eta) * gap))

        g_star = (0.5 - eta) / (1 - eta)
        g1 = brentq(lambda x: A * x + Lam(x) - A, 0.0, 1.0 - 1e-15, xtol=1e-15)
        if g1 < g_star:
            continue  # the teacher is already perfect on this class
        integral = quad(lambda x: A / Lam(x), g_star, g1, limit=200)[0]
        fits = 1 + integral + 0.5 * math.log(Lam(g1) / Lam(g_star))
        worst = max(worst, math.ceil(fits) - 1)
    return worst


def gap_table(K, n, c, d, lam, noise, etas, rounds, superclass_size: int = 2) -> list[dict]:
    """Per noise rate: linearised, the three corrections and the certified exact first perfect round."""
    from .conditions import min_rounds as linear_rounds
    from .corruption import corruption_matrix, exact_label_counts
    from .exact_level import min_rounds_exact

    rows = []
    for eta in etas:
        C = corruption_matrix(noise, K, eta, superclass_size)
        counts = exact_label_counts(C, n)
        rows.append(
            {
                "noise": noise,
                "eta": eta,
                "linear": linear_rounds(K, n, c, d, lam, C),
                "active_set": active_set_rounds(K, n, c, d, lam, counts),
                "operating_point": operating_point_rounds(K, n, c, d, lam, counts, rounds),
                "decoupled": decoupled_rounds(K, n, c, d, lam, counts, rounds),
                "pair_formula": pair_formula_rounds(K, n, c, d, lam, counts) if noise == "superclass" and superclass_size == 2 else None,
                "exact": min_rounds_exact(K, n, c, d, lam, counts, rounds),
            }
        )
    return rows
