"""Tests for sims.solver: the three exact forms agree, residuals, optimality, errors.

Tolerance policy. Every solver stops at an output-space fixed-point residual
<= tol (1e-10 unless set). Two exact solutions of the same problem then differ
in the outputs by about residual * (condition of the fixed-point map), which for
these small problems (lam >= 1e-4, N <= 120) is at most ~1e2: agreement of
outputs is asserted at 1e-8. Quantities multiplied by 1/(N lam) (weights,
logits) are compared relative to their own size at 1e-7.
"""

from __future__ import annotations

import numpy as np
import pytest

import sims.engine as E
from sims.engine import noise as N
from sims.engine.fit import solver
from sims.engine.features import block_gram
from sims.engine.fit.solver import NotConvergedError, fit_block, fit_features, fit_gram
from tests.theorems.strategies import raises_naming

# Outputs of two exact solutions agree to residual * conditioning (see module doc).
OUT_TOL = 1e-8
# Relative agreement of logits / weights (outputs tolerance times |logit| scale).
REL_TOL = 1e-7


def rel_err(a, b):
    return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))


@pytest.fixture
def problem():
    """Gaussian-mixture features (N=60, D=12 < N), noisy one-hot and soft targets."""
    rng = np.random.default_rng(0)
    K, n, D = 3, 20, 12
    N = K * n
    y = np.repeat(np.arange(K), n)
    X = rng.normal(size=(N, D)) / np.sqrt(D)
    X[:, :K] += 0.8 * np.eye(K)[y]
    z = np.where(rng.random(N) < 0.3, rng.integers(0, K, N), y)
    Y = np.eye(K)[:, z]
    Tsoft = rng.dirichlet(np.ones(K), size=N).T
    return X, Y, Tsoft, rng


@pytest.mark.parametrize("lam", [1e-2, 1e-4])
@pytest.mark.parametrize("soft", [False, True])
def test_primal_and_gram_agree(problem, lam, soft):
    X, Y, Tsoft, rng = problem
    T = Tsoft if soft else Y
    N = X.shape[0]
    pf = fit_features(X, T, lam)
    gf = fit_gram(X @ X.T, T, lam)
    assert pf.residual <= 1e-10 and gf.residual <= 1e-10
    assert pf.converged and gf.converged
    np.testing.assert_allclose(pf.outputs, gf.outputs, atol=OUT_TOL, rtol=0)
    # Optimality: W = (T - P) X / (N lam).
    W_opt = (T - pf.outputs) @ X / (N * lam)
    assert rel_err(pf.W, W_opt) <= REL_TOL
    # Rows of W sum to zero (loss depends on logit differences only).
    assert np.max(np.abs(pf.W.sum(axis=0))) <= 1e-9 * max(1.0, np.max(np.abs(pf.W)))
    # Same predictions on new points from both forms.
    X_new = rng.normal(size=(7, X.shape[1]))
    assert rel_err(gf.logits(X @ X_new.T), pf.logits(X_new)) <= REL_TOL
    np.testing.assert_allclose(gf.predict_proba(X @ X_new.T), pf.predict_proba(X_new), atol=OUT_TOL, rtol=0)
    # The residual reported equals the reference implementation with explicit G
    # (both are max-abs differences of outputs; 1e-12 is round-off of one softmax).
    ref = solver.fixed_point_residual(pf.outputs, T, X @ X.T, lam)
    assert abs(ref - pf.residual) <= 1e-12


def test_wide_features_reduced_exactly(problem):
    """D > N goes through an exact QR reduction; compare with the Gram form."""
    _, Y, _, rng = problem
    N = Y.shape[1]
    X = rng.normal(size=(N, 3 * N)) / np.sqrt(N)
    pf = fit_features(X, Y, 1e-3)
    gf = fit_gram(X @ X.T, Y, 1e-3)
    np.testing.assert_allclose(pf.outputs, gf.outputs, atol=OUT_TOL, rtol=0)
    assert rel_err(pf.W, gf.coef @ X) <= REL_TOL


def test_warm_start_same_optimum(problem):
    X, Y, _, _ = problem
    a = fit_features(X, Y, 1e-3)
    b = fit_features(X, Y, 1e-3, W0=a.W + 0.3)  # row-mean shift and all; strictly convex
    np.testing.assert_allclose(a.outputs, b.outputs, atol=OUT_TOL, rtol=0)
    assert b.iterations <= a.iterations


def block_instance(K, n, counts):
    y = np.repeat(np.arange(K), n)
    z = np.concatenate([np.repeat(np.arange(K), counts[k]) for k in range(K)])
    return y, z


@pytest.mark.parametrize("lam", [1e-3, 1e-5])
def test_block_matches_explicit_gram(lam):
    K, n, c, d = 3, 20, 0.4, 0.1
    rng = np.random.default_rng(1)
    counts = np.array([[12, 5, 3], [4, 14, 2], [0, 2, 18]])  # one absent type
    targets = rng.dirichlet(np.ones(K), size=(K, K))
    bf = fit_block(K, n, c, d, lam, counts, targets)
    assert bf.residual <= 1e-10
    assert np.all(np.isnan(bf.outputs[2, 0])) and not np.any(np.isnan(bf.outputs[0, 0]))
    y, z = block_instance(K, n, counts)
    T = targets[y, z].T
    G = block_gram(K, n, c, d)
    gf = fit_gram(G, T, lam)
    np.testing.assert_allclose(gf.outputs, bf.outputs[y, z].T, atol=OUT_TOL, rtol=0)
    # Fresh sample of class k: correlation c with class-k training points, d otherwise.
    cross = np.where(y[:, None] == np.arange(K)[None, :], c, d)
    assert rel_err(gf.logits(cross).T, bf.fresh_logits) <= REL_TOL
    # Training logits per type match the Gram form's.
    assert rel_err((gf.coef @ G)[:, np.arange(K * n)].T, bf.logits[y, z]) <= REL_TOL


def test_block_multiround_and_warm_start():
    K, n, c, d, lam = 4, 500, 0.4, 0.1, 1e-5
    counts = np.array([np.roll([250, 84, 83, 83], k) for k in range(K)])
    T = np.broadcast_to(np.eye(K)[None], (K, K, K)).copy()
    prev = None
    for _ in range(5):
        cold = fit_block(K, n, c, d, lam, counts, T)
        if prev is not None:
            warm = fit_block(K, n, c, d, lam, counts, T, init_logits=prev.logits)
            np.testing.assert_allclose(warm.outputs, cold.outputs, atol=OUT_TOL, rtol=0)
        assert cold.residual <= 1e-10
        prev, T = cold, cold.outputs


def test_not_converged_raises(problem):
    X, Y, _, _ = problem
    with pytest.raises(NotConvergedError) as info:
        fit_features(X, Y, 1e-4, max_iter=1)
    assert info.value.iterations == 1 and info.value.residual > 1e-10
    assert isinstance(info.value, RuntimeError)
    with pytest.raises(NotConvergedError):
        fit_gram(X @ X.T, Y, 1e-4, max_iter=1)
    counts = np.array([[15, 5], [5, 15]])
    with pytest.raises(NotConvergedError) as info:
        fit_block(2, 20, 0.4, 0.1, 1e-5, counts, np.broadcast_to(np.eye(2)[None], (2, 2, 2)), max_iter=1)
    assert info.value.iterations == 1


@pytest.mark.parametrize(
    "kwargs, word, shown",
    [
        (dict(lam=0.0), "lam", "0.0"),
        (dict(lam=-1.0), "lam", "-1.0"),
        (dict(q=0.0, loss="gce"), "q", "0.0"),
        (dict(q=1.5, loss="gce"), "q", "1.5"),
        (dict(loss="mse"), "loss", "'mse'"),
        (dict(tol=0.0), "tol", "0.0"),
        (dict(max_iter=0), "max_iter", "0"),
    ],
)
def test_bad_scalars(problem, kwargs, word, shown):
    X, Y, _, _ = problem
    args = dict(lam=1e-3)
    args.update(kwargs)
    lam = args.pop("lam")
    with raises_naming(word, shown):
        fit_features(X, Y, lam, **args)
    with raises_naming(word, shown):
        fit_gram(X @ X.T, Y, lam, **args)


def test_bad_arrays(problem):
    X, Y, _, _ = problem
    with raises_naming("T", str(Y[:, :-1].shape)):
        fit_features(X, Y[:, :-1], 1e-3)
    bad = Y.copy()
    bad[0, 0] += 1e-6  # column sum 1 + 1e-6 > SIMPLEX_TOL
    with raises_naming("T", "column 0", "1.000001"):
        fit_features(X, bad, 1e-3)
    neg = Y.copy()
    neg[:, 0] = [1.5, -0.5, 0.0]
    with raises_naming("T", "(1, 0)", "-0.5"):
        fit_features(X, neg, 1e-3)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with raises_naming("X"):
        fit_features(Xn, Y, 1e-3)
    with raises_naming("W0", "(2, 2)"):
        fit_features(X, Y, 1e-3, W0=np.zeros((2, 2)))
    G = X @ X.T
    asym = G.copy()
    asym[0, 1] += 1e-3
    with raises_naming("G", f"{np.max(np.abs(asym - asym.T)):.3g}"):
        fit_gram(asym, Y, 1e-3)
    # A symmetric matrix with a clearly negative eigenvalue.
    w, v = np.linalg.eigh(G)
    indefinite = G - (w[-1] + 0.1) * np.outer(v[:, -1], v[:, -1])
    with raises_naming("G"):
        fit_gram(indefinite, Y, 1e-3)
    with raises_naming("G", str(G[:, :-1].shape)):
        fit_gram(G[:, :-1], Y, 1e-3)


def test_paper_matrix_rejected():
    """The paper's perturbed matrix (block model + iid uniform entries) is no Gram matrix."""
    rng = np.random.default_rng(3)
    # Noise spectrum radius ~ 2 * 0.0289 * sqrt(N) = 1.7 > 1 - c = 0.6 at N = 900.
    K, n = 3, 300
    M = block_gram(K, n, 0.4, 0.1) + rng.uniform(-0.05, 0.05, (K * n, K * n))
    np.fill_diagonal(M, 1.0)
    Y = np.eye(K)[:, np.repeat(np.arange(K), n)]
    with raises_naming("G", f"{np.max(np.abs(M - M.T)):.3g}"):
        fit_gram(M, Y, 1e-3)
    with raises_naming("G"):
        fit_gram(0.5 * (M + M.T), Y, 1e-3)


def test_block_bad_input():
    K, n = 2, 20
    good_counts = np.array([[15, 5], [5, 15]])
    T = np.broadcast_to(np.eye(K)[None], (K, K, K)).copy()
    with raises_naming("counts", "row 0", "19"):
        fit_block(K, n, 0.4, 0.1, 1e-3, np.array([[15, 4], [5, 15]]), T)
    with raises_naming("c", "1.0"):
        fit_block(K, n, 1.0, 0.1, 1e-3, good_counts, T)
    with raises_naming("d", "0.5"):
        fit_block(K, n, 0.4, 0.5, 1e-3, good_counts, T)
    with raises_naming("lam", "0.0"):
        fit_block(K, n, 0.4, 0.1, 0.0, good_counts, T)
    with raises_naming("targets", "(2, 2, 1)"):
        fit_block(K, n, 0.4, 0.1, 1e-3, good_counts, T[:, :, :1])
    bad = T.copy()
    bad[0, 1] = [0.7, 0.7]
    with raises_naming("targets", "column 1", "1.4"):
        fit_block(K, n, 0.4, 0.1, 1e-3, good_counts, bad)
    with raises_naming("init_logits", "None"):
        fit_block(K, n, 0.4, 0.1, 1e-3, good_counts, T, loss="gce")


# ----------------------------------------------------------------------------
# GCE
# ----------------------------------------------------------------------------


def pll_targets(P):
    """1/2 on each of the two largest outputs (no ties in these tests)."""
    top = np.argsort(-P, axis=0)[:2]
    T = np.zeros_like(P)
    np.put_along_axis(T, top, 0.5, axis=0)
    return T


def test_gce_stationary_and_descent(problem):
    X, Y, _, _ = problem
    lam = 1e-3
    N = X.shape[0]
    teacher = fit_features(X, Y, lam)
    T = pll_targets(teacher.outputs)
    st = fit_features(X, T, lam, loss="gce", q=0.7, W0=teacher.W)
    assert st.residual <= 1e-10
    # KKT in weight space: grad f = lam (W - W~); |W| <= ~1e2 here, residual 1e-10
    # in outputs gives |grad| ~ lam * 1e-8 at most; assert 1e-9.
    assert st.gradient_max <= 1e-9

    def objective(W):
        Z = W @ X.T
        return solver._loss_value(Z, T, "gce", 0.7) / N + 0.5 * lam * np.sum(W**2)

    assert objective(st.W) <= objective(teacher.W - teacher.W.mean(axis=0))
    # Residual definition: the GCE fixed point with -g(P).
    ref = solver.fixed_point_residual(st.outputs, T, X @ X.T, lam, loss="gce", q=0.7)
    assert abs(ref - st.residual) <= 1e-12


def test_gce_small_q_approaches_ce(problem):
    """GCE gradient = CE gradient + O(q) (p^q = 1 + q log p + ...); the optimum moves by O(q)."""
    X, _, Tsoft, _ = problem
    lam = 1e-2
    ce = fit_features(X, Tsoft, lam)
    errs = []
    for q in (1e-2, 1e-3):
        g = fit_features(X, Tsoft, lam, loss="gce", q=q, W0=ce.W)
        errs.append(np.max(np.abs(g.outputs - ce.outputs)))
    # O(q) convergence: ten times smaller q gives a roughly ten times smaller gap
    # (allow a factor 5 for the O(q^2) term).
    assert errs[1] <= errs[0] / 5
    assert errs[1] <= 1e-2


def test_gce_one_hot_is_reweighted_ce(problem):
    """One-hot targets: g = p_y^q (p - e_y), so the GCE stationary point is the
    fixed point of CE with per-instance weights w_i = p_{y_i}^q:
    P = softmax((Y - P) diag(w) G / (N lam))."""
    X, Y, _, _ = problem
    lam, q = 1e-3, 0.7
    N = X.shape[0]
    teacher = fit_features(X, Y, lam)
    st = fit_features(X, Y, lam, loss="gce", q=q, W0=teacher.W)
    w = np.sum(Y * st.outputs, axis=0) ** q
    Z = ((Y - st.outputs) * w) @ (X @ X.T) / (N * lam)
    np.testing.assert_allclose(solver._softmax(Z), st.outputs, atol=1e-9, rtol=0)


def test_gce_forms_agree():
    """GCE from the CE teacher: block form, Gram form (block model Gram) agree.

    Newton's method is affine invariant, so both forms take the same steps from
    the same start when no Hessian modification is needed; they reach the same
    stationary point.
    """
    K, n, c, d, lam = 3, 20, 0.4, 0.1, 1e-3
    counts = np.array([[12, 5, 3], [4, 14, 2], [2, 2, 16]])
    eye = np.broadcast_to(np.eye(K)[None], (K, K, K)).copy()
    teacher = fit_block(K, n, c, d, lam, counts, eye)
    T = np.full((K, K, K), np.nan)
    for k in range(K):
        for l in range(K):
            T[k, l] = pll_targets(teacher.outputs[k, l][:, None])[:, 0]
    sb = fit_block(K, n, c, d, lam, counts, T, loss="gce", q=0.7, init_logits=teacher.logits)
    assert sb.residual <= 1e-10
    y, z = block_instance(K, n, counts)
    G = block_gram(K, n, c, d)
    tg = fit_gram(G, np.eye(K)[:, z], lam)
    sg = fit_gram(G, T[y, z].T, lam, loss="gce", q=0.7, coef0=tg.coef)
    np.testing.assert_allclose(sg.outputs, sb.outputs[y, z].T, atol=OUT_TOL, rtol=0)


def test_gram_refinement_with_dropped_remainder(problem):
    """A Gram matrix plus a tiny symmetric remainder (|S_ij| ~ 1e-12, within
    PSD_TOL) that pivoted Cholesky drops: the primal solution on the factor
    misses the fixed point of the full G by ~1e-9, and the exact-G Newton
    refinement brings the residual (computed with the full G) below tol."""
    X, Y, _, rng = problem
    N = X.shape[0]
    S = rng.normal(size=(N, N)) * 3e-12
    G = X @ X.T + 0.5 * (S + S.T)
    for loss in ("ce", "gce"):
        fit = fit_gram(G, Y, 1e-4, loss=loss)
        assert fit.refinement_steps >= 1
        assert fit.residual <= 1e-10
        assert abs(solver.fixed_point_residual(fit.outputs, Y, G, 1e-4, loss=loss) - fit.residual) <= 1e-12


# ----------------------------------------------------------------------------- fit_gram routes


@pytest.fixture
def wide():
    """Mixture features with D > N (full-rank Gram, the dense route), noisy one-hot and soft targets."""
    rng = np.random.default_rng(5)
    K, n, D = 3, 30, 400
    N = K * n
    y = np.repeat(np.arange(K), n)
    X = rng.normal(size=(N, D)) * np.sqrt(0.6 / D)
    X[:, :K] += np.sqrt(0.3) * np.eye(K)[y]
    X[:, K] = np.sqrt(0.1)
    z = np.where(rng.random(N) < 0.4, rng.integers(0, K, N), y)
    return X, np.eye(K)[:, z], rng.dirichlet(np.ones(K), size=N).T


@pytest.mark.parametrize("lam", [1e-2, 1e-5])
@pytest.mark.parametrize("soft", [False, True])
def test_dense_route_matches_features(wide, lam, soft):
    X, Y, Tsoft = wide
    T = Tsoft if soft else Y
    G = X @ X.T
    gf = fit_gram(G, T, lam)
    assert gf.method == "dense" and gf.rank == G.shape[0] and gf.refinement_steps == 0
    assert gf.residual <= 1e-10
    # The reported residual is the reference one with the full G (1e-12: one softmax's round-off).
    assert abs(solver.fixed_point_residual(gf.outputs, T, G, lam) - gf.residual) <= 1e-12
    pf = fit_features(X, T, lam)
    np.testing.assert_allclose(gf.outputs, pf.outputs, atol=OUT_TOL, rtol=0)
    assert rel_err(gf.coef @ X, pf.W) <= REL_TOL  # same weights W = coef Phi
    X_new = np.random.default_rng(6).normal(size=(5, X.shape[1]))
    assert rel_err(gf.logits(X @ X_new.T), pf.logits(X_new)) <= REL_TOL


@pytest.mark.parametrize("loss", ["ce", "gce"])
def test_dense_and_lowrank_routes_agree(wide, loss):
    X, Y, _ = wide
    G, lam = X @ X.T, 1e-4
    teacher = fit_gram(G, Y, lam, method="lowrank")
    T = pll_targets(teacher.outputs) if loss == "gce" else Y
    coef0 = teacher.coef if loss == "gce" else None
    a = fit_gram(G, T, lam, loss=loss, coef0=coef0, method="dense")
    b = fit_gram(G, T, lam, loss=loss, coef0=coef0, method="lowrank")
    assert (a.method, b.method) == ("dense", "lowrank")
    assert a.residual <= 1e-10 and b.residual <= 1e-10
    np.testing.assert_allclose(a.outputs, b.outputs, atol=OUT_TOL, rtol=0)
    assert rel_err(a.coef, b.coef) <= REL_TOL


def test_auto_route_rule(problem, wide):
    # Low rank (D = 12 < N = 60): pivoted Cholesky; full rank: the dense route.
    X, Y, _, _ = problem
    assert fit_gram(X @ X.T, Y, 1e-3).method == "lowrank"
    Xw, Yw, _ = wide
    assert fit_gram(Xw @ Xw.T, Yw, 1e-3).method == "dense"
    # A PSD but singular Gram forced onto the dense route: still exact.
    low = fit_gram(X @ X.T, Y, 1e-3, method="lowrank")
    forced = fit_gram(X @ X.T, Y, 1e-3, method="dense")
    assert forced.method == "dense" and forced.rank == low.rank
    np.testing.assert_allclose(forced.outputs, low.outputs, atol=OUT_TOL, rtol=0)


def test_dense_block_model_preconditioner_is_exact():
    # On the exact block model the preconditioner's model a I + V (Lam - a) V^T is
    # G itself, so every Newton system is solved by one CG iteration.
    K, n, c, d, lam = 4, 50, 0.4, 0.1, 1e-5
    counts = np.array([np.roll([26, 8, 8, 8], k) for k in range(K)])
    y, z = block_instance(K, n, counts)
    fit = fit_gram(block_gram(K, n, c, d), np.eye(K)[:, z], lam)
    assert fit.method == "dense" and fit.residual <= 1e-10
    assert fit.cg_iterations == fit.iterations
    bf = fit_block(K, n, c, d, lam, counts, np.broadcast_to(np.eye(K)[None], (K, K, K)).copy())
    np.testing.assert_allclose(fit.outputs, bf.outputs[y, z].T, atol=OUT_TOL, rtol=0)


def test_dense_warm_start_and_prepared_gram(wide):
    X, Y, Tsoft = wide
    G, lam = X @ X.T, 1e-5
    prep = solver.prepare_gram(G)
    assert isinstance(prep, solver.PreparedGram) and prep.method == "dense" and prep.N == G.shape[0]
    r0 = fit_gram(prep, Y, lam)
    cold = fit_gram(prep, r0.outputs, lam)
    warm = fit_gram(prep, r0.outputs, lam, coef0=r0.coef)
    again = fit_gram(G, r0.outputs, lam, coef0=r0.coef)  # array in: same route, same result
    np.testing.assert_allclose(warm.outputs, cold.outputs, atol=OUT_TOL, rtol=0)
    np.testing.assert_array_equal(again.outputs, warm.outputs)
    assert warm.iterations <= cold.iterations
    with raises_naming("method", "'lowrank'"):
        fit_gram(prep, Y, lam, method="lowrank")
    with raises_naming("method", "'cholesky'"):
        fit_gram(G, Y, lam, method="cholesky")
    with raises_naming("method", "'x'"):
        solver.prepare_gram(G, method="x")


def test_prepared_cache_sees_changed_matrix(wide):
    # fit_gram keeps the last prepared matrix; an array changed in place must not reuse it.
    X, Y, _ = wide
    G = X @ X.T
    G = 0.5 * (G + G.T)
    a = fit_gram(G, Y, 1e-3)
    G *= 2.0  # the Gram of sqrt(2) X
    b = fit_gram(G, Y, 1e-3)
    c = fit_features(np.sqrt(2.0) * X, Y, 1e-3)
    np.testing.assert_allclose(b.outputs, c.outputs, atol=OUT_TOL, rtol=0)
    assert np.max(np.abs(a.outputs - b.outputs)) > 1e-3


def test_dense_route_errors(wide):
    X, Y, _ = wide
    G = X @ X.T
    with pytest.raises(NotConvergedError):
        fit_gram(G, Y, 1e-5, max_iter=1, method="dense")
    with raises_naming("coef0", "(2, 3)"):
        fit_gram(G, Y, 1e-3, coef0=np.zeros((2, 3)))
    w, v = np.linalg.eigh(G)
    with raises_naming("G"):
        fit_gram(G - (w[0] + 0.5) * np.outer(v[:, 0], v[:, 0]), Y, 1e-3, method="dense")


@pytest.mark.parametrize("N,D", [(3, 5), (10, 4), (16, 16), (40, 8)])
def test_dense_route_small_and_singular_gram(N, D):
    # N <= 16: the spectral model is the whole spectrum; D < N: singular G forced onto
    # the dense route (its zero eigenvalues are left out of the model). Same outputs
    # as the low-rank route within OUT_TOL.
    rng = np.random.default_rng(N + D)
    X = rng.normal(size=(N, D))
    T = rng.dirichlet(np.ones(3), size=N).T
    a = fit_gram(X @ X.T, T, 1e-3, method="dense")
    b = fit_gram(X @ X.T, T, 1e-3, method="lowrank")
    assert a.residual <= 1e-10 and b.residual <= 1e-10
    np.testing.assert_allclose(a.outputs, b.outputs, atol=OUT_TOL, rtol=0)


# ----------------------------------------------------------------------------- the exact softmax against its linearisation


def _block_problem(Kc, nc, c=0.4, d=0.1, eta=0.4, seed=0):
    """Features with X X^T = the block model and symmetric-noise given labels."""
    w, V = np.linalg.eigh(block_gram(Kc, nc, c, d))
    y = np.repeat(np.arange(Kc), nc)
    z = N.corrupt_labels(y, N.noise_matrix("symmetric", Kc, eta), np.random.default_rng(seed))
    return V * np.sqrt(np.clip(w, 0, None)), y, z


def test_exact_approaches_linear_as_lam_grows():
    # Exact softmax (primal solver on features with X X^T = block model, K = 3,
    # n = 10) vs the brute-force linearisation, rounds 0..3. The softmax's
    # second-order term bounds the gap by zmax^2 / (2K) per fit (zmax = largest
    # exact logit). Measured max|P_exact - P_linear| (relative to zmax/K, the
    # size of the linear part of the outputs):
    #   lam = 0.1: 7.4e-3 (5.5 %), lam = 1: 2.5e-4 (1.3 %), lam = 10: 2.9e-6 (0.15 %).
    Kc, nc = 3, 10
    X, y, z = _block_problem(Kc, nc)
    Y = E.one_hot(z, Kc)
    rel = []
    for lam in (0.1, 1.0, 10.0):
        lin = E.sd(E.LinearModel(X @ X.T, Kc, lam), Y, rounds=3)
        T = Y
        err = zmax = 0.0
        for t in range(4):
            fit = fit_features(X, T, lam)
            err = max(err, np.abs(fit.outputs - lin[t].outputs).max())
            zmax = max(zmax, np.abs(fit.W @ X.T).max())
            T = fit.outputs
        assert err <= zmax**2 / (2 * Kc)
        rel.append(err / (zmax / Kc))
    assert rel[0] > rel[1] > rel[2] and rel[2] < 0.005, rel
