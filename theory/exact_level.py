"""The exact softmax optimum on the block model, reduced to instance types, and certified.

Three layers, each checked against the next:

1. **Symbolic reduction** (:mod:`theory.symbolic_exact`).
   On the block Gram G = (1-c) I + (c-d) B + d J (B = within-class blocks of
   ones, J = all ones) and residuals u = T - P (K x N), the logits
   Z = s U G (s = 1/(N lam)) of instance i of class k are
   z_i = s[(1-c) u_i + (c-d) S_k + d S] with S_k the sum of u_j over class k
   and S the sum over all instances; sympy derives this from U B and U J on a
   generic instance. The instance-type indicator matrix E (N x m, types
   tau = (true class k, given label l) with counts n_tau) spans a G-invariant
   subspace, G E = E M with the m x m type-mixing matrix
   M = (E^T E)^-1 E^T G E, M[tau, sigma] = (1-c) [tau = sigma]
   + ((c-d) [k_tau = k_sigma] + d) n_sigma (derived, then checked on a second
   instance). The fit is strictly convex (Hessian = lambda I + a sum of
   positive semidefinite terms, since v^T (diag p - p p^T) v is the variance
   of v under p, an identity checked in sympy), so its optimum is unique;
   permuting instances of equal type leaves G (checked: Pi G Pi^T = G) and the
   targets unchanged, so it maps the optimum to itself: the optimum is
   type-symmetric, and the N K stationarity equations reduce to the m K
   equations F_tau(r) = r_tau - T_tau + softmax(s (M r)_tau) = 0.
2. **Float solution** (:func:`solve_reduced`): Newton's method with Armijo
   backtracking on the strictly convex reduced objective
   sum_tau n_tau [CE(T_tau, softmax(z_tau)) + r_tau . z_tau / 2], z = s M r,
   whose gradient is diag(n) s M F(r).
3. **Certificate** (:func:`certified_rounds`): ball arithmetic (python-flint
   ``arb``, default 128 bits). Per round, a Krawczyk test around the float
   solution (polished by two Newton steps in ball arithmetic):
   K(X) = x - Y F(x, T~) + Y (T - T~) + (I - Y J(X)) (X - x), Y ~ J(x)^-1;
   K(X) inside the interior of X proves that for EVERY target T in the box
   (the enclosure of the previous round's outputs, centre T~) F(., T) has
   exactly one zero in X (F is affine in T, so the T-dependence enters K
   linearly). The outputs' enclosure is
   P = T - r in T~ - x + Y F(x, T~) + (I - Y)(T - T~) - (I - Y J(X))(X - x),
   intersected with softmax(s M K(X)). A round is "perfect" when every present
   type's margin (true class output minus every other output) is proved > 0,
   "not perfect" when some margin is proved < 0, else "undecided" (then the
   whole chain is recomputed at twice the precision, up to ``max_prec``).
   Model parameters c, d, lam are read as exact rationals
   (:func:`theory.rational.rational`, so 0.4 is 2/5), like the rest of theory/.

Rounds are t = 0 (teacher, one-hot targets), 1, 2, ... (t + 1 fits); round t's
targets are round t-1's outputs. Ties count as failures.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from .rational import rational
from .validate import check_block_correlations, check_bool, check_int, check_label_counts, check_positive, check_real, check_rounds
from ._generated import mixing_entry
from .corruption import corruption_matrix, exact_label_counts

__all__ = [
    "mixing_matrix",
    "ReducedSolution",
    "solve_reduced",
    "ExactRoundsReport",
    "certified_rounds",
    "min_rounds_exact",
    "exact_boundary",
    "UNDECIDED",
]

UNDECIDED = "undecided"
DEFAULT_PREC = 128
MAX_PREC = 512

def _types(counts):
    ks, ls = np.nonzero(counts)
    return ks, ls, counts[ks, ls]


def mixing_matrix(K, n, c, d, lam, counts) -> np.ndarray:
    """Float m x m matrix s M (logits of the present types = (s M) r), types in row-major (k, l) order."""
    return _mixing_matrix(*_check_cell(K, n, c, d, lam, counts))


def _mixing_matrix(K, n, c, d, lam, counts) -> np.ndarray:
    """:func:`mixing_matrix` on validated input (as returned by :func:`_check_cell`)."""
    ks, _, nm = _types(counts)
    f = mixing_entry
    m = ks.size
    scale = 1.0 / (K * n * lam)
    out = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            out[a, b] = f(c, d, int(ks[a] == ks[b]), int(a == b), int(nm[b])) * scale
    return out


# ============================================================================ 2. float solution


@dataclass(frozen=True)
class ReducedSolution:
    """Float solution of the reduced system: outputs (K, K, K) ([k, l] = output of type (k, l); NaN if absent),
    r (m, K) residuals T - P of the present types, residual max|F|, Newton iterations."""

    outputs: np.ndarray
    r: np.ndarray
    residual: float
    iterations: int


def _softmax_rows(Z):
    from scipy.special import softmax  # scipy.special takes ~0.3 s to import: only when a cell is solved

    return softmax(Z, axis=1)


def _newton(Ms, nm, T, r0, tol, max_iter):
    """Damped Newton on the convex reduced objective; returns (r, J at r, max|F|, iterations)."""
    m, K = T.shape
    r = np.zeros((m, K)) if r0 is None else r0.copy()
    Mk = np.kron(Ms, np.eye(K))
    S = nm[:, None] * Ms
    eyeK = np.eye(K)[None]

    from scipy.special import log_softmax

    def objective(r):
        z = Ms @ r
        logp = log_softmax(z, axis=1)
        return float(nm @ (-(T * logp).sum(axis=1) + 0.5 * (r * z).sum(axis=1)))

    f = objective(r)
    it = 0
    while True:
        P = _softmax_rows(Ms @ r)
        F = r + P - T
        H = P[:, :, None] * eyeK - P[:, :, None] * P[:, None, :]
        DH = np.zeros((m * K, m * K))
        for a in range(m):
            DH[a * K : (a + 1) * K, a * K : (a + 1) * K] = H[a]
        J = np.eye(m * K) + DH @ Mk
        res = float(np.max(np.abs(F)))
        if res <= tol or it >= max_iter:
            return r, J, res, it
        it += 1
        delta = -np.linalg.solve(J, F.ravel()).reshape(m, K)
        slope = float(np.vdot(S @ F, delta))
        step = 1.0
        while True:
            rn = r + step * delta
            fn = objective(rn)
            # no mutate: Armijo acceptance with a 16 eps |f| allowance for round-off; it only steers the
            # line search, the result is judged by the asserted residual max|F| <= tol
            if fn <= f + 1e-4 * step * slope + 16 * _EPS * abs(f):  # pragma: no mutate
                break
            step *= 0.5
            # no mutate: this floor only ends a stalled line search; the caller judges the residual
            if step < 1e-12:  # pragma: no mutate
                return r, J, res, it  # no further progress in float: the caller judges the residual
        r, f = rn, fn


def _check_cell(K, n, c, d, lam, counts):
    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=1)
    c, d = check_block_correlations(K, n, c, d)
    lam = check_positive("lam", lam)
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K})")
    return K, n, c, d, lam, counts


def solve_reduced(K, n, c, d, lam, counts, targets, r0=None, tol: float = 1e-13, max_iter: int = 100) -> ReducedSolution:
    """Float solution of the reduced stationarity equations for per-type targets (K, K, K).

    ``r0``: start (m, K) for the residuals of the m present types (default 0). ``tol`` >= 0,
    ``max_iter`` >= 0. Raises RuntimeError if max|F| > tol after ``max_iter`` Newton steps.
    """
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    ks, ls, nm = _types(counts)
    T = np.asarray(targets, dtype=np.float64)
    if T.shape != (K, K, K):
        raise ValueError(f"targets has shape {T.shape}, must be ({K}, {K}, {K})")
    if r0 is not None:
        try:
            r0 = np.asarray(r0, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"r0 == {r0!r}, must be None or an array of real numbers") from None
        if r0.shape != (ks.size, K):
            raise ValueError(f"r0 has shape {r0.shape}, must be ({ks.size}, {K}) (present types x classes)")
        if not np.all(np.isfinite(r0)):
            raise ValueError("r0 has non-finite entries, must be finite")
    tol = check_real("tol", tol)
    if not tol >= 0:
        raise ValueError(f"tol == {tol}, must be >= 0")
    max_iter = check_int("max_iter", max_iter, minimum=0)
    Tm = T[ks, ls]
    r, _, res, it = _newton(_mixing_matrix(K, n, c, d, lam, counts), nm, Tm, r0, tol, max_iter)
    if not res <= tol:
        raise RuntimeError(f"solve_reduced: max|F| == {res:.3e} after {it} Newton steps, must be <= tol == {tol:g}")
    out = np.full((K, K, K), np.nan)
    out[ks, ls] = Tm - r
    return ReducedSolution(out, r, res, it)


# ============================================================================ 3. certificate


def _flint():
    try:
        import flint
    except ImportError as exc:  # pragma: no cover - declared dependency
        raise ImportError("theory.exact_level needs python-flint (pip install 'python-flint>=0.6')") from exc
    return flint


@dataclass(frozen=True)
class ExactRoundsReport:
    """Certified exact-level rounds of one cell.

    first: the first perfect round (int), None if rounds 0..``rounds`` are all
    proved not perfect, or "undecided". per_round: verdict per round checked
    ("perfect", "not perfect", "undecided"; checking stops after the first
    perfect or undecided round unless ``full``). margin_bounds: per round
    (lower, upper) float bounds of the smallest margin over present types and
    wrong classes (float rounding of ball bounds, for reporting; the verdicts
    are decided on the balls). max_radius: per round the largest radius of the
    output enclosures. max_contraction: per round an upper bound of
    ||I - Y J(X)||_inf (Krawczyk's contraction; < 1 is necessary for the test
    to pass). outputs_mid / outputs_rad: per round (K, K, K) centre and
    radius of the output enclosures (NaN for absent types). prec: bits used.
    """

    first: int | None | str
    per_round: tuple
    margin_bounds: tuple
    max_radius: tuple
    max_contraction: tuple
    outputs_mid: tuple
    outputs_rad: tuple
    prec: int
    rounds: int


class _Cell:
    """Ball-arithmetic data of one cell (present types, s M as balls)."""

    def __init__(self, flint, K, n, c, d, lam, counts):
        self.flint = flint
        arb, arb_mat, fmpq = flint.arb, flint.arb_mat, flint.fmpq
        self.K = K
        ks, ls, nm = _types(counts)
        self.ks, self.ls, self.nm = ks, ls, nm
        m = self.m = ks.size
        self.Ms = _mixing_matrix(K, n, c, d, lam, counts)

        def ball(x):
            q = rational(x)
            return arb(fmpq(q.numerator, q.denominator))

        cq, dq, lq = ball(c), ball(d), ball(lam)
        f = mixing_entry
        scale = 1 / (K * n * lq)
        Mb = [[f(cq, dq, int(ks[a] == ks[b]), int(a == b), int(nm[b])) * scale for b in range(m)] for a in range(m)]
        Km = m * K
        big = arb_mat(Km, Km)
        for a in range(m):
            for b in range(m):
                for j in range(K):
                    big[a * K + j, b * K + j] = Mb[a][b]
        self.Mbig = big
        fl = [[_ball_float(v) for v in row] for row in Mb]
        self.M_float = (np.array([[v[0] for v in row] for row in fl]), np.array([[v[1] for v in row] for row in fl]))
        self.Km = Km

    def softmax_balls(self, zcol):
        """Per type, softmax of the K logit balls (shifted by a float: softmax is shift invariant)."""
        K = self.K
        out = []
        for a in range(self.m):
            z = [zcol[a * K + j, 0] for j in range(K)]
            shift = max(float(v.mid()) for v in z)
            # no mutate: ball exp has no overflow, so the sign of the shift cannot change a verdict
            e = [(v - shift).exp() for v in z]  # pragma: no mutate
            tot = e[0]
            for v in e[1:]:
                tot = tot + v
            out.extend(v / tot for v in e)
        return out

    def F(self, x, T):
        p = self.softmax_balls(self.Mbig * x)
        F = self.flint.arb_mat(self.Km, 1)
        for i in range(self.Km):
            F[i, 0] = x[i, 0] + p[i] - T[i]
        return F


_U = 2.0**-53  # unit roundoff of float64
_EPS = 2 * _U  # machine epsilon of float64
_SAFE = 1.0 + 1e-12  # covers the O(Km u) rounding of the float bound computations below (Km <= 10^3)
_TINY = 1e-290  # covers underflow in float products (each term below 2^-1022 is lost at most)


def _up(v):
    """Inflate a float upper bound computed with O(Km) roundings."""
    # no mutate: an O(Km u) relative inflation; no test can observe a change of it without redoing the bound
    return v * _SAFE + _TINY  # pragma: no mutate


def _ball_float(b):
    """(midpoint, radius) floats with [mid - rad, mid + rad] containing the ball b."""
    m = float(b.mid())
    return m, float(b.rad()) * (1.0 + 4 * _U) + abs(m) * 2 * _U + _TINY


def _contraction_matrix(cell, pX, Yf, Yabs, eye):
    """Entrywise upper bound of |I - Y J(X)|, J(X) = I + D_H(X) (s M (x) I_K), in float with rigorous error terms.

    J(X) is enclosed as Jm +- Jr (float midpoint, radius); then
    |I - Y J| <= |I - fl(Y Jm)| + gamma |Y| |Jm| + |Y| Jr with
    gamma = (Km + 2) u / (1 - (Km + 2) u) bounding the error of a float
    dot product of length Km in any summation order (Higham, Accuracy and
    Stability, 3.1), all sums inflated by _up.
    """
    K, m, Km = cell.K, cell.m, cell.Km
    Hm = np.empty((m, K, K))
    Hr = np.empty((m, K, K))
    for a in range(m):
        for i in range(K):
            pi = pX[a * K + i]
            for j in range(K):
                Hm[a, i, j], Hr[a, i, j] = _ball_float((pi if i == j else 0) - pi * pX[a * K + j])
    Mm, Mr = cell.M_float
    prod = Hm[:, :, None, :] * Mm[:, None, :, None]  # [(a, i), (b, j)] = H_a[i, j] M[a, b]
    Jm = prod.reshape(Km, Km)
    Jr = (np.abs(Hm)[:, :, None, :] * Mr[:, None, :, None] + Hr[:, :, None, :] * (np.abs(Mm) + Mr)[:, None, :, None]
          + np.abs(prod) * 2 * _U).reshape(Km, Km)
    Jm = Jm + eye
    Jr = _up(Jr + np.abs(Jm) * _U)  # + rounding of the diagonal sum
    # no mutate: Higham's gamma_{Km+2}; changing it moves the bound by O(Km u |Y| |J|) only, below every tested quantity
    gamma = (Km + 2) * _U / (1 - (Km + 2) * _U)  # pragma: no mutate
    C = eye - Yf @ Jm
    return _up(np.abs(C) * (1 + 2 * _U) + gamma * _up(Yabs @ np.abs(Jm)) + _up(Yabs @ Jr))


def _krawczyk(cell, Tt, Tbox, r_float, J_float):
    """One certified round. Returns (output balls, contraction bound) or (None, None) if the test fails."""
    flint = cell.flint
    arb, arb_mat = flint.arb, flint.arb_mat
    Km = cell.Km
    try:
        Yf = np.linalg.inv(J_float)
    except np.linalg.LinAlgError:
        return None, None
    if not np.all(np.isfinite(Yf)):
        return None, None
    Y = arb_mat(Km, Km, [float(v) for v in Yf.ravel()])
    x = arb_mat(Km, 1, [float(v) for v in r_float.ravel()])
    for _ in range(2):  # Newton polish of the centre in ball arithmetic (midpoints only)
        x = (x - Y * cell.F(x, Tt)).mid()
    YF = Y * cell.F(x, Tt)
    DT = arb_mat(Km, 1, [Tbox[i] - Tt[i] for i in range(Km)])
    A = Y * DT - YF  # K(X) - x without the contraction term
    r0 = np.array([float(A[i, 0].abs_upper()) for i in range(Km)])
    rho = 2.0 * r0 + 1e-3 * float(np.max(r0)) + 1e-300
    Yabs = np.abs(Yf)
    eye = np.eye(Km)
    for _ in range(4):
        DX = arb_mat(Km, 1, [arb(0, float(v)) for v in rho])
        pX = cell.softmax_balls(cell.Mbig * (x + DX))
        Cabs = _contraction_matrix(cell, pX, Yf, Yabs, eye)
        if not np.all(np.isfinite(Cabs)):
            return None, None
        CDr = _up(Cabs @ rho)
        CD = arb_mat(Km, 1, [arb(0, float(v)) for v in CDr])
        Kx = A + CD
        if all(Kx[i, 0].abs_upper() < arb(float(rho[i])) for i in range(Km)):  # exact comparison of bounds
            contraction = float(np.max(_up(Cabs.sum(axis=1))))
            IY = -Y
            for i in range(Km):
                IY[i, i] += 1
            Pd = IY * DT - CD + YF - x
            P1 = [Pd[i, 0] + Tt[i] for i in range(Km)]
            P2 = cell.softmax_balls(cell.Mbig * (x + Kx))
            return [P1[i].intersection(P2[i]) for i in range(Km)], contraction
        rho = rho * 4.0
    return None, None


def _chain(cell, rounds, full):
    """Certified rounds at the current flint precision. Returns report fields (first, per_round, ...)."""
    flint = cell.flint
    arb = flint.arb
    K, m = cell.K, cell.m
    ks, ls = cell.ks, cell.ls
    T0 = np.zeros((m, K))
    T0[np.arange(m), ls] = 1.0
    Tbox = [arb(float(v)) for v in T0.ravel()]
    r = None
    verdicts, bounds, radii, contr, mids, rads = [], [], [], [], [], []
    first = None
    failed = False
    for t in range(rounds + 1):
        P = None
        if not failed:  # after a failed round there is no enclosure of the targets: every later round is undecided
            Tt = [b.mid() for b in Tbox]
            Tf = np.array([float(v) for v in Tt]).reshape(m, K)
            r, J, _, _ = _newton(cell.Ms, cell.nm, Tf, r, 1e-14, 100)
            P, cbound = _krawczyk(cell, Tt, Tbox, r, J)
        if P is None:
            failed = True
            verdicts.append(UNDECIDED)
            bounds.append((math.nan, math.nan))
            radii.append(math.inf)
            contr.append(math.inf)
            mids.append(None)
            rads.append(None)
            if not full:
                break
            continue
        lo = hi = None
        proved_all, proved_bad = True, False
        for a in range(m):
            k = ks[a]
            for j in range(K):
                if j == k:
                    continue
                mg = P[a * K + k] - P[a * K + j]
                lo = mg.lower() if lo is None else lo.min(mg.lower())
                hi = mg.upper() if hi is None else hi.min(mg.upper())
                if not mg > 0:
                    proved_all = False
                if mg < 0:
                    proved_bad = True
        if m and proved_all:
            verdict = "perfect"
        elif proved_bad:
            verdict = "not perfect"
        else:
            verdict = UNDECIDED
        verdicts.append(verdict)
        bounds.append((float(lo), float(hi)) if lo is not None else (math.inf, math.inf))
        radii.append(max(float(p.rad()) for p in P))
        contr.append(float(cbound))
        mid = np.full((K, K, K), np.nan)
        rad = np.full((K, K, K), np.nan)
        mid[ks, ls] = np.array([float(p.mid()) for p in P]).reshape(m, K)
        rad[ks, ls] = np.array([float(p.rad()) for p in P]).reshape(m, K)
        mids.append(mid)
        rads.append(rad)
        if verdict == "perfect" and first is None and all(v == "not perfect" for v in verdicts[:-1]):
            first = t
            if not full:
                break
        if verdict == UNDECIDED and not full:
            break
        Tbox = P
    if first is None and any(v == UNDECIDED for v in verdicts):
        first = UNDECIDED
    return first, verdicts, bounds, radii, contr, mids, rads


def certified_rounds(K, n, c, d, lam, counts, rounds, *, prec: int = DEFAULT_PREC, max_prec: int = MAX_PREC, full: bool = False) -> ExactRoundsReport:
    """Certified exact-level first perfect round of SD on the block model (see module doc).

    ``counts``: K x K label counts (row k = class k, column l = given label),
    rows summing to n. Rounds t = 0..``rounds`` are checked (t + 1 fits).
    Starts at ``prec`` bits and doubles up to ``max_prec`` while the answer is
    "undecided" (with ``full``: while any round is; the output enclosures
    widen by a factor of about 1.6 per round at the paper's setting, so 128
    bits last for about 150 rounds). With ``full`` every round up to ``rounds`` is checked (else
    checking stops at the first perfect or undecided round).
    """
    K, n, c, d, lam, counts = _check_cell(K, n, c, d, lam, counts)
    rounds = check_rounds("rounds", rounds)
    prec = check_int("prec", prec, minimum=53)
    max_prec = check_int("max_prec", max_prec, minimum=prec)
    full = check_bool("full", full)
    flint = _flint()
    old = flint.ctx.prec
    try:
        p = prec
        while True:
            flint.ctx.prec = p
            cell = _Cell(flint, K, n, c, d, lam, counts)
            fields = _chain(cell, rounds, full)
            if not (fields[0] == UNDECIDED or (full and UNDECIDED in fields[1])) or 2 * p > max_prec:
                break
            p *= 2
    finally:
        flint.ctx.prec = old
    first, verdicts, bounds, radii, contr, mids, rads = fields
    return ExactRoundsReport(first, tuple(verdicts), tuple(bounds), tuple(radii), tuple(contr), tuple(mids), tuple(rads), p, rounds)


def min_rounds_exact(K, n, c, d, lam, counts, rounds) -> int | None | str:
    """Certified first round at which the exact softmax predicts every training instance correctly.

    None: rounds 0..``rounds`` are all proved imperfect; "undecided": not
    certified at up to MAX_PREC bits. See :func:`certified_rounds`.
    """
    return certified_rounds(K, n, c, d, lam, counts, rounds).first


def exact_boundary(K, n, c, d, lam, noise, etas, rounds, superclass_size: int = 2) -> list:
    """Certified exact-level first perfect round for each noise rate in ``etas`` (exact label counts C n).

    ``noise``: a name of :data:`theory.corruption.NOISE_MODELS`. Entries are
    int, None (not perfect by round ``rounds``) or "undecided". Raises
    ValueError if some C_kj n is not a whole number.
    """
    out = []
    for eta in etas:
        C = corruption_matrix(noise, K, eta, superclass_size)
        out.append(min_rounds_exact(K, n, c, d, lam, exact_label_counts(C, n), rounds))
    return out
