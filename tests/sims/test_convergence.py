"""Tests of the convergence study (`python -m sims.convergence`): CLI, determinism, resume, summaries."""

import csv
import json

import numpy as np
import pytest

import theory
from sims.studies import convergence as cv
from sims.engine import noise as noise_mod
from tests.theorems.strategies import raises_naming

# A tiny study: n = 8 (N = 32), etas with whole label counts (0.375/3 * 8 = 1, 0.25 * 8 = 2),
# lambda = 3e-3 (the theory's first perfect round is 2 for both), one D below N (explicit
# features) and one above (Wishart sampler).
TINY = ["--quick", "--per-class", "8", "--lam", "3e-3", "--etas", "symmetric:0.375;superclass:0.25",
        "--dims", "16,400", "--seeds", "2", "--max-rounds", "5", "--no-progress"]


@pytest.fixture(autouse=True)
def _stable_cache_key(monkeypatch):
    """The cache key hashes the source of theory/ and sims/; other edits to those files during a test
    session must not invalidate the cache between the two runs of a resume test."""
    monkeypatch.setattr(cv, "_code_fingerprint", lambda: "test")


def _run(tmp_path, extra=()):
    return cv.main(TINY + ["--out", str(tmp_path)] + list(extra))


def test_tiny_run_writes_csv_json_png(tmp_path, capsys):
    assert _run(tmp_path, ["--jobs", "1"]) == 0
    for ext in ("csv", "json", "png"):
        assert (tmp_path / f"convergence_quick.{ext}").stat().st_size > 0
    with open(tmp_path / "convergence_quick.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == cv.COLUMNS
    mixture = [r for r in rows if r["level"] == "mixture"]
    # 2 settings x 2 dims x 2 seeds x 6 rounds, plus block and theory rows per setting and round
    assert len(mixture) == 2 * 2 * 2 * 6
    assert len(rows) == len(mixture) + 2 * 2 * 6
    assert {r["D"] for r in mixture} == {"16", "400"}
    summary = json.loads((tmp_path / "convergence_quick.json").read_text())
    assert [p["D"] for p in summary["per_dim"]] == [16, 400]
    for p in summary["per_dim"]:
        cf = p["confusion_vs_block"]
        # every cell (setting, seed, round) is counted exactly once
        assert cf["both"] + cf["only_theory"] + cf["only_observed"] + cf["neither"] == 2 * 2 * 6
        assert 0.0 <= p["first_round_match"] <= 1.0
    assert [r["theory_first"] for r in summary["reference"]] == [2, 2]
    # at D = 400 (> 10 N) the mixture is perfect in some rounds, so the informative cells are not empty
    assert summary["per_dim"][1]["confusion_vs_block"]["informative_cells"] > 0
    assert summary["max_mixture_residual"] <= 1e-9  # the solver's default tolerance is 1e-10
    assert not list(tmp_path.glob(".*.tmp"))
    assert "rate:" in capsys.readouterr().out


def test_same_bytes_for_jobs_1_and_2_and_resume(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(a, ["--jobs", "1"]) == 0
    assert _run(b, ["--jobs", "2"]) == 0
    assert (a / "convergence_quick.csv").read_bytes() == (b / "convergence_quick.csv").read_bytes()
    ja = json.loads((a / "convergence_quick.json").read_text())
    jb = json.loads((b / "convergence_quick.json").read_text())
    for j in (ja, jb):
        j.pop("runtime_seconds")
        j.pop("jobs")
    assert ja == jb
    # a second run reuses every cached unit and writes the same CSV
    before = (a / "convergence_quick.csv").read_bytes()
    assert _run(a, ["--jobs", "1"]) == 0
    again = json.loads((a / "convergence_quick.json").read_text())
    assert again["units_computed"] == 0 and again["units_from_cache"] == 4
    assert (a / "convergence_quick.csv").read_bytes() == before
    # more dimensions: the (D, seed) units of the earlier run are reused, only the new ones computed
    assert cv.main([x if x != "16,400" else "16,400,1000" for x in TINY] + ["--out", str(a), "--jobs", "1"]) == 0
    more = json.loads((a / "convergence_quick.json").read_text())
    assert more["units_computed"] == 2 and more["units_from_cache"] == 4


def test_dask_cluster_writes_the_same_bytes_as_jobs_1(tmp_path):
    from dask.distributed import LocalCluster

    # two worker processes, as on a real cluster: the units are pickled, run elsewhere and sent back
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert _run(tmp_path / "d", ["--dask-scheduler", cluster.scheduler_address]) == 0
    assert _run(tmp_path / "a", ["--jobs", "1"]) == 0
    assert (tmp_path / "d" / "convergence_quick.csv").read_bytes() == (tmp_path / "a" / "convergence_quick.csv").read_bytes()


def test_corrupt_cache_file_is_set_aside_and_recomputed(tmp_path, capsys):
    assert _run(tmp_path, ["--jobs", "1"]) == 0
    before = (tmp_path / "convergence_quick.csv").read_bytes()
    cache = next((tmp_path / "cache").iterdir())
    victim = sorted(cache.glob("*.json"))[0]
    victim.write_text("{not json")
    assert _run(tmp_path, ["--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "is corrupt" in err and "set aside" in err
    assert list(cache.glob("*.corrupt"))
    assert (tmp_path / "convergence_quick.csv").read_bytes() == before


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--jobs", "0"], "--jobs == 0"),
        (["--seeds", "0"], "--seeds) == 0"),
        (["--dims", "16,abc"], "--dims"),
        (["--dims", "0"], "D (--dims) == 0"),
        (["--etas", "symmetric:0.31"], "whole number"),
        (["--etas", "gaussian:0.3"], "noise == 'gaussian'"),
        (["--etas", "0.3"], "--etas"),
        (["--lam", "-1"], "lam (--lam) == -1.0"),
        (["--paper"], "--quick and --paper"),
        (["--max-rounds", "-1"], "--max-rounds) == -1"),
        (["--dask-scheduler", ""], "--dask-scheduler == '': cannot connect"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_give_one_line_error_and_status_2(tmp_path, capsys, args, fragment):
    with pytest.raises(SystemExit) if args == ["--bogus"] else _noop():
        status = cv.main(TINY + ["--out", str(tmp_path / "o")] + args)
        assert status == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert err.count("\n") == 1 and err.startswith("python -m sims.convergence: error: ")
    assert not (tmp_path / "o" / "cache").exists()  # rejected before any computing


def test_bad_out_paths_are_rejected_before_computing(tmp_path, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    for out, fragment in ((f, "is a file"), (f / "sub", "lies under the file")):
        assert cv.main(TINY + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert fragment in err and err.count("\n") == 1


def test_read_only_out_is_rejected_before_computing(read_only_dir, capsys):
    assert cv.main(TINY + ["--out", str(read_only_dir / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot" in err and err.count("\n") == 1


class _noop:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cv.main(["--seeds", "two"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_confusion_counts():
    mix = [True, True, False, False, True, False]
    blk = [True, False, True, False, True, False]
    cf = cv.confusion(mix, blk)
    assert (cf["both"], cf["only_observed"], cf["only_theory"], cf["neither"]) == (2, 1, 1, 2)
    assert cf["informative_cells"] == 4
    assert cf["informative_agreement"] == pytest.approx(0.5)
    assert cf["agreement_all_cells"] == pytest.approx(4 / 6)
    assert cv.confusion([False, False], [False, False])["informative_agreement"] is None
    with raises_naming("mixture_flags", "(1,)", "(2,)"):
        cv.confusion([True], [True, False])


def test_loglog_slope_recovers_a_power_law():
    x = np.geomspace(1e3, 1e7, 9)
    fit = cv.loglog_slope(x, 3.0 * x**-0.5)
    # exact power law: the least-squares fit is exact up to float64 round-off in log10 (~1e-15)
    assert fit["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert fit["intercept"] == pytest.approx(np.log10(3.0), abs=1e-12)
    assert fit["stderr"] == pytest.approx(0.0, abs=1e-12)
    # multiplicative noise of 5 %: the slope over four decades moves by at most ~0.05 / 4 decades
    rng = np.random.default_rng(1)
    noisy = cv.loglog_slope(x, x**-1.0 * np.exp(0.05 * rng.standard_normal(x.size)))
    assert noisy["slope"] == pytest.approx(-1.0, abs=0.05)
    # zeros are left out; one usable point gives no slope
    assert cv.loglog_slope([1.0, 10.0], [0.0, 1.0])["slope"] is None


def test_smallest_matching_dim():
    dims = [100, 1000, 10_000, 100_000]
    assert cv.smallest_matching_dim(dims, [0.2, 0.96, 0.9, 1.0]) == 100_000
    assert cv.smallest_matching_dim(dims, [0.2, 0.96, 0.95, 1.0]) == 1000
    assert cv.smallest_matching_dim(dims, [1.0, 1.0, 1.0, 0.5]) is None
    # order of the grid does not matter
    assert cv.smallest_matching_dim(dims[::-1], [1.0, 0.95, 0.96, 0.2]) == 1000


def test_log_dims():
    dims = cv.log_dims(400)
    assert dims[0] == 100 and dims[-1] == 10**7 and 400 in dims
    assert all(a < b for a, b in zip(dims, dims[1:]))
    assert len(dims) == 12  # 2 per decade over 5 decades (11 points) plus N


@pytest.mark.parametrize("preset", [{}, cv.QUICK, cv.PAPER])
def test_default_settings_have_interesting_first_rounds(preset):
    study = cv.Study(**preset).validate()
    for noise, eta in study.settings:
        C = noise_mod.noise_matrix(noise, study.K, eta, study.superclass_size)
        counts = noise_mod.exact_counts(C, [study.n] * study.K)
        first = theory.min_rounds(study.K, study.n, study.c, study.d, study.lam, counts / study.n)
        assert first is not None and 3 <= first <= 25, (noise, eta, first)
        assert eta < theory.noise_threshold(noise, study.K, study.superclass_size)
