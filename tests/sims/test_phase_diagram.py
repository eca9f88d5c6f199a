"""End-to-end tests of `python -m sims.phase_diagram` on tiny grids (and one realistic one for --jobs)."""

import csv
import json
import os
import sys
from dataclasses import replace

import numpy as np
import pytest

from sims.studies import phase_diagram as pd
from tests.theorems.strategies import raises_naming

TINY = ["--quick", "--etas", "0,0.3,0.6", "--rounds", "4", "--seeds", "2", "--per-class", "12",
        "--gmm-per-class", "8", "--dim", "16", "--no-progress", "--jobs", "1"]
PROG = "python -m sims.phase_diagram: error: "


def _sweep(**kw):
    base = dict(etas=(0.0, 0.3, 0.6), rounds=4, seeds=2, n=12, gmm_per_class=8, dim=16, lam=1e-3)
    base.update(kw)
    return pd.Sweep(**base)


def _main_code(argv):
    """Exit status of pd.main, whether it returns it or argparse raises SystemExit."""
    try:
        return pd.main(argv)
    except SystemExit as exc:
        return exc.code


def test_cli_writes_files_and_linear_level_agrees(tmp_path, capsys):
    assert pd.main(TINY + ["--out", str(tmp_path)]) == 0
    for ext in ("png", "pdf", "csv", "json"):
        assert (tmp_path / f"phase_diagram_quick.{ext}").stat().st_size > 0
    assert list((tmp_path / "cache").iterdir())  # the resume cache goes with --out
    with open(tmp_path / "phase_diagram_quick.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(pd.COLUMNS) <= set(rows[0])
    assert {r["level"] for r in rows} == {"linear", "exact", "gmm"}
    assert {r["method"] for r in rows} == {"sd", "pll"}
    # 2 noises x (3 + 3 + 2 gmm etas) x 2 seeds x (5 rounds + PLL)
    assert len(rows) == 2 * (3 + 3 + 2) * 2 * 6
    summary = json.loads((tmp_path / "phase_diagram_quick.json").read_text())
    assert summary["levels"]["linear"]["agreement"] == 1.0
    for level in ("linear", "exact", "gmm"):
        s = summary["levels"][level]
        c = s["confusion"]
        assert sum(c.values()) == s["cells"]
        assert s["informative_rows"] == c["both"] + c["only_theory"] + c["only_observed"] > 0
        assert s["agreement"] == pytest.approx(c["both"] / s["informative_rows"], abs=0)
    assert summary["levels"]["linear"]["confusion"]["only_theory"] == 0
    assert summary["levels"]["linear"]["confusion"]["only_observed"] == 0
    assert summary["params"]["seed"] == 0 and summary["runtime_seconds"] > 0
    assert "informative" in summary["agreement_rule"]
    # no temporary files left behind
    assert not list(tmp_path.glob(".*.tmp"))
    out = capsys.readouterr().out
    assert "agreement with theory on informative rows" in out and "neither:" in out


def test_confusion_counts_and_informative_agreement():
    def row(p, o):
        return {"theory_perfect": p, "observed_perfect": o}

    rows = [row(True, True)] * 3 + [row(True, False)] * 2 + [row(False, True)] + [row(False, False)] * 50
    c = pd.confusion(rows)
    assert c.counts() == {"both": 3, "only_theory": 2, "only_observed": 1, "neither": 50}
    # the 50 "neither" rows do not count as agreement (they would make it 53/56 = 0.95)
    assert c.agreement == 3 / 6
    assert pd.confusion([row(False, False)] * 4).agreement is None


@pytest.mark.parametrize(
    "args,message",
    [
        (["--etas", "0,1.5"], "--etas"),
        (["--etas", "a,b"], "--etas"),
        (["--etas", "0.3,0.1,0.3"], "--etas: 0.3 given more than once"),
        (["--etas", "0.3,0.30001"], "--etas: 0.3 given more than once"),
        (["--levels", "linear,quantum"], "--levels"),
        (["--noise", "pairflip"], "--noise"),
        (["--superclass-size", "3"], "--superclass-size"),
        (["--lam", "0"], "--lam"),
        (["--between", "0.5", "--within", "0.4"], "--within/--between"),
        (["--rounds", "-1"], "--rounds"),
        (["--jobs", "0"], "--jobs"),
        (["--dask-scheduler", "nonsense://x:y"], "--dask-scheduler == 'nonsense://x:y': cannot connect"),
        (["--dask-scheduler", ""], "--dask-scheduler == '': cannot connect"),
    ],
)
def test_bad_options_one_line_exit_2_nothing_computed(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pd, "run_sweep", lambda *a, **k: pytest.fail("computing started"))
    assert _main_code(args + ["--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG) and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not list(tmp_path.glob("*.csv"))


def test_dask_scheduler_unreachable_or_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pd, "run_sweep", lambda *a, **k: pytest.fail("computing started"))
    # nothing listens on port 1: a one-line error after the short connect timeout
    assert _main_code(TINY + ["--out", str(tmp_path), "--dask-scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(PROG + "--dask-scheduler == 'tcp://127.0.0.1:1': cannot connect")
    assert len(err.strip().splitlines()) == 1
    # dask not installed
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    assert _main_code(TINY + ["--out", str(tmp_path), "--dask-scheduler", "tcp://127.0.0.1:8786"]) == 2
    err = capsys.readouterr().err
    assert "dask.distributed is not installed" in err and len(err.strip().splitlines()) == 1


def test_bad_output_folders_rejected_before_computing(tmp_path, read_only_dir, capsys, monkeypatch):
    monkeypatch.setattr(pd, "run_sweep", lambda *a, **k: pytest.fail("computing started"))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(a_file, "is a file, must be a folder"),
             (a_file / "sub", "lies under the file"),
             (read_only_dir, "cannot write into the folder")]
    for out, message in cases:
        assert _main_code(TINY + ["--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(PROG + f"--out == {str(out)!r}") and message in err, err
        assert len(err.strip().splitlines()) == 1
    assert list(read_only_dir.iterdir()) == []


def test_ctrl_c_keeps_finished_cells_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    real = pd.run_cell
    calls = []

    def interrupted_after_two(sweep, cell):
        calls.append(cell)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(sweep, cell)

    monkeypatch.setattr(pd, "run_cell", interrupted_after_two)
    argv = TINY + ["--levels", "linear,exact", "--noise", "symmetric", "--out", str(tmp_path), "--jobs", "1"]
    assert pd.main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("python -m sims.phase_diagram: interrupted; the 2 finished cells are kept")
    assert "the same command resumes" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "phase_diagram_quick.csv").exists()
    # the same command resumes: only the cells not finished are computed
    monkeypatch.setattr(pd, "run_cell", real)
    assert pd.main(argv) == 0
    assert "(2 cells computed, 2 from the cache)" in capsys.readouterr().out


@pytest.mark.parametrize("garbage", [b"{not json", b"\xff\xfe\x00", b'{"valid": "json, wrong shape"}'])
def test_corrupt_cache_file_is_set_aside_and_recomputed(tmp_path, garbage):
    sweep = _sweep(levels=("linear", "exact"), noises=("symmetric",))
    rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    cached = sorted((tmp_path / sweep.key()).glob("*.json"))
    bad = cached[0]
    bad.write_bytes(garbage)
    rows2, summary = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    assert (summary["cells_computed"], summary["cells_from_cache"]) == (1, len(cached) - 1)
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)
    (warning,) = summary["cache_warnings"]
    assert str(bad) in warning and "corrupt" in warning and "\n" not in warning
    assert bad.with_name(bad.name + ".corrupt").read_bytes() == garbage
    assert json.loads(bad.read_text())  # rewritten with the recomputed rows


def test_etas_sorted_and_duplicates_rejected():
    sweep = pd.Sweep(etas=(0.6, 0.0, 0.3, 0.45), gmm_etas_every=2)
    assert sweep.etas == (0.0, 0.3, 0.45, 0.6)
    assert sweep.gmm_etas() == (0.0, 0.45)  # every second in increasing order, not in the order given
    assert sweep == pd.Sweep(etas=(0.0, 0.3, 0.45, 0.6), gmm_etas_every=2)  # same key, same cache
    with raises_naming("--etas", "0.3"):
        pd.Sweep(etas=(0.3, 0.1, 0.3)).validate()
    args = pd.build_parser().parse_args(["--etas", "0.5,0.1,0.2"])
    assert pd.sweep_from_args(args, ["--etas", "0.5,0.1,0.2"]).etas == (0.1, 0.2, 0.5)


def test_unsorted_etas_give_the_sorted_csv(tmp_path):
    a, _ = pd.run_sweep(_sweep(etas=(0.6, 0.0, 0.3), levels=("linear", "exact")), cache_dir=tmp_path / "a",
                        progress=False)
    b, _ = pd.run_sweep(_sweep(levels=("linear", "exact")), cache_dir=tmp_path / "b", progress=False)
    assert pd.rows_to_csv(a) == pd.rows_to_csv(b)


def test_same_csv_whatever_the_number_of_jobs(tmp_path):
    sweep = _sweep(levels=("linear", "exact", "gmm"))
    rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path / "a", progress=False)
    rows2, _ = pd.run_sweep(sweep, jobs=2, cache_dir=tmp_path / "b", progress=False)
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)


def test_same_csv_whatever_the_number_of_jobs_at_a_realistic_size(tmp_path):
    """n = 200 per class (N = 800), 6 noise rates, 17 rounds, 2 seeds, both noise models.

    The main process runs with two BLAS threads (as a default run on 2 cores does) and the joblib
    workers with one: before the fix, the residual column of every linear row differed between
    --jobs 1 and --jobs 2 at this size (measured), because the stacked products were split differently.
    """
    from threadpoolctl import threadpool_limits

    sweep = pd.Sweep(etas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7), rounds=16, seeds=2, n=200, levels=("linear", "exact"),
                     lam=1e-4)
    with threadpool_limits(limits=2, user_api="blas"):
        rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path / "a", progress=False)
    rows2, _ = pd.run_sweep(sweep, jobs=2, cache_dir=tmp_path / "b", progress=False)
    assert len(rows1) == 2 * 2 * 6 * 2 * 18
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)


def _quick_gmm_sweep(**kw):
    """The quick grid's gmm level alone (D = 1e7 >= N: the Gram matrix is sampled through LAPACK ``dlauum``,
    which OpenBLAS splits over its threads), cut down to what the --jobs tests need."""
    sweep = replace(pd.Sweep(), **pd.QUICK)
    sweep = replace(sweep, levels=("gmm",), **kw)
    assert sweep.dim >= sweep.K * sweep.gmm_per_class
    return sweep


def test_same_csv_whatever_the_number_of_jobs_with_the_gmm_level(tmp_path):
    """The main process (--jobs 1) runs with two BLAS threads, the joblib workers (--jobs 2) with one; the
    CSVs, residual column included, must be the same bytes."""
    from threadpoolctl import threadpool_limits

    sweep = _quick_gmm_sweep(noises=("symmetric",), etas=(0.0, 0.4), rounds=2, seeds=1, gmm_per_class=8)
    with threadpool_limits(limits=2, user_api="blas"):
        rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path / "a", progress=False)
    rows2, _ = pd.run_sweep(sweep, jobs=2, cache_dir=tmp_path / "b", progress=False)
    assert len(rows1) == 1 * 1 * 1 * (3 + 1)  # noises, gmm etas (every 2nd), seeds, (SD rounds 0..2 + PLL)
    assert {r["level"] for r in rows1} == {"gmm"} and all(r["residual"] > 0 for r in rows1)
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)


def test_gmm_cell_rows_do_not_depend_on_the_callers_blas_threads():
    from threadpoolctl import threadpool_limits

    sweep = _quick_gmm_sweep(noises=("symmetric",), etas=(0.0,), rounds=1, seeds=1, gmm_per_class=8)
    cell = pd.Cell("symmetric", 0.0, "gmm")
    rows = {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            rows[threads] = pd.run_cell(sweep, cell)
    assert len(rows[1]) == 3 and rows[1] == rows[2]  # every float bit for bit


def test_linear_residual_of_a_problem_does_not_depend_on_the_other_problems():
    def residuals(etas):
        sweep = pd.Sweep(etas=etas, rounds=5, seeds=2, n=100, levels=("linear",), noises=("symmetric",))
        rows = pd.run_cell(sweep, pd.Cell("symmetric", None, "linear"))
        return {(r["eta"], r["seed"], r["method"], r["round"]): r["residual"] for r in rows}

    alone, stacked = residuals((0.3,)), residuals((0.0, 0.3, 0.6))
    assert alone and all(stacked[k] == v for k, v in alone.items())
    # float64 round-off of a well-conditioned solve (condition number ~ 1/(K N lam) terms): < 1e-12
    assert max(alone.values()) < 1e-12


def test_asymmetric_noise_accepted_and_linear_level_agrees(tmp_path, capsys):
    argv = TINY + ["--noise", "asymmetric", "--levels", "linear,exact", "--out", str(tmp_path)]
    assert pd.main(argv) == 0
    summary = json.loads((tmp_path / "phase_diagram_quick.json").read_text())
    assert summary["params"]["noises"] == ["asymmetric"]
    lin = summary["levels"]["linear"]
    assert lin["agreement"] == 1.0 and lin["confusion"]["both"] > 0
    with open(tmp_path / "phase_diagram_quick.csv") as fh:
        assert {r["noise"] for r in csv.DictReader(fh)} == {"asymmetric"}
    # the seeds of the other noise models are unchanged by the new one (their index in the seed key)
    assert pd.NOISES[:2] == ("symmetric", "superclass") and pd.Sweep().noises == ("symmetric", "superclass")


def test_output_paths_keep_tracked_files_for_default_runs_only(tmp_path, monkeypatch, capsys):
    quick = replace(pd.Sweep(), **pd.QUICK)
    assert pd.output_paths(pd.Sweep(), False) == (pd.DEFAULT_FIG_DIR, pd.DEFAULT_RESULTS_DIR, "phase_diagram")
    assert pd.output_paths(quick, True) == (pd.DEFAULT_FIG_DIR, pd.DEFAULT_RESULTS_DIR, "phase_diagram_quick")
    other = replace(pd.Sweep(), rounds=5)
    fig_dir, res_dir, _ = pd.output_paths(other, False)
    assert fig_dir == res_dir == pd.DEFAULT_RESULTS_DIR / other.settings_key()
    assert pd.output_paths(other, False, out=tmp_path)[:2] == (tmp_path, tmp_path)
    # a run with non-default options and no --out leaves figures/ alone and says where it wrote
    monkeypatch.chdir(tmp_path)
    assert pd.main(TINY + ["--levels", "linear"]) == 0
    args = pd.build_parser().parse_args(TINY + ["--levels", "linear"])
    key = pd.sweep_from_args(args, TINY + ["--levels", "linear"]).settings_key()
    folder = tmp_path / "results" / "phase_diagram" / key
    assert (folder / "phase_diagram_quick.png").exists() and (folder / "phase_diagram_quick.csv").exists()
    assert not (tmp_path / "figures").exists()
    assert f"writing to {os.path.join('results', 'phase_diagram', key)}" in capsys.readouterr().out


def test_theory_boundary_drawn_only_within_the_rounds_shown(tmp_path):
    # lam = 2e-4 at n = 60: the theory needs more than 2 rounds for eta >= 0.4 (symmetric)
    sweep = _sweep(n=60, lam=2e-4, rounds=2, etas=(0.0, 0.2, 0.4, 0.6), levels=("linear",), noises=("symmetric",))
    rows, summary = pd.run_sweep(sweep, cache_dir=tmp_path, progress=False)
    drawn = pd.plot(sweep, rows, summary, tmp_path / "p.png")
    panel = drawn[("symmetric", "linear")]
    assert panel["boundary_rounds"] and max(panel["boundary_rounds"]) <= 2
    expected = [e for e, t in zip(sweep.etas, pd.predicted_boundary(sweep, "symmetric", etas=sweep.etas)["min_rounds"])
                if t is not None and t > 2]
    assert expected and panel["beyond_etas"] == expected
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_resume_reuses_finished_cells(tmp_path):
    sweep = _sweep(levels=("linear", "exact"))
    rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    # simulate an interruption: one cell's cache is lost, the rest is kept
    cache = tmp_path / sweep.key()
    files = sorted(cache.glob("*.json"))
    files[0].unlink()
    rows2, summary = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    assert (summary["cells_computed"], summary["cells_from_cache"]) == (1, len(files) - 1)
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)


def test_dask_cluster_gives_the_same_csv(tmp_path):
    """joblib's dask backend on a local Dask cluster (threads, 2 workers) reproduces the local CSV."""
    from dask import distributed  # a test dependency (pyproject: test extra)
    sweep = _sweep(levels=("linear", "exact"), noises=("symmetric",))
    local, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path / "local", progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with distributed.Client(cluster):
            remote, _ = pd.run_sweep(sweep, jobs=-1, cache_dir=tmp_path / "dask", progress=False, backend="dask")
    assert pd.rows_to_csv(local) == pd.rows_to_csv(remote)


def test_linear_rows_match_the_engine(tmp_path):
    """The stacked linear fit of the sweep gives the outputs of sims.engine.LinearModel, problem by problem."""
    from sims.engine import LinearModel, StackedLinear, one_hot
    from sims.engine.features import block_gram

    K, n, lam = 4, 30, 1e-3
    model = LinearModel(block_gram(K, n, 0.4, 0.1), K, lam, explicit=True)
    rng = np.random.default_rng(0)
    Ts = [one_hot(rng.integers(0, K, K * n), K) for _ in range(3)]
    stacked = StackedLinear(model).fit(np.vstack(Ts))
    P, res = stacked.outputs, stacked.residual
    for i, T in enumerate(Ts):
        ref = model.fit(T)
        # same algebra, different product shapes: agreement to float64 round-off (outputs are O(1))
        assert np.max(np.abs(P[i * K:(i + 1) * K] - ref.outputs)) < 1e-12
        assert res[i] < 1e-12 and ref.residual < 1e-12


# ---------------------------------------------------------------------------- certified exact level


def test_certified_exact_verdict_equals_the_exact_solver_on_a_small_sweep(tmp_path):
    """Every exact-level SD row carries the certified verdict for its sample, and every decided verdict
    equals what the exact solver observed (on sampled, unbalanced labels)."""
    sweep = _sweep(levels=("linear", "exact"), etas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.7), rounds=8, n=20)
    rows, summary = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    exact_sd = [r for r in rows if r["level"] == "exact" and r["method"] == "sd"]
    assert exact_sd and all(r["certified_perfect"] in (True, False, "undecided") for r in exact_sd)
    # only exact-level SD rows carry it (the PLL student and the linear level have no certificate)
    assert all(r["certified_perfect"] is None for r in rows if r not in exact_sd)
    decided = [r for r in exact_sd if r["certified_perfect"] != "undecided"]
    assert decided and all(r["certified_perfect"] == r["observed_perfect"] for r in decided)
    # the sweep reaches both verdicts, so the equality above could fail
    assert {r["certified_perfect"] for r in decided} == {True, False}
    cert = summary["levels"]["exact"]["certified"]
    c = cert["confusion"]
    assert set(c) == {"both", "only_theory", "only_observed", "neither"}
    assert sum(c.values()) + cert["undecided"] == cert["rows"] == len(exact_sd)
    assert c["only_theory"] == c["only_observed"] == 0 and cert["disagreements"] == []
    assert cert["agreement"] == 1.0 and cert["decided_agreement"] == 1.0
    assert cert["first_round"] == {"equal": 2 * 6 * 2, "samples": 2 * 6 * 2}  # noises x etas x seeds
    assert set(cert["by_noise"]) == set(sweep.noises)
    assert sum(b["rows"] for b in cert["by_noise"].values()) == cert["rows"]
    assert "certified" not in summary["levels"]["linear"] and "certified_perfect" in summary["certified_rule"]
    # the verdicts are those of theory.exact_level for the sample's own label counts
    r0 = exact_sd[0]
    rng = pd._seed_rng(sweep, r0["noise"], r0["eta"], r0["seed"])
    _, _, counts = pd._labels(sweep, sweep.K, sweep.n, r0["noise"], r0["eta"], rng)
    own = [r["certified_perfect"] for r in exact_sd
           if (r["noise"], r["eta"], r["seed"]) == (r0["noise"], r0["eta"], r0["seed"])]
    assert own == pd.certified_verdicts(sweep.K, sweep.n, sweep.c, sweep.d, sweep.lam, counts, sweep.rounds)


def test_certified_summary_counts_a_disagreement_and_undecided_rows():
    def row(cv, o):
        return {"noise": "symmetric", "eta": 0.1, "round": 0, "seed": 0, "train_accuracy": 1.0 if o else 0.9,
                "certified_perfect": cv, "observed_perfect": o}

    rows = [row(True, True), row(False, False), row(True, False), row("undecided", True), row(None, True)]
    s = pd.certified_agreement(rows)
    assert s["rows"] == 4 and s["undecided"] == 1
    assert s["confusion"] == {"both": 1, "only_theory": 1, "only_observed": 0, "neither": 1}
    assert s["agreement"] == 0.5 and s["decided_agreement"] == pytest.approx(2 / 3, abs=1e-15)
    assert len(s["disagreements"]) == 1 and s["disagreements"][0]["train_accuracy"] == 0.9
    assert s["first_round"] == {"equal": 1, "samples": 1}  # one sample: proved and observed first at round 0
    later = [dict(r, round=t, seed=1) for t, r in enumerate([row(False, False), row(True, False), row(True, True)])]
    assert pd.certified_agreement(later)["first_round"] == {"equal": 0, "samples": 1}  # round 1 against round 2
    undecided_first = [dict(r, round=t, seed=2) for t, r in enumerate([row("undecided", False), row(True, True)])]
    assert pd.certified_agreement(undecided_first)["first_round"] == {"equal": 0, "samples": 1}


def test_csv_has_the_certified_column(tmp_path):
    assert pd.main(TINY + ["--levels", "exact", "--noise", "superclass", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "phase_diagram_quick.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert "certified_perfect" in rows[0]
    assert {r["certified_perfect"] for r in rows if r["method"] == "sd"} <= {"true", "false", "undecided"}
    assert {r["certified_perfect"] for r in rows if r["method"] == "pll"} == {""}
    for r in rows:
        if r["method"] == "sd" and r["certified_perfect"] != "undecided":
            assert r["certified_perfect"] == r["observed_perfect"]


def test_certified_boundary_drawn_on_the_block_panels(tmp_path):
    sweep = _sweep(levels=("linear", "exact"), noises=("symmetric",), etas=(0.0, 0.3, 0.6, 0.9), rounds=3, n=20)
    rows, summary = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    drawn = pd.plot(sweep, rows, summary, tmp_path / "p.png")
    from sims.studies.phase_diagram import certified_boundary

    cb = certified_boundary(rows, "symmetric", list(sweep.etas), sweep.rounds)
    for level in ("linear", "exact"):
        assert drawn[("symmetric", level)]["certified_rounds"] == cb["rounds"]
    # eta = 0: every seed perfect from the teacher on; eta = 0.9 (beyond the noise threshold 0.75): never
    assert cb["rounds"][0] == 0 and cb["rounds"][-1] is None and 0.9 in cb["beyond"]
    # the boundary round is the first round at which each seed's certificate says perfect
    for eta, first in zip(cb["etas"], cb["rounds"]):
        col = [r for r in rows if r["level"] == "exact" and r["method"] == "sd" and r["eta"] == eta]
        ok = [t for t in range(sweep.rounds + 1) if all(r["certified_perfect"] is True for r in col if r["round"] == t)]
        assert first == (ok[0] if ok else None)


def test_exact_level_agreement_small_block_and_dense():
    """exact_level_agreement on a small grid: certified verdicts equal both solvers' in every decided round."""
    from sims.studies.exact_boundary_check import exact_level_agreement

    settings = ((1e-2, "dense", 12), (1e-2, "block", 12), (1e-3, "block", 12))
    res = exact_level_agreement(settings, etas=(0.0, 0.25, 0.5, 0.75), rounds=6)
    c = res["confusion"]
    assert set(c) == {"both", "only_theory", "only_observed", "neither"}
    assert res["rounds_compared"] == sum(c.values()) and res["rounds_compared"] + res["undecided"] == 3 * 2 * 4 * 7
    assert c["only_theory"] == c["only_observed"] == 0 and res["disagreements"] == [] and res["agreement"] == 1.0
    assert c["both"] > 0 and c["neither"] > 0  # both verdicts are reached
    assert res["first_round"] == {"equal": 24, "cells": 24}
    assert len(res["cells"]) == 24 and set(res["by_setting"]) == {
        f"{noise} lam={lam} n=12 {s}" for lam, s, _ in settings for noise in ("symmetric", "superclass")}
    # the dense and the type-reduced solvers reach the same first rounds at lam = 1e-2
    firsts = {(r["solver"], r["lam"], r["noise"], r["eta"]): r["solver_first"] for r in res["cells"]}
    for noise in ("symmetric", "superclass"):
        for eta in (0.0, 0.25, 0.5, 0.75):
            assert firsts[("dense", 1e-2, noise, eta)] == firsts[("block", 1e-2, noise, eta)]
    with raises_naming("solver", "'qr'"):
        exact_level_agreement(((1e-2, "qr", 12),), etas=(0.0,), rounds=1)


def test_module_entry_one_line_on_ctrl_c_and_quiet_on_a_closed_pipe():
    """``python -m sims.<tool>`` (sys.argv[0] == "-m" while the package imports): an interrupt that reaches
    the top gives one line and death by SIGINT (130 in a shell); a broken pipe gives nothing on stderr."""
    import signal
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(body):
        code = f"import sys; sys.argv[0] = '-m'; import sims; {body}"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)

    p = run("raise KeyboardInterrupt")
    assert p.returncode in (-signal.SIGINT, 130), p.returncode
    assert "Traceback" not in p.stderr and p.stderr.strip().endswith(": interrupted")
    assert len(p.stderr.strip().splitlines()) == 1
    p = run("raise BrokenPipeError(32, 'Broken pipe')")
    assert p.returncode == 1 and p.stderr == ""
    p = run("raise ValueError('other errors keep their traceback')")
    assert p.returncode == 1 and "Traceback" in p.stderr and "other errors" in p.stderr

    def closed_reader(argv):  # the reader (e.g. head) has gone before the program writes
        proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        proc.stdout.close()
        err = proc.stderr.read().decode()
        return proc.wait(timeout=120), err

    # more than a pipe's buffer, written while running: without the hook this is a BrokenPipeError traceback
    big = "import time; time.sleep(0.5); print('x' * 200_000); print('y', flush=True)"
    code, err = closed_reader([sys.executable, "-c", big])
    assert code == 1 and "BrokenPipeError" in err  # (the failure the hook removes)
    code, err = closed_reader([sys.executable, "-c", f"import sys; sys.argv[0] = '-m'; import sims; {big}"])
    assert code == 1 and err == ""
    # a real tool (theory takes seconds to import, so the reader is gone before it writes)
    code, err = closed_reader([sys.executable, "-m", "sims.phase_diagram", "--help"])
    assert code in (0, 1) and "Traceback" not in err and "BrokenPipe" not in err, err


def test_cell_rows_do_not_depend_on_the_blas_threads_of_a_fresh_process():
    """In a fresh interpreter, where the engine has not loaded scipy's own BLAS yet, one cell run with two
    BLAS threads available gives the same rows as with one (the thread limit must cover the BLAS that the
    first solve loads)."""
    import subprocess

    code = ("from sims.studies import phase_diagram as pd\n"
            "sweep = pd.Sweep(etas=(0.0, 0.3), rounds=3, seeds=1, n=60, levels=('linear', 'gmm'),\n"
            "                 noises=('symmetric',), gmm_per_class=16)\n"
            "rows = [r for level in ('linear', 'gmm') for r in pd.run_cell(sweep, pd.Cell('symmetric',\n"
            "        None if level == 'linear' else 0.3, level))]\n"
            "print(pd.rows_to_csv(rows))\n")
    out = {}
    for threads in ("1", "2"):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        out[threads] = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                      check=True).stdout
    assert out["1"].count("\n") > 10 and out["1"] == out["2"]


# ---------------------------------------------------------------------------- finite-D boundary (gmm level)


def test_finite_dim_boundary_equals_block_at_huge_D_and_lags_at_small_D():
    from sims.studies import phase_boundary as pb

    sweep = replace(pd.Sweep(), **pd.QUICK)
    for noise in ("symmetric", "superclass"):
        huge = pb.finite_dim_boundary(replace(sweep, dim=10**12), noise)
        block = pd.predicted_boundary(sweep, noise, n=sweep.gmm_per_class, etas=huge["eta"])["min_rounds"]
        # quick grid: every n C is whole (n = 30), so the rounded counts are C itself; at D = 1e12 the
        # fluctuations (variance ~ N / D = 1e-10) cannot move a round: exact equality, no tolerance
        assert huge["median"] == [b if b is None or b <= sweep.rounds else None for b in block]
        assert huge["median"] == huge["block_first_round"]
    # D = 1000 at n = 100 (N = 400): the mixture lags the block model by several rounds at eta = 0.4
    small = replace(pd.Sweep(), dim=1000)
    fd = pb.finite_dim_boundary(small, "symmetric", etas=(0.0, 0.4))
    blk = pd.predicted_boundary(small, "symmetric", n=small.gmm_per_class, etas=(0.0, 0.4))["min_rounds"]
    assert fd["median"][0] == blk[0] == 0
    assert fd["median"][1] - blk[1] >= 3 and fd["q10"][1] <= fd["median"][1] <= fd["q90"][1]


def test_expected_counts_keep_the_rows_and_the_symmetry():
    from sims.engine import noise as noise_mod
    from sims.engine.noise import expected_counts

    C = noise_mod.noise_matrix("symmetric", 4, 0.1, 2)  # 100 C_kj = 3.33
    counts = expected_counts(C, 100)
    assert counts.sum(axis=1).tolist() == counts.sum(axis=0).tolist() == [100] * 4
    assert counts[0, 1] == 3 and counts[0, 0] == 91 and len({counts[i, j] for i in range(4) for j in range(4) if i != j}) == 1


def test_summary_has_the_finite_dim_agreement_and_same_bytes_for_any_jobs(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    assert pd.main(TINY + ["--out", str(a), "--jobs", "1"]) == 0
    assert pd.main(TINY + ["--out", str(b), "--jobs", "2"]) == 0
    assert (a / "phase_diagram_quick.csv").read_bytes() == (b / "phase_diagram_quick.csv").read_bytes()
    sa, sb = (json.loads((d / "phase_diagram_quick.json").read_text()) for d in (a, b))
    assert sa["levels"]["gmm"]["finite_dim"] == sb["levels"]["gmm"]["finite_dim"]
    fd = sa["levels"]["gmm"]["finite_dim"]
    gmm_sd = [r for r in csv.DictReader(open(a / "phase_diagram_quick.csv")) if r["level"] == "gmm" and r["method"] == "sd"]
    for name in ("agreement", "block_boundary_agreement"):
        assert sum(fd[name]["confusion"].values()) == len(gmm_sd)
    assert fd["D"] == 16 and set(fd["by_noise"]) == {"symmetric", "superclass"}
