"""End-to-end tests of `python -m sims.phase_diagram` on tiny grids."""

import contextlib
import csv
import json

import pytest

from sims import phase_diagram as pd

TINY = ["--quick", "--etas", "0,0.3,0.6", "--rounds", "4", "--seeds", "2", "--per-class", "12",
        "--gmm-per-class", "8", "--dim", "16", "--no-progress"]


def _sweep(**kw):
    base = dict(etas=(0.0, 0.3, 0.6), rounds=4, seeds=2, n=12, gmm_per_class=8, dim=16, lam=1e-3)
    base.update(kw)
    return pd.Sweep(**base)


def test_cli_writes_files_and_linear_level_agrees(tmp_path, capsys):
    assert pd.main(TINY + ["--out", str(tmp_path)]) == 0
    for ext in ("png", "pdf", "csv", "json"):
        assert (tmp_path / f"phase_diagram_quick.{ext}").stat().st_size > 0
    with open(tmp_path / "phase_diagram_quick.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert set(pd.COLUMNS) <= set(rows[0])
    assert {r["level"] for r in rows} == {"linear", "exact", "gmm"}
    assert {r["method"] for r in rows} == {"sd", "pll"}
    # 2 noises x (3 + 3 + 2 gmm etas) x 2 seeds x (5 rounds + PLL)
    assert len(rows) == 2 * (3 + 3 + 2) * 2 * 6
    summary = json.loads((tmp_path / "phase_diagram_quick.json").read_text())
    assert summary["levels"]["linear"]["agreement"] == 1.0
    for level in ("exact", "gmm"):
        assert 0.0 <= summary["levels"][level]["agreement"] <= 1.0
    assert summary["params"]["seed"] == 0 and summary["runtime_seconds"] > 0
    # no temporary files left behind
    assert not list(tmp_path.glob(".*.tmp"))
    assert "agreement" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args,option",
    [
        (["--etas", "0,1.5"], "--etas"),
        (["--etas", "a,b"], "--etas"),
        (["--levels", "linear,quantum"], "--levels"),
        (["--noise", "pairflip"], "--noise"),
        (["--superclass-size", "3"], "--superclass-size"),
        (["--lam", "0"], "--lam"),
        (["--between", "0.5", "--within", "0.4"], "--within/--between"),
        (["--rounds", "-1"], "--rounds"),
        (["--jobs", "0"], "--jobs"),
    ],
)
def test_bad_options(args, option, tmp_path, capsys):
    with pytest.raises(SystemExit) if args[1] in ("a,b",) else contextlib.nullcontext():
        code = pd.main(args + ["--out", str(tmp_path), "--no-progress"])
        assert code == 2
    err = capsys.readouterr().err
    assert option in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("*.csv"))


def test_same_csv_whatever_the_number_of_jobs(tmp_path):
    sweep = _sweep(levels=("linear", "exact", "gmm"))
    rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path / "a", progress=False)
    rows2, _ = pd.run_sweep(sweep, jobs=2, cache_dir=tmp_path / "b", progress=False)
    assert pd.rows_to_csv(rows1) == pd.rows_to_csv(rows2)


def test_resume_reuses_finished_cells(tmp_path, monkeypatch):
    sweep = _sweep(levels=("linear", "exact"))
    rows1, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    # simulate an interruption: one cell's cache is lost, the rest is kept
    cache = tmp_path / sweep.key()
    files = sorted(cache.glob("*.json"))
    files[0].unlink()
    calls = []
    real = pd.run_cell

    def counting(sw, cell):
        calls.append(cell)
        return real(sw, cell)

    monkeypatch.setattr(pd, "run_cell", counting)
    rows2, _ = pd.run_sweep(sweep, jobs=1, cache_dir=tmp_path, progress=False)
    assert len(calls) == 1
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
