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
   in :func:`theory.symbolic_gap.verify_active_set_linearisation`), so the filters become
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
   :func:`theory.symbolic_gap.verify_operating_point_linearisation`), so after s fits a type-(k, l)
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
   (:func:`theory.symbolic_gap.verify_pair_recursion`): an implicit Euler step of the ODE
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

import math

import numpy as np

from .conditions import min_rounds
from .exact_level import _check_cell, _softmax_rows
from .validate import check_label_counts, check_rounds

__all__ = [
    "active_classes",
    "active_set_rounds",
    "decoupled_rounds",
    "operating_point_rounds",
    "pair_formula_rounds",
    "gap_table",
]

def active_classes(counts) -> int:
    """Largest number of distinct given labels within one class (at least 2)."""
    return _active_classes(check_label_counts(counts))


def _active_classes(counts) -> int:
    return max(2, int((counts > 0).sum(axis=1).max()))


def active_set_rounds(K, n, c, d, lam, counts) -> int | None:
    """Correction 1: linearised minimum round with softmax slope 1/m on the m active classes (lambda -> lambda m / K)."""
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    m = _active_classes(counts)
    C = counts / n  # every row of counts sums to n (validated)
    return min_rounds(K, n, c, d, lam * m / K, C)


# backtracking steps of _limit_newton: 1, 1/2, ..., 2^-34 (the last is taken whatever the merit)
_BACKTRACK = 0.5 ** np.arange(35)


def _limit_newton(
    a, w, T, r, L, tol=1e-13,
    # no mutate: a safety cap; solves stop at tol after at most ~12 steps (quadratic convergence), far below it
    max_iter=200,  # pragma: no mutate
):
    """Newton (merit backtracking) on the class-decoupled limit of one class:
    r_tau - T_tau + softmax(a r_tau + L) = 0 per type, sum_tau w_tau r_tau + mean(L) 1 = 0
    (the mean(L) term fixes softmax's shift freedom; at a solution it vanishes).
    Stops as soon as the max residual is <= tol, else after max_iter (default 200) Newton steps.
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
        # no mutate: the gauge block only sets the step along L's shift direction 1, which softmax ignores and
        # which stays 0 from a zero-mean L (any nonzero value gives the same iterates up to rounding)
        J[m * K :, m * K :] = 1.0 / K  # pragma: no mutate
        step = -np.linalg.solve(J, R)
        f0 = float(R @ R)
        for tau in _BACKTRACK:
            rn = r + tau * step[: m * K].reshape(m, K)
            Ln = L + tau * step[m * K :]
            Rn, Pn = resid(rn, Ln)
            # no mutate: Armijo test of a safeguard (it rejects a full Newton step on ~0.5 % of random problems,
            # where plain Newton converges too); the result is checked by its residual, which every caller asserts
            if float(Rn @ Rn) <= (1 - 1e-4 * tau) * f0:  # pragma: no mutate
                break
        r, L, R, P = rn, Ln, Rn, Pn
    return r, L, float(np.max(np.abs(R)))


def decoupled_rounds(K, n, c, d, lam, counts, rounds) -> int | None:
    """Correction 2: first perfect round of the class-decoupled saturated model (None: not by ``rounds``).

    Each class on its own (the limit decouples them), a = (1 - c)/(N lam):
    r_tau = T_tau - softmax(a r_tau + L), sum_tau n_tau r_tau = 0 solved by
    float Newton for (r, L) (:func:`_limit_newton`); a type is correct when its true-class output beats every other
    by more than 1e-9; the cell's round is the first at which every class is perfect. A class
    with a single type keeps its one-hot target (in the limit): always correct
    or never. Raises RuntimeError if a round's Newton residual exceeds 1e-10.
    """
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    rounds = check_rounds("rounds", rounds)
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
            margins = P[:, [kk]] - np.delete(P, kk, axis=1)  # own label minus each other label (labels.size >= 2)
            # no mutate: > vs >= at the tie tolerance differs only for a margin of exactly 1e-9
            perfect[t] &= bool(np.all(margins > 1e-9))  # pragma: no mutate
            T = P
    hits = np.flatnonzero(perfect)
    return int(hits[0]) if hits.size else None


def operating_point_rounds(K, n, c, d, lam, counts, rounds: int = 10_000) -> int | None:
    """Correction 3 (closed form): first round t (t + 1 fits) at which every present type of every class,
    predicted as q_k + M_k^(t+1) (e_l - q_k), has its true class strictly ahead (by more than 1e-12)
    (None: not by ``rounds``)."""
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    rounds = check_rounds("rounds", rounds)
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
            margins = P[k] - np.delete(P, k, axis=0)  # own class minus each other class, per present type
            # no mutate: > vs >= at the tie tolerance differs only for a margin of exactly 1e-12
            ok = ok and bool(np.all(margins > 1e-12))  # pragma: no mutate
        if ok:
            return t
    return None


def _pair_lambda(gap: float, eta: float) -> float:
    """Lambda(g) of :func:`theory.symbolic_gap.verify_pair_recursion` (``recursion``) at class mean mu = 1 - eta:
    log((mu + eta g)/(1 - mu - eta g)) - log((mu - (1 - eta) g)/(1 - mu + (1 - eta) g)), written with
    1 - mu - eta g = eta (1 - g) and mu - (1 - eta) g = mu (1 - g) so that nothing cancels near g = 1."""
    mu, rest = 1.0 - eta, 1.0 - gap
    return math.log((1.0 - eta * rest) / (eta * rest)) - math.log(mu * rest / (eta + mu * gap))


def pair_formula_rounds(K, n, c, d, lam, counts) -> int | None:
    """Correction 4 (formula, see module doc): predicted first perfect round when every class has at most two
    given labels (else ValueError); None when some class's true label is not in the strict majority."""
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
        eta = float(n - counts[k, k]) / n  # share of wrong labels in class k (1 if label k is absent)
        if not eta < 0.5:
            return None
        g_star = (0.5 - eta) / (1 - eta)
        g1 = brentq(lambda x: A * x + _pair_lambda(x, eta) - A, 0.0, 1.0 - 1e-15, xtol=1e-15)
        if g1 < g_star:
            continue  # the teacher is already perfect on this class
        integral = quad(lambda x: A / _pair_lambda(x, eta), g_star, g1)[0]
        fits = 1 + integral + 0.5 * math.log(_pair_lambda(g1, eta) / _pair_lambda(g_star, eta))
        worst = max(worst, math.ceil(fits) - 1)
    return worst


def gap_table(K, n, c, d, lam, noise, etas, rounds, superclass_size: int = 2) -> list[dict]:
    """Per noise rate: linearised, the three corrections and the certified exact first perfect round."""
    from .conditions import min_rounds as linear_rounds
    from .corruption import corruption_matrix, exact_label_counts
    from .exact_level import min_rounds_exact

    rounds = check_rounds("rounds", rounds)
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
