"""Multi-round SD and the PLL student (sims.distill), metrics, and the command line.

The linear level is brute-force linear algebra on explicit N x N matrices; here
it is compared with the closed forms of :mod:`theory` (its analytic twin), the
exact softmax solvers are compared with it as lam grows, and the Gaussian mixture
with the exact block model as D grows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sims.engine as E
from sims.studies import distill as Dm
from sims.engine import features as F
from sims.engine import measures as M
from sims.engine import noise as Nm

ROOT = Path(__file__).resolve().parents[2]


def theory_fn(name):
    fn = Dm.theory_function(name)
    if fn is None:
        pytest.skip(f"theory.{name} not available yet")
    return fn


def solver_fn(name):
    solver = pytest.importorskip("sims.engine.fit.solver")
    if not hasattr(solver, name):
        pytest.skip(f"sims.solver.{name} not available yet")
    return getattr(solver, name)


# ----------------------------------------------------------------------------- metrics


def test_accuracy_tie_convention():
    P = np.array([[0.5, 0.5, 0.5 + 2e-9, 0.2], [0.5, 0.5 - 2e-9, 0.5, 0.8]])
    assert M.correct(P, [0, 0, 0, 1]).tolist() == [False, True, True, True]
    assert M.correct(P, [0, 0, 0, 0]).tolist() == [False, True, True, False]
    assert M.correct(np.array([[0.5], [0.5 - 5e-10]]), [0]).tolist() == [False]  # within TIE_TOL: a tie
    acc = M.split_accuracy(P, [0, 0, 0, 1], [0, 1, 0, 1])
    assert acc == {"all": 0.75, "clean": 2 / 3, "noisy": 1.0}
    assert M.split_accuracy(P, [0, 0, 0, 1], [0, 0, 0, 1])["noisy"] is None


def test_pll_targets_tie_rules():
    P = np.array(
        [
            [0.4, 0.3, 0.3, 0.0],  # unique top, two tied for second
            [0.5, 0.5, 0.0, 0.0],  # two tied for first
            [1 / 3, 1 / 3, 1 / 3, 0.0],  # three tied for first
            [0.1, 0.6, 0.2, 0.1],  # strict top two
            [0.4, 0.3, 0.3 - 5e-10, 0.0],  # tie within TIE_TOL
        ]
    ).T
    share = M.pll_targets(P, "share").T
    assert np.allclose(share[0], [0.5, 0.25, 0.25, 0])
    assert np.allclose(share[1], [0.5, 0.5, 0, 0])
    assert np.allclose(share[2], [1 / 3, 1 / 3, 1 / 3, 0])
    assert np.allclose(share[3], [0, 0.5, 0.5, 0])
    assert np.allclose(share[4], [0.5, 0.25, 0.25, 0])
    lowest = M.pll_targets(P, "lowest").T
    assert np.allclose(lowest[0], [0.5, 0.5, 0, 0])
    assert np.allclose(lowest[2], [0.5, 0.5, 0, 0])
    assert np.allclose(lowest[3], [0, 0.5, 0.5, 0])
    assert np.allclose(M.pll_targets(P).sum(axis=0), 1.0)
    with pytest.raises(ValueError, match="ties == 'x'"):
        M.pll_targets(P, "x")


# ----------------------------------------------------------------------------- linear level vs theory

K, n, c, d = 3, 20, 0.4, 0.1


def _labels(eta=0.4, exact=False, seed=0, noise="symmetric", Kc=K, nc=n):
    y = np.repeat(np.arange(Kc), nc)
    z = Nm.corrupt_labels(y, Nm.noise_matrix(noise, Kc, eta), np.random.default_rng(seed), exact=exact)
    return y, z


@pytest.mark.parametrize("lam", [1e-5, 1e-3, 1e-1])
@pytest.mark.parametrize("noise,eta,exact", [("symmetric", 0.4, False), ("asymmetric", 0.6, True), ("superclass", 0.3, False)])
def test_linear_level_equals_closed_form(lam, noise, eta, exact):
    # Brute force (Cholesky of G + K N lam I, N = 60 or 40) vs theory.type_outputs.
    # Tolerance 1e-11: cond(G + K N lam I) <= (mu_max + K N lam) / (1 - c) < 40, the
    # outputs are O(1), float64 round-off ~ 1e-15 * cond * rounds; measured max 7.7e-15.
    type_outputs = theory_fn("type_outputs")
    Kc = 4 if noise == "superclass" else K
    nc = 10 if noise != "symmetric" else n
    y, z = _labels(eta, exact, noise=noise, Kc=Kc, nc=nc)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    fits = E.sd(model, E.one_hot(z, Kc), rounds=6)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    for t, fit in enumerate(fits):
        closed = type_outputs(Kc, nc, c, d, lam, C_emp, t)[y, z].T
        assert np.max(np.abs(fit.outputs - closed)) < 1e-11
        assert fit.residual < 1e-12


def test_linear_level_equals_operator_power_on_general_gram():
    # On a Gaussian-mixture Gram (not block structured): P_t - U = (Y - U) A^(t+1)
    # with A from theory.label_averaging_operator (explicit inverse). Same tolerance.
    label_averaging_operator = theory_fn("label_averaging_operator")
    rng = np.random.default_rng(1)
    X, y = F.sample_gmm(K, n, c, d, 50, rng)
    z = Nm.corrupt_labels(y, Nm.noise_matrix("symmetric", K, 0.4), rng)
    G = X @ X.T
    lam = 1e-3
    A = label_averaging_operator(G, K, lam)
    Y = E.one_hot(z, K)
    fits = E.sd(E.LinearModel(G, K, lam), Y, rounds=4)
    PU = Y - 1 / K
    for fit in fits:
        PU = PU @ A
        assert np.max(np.abs(fit.outputs - 1 / K - PU)) < 1e-11


def test_linear_min_rounds_and_population_accuracy_agree_with_theory():
    # P3 brute force: every training instance correct from theory.min_rounds on, not
    # one round earlier; fresh (population) accuracy equals theory.population_accuracy.
    min_rounds = theory_fn("min_rounds")
    population_accuracy = theory_fn("population_accuracy")
    Kc, nc, lam = 4, 30, 1e-4
    y, z = _labels(0.5, exact=False, seed=3, Kc=Kc, nc=nc)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    t_star = min_rounds(Kc, nc, c, d, lam, C_emp)
    assert t_star is not None and t_star >= 1
    fits = E.sd(E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam), E.one_hot(z, Kc), rounds=t_star + 3)
    acc = [M.accuracy(f.outputs, y) for f in fits]
    assert acc[t_star - 1] < 1.0 and all(a == 1.0 for a in acc[t_star:])
    cross = np.where(y[:, None] == np.arange(Kc)[None, :], c, d)  # Gram rows of fresh class-k samples
    for t, f in enumerate(fits):
        fresh = M.accuracy(f.logits(cross), np.arange(Kc))
        assert fresh == population_accuracy(Kc, nc, c, d, lam, C_emp, t)


def test_linear_pll_student_block_model():
    # Exact counts, symmetric eta = 0.3 < threshold: linear PLL student on the
    # teacher's top-two targets predicts every training instance correctly
    # (P4 derivation: average PLL target gives < 1/2 to each wrong label).
    Kc, nc, lam = 4, 30, 1e-4
    y, z = _labels(0.3, exact=False, seed=4, Kc=Kc, nc=nc)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    teacher = model.fit(E.one_hot(z, Kc))
    student = E.pll(model, teacher)
    assert np.allclose(student.targets.sum(axis=0), 1.0)
    assert np.all((student.targets > 0).sum(axis=0) >= 2)
    assert M.accuracy(student.outputs, y) == 1.0


@pytest.mark.parametrize("ties", ["share", "lowest"])
@pytest.mark.parametrize(
    "noise,eta,exact",
    [("symmetric", 0.5, True), ("symmetric", 0.6, False), ("asymmetric", 1 / 3, True), ("superclass", 0.25, True)],
)
def test_linear_pll_equals_theory_pll_analysis(noise, eta, exact, ties):
    # Brute-force PLL student (numeric targets, ties within TIE_TOL) vs the exact
    # analysis of theory.pll_analysis: same targets per instance (to 1e-12), same
    # per-instance correctness, same fresh accuracy. Exact counts make the
    # teacher's outputs tie exactly (symmetric wrong classes, superclass pairs),
    # which exercises the tie rules; round-off (~1e-15) is far below TIE_TOL.
    pll_analysis = theory_fn("pll_analysis")
    Kc, nc, lam = 4, 12, 1e-4
    y, z = _labels(eta, exact, seed=9, noise=noise, Kc=Kc, nc=nc)
    C_emp = Nm.label_counts(y, z, Kc) / nc
    rep = pll_analysis(Kc, nc, c, d, lam, C_emp, ties=ties)
    model = E.LinearModel(F.block_gram(Kc, nc, c, d), Kc, lam)
    student = E.pll(model, model.fit(E.one_hot(z, Kc)), "ce", ties)
    assert np.max(np.abs(student.targets - rep.targets[y, z].T)) < 1e-12
    assert np.array_equal(M.correct(student.outputs, y), rep.student_correct[y, z])
    assert M.accuracy(student.outputs, y) == pytest.approx(rep.student_train_accuracy, abs=1e-12)
    cross = np.where(y[:, None] == np.arange(Kc)[None, :], c, d)
    assert M.accuracy(student.logits(cross), np.arange(Kc)) == rep.student_fresh_accuracy


# ----------------------------------------------------------------------------- exact vs linear


def _block_features(Kc, nc):
    w, V = np.linalg.eigh(F.block_gram(Kc, nc, c, d))
    return V * np.sqrt(np.clip(w, 0, None))  # X X^T = block model


def test_exact_approaches_linear_as_lam_grows():
    # Exact softmax (primal solver on features with X X^T = block model, K = 3,
    # n = 10) vs the brute-force linearisation, rounds 0..3. The softmax's
    # second-order term bounds the gap by zmax^2 / (2K) per fit (zmax = largest
    # exact logit). Measured max|P_exact - P_linear| (relative to zmax/K, the
    # size of the linear part of the outputs):
    #   lam = 0.1: 7.4e-3 (5.5 %), lam = 1: 2.5e-4 (1.3 %), lam = 10: 2.9e-6 (0.15 %).
    fit_features = solver_fn("fit_features")
    Kc, nc = 3, 10
    X = _block_features(Kc, nc)
    y, z = _labels(0.4, Kc=Kc, nc=nc)
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


def test_exact_block_solver_matches_primal():
    # fit_block (type-reduced) vs the primal solver on explicit block features:
    # same fixed point, so outputs agree within the solvers' tolerance (1e-10 on
    # the residual; outputs within 1e-8).
    fit_features = solver_fn("fit_features")
    Kc, nc, lam = 3, 10, 1e-2
    y, z = _labels(0.4, Kc=Kc, nc=nc)
    X = _block_features(Kc, nc)
    eng = E.BlockExact(Kc, nc, c, d, lam, y, z)
    fits = E.sd(eng, eng.one_hot_types(), rounds=2)
    T = E.one_hot(z, Kc)
    for fit in fits:
        prim = fit_features(X, T, lam)
        assert np.max(np.abs(fit.outputs - prim.outputs)) < 1e-8
        T = prim.outputs


# ----------------------------------------------------------------------------- mixture -> block model


def test_gmm_approaches_block_model_as_D_grows():
    # Linear-level outputs on the mixture's Gram vs the closed form for the block
    # model with the same labels (K = 3, n = 10, lam = 1e-3, round 2), rms over
    # instances, mean over 5 seeds. Measured: 0.0277, 0.0147, 0.0066, 0.0035 for
    # D = 400, 1600, 6400, 25600: log-log slope -0.505 (asserted within 0.08 of -1/2).
    type_outputs = theory_fn("type_outputs")
    Kc, nc, lam, t = 3, 10, 1e-3, 2
    dims = np.array([400, 1600, 6400, 25600])
    errs = []
    for D in dims:
        e = []
        for seed in range(5):
            rng = np.random.default_rng(seed)
            y, z = _labels(0.4, seed=seed + 100, Kc=Kc, nc=nc)
            X, _ = F.sample_gmm(Kc, nc, c, d, int(D), rng)
            P = E.sd(E.LinearModel(X @ X.T, Kc, lam), E.one_hot(z, Kc), t)[-1].outputs
            closed = type_outputs(Kc, nc, c, d, lam, Nm.label_counts(y, z, Kc) / nc, t)[y, z].T
            e.append(np.sqrt(np.mean((P - closed) ** 2)))
        errs.append(np.mean(e))
    slope = np.polyfit(np.log(dims), np.log(errs), 1)[0]
    assert abs(slope + 0.5) < 0.08, (slope, errs)


# ----------------------------------------------------------------------------- scenarios and CLI

SMALL = ["--per-class", "12", "--rounds", "2", "--eta", "0.25"]


def run_main(argv, capsys):
    rc = Dm.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


RECORD_KEYS = {
    "method", "level", "round", "train_accuracy", "clean_accuracy", "noisy_accuracy", "fresh_accuracy", "residual",
}


@pytest.mark.parametrize("features", ["block", "gmm", "perturbed"])
def test_cli_json_schema(features, capsys):
    level = "both" if features != "block" or _has_solver("fit_block") else "linear"
    argv = SMALL + ["--features", features, "--dim", "30", "--pll", "--json", "--level", level, "--fresh-per-class", "20"]
    if features == "block":
        argv.remove("--dim"), argv.remove("30")
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert set(res) == {"params", "theory", "records"}
    p = res["params"]
    for key in ("K", "n", "c", "d", "lam", "noise", "eta", "superclass_size", "exact_counts", "features", "dim",
                "rounds", "pll", "pll_loss", "ties", "level", "seed", "corruption_matrix", "label_counts"):
        assert key in p
    assert p["K"] == 4 and p["n"] == 12 and p["features"] == features
    assert "min_rounds" in res["theory"]
    assert res["theory"]["min_rounds"] is None or isinstance(res["theory"]["min_rounds"], int)
    levels = ["linear", "exact"] if level == "both" else [level]
    expected = [("sd", lv, t) for lv in levels for t in range(3)] + [("pll", lv, 1) for lv in levels]
    got = [(r["method"], r["level"], r["round"]) for r in res["records"]]
    assert sorted(got) == sorted(expected)
    for r in res["records"]:
        assert set(r) == RECORD_KEYS
        for key in ("train_accuracy", "clean_accuracy", "noisy_accuracy", "fresh_accuracy"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0
        assert r["train_accuracy"] is not None and isinstance(r["residual"], float)
        assert (r["fresh_accuracy"] is None) == (features == "perturbed")


def _has_solver(name):
    try:
        import sims.engine.fit.solver as s
    except ImportError:
        return False
    return hasattr(s, name)


def test_cli_digits_notes_and_theory_null(capsys):
    rc, out, err = run_main(["--features", "digits", "--classes", "3", "--rounds", "1", "--level", "linear", "--json"], capsys)
    assert rc == 0
    res = json.loads(out)
    assert res["params"]["K"] == 10 and res["params"]["n"] == 120
    assert res["theory"]["min_rounds"] is None
    assert "ignored for digits" in err
    assert all(r["fresh_accuracy"] is not None for r in res["records"])


def test_cli_same_seed_same_output(capsys):
    argv = SMALL + ["--features", "gmm", "--dim", "20", "--level", "linear", "--json", "--seed", "5"]
    out1 = run_main(argv, capsys)[1]
    out2 = run_main(argv, capsys)[1]
    out3 = run_main(argv[:-1] + ["6"], capsys)[1]
    assert out1 == out2 and out1 != out3


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--noise", "foo"], "argument --noise: invalid choice: 'foo'"),
        (["--eta", "1.5"], r"eta (--eta) == 1.5, must be in [0, 1]"),
        (["--noise", "superclass", "--superclass-size", "3"], "superclass_size (--superclass-size) == 3, must divide K (--classes) == 4"),
        (["--features", "gmm", "--dim", "0"], "D (--dim) == 0, must be >= 1"),
        (["--exact-counts"], "--exact-counts: C[0, 1] * n == 83.3333 is not a whole number of instances (n == 500)"),
        (["--lam", "0"], "lam (--lam) == 0.0, must be > 0"),
        (["--between", "0.5"], "d (--between) == 0.5, must be < c"),
        (["--features", "gmm", "--between", "-0.01"], "d (--between) == -0.01, must be >= 0"),
        (["--rounds", "-1"], "rounds (--rounds) == -1, must be >= 0"),
        (["--classes", "1"], "K (--classes) == 1, must be >= 2"),
    ],
)
def test_cli_bad_options(argv, message, capsys):
    try:
        rc = Dm.main(argv + ["--level", "linear"])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_module_entry_point_exit_code():
    # The real `python -m sims.distill`: non-zero exit, one line on stderr, no traceback.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "sims.distill", "--eta", "2"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "python -m sims.distill: error: eta (--eta) == 2.0, must be in [0, 1]"


# ----------------------------------------------------------------------------- gmm through the sampled Gram matrix


def test_gram_engine_matches_feature_engine():
    # The same mixture sample (D = 200 > N = 45: full-rank Gram, fit_gram's dense
    # route) through the Gram engine (fit_gram, warm-started, fresh logits from the
    # cross-Gram) and the feature engine (fit_features). Two exact solutions with
    # residual <= 1e-10 agree in the outputs to ~1e-10 times the conditioning of the
    # fixed point (small here): 1e-8 asserted; logits relative to their size, 1e-7.
    Kc, nc, lam = 3, 15, 1e-3
    rng = np.random.default_rng(12)
    X, _ = F.sample_gmm(Kc, nc, c, d, 200, rng)
    Xf, _ = F.sample_gmm(Kc, 4, c, d, 200, rng)
    y, z = _labels(0.3, seed=3, Kc=Kc, nc=nc)
    gram = E.GramExact(X @ X.T, lam, X @ Xf.T)
    feats = E.FeatureExact(X, lam, Xf)
    Y = E.one_hot(z, Kc)
    a, b = E.sd(gram, Y, rounds=2), E.sd(feats, Y, rounds=2)
    for fa, fb in zip(a, b):
        assert fa.raw.method == "dense" and fa.residual <= 1e-10
        np.testing.assert_allclose(fa.outputs, fb.outputs, atol=1e-8, rtol=0)
        scale = max(1.0, float(np.max(np.abs(fb.fresh_logits))))
        assert np.max(np.abs(fa.fresh_logits - fb.fresh_logits)) <= 1e-7 * scale
    for loss in ("ce", "gce"):
        pa, pb = E.pll(gram, a[0], loss), E.pll(feats, b[0], loss)
        np.testing.assert_allclose(pa.outputs, pb.outputs, atol=1e-8, rtol=0)


def test_cli_gmm_huge_dim_runs(capsys):
    # D = 10^7 at n = 10: the sampled Gram costs nothing in D; every exact fit converged.
    argv = ["--features", "gmm", "--dim", "10000000", "--per-class", "10", "--rounds", "2", "--fresh-per-class", "5",
            "--pll", "--pll-loss", "gce", "--json"]
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    res = json.loads(out)
    assert res["params"]["dim"] == 10**7 and res["params"]["n_fresh"] == 20
    exact = [r for r in res["records"] if r["level"] == "exact"]
    assert len(exact) == 4 and all(r["residual"] <= 1e-10 for r in exact)
    assert all(r["fresh_accuracy"] is not None for r in res["records"])


@pytest.mark.parametrize("dim,message", [
    ("0", "D (--dim) == 0, must be >= 1"),
    ("-5", "D (--dim) == -5, must be >= 1"),
    ("x", "argument --dim: invalid int value: 'x'"),
])
def test_cli_bad_dim(dim, message):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "sims.distill", "--features", "gmm", "--dim", dim],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("python -m sims.distill: error:"), proc.stderr
