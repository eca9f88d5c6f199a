"""The distill study and command (sims.studies.distill): its JSON output, its seed, its option errors and the
`python -m sims.distill` entry point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sims.studies import distill as Dm

ROOT = Path(__file__).resolve().parents[2]


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


def names(text, option, *shown):
    """Whether ``text`` names ``option`` (as a whole option, so --eta is not --etas) and shows each of ``shown``."""
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None and all(v in text for v in shown)


@pytest.mark.parametrize(
    "argv,option,shown",
    [
        (["--noise", "foo"], "--noise", ("'foo'",)),
        (["--eta", "1.5"], "--eta", ("1.5",)),
        (["--noise", "superclass", "--superclass-size", "3"], "--superclass-size", ("3", "4")),
        (["--features", "gmm", "--dim", "0"], "--dim", ("0",)),
        (["--exact-counts"], "--exact-counts", ("83.3333", "500")),
        (["--lam", "0"], "--lam", ("0.0",)),
        (["--between", "0.5"], "--between", ("0.5",)),
        (["--features", "gmm", "--between", "-0.01"], "--between", ("-0.01",)),
        (["--rounds", "-1"], "--rounds", ("-1",)),
        (["--classes", "1"], "--classes", ("1",)),
    ],
)
def test_cli_bad_options(argv, option, shown, capsys):
    try:
        rc = Dm.main(argv + ["--level", "linear"])
    except SystemExit as exc:  # argparse errors
        rc = exc.code
    err = capsys.readouterr().err
    assert rc != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and names(lines[0], option, *shown), err
    assert "Traceback" not in err


def test_module_entry_point_exit_code():
    # The real `python -m sims.distill`: non-zero exit, one line on stderr, no traceback.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "sims.distill", "--eta", "2"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sims.distill: error: "), proc.stderr
    assert names(lines[0], "--eta", "2.0"), proc.stderr


# ----------------------------------------------------------------------------- gmm through the sampled Gram matrix




def test_cli_gmm_reports_finite_dim_theory(capsys):
    # D = N / 4 (K = 4, n = 60, D = 60): the teacher cannot memorise the noisy labels, so its training
    # accuracy against the true labels is far above the clean share (~70 %) that the block model predicts.
    argv = ["--features", "gmm", "--dim", "60", "--per-class", "60", "--eta", "0.3", "--lam", "5e-5", "--rounds", "12",
            "--level", "linear", "--fresh-per-class", "200", "--json", "--seed", "3"]
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    res = json.loads(out)
    fd = res["theory"]["finite_dim"]
    assert set(fd["first_perfect_round"]) == {"median", "q10", "q90", "p_equal_block"}
    assert fd["D"] == 60 and fd["level"] == "linear"
    assert len(fd["train_accuracy"]) == len(fd["fresh_accuracy"]) == len(fd["p_all_correct"]) == 13
    # the prediction is for this run's label counts
    s = Dm.Scenario(K=4, n=60, eta=0.3, lam=5e-5, rounds=12, features="gmm", dim=60, level="linear",
                    fresh_per_class=200, seed=3)
    prob = Dm.build_problem(s, np.random.default_rng(3))
    from theory.finite_dim import finite_dim_prediction

    direct = finite_dim_prediction(4, 60, s.c, s.d, 5e-5, 60, prob.counts, rounds=12)
    assert fd["train_accuracy"] == [float(v) for v in direct.train_accuracy]
    # the exact level at finite D, calibrated on the certified exact block model with the same counts
    from theory.finite_dim_exact import effective_lambda

    fe = res["theory"]["finite_dim_exact"]
    cal = effective_lambda(4, 60, s.c, s.d, 5e-5, prob.counts, 12)
    assert fe["block_exact_first_round"] == cal.exact_first == res["theory"]["min_rounds_exact"]
    assert fe["lam_eff"] == cal.lam_eff
    if cal.lam_eff is None:
        assert fe["first_perfect_round"] is None
    else:
        assert set(fe["first_perfect_round"]) == {"median", "q10", "q90"}
    obs = {r["round"]: r for r in res["records"] if r["method"] == "sd"}
    clean_share = float(np.trace(prob.counts)) / prob.counts.sum()
    assert obs[0]["train_accuracy"] > clean_share + 0.1
    # One sample of N = 240 training and 800 fresh points: the binomial s.d. of an accuracy near 0.9 is
    # <= 0.02 (training) and 0.01 (fresh); 0.05 is 2.5 s.d. of the training one (the seed is fixed).
    for t in (0, 6, 12):
        assert abs(fd["train_accuracy"][t] - obs[t]["train_accuracy"]) < 0.05, t
        assert abs(fd["fresh_accuracy"][t] - obs[t]["fresh_accuracy"]) < 0.05, t


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


@pytest.mark.parametrize("dim,shown", [("0", "0"), ("-5", "-5"), ("x", "'x'")])
def test_cli_bad_dim(dim, shown):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "sims.distill", "--features", "gmm", "--dim", dim],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m sims.distill: error:"), proc.stderr
    assert names(lines[0], "--dim", shown), proc.stderr
