"""The PLL student on Gaussian classes with measured means and a shared covariance (linearised level).

Model and notation of :mod:`theory.finite_dim_classes` (x_i = mu_k + xi_i, xi_i ~ N(0, Sigma), G = X X^T,
F = f_1(G), phi_s, Psi_s, Ht_s, the Haar constants); the student of :mod:`theory.finite_dim_pll`: one fit with
the teacher's filter F on the top-two targets t_i = (e_a + e_b) / 2 of the teacher's outputs o_i,
P_pll = U + (T - U) F. Read both module docs first; this one states what changes when the class means lie inside
the noise's span (the digits), where the instance's own noise along the weights is the leading fluctuation and
picks the runner-up.

Derivation (beyond the two modules)
-----------------------------------
1. Filtered labels. Every term below is a label matrix L (K x N) seen through a filter g in {f, f^2} (f^2 = f_2,
   the round-1 filter of theory.finite_dim_classes): L^T g(G) e_i. For labels independent of the features it is
   * mean: the class-level rows of L through E g(G) ~ phi_g I + J Psi_g J^T;
   * the own noise along the weights: W_(L,g) xi_i, W_(L,g) = n (Lbar - U)^T mu Ht_g (Lbar the class averages);
   * the within-class part L_perp through the Haar term with constants kappa_(g g') = m Cov(g, g') / ((m - 1)(m + 2))
     over the within-class law, and for a fresh sample tau_(g g') = -(1/2 pi i) int h_g h_g' w dz (E f_s f_s' =
     E f_(s + s'), ``ClassesFilters.moments`` and ``tau_pairs``);
   the own-noise and the Haar parts independent (as in theory.finite_dim_classes step 4).
2. The targets. t_j = Et_j + J_j (o_j - E o_j) + nu_j (theory.finite_dim_pll steps 3 and 5: the top-two
   probabilities per type, their Jacobian J, the average Jbar and the residual nu, here with the teacher's full
   output covariance, own noise plus Haar). o_j - E o_j = [(Y - U)^T F - E((Y - U)^T F)]_j, so the chain term of
   the student at i is Jbar [(Y - U)^T F^2 - phi (Y - U)^T F - B^T F]_i, B_k = n Psi_1[k] (C - U) the teacher's
   class-level mean output: filtered labels of step 1 again, with f^2.
3. Student at a training instance of type (k, l) whose top two are tau: the own target enters exactly,
   phi_1 (tau - U); the other instances' targets through F without j = i (which removes phi_1 Jbar (o_i - E o_i)
   from the chain term). Its mean is
       U + phi_1 (tau - U) + n Psi_1[k] (Tbar - U) + Jbar [(phi_2 - phi_1^2)(e_l - U) + X_k (C - U)],
       X = n (Psi_2 - 2 phi_1 Psi_1 - n Psi_1 Psi_1),
   the last bracket E[F^2] - E[F]^2 on the teacher's labels (the reaction of theory.finite_dim_pll step 5 with its
   class-level part, which vanishes when the class directions are eigenvectors, as in the mixture). Its own-noise
   weights are W_s = W_(Tbar, f) + Jbar (W_(Y, f^2) - 2 phi_1 W_(Y, f) - W_(B, f)), the teacher's W_o = W_(Y, f),
   both on the same xi_i; the Haar part is theory.finite_dim_pll's (with this model's constants).
   P(student correct | type) sums Gaussian orthant probabilities of (o_i, s_i) over the pairs (finite_dim_pll).
4. Fresh samples: mean U + W_f mu_k, W_f = W_(Tbar, f) + Jbar (W_(Y, f^2) - phi_1 W_(Y, f) - W_(B, f)) (no own term),
   covariance W_f Sigma W_f^T + tau_11 (Gam_EE + Gam_nu) + (tau_22 - 2 phi_1 tau_12 + phi_1^2 tau_11) Jbar Gam_Y Jbar^T
   + the cross terms (tau_12 - phi_1 tau_11) (Gam_EA Jbar^T + its transpose).

Neglected, beyond the two modules' approximations: the fluctuation of F_ii about phi_1 in the own term, the
class-level part of nu (mean zero, O(1/sqrt n)), and nu's dependence on the features beyond its vanishing linear
correlation (nu is treated as independent noise). With orthogonal means and no shared direction the model is
theory.finite_dim_pll's mixture, which it reproduces to O(1/n) (``tests/theorems/test_finite_dim_classes_pll.py``).
K = 2: every target is (1/2, 1/2) and the student is a tie at every instance (accuracy 0, as in
theory.finite_dim_pll). ``import theory.finite_dim_classes_pll`` imports numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._generated import centred_norm, haar_bracket, haar_kappa, within_part
from .finite_dim_classes import ClassesFilters, _check_model, _filters_for, classes_prediction
from .finite_dim_pll import _pairs, _target_statistics
from .validate import check_int, check_label_counts, check_positive

__all__ = ["ClassesPLL", "classes_pll"]

_CHUNK = 1 << 14  # Gaussian draws per batch (at least 8 batches for the batch means, 4 for a proportion)
_MAX_DRAWS = 1 << 25  # per type: 3 s.e. of a proportion near 1/2 is then 2.6e-4


def _root(cov):
    """A square root R (R R^T = cov) of a positive semi-definite matrix, by its eigendecomposition (a covariance
    of outputs that sum to one is singular along the ones vector)."""
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    return V * np.sqrt(np.clip(w, 0.0, None))[None, :]


def _pair_index(o, K):
    """Index into theory.finite_dim_pll's pairs of the two largest entries of each row of o (o is overwritten)."""
    rows = np.arange(o.shape[0])
    first = o.argmax(axis=1)  # two argmax passes: faster than argpartition for the K <= 22 of the orthant routines
    o[rows, first] = -np.inf  # (o is the caller's scratch array)
    second = o.argmax(axis=1)
    a, b = np.minimum(first, second), np.maximum(first, second)
    return a * K - a * (a + 1) // 2 + (b - a - 1)


def _teacher_targets(mean, cov, tvec, tol, rng):
    """P(top two = pair) (P,) and the Jacobian d E[t] / d mean (K, K) of the teacher's Gaussian output
    N(mean, cov), by Gaussian draws in batches: the Jacobian by Stein's identity E[t (o - mean)^T] = J cov (on the
    range of cov; t does not change along the null space's ones vector). Batches are added until 3 standard errors
    of the batch means are below tol for the probabilities and below 10 tol relative to max |J| for the Jacobian
    (it enters through the count-average Jbar, a second-order term of the student). Returns (pair_prob, jac,
    probability error, relative Jacobian error)."""
    K, P = mean.size, tvec.shape[0]
    R = _root(cov)
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    keep = w > 1e-12 * max(float(w.max()), 0.0) if w.max() > 0 else np.zeros(K, bool)
    pinv = (V[:, keep] / w[keep][None, :]) @ V[:, keep].T
    # running sums over the batches of the estimates and their squares (batch means and their standard errors)
    sp, sp2, sj, sj2 = np.zeros(P), np.zeros(P), np.zeros((K, K)), np.zeros((K, K))
    B = 0
    while True:
        z = rng.standard_normal((_CHUNK, K)) @ R.T
        idx = _pair_index(mean[None, :] + z, K)
        cnt = np.bincount(idx, minlength=P)
        zsum = np.stack([np.bincount(idx, weights=z[:, j], minlength=P) for j in range(K)], axis=1)
        prob = cnt / _CHUNK
        # centred: the draws' mean is not exactly 0, and each t sums to 1, so the Jacobian's columns sum to 0 exactly
        jac = (tvec.T @ (zsum - np.outer(cnt, z.mean(axis=0))) / _CHUNK) @ pinv
        B += 1
        sp, sp2, sj, sj2 = sp + prob, sp2 + prob**2, sj + jac, sj2 + jac**2
        if B >= 8:
            def se(s1, s2):  # 3 standard errors of the mean of B batch estimates
                return 3.0 * np.sqrt(np.clip(s2 - s1**2 / B, 0.0, None) / (B - 1) / B)

            perr = float(se(sp, sp2).max())
            jerr = float(se(sj, sj2).max()) / max(1.0, float(np.abs(sj / B).max()))
            if perr <= tol and jerr <= 10.0 * tol:
                return sp / B, sj / B, perr, jerr
            if B * _CHUNK >= _MAX_DRAWS:
                raise RuntimeError(f"top-two probabilities did not converge after {B * _CHUNK} draws: 3 s.e. {perr:.3g} "
                                   f"(prob_tol {tol:.3g}), Jacobian {jerr:.3g} relative (limit {10.0 * tol:.3g})")


def _student_correct(k, mean_o, mean_s, cov, tol, rng):
    """P(student correct) for a class-k instance: (o, s - mean_s[pair]) ~ N((mean_o, 0), cov), pair the top two of
    o; draws in batches until 3 standard errors of the proportion are below tol. Returns (probability, error)."""
    K = mean_o.size
    R = _root(cov)
    hits = draws = 0
    while True:
        z = rng.standard_normal((_CHUNK, 2 * K)) @ R.T
        idx = _pair_index(mean_o[None, :] + z[:, :K], K)
        s = mean_s[idx] + z[:, K:]
        hits += int(np.count_nonzero(s.argmax(axis=1) == k))  # ties have probability 0
        draws += _CHUNK
        p = hits / draws
        # the s.e. of a proportion, with p(1 - p) at least 1 / draws so that p = 0 or 1 is not a zero error
        err = 3.0 * np.sqrt(max(p * (1.0 - p), 1.0 / draws) / draws)
        if draws >= 4 * _CHUNK and err <= tol:
            return p, float(err)
        if draws >= _MAX_DRAWS:
            raise RuntimeError(f"student's probability did not converge: 3 s.e. {err:.3g} > prob_tol {tol:.3g}")


@dataclass(frozen=True)
class ClassesPLL:
    """The PLL student on Gaussian classes (arrays indexed [true class k, given label l]; nan for absent types).

    pairs, pair_prob[k, l, p], contains_true[k, l], mean_targets[k] (Tbar_k), teacher_p_correct,
    student_p_correct, *_train_accuracy, *_fresh_accuracy as in :class:`theory.finite_dim_pll.FiniteDimPLL`;
    student_fresh_mean[k] (K,) the mean output of a fresh class-k sample, student_fresh_cov[k] (K, K) its
    covariance (the same for every class here); fixed_point_residual, quadrature_error, probability_error the
    largest reported errors of the filters and the probabilities (Genz's orthants for the teacher, 3 standard errors of
    Gaussian draws for the top two and the student), jacobian_error the largest relative error of the top-two
    Jacobians (3 standard errors)."""

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
    fixed_point_residual: float
    quadrature_error: float
    probability_error: float
    jacobian_error: float


def classes_pll(means, sigma, n: int, counts, lam: float, tol: float = 1e-10, prob_tol: float = 1e-3,
                filters: ClassesFilters | None = None, seed: int = 12345) -> ClassesPLL:
    """The linearised PLL student of the module doc and its teacher: counts[k, l] training instances of class k
    given label l (rows sum to n), lam the ridge. ``filters``: :func:`theory.finite_dim_classes.classes_filters`
    of the same means, sigma, n and lam with rounds >= 1 (the student needs f and f^2), when already computed."""
    mu_k, _, _, K, _, n = _check_model(means, sigma, n)
    lam = check_positive("lam", lam)
    F = _filters_for(means, sigma, n, lam, 1, tol, filters, at_least=True)
    counts = check_label_counts(counts, n)
    if counts.shape != (K, K):
        raise ValueError(f"counts has shape {counts.shape}, must be ({K}, {K}) for {K} classes")
    prob_tol = check_positive("prob_tol", prob_tol)
    seed = check_int("seed", seed, minimum=0)
    teacher = classes_prediction(means, sigma, n, counts, lam, F.rounds, tol, prob_tol, filters=F)
    N, m = K * n, K * n - K
    U = 1.0 / K
    C = counts / n
    eye = np.eye(K)
    present = counts > 0
    sig, mv = F.sig, mu_k @ F.V
    phi1, phi2 = float(F.phi[0]), float(F.phi[1])
    nP1, nP2 = n * F.PsiS[0], n * F.PsiS[1]
    bb = centred_norm(n)  # |(e_i)_perp|^2
    Gam_Y = n * (np.diag(C.sum(axis=0)) - C.T @ C)

    def weights(dev, s):  # W_(L, g) of step 1 from the class-level deviations dev = Lbar - U (K x K), in V's basis
        return n * dev.T @ F.Ht[s]

    def own(W1, W2=None):  # W1 Sigma W2^T
        return (W1 * sig[None]) @ (W1 if W2 is None else W2).T

    # the teacher (theory.finite_dim_classes at round 0)
    W_o = weights(C - U, 0)
    cov_w = own(W_o)
    means_o = np.where(present[:, :, None], teacher.output_mean[0], np.nan)
    covs_o = np.full((K, K, K, K), np.nan)
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            u = within_part(eye[l], C[k])
            covs_o[k, l] = cov_w + teacher.kappa[0] * haar_bracket(n, m, Gam_Y, u[:, None], u[None, :])
    rng = np.random.default_rng(seed)
    pairs, tvec = _pairs(K)
    pair_prob = np.full((K, K, len(pairs)), np.nan)
    jac = np.zeros((K, K, K, K))
    terr = jerr = 0.0
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            if K == 2:
                pair_prob[k, l] = 1.0
                continue
            pair_prob[k, l], jac[k, l], e, je = _teacher_targets(means_o[k, l], covs_o[k, l], tvec, prob_tol, rng)
            terr, jerr = max(terr, e), max(jerr, je)
    tt = _target_statistics(counts, pairs, tvec, pair_prob, jac, covs_o, terr)
    Tbar, Jbar = tt.Tbar, tt.Jbar
    perr = max(tt.error, teacher.probability_error)

    # step 1's constants: Haar covariances of f = f_1 and f^2 = f_2, fresh tau pairs
    Ef = F.moments
    k11, k12, k22 = (haar_kappa(m * (Ef[1] - Ef[0] ** 2), m), haar_kappa(m * (Ef[2] - Ef[0] * Ef[1]), m),
                     haar_kappa(m * (Ef[3] - Ef[1] ** 2), m))
    t11, t12, t22 = F.tau_pairs[0, 0], F.tau_pairs[0, 1], F.tau_pairs[1, 1]

    # steps 2-3: the chain term's class-level mean and the student's own-noise weights
    B = nP1 @ (C - U)  # the teacher's class-level mean output minus U
    X = nP2 - 2.0 * phi1 * nP1 - nP1 @ nP1
    chain_class = X @ (C - U)
    W_chain = weights(C - U, 1) - phi1 * W_o - weights(B, 0)
    W_s = weights(Tbar - U, 0) + Jbar @ (W_chain - phi1 * W_o)
    W_f = weights(Tbar - U, 0) + Jbar @ W_chain
    own_joint = own(np.vstack([W_o, W_s]))

    student = np.full((K, K), np.nan)
    Z = np.zeros((K, K))
    for k in range(K):
        for l in np.flatnonzero(present[k]):
            if K == 2:
                student[k, l] = 0.0  # every target is (1/2, 1/2): the student's outputs are U, a tie
                continue
            uY = within_part(eye[l], C[k])
            GA = haar_bracket(n, m, Gam_Y, uY[:, None], uY[None, :])
            SX = np.block([
                [k11 * GA, k12 * GA, k11 * bb * tt.Gam_AE, Z],
                [k12 * GA, k22 * GA, k12 * bb * tt.Gam_AE, Z],
                [k11 * bb * tt.Gam_AE.T, k12 * bb * tt.Gam_AE.T, k11 * bb * tt.Gam_EE, Z],
                [Z, Z, Z, teacher.kappa[0] * bb * tt.Gam_nu],
            ])
            L = np.block([[eye, Z, Z, Z], [-2.0 * phi1 * Jbar, Jbar, eye, eye]])
            cov = L @ SX @ L.T + own_joint
            mean_s = (U + phi1 * (tt.tvec - U) + nP1[k] @ (Tbar - U)
                      + Jbar @ ((phi2 - phi1**2) * (eye[l] - U) + chain_class[k]))
            student[k, l], er = _student_correct(k, means_o[k, l], mean_s, cov, prob_tol, rng)
            perr = max(perr, er)

    # step 4: fresh samples
    fresh_mean = U + mv @ W_f.T  # (K, K): row k the mean output of a fresh class-k sample
    cross = (t12 - phi1 * t11) * tt.Gam_AE.T @ Jbar.T
    fresh_cov = (own(W_f) + t11 * (tt.Gam_EE + tt.Gam_nu) + (t22 - 2.0 * phi1 * t12 + phi1**2 * t11) * Jbar @ Gam_Y @ Jbar.T
                 + cross + cross.T)
    fresh_cov = np.broadcast_to(fresh_cov, (K, K, K))
    if K == 2:
        fresh_st = np.zeros(K)
    else:
        from .finite_dim import orthant_probability
        from .finite_dim_pll import _margin_rows

        Rs = np.stack([_margin_rows(K, k) for k in range(K)])
        pf, ef = orthant_probability(np.einsum("kjr,kr->kj", Rs, fresh_mean), Rs @ fresh_cov @ Rs.transpose(0, 2, 1),
                                     prob_tol)
        fresh_st = pf
        perr = max(perr, float(ef.max()))

    def train_acc(p):
        return float((np.where(present, p, 0.0) * counts).sum() / N)

    teacher_pc = np.where(present, teacher.p_correct[0], np.nan)
    return ClassesPLL(
        pairs=tt.pairs, pair_prob=tt.pair_prob, contains_true=tt.contains, mean_targets=Tbar,
        teacher_p_correct=teacher_pc, student_p_correct=student,
        teacher_train_accuracy=float(teacher.train_accuracy[0]), student_train_accuracy=train_acc(student),
        teacher_fresh_accuracy=float(teacher.fresh_accuracy[0]), student_fresh_accuracy=float(np.mean(fresh_st)),
        student_fresh_mean=fresh_mean, student_fresh_cov=np.array(fresh_cov),
        fixed_point_residual=F.fixed_point_residual, quadrature_error=F.quadrature_error, probability_error=perr,
        jacobian_error=jerr,
    )
