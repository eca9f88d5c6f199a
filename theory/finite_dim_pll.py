"""The PLL student on the finite-D Gaussian mixture (linearised level): the runner-up chosen by the fluctuations.

Setting and notation as in :mod:`theory.finite_dim` (read its module doc first). The teacher is one
linearised fit on the one-hot given labels, P_0 = U + (Y - U) F with F = f_1(G); the PLL student is one
fit on the teacher's top-two targets t_i = (e_a + e_b) / 2, {a, b} the two largest outputs of instance
i: P_pll = U + (T - U) F, the same F. In the block model (D = infinity) the top two of an instance are
fixed by its type; at finite D they are random and, worse, the student's own fluctuation is the
teacher's: both are sums over the same matrix F. That is why the student fails where the block model
says it succeeds (a fluctuation that lifts a wrong class into the teacher's top two lifts it in the
student as well).

Derivation (the steps beyond theory.finite_dim)
------------------------------------------------
1. Write each instance's teacher output as o_i = mean_Y + eta_Y and its student output as
   s_i = mean_T(t_i) + eta_T, with eta_Y = sum_j F'_ij (y_j)_perp and eta_T = sum_j F'_ij (t_j)_perp
   (F' the within-class part of F, (.)_perp the within-class centring, as in finite_dim step 4).
   The means are finite_dim's step 3 with the targets in place of the labels:
       mean_T(t) = U + phi_1 (t - Tbar_k) + b_1 (Tbar_k - Tbarbar) + c_1 (Tbarbar - U),
   Tbar_k = E[t | class k] (the class-wise average target), Tbarbar = mean_k Tbar_k.
2. The Haar covariance of finite_dim step 4, applied to the two families of vectors at once, makes
   (eta_Y, eta_T) jointly Gaussian with covariance
       kappa_1 [(1 - 1/n) Gamma_ZZ + (1 - 2/m) w w^T],   w = (e_l - C_k, t_i - Tbar_k),
   Gamma_ZZ = n sum_k (E[z z^T | k] - E[z | k] E[z | k]^T) for z = (y, t) (2K x 2K: the blocks
   Gamma_YY = finite_dim's Gamma, Gamma_YT, Gamma_TT).
3. Self-consistency. t_i is a function of eta_Y (the top two of o_i). For each candidate pair
   tau = {a, b}: P(top two = tau and student correct) is a Gaussian orthant probability of
   dimension 2 (K - 1) in (o_i, s_i), one for each class c outside tau the largest of the rest:
   o_a > o_c, o_b > o_c, o_c > o_d for the other d, and s_k > s_j for every j != k, under the joint Gaussian of step 2 with t_i = tau. Summing over
   the K (K - 1) / 2 pairs gives P(student correct | type). The class averages Tbar_k and Gamma_ZZ
   need only the teacher's top-two probabilities per type (orthant probabilities of dimension
   K - 1 of the teacher's Gaussian), so there is no fixed point to solve.
5. Reaction. Instance i's own label enters every other teacher output, o_j = ... + F'_ji (y_i)_perp,
   so t_j leans towards i's label when F'_ij is large; by Stein's lemma this adds
   sum_j E[F'_ij^2] J_j (y_i)_perp = kappa_1 (1 - 1/n) (sum_j J_j)(e_l - C_k) to the student's mean,
   J_j = d E[t_j] / d (mean of o_j), the gradient of the top-two probabilities (a density times an
   orthant probability of one dimension less). It is what makes a memorising teacher's student
   repeat the given label.
4. Fresh samples: finite_dim step 6 with (Y, C, Gamma) -> (T, Tbar, Gamma_TT) (the fresh noise is
   independent of the training sample, and given it only Gamma_TT enters).

Neglected, beyond finite_dim's approximations: the dependence of t_j (j != i) on F'_ij (one of N
terms of j's output), and the fluctuation of the realised Gamma_ZZ around its expectation. K = 2:
the top two are both classes for every instance, every target is (1/2, 1/2), the student's outputs
are exactly U, and every instance is a tie (a failure, as in sims.engine.measures). Exact ties have
probability 0 at finite D, so the tie rule does not enter; D = infinity is the block model, which
:func:`theory.pll_analysis` decides exactly (ties included), and is rejected here.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ._generated import (
    centred_norm,
    fresh_logit_cov,
    fresh_logit_mean,
    haar_bracket,
    haar_kappa,
    type_output_mean,
    within_part,
)
from .validate import check_block_correlations, check_int, check_label_counts, check_positive

__all__ = ["FiniteDimPLL", "pll_finite_dim"]


@dataclass(frozen=True)
class FiniteDimPLL:
    """Finite-D PLL student (arrays indexed [true class k, given label l]; nan for absent types).

    pairs: the candidate top-two pairs (a, b), a < b; pair_prob[k, l, p]: P(teacher's top two = pairs[p]);
    contains_true[k, l]: P(true class k among the teacher's top two); student_p_correct[k, l];
    teacher_p_correct[k, l] (finite_dim at round 0); *_train_accuracy: expected accuracy against the true
    labels; *_fresh_accuracy: population accuracy (mean over classes); mean_targets[k]: Tbar_k;
    student_fresh_mean[k]: N lambda times the mean logits of the student on a fresh class-k sample (step 4);
    student_fresh_cov: their K x K covariance, the same for every class (it scales like 1 / D);
    quadrature_error, probability_error: the largest reported errors.
    """

    K: int
    n: int
    c: float
    d: float
    lam: float
    D: float
    counts: np.ndarray
    pairs: tuple
    pair_prob: np.ndarray
    contains_true: np.ndarray
    mean_targets: np.ndarray
    teacher_p_correct: np.ndarray
    student_p_correct: np.ndarray
    teacher_train_accuracy: float
    student_train_accuracy: float
    teacher_fresh_accuracy: float
    student_fresh_accuracy: float
    student_fresh_mean: np.ndarray
    student_fresh_cov: np.ndarray
    quadrature_error: float
    probability_error: float


def _pair_blocks(K: int, a: int, b: int) -> np.ndarray:
    """The event "the top two are {a, b}" as K - 2 disjoint orthants, one per class c the largest of the
    rest: rows e_a - e_c, e_b - e_c and e_c - e_d for the other d, shape (K - 2, K - 1, K). Each block
    is K - 1 independent rows of the sum-zero space, so its covariance is not singular (the one orthant
    min(o_a, o_b) > every other o_c would take 2 (K - 2) rows in K - 1 dimensions)."""
    eye = np.eye(K)
    rest = [c for c in range(K) if c not in (a, b)]
    out = []
    for c in rest:
        rows = [eye[a] - eye[c], eye[b] - eye[c]] + [eye[c] - eye[d] for d in rest if d != c]
        out.append(np.array(rows))
    return np.array(out)


def _powers(y: np.ndarray, mu: float) -> np.ndarray:
    """f, f^2, f^3, f^4, q, f q, f^2 q at the eigenvalues y (f = y / (y + mu), q = y / (y + mu)^2; 0 at y = 0)."""
    f = y / (y + mu)
    q = y / (y + mu) ** 2
    return np.stack([f, f * f, f**3, f**4, q, f * q, f * f * q])


def _margin_rows(K: int, k: int) -> np.ndarray:
    """Rows e_k - e_j for every j != k: positive iff class k is the strict maximum."""
    rows = [np.eye(K)[k] - np.eye(K)[j] for j in range(K) if j != k]
    return np.array(rows)


def _orthant_gradient(mean: np.ndarray, cov: np.ndarray, tol: float):
    """d P(X > 0) / d mean for X ~ N(mean, cov), batched over the first axis: component r is the
    density of X_r at 0 times P(X_others > 0 | X_r = 0) (a Gaussian orthant of one dimension less)."""
    from scipy.special import ndtr  # noqa: F401  (loaded with finite_dim's orthant routine)

    from .finite_dim import orthant_probability

    B, p = mean.shape
    grad = np.zeros((B, p))
    err = 0.0
    # a component without variance (sd below 1e-13 of the means' scale, as in orthant_probability) is decided by
    # its sign: the probability does not change with its mean, its gradient is 0 (a tie, mean 0, has measure 0)
    tiny = (1e-13 * np.maximum(1.0, np.abs(mean).max(axis=1))) ** 2
    for r in range(p):
        live = cov[:, r, r] > tiny
        srr = np.where(live, cov[:, r, r], 1.0)
        dens = np.where(live, np.exp(-0.5 * mean[:, r] ** 2 / srr) / np.sqrt(2.0 * np.pi * srr), 0.0)
        if p == 1:
            grad[:, r] = dens
            continue
        o = [j for j in range(p) if j != r]
        sor = np.where(live[:, None], cov[:, o, r], 0.0)
        cm = mean[:, o] - sor * (mean[:, r] / srr)[:, None]
        cc = cov[:, o][:, :, o] - sor[:, :, None] * sor[:, None, :] / srr[:, None, None]
        pr, er = orthant_probability(cm, cc, tol, max_points=1 << 18)
        grad[:, r] = dens * pr
        err = max(err, float((dens * er).max()))
    return grad, err


def _student_correct(k: int, pairs: tuple, mean_o: np.ndarray, mean_s: np.ndarray, cov: np.ndarray, prob_tol: float):
    """P(student correct) for a class-k instance (step 3): the teacher's output o and the student's s jointly
    Gaussian, mean_o (K,), mean_s[p] (P, K) the student's mean when the top two are pairs[p], cov (2 K, 2 K) of
    (o, s); the sum over pairs of P(top two of o = pair, k the strict maximum of s). Returns (probability, error)."""
    from . import finite_dim as fd

    K = mean_o.size
    R = _margin_rows(K, k)
    means, covs = [], []
    for p, (a, b) in enumerate(pairs):
        for Ap in _pair_blocks(K, a, b):
            A = np.block([[Ap, np.zeros((K - 1, K))], [np.zeros((K - 1, K)), R]])
            means.append(A @ np.concatenate([mean_o, mean_s[p]]))
            covs.append(A @ cov @ A.T)
    pr, er = fd.orthant_probability(np.array(means), np.array(covs), prob_tol, max_points=1 << 18)
    return float(pr.sum()), float(er.sum())


@dataclass(frozen=True)
class _TopTwo:
    pairs: tuple
    tvec: np.ndarray
    pair_prob: np.ndarray
    contains: np.ndarray
    Tbar: np.ndarray
    Gam_AE: np.ndarray
    Gam_EE: np.ndarray
    Jbar: np.ndarray
    Gam_nu: np.ndarray
    error: float


def _pairs(K: int):
    """The candidate top-two pairs (a, b), a < b, and their targets (e_a + e_b) / 2, (P, K)."""
    eye = np.eye(K)
    pairs = tuple(combinations(range(K), 2))
    return pairs, np.array([(eye[a] + eye[b]) / 2.0 for a, b in pairs])


def _top_two(counts: np.ndarray, means_o: np.ndarray, covs_o: np.ndarray, prob_tol: float) -> _TopTwo:
    """The teacher's top two per type (steps 2, 3 and 5) from its Gaussian output per type: means_o[k, l] (K,) and
    covs_o[k, l] (K, K) for the present types. Shared with :mod:`theory.finite_dim_classes_pll`, whose teacher
    has another Gaussian output and the same top-two targets."""
    from . import finite_dim as fd

    K = counts.shape[0]
    present = counts > 0
    pairs, tvec = _pairs(K)
    perr = 0.0

    # teacher's top two, per type: orthant probabilities of its Gaussian output (finite_dim steps 3-4)
    pair_prob = np.full((K, K, len(pairs)), np.nan)
    jac = np.zeros((K, K, K, K))  # d E[t | type] / d (teacher's mean output), per type
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            mean, cov = means_o[k, l], covs_o[k, l]
            if K == 2:
                pair_prob[k, l, 0] = 1.0
                continue
            A = np.stack([_pair_blocks(K, a, b) for a, b in pairs])  # (P, K - 2, K - 1, K)
            Am, AS = A @ mean, A @ cov @ np.swapaxes(A, -1, -2)
            pr, er = fd.orthant_probability(Am, AS, prob_tol, max_points=1 << 18)
            pair_prob[k, l] = pr.sum(axis=1)
            if abs(pair_prob[k, l].sum() - 1.0) > 10.0 * prob_tol + float(er.sum()):
                # the pairs partition the outcomes unless two classes tie with no variance between them
                raise ValueError(
                    f"counts: type (true {k}, given {l}) has wrong classes whose teacher outputs tie exactly, without "
                    f"fluctuation at this model's order (its top-two probabilities sum to {pair_prob[k, l].sum():.3g}); "
                    "the runner-up is decided beyond the model")
            P_, B_ = A.shape[:2]
            gr, eg = _orthant_gradient(Am.reshape(P_ * B_, K - 1), AS.reshape(P_ * B_, K - 1, K - 1), prob_tol)
            # J[r, q] = d E[t_r] / d mean_q = sum over pairs of t_pair[r] * (A^T grad)[q]
            gq = np.einsum("pbrq,pbr->pq", A, gr.reshape(P_, B_, K - 1))
            jac[k, l] = tvec.T @ gq
            perr = max(perr, float(er.sum(axis=1).max()), eg)
    return _target_statistics(counts, pairs, tvec, pair_prob, jac, covs_o, perr)


def _target_statistics(counts, pairs, tvec, pair_prob, jac, covs_o, error) -> _TopTwo:
    """Steps 2 and 5 from the teacher's top-two probabilities pair_prob[k, l, p] and their Jacobians jac[k, l]
    (d E[t | type] / d mean output) per type."""
    K = counts.shape[0]
    n = int(counts[0].sum())
    N = K * n
    C = counts / n
    present = counts > 0
    eye = np.eye(K)
    contains = np.full((K, K), np.nan)
    for k in range(K):
        has_k = np.array([k in p for p in pairs])
        contains[k, present[k]] = pair_prob[k, present[k]][:, has_k].sum(axis=1)

    # class averages of the targets and the within-class Grams of the labels A = Y_perp and the
    # expected targets E = E[t | type]_perp (step 2)
    pp = np.where(present[:, :, None], pair_prob, 0.0)
    Et = pp @ tvec  # (K, K, K): E[t | type]
    Ett = np.einsum("klp,pa,pb->klab", pp, tvec, tvec)
    Tbar = np.einsum("kl,kla->ka", C, Et)
    Gam_AE = n * (np.einsum("kl,la,klb->ab", C, eye, Et) - C.T @ Tbar)
    Gam_EE = n * (np.einsum("kl,kla,klb->ab", C, Et, Et) - Tbar.T @ Tbar)
    # the residual nu_j = t_j - E[t_j] - J_j (o_j - E o_j): uncorrelated with o_j (Stein), covariance
    # Cov(t | type) - J Sigma_o J^T
    # The chain term below uses the count-average Jbar of the J_j; the rest of the linear response,
    # (J_j - Jbar) do_j, has mean 0 over the instances and alternates with the types, so it is counted
    # with nu as independent noise.
    Jbar = np.einsum("kl,klrq->rq", counts, jac) / N
    Gam_nu = np.zeros((K, K))
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            cov_o = covs_o[k, l]
            cov_t = Ett[k, l] - np.outer(Et[k, l], Et[k, l])
            dJ = jac[k, l] - Jbar
            Gam_nu += counts[k, l] * (cov_t - jac[k, l] @ cov_o @ jac[k, l].T + dJ @ cov_o @ dJ.T)
    w_, V_ = np.linalg.eigh(0.5 * (Gam_nu + Gam_nu.T))
    Gam_nu = (V_ * np.clip(w_, 0.0, None)) @ V_.T
    return _TopTwo(pairs, tvec, pair_prob, contains, Tbar, Gam_AE, Gam_EE, Jbar, Gam_nu, error)


def pll_finite_dim(K: int, n: int, c: float, d: float, lam: float, D: float, counts, prob_tol: float = 1e-4,
                   quad_tol: float = 1e-12) -> FiniteDimPLL:
    """The finite-D linearised PLL student and its teacher (see the module doc); D > 0 finite."""
    from . import finite_dim as fd
    from .block_model import block_eigenvalues

    K = check_int("K", K, minimum=2)
    n = check_int("n", n, minimum=2)
    c, d = check_block_correlations(K, n, c, d)
    lam = check_positive("lam", lam)
    D = check_positive("D", D)  # rejects math.inf: the block model is theory.pll_analysis
    if d < 0:
        raise ValueError(f"d == {d}, must be >= 0 at finite D (d is the squared length of the mixture's shared mean)")
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K}) for K == {K}")
    prob_tol = check_positive("prob_tol", prob_tol)
    quad_tol = check_positive("quad_tol", quad_tol)
    teacher = fd.finite_dim_prediction(K, n, c, d, lam, D, counts, rounds=0, quad_tol=quad_tol, prob_tol=prob_tol)
    N, m = K * n, K * n - K
    mu = K * N * lam
    sig2 = 1.0 - c
    U = 1.0 / K
    C = counts / n
    Cbar = C.mean(axis=0)
    present = counts > 0
    # the teacher's within-class averages; its quadrature_error covers them and the spike filters below (the same
    # call as the teacher's)
    phi, kappa = float(teacher.phi[0]), float(teacher.kappa[0])
    f_class, f_const, h_class_d, h_const_d, _ = fd.spike_filters(K, n, c, d, lam, D, 0, max(quad_tol, 1e-10))
    f_class, f_const, h_class_d, h_const_d = float(f_class[0]), float(f_const[0]), float(h_class_d[0]), float(h_const_d[0])
    eye = np.eye(K)
    bb = centred_norm(n)  # |(e_i)_perp|^2
    Gam_Y = n * (np.diag(C.sum(axis=0)) - C.T @ C)
    if K > 2 and not np.any(np.abs(Gam_Y) > 1e-12 * n):
        # no given label is shared by two true classes (no label noise, or a relabelling): the teacher's output
        # has no fluctuation at this model's order, its K - 1 wrong classes tie exactly, and the runner-up is
        # decided by fluctuations beyond the model (measured by sims.pll_mixture)
        raise ValueError("counts: no given label is shared by two true classes (e.g. no label noise); the teacher's "
                         "runner-up is then decided beyond this model: theory.pll_analysis gives the tie rule's answer")
    means_o = np.full((K, K, K), np.nan)
    covs_o = np.full((K, K, K, K), np.nan)
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            u = within_part(eye[l], C[k])
            means_o[k, l] = type_output_mean(K, phi, f_class, f_const, eye[l], C[k], Cbar)
            covs_o[k, l] = kappa * haar_bracket(n, m, Gam_Y, u[:, None], u[None, :])
    tt = _top_two(counts, means_o, covs_o, prob_tol)
    pairs, tvec, pair_prob, contains, Tbar = tt.pairs, tt.tvec, tt.pair_prob, tt.contains, tt.Tbar
    Tbb, Gam_AE, Gam_EE, Jbar, Gam_nu, perr = Tbar.mean(axis=0), tt.Gam_AE, tt.Gam_EE, tt.Jbar, tt.Gam_nu, tt.error
    # spectral moments of f = f_1 and f^2 over the within-class spectrum (Haar constants kappa_fg)
    mom, qerr = fd.mp_average(lambda x: _powers(sig2 * x, mu), m / D, quad_tol)
    Ef, Ef2, Ef3, Ef4, Eq, Efq, Ef2q = mom
    k11, k12, k22 = haar_kappa(m * (Ef2 - Ef * Ef), m), haar_kappa(m * (Ef3 - Ef * Ef2), m), haar_kappa(m * (Ef4 - Ef2 * Ef2), m)
    varf = Ef2 - Ef * Ef

    # the student, per type and candidate pair (steps 3 and 5): with the teacher's within output
    # o = phi a + do (a = e_l - C_k) and q = (F'^2 A)_i = E[f^2] a + dq, the student's within output is
    #   phi (t_i - Tbar_k) + Var(f) Jbar a + e + Jbar (dq - 2 phi do) + nu,
    # e = sum_{j != i} F'_ij (E[t_j])_perp; (do, dq, e) Gaussian with the Haar covariances, nu independent
    student = np.full((K, K), np.nan)
    Z = np.zeros((K, K))
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            if K == 2:
                student[k, l] = 0.0  # outputs exactly U: a tie
                continue
            uY = within_part(eye[l], C[k])
            GA = haar_bracket(n, m, Gam_Y, uY[:, None], uY[None, :])
            SX = np.block([
                [k11 * GA, k12 * GA, k11 * bb * Gam_AE, Z],
                [k12 * GA, k22 * GA, k12 * bb * Gam_AE, Z],
                [k11 * bb * Gam_AE.T, k12 * bb * Gam_AE.T, k11 * bb * Gam_EE, Z],
                [Z, Z, Z, kappa * bb * Gam_nu],
            ])
            L = np.block([[eye, Z, Z, Z], [-2.0 * phi * Jbar, Jbar, eye, eye]])
            cov = L @ SX @ L.T
            meanY = type_output_mean(K, phi, f_class, f_const, eye[l], C[k], Cbar)
            # finite_dim's step 3 with the targets in place of the labels, plus the reaction (step 5)
            meanT = type_output_mean(K, phi, f_class, f_const, tvec, Tbar[k], Tbb) + varf * (Jbar @ uY)
            student[k, l], er = _student_correct(k, pairs, meanY, meanT, cov, prob_tol)
            perr = max(perr, er)

    # fresh samples (step 4): N lambda times the logits of a fresh class-k sample, s = 1; the targets'
    # within part E + Jbar A (F' - phi) + nu weights the fresh noise by q, (f - phi) q and (f - phi)^2 q
    _, mu_class, mu_const = block_eigenvalues(K, n, c, d)
    h_class, h_const = 1.0 / (mu_class + mu), 1.0 / (mu_const + mu)
    Eq1 = Efq - phi * Eq  # E[(f - phi) q]
    Eq2 = Ef2q - 2.0 * phi * Efq + phi * phi * Eq  # E[(f - phi)^2 q]
    cross = Eq1 * Gam_AE.T @ Jbar.T
    Gam_fresh = Eq * (Gam_EE + Gam_nu) + Eq2 * Jbar @ Gam_Y @ Jbar.T + cross + cross.T
    fresh_mean = fresh_logit_mean(mu, n, c, d, K, h_class_d, h_const_d, Tbar, Tbb[None, :])
    Dc = Tbar - Tbb
    # Gam_fresh already carries the spectral weights (q = 1 in the printed form)
    fresh_cov = fresh_logit_cov(mu, D, sig2, 1.0, Gam_fresh, h_class, h_const, n * Dc.T @ Dc,
                                N * np.outer(Tbb - U, Tbb - U))
    if K == 2:
        fresh_st = np.zeros(K)
    else:
        Rs = np.stack([_margin_rows(K, k) for k in range(K)])
        pf, ef = fd.orthant_probability(np.einsum("kjr,kr->kj", Rs, fresh_mean), Rs @ fresh_cov @ Rs.transpose(0, 2, 1),
                                        prob_tol)
        fresh_st = pf
        perr = max(perr, float(ef.max()))

    def train_acc(p):
        return float((np.where(present, p, 0.0) * counts).sum() / N)

    teacher_pc = np.where(present, teacher.p_correct[0], np.nan)
    return FiniteDimPLL(
        K=K, n=n, c=c, d=d, lam=lam, D=D, counts=counts, pairs=pairs, pair_prob=pair_prob, contains_true=contains,
        mean_targets=Tbar, teacher_p_correct=teacher_pc, student_p_correct=student,
        teacher_train_accuracy=float(teacher.train_accuracy[0]), student_train_accuracy=train_acc(student),
        teacher_fresh_accuracy=float(teacher.fresh_accuracy[0]), student_fresh_accuracy=float(np.mean(fresh_st)),
        student_fresh_mean=fresh_mean, student_fresh_cov=fresh_cov,
        quadrature_error=max(teacher.quadrature_error, qerr),
        probability_error=max(perr, teacher.probability_error),
    )
