"""Tests for sims.engine.fit.fit_soft: the same optimum as the exact Newton solver fit_features, the
stopping rule, warm starts, errors, memory-mapped input.

Tolerance policy: fit_features is run at residual tol 1e-12 (exact to round-off for these small
problems); fit_soft at its defaults (gtol 1e-8, output_tol 1e-9), whose stopping rule promises outputs
within output_tol of the optimum. Outputs are compared at 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest

from sims.engine import fit_soft as engine_fit_soft
from sims.engine.fit import NotConvergedError, SoftFit, fit_features, fit_soft
from sims.engine.fit.soft_blocks import ClassBlocks
from tests.theorems.strategies import raises_naming

OUT_TOL = 1e-8


def mixture(N, D, K, seed=0, soft=True):
    """Gaussian-mixture features (with a common mean) and soft (Dirichlet around a noisy label) targets."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N)
    M = rng.normal(size=(K, D))
    X = (rng.normal(size=(N, D)) + 1.2 * M[y] + 0.3) / np.sqrt(D)
    z = np.where(rng.random(N) < 0.3, rng.integers(0, K, N), y)
    T = np.eye(K)[:, z]
    if soft:
        T = 0.6 * T + 0.4 * rng.dirichlet(np.ones(K), size=N).T
    return X, T


CASES = [  # (N, D, K, lam): D < N and D > N
    (80, 6, 2, 1e-2),
    (90, 10, 3, 1e-3),
    (60, 90, 4, 1e-2),
    (100, 12, 5, 1e-3),
    (40, 70, 5, 1e-3),
]


@pytest.mark.parametrize("N,D,K,lam", CASES)
@pytest.mark.parametrize("method", ["auto", "trust-ncg"])
def test_ce_matches_fit_features(N, D, K, lam, method):
    X, T = mixture(N, D, K, seed=N + D + K)
    ref = fit_features(X, T, lam, tol=1e-12)
    fit = fit_soft(X, T, lam, method=method)
    assert isinstance(fit, SoftFit) and fit.converged
    assert fit.P.shape == (K, N) and fit.W.shape == (K, D)
    assert np.max(np.abs(fit.P - ref.outputs)) <= OUT_TOL
    assert np.max(np.abs(fit.W - ref.W)) <= 1e-7 * max(1.0, np.max(np.abs(ref.W)))
    # the stopping rule as stated, and the fixed-point residual at the optimum
    assert fit.gradient_norm <= 1e-8 * fit.gradient_scale
    assert fit.output_change <= 1e-9 or fit.predicted_change <= 0.5e-9
    assert fit.residual <= 1e-7
    np.testing.assert_allclose(fit.W.sum(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(fit.predict_proba(X), fit.P, atol=1e-12)
    assert fit.precondition == ("whiten" if D <= N else "diag")  # the D x D eigenbasis only when D <= N


@pytest.mark.parametrize("output_tol", [1e-4, 1e-6])
@pytest.mark.parametrize("N,D,K,seed", [(400, 12, 5, 1), (600, 20, 8, 2), (500, 30, 12, 3)])
def test_outputs_within_output_tol_when_the_prediction_stops(N, D, K, seed, output_tol):
    """At a loose output_tol the class-block prediction ends the Newton steps: the outputs it returns
    are within output_tol of the optimum (the promise of the stopping rule), and the prediction it
    reports is what stopped it."""
    X, T = mixture(N, D, K, seed=seed)
    lam = 1e-3
    ref = fit_features(X, T, lam, tol=1e-12).outputs
    fit = fit_soft(X, T, lam, gtol=1e-4, output_tol=output_tol)
    assert fit.newton_precondition == "classes"
    assert fit.output_change <= output_tol or fit.predicted_change <= 0.5 * output_tol
    assert np.max(np.abs(fit.P - ref)) <= output_tol


@pytest.mark.parametrize("N,D,K,lam", [CASES[1], CASES[2], CASES[3]])
def test_gce_matches_fit_features_from_the_teacher(N, D, K, lam):
    X, T = mixture(N, D, K, seed=7 * K)
    teacher = fit_features(X, T, lam, tol=1e-12)
    ref = fit_features(X, T, lam, loss="gce", q=0.7, W0=teacher.W, tol=1e-12)
    fit = fit_soft(X, T, lam, loss="gce", q=0.7, W0=teacher.W)
    assert fit.loss == "gce" and fit.q == 0.7
    assert np.max(np.abs(fit.P - ref.outputs)) <= OUT_TOL
    assert fit.residual <= 1e-7


def test_hard_targets_and_sd_rounds_warm_started():
    """Teacher on one-hot labels, then SD rounds on its outputs: each warm fit is the cold optimum."""
    X, T = mixture(120, 8, 4, seed=3, soft=False)
    lam = 1e-3
    prev = fit_soft(X, T, lam)
    assert np.max(np.abs(prev.P - fit_features(X, T, lam, tol=1e-12).outputs)) <= OUT_TOL
    for _ in range(2):
        warm = fit_soft(X, prev.P, lam, W0=prev.W)
        cold = fit_features(X, prev.P, lam, tol=1e-12)
        assert np.max(np.abs(warm.P - cold.outputs)) <= OUT_TOL
        prev = warm


def test_warm_start_at_the_optimum_and_row_mean_removed():
    X, T = mixture(90, 10, 3, seed=11)
    lam = 1e-2
    fit = fit_soft(X, T, lam)
    again = fit_soft(X, T, lam, W0=fit.W + 5.0)  # a common shift of the rows changes no output
    assert np.max(np.abs(again.P - fit.P)) <= OUT_TOL
    assert again.iterations <= 2


def test_warm_start_at_its_own_outputs_returns_the_full_gradient():
    """A start whose outputs are the targets skips the gradient's data term in its first evaluation; when that
    start is returned (lam W0 is already below gtol), its gradient is computed in full."""
    X, _ = mixture(90, 10, 3, seed=12)
    lam = 1e-3
    W0 = np.random.default_rng(3).normal(size=(3, 10)) * 1e-9
    W0 -= W0.mean(axis=0)
    Z = W0 @ X.T
    T = np.exp(Z - Z.max(axis=0))
    T /= T.sum(axis=0)
    fit = fit_soft(X, T, lam, W0=W0)
    assert fit.newton_steps == 0
    G = (fit.P - T) @ X / X.shape[0] + lam * fit.W
    assert abs(fit.gradient_norm - np.max(np.abs(G))) <= 1e-12 * np.max(np.abs(G))
    assert np.max(np.abs(fit.P - T)) <= OUT_TOL


def test_sd_round_goes_straight_to_the_newton_steps():
    """An SD round's start (gradient lam W0, below the handover here) needs no optimiser iteration; the outputs
    are the reference's."""
    X, T = mixture(200, 12, 5, seed=13, soft=False)
    lam = 1e-3
    teacher = fit_soft(X, T, lam)
    warm = fit_soft(X, teacher.P, lam, W0=teacher.W)
    assert warm.newton_steps >= 1 and warm.iterations == warm.newton_steps
    assert np.max(np.abs(warm.P - fit_features(X, teacher.P, lam, tol=1e-12).outputs)) <= OUT_TOL


def test_class_blocks_regroup_by_the_outputs():
    X, T = mixture(60, 5, 3, seed=14, soft=False)
    blocks = ClassBlocks(X, T, X.T @ X / 60, 1e-3)
    assert not blocks.regroup(T)  # the same groups: nothing recomputed
    P = np.roll(T, 1, axis=0)
    assert blocks.regroup(P) and np.array_equal(blocks.groups, np.argmax(P, axis=0))
    P2 = P.copy()
    P2[:, 0] = np.roll(P2[:, 0], 1)
    assert not blocks.regroup(P2, share=0.05)  # 1 of 60 changed: below the share
    assert blocks.regroup(P2) and blocks.regroups == 2


def test_limited_memory_update_of_the_preconditioner():
    """_lmp_solve: symmetric positive definite, and exact on CG's pairs for the matrix they came from."""
    from sims.engine.fit.soft import _lmp_solve, _pcg

    rng = np.random.default_rng(5)
    n = 12
    A = rng.normal(size=(n, n))
    H = A @ A.T + 0.5 * np.eye(n)
    M = lambda r: r / np.diag(H)  # noqa: E731  (a Jacobi preconditioner)
    pairs = []
    _pcg(lambda v, Ud=None: H @ v, lambda v: np.zeros(1), rng.normal(size=n), M, 1e-12, 4, pairs=pairs)
    assert len(pairs) == 4
    for sv, yv, _rho in pairs:
        np.testing.assert_allclose(_lmp_solve(M, pairs, yv), sv, rtol=1e-8, atol=1e-10 * np.abs(sv).max())
    B = np.stack([_lmp_solve(M, pairs, e) for e in np.eye(n)], axis=1)
    np.testing.assert_allclose(B, B.T, atol=1e-10 * np.abs(B).max())
    assert np.linalg.eigvalsh((B + B.T) / 2).min() > 0
    assert _lmp_solve(M, [], np.ones(n)) is not None


def test_methods_and_preconditioners_agree():
    X, T = mixture(100, 12, 5, seed=5)
    lam = 1e-3
    ref = fit_features(X, T, lam, tol=1e-12).outputs
    for method in ("lbfgs", "trust-ncg", "trust-krylov"):
        for pre in ("whiten", "diag", "none"):
            fit = fit_soft(X, T, lam, method=method, precondition=pre)
            assert fit.method == method and fit.precondition == pre
            assert np.max(np.abs(fit.P - ref)) <= OUT_TOL


def test_newton_preconditioners_agree_and_auto_picks_classes_for_ce():
    X, T = mixture(100, 12, 5, seed=5)
    lam = 1e-3
    ref = fit_features(X, T, lam, tol=1e-12).outputs
    fits = {pre: fit_soft(X, T, lam, newton_precondition=pre) for pre in ("auto", "classes", "none")}
    assert fits["auto"].newton_precondition == "classes" and fits["none"].newton_precondition == "none"
    for fit in fits.values():
        assert np.max(np.abs(fit.P - ref)) <= OUT_TOL
    teacher = fit_features(X, T, lam, tol=1e-12)
    assert fit_soft(X, T, lam, loss="gce", W0=teacher.W).newton_precondition == "none"  # CE only
    assert fit_soft(X, T, lam, precondition="diag").newton_precondition == "none"  # needs the whitening


def _equal_within_groups(K, D, per, seed):
    """Features whose groups share one within-group point set (so one within-group covariance), targets
    one-hot by group, outputs constant within each group: the case where the block model is exact."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(per, D))
    Z -= Z.mean(axis=0)
    means = rng.normal(size=(K, D))
    X = np.concatenate([means[c] + Z for c in range(K)]) / np.sqrt(D)
    groups = np.repeat(np.arange(K), per)
    T = np.eye(K)[:, groups]
    P = rng.dirichlet(np.ones(K), size=K).T[:, groups]  # column i: its group's outputs
    return X, T, P


def test_class_blocks_are_the_exact_diagonal_blocks_when_groups_are_alike():
    """With one weight and one within-group covariance per group, the model's blocks are the exact
    diagonal blocks of the CE Hessian (formed here by brute force), and solve() inverts them."""
    K, D, per, lam = 3, 4, 7, 1e-2
    X, T, P = _equal_within_groups(K, D, per, seed=4)
    N = X.shape[0]
    blocks = ClassBlocks(X, T, X.T @ X / N, lam)
    blocks.refresh(P)
    rng = np.random.default_rng(1)
    R = rng.normal(size=(K, D))
    Z = np.empty((K, D))
    for k in range(K):
        Hkk = (X * (P[k] * (1.0 - P[k]))[:, None]).T @ X / N + lam * np.eye(D)
        Z[k] = np.linalg.solve(Hkk, R[k])
    # relative 1e-10: a few solves of 4 x 4 systems with condition below 1e4
    np.testing.assert_allclose(blocks.solve(R), Z - Z.mean(axis=0), rtol=1e-10, atol=1e-10 * np.abs(Z).max())


def test_class_blocks_solve_is_symmetric_positive_on_zero_mean_rows():
    """CG needs a symmetric positive preconditioner on the subspace it works in (rows summing to zero)."""
    X, T = mixture(90, 10, 4, seed=8)
    blocks = ClassBlocks(X, T, X.T @ X / 90, 1e-3)
    blocks.refresh(fit_soft(X, T, 1e-3).P)
    rng = np.random.default_rng(2)
    A, B = (R - R.mean(axis=0) for R in rng.normal(size=(2, 4, 10)))
    # symmetric to round-off of O(K^3 + D^2) operations on values of order 1e3
    assert abs(np.vdot(A, blocks.solve(B)) - np.vdot(blocks.solve(A), B)) <= 1e-9 * np.abs(blocks.solve(A)).max()
    assert np.vdot(A, blocks.solve(A)) > 0


def test_exported_from_the_engine():
    assert engine_fit_soft is fit_soft


def test_not_converged_when_max_iter_is_tiny():
    X, T = mixture(100, 12, 5, seed=1)
    with pytest.raises(NotConvergedError) as info:
        fit_soft(X, T, 1e-4, max_iter=1)
    assert info.value.iterations <= 1
    assert info.value.residual > 0


def test_memmap_input(tmp_path):
    X, T = mixture(90, 10, 3, seed=2)
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xm = np.load(path, mmap_mode="r")
    assert not Xm.flags.writeable
    fit = fit_soft(Xm, T, 1e-2)
    ref = fit_soft(X, T, 1e-2)
    assert np.max(np.abs(fit.P - ref.P)) <= 1e-12
    np.testing.assert_allclose(fit.logits(Xm), ref.logits(X), atol=1e-10)


@pytest.mark.parametrize("change,name,shown", [
    (lambda X, T, kw: (np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), T, kw), "X", ()),
    (lambda X, T, kw: (X, T[:, :-1], kw), "T", ("(3, 29)",)),
    (lambda X, T, kw: (X[:, 0], T, kw), "X", ("(30,)",)),
    (lambda X, T, kw: (X, T * 1.01, kw), "T", ("column 0",)),
    (lambda X, T, kw: (X, np.vstack([T[:1] + 0.5, T[1:2] - 0.5, T[2:]]), kw), "T", ("(1, 0)",)),
    (lambda X, T, kw: (X, T, {**kw, "lam": 0.0}), "lam", ("0.0",)),
    (lambda X, T, kw: (X, T, {**kw, "lam": -1.0}), "lam", ("-1.0",)),
    (lambda X, T, kw: (X, T, {**kw, "W0": np.zeros((2, 10))}), "W0", ("(2, 10)",)),
    (lambda X, T, kw: (X, T, {**kw, "loss": "mse"}), "loss", ("'mse'",)),
    (lambda X, T, kw: (X, T, {**kw, "q": 1.5}), "q", ("1.5",)),
    (lambda X, T, kw: (X, T, {**kw, "gtol": 0.0}), "gtol", ("0.0",)),
    (lambda X, T, kw: (X, T, {**kw, "max_iter": 0}), "max_iter", ("0",)),
    (lambda X, T, kw: (X, T, {**kw, "method": "newton"}), "method", ("'newton'",)),
    (lambda X, T, kw: (X, T, {**kw, "precondition": "chol"}), "precondition", ("'chol'",)),
    (lambda X, T, kw: (X, T, {**kw, "newton_precondition": "ilu"}), "newton_precondition", ("'ilu'",)),
    (lambda X, T, kw: (X, T, {**kw, "newton_precondition": "classes", "loss": "gce"}), "newton_precondition",
     ("'gce'",)),
    (lambda X, T, kw: (X, T, {**kw, "newton_precondition": "classes", "precondition": "diag"}),
     "newton_precondition", ("'diag'",)),
])
def test_bad_input_names_the_parameter(change, name, shown):
    X, T = mixture(30, 10, 3, seed=0)
    X, T, kw = change(X, T, {"lam": 1e-2})
    with raises_naming(name, *shown):
        fit_soft(X, T, **kw)


def test_new_points_shape_checked():
    X, T = mixture(30, 10, 3, seed=0)
    fit = fit_soft(X, T, 1e-2)
    with raises_naming("X_new", "(30, 5)"):
        fit.logits(X[:, :5])
    assert fit.predict_proba(X[:4]).shape == (3, 4)


def test_a_step_that_rounding_hides_is_judged_by_its_gradient():
    """The backtracking rule: Armijo with a 16 eps |f| allowance; where the step's first-order decrease is below
    that allowance, f cannot rank the points and a smaller gradient accepts them (f up to 64 allowances higher)."""
    from sims.engine.fit.soft import _accept_step

    f = 3.156423308831776
    ulp = np.finfo(float).eps * f
    assert _accept_step(f, f - 1e-6, -1e-3, 1e-3, 2e-3)  # a decrease Armijo sees, whatever the gradient does
    assert _accept_step(f, f + 10 * ulp, -1e-30, 1e-10, 2e-10)  # within the allowance
    # the case met at N = 2e5: 29 eps above, first-order decrease far below rounding, the gradient 4000x smaller
    assert _accept_step(f, f + 29 * ulp, -1e-20, 1.8e-10, 4.4e-14)
    assert not _accept_step(f, f + 29 * ulp, -1e-20, 1.8e-10, 1.8e-10)  # no smaller gradient: rejected
    assert not _accept_step(f, f + 29 * ulp, -1e-3, 1.8e-10, 4.4e-14)  # a decrease f could have shown
    assert not _accept_step(f, f + 2000 * ulp, -1e-20, 1.8e-10, 4.4e-14)  # a rise beyond any rounding
