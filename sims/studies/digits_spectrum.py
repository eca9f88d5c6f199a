"""Digits against the finite-D mixture theory with the measured within-class covariance spectrum.

:func:`digits_spectrum_check` (a function for sims.paper_checks; no command of its own) returns

* ``within``: per ridge penalty lambda and round t, the within-class filter average phi_t = (1/m) tr f_s of the
  training Gram's within-class block (observed: its exact eigenvalues, the nonzero ones being those of
  Xi^T Xi, Xi the training residuals about the class means) against (a) :func:`theory.finite_dim_aniso.
  aniso_within_spectrum` with Sigma the within-class covariance measured on the *held-out* test images (so the
  prediction does not see the training residuals it predicts), (b) the same with the training covariance, and
  (c) the isotropic two-number law of :func:`theory.finite_dim.within_spectrum` (c = 1 - tr Sigma_train,
  D = 64 pixels); likewise the spread Var f_s;
* ``accuracy``: per symmetric noise rate, linearised SD on the digits Gram (:class:`sims.engine.fit.LinearModel`,
  :func:`sims.engine.rounds.sd`) with exact label counts (eta * n / (K - 1) must be whole: eta in 0, 0.3, 0.6, 0.75 for n = 120) drawn from ``seed``: observed training accuracy
  (true labels) and test accuracy per round, next to the isotropic mixture prediction
  :func:`theory.finite_dim.finite_dim_prediction` with the two numbers c, d measured on the training Gram
  (d clipped at 0: centred digits have d < 0, which the mixture cannot realise) and D = 64.
  and the measured-spectrum prediction :func:`theory.finite_dim_classes.classes_prediction` (``train_pred_classes``,
  ``fresh_pred_classes``): Gaussian classes with the training class means and the pooled training within-class
  covariance, whose class means lie inside the noise's span (an information-plus-noise Gram);
  ``pll``: the PLL student (linearised CE on the round-0 teacher's top-two targets), observed on the digits and on
  the Gaussian model, next to :func:`theory.finite_dim_classes_pll.classes_pll` on that model (``train_pred_classes``,
  ``fresh_pred_classes``, at ``pll_prob_tol``). ``mean_span_share``: the share of the within-class variance inside the
  span of the K class means (0 in the mixture, whose noise is orthogonal to the means). With ``surrogate_reps``
  > 0, Monte Carlo on that Gaussian model (the digits' class means, the pooled covariance, same sizes, lambda and
  noise) separates the theory's error on its own model from the model's error on digits (non-Gaussian shape,
  class-dependent covariances); a second Monte Carlo with each class's own training covariance
  (``*_gaussian_per_class``: :func:`class_covariances`; same means, sizes, draws) separates those two: the part of the
  digits' miss that class-dependent covariances explain, and the rest (the non-Gaussian shape). The theory has no
  class-dependent covariances; this control is Monte Carlo only.
"""

from __future__ import annotations

import numpy as np

from theory import finite_dim as fdim
from theory.finite_dim_aniso import aniso_within_spectrum
from theory.finite_dim_classes import classes_filters, classes_prediction
from theory.finite_dim_classes_pll import classes_pll

from ..engine import measures as metrics
from ..engine import noise as noise_mod
from ..engine import rounds as sd_rounds
from ..engine.features import load_digits_data
from ..engine.fit import LinearModel
from ..engine.noise import one_hot


def _residuals(X, y, K):
    R = np.array(X, dtype=np.float64)
    for k in range(K):
        R[y == k] -= X[y == k].mean(axis=0)
    return R


def _cov_eigs(R, K):
    S = R.T @ R / (R.shape[0] - K)
    return np.clip(np.linalg.eigvalsh(0.5 * (S + S.T)), 0.0, None)  # clip: round-off negatives of a PSD matrix


def _gaussian_surrogate(means, covs, per_class: int, rng):
    """Gaussian classes with the given means and per-class covariances (features not renormalised)."""
    K, D = means.shape
    y = np.repeat(np.arange(K), per_class)
    X = np.empty((K * per_class, D))
    for k in range(K):
        # the jitter makes the Cholesky factor of a rank-deficient sample covariance exist
        L = np.linalg.cholesky(covs[k] + 1e-12 * np.eye(D))
        X[y == k] = means[k] + rng.standard_normal((per_class, D)) @ L.T
    return X, y


def class_covariances(X, y, K) -> list:
    """Each class's sample covariance of its training points (divisor n_k - 1); their (n_k - 1)-weighted mean is the
    pooled within-class covariance R^T R / (N - K) of the model of theory.finite_dim_classes."""
    return [np.cov(X[y == k], rowvar=False, ddof=1) for k in range(K)]


def _sd_accuracy(X, y, X_test, y_test, K, lam, eta, rounds, rng):
    C = noise_mod.noise_matrix("symmetric", K, eta)
    z = noise_mod.corrupt_labels(y, C, rng, exact=True)
    model = LinearModel(X @ X.T, K, lam)
    fits = sd_rounds.sd(model, one_hot(z, K), rounds)
    cross = X @ X_test.T
    fits = fits + [sd_rounds.pll(model, fits[0])]  # last entry: the PLL student of the round-0 teacher
    return (z, fits, [metrics.accuracy(f.outputs, y) for f in fits],
            [metrics.accuracy(f.logits(cross), y_test) for f in fits])


def digits_spectrum_check(lams=(5e-5, 5e-4), rounds: int = 10, etas=(0.0, 0.3, 0.6), accuracy_lam: float = 5e-4,
                          surrogate_reps: int = 0, seed: int = 0, class_prob_tol: float = 1e-3,
                          pll_prob_tol: float = 3e-3, pll: bool = True) -> dict:
    """See the module doc. Returns {"within": [...], "accuracy": [...], "pll": [...], "c": c, "d": d, "errors": {...}};
    ``pll=False`` leaves out the PLL student (``pll`` is then empty; its theory is the costliest part)."""
    # label draws and the Gaussian control on separate streams: the digits' labels do not depend on surrogate_reps
    # (spawned children do not depend on how many are spawned: the first three as with spawn(3))
    lab_rng, sur_rng, pll_rng, cls_rng = np.random.default_rng(seed).spawn(4)
    dd = load_digits_data()
    K, n = dd.K, dd.n
    N, m, D = K * n, K * n - K, dd.X_train.shape[1]
    R_tr = _residuals(dd.X_train, dd.y_train, K)
    sig_tr = _cov_eigs(R_tr, K)
    sig_te = _cov_eigs(_residuals(dd.X_test, dd.y_test, K), K)
    ev = np.clip(np.linalg.eigvalsh(R_tr.T @ R_tr), 0.0, None)  # the within-class block's nonzero spectrum
    G = dd.X_train @ dd.X_train.T
    same = dd.y_train[:, None] == dd.y_train[None, :]
    off = ~np.eye(N, dtype=bool)
    c, d = float(G[same & off].mean()), float(G[~same].mean())
    c_iso = 1.0 - float(sig_tr.sum())
    s = np.arange(1, rounds + 2, dtype=np.float64)[:, None]
    within, quad, resid = [], 0.0, 0.0
    for lam in lams:
        mu = K * N * lam
        f = (ev[None, :] / (ev[None, :] + mu)) ** s  # zero eigenvalues of the block add f_s(0) = 0
        obs_phi = f.sum(axis=1) / m
        obs_var = (f**2).sum(axis=1) / m - obs_phi**2
        a_te = aniso_within_spectrum(sig_te, m, mu, rounds)
        a_tr = aniso_within_spectrum(sig_tr, m, mu, rounds)
        iso = fdim.within_spectrum(K, n, c_iso, lam, D, rounds)
        quad = max(quad, a_te.quadrature_error, a_tr.quadrature_error, iso.quadrature_error)
        resid = max(resid, a_te.silverstein_residual, a_tr.silverstein_residual)
        for t in range(rounds + 1):
            within.append({"lam": lam, "round": t, "phi_obs": float(obs_phi[t]), "phi_aniso_test_sigma": float(a_te.phi[t]),
                           "phi_aniso_train_sigma": float(a_tr.phi[t]), "phi_iso": float(iso.phi[t]),
                           "var_obs": float(obs_var[t]), "var_aniso_test_sigma": float(a_te.var[t]),
                           "var_iso": float(iso.var[t])})
    means = np.stack([dd.X_train[dd.y_train == k].mean(axis=0) for k in range(K)])
    Q, _ = np.linalg.qr(means.T)  # the span of the class means
    S_tr = R_tr.T @ R_tr / (N - K)
    mean_span_share = float(np.trace(Q.T @ S_tr @ Q) / np.trace(S_tr))
    covs = [S_tr] * K  # the model of theory.finite_dim_classes: one pooled covariance
    covs_k = class_covariances(dd.X_train, dd.y_train, K) if surrogate_reps else None  # the per-class control
    filters = classes_filters(means, S_tr, n, accuracy_lam, rounds) if etas else None  # label-free, so shared
    accuracy, pll_rows, lin_res, prob_err = [], [], 0.0, 0.0
    fp_res, cls_quad, cls_prob, pll_prob = 0.0, 0.0, 0.0, 0.0
    for eta in etas:
        z, fits, train_obs, test_obs = _sd_accuracy(dd.X_train, dd.y_train, dd.X_test, dd.y_test, K, accuracy_lam,
                                                    eta, rounds, lab_rng)
        lin_res = max(lin_res, max(f.residual for f in fits))
        sur, sur_k = [], []
        for _ in range(surrogate_reps):  # Gaussian classes with the digits' means and the pooled covariance
            Xs, ys = _gaussian_surrogate(means, covs, n, sur_rng)
            Xt, yt = _gaussian_surrogate(means, covs, len(dd.y_test) // K, sur_rng)
            _, _, a_tr, a_te = _sd_accuracy(Xs, ys, Xt, yt, K, accuracy_lam, eta, rounds, sur_rng)
            sur.append((a_tr, a_te))
        for _ in range(surrogate_reps):  # ... and with each class's own covariance (own stream: the above unchanged)
            Xs, ys = _gaussian_surrogate(means, covs_k, n, cls_rng)
            Xt, yt = _gaussian_surrogate(means, covs_k, len(dd.y_test) // K, cls_rng)
            _, _, a_tr, a_te = _sd_accuracy(Xs, ys, Xt, yt, K, accuracy_lam, eta, rounds, cls_rng)
            sur_k.append((a_tr, a_te))
        sur = np.array(sur, dtype=np.float64).mean(axis=0) if sur else None
        sur_k = np.array(sur_k, dtype=np.float64).mean(axis=0) if sur_k else None
        counts = noise_mod.label_counts(dd.y_train, z, K)
        # the mixture needs d >= 0 (a squared mean length); centred digits have d < 0: the constant direction
        # only carries the g-term, absent with exact (balanced) label counts
        pred = fdim.finite_dim_prediction(K, n, c, max(d, 0.0), accuracy_lam, D, counts, rounds=rounds, prob_tol=1e-3)
        prob_err = max(prob_err, float(pred.quadrature_error))
        cls = classes_prediction(means, S_tr, n, counts, accuracy_lam, rounds, prob_tol=class_prob_tol,
                                 filters=filters)
        fp_res, cls_quad = max(fp_res, cls.fixed_point_residual), max(cls_quad, cls.quadrature_error)
        cls_prob = max(cls_prob, cls.probability_error)
        for t in range(rounds + 1):
            accuracy.append({
                "eta": float(eta), "round": t, "train_obs": train_obs[t], "test_obs": test_obs[t],
                "train_pred_iso": float(pred.train_accuracy[t]), "fresh_pred_iso": float(pred.fresh_accuracy[t]),
                "train_pred_classes": float(cls.train_accuracy[t]), "fresh_pred_classes": float(cls.fresh_accuracy[t]),
                "train_gaussian_surrogate": None if sur is None else float(sur[0, t]),
                "test_gaussian_surrogate": None if sur is None else float(sur[1, t]),
                "train_gaussian_per_class": None if sur_k is None else float(sur_k[0, t]),
                "test_gaussian_per_class": None if sur_k is None else float(sur_k[1, t]),
            })
        if not pll:
            continue
        # the theory's Gaussian draws take an int seed (as theory.finite_dim.orthant_probability), drawn from the stream
        cpll = classes_pll(means, S_tr, n, counts, accuracy_lam, prob_tol=pll_prob_tol,
                           filters=filters if rounds >= 1 else None, seed=int(pll_rng.integers(2**31)))
        pll_prob = max(pll_prob, cpll.probability_error)
        pll_rows.append({"eta": float(eta), "train_obs": train_obs[-1], "test_obs": test_obs[-1],
                    "train_gaussian_surrogate": None if sur is None else float(sur[0, -1]),
                    "test_gaussian_surrogate": None if sur is None else float(sur[1, -1]),
                    "train_gaussian_per_class": None if sur_k is None else float(sur_k[0, -1]),
                    "test_gaussian_per_class": None if sur_k is None else float(sur_k[1, -1]),
                    "train_pred_classes": cpll.student_train_accuracy, "fresh_pred_classes": cpll.student_fresh_accuracy,
                    "teacher_train_pred_classes": cpll.teacher_train_accuracy,
                    "teacher_fresh_pred_classes": cpll.teacher_fresh_accuracy})
    return {"within": within, "accuracy": accuracy, "pll": pll_rows, "accuracy_lam": accuracy_lam, "c": c, "d": d, "d_used": max(d, 0.0), "D": D, "N": N, "m": m,
            "sigma_effective_rank": float(sig_te.sum() ** 2 / (sig_te**2).sum()), "mean_span_share": mean_span_share,
            "errors": {"quadrature": quad, "silverstein_residual": resid, "linear_solve": lin_res,
                       "theory_quadrature": prob_err, "classes_fixed_point": fp_res, "classes_quadrature": cls_quad,
                       "classes_probability": cls_prob, "classes_pll_probability": pll_prob}}
